import textwrap

import numpy as np
import pytest
from sklearn.metrics import f1_score

from edgevlm_eval.core.errors import ConfigError
from edgevlm_eval.core.labels import LabelSpace
from edgevlm_eval.core.metrics import DEFAULT_MACRO_F1_LABEL_SET, Scored, compute
from edgevlm_eval.core.taskconfig import load_task_file
from edgevlm_eval.tasks import load_task

SPACE = LabelSpace(names=["car", "truck", "pedestrian", "bicycle", "bus"])


def items():
    return [
        Scored(("car", "pedestrian"), ("car",)),
        Scored(("truck",), ("truck", "bicycle")),  # bicycle: hallucinated, never in the truth
        Scored(("car",), None),  # invalid output: an empty set
        Scored(("car", "truck"), ("truck", "car")),
    ]  # bus: neither true nor predicted anywhere


# Per label, by hand: car TP 2 (frames 1, 4), FN 1 (the invalid frame 3): F1 = 2*2/(2*2+0+1) = 0.8;
# truck TP 2: 1.0; pedestrian FN 1: 0.0; bicycle FP 1: 0.0; bus: undefined (no TP, FP or FN).
PER_CLASS = {"car": 0.8, "truck": 1.0, "pedestrian": 0.0, "bicycle": 0.0, "bus": None}


def test_multilabel_by_hand():
    m = compute(items(), SPACE, ["micro_f1", "macro_f1", "exact_match", "macro_f1_all"], macro_f1_label_set="gt")
    # TP=4 (car x2, truck x2), FP=1 (bicycle), FN=2 (pedestrian, car of the invalid frame)
    assert m["micro_f1"] == pytest.approx(8 / 11)
    assert m["macro_f1"] == pytest.approx((0.8 + 1.0 + 0.0) / 3)
    assert m["macro_f1_labels"] == ["car", "truck", "pedestrian"]
    assert m["macro_f1_label_set"] == "gt"
    assert m["macro_f1_all"] == pytest.approx((0.8 + 1.0 + 0.0 + 0.0 + 0.0) / 5)
    assert m["exact_match"] == pytest.approx(0.25)
    assert m["n"] == 4 and m["n_invalid"] == 1


def test_macro_label_sets_differ_by_hand():
    got = {s: compute(items(), SPACE, ["macro_f1"], macro_f1_label_set=s) for s in ("gt", "union", "all")}
    # gt: car, truck, pedestrian -> 1.8 / 3; the hallucinated bicycle costs nothing
    assert got["gt"]["macro_f1"] == pytest.approx(0.6)
    # union: + bicycle (predicted, never true: F1 0) -> 1.8 / 4
    assert got["union"]["macro_f1"] == pytest.approx(0.45)
    assert got["union"]["macro_f1_labels"] == ["car", "truck", "pedestrian", "bicycle"]
    # all: + bus as well (never true, never predicted: counted as 0) -> 1.8 / 5
    assert got["all"]["macro_f1"] == pytest.approx(0.36)
    assert got["all"]["macro_f1_labels"] == SPACE.names
    for s, m in got.items():
        assert m["macro_f1_label_set"] == s
    # the default is stated in the output too
    assert compute(items(), SPACE, ["macro_f1"])["macro_f1_label_set"] == DEFAULT_MACRO_F1_LABEL_SET == "union"


def test_union_equals_all_when_every_label_occurs():
    full = items() + [Scored(("bus", "bicycle"), ("bus",))]
    vals = {s: compute(full, SPACE, ["macro_f1"], macro_f1_label_set=s)["macro_f1"] for s in ("gt", "union", "all")}
    assert vals["gt"] == pytest.approx(vals["union"]) and vals["union"] == pytest.approx(vals["all"])


def test_per_class_f1_by_hand():
    m = compute(items(), SPACE, ["micro_f1"])
    assert m["per_class_f1"].keys() == set(SPACE.names)
    for label, want in PER_CLASS.items():
        got = m["per_class_f1"][label]
        assert got is None if want is None else got == pytest.approx(want), label


def test_matches_scikit_learn_on_random_frames():
    rng = np.random.default_rng(7)
    names = [f"c{i}" for i in range(8)]
    space = LabelSpace(names=names)
    for trial in range(20):
        n = int(rng.integers(1, 30))
        # sparse columns, so that some labels are absent from the truth, the predictions, or both
        yt = rng.random((n, 8)) < rng.random(8) * 0.3
        yp = rng.random((n, 8)) < rng.random(8) * 0.3
        its = [Scored(tuple(np.array(names)[yt[r]]), tuple(np.array(names)[yp[r]])) for r in range(n)]
        present = [i for i in range(8) if yt[:, i].any()]
        union = [i for i in range(8) if yt[:, i].any() or yp[:, i].any()]
        for label_set, cols in (("gt", present), ("union", union), ("all", list(range(8)))):
            m = compute(its, space, ["micro_f1", "macro_f1"], macro_f1_label_set=label_set)
            want = f1_score(yt, yp, average="macro", labels=cols, zero_division=0) if cols else None
            assert m["macro_f1"] == (None if want is None else pytest.approx(want)), (trial, label_set)
            assert m["micro_f1"] == pytest.approx(f1_score(yt, yp, average="micro", zero_division=0))
        per = f1_score(yt, yp, average=None, labels=list(range(8)), zero_division=0)
        got = compute(its, space, ["micro_f1"])["per_class_f1"]
        for i, name in enumerate(names):
            assert (got[name] or 0.0) == pytest.approx(per[i])
            assert (got[name] is None) == (i not in union)


def test_invalid_is_never_an_exact_match():
    m = compute([Scored(("car",), None)], SPACE, ["micro_f1", "exact_match"])
    assert m["micro_f1"] == 0.0 and m["exact_match"] == 0.0
    # an empty truth: the invalid output is still wrong; a valid empty answer is right
    assert compute([Scored((), None)], SPACE, ["exact_match"])["exact_match"] == 0.0
    assert compute([Scored((), ())], SPACE, ["exact_match"])["exact_match"] == 1.0
    assert compute([Scored((), None), Scored((), ()), Scored(("car",), ("car",))], SPACE,
                   ["exact_match"])["exact_match"] == pytest.approx(2 / 3)


def test_single_label_accuracy_and_per_class_recall():
    s = LabelSpace(names=["a", "b", "c"], multi_label=False)
    m = compute([Scored(("a",), ("a",)), Scored(("b",), None), Scored(("c",), ("b",)), Scored(("a",), ())],
                s, ["accuracy"])
    assert m["accuracy"] == pytest.approx(0.25)
    assert m["n_invalid"] == 1
    # a: 1 of its 2 frames right; b: its one frame invalid; c: answered b
    assert m["per_class_recall"] == {"a": 0.5, "b": 0.0, "c": 0.0}
    assert "per_class_f1" not in m and "macro_f1_label_set" not in m
    m = compute([Scored(("a",), ("a",))], s, ["accuracy"])
    assert m["per_class_recall"] == {"a": 1.0, "b": None, "c": None}


def test_metric_kind_mismatch_and_unknown():
    with pytest.raises(ValueError, match="single-label"):
        compute(items(), SPACE, ["accuracy"])
    with pytest.raises(ValueError, match="multi-label metric"):
        compute([Scored(("a",), ("a",))], LabelSpace(names=["a"], multi_label=False), ["micro_f1"])
    with pytest.raises(ValueError, match="unknown metrics"):
        compute(items(), SPACE, ["bleu"])
    with pytest.raises(ValueError, match="gt, union, all.*'labels'"):
        compute(items(), SPACE, ["macro_f1"], macro_f1_label_set="labels")


def test_empty_input():
    m = compute([], SPACE, ["micro_f1", "macro_f1"])
    assert m["micro_f1"] is None and m["macro_f1"] is None and m["n"] == 0
    assert m["macro_f1_label_set"] == "union" and m["macro_f1_labels"] == []
    assert set(m["per_class_f1"].values()) == {None}


def test_single_label_none_label_scored():
    # ACE with score_none: a valid empty answer predicts "none"; an invalid one is still wrong.
    s = LabelSpace(names=["breaking", "mixing"], multi_label=False, none_label="none")
    m = compute([Scored(("none",), ()), Scored(("none",), None), Scored(("mixing",), ()),
                 Scored(("breaking",), ("breaking",))], s, ["accuracy"])
    assert m["accuracy"] == pytest.approx(0.5)
    assert m["per_class_recall"] == {"breaking": 1.0, "mixing": 0.0, "none": 0.5}
    # without a none_label, an empty answer is never right
    s2 = LabelSpace(names=["a", "b"], multi_label=False)
    assert compute([Scored(("a",), ())], s2, ["accuracy"])["accuracy"] == 0.0


# -- the task key -----------------------------------------------------------------------------

TASK = """
name: t
converter: generic
dataset: {}
fps: 1
query_template: "Which of these appear? {labels}"
history_template: "This is the image from {d} seconds ago; detected {answer}."
metrics: [micro_f1, macro_f1]
label_space:
  multi_label: MULTI
  labels: [car, truck]
"""


def _task(tmp_path, extra="", multi="true", metrics=None):
    text = textwrap.dedent(TASK).replace("MULTI", multi) + extra
    if metrics:
        text = text.replace("metrics: [micro_f1, macro_f1]", f"metrics: {metrics}")
    p = tmp_path / "t.yaml"
    p.write_text(text)
    return p


def test_task_key_default_and_value(tmp_path):
    assert load_task_file(_task(tmp_path)).macro_f1_label_set == "union"
    assert load_task_file(_task(tmp_path, "macro_f1_label_set: gt\n")).macro_f1_label_set == "gt"
    # every shipped multi-label task uses the default
    for name in ("nuscenes", "bdd100k_mot", "demo"):
        assert load_task(name).macro_f1_label_set == "union"


def test_task_key_validation_names_file_key_and_values(tmp_path):
    with pytest.raises(ConfigError) as e:
        load_task_file(_task(tmp_path, "macro_f1_label_set: present\n"))
    msg = str(e.value)
    assert "t.yaml" in msg and "macro_f1_label_set" in msg and "gt, union, all" in msg and "'present'" in msg
    with pytest.raises(ConfigError, match="macro_f1_label_set.*expected str"):
        load_task_file(_task(tmp_path, "macro_f1_label_set: [gt]\n"))
    with pytest.raises(ConfigError, match="macro_f1_label_set.*only a multi-label task"):
        load_task_file(_task(tmp_path, "macro_f1_label_set: gt\n", multi="false", metrics="[accuracy]"))


def test_the_task_key_reaches_results_and_intervals():
    import dataclasses

    from edgevlm_eval.collab.accounting import summarise_run
    from edgevlm_eval.collab.testing import toy_task
    from edgevlm_eval.core.bootstrap import bootstrap_metrics
    from edgevlm_eval.core.records import FrameLine

    base = toy_task()
    assert base.label_space.multi_label and "macro_f1" in base.metrics
    # truth car on every frame; the predictions add a truck that is never there
    lines = [{"run": "r", "stream": f"s{i % 2}", "frame": i, "scored": True, "truth": ["car"],
              "upload": False, "why": "k_call", "in_time": None, "pred": ["car", "truck"], "output": "svlm",
              "invalid": None, "lag": None, "svlm": {"ok": True, "e_s": 0.1, "unmapped": []}, "lvlm": None,
              "vfm": None, "engine_s": 0.001, "svlm_s": 0.01} for i in range(4)]
    got = {}
    for label_set in ("gt", "union"):
        task = dataclasses.replace(base, macro_f1_label_set=label_set)
        m = summarise_run([FrameLine.from_json(dict(ln)) for ln in lines], task)["metrics"]
        got[label_set] = m["macro_f1"]
        assert m["macro_f1_label_set"] == label_set
    assert got == {"gt": 1.0, "union": 0.5}  # car F1 1; the hallucinated truck F1 0
    streams = {"s0": [Scored(("car",), ("car", "truck"))] * 2, "s1": [Scored(("car",), ("car", "truck"))] * 2}
    for label_set, want in got.items():
        iv = bootstrap_metrics(streams, base.label_space, ["macro_f1"], n=20, macro_f1_label_set=label_set)
        assert iv["macro_f1"].value == want and iv["macro_f1"].lo == want == iv["macro_f1"].hi

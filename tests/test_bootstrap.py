import math

import pytest

from edgevlm_eval.core.records import FrameLine

from edgevlm_eval.core.bootstrap import (Interval, bootstrap_metrics, bootstrap_ratio, bootstrap_run, bootstrap_streams,
                                    per_stream_items, resample_indices)
from edgevlm_eval.core.labels import LabelSpace
from edgevlm_eval.core.metrics import Scored

SINGLE = LabelSpace(names=["a", "b"], multi_label=False)
MULTI = LabelSpace(names=["car", "truck", "pedestrian"])


def _stream(n_right: int, n: int = 10) -> list[Scored]:
    return [Scored(("a",), ("a",)) if i < n_right else Scored(("a",), ("b",)) for i in range(n)]


def heterogeneous():
    """20 streams of 10 frames: half all right, half all wrong. Accuracy 0.5 by construction;
    frames inside a stream are perfectly correlated, as real streams nearly are."""
    return {f"s{i:02d}": _stream(10 if i % 2 == 0 else 0) for i in range(20)}


def test_interval_contains_true_value_and_has_stream_level_width():
    iv = bootstrap_metrics(heterogeneous(), SINGLE, ["accuracy"], n=1000, level=0.95, seed=7)["accuracy"]
    assert iv.value == pytest.approx(0.5)
    assert iv.lo < 0.5 < iv.hi
    assert iv.n_streams == 20 and iv.n_boot == 1000 and iv.n_valid == 1000 and iv.level == 0.95
    # Resampling the 20 streams: sd of the mean of 20 draws of {0, 1} = 0.5 / sqrt(20) = 0.112, so a 95 %
    # interval is about 2 * 1.96 * 0.112 = 0.44 wide. Resampling the 200 frames instead would give
    # 2 * 1.96 * sqrt(0.25 / 200) = 0.14: the width tells which unit was resampled.
    expected = 2 * 1.96 * 0.5 / math.sqrt(20)
    assert iv.width == pytest.approx(expected, rel=0.15)


def test_same_seed_same_interval_other_seed_differs():
    varied = {f"s{i:02d}": _stream(i % 11) for i in range(30)}  # accuracies 0.0, 0.1, ..., 1.0
    a = bootstrap_metrics(varied, SINGLE, ["accuracy"], n=300, level=0.9, seed=3)
    b = bootstrap_metrics(varied, SINGLE, ["accuracy"], n=300, level=0.9, seed=3)
    c = bootstrap_metrics(varied, SINGLE, ["accuracy"], n=300, level=0.9, seed=4)
    assert a == b
    assert (a["accuracy"].lo, a["accuracy"].hi) != (c["accuracy"].lo, c["accuracy"].hi)
    assert (resample_indices(20, 50, 3) == resample_indices(20, 50, 3)).all()
    assert (resample_indices(20, 50, 3) != resample_indices(20, 50, 4)).any()


def test_stream_order_does_not_matter():
    s = heterogeneous()
    rev = dict(reversed(list(s.items())))
    assert bootstrap_metrics(s, SINGLE, ["accuracy"], n=200, seed=1) == \
        bootstrap_metrics(rev, SINGLE, ["accuracy"], n=200, seed=1)


def test_identical_streams_give_zero_width():
    one = [Scored(("car",), ("car",)), Scored(("car", "truck"), ("car",)), Scored(("pedestrian",), None)]
    streams = {f"s{i}": list(one) for i in range(6)}
    ivs = bootstrap_metrics(streams, MULTI, ["micro_f1", "macro_f1", "exact_match"], n=200, seed=0)
    # per stream: TP car 2, FN truck 1, FN pedestrian 1 -> micro F1 = 2*2 / (2*2 + 0 + 2) = 2/3;
    # per label F1: car 1.0, truck 0, pedestrian 0 -> macro 1/3; exact match 1 of 3 frames.
    assert ivs["micro_f1"].value == pytest.approx(2 / 3)
    assert ivs["macro_f1"].value == pytest.approx(1 / 3)
    assert ivs["exact_match"].value == pytest.approx(1 / 3)
    for iv in ivs.values():
        assert iv.lo == pytest.approx(iv.value) and iv.hi == pytest.approx(iv.value)
        assert iv.width == pytest.approx(0.0, abs=1e-12)


def test_ratio_and_run_from_log_lines():
    # stream x: 4 frames, 1 upload; stream y: 4 frames, 3 uploads -> LCR 4 / 8
    lines = []
    for sid, ups in (("x", [1, 0, 0, 0]), ("y", [1, 1, 0, 1])):
        for f, u in enumerate(ups):
            lines.append({"run": "edgevlm", "stream": sid, "frame": f, "scored": f != 3, "upload": bool(u),
                          "truth": ["a"], "pred": ["a"] if sid == "x" else None, "output": "svlm"})
    lines.append({"run": "other", "stream": "x", "frame": 0, "scored": True, "upload": True, "truth": ["a"],
                  "pred": ["b"], "output": "lvlm"})
    lines = [FrameLine.from_json(d) for d in lines]
    items = per_stream_items(lines, "edgevlm")
    assert sorted(items) == ["x", "y"] and len(items["x"]) == 3  # frame 3 is not scored
    ivs = bootstrap_run(lines, "edgevlm", SINGLE, ["accuracy"], n=400, seed=0)
    assert ivs["lcr"].value == pytest.approx(0.5)
    assert ivs["accuracy"].value == pytest.approx(0.5)  # x right on 3 scored frames, y invalid on 3
    # a resample holds x twice (LCR 1/4, acc 1), y twice (3/4, 0) or one of each (1/2, 1/2)
    assert ivs["lcr"].lo == pytest.approx(0.25) and ivs["lcr"].hi == pytest.approx(0.75)
    assert ivs["accuracy"].lo == pytest.approx(0.0) and ivs["accuracy"].hi == pytest.approx(1.0)
    r = bootstrap_ratio({"x": (1, 4), "y": (3, 4)}, n=400, seed=0)
    assert (r.value, r.lo, r.hi) == (ivs["lcr"].value, ivs["lcr"].lo, ivs["lcr"].hi)


def test_undefined_values_and_no_streams():
    ivs = bootstrap_streams([1, 2], lambda xs: {"m": None if 1 not in xs else 1.0}, n=50, seed=0)
    assert ivs["m"].value == 1.0 and 0 < ivs["m"].n_valid < 50  # resamples without stream 1 are left out
    empty = bootstrap_metrics({}, SINGLE, ["accuracy"], n=10)
    assert empty["accuracy"] == Interval(None, None, None, 0.95, 0, 0, 0, 0)


@pytest.mark.parametrize("kw", [{"n": 0}, {"level": 1.0}, {"level": 0}])
def test_bad_parameters(kw):
    with pytest.raises(ValueError):
        bootstrap_metrics(heterogeneous(), SINGLE, ["accuracy"], **kw)

"""`edgevlm-eval compare`: the paired stream bootstrap of run A against run B."""

from __future__ import annotations

import json

import pytest

from edgevlm_eval.app import cli
from edgevlm_eval.core.bootstrap import bootstrap_difference, bootstrap_metrics, per_stream_items
from edgevlm_eval.app.compare import compare_runs
from edgevlm_eval.core.errors import EdgeVLMError, UnknownNameError
from edgevlm_eval.core.labels import LabelSpace
from edgevlm_eval.core.records import FrameLine

SPACE = LabelSpace(names=["car", "truck"], multi_label=True)


def _raw(spec: dict[str, dict[str, list[str]]], frames: int = 2) -> list[dict]:
    """spec: run -> stream -> prediction (the truth is always ['car'])."""
    return [{"run": run, "stream": sid, "frame": f, "scored": True, "upload": f == 0, "truth": ["car"], "pred": pred,
             "output": "svlm", "why": "test"}
            for run, streams in spec.items() for sid, pred in streams.items() for f in range(frames)]


def _lines(spec: dict[str, dict[str, list[str]]], frames: int = 2) -> list[FrameLine]:
    return [FrameLine.from_json(d) for d in _raw(spec, frames)]


def _run_folder(tmp_path, lines):
    folder = tmp_path / "runs" / "demo" / "a__b" / "all"
    folder.mkdir(parents=True)
    (folder / "frames.jsonl").write_text("\n".join(json.dumps(x) for x in [{"format": "edgevlm-eval.framelog/1"},
                                                                             *[ln.to_json() for ln in lines]]) + "\n")
    doc = {"format": "edgevlm-eval.results/1",
           "provenance": {"tasks": {"demo": {"labels": ["car", "truck"], "metrics": ["micro_f1", "exact_match"],
                                             "multi_label": True}}},
           "tasks": {"demo": {"runs": {}}}}
    (folder / "results.json").write_text(json.dumps(doc))
    return folder


def test_paired_difference_by_hand():
    # A is right on both streams, B only on x. Resamples of the 2 streams: {x,x} (p 1/4): A - B = 0;
    # {y,y} (1/4): 1; {x,y} (1/2): 0.5. So the difference is 0.5 on all streams, A is ahead in the
    # 3/4 of resamples that hold y, and the interval spans 0 to 1.
    lines = _lines({"A": {"x": ["car"], "y": ["car"]}, "B": {"x": ["car"], "y": ["truck"]}})
    d = bootstrap_difference(per_stream_items(lines, "A"), per_stream_items(lines, "B"), SPACE, ["micro_f1"],
                             n=600, seed=0)["micro_f1"]
    assert (d.a, d.b, d.diff.value) == (1.0, 0.5, 0.5)
    assert (d.diff.lo, d.diff.hi) == (0.0, 1.0)
    assert d.a_better == pytest.approx(0.75, abs=0.05)
    # the same seed gives the same answer; B against A mirrors it
    again = bootstrap_difference(per_stream_items(lines, "A"), per_stream_items(lines, "B"), SPACE, ["micro_f1"],
                                 n=600, seed=0)["micro_f1"]
    assert again == d
    back = bootstrap_difference(per_stream_items(lines, "B"), per_stream_items(lines, "A"), SPACE, ["micro_f1"],
                                n=600, seed=0)["micro_f1"]
    assert back.diff.value == -0.5 and (back.diff.lo, back.diff.hi) == (-1.0, 0.0) and back.a_better == 0.0


def test_pairing_narrows_the_interval():
    # Streams differ a lot in difficulty, A is a little better on every stream: unpaired intervals of
    # the two runs overlap, the paired difference stays above zero.
    preds = {}
    for i in range(12):
        hard = i % 2 == 0
        preds[f"s{i:02d}"] = (["truck"] if hard else ["car"], ["truck"] if hard else ["car"])
    lines = []
    for sid, (pa, pb) in preds.items():
        for f in range(10):
            # A gets frame 0 right on hard streams too, B never does
            for run, pred in (("A", ["car"] if f == 0 else pa), ("B", pb)):
                lines.append(FrameLine.from_json({"run": run, "stream": sid, "frame": f, "scored": True,
                                                  "truth": ["car"], "pred": pred, "upload": False, "output": "svlm"}))
    d = bootstrap_difference(per_stream_items(lines, "A"), per_stream_items(lines, "B"), SPACE, ["micro_f1"],
                             n=300, seed=1)["micro_f1"]
    assert d.diff.value > 0 and d.diff.lo > 0 and d.a_better > 0.99
    ivs = {r: bootstrap_metrics(per_stream_items(lines, r), SPACE, ["micro_f1"], n=300, seed=1)["micro_f1"]
           for r in ("A", "B")}
    assert ivs["A"].lo < ivs["B"].hi  # unpaired, the two runs' intervals overlap


def test_compare_command(tmp_path, capsys):
    folder = _run_folder(tmp_path, _lines({"edgevlm": {"x": ["car"], "y": ["car"]},
                                           "parallel": {"x": ["car"], "y": ["truck"]}}))
    out = compare_runs(folder, "edgevlm", "parallel", n=400, seed=0)
    assert out["task"] == "demo" and out["streams"] == 2 and set(out["metrics"]) == {"micro_f1", "exact_match"}
    assert out["metrics"]["micro_f1"]["diff"]["value"] == 0.5 and out["metrics"]["exact_match"]["a"] == 1.0
    j = tmp_path / "cmp.json"
    assert cli.main(["compare", str(folder), "edgevlm", "parallel", "--bootstrap", "400", "--json", str(j)]) == 0
    printed = capsys.readouterr().out
    assert "edgevlm vs parallel on the same 2 streams" in printed and "50.00" in printed
    assert json.loads(j.read_text())["metrics"]["micro_f1"]["diff"]["value"] == 0.5


def test_compare_errors(tmp_path, capsys):
    folder = _run_folder(tmp_path, _lines({"edgevlm": {"x": ["car"], "y": ["car"]}, "parallel": {"x": ["car"]}}))
    with pytest.raises(UnknownNameError, match="unknown run 'paralel'.*nearest first\\): parallel"):
        compare_runs(folder, "edgevlm", "paralel")
    with pytest.raises(EdgeVLMError, match="different streams"):
        compare_runs(folder, "edgevlm", "parallel")
    with pytest.raises(EdgeVLMError, match="results.json is missing"):
        compare_runs(tmp_path, "edgevlm", "parallel")
    assert cli.main(["compare", str(folder), "edgevlm", "edgevlm"]) == 2
    assert "two different runs" in capsys.readouterr().err

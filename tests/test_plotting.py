import json
import re
from pathlib import Path

import pytest
from PIL import Image

from edgevlm_eval.app import cli
from edgevlm_eval.app.leaderboard import load_rows
from edgevlm_eval.app.plotting import (Size, delay_series, lcr_points, pareto_front, plot_latency_trace,
                                   plot_metric_vs_delay, plot_metric_vs_lcr, plot_results, plot_sweep, sweep_rows)

REPO = Path(__file__).resolve().parents[1]


def _check(paths, size: Size):
    assert sorted(p.suffix for p in paths) == [".png", ".svg"]
    for p in paths:
        assert p.is_file() and p.stat().st_size > 1000
    png = next(p for p in paths if p.suffix == ".png")
    with Image.open(png) as im:
        assert im.size == (size.width, size.height)
    svg = next(p for p in paths if p.suffix == ".svg").read_text()
    # matplotlib writes SVG sizes in points: pixels * 72 / dpi
    w = float(re.search(r'<svg[^>]*width="([\d.]+)pt"', svg).group(1))
    assert w == pytest.approx(size.width * 72 / size.dpi)


def test_pareto_front_by_hand():
    pts = [(0.0, 0.55), (0.3, 0.58), (0.27, 0.64), (0.44, 0.57), (0.53, 0.67), (1.0, 0.44), (1.0, 0.71)]
    assert pareto_front(pts) == [(0.0, 0.55), (0.27, 0.64), (0.53, 0.67), (1.0, 0.71)]


def test_plot_functions_on_plain_data(tmp_path):
    size = Size(640, 480, 80)
    pts = [{"strategy": "edgevlm", "lcr": 0.27, "value": 0.64, "lo": 0.6, "hi": 0.68, "lcr_lo": 0.2, "lcr_hi": 0.3},
           {"strategy": "edgevlm", "lcr": 0.53, "value": 0.67},
           {"strategy": "svlm_only", "lcr": 0.0, "value": 0.55},
           {"strategy": "adas", "lcr": 0.28, "value": 0.56, "source": "reported in the paper"}]
    _check(plot_metric_vs_lcr(pts, "micro_f1", tmp_path / "lcr", size=size), size)
    rows = [{"knob": k, "lcr": l, "lhl": h, "metrics": {"micro_f1": m}}
            for k, l, h, m in ((1, 0.69, 1.9, 0.70), (2, 0.39, 2.6, 0.66), (3, 0.27, 3.3, 0.64))]
    _check(plot_sweep("K_call", rows, tmp_path / "sweep", metrics=["micro_f1"], size=size), size)
    _check(plot_metric_vs_delay({"edgevlm": [(1, 0.7), (5, 0.6), (9, 0.58)], "lvlm_only": [(1, 0.6), (5, 0.0)]},
                                "micro_f1", tmp_path / "delay", tau=1.0, size=size), size)
    _check(plot_latency_trace({"scene-1": [(0, 0.8), (1, 2.5), (2, 1.1)]}, tmp_path / "lat", tau=1.0, size=size), size)
    # the same data gives byte-identical files (no dates, fixed SVG ids)
    again = plot_metric_vs_lcr(pts, "micro_f1", tmp_path / "again" / "lcr", size=size)
    for a, b in zip(sorted(again), sorted(tmp_path.glob("lcr.*"))):
        assert a.read_bytes() == b.read_bytes()
    # the LCR interval is drawn (a horizontal bar): without it the figure differs
    no_x = [{k: v for k, v in p.items() if k not in ("lcr_lo", "lcr_hi")} for p in pts]
    other = plot_metric_vs_lcr(no_x, "micro_f1", tmp_path / "nox" / "lcr", size=size, formats=("svg",))
    assert other[0].read_bytes() != (tmp_path / "lcr.svg").read_bytes()
    # one format only
    assert [p.name for p in plot_metric_vs_lcr(pts, "micro_f1", tmp_path / "only", formats=("png",))] == ["only.png"]


def results_doc(task="demo"):
    def run(spec, mf1, lcr, lhl=None):
        return {"spec": spec, "frames": 10, "scored_frames": 10, "metrics": {"micro_f1": mf1, "n": 10, "n_invalid": 0},
                "lcr": lcr, "lhl": lhl, "invalid": {"total": 0, "scored": 0, "by_reason": {}}}

    runs = {"svlm_only": run({"strategy": "svlm_only", "run": "svlm_only"}, 0.5, 0.0)}
    for k, (lcr, lhl, m) in {1: (0.7, 1.5, 0.72), 2: (0.4, 2.5, 0.7), 3: (0.3, 3.2, 0.66)}.items():
        runs[f"edgevlm_k{k}"] = run({"strategy": "edgevlm", "run": f"edgevlm_k{k}", "K_call": k, "K_delay": 4}, m, lcr, lhl)
    for d, m in ((1, 0.7), (3, 0.65), (5, 0.6)):
        runs[f"edgevlm_d{d}"] = run({"strategy": "edgevlm", "run": f"edgevlm_d{d}", "K_call": 3, "K_delay": 4,
                                     "latency": f"fixed:{d}"}, m, 0.3)
    return {"format": "edgevlm-eval.results/1",
            "provenance": {"toolkit_version": "0.1.0", "config": {"tau": 1.0}, "models": {"svlm": {"name": "a"},
                                                                                         "lvlm": {"name": "b"}},
                           "trace": {"path": "trace.jsonl", "sha256": "x"},
                           "tasks": {task: {"version": 1, "metrics": ["micro_f1"], "primary_metric": "micro_f1"}}},
            "tasks": {task: {"streams": 1, "frames": 10, "runs": runs}}}


def test_adapters_pick_the_right_rows(tmp_path):
    f = tmp_path / "results.json"
    f.write_text(json.dumps(results_doc()))
    rows = load_rows([f])
    pts = lcr_points(rows, "demo", "micro_f1")
    assert sorted((p["strategy"], p["lcr"]) for p in pts) == [("edgevlm", 0.3), ("edgevlm", 0.4), ("edgevlm", 0.7),
                                                              ("svlm_only", 0.0)]  # fixed-delay runs left out
    sw = sweep_rows(rows, "demo", "K_call")
    assert sorted((r["knob"], r["lhl"]) for r in sw) == [(1, 1.5), (2, 2.5), (3, 3.2)]
    assert sweep_rows(rows, "demo", "K_delay") == []  # K_delay never varies here: no sweep
    assert delay_series(rows, "demo", "micro_f1") == {"edgevlm": [(1.0, 0.7), (3.0, 0.65), (5.0, 0.6)]}
    # a whole results file run at --latency fixed:D is a point of the latency study too
    doc = results_doc()
    doc["provenance"]["config"]["latency"] = "fixed:7"
    doc["tasks"]["demo"]["runs"] = {"parallel": {**doc["tasks"]["demo"]["runs"]["svlm_only"],
                                                 "spec": {"strategy": "parallel", "run": "parallel"}}}
    g = tmp_path / "fixed7.json"
    g.write_text(json.dumps(doc))
    assert delay_series(load_rows([g]), "demo", "micro_f1") == {"parallel": [(7.0, 0.5)]}


def test_plot_command_from_a_small_results_file(tmp_path):
    f = tmp_path / "run" / "results.json"
    f.parent.mkdir()
    f.write_text(json.dumps(results_doc()))
    trace = tmp_path / "run" / "trace.jsonl"
    lines = [{"format": "edgevlm-eval.trace/1", "task": "demo", "model": "b", "fps": 1}]
    lines += [{"task": "demo", "stream": "s0", "frame": i, "model": "b", "answer": "car", "labels": ["car"], "rois": [],
               "ok": True, "error": None, "latency": {"total_s": 0.5 + i % 3}} for i in range(6)]
    trace.write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    out = tmp_path / "figs"
    assert cli.main(["plot", str(f), "--kind", "all", "--out", str(out), "--no-paper"]) == 0
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted(f"{stem}.{ext}" for stem in ("lcr_demo_micro_f1", "sweep_demo_K_call",
                                                       "delay_demo_micro_f1", "latency_trace")
                           for ext in ("png", "svg"))
    with Image.open(out / "lcr_demo_micro_f1.png") as im:
        assert im.size == (Size().width, Size().height)
    # the latency trace of a results file is found through its provenance (trace.path, relative to the file)
    out2 = tmp_path / "figs2"
    assert cli.main(["plot", str(f), "--kind", "latency", "--out", str(out2)]) == 0
    assert sorted(p.name for p in out2.iterdir()) == ["latency_trace.png", "latency_trace.svg"]
    # nothing to draw: exit 1 with a message
    assert cli.main(["plot", str(trace), "--kind", "lcr", "--out", str(tmp_path / "none")]) == 1


def test_plot_paper_numbers(tmp_path):
    written = plot_results([REPO / "results" / "paper"], tmp_path, kinds=("lcr", "sweep"), task="nuscenes",
                           metric="micro_f1", formats=("png",))
    assert sorted(p.name for p in written) == ["lcr_nuscenes_micro_f1.png", "sweep_nuscenes_K_call.png"]


def test_pairings_are_separate_series(tmp_path):
    a, b = results_doc(), results_doc()
    b["provenance"]["models"]["svlm"] = {"name": "c"}
    (tmp_path / "a.json").write_text(json.dumps(a))
    (tmp_path / "b.json").write_text(json.dumps(b))
    rows = load_rows([tmp_path])
    assert {p["strategy"] for p in lcr_points(rows, "demo", "micro_f1")} == {
        "edgevlm (a / b)", "svlm_only (a / b)", "edgevlm (c / b)", "svlm_only (c / b)"}
    assert sorted(delay_series(rows, "demo", "micro_f1")) == ["edgevlm (a / b)", "edgevlm (c / b)"]
    assert {r["series"] for r in sweep_rows(rows, "demo", "K_call")} == {"edgevlm: reproduced a / b",
                                                                         "edgevlm: reproduced c / b"}


def test_results_that_are_not_comparable_are_not_drawn_together(tmp_path):
    a, b = results_doc(), results_doc()
    b["provenance"]["config"]["tau"] = 2.0  # another deadline: the leaderboard would not rank them together
    (tmp_path / "a.json").write_text(json.dumps(a))
    (tmp_path / "b.json").write_text(json.dumps(b))
    with pytest.raises(Exception, match=r"(?s)not comparable.*config\.tau: 1\.0 in a\.json; 2\.0 in b\.json"):
        plot_results([tmp_path], tmp_path / "figs", kinds=("lcr",), formats=("png",), include_paper=False)
    assert not (tmp_path / "figs").exists()
    assert cli.main(["plot", str(tmp_path), "--kind", "lcr", "--out", str(tmp_path / "x"), "--no-paper"]) == 2
    # --allow-mixed: one figure per compatible group, each with its own runs only
    written = plot_results([tmp_path], tmp_path / "figs", kinds=("lcr",), formats=("png",), include_paper=False,
                           allow_mixed=True)
    assert sorted(p.name for p in written) == ["lcr_demo_micro_f1_A.png", "lcr_demo_micro_f1_B.png"]

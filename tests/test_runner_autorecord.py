"""The main command without --trace: the LVLM's trace is recorded once into the output folder
and replayed by every later run."""

from __future__ import annotations

import json

from edgevlm_eval.app.cli import main

BASE = ["--task", "demo", "--svlm", "tiny-qwen2.5-vl", "--limit", "1", "--max-frames", "3", "--edge-fast"]


def test_records_once_then_replays(tmp_path, capsys):
    out = str(tmp_path / "runs")
    assert main([*BASE, "--lvlm", "tiny-qwen2.5-vl", "--strategy", "lvlm_only", "--output-dir", out]) == 0
    traces = list((tmp_path / "runs" / "demo" / "traces").glob("*.jsonl"))
    assert len(traces) == 1
    lines = traces[0].read_text().splitlines()
    assert len(lines) == 1 + 3  # header + one record per frame
    assert json.loads(lines[0])["model"] == "tiny-qwen2.5-vl"
    mtime = traces[0].stat().st_mtime_ns
    err = capsys.readouterr().err
    assert "recording the LVLM trace" in err

    assert main([*BASE, "--lvlm", "tiny-qwen2.5-vl", "--strategy", "edgevlm", "--output-dir", out]) == 0
    assert "recording the LVLM trace" not in capsys.readouterr().err
    assert traces[0].stat().st_mtime_ns == mtime  # replayed, not recorded again
    res = json.loads((tmp_path / "runs" / "demo" / "tiny-qwen2.5-vl__tiny-qwen2.5-vl" / "edgevlm" / "results.json").read_text())
    assert res["provenance"]["trace"]["sha256"]


def test_no_lvlm_no_trace_is_a_clear_error(tmp_path, capsys):
    code = main([*BASE, "--strategy", "edgevlm", "--output-dir", str(tmp_path)])
    assert code == 2
    assert "--lvlm" in capsys.readouterr().err


def test_run_writes_its_plots_unless_told_not_to(tmp_path, capsys):
    out = tmp_path / "runs"
    args = [*BASE, "--lvlm", "tiny-qwen2.5-vl", "--strategy", "svlm_only,edgevlm", "--output-dir", str(out)]
    assert main(args) == 0
    pngs = sorted(p.name for p in (out / "demo" / "tiny-qwen2.5-vl__tiny-qwen2.5-vl" / "svlm_only+edgevlm" / "plots").glob("*.png"))
    assert "lcr_demo_micro_f1.png" in pngs
    assert main([*args, "--run-name", "np", "--no-plots"]) == 0
    assert not (out / "demo" / "tiny-qwen2.5-vl__tiny-qwen2.5-vl" / "np" / "plots").exists()


def test_partial_trace_is_completed_not_redone(tmp_path, capsys):
    out = tmp_path / "runs"
    args = [*BASE, "--lvlm", "tiny-qwen2.5-vl", "--strategy", "lvlm_only", "--output-dir", str(out)]
    assert main(args) == 0
    trace = next((out / "demo" / "traces").glob("*.jsonl"))
    lines = trace.read_text().splitlines()
    trace.write_text("\n".join(lines[:-1]) + "\n")  # as if killed before the last frame
    capsys.readouterr()
    assert main([*args, "--run-name", "again"]) == 0
    assert "recording the LVLM trace" in capsys.readouterr().err
    again = trace.read_text().splitlines()
    assert again[:-1] == lines[:-1]  # the recorded frames kept as they were
    assert len(again) == len(lines)  # only the missing frame added

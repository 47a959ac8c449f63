"""The issue's end-to-end path through the real command line on the demo task with the tiny model:
`edgevlm-eval record`, then `edgevlm-eval --task demo --svlm ... --trace ... --strategy edgevlm
--K-call 3 --K-delay 4`, then a re-score from the log alone."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("edgevlm_eval.model_adapters.registry")
from edgevlm_eval.app import cli  # noqa: E402
from edgevlm_eval.collab.trace import read_trace  # noqa: E402


def test_record_then_run_on_the_demo_task(tmp_path, capsys):
    trace = tmp_path / "trace.jsonl"
    sel = ["--limit", "2", "--max-frames", "3"]
    assert cli.main(["record", "--task", "demo", "--lvlm", "tiny-qwen2.5-vl", "--out", str(trace), *sel]) == 0
    tr = read_trace(trace)
    assert len(tr.records) == 6 and tr.header["model"] == "tiny-qwen2.5-vl"
    out = tmp_path / "out"
    args = ["--task", "demo", "--svlm", "tiny-qwen2.5-vl", "--lvlm", "tiny-qwen2.5-vl", "--trace", str(trace),
            "--strategy", "edgevlm", "--K-call", "3", "--K-delay", "4", "--output-dir", str(out), "--edge-fast", *sel]
    assert cli.main(args) == 0
    folder = out / "demo" / "tiny-qwen2.5-vl__tiny-qwen2.5-vl" / "edgevlm"
    res = json.loads((folder / "results.json").read_text())
    run = res["tasks"]["demo"]["runs"]["edgevlm"]
    assert run["frames"] == 6 and run["uploads"] >= 2  # frame 0 of each stream at least
    assert res["provenance"]["models"]["svlm"]["name"] == "tiny-qwen2.5-vl"
    assert res["provenance"]["models"]["lvlm"]["name"] == "tiny-qwen2.5-vl"
    assert "results:" in capsys.readouterr().out
    # an unknown strategy is refused with the known ones
    assert cli.main(args[:-len(sel) - 1] + ["--strategy", "edgevml", *sel]) == 2
    assert "edgevlm" in capsys.readouterr().err
    # re-score without models or dataset
    before = run
    assert cli.main(["rescore", str(folder), "--task", "demo"]) == 0
    again = json.loads((folder / "results.json").read_text())["tasks"]["demo"]["runs"]["edgevlm"]
    assert again["metrics"] == before["metrics"] and again["lcr"] == before["lcr"]

"""README's main job on the demo with the shipped demo models, network unreachable: edgeVLM (with
CRM) must beat SVLM only and the parallel baseline, as in the paper's ordering.

Measured (seed-0 demo world, 32 streams x 20 frames, the retired `5g` preset's draws, which the
lognormal spec below reproduces; edge 0.3 s): Micro-F1 svlm_only 59.7, parallel 60.9 (the best
baseline), laecips 60.6, laecips-clf 60.0, adas (re-probing) 60.6, edgevlm 64.6 (CRM only 64.1).
The margins below (2 to 2.5 points) leave about 1.2 to 2.2 points of room. `edgevlm-eval compare`
puts edgevlm - parallel at +3.8 points (95 % paired stream-bootstrap interval 0.5 to 7.2)."""

from __future__ import annotations

import json
import socket

import pytest

from edgevlm_eval.app.cli import main

LATENCY = "lognormal:median=1.9,sigma=0.5,rho=0.8,seed=0"  # the retired 5g preset's draws


@pytest.fixture
def no_network(monkeypatch):
    def refuse(*a, **k):
        raise OSError("network access is not allowed in this test")

    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)


def test_demo_edgevlm_beats_svlm_only_and_parallel(tmp_path, no_network, capsys):
    out = tmp_path / "runs"
    # README's main command; a fixed edge latency (well under tau) keeps the outcome independent of
    # this machine's speed.
    code = main(["--task", "demo", "--svlm", "demo-svlm", "--lvlm", "demo-lvlm", "--strategy", "all",
                 "--latency", LATENCY, "--edge-latency", "0.3", "--output-dir", str(out)])
    printed = capsys.readouterr()
    assert code == 0, printed.err
    folder = out / "demo" / "demo-svlm__demo-lvlm" / "all"
    doc = json.loads((folder / "results.json").read_text())
    runs = doc["tasks"]["demo"]["runs"]
    assert list(runs) == ["svlm_only", "lvlm_only", "parallel", "laecips", "laecips-clf", "adas", "edgevlm",
                          "edgevlm+CRM", "edgevlm+GGVR"]
    f1 = {k: v["metrics"]["micro_f1"] for k, v in runs.items()}
    assert f1["edgevlm"] >= f1["svlm_only"] + 0.025, f1
    assert f1["edgevlm"] >= f1["parallel"] + 0.025, f1
    assert f1["edgevlm+CRM"] >= f1["parallel"] + 0.02, f1  # Context Replacement alone carries most of it
    baselines = ("svlm_only", "lvlm_only", "parallel", "laecips", "laecips-clf", "adas")
    assert f1["edgevlm"] >= max(f1[b] for b in baselines) + 0.02, f1  # ahead of every baseline, as in the paper
    assert runs["edgevlm"]["lcr"] == runs["parallel"]["lcr"]  # same keyframe rule, same uploads
    assert runs["svlm_only"]["lcr"] == 0.0
    assert runs["edgevlm"]["lhl"] is not None and runs["edgevlm"]["lhl"] >= 1.0
    assert runs["edgevlm"]["vfm"]["applied"] > 0 and runs["edgevlm+CRM"]["vfm"]["applied"] == 0
    # what README says the command writes: the table, the per-frame log, the figures, the trace
    assert "edgevlm+GGVR" in printed.out and "results:" in printed.out
    assert (folder / "frames.jsonl").stat().st_size > 0
    assert any((folder / "plots").glob("lcr_demo_micro_f1.png"))
    assert len(list((out / "demo" / "traces").glob("demo-lvlm-*.jsonl"))) == 1

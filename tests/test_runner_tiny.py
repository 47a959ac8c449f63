"""End to end with the tiny real Qwen2.5-VL (built in-process, CPU): record a trace with it, then
replay edgeVLM with it as the SVLM, Visual Focus included."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edgevlm_eval.app.record import record
from edgevlm_eval.collab.simulator import SimConfig, Simulator
from edgevlm_eval.collab.strategies import run_of
from edgevlm_eval.collab.strategy import INF
from edgevlm_eval.collab.testing import ScriptedLVLM, toy_streams, toy_task
from edgevlm_eval.collab.trace import read_trace
from edgevlm_eval.core.types import Box

registry = pytest.importorskip("edgevlm_eval.model_adapters.registry")


@pytest.fixture(scope="module")
def tiny():
    try:
        return registry.load_adapter("tiny-qwen2.5-vl")
    except Exception as e:  # the adapters' own tests cover why; here it only gates the end-to-end run
        pytest.skip(f"tiny-qwen2.5-vl unavailable: {e}")


def _streams(tmp_path, n_streams=2, n_frames=3):
    from PIL import Image

    task = toy_task()
    streams = toy_streams(task, n_streams, n_frames, image_dir=str(tmp_path / "img"))
    for s in streams:
        for f in s.frames:
            Path(f.images[0]).parent.mkdir(parents=True, exist_ok=True)
            Image.new("RGB", (160, 96), (40 * f.index, 120, 200)).save(f.images[0])
    return task, streams


def test_record_with_the_tiny_lvlm(tmp_path, tiny):
    task, streams = _streams(tmp_path, 1, 2)
    path = record(task, streams, tiny, tmp_path / "t.jsonl", model="tiny-qwen2.5-vl")
    tr = read_trace(path)
    tr.check_covers(streams, "toy")
    r = tr.get("s0", 1)
    assert r.ok and r.total_s > 0 and r.image_bytes == Path(streams[0].frames[1].images[0]).stat().st_size
    assert tr.header["model_info"]["capabilities"]["grounding"] is True


def test_edgevlm_with_the_tiny_svlm_applies_visual_focus(tmp_path, tiny):
    task, streams = _streams(tmp_path)
    rois = [Box("car", 0, 0, 60, 40), Box("truck", 80, 30, 150, 90)]
    lv = ScriptedLVLM({(s.id, f.index): ("car, truck", rois) for s in streams for f in s.frames})
    tr = read_trace(record(task, streams, lv, tmp_path / "t.jsonl", model="scripted"))
    tr.reparse(task.label_space)
    assert tiny.capabilities.token_focus
    sim = Simulator(task, streams, tr, tiny, SimConfig(edge_latency=0.2, batch_size=4))
    lines = sim.run([run_of("edgevlm", K_call=1, K_delay=INF), run_of("svlm_only")])
    ev = [ln for ln in lines if ln.run == "edgevlm"]
    # lockstep: one batched SVLM call per step (2 streams x 2 runs = 4 requests), 3 steps
    assert len(ev) == 6 and sim.svlm_calls == 3
    with_vfm = [ln for ln in ev if ln.vfm]
    assert with_vfm and all(ln.vfm["applied"] for ln in with_vfm)
    assert all(ln.svlm.ok for ln in lines)
    # the adapter reports how many visual tokens GGVR kept
    kept = [ln.svlm.visual_tokens for ln in with_vfm]
    assert all(k is None or k[1] is None or k[1] <= k[0] for k in kept)
    json.dumps([ln.to_json() for ln in lines])  # every line is JSON as logged
    from edgevlm_eval.collab.accounting import summarise_run

    vt = summarise_run(ev, task)["visual_tokens"]
    assert vt["n"] == 6 and vt["mean_kept"] < vt["mean"]  # GGVR dropped tokens of the LVLM history image

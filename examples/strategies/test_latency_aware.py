"""The example strategy on a constructed trace, with the engine's test doubles (no model, no data):

    pytest -q examples/strategies/test_latency_aware.py
"""

from pathlib import Path

from edgevlm_eval.collab.strategies import resolve_strategy, run_of
from edgevlm_eval.collab.testing import ScriptedSVLM, replay, toy_streams, toy_task, toy_trace

Mine = resolve_strategy(f"{Path(__file__).with_name('latency_aware.py')}:LatencyAwareKCall")


def test_uploads_spread_out_when_the_cloud_slows_down():
    task = toy_task(fps=1.0)  # frames at s_T = T seconds; the deadline tau is 1 s
    streams = toy_streams(task, n_streams=1, n_frames=14)
    # the cloud answers frames 0..3 in 0.5 s (in time), later ones in 3 s (late)
    trace = toy_trace(streams, latency=lambda sid, t: 0.5 if t <= 3 else 3.0, answer="car")
    out = replay(task, streams, trace, ScriptedSVLM(default="pedestrian"), [run_of(Mine, K_base=1)])
    lines = out["latency_aware"]["s0"]
    # K_call is 1 while replies are in time, 2 once the slow replies of frames 4 and 6 are in, then 3
    assert [ln.frame for ln in lines if ln.upload] == [0, 2, 4, 6, 9, 13]
    # an in-time reply is the frame's output; a late one only becomes history (frame 4's, at T = 8)
    assert [ln.output for ln in lines[:5]] == ["lvlm", "svlm", "lvlm", "svlm", "svlm"]
    assert lines[8].history[0] == [4, "lvlm", 4.0]

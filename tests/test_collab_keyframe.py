"""Keyframe decision, deadline, staleness and history assembly (method.md §3), on hand-built
traces whose expected decisions are worked out below frame by frame."""

from __future__ import annotations

import pytest

from edgevlm_eval.collab.simulator import SimConfig, Simulator
from edgevlm_eval.collab.strategies import run_of
from edgevlm_eval.collab.strategy import INF
from edgevlm_eval.collab.testing import ScriptedSVLM, replay, toy_streams, toy_task, toy_trace

# One stream at 1 FPS, tau = 1, K_call = 3, K_delay = 2. Latencies that matter (x = unused):
#   t0: L=1.0 -> a0=1.0 (in time: L = tau exactly)      t4: L=5.0 -> a4=9.0
#   t5: L=2.5 -> a5=7.5 (late)                          t9: L=0.5 -> a9=9.5
# Decisions at s_T = T:
#   t0 upload (nothing arrived, nothing in flight)
#   t1 a0=1.0 <= 1 arrived (a_j = s_T exactly), j*=0, T-j*=1 <= 3 -> k_call
#   t2 T-j*=2 -> k_call;  t3 T-j*=3 = K_call exactly -> k_call
#   t4 T-j*=4 > 3, P=0 -> upload;  t5 P=1 < 2 -> upload
#   t6 P=2 >= K_delay -> k_delay;  t7 a5=7.5 > 7, P=2 -> k_delay
#   t8 a5 arrived, j*=5, 8-5=3 -> k_call (P=1)
#   t9 a4=9.0 arrived (j* stays 5), 9-5=4 > 3, P=0 -> upload
#   t10 a9=9.5 arrived, j*=9 -> k_call
X = 7.0
LAT = [1.0, X, X, X, 5.0, 2.5, X, X, X, 0.5, X]
WHY = ["keyframe", "k_call", "k_call", "k_call", "keyframe", "keyframe", "k_delay", "k_delay", "k_call", "keyframe",
       "k_call"]
IN_FLIGHT = [0, 0, 0, 0, 0, 1, 2, 2, 1, 0, 0]


def _run(spec, lat=LAT, fps=1.0, **cfg):
    task = toy_task(fps=fps)
    streams = toy_streams(task, 1, len(lat))
    trace = toy_trace(streams, latency=lambda s, t: lat[t], answer="car, truck")
    svlm = ScriptedSVLM(default="pedestrian")
    out = replay(task, streams, trace, svlm, [spec], **cfg)
    return out[spec.run_id]["s0"], svlm


def test_keyframe_decisions_by_hand():
    lines, _ = _run(run_of("edgevlm", K_call=3, K_delay=2))
    assert [ln.why for ln in lines] == WHY
    assert [ln.upload for ln in lines] == [w == "keyframe" for w in WHY]
    assert [ln.in_flight for ln in lines] == IN_FLIGHT
    assert [ln.j_star for ln in lines] == [None, 0, 0, 0, 0, 0, 0, 0, 5, 5, 9]
    # output: LVLM when uploaded and L_T <= tau (t0: L = tau exactly; t9), else the SVLM's
    assert [ln.output for ln in lines] == ["lvlm"] + ["svlm"] * 8 + ["lvlm", "svlm"]
    assert lines[0].pred == ["car", "truck"] and lines[1].pred == ["pedestrian"]
    assert lines[4].arrival_s == 9.0 and lines[4].in_time is False


def test_k_call_zero_and_k_delay_inf_switch_rules_off():
    lines, _ = _run(run_of("edgevlm", K_call=0, K_delay=INF))
    assert all(ln.upload for ln in lines)
    lines, _ = _run(run_of("edgevlm", K_call=0, K_delay=2))
    # K_delay only: t0 up (a=1), t1 up (P=0 after a0 arrived; a1=8), t2 up (P=1; a2=9), t3 P=2 -> skip ...
    assert [ln.why for ln in lines][:4] == ["keyframe", "keyframe", "keyframe", "k_delay"]


def test_k_call_takes_precedence_over_k_delay():
    # Both rules fire on this state (a fresh arrival and K_delay requests in flight): K_call decides.
    # (In a replay they cannot both fire: an upload made while j* was in flight is the only way to
    # have K_delay in flight, and then j*'s arrival leaves fewer than K_delay in flight.)
    task = toy_task()
    streams = toy_streams(task, 1, 6)
    trace = toy_trace(streams)
    spec = run_of("edgevlm", K_call=2, K_delay=2)
    sim = Simulator(task, streams, trace, None, SimConfig(check_images=False))
    st = sim._run_state(spec, need_svlm=False).states[0]
    st.j_star = 4
    st.heap = [(99.0, 2), (99.0, 3)]
    strat = spec.make(sim.cfg)
    assert strat.decide(st, 5, 5.0) == (False, "k_call")
    st.j_star = 2  # T - j* = 3 > K_call: now K_delay decides
    assert strat.decide(st, 5, 5.0) == (False, "k_delay")
    st.heap = [(99.0, 3)]
    assert strat.decide(st, 5, 5.0) == (True, "keyframe")


def test_deadline_boundary():
    # L = tau exactly is in time, a hair above is not
    lines, _ = _run(run_of("edgevlm", K_call=0, K_delay=INF), lat=[1.0, 1.0 + 1e-6, 0.999])
    assert [ln.output for ln in lines] == ["lvlm", "svlm", "lvlm"]
    lines, _ = _run(run_of("lvlm_only"), lat=[1.0, 1.0 + 1e-6])
    assert [ln.output for ln in lines] == ["lvlm", "invalid"]
    assert lines[1].invalid == "lvlm_late"


def test_crm_history_lvlm_entry_farthest_and_lhl():
    lines, svlm = _run(run_of("edgevlm", K_call=3, K_delay=2))
    # [frame, source] of each history entry, oldest-position first; j_L first whatever its age
    hist = [[(h[0], h[1]) for h in ln.history] for ln in lines]
    assert hist == [
        [],
        [(0, "lvlm")],
        [(0, "lvlm"), (1, "svlm")],
        [(0, "lvlm"), (2, "svlm")],
        [(0, "lvlm"), (3, "svlm")],
        [(0, "lvlm"), (4, "svlm")],  # frame 4 uploaded but its reply is in flight
        [(0, "lvlm"), (5, "svlm")],
        [(0, "lvlm"), (6, "svlm")],
        [(5, "lvlm"), (7, "svlm")],  # the late reply of frame 5 (arrived 7.5) is reused
        [(5, "lvlm"), (8, "svlm")],
        [(9, "lvlm"), (8, "svlm")],  # j_L = T-1 is newer than frame 8 and still the farthest entry
    ]
    assert [ln.lag for ln in lines] == [None, 1, 2, 3, 4, 5, 6, 7, 3, 4, 1]
    # the requests the SVLM saw: compressed snippets with the task's wording
    req = [r for r in svlm.requests if r.id.endswith("|10")][0]
    assert [e.text for e in req.history] == [
        "This is the image from 1 seconds ago; detected car, truck.",
        "This is the image from 2 seconds ago; detected pedestrian.",
    ]
    assert [e.kind for e in req.history] == ["snippet", "snippet"]
    assert [e.source for e in req.history] == ["lvlm", "svlm"]
    from edgevlm_eval.collab.accounting import summarise_run

    s = summarise_run(lines, toy_task())
    assert s["lhl"] == pytest.approx(36 / 10)  # (1+2+3+4+5+6+7+3+4+1) / 10
    assert s["lcr"] == pytest.approx(4 / 11)
    assert s["uploads"] == 4


def test_staleness_boundary_delta():
    lines, _ = _run(run_of("edgevlm", K_call=3, K_delay=2), delta=5.0)
    # t5: s_T - s_0 = 5 = delta -> j_L = 0 kept; t6, t7: frame 0 is 6, 7 s old -> no j_L, no LVLM entry
    assert lines[5].j_L == 0 and lines[5].history[0][:2] == [0, "lvlm"]
    assert lines[6].j_L is None and [h[:2] for h in lines[6].history] == [[4, "svlm"], [5, "svlm"]]
    assert lines[7].lag is None
    from edgevlm_eval.collab.accounting import summarise_run

    assert summarise_run(lines, toy_task())["lhl"] == pytest.approx(23 / 8)


def test_history_size_H():
    lines, svlm = _run(run_of("edgevlm", K_call=3, K_delay=2), H=3)
    assert [h[:2] for h in lines[5].history] == [[0, "lvlm"], [3, "svlm"], [4, "svlm"]]
    lines, svlm = _run(run_of("edgevlm", K_call=3, K_delay=2), H=1)
    assert [h[:2] for h in lines[5].history] == [[0, "lvlm"]]
    lines, svlm = _run(run_of("edgevlm", K_call=3, K_delay=2), H=0)
    assert all(ln.history == [] for ln in lines)


def test_native_history_without_crm():
    lines, svlm = _run(run_of("edgevlm", K_call=3, K_delay=2, crm=False))
    hist = [[tuple(h[:2]) for h in ln.history] for ln in lines]
    assert hist[1] == [(0, "lvlm")]
    assert hist[2] == [(0, "lvlm"), (1, "svlm")]
    assert hist[3] == [(1, "svlm"), (2, "svlm")]  # the H newest frames, no LVLM entry kept farther back
    assert hist[10] == [(8, "svlm"), (9, "lvlm")]
    assert [ln.lag for ln in lines] == [None, 1, 2] + [None] * 7 + [1]
    req = [r for r in svlm.requests if r.id.endswith("|2")][0]
    assert [(e.kind, e.text, e.query != "") for e in req.history] == [("turn", "car, truck", True),
                                                                      ("turn", "pedestrian", True)]


def test_two_fps_reply_of_previous_frame_arrives_after_s_T():
    # 2 FPS: s = 0, 0.5, 1.0, 1.5. Frame 0's reply takes 0.8 s: in time for frame 0 (its output is
    # the LVLM's) but not yet known at s_1 = 0.5, so frame 1's history holds the SVLM's answer.
    lat = [0.8, 0.3, 0.3, 0.3]
    for spec in (run_of("edgevlm", K_call=0, K_delay=INF), run_of("parallel", K_call=0, K_delay=INF)):
        lines, svlm = _run(spec, lat=lat, fps=2.0)
        assert lines[0].output == "lvlm"
        assert [h[:2] for h in lines[1].history] == [[0, "svlm"]]
        assert lines[1].lag is None
        # at s_2 = 1.0 both replies (a0 = 0.8, a1 = 0.8) are in
        h2 = [h[:2] for h in lines[2].history]
        assert sorted(h2) == [[0, "lvlm"], [1, "lvlm"]]
    lines, svlm = _run(run_of("edgevlm", K_call=0, K_delay=INF), lat=lat, fps=2.0)
    assert [h[:2] for h in lines[2].history] == [[1, "lvlm"], [0, "lvlm"]]  # j_L = 1 farthest
    assert lines[2].history[0][2] == pytest.approx(0.5)

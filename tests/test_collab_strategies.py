"""Each strategy on one small hand-built trace, with its outputs written out (method.md §4)."""

from __future__ import annotations

import pytest

from edgevlm_eval.collab.accounting import summarise_run
from edgevlm_eval.collab.latency import ConstantUplink
from edgevlm_eval.collab.strategies import run_of
from edgevlm_eval.collab.strategy import INF
from edgevlm_eval.collab.testing import ScriptedSVLM, replay, toy_streams, toy_task, toy_trace
from edgevlm_eval.core.errors import DatasetError, UnknownNameError
from edgevlm_eval.core.types import Box

# 1 stream, 1 FPS, tau = 1, edge latency 0.1 s. SVLM says "car"; the LVLM says "car, truck".
LAT = [0.5, 1.5, 0.9, 3.0, 0.2, 1.05]
CONFIDENT = {0, 2}  # LAECIPS: h = 1.0 on these frames, 0.0 elsewhere


def _run(*specs, lat=LAT, svlm=None, **cfg):
    task = toy_task()
    streams = toy_streams(task, 1, len(lat), truth=lambda s, t: ("car", "truck"))
    trace = toy_trace(streams, latency=lambda s, t: lat[t], answer="car, truck")
    svlm = svlm or ScriptedSVLM(default="car", probs={("s0", t): [0.95, 0.99] for t in CONFIDENT},
                                default_prob=0.5)
    cfg.setdefault("uplink", ConstantUplink(8.0))  # 1e6 bytes/s
    out = replay(task, streams, trace, svlm, list(specs), **cfg)
    return {rid: runs["s0"] for rid, runs in out.items()}, svlm


def outputs(lines):
    return [ln.output for ln in lines]


def test_svlm_only():
    r, svlm = _run(run_of("svlm_only"))
    ls = r["svlm_only"]
    assert outputs(ls) == ["svlm"] * 6 and not any(ln.upload for ln in ls)
    assert [ln.pred for ln in ls] == [["car"]] * 6
    # native multi-turn history of its own answers
    assert [h[:2] for h in ls[3].history] == [[1, "svlm"], [2, "svlm"]]
    s = summarise_run(ls, toy_task())
    assert s["lcr"] == 0 and s["lhl"] is None
    # truth {car, truck}, pred {car}: TP 6, FN 6 -> micro-F1 = 2*6 / (2*6 + 6) = 2/3
    assert s["metrics"]["micro_f1"] == pytest.approx(2 / 3)


def test_lvlm_only():
    r, svlm = _run(run_of("lvlm_only"))
    ls = r["lvlm_only"]
    assert outputs(ls) == ["lvlm", "invalid", "lvlm", "invalid", "lvlm", "invalid"]
    assert [ln.invalid for ln in ls] == [None, "lvlm_late", None, "lvlm_late", None, "lvlm_late"]
    assert svlm.requests == []  # the SVLM never runs
    s = summarise_run(ls, toy_task())
    assert s["lcr"] == 1.0
    assert s["invalid"]["by_reason"] == {"lvlm_late": 3}
    # 3 frames exactly right, 3 empty: micro-F1 = 2*6 / (2*6 + 6) = 2/3, EM = 1/2
    assert s["metrics"]["micro_f1"] == pytest.approx(2 / 3)
    assert s["metrics"]["exact_match"] == pytest.approx(0.5)


def test_distributed_vlm_latency():
    # L' = L - upload(100 kB = 0.1 s) + upload(10 x 100 x 2 B = 0.002 s) + 0.05 - 0.02 = L - 0.068
    spec = run_of("distributed_vlm", dvlm_tokens=10, dvlm_hidden=100, dvlm_bytes_per_value=2,
                   dvlm_edge_encoder_s=0.05, dvlm_cloud_encoder_s=0.02)
    r, _ = _run(spec)
    ls = r["distributed_vlm"]
    assert [ln.latency_s for ln in ls] == pytest.approx([x - 0.068 for x in LAT])
    assert outputs(ls) == ["lvlm", "invalid", "lvlm", "invalid", "lvlm", "lvlm"]  # 1.05 -> 0.982: in time
    # the default features of a 1600 x 900 frame (1824 tokens x 2048 x 2 B = 7.47 MB) at 8 Mbps take 7.5 s
    r, _ = _run(run_of("distributed_vlm", dvlm_tokens=1824))
    assert outputs(r["distributed_vlm"]) == ["invalid"] * 6
    # by default the tokens come from the frame's images: these toy frames have none to read
    with pytest.raises(DatasetError, match="dvlm-tokens"):
        _run(run_of("distributed_vlm"))


def test_distributed_vlm_needs_an_uplink():
    with pytest.raises(Exception, match="uplink"):
        _run(run_of("distributed_vlm"), uplink=None)


def test_parallel_all_uploads():
    r, _ = _run(run_of("parallel", K_call=0, K_delay=INF))
    ls = r["parallel"]
    assert outputs(ls) == ["lvlm", "svlm", "lvlm", "svlm", "lvlm", "svlm"]
    # native history of the final outputs known at s_T; frame 1's late reply (a=2.5) is never reused
    assert [h[:2] for h in ls[3].history] == [[1, "svlm"], [2, "lvlm"]]
    assert [h[:2] for h in ls[5].history] == [[3, "svlm"], [4, "lvlm"]]


def test_edgevlm_reuses_delayed_replies():
    r, _ = _run(run_of("edgevlm", K_call=0, K_delay=INF))
    ls = r["edgevlm"]
    assert outputs(ls) == ["lvlm", "svlm", "lvlm", "svlm", "lvlm", "svlm"]
    # t3: A_3 = {0, 1 (a=2.5, late but arrived), 2 (a=2.9)}: j_L = 2 farthest, frame 1 holds the LVLM's answer
    assert [h[:2] for h in ls[3].history] == [[2, "lvlm"], [1, "lvlm"]]
    assert ls[3].j_L == 2 and ls[3].lag == 1


def test_laecips():
    r, _ = _run(run_of("laecips", theta=0.95))
    ls = r["laecips"]
    assert [ln.why for ln in ls] == ["confident", "unconfident", "confident", "unconfident", "unconfident",
                                        "unconfident"]
    # uploaded at s_T + e_T (e = 0.1): in time iff 0.1 + L <= 1: only frame 4 (0.3)
    assert [ln.sent_s for ln in ls if ln.upload] == pytest.approx([1.1, 3.1, 4.1, 5.1])
    assert outputs(ls) == ["svlm", "svlm", "svlm", "svlm", "lvlm", "svlm"]
    assert [ln.svlm.conf for ln in ls] == [1.0, 0.0, 1.0, 0.0, 0.0, 0.0]
    assert summarise_run(ls, toy_task())["lcr"] == pytest.approx(4 / 6)
    r, _ = _run(run_of("laecips", theta=0.95, laecips_fallback=False))
    assert outputs(r["laecips"]) == ["svlm", "invalid", "svlm", "invalid", "lvlm", "invalid"]


def test_laecips_needs_logprobs():
    with pytest.raises(DatasetError, match="token probabilities"):
        _run(run_of("laecips"), svlm=ScriptedSVLM(logprobs=False))


def test_adas_proxy():
    # kappa = 1, beta = 0.5. pred = EWMA x (1 + in flight), 0 before any reply.
    # t0 pred 0 -> up (a=0.5); t1 EWMA 0.5, P 0 -> 0.5 -> up (a=2.5); t2 P 1 -> 1.0 = kappa*tau -> up (a=2.9);
    # t3 EWMA <- 1.5 then 0.9: 1.0, 0.95; P 0 -> up (a=6.0); t4 P 1 -> 1.9 -> skip; t5 -> skip
    r, _ = _run(run_of("adas", kappa=1.0, adas_beta=0.5))
    ls = r["adas"]
    assert [ln.upload for ln in ls] == [True, True, True, True, False, False]
    assert [ln.why for ln in ls][3:] == ["predicted_in_time", "predicted_late", "predicted_late"]
    assert outputs(ls) == ["lvlm", "svlm", "lvlm", "svlm", "svlm", "svlm"]


def test_unknown_strategy_lists_known():
    with pytest.raises(UnknownNameError) as e:
        run_of("edgevml")
    assert "edgevlm" in str(e.value) and "laecips" in str(e.value)


def test_vfm_focus_handed_to_a_capable_adapter():
    task = toy_task()
    streams = toy_streams(task, 1, 3)
    rois = [Box("car", 0, 0, 10, 10), Box("car", 0, 0, 50, 50), Box("truck", 5, 5, 20, 30)]
    trace = toy_trace(streams, latency=0.5, answer="car, truck", rois=lambda s, t: rois if t == 0 else ())
    svlm = ScriptedSVLM(default="car", token_focus=True)
    out = replay(task, streams, trace, svlm, [run_of("edgevlm", K_call=5, K_delay=INF)])
    ls = out["edgevlm"]["s0"]
    req = [r for r in svlm.requests if r.id.endswith("|1")][0]
    # GGVR: the largest ROI per category of j_L's image (entry 0); GRVR: the same ROIs, alpha, mu
    assert req.focus.prune == {0: (rois[1], rois[2])}
    assert req.focus.reweight_source == 0 and req.focus.reweight_rois == (rois[1], rois[2])
    assert (req.focus.alpha, req.focus.mu) == (0.7, 1.0)
    assert ls[1].vfm["applied"] is True and ls[1].vfm["rois"] == 2
    s = summarise_run(ls, task)
    assert s["vfm"]["requested"] == 2 and s["vfm"]["applied"] == 2
    # ggvr only
    svlm = ScriptedSVLM(default="car", token_focus=True)
    replay(task, streams, trace, svlm, [run_of("edgevlm", K_call=5, K_delay=INF, grvr=False)])
    f = svlm.requests[1].focus
    assert f.prune == {0: (rois[1], rois[2])} and f.reweight_source is None


def test_vfm_not_applied_is_recorded():
    task = toy_task()
    streams = toy_streams(task, 1, 3)
    trace = toy_trace(streams, latency=0.5, rois=lambda s, t: [Box("car", 0, 0, 5, 5)])
    svlm = ScriptedSVLM(default="car", token_focus=False)
    out = replay(task, streams, trace, svlm, [run_of("edgevlm", K_call=5, K_delay=INF)])
    ls = out["edgevlm"]["s0"]
    assert all(r.focus is None for r in svlm.requests)
    assert ls[1].vfm == {"source": 0, "entry": 0, "rois": 1, "ggvr": True, "grvr": True, "applied": False,
                            "reason": "SVLM adapter cannot apply token focus"}
    s = summarise_run(ls, task)
    assert s["vfm"]["applied"] == 0 and s["vfm"]["not_applied"] == {"SVLM adapter cannot apply token focus": 2}


def test_invalid_svlm_reply_and_unmapped_words_are_counted():
    task = toy_task()
    streams = toy_streams(task, 1, 4)
    trace = toy_trace(streams, latency=5.0, answer="car, spaceship")
    svlm = ScriptedSVLM(answers={("s0", 1): "car, unicorn"}, default="car", fail={("s0", 2): "CUDA OOM"})
    out = replay(task, streams, trace, svlm, [run_of("svlm_only"), run_of("edgevlm", K_call=0, K_delay=INF)])
    ls = out["svlm_only"]["s0"]
    assert outputs(ls) == ["svlm", "svlm", "invalid", "svlm"]
    assert ls[2].invalid == "svlm_error" and ls[2].detail == "CUDA OOM"
    assert ls[2].pred is None
    # the failed frame carries no answer: frame 3's history skips it
    assert [h[0] for h in ls[3].history] == [0, 1]
    s = summarise_run(ls, task)
    assert s["invalid"] == {"total": 1, "scored": 1, "by_reason": {"svlm_error": 1}}
    assert s["unmapped"]["svlm"] == {"frames": 1, "top": [["unicorn", 1]]}
    s = summarise_run(out["edgevlm"]["s0"], task)
    assert s["unmapped"]["lvlm"]["frames"] == 4 and s["unmapped"]["lvlm"]["top"] == [["spaceship", 4]]


def test_edge_latency_over_tau_invalidates_unless_edge_fast():
    task = toy_task()
    streams = toy_streams(task, 1, 2)
    svlm = ScriptedSVLM(default="car")
    out = replay(task, streams, None, svlm, [run_of("svlm_only")], edge_latency=1.5)
    assert [ln.invalid for ln in out["svlm_only"]["s0"]] == ["svlm_late", "svlm_late"]
    assert out["svlm_only"]["s0"][0].svlm.e_s == 1.5
    out = replay(task, streams, None, svlm, [run_of("svlm_only")], edge_latency=1.5, edge_fast=True)
    assert outputs(out["svlm_only"]["s0"]) == ["svlm", "svlm"]


def test_failed_lvlm_reply_is_not_a_result():
    task = toy_task()
    streams = toy_streams(task, 1, 3)
    trace = toy_trace(streams, latency=0.5, answer="car, truck", ok=lambda s, t: t != 0)
    out = replay(task, streams, trace, ScriptedSVLM(default="car"),
                 [run_of("edgevlm", K_call=2, K_delay=INF), run_of("lvlm_only")])
    ls = out["edgevlm"]["s0"]
    # frame 0's reply failed: SVLM answer stands, not in A_1 (no K_call skip, no history entry)
    assert outputs(ls)[0] == "svlm" and ls[1].why == "keyframe" and ls[1].j_L is None
    assert out["lvlm_only"]["s0"][0].invalid == "lvlm_error"


class _Timed(ScriptedSVLM):
    """Sleeps a known time per request; its first call (the warm-up) is much slower."""

    def __init__(self):
        super().__init__(default="car")
        self.sizes = []

    def generate(self, requests):
        import time

        self.sizes.append(len(requests))
        time.sleep((0.4 if len(self.sizes) == 1 else 0.0) + 0.03 * len(requests))
        return super().generate(requests)


def test_measured_edge_latency_times_single_requests_after_a_warm_up():
    task = toy_task()
    streams = toy_streams(task, 3, 2)
    svlm = _Timed()
    out = replay(task, streams, None, svlm, [run_of("svlm_only")], edge_latency="measured", batch_size=8)
    assert svlm.sizes == [1] * 7  # one warm-up call, then the 6 requests one at a time (batch size ignored)
    es = [ln.svlm.e_s for ls in out["svlm_only"].values() for ln in ls]
    assert len(es) == 6 and all(0.03 <= e < 0.3 for e in es)  # the slow warm-up is not any frame's latency


def test_declared_and_file_edge_latency(tmp_path):
    task = toy_task()
    streams = toy_streams(task, 1, 3)
    f = tmp_path / "edge.csv"
    f.write_text("stream,frame,e_s\ns0,0,0.2\ns0,1,1.4\ns0,2,0.3\n")
    out = replay(task, streams, None, ScriptedSVLM(default="car"), [run_of("svlm_only")], edge_latency=f"file:{f}")
    ls = out["svlm_only"]["s0"]
    assert [ln.svlm.e_s for ln in ls] == [0.2, 1.4, 0.3] and [ln.invalid for ln in ls] == [None, "svlm_late", None]
    f.write_text("stream,frame,e_s\ns0,0,0.2\n")
    with pytest.raises(DatasetError, match="no line for"):
        replay(task, streams, None, ScriptedSVLM(default="car"), [run_of("svlm_only")], edge_latency=f"file:{f}")

"""The model-free keyframe replay (collab/planner.py) and `edgevlm-eval plan`."""

from __future__ import annotations

import json
import math
import random

import pytest

from edgevlm_eval.app.cli import main as cli_main
from edgevlm_eval.collab import simulator
from edgevlm_eval.collab.accounting import summarise_run
from edgevlm_eval.collab.latency import parse_latency
from edgevlm_eval.collab.planner import (LOOKBACK, PlanTotals, keyframe_decider, parse_k_calls, parse_k_delay,
                                          replay_stream, synthetic_streams)
from edgevlm_eval.collab.search import dry_lcr
from edgevlm_eval.collab.simulator import SimConfig, Simulator
from edgevlm_eval.collab.strategies import run_of
from edgevlm_eval.collab.strategy import INF
from edgevlm_eval.collab.testing import ScriptedSVLM, replay, toy_streams, toy_task, toy_trace
from edgevlm_eval.core.errors import ConfigError


def _totals(r) -> PlanTotals:
    t = PlanTotals()
    t.add(r)
    return t


def test_hand_worked_timeline():
    # 1 stream, frames at s = 0..7 s, K_call 1, K_delay 2, tau 1, delta 10, H 2. Only uploaded frames'
    # latencies matter (frames 1, 3, 6 are skipped, so their 2.5 / 1.5 / 0.6 never count).
    #  T  arrived by s_T      j*  P  decision            a_T   in time  lag (T - j_L)
    #  0  -                   -1  0  upload (no reply)   0.5   yes      -   (no LVLM reply yet)
    #  1  0 (a=0.5)            0  0  skip: 1-0 <= 1      -              1
    #  2  -                    0  0  upload: 2-0 > 1     2.8   yes      2
    #  3  2 (a=2.8)            2  0  skip                -              1
    #  4  -                    2  0  upload              7.0   no (3 s) 2
    #  5  -                    2  1  upload: P 1 < 2     5.4   yes      3
    #  6  5 (a=5.4)            5  1  skip: 6-5 <= 1      -              1
    #  7  4 (a=7.0; j* stays 5) 5  0  upload: 7-5 > 1     7.9   yes      2
    # LCR 5/8 = 0.625; LHL (1+2+1+2+3+1+2)/7 = 12/7; in time 4/5; mean in flight 2/8.
    s = [float(t) for t in range(8)]
    L = [0.5, 2.5, 0.8, 1.5, 3.0, 0.4, 0.6, 0.9]
    r = replay_stream(s, L, keyframe_decider(1, 2))
    assert r.upload == [True, False, True, False, True, True, False, True]
    assert r.why == ["keyframe", "k_call", "keyframe", "k_call", "keyframe", "keyframe", "k_call", "keyframe"]
    assert r.j_star == [-1, 0, 0, 2, 2, 2, 5, 5]
    assert r.in_flight == [0, 0, 0, 0, 0, 1, 1, 0]
    assert r.lag == [None, 1, 2, 1, 2, 3, 1, 2]
    t = _totals(r)
    assert (t.lcr, t.lhl_frames, t.in_time_share, t.in_flight_mean) == (0.625, 12 / 7, 0.8, 0.25)
    assert t.lhl_s == pytest.approx(12 / 7)
    # H 1 and delta 0.5 s: j_L is never fresh enough, so the one history slot is frame T-1, which holds
    # the LVLM's answer only if T-1 was uploaded and its reply arrived by s_T: frames 1, 3, 6 -> lag 1.
    r = replay_stream(s, L, keyframe_decider(1, 2), H=1, delta=0.5)
    assert r.lag == [None, 1, None, 1, None, None, 1, None]
    # seconds follow the timestamps: at 2 FPS the same frames lag half as long
    r2 = replay_stream([t / 2 for t in s], L, keyframe_decider(1, 2))
    assert all(g is None or gs == pytest.approx(g / 2) for g, gs in zip(r2.lag, r2.lag_s))


def test_hand_worked_k_delay_block():
    # K_call off, K_delay 2, every latency 2.5 s (a_T = T + 2.5):
    # T0 up (a 2.5); T1 P 1 -> up (a 3.5); T2 P 2 -> skip (k_delay); T3 0 arrived, j* 0, P 1 -> up (a 5.5);
    # T4 1 arrived, j* 1, P 1 -> up (a 6.5); T5 nothing arrived (5.5 > 5), P 2 -> skip; T6 3 arrived, j* 3,
    # P 1 -> up; T7 4 arrived, j* 4, P 1 -> up. Uploads 6/8; lags T3..T7 = 3, 3, 4, 3, 3 -> 16/5.
    r = replay_stream([float(t) for t in range(8)], [2.5] * 8, keyframe_decider(0, 2))
    assert r.upload == [True, True, False, True, True, False, True, True]
    assert [r.why[2], r.why[5]] == ["k_delay", "k_delay"]
    assert r.in_flight == [0, 1, 2, 1, 1, 2, 1, 1]
    assert r.lag == [None, None, None, 3, 3, 4, 3, 3]
    t = _totals(r)
    assert (t.lcr, t.lhl_frames, t.in_time_share) == (0.75, 16 / 5, 0.0)


def test_unusable_replies_and_skipped_frames():
    s = [float(t) for t in range(6)]
    # frame 0's reply is unusable: it never becomes j*, so frame 1 uploads again
    r = replay_stream(s, [0.5] * 6, keyframe_decider(2, 4), ok=[False, True, True, True, True, True])
    assert r.upload[:2] == [True, True] and r.j_star[2] == 1
    # an unusable image: no decision, and the history window steps over it
    r = replay_stream(s, [0.5] * 6, keyframe_decider(0, 4), skip=[False, True, False, False, False, False])
    assert r.why[1] == "image_error" and not r.upload[1]
    assert LOOKBACK == simulator.LOOKBACK


@pytest.mark.parametrize("trial", range(8))
def test_planner_equals_the_simulator(trial):
    """LCR and LHL of the planner = those of the simulator (fake SVLM, edgevlm strategy, accounting.py)."""
    rng = random.Random(trial)
    task = toy_task(fps=rng.choice([1.0, 2.0]))
    streams = toy_streams(task, 5, rng.randint(12, 30))
    lat_spec = (f"lognormal:median={rng.uniform(0.3, 4):.3f},sigma={rng.uniform(0, 1.5):.3f},"
                f"rho={rng.uniform(0, 0.95):.3f},seed={trial}") if trial % 3 else f"paper-5g:seed={trial}"
    lat = parse_latency(lat_spec).latencies(streams, None)
    ok = {(s.id, f.index): rng.random() > 0.1 for s in streams for f in s.frames}
    tr = toy_trace(streams, latency=lambda s, t: float(lat[s][t]), ok=lambda s, t: ok[(s, t)])
    K_call, K_delay = rng.randint(0, 6), rng.choice([1, 2, 4, INF])
    delta, H, crm = rng.choice([1.0, 3.0, 10.0]), rng.choice([1, 2, 3]), trial % 4 != 0
    spec = run_of("edgevlm", K_call=K_call, K_delay=K_delay, crm=crm, ggvr=False, grvr=False)
    out = replay(task, streams, tr, ScriptedSVLM(), [spec], delta=delta, H=H, latency=lat_spec)
    summ = summarise_run([ln for ls in out["edgevlm"].values() for ln in ls], task)
    tot = PlanTotals()
    for s in streams:
        tot.add(replay_stream([f.timestamp_s for f in s.frames], lat[s.id], keyframe_decider(K_call, K_delay),
                              delta=delta, H=H, crm=crm, ok=[ok[(s.id, f.index)] for f in s.frames]))
    assert tot.lcr == summ["lcr"]
    assert tot.lhl_frames == summ["lhl"]
    assert tot.lag_n == summ["lhl_n"]
    uploaded = [ln for ls in out["edgevlm"].values() for ln in ls if ln.upload]
    assert tot.in_time_share == summ["lvlm_in_time"]
    assert tot.in_flight_sum == sum(ln.in_flight for ls in out["edgevlm"].values() for ln in ls)
    assert len(uploaded) == tot.uploads


@pytest.mark.parametrize("strategy", ["edgevlm", "parallel", "adas"])
def test_dry_lcr_is_the_simulators_lcr(strategy):
    task = toy_task()
    streams = toy_streams(task, 4, 25)
    lat = "lognormal:median=1.3,sigma=0.8,rho=0.6,seed=3"
    tr = toy_trace(streams, ok=lambda s, t: (t * 7 + len(s)) % 9 != 0)
    tr.reparse(task.label_space)
    knobs = {"adas": dict(kappa=1.5)}.get(strategy, dict(K_call=2, K_delay=3))
    spec = run_of(strategy, **knobs)
    sim = Simulator(task, streams, tr, ScriptedSVLM(), SimConfig(check_images=False, edge_latency=0.1, latency=lat))
    lines = sim.run([spec])
    assert dry_lcr(sim, spec) == summarise_run(lines, task)["lcr"]


def test_table1_shape_runs_in_seconds():
    import time

    streams = synthetic_streams(156, 20, 1.0)
    src = parse_latency("paper-5g")
    times = [[f.timestamp_s for f in s.frames] for s in streams]
    from edgevlm_eval.collab.planner import plan_table

    t0 = time.perf_counter()
    draws = []
    for sd in range(5):
        a = src.with_seed(sd).latencies(streams, None)
        draws.append((sd, [a[s.id] for s in streams]))
    rows = plan_table(times, draws, range(1, 10), 4)
    assert len(rows) == 9 and rows[0].frames == 3120
    assert time.perf_counter() - t0 < 20  # about 0.3 s alone; generous for a loaded machine


def test_parsers():
    assert parse_k_calls("1-9") == list(range(1, 10))
    assert parse_k_calls("1,3,5") == [1, 3, 5]
    assert parse_k_calls("4") == [4]
    assert parse_k_calls("0-2,5") == [0, 1, 2, 5]
    for bad, msg in [("9-1", "backwards"), ("a", "expected a range"), ("", "no value"), ("-2", "expected a range|>= 0"),
                     ("1.5", "expected a range")]:
        with pytest.raises(ConfigError, match=msg):
            parse_k_calls(bad)
    assert parse_k_delay("4") == 4 and parse_k_delay("inf") == INF
    for bad in ("x", "-1", "2.5", "nan"):
        with pytest.raises(ConfigError, match="K-delay"):
            parse_k_delay(bad)
    with pytest.raises(ConfigError, match="--fps"):
        synthetic_streams(2, 3, math.nan)
    with pytest.raises(ConfigError, match="--streams"):
        synthetic_streams(0, 3, 1.0)


def test_plan_cli_json(tmp_path, capsys):
    out = tmp_path / "plan.json"
    rc = cli_main(["plan", "--streams", "12", "--frames", "15", "--fps", "1", "--latency", "paper-5g",
                   "--K-call", "1,3", "--K-delay", "4", "--seeds", "3", "--json", str(out)])
    assert rc == 0
    rows = json.loads(out.read_text())
    assert [r["K_call"] for r in rows] == [1, 3]
    for r in rows:
        assert {"K_call", "K_delay", "lcr", "lhl_s", "lhl_frames", "in_time_share", "in_flight_mean", "seeds",
                "spread"} <= set(r)
        assert r["K_delay"] == 4 and 0 < r["lcr"] <= 1 and r["seeds"] == [0, 1, 2]
    assert rows[0]["lcr"] > rows[1]["lcr"]  # a larger K_call calls less
    printed = capsys.readouterr().out
    assert "LHL (s)" in printed and "in time" in printed
    # the JSON's numbers are the planner's: the same through the library
    streams = synthetic_streams(12, 15, 1.0)
    tot = PlanTotals()
    src = parse_latency("paper-5g:seed=1")
    a = src.latencies(streams, None)
    for s in streams:
        tot.add(replay_stream([f.timestamp_s for f in s.frames], a[s.id], keyframe_decider(3, 4)))
    lcrs = []
    for sd in range(3):
        t = PlanTotals()
        a = src.with_seed(sd).latencies(streams, None)
        for s in streams:
            t.add(replay_stream([f.timestamp_s for f in s.frames], a[s.id], keyframe_decider(3, 4)))
        lcrs.append(t.lcr)
    assert rows[1]["lcr"] == pytest.approx(sum(lcrs) / 3, abs=1e-12)


def test_plan_cli_task_and_deterministic_source(tmp_path, capsys):
    out = tmp_path / "p.json"
    assert cli_main(["plan", "--task", "demo", "--latency", "fixed:1.5", "--K-call", "2", "--seeds", "3",
                     "--limit", "3", "--json", str(out)]) == 0
    rows = json.loads(out.read_text())
    assert len(rows) == 1 and rows[0]["seeds"] == [None]  # fixed: no seed, one draw
    assert rows[0]["in_time_share"] == 0.0  # 1.5 s > tau
    assert "no seed" in capsys.readouterr().out


@pytest.mark.parametrize("argv, msg", [
    (["--streams", "3", "--frames", "4", "--fps", "1", "--latency", "gaussian:1"], "unknown latency source"),
    (["--streams", "3", "--frames", "4", "--fps", "1", "--latency", "paper-5g:sigma=2"], "only seed"),
    (["--streams", "3", "--frames", "4", "--fps", "1", "--latency", "paper-5g", "--K-call", "9-1"], "backwards"),
    (["--streams", "3", "--frames", "4", "--fps", "1", "--latency", "paper-5g", "--seeds", "0"], "--seeds"),
    (["--streams", "3", "--frames", "4", "--fps", "0", "--latency", "paper-5g"], "--fps"),
    (["--streams", "3", "--frames", "4", "--fps", "nan", "--latency", "paper-5g"], "--fps"),
    (["--streams", "3", "--frames", "4", "--latency", "paper-5g"], "--streams N --frames M --fps F"),
    (["--task", "demo", "--streams", "3", "--latency", "paper-5g"], "not both"),
    (["--streams", "3", "--frames", "4", "--fps", "1", "--latency", "paper-5g", "--tau", "nan"], "--tau"),
    (["--streams", "3", "--frames", "4", "--fps", "1", "--latency", "paper-5g", "--K-delay", "x"], "K-delay"),
    (["--streams", "3", "--frames", "4", "--fps", "1", "--latency", "measured"], "needs an LVLM trace"),
])
def test_plan_cli_bad_input(argv, msg, capsys):
    rc = cli_main(["plan", *argv])
    assert rc != 0
    captured = capsys.readouterr()
    assert msg in captured.out + captured.err

"""The engine against a literal, slow transcription of method.md §3-4 (sets rebuilt from scratch at
every frame), on random latencies, failures and knobs: decisions, histories and outputs agree."""

from __future__ import annotations

import random

import pytest

from edgevlm_eval.collab.strategies import run_of
from edgevlm_eval.collab.strategy import INF
from edgevlm_eval.collab.testing import ScriptedSVLM, replay, toy_streams, toy_task, toy_trace

EPS = 1e-9


def reference(strategy, L, ok, fps, K_call, K_delay, tau, delta, H, crm=True):
    n = len(L)
    s = [t / fps for t in range(n)]
    a = {}  # uploaded frame -> arrival
    out = []
    final_lvlm = set()  # frames whose output was the LVLM's (parallel's reusable answers)
    for T in range(n):
        A = [j for j in a if a[j] <= s[T] + EPS and ok[j]]
        P = len([j for j in a if a[j] > s[T] + EPS])
        jstar = max(A) if A else None
        if A and K_call > 0 and T - jstar <= K_call:
            up, why = False, "k_call"
        elif P >= K_delay:
            up, why = False, "k_delay"
        else:
            up, why = True, "keyframe"
        # history, from what is known at s_T
        if strategy == "edgevlm":
            known = lambda j: j in A  # noqa: E731  (every arrived usable reply, late or not)
        else:
            known = lambda j: j in final_lvlm and a[j] <= s[T] + EPS  # noqa: E731
        if strategy == "edgevlm" and crm:
            fresh = [j for j in A if s[T] - s[j] <= delta + EPS]
            jL = max(fresh) if fresh else None
        else:
            jL = None
        if jL is not None:
            others = [j for j in range(T - 1, -1, -1) if j != jL][: H - 1]
            hist = [jL] + others[::-1]
        else:
            hist = list(range(max(0, T - H), T))
        rows = [(j, "lvlm" if known(j) else "svlm") for j in hist]
        if up:
            a[T] = s[T] + L[T]
        output = "lvlm" if up and L[T] <= tau + EPS and ok[T] else "svlm"
        if output == "lvlm":
            final_lvlm.add(T)
        lv = [j for j, src in rows if src == "lvlm"]
        out.append((up, why, rows, output, T - max(lv) if lv else None))
    return out


@pytest.mark.parametrize("seed", range(30))
def test_engine_matches_the_literal_method(seed):
    rng = random.Random(seed)
    n = 60
    fps = rng.choice([1.0, 2.0])
    L = [round(rng.lognormvariate(0.0, 0.8), 2) for _ in range(n)]
    ok = [rng.random() > 0.1 for _ in range(n)]
    K_call = rng.choice([0, 1, 2, 3, 5])
    K_delay = rng.choice([1, 2, 4, INF])
    delta = rng.choice([2.0, 10.0])
    H = rng.choice([1, 2, 3])
    crm = rng.random() > 0.3
    strategy = rng.choice(["edgevlm", "edgevlm", "parallel"])
    task = toy_task(fps=fps)
    streams = toy_streams(task, 1, n)
    trace = toy_trace(streams, latency=lambda s_, t: L[t], answer="car, truck", ok=lambda s_, t: ok[t])
    spec = run_of(strategy, K_call=K_call, K_delay=K_delay, **({"crm": crm} if strategy == "edgevlm" else {}))
    got = replay(task, streams, trace, ScriptedSVLM(default="car"), [spec], delta=delta, H=H)[spec.run_id]["s0"]
    want = reference(strategy, L, ok, fps, K_call, K_delay, 1.0, delta, H, crm=crm)
    for T, (ln, (up, why, rows, output, lag)) in enumerate(zip(got, want)):
        assert (ln.upload, ln.why) == (up, why), T
        assert [tuple(h[:2]) for h in ln.history] == rows, T
        assert ln.output == output, T
        assert ln.lag == lag, T
        if ln.vfm is not None:  # focus only from a fresh j_L (CRM) or the newest LVLM entry (native)
            assert ln.vfm["source"] == (ln.j_L if crm or strategy != "edgevlm" else T - lag)

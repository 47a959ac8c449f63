"""Fit the `paper-5g` latency source to the paper's Table 1 (docs/latency.md says what and why).

    python scripts/fit_paper_latency.py [--out results/latency/paper_5g_fit.json] [--quick]

Table 1 (nuScenes, K_delay = 4, tau = 1 s, 1 FPS): LCR and LHL for K_call = 1..9. The keyframe rule's
LCR and LHL depend only on the latency process, so each candidate parameter set is scored by the
model-free replay (collab/planner.py, the engine's rule) on the paper's nuScenes shape, 156 streams x
20 frames at 1 FPS, on fixed latency draws (common random numbers: the draws stay, the parameters
move), with the loss

    sum over K_call of ((LCR - paper) / 2 points)^2 + ((LHL - paper) / 0.3 s)^2   [+ mean term]

(the tolerances of the target). Two families are fitted, each by differential evolution (seeded)
and a Nelder-Mead polish:
  lognormal  log-normal AR(1), 3 parameters (the `lognormal:` source; `5g` is one of them)
  burst      the same body with Markov bursts (BurstParams), 7 parameters, once on Table 1 alone and
             once with Table 3's mean LVLM-only time (2110.83 ms per frame) as a further term
The fit uses draw seeds 1000..1000+F-1; the table it reports is on seeds 0..4 through the real source
(`edgevlm-eval plan --latency paper-5g --seeds 5` prints the same). The per-task variants' scales are
chosen so that the share of frames with L <= tau matches the in-time share inferred from Table 2.
Deterministic; about 5 minutes on one core (--quick: a smoke run of a few seconds).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from edgevlm_eval.collab.latency import (PAPER_5G, PAPER_VARIANTS, BurstParams, PaperLatency, parse_latency,
                                          stream_draws)
from edgevlm_eval.collab.planner import plan_table, synthetic_streams

TABLE1_LCR = [69.1, 38.9, 27.3, 23.5, 19.0, 18.4, 17.8, 14.4, 13.0]  # %
TABLE1_LHL = [1.89, 2.56, 3.31, 3.79, 4.12, 4.54, 5.14, 5.48, 5.66]  # s (frames at 1 FPS)
K_CALLS = list(range(1, 10))
K_DELAY, TAU, DELTA = 4, 1.0, 10.0
SHAPE = (156, 20, 1.0)  # nuScenes: 156 scenes of about 20 s at 1 FPS (paper §4.1.1)
LCR_TOL, LHL_TOL = 2.0, 0.3  # the target's tolerances: points, seconds
TABLE3_MEAN_S, MEAN_TOL = 2.11083, 0.1  # Table 3: LVLM only, total 2110.83 ms per frame

# Table 2 numbers the variants are inferred from (%): SVLM only S, LVLM only V, edgeVLM at 100 % LCR E,
# edgeVLM in the lowest LCR band B (an estimate of SVLM-with-LVLM-history accuracy). 0-1 EM for the
# multi-object tasks, Acc for the others (metrics where a late, invalid frame scores 0).
TABLE2 = {
    "nuscenes (0-1 EM)": {"S": 13.80, "V": 18.98, "E": 29.41, "B": 21.99},
    "bdd100k_mot (0-1 EM)": {"S": 6.59, "V": 21.77, "E": 35.08, "B": 23.66},
    "ipn_hand (Acc)": {"S": 36.68, "V": 22.55, "E": 52.45, "B": 46.20},
    "ace (Acc)": {"S": 22.86, "V": 60.14, "E": 63.00, "B": 34.71},
}
VARIANT_TASK = {"paper-5g-2img": "ipn_hand (Acc)", "paper-5g-short": "ace (Acc)"}


def inferred_in_time(t: dict) -> dict:
    """LVLM only scores q*A (late frames are invalid: 0); edgeVLM at 100 % LCR scores q*A + (1-q)*S_h
    (the SVLM with history on the late frames), so 1 - q = (E - V) / S_h. S_h is unknown: S (no help
    from history) gives the low end, E the high end, B the point estimate."""
    q = lambda sh: max(0.0, 1 - (t["E"] - t["V"]) / sh)  # noqa: E731 (a share; S can be too small to bound it)
    return {"low": round(q(t["S"]), 4), "point": round(q(t["B"]), 4), "high": round(q(t["E"]), 4)}


class Problem:
    def __init__(self, seeds):
        self.streams = synthetic_streams(*SHAPE)
        self.times = [[f.timestamp_s for f in s.frames] for s in self.streams]
        self.seeds = list(seeds)
        # common random numbers: one (z, u, w) matrix per seed, rows = streams (all of one length)
        self.draws = {}
        for sd in self.seeds:
            zs, us, ws = zip(*(stream_draws(sd, s.id, len(s)) for s in self.streams))
            self.draws[sd] = (np.array(zs), np.array(us), np.array(ws))

    def table(self, p: BurstParams):
        draws = [(sd, list(p.transform(*self.draws[sd]))) for sd in self.seeds]
        rows = plan_table(self.times, draws, K_CALLS, K_DELAY, tau=TAU, delta=DELTA)
        return rows

    def loss(self, p: BurstParams, with_mean: bool) -> float:
        rows = self.table(p)
        out = 0.0
        for r, lcr, lhl in zip(rows, TABLE1_LCR, TABLE1_LHL):
            out += ((100 * r.lcr - lcr) / LCR_TOL) ** 2 + ((r.lhl_s - lhl) / LHL_TOL) ** 2
        if with_mean:
            out += ((p.mean_s() - TABLE3_MEAN_S) / MEAN_TOL) ** 2
        return out


FAMILIES = {
    # name: (bounds of the free parameters, params from a vector, fit the Table 3 mean too?)
    "lognormal": ([(0.2, 3.0), (0.0, 1.6), (0.0, 0.98)],
                  lambda v: BurstParams(v[0], v[1], v[2], 0.0, 0.0, 1.0, 0.0), False),
    "burst": ([(0.2, 3.0), (0.0, 1.2), (0.0, 0.98), (0.0, 0.3), (0.0, 0.95), (1.0, 30.0), (0.0, 1.2)],
              lambda v: BurstParams(*v), False),
    "burst+mean": ([(0.2, 3.0), (0.0, 1.2), (0.0, 0.98), (0.0, 0.3), (0.0, 0.95), (1.0, 30.0), (0.0, 1.2)],
                   lambda v: BurstParams(*v), True),
}


def fit_family(prob: Problem, name: str, *, maxiter: int, popsize: int, polish_fev: int) -> tuple[BurstParams, float]:
    from scipy.optimize import differential_evolution, minimize

    bounds, make, with_mean = FAMILIES[name]

    def f(v):
        v = np.clip(v, [b[0] for b in bounds], [b[1] for b in bounds])
        return prob.loss(make(v), with_mean)

    r = differential_evolution(f, bounds, seed=0, popsize=popsize, maxiter=maxiter, tol=1e-9, polish=False,
                               init="sobol", workers=1)
    x = r.x
    if polish_fev:
        m = minimize(f, x, method="Nelder-Mead", options={"maxfev": polish_fev, "xatol": 1e-4, "fatol": 1e-6})
        if m.fun < r.fun:
            x = m.x
    x = np.clip(x, [b[0] for b in bounds], [b[1] for b in bounds])
    p = make([float(round(v, 4)) for v in x])
    return p, prob.loss(p, with_mean)


def report_table(spec: str, seeds=range(5)) -> list[dict]:
    """The table `edgevlm-eval plan --streams 156 --frames 20 --fps 1 --latency SPEC --seeds 5` prints."""
    streams = synthetic_streams(*SHAPE)
    times = [[f.timestamp_s for f in s.frames] for s in streams]
    base = parse_latency(spec)
    draws = []
    for sd in seeds:
        a = base.with_seed(sd).latencies(streams, None)
        draws.append((sd, [a[s.id] for s in streams]))
    rows = plan_table(times, draws, K_CALLS, K_DELAY, tau=TAU, delta=DELTA)
    out = []
    for r, lcr, lhl in zip(rows, TABLE1_LCR, TABLE1_LHL):
        out.append({"K_call": r.K_call, "lcr_percent": round(100 * r.lcr, 2), "paper_lcr_percent": lcr,
                    "lcr_residual_points": round(100 * r.lcr - lcr, 2), "lhl_s": round(r.lhl_s, 3),
                    "paper_lhl_s": lhl, "lhl_residual_s": round(r.lhl_s - lhl, 3),
                    "in_time_share": round(r.in_time_share, 4), "in_flight_mean": round(r.in_flight_mean, 4),
                    "spread": {k: round(v, 4) for k, v in r.spread.items()}})
    return out


def marginal_in_time(p: BurstParams, prob: Problem) -> float:
    """Share of all frames with L <= tau (what LVLM only, which uploads every frame, gets in time)."""
    return float(np.mean([np.mean(p.transform(*prob.draws[sd]) <= TAU) for sd in prob.seeds]))


def scale_for(p: BurstParams, prob: Problem, target: float) -> float:
    """The scale c with share(c * L <= tau) = target, by bisection on log c (share falls as c grows)."""
    lo, hi = -4.0, 4.0
    for _ in range(60):
        mid = (lo + hi) / 2
        if marginal_in_time(replace(p, scale=float(np.exp(mid))), prob) > target:
            lo = mid
        else:
            hi = mid
    return float(round(np.exp((lo + hi) / 2), 3))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="results/latency/paper_5g_fit.json")
    ap.add_argument("--fit-seeds", type=int, default=4, help="latency draws the loss averages (default 4)")
    ap.add_argument("--quick", action="store_true", help="a smoke run: tiny budget, not the committed fit")
    ap.add_argument("--from", dest="from_json", metavar="FIT.json",
                    help="take the families' fitted parameters from an earlier output and only recompute the "
                         "tables and variants (after copying the parameters into collab/latency.py)")
    args = ap.parse_args(argv)
    t0 = time.time()
    prob = Problem(range(1000, 1000 + (2 if args.quick else args.fit_seeds)))
    budget = dict(maxiter=2, popsize=3, polish_fev=5) if args.quick else dict(maxiter=15, popsize=5, polish_fev=150)
    fits = json.loads(Path(args.from_json).read_text())["families"] if args.from_json else {}
    for name in FAMILIES if not args.from_json else ():
        t1 = time.time()
        p, loss = fit_family(prob, name, **budget)
        fits[name] = {"params": p.to_json(), "loss": round(loss, 4), "mean_s": round(p.mean_s(), 4),
                      "marginal_in_time": round(marginal_in_time(p, prob), 4), "seconds": round(time.time() - t1, 1)}
        print(f"{name}: loss {loss:.2f} {p.to_json()} ({time.time() - t1:.0f} s)", file=sys.stderr)
    chosen = "burst+mean"
    p = BurstParams(**fits[chosen]["params"])
    variants = {}
    # per-stream levels make the share vary from stream to stream: scale on many draws (6240 streams)
    wide = Problem(range(2000, 2040))
    for v, task in VARIANT_TASK.items():
        q = inferred_in_time(TABLE2[task])
        c = scale_for(p, wide, q["point"])
        variants[v] = {"basis_task": task, "inferred_in_time": q, "scale": c,
                       "share_within_tau": round(marginal_in_time(replace(p, scale=c), wide), 4)}
    doc = {
        "format": "edgevlm-eval.latency-fit/1",
        "what": "paper-5g latency source fitted to the paper's Table 1 (nuScenes, K_delay 4, tau 1 s, 1 FPS)",
        "script": "scripts/fit_paper_latency.py",
        "shape": {"streams": SHAPE[0], "frames": SHAPE[1], "fps": SHAPE[2], "tau_s": TAU, "delta_s": DELTA,
                  "K_delay": K_DELAY, "H": 2},
        "loss": "sum over K_call 1..9 of ((LCR - paper)/2 points)^2 + ((LHL - paper)/0.3 s)^2 "
                "[+ ((mean - 2.11083 s)/0.1 s)^2 for burst+mean]",
        "fit_seeds": prob.seeds,
        "quick": bool(args.quick),
        "families": fits,
        "chosen": chosen,
        "params": fits[chosen]["params"],
        "table_seeds": [0, 1, 2, 3, 4],
        "table": report_table("paper-5g"),
        "alternatives_table": {name: report_table_params(BurstParams(**fits[name]["params"]))
                               for name in FAMILIES if name != chosen},
        "variants": variants,
        "table2_in_time": {t: inferred_in_time(v) for t, v in TABLE2.items()},
        "share_within_tau": round(marginal_in_time(p, wide), 4),
        "uplink_mbps": 211.0,
        "seconds": round(time.time() - t0, 1),
    }
    if PAPER_5G.to_json() != doc["params"] or any(PAPER_VARIANTS[v] != variants[v]["scale"] for v in variants):
        doc["note"] = ("collab/latency.py's PAPER_5G / PAPER_VARIANTS differ from this fit: copy 'params' and the "
                       "variants' 'scale' there, then run this script again so that 'table' is the shipped source's")
        print(doc["note"], file=sys.stderr)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(doc, indent=2) + "\n")
    print(f"wrote {args.out} ({time.time() - t0:.0f} s)", file=sys.stderr)
    return 0


def report_table_params(p: BurstParams, seeds=range(5)) -> list[dict]:
    """As report_table, for parameters that are not the shipped preset."""
    streams = synthetic_streams(*SHAPE)
    times = [[f.timestamp_s for f in s.frames] for s in streams]
    draws = []
    for sd in seeds:
        src = PaperLatency("paper-5g", sd, p)
        a = src.latencies(streams, None)
        draws.append((sd, [a[s.id] for s in streams]))
    rows = plan_table(times, draws, K_CALLS, K_DELAY, tau=TAU, delta=DELTA)
    return [{"K_call": r.K_call, "lcr_percent": round(100 * r.lcr, 2), "lhl_s": round(r.lhl_s, 3),
             "in_time_share": round(r.in_time_share, 4)} for r in rows]


if __name__ == "__main__":
    sys.exit(main())

"""Equal-LCR comparison (method.md §4 end, paper Table 2): tune each strategy's knob to a target
LVLM call ratio.

- edgevlm / parallel (K_call, K_delay) and adas (kappa): their upload decisions depend only on the
  clock and the latencies, never on the SVLM's answers, so the LCR of a knob value is computed
  exactly by a decisions-only replay (no model), and the search is exhaustive over K_call 0..30
  (K_delay as given first, then 1..8 and inf) or a fine grid plus bisection over kappa.
- laecips (theta): its uploads depend on the SVLM's confidence h. The search uses the per-frame h
  of a probe run (svlm_only: the same SVLM on the same frames) and picks theta so that the share of
  frames with h <= theta hits the target; the LCR the real run reaches is what results report.

Targets: a number (0.25) or a band ("0.20-0.30"; values over 1 are read as percent).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from edgevlm_eval.core.errors import ConfigError

from .planner import replay_stream
from .strategies import INF, LCR_KNOB, RunSpec


# A point target counts as reached within this many call-ratio points (K_call is an integer knob).
POINT_TOLERANCE = 0.025


@dataclass(frozen=True)
class Target:
    lo: float
    hi: float

    @property
    def centre(self) -> float:
        return (self.lo + self.hi) / 2

    def distance(self, lcr: float) -> tuple[float, float]:
        """(distance to the band, distance to its centre): smaller is better."""
        out = 0.0 if self.lo - 1e-12 <= lcr <= self.hi + 1e-12 else min(abs(lcr - self.lo), abs(lcr - self.hi))
        return (round(out, 12), round(abs(lcr - self.centre), 12))

    def label(self) -> str:
        if self.lo == self.hi:
            return f"{100 * self.lo:g}"
        return f"{100 * self.lo:g}-{100 * self.hi:g}"

    @classmethod
    def from_label(cls, label: str) -> "Target":
        """The inverse of `label()` (percent: "20-30", "25"), as results.json stores a search's target."""
        lo, _, hi = str(label).partition("-")
        return cls(float(lo) / 100, float(hi or lo) / 100)

    def reached(self, lcr: float) -> bool:
        """A band: the LCR is inside it; a point: within POINT_TOLERANCE."""
        if self.hi > self.lo:
            return self.distance(lcr)[0] == 0
        return abs(lcr - self.lo) <= POINT_TOLERANCE + 1e-12


def parse_target(text: str | float) -> Target:
    def num(x: str) -> float:
        try:
            v = float(x)
        except ValueError:
            raise ConfigError(f"expected a call ratio like 0.25 or a band like 0.20-0.30, got {text!r}",
                              key="--target-lcr") from None
        v = v / 100 if v > 1 else v
        if not 0 <= v <= 1:
            raise ConfigError(f"call ratio must be in [0, 1] (or percent), got {x}", key="--target-lcr")
        return v

    if isinstance(text, (int, float)):
        v = num(str(text))
        return Target(v, v)
    s = str(text).strip()
    if "-" in s[1:]:
        i = s.index("-", 1)
        lo, hi = num(s[:i]), num(s[i + 1:])
        if lo > hi:
            raise ConfigError(f"band {s!r}: lower end above upper end", key="--target-lcr")
        return Target(lo, hi)
    v = num(s)
    return Target(v, v)


def dry_lcr(sim, spec: RunSpec) -> float:
    """LCR of a strategy whose upload decisions do not depend on the SVLM, without any model: the
    planner's replay (planner.py) with the strategy's own decision and hooks, on the simulator's
    streams, latencies, trace and image checks."""
    run = sim._run_state(spec, need_svlm=False)
    strat = run.strategy
    if strat.decides_after_svlm:
        raise ValueError(f"{spec.strategy} decides after the SVLM; use its confidences")
    n = up = 0
    for st in run.states:
        ok = [rec is None or rec.ok for rec in st.recs]
        skip = [bool(sim._image_error(st, t)) for t in range(st.n)]
        r = replay_stream(st.s, st.L, strat.decide, ok=ok, skip=skip, on_arrival=strat.on_arrival,
                          sent_at=strat.sent_at, tau=sim.cfg.tau, history=False)
        n += st.n
        up += sum(r.upload)
    return up / n if n else 0.0


@dataclass
class SearchResult:
    spec: RunSpec
    lcr: float  # predicted by the search (exact for decision-only strategies)
    tried: list  # [[knob values..., lcr], ...]

    def to_json(self) -> dict:
        return {"knobs": self.spec.knobs(), "predicted_lcr": self.lcr, "tried": self.tried}


def search_keyframe(sim, base: RunSpec, target: Target, max_K_call: int = 30) -> SearchResult:
    tried = []
    best = None
    delays = [base.K_delay] + [d for d in (1, 2, 3, 4, 5, 6, 7, 8, INF) if d != base.K_delay]
    for d in delays:
        for k in range(0, max_K_call + 1):
            spec = base.with_(K_call=k, K_delay=d)
            lcr = dry_lcr(sim, spec)
            tried.append([k, "inf" if d == INF else d, lcr])
            key = (*target.distance(lcr), 0 if d == base.K_delay else 1, k)
            if best is None or key < best[0]:
                best = (key, spec, lcr)
        if (best[0][0] == 0) if target.hi > target.lo else (best[0][1] <= POINT_TOLERANCE):
            break  # close enough with the given K_delay (or this one): stop widening
    return SearchResult(best[1], best[2], tried)


def search_kappa(sim, base: RunSpec, target: Target) -> SearchResult:
    tried = []
    best = None

    def ev(kappa: float):
        nonlocal best
        spec = base.with_(kappa=kappa)
        lcr = dry_lcr(sim, spec)
        tried.append([kappa, lcr])
        key = (*target.distance(lcr), kappa)
        if best is None or key < best[0]:
            best = (key, spec, lcr)
        return lcr

    grid = [i * 0.25 for i in range(0, 41)]
    vals = [ev(k) for k in grid]
    # bisection between the grid points that straddle the band's centre
    for i in range(len(grid) - 1):
        if (vals[i] - target.centre) * (vals[i + 1] - target.centre) < 0:
            lo, hi = grid[i], grid[i + 1]
            for _ in range(20):
                mid = (lo + hi) / 2
                if (ev(mid) - target.centre) * (vals[i] - target.centre) > 0:
                    lo = mid
                else:
                    hi = mid
            break
    return SearchResult(best[1], best[2], tried)


def search_theta(confidences: Sequence[float | None], n_frames: int, base: RunSpec, target: Target) -> SearchResult:
    """theta such that #(h <= theta) / n_frames is nearest the target (uploads happen when h <= theta)."""
    hs = sorted(0.0 if h is None else h for h in confidences)
    cands = sorted({-1e-9, *hs})
    tried, best = [], None
    import bisect

    for th in cands:
        lcr = bisect.bisect_right(hs, th) / n_frames if n_frames else 0.0
        tried.append([th, lcr])
        key = (*target.distance(lcr), th)
        if best is None or key < best[0]:
            best = (key, base.with_(theta=max(th, 0.0) if th >= 0 else -1e-9), lcr)
    return SearchResult(best[1], best[2], tried[:200])


def search(sim, base: RunSpec, target: Target, confidences: Sequence[float | None] | None = None,
           n_frames: int | None = None) -> SearchResult:
    knob = LCR_KNOB.get(base.strategy)
    if knob is None:
        raise ConfigError(f"strategy '{base.strategy}' has no knob that sets the call ratio "
                          f"(searchable: {', '.join(LCR_KNOB)})", key="--target-lcr")
    if knob == "K_call":
        return search_keyframe(sim, base, target)
    if knob == "kappa":
        return search_kappa(sim, base, target)
    if confidences is None:
        raise ValueError("laecips search needs the per-frame confidences of a probe run")
    return search_theta(confidences, n_frames or len(confidences), base, target)

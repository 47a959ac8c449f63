"""Equal-LCR comparison (method.md §4 end, paper Table 2): tune each strategy's call-ratio knob
(its `LcrKnob`, collab/strategy.py) to a target LVLM call ratio.

- A knob whose decisions depend only on the clock and the latencies (never on the SVLM's answers),
  like edgeVLM's K_call or the ADAS proxy's kappa: the LCR of a value is computed exactly by a
  decisions-only replay (no model). Discrete values are tried exhaustively (widening over a
  second knob, K_delay, while the band is out of reach); a continuous knob on a grid, then by
  bisection between the grid points that straddle the target.
- A knob that thresholds a per-frame score of the SVLM's reply (`by_score`, like LAECIPS' theta
  on its confidence h): the search reads the scores of a probe run (SVLM only: the same SVLM on the
  same frames) and picks the threshold whose share of uploads hits the target; the LCR the real
  run reaches is what results report.

Targets: a fraction (0.25) or a band ("0.20-0.30"), or percent with a sign ("25%", "20-30%").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from edgevlm_eval.core.errors import ConfigError

from .planner import replay_stream
from .strategy import INF, LcrKnob, Run

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
    """A call ratio (`0.25`) or band (`0.20-0.30`) as fractions in [0, 1]; percent only with an
    explicit sign (`25%`, `20-30%`), so that no number means two things."""
    s = str(text).strip()
    pct = s.endswith("%")
    body = s[:-1].strip() if pct else s

    def num(x: str) -> float:
        try:
            v = float(x)
        except ValueError:
            raise ConfigError(f"expected a call ratio like 0.25, a band like 0.20-0.30, or percent like 25% / "
                              f"20-30%; got {text!r}", key="--target-lcr") from None
        v = v / 100 if pct else v
        if not 0 <= v <= 1:
            hint = " (a fraction; write 25% for percent)" if not pct and 1 < v <= 100 else ""
            raise ConfigError(f"call ratio must be in [0, 1]{hint}, got {x}{'%' if pct else ''}", key="--target-lcr")
        return v

    if "-" in body[1:]:
        i = body.index("-", 1)
        lo, hi = num(body[:i]), num(body[i + 1:])
        if lo > hi:
            raise ConfigError(f"band {s!r}: lower end above upper end", key="--target-lcr")
        return Target(lo, hi)
    v = num(body)
    return Target(v, v)


def dry_lcr(sim, spec: Run) -> float:
    """LCR of a run whose upload decisions do not depend on the SVLM, without any model: the
    planner's replay (planner.py) with the strategy's own decision and hooks, on the simulator's
    streams, latencies, trace and image checks."""
    run = sim._run_state(spec, need_svlm=False)
    strat = run.strategy
    if strat.decides_after_svlm:
        raise ValueError(f"{spec.strategy} decides after the SVLM; use its scores")
    n = up = 0
    for st in run.states:
        ok = [rec is None or rec.ok for rec in st.recs]
        skip = [bool(sim._image_error(st, t)) for t in range(st.n)]
        r = replay_stream(st.s, st.L, strat.decide, ok=ok, skip=skip, on_arrival=strat.on_arrival,
                          sent_at=strat.sent_at, tau=sim.cfg.tau, history=False, mine=strat.new_stream_state())
        n += st.n
        up += sum(r.upload)
    return up / n if n else 0.0


@dataclass
class SearchResult:
    spec: Run
    lcr: float  # predicted by the search (exact for decision-only knobs)
    tried: list  # [[knob values..., lcr], ...]

    def to_json(self) -> dict:
        return {"knobs": self.spec.knobs.to_json(), "predicted_lcr": self.lcr, "tried": self.tried}


def _jv(v):
    return "inf" if v == INF else v


def search_values(lcr_of, base: Run, target: Target, knob: LcrKnob) -> SearchResult:
    """Exhaustive over the knob's values; while no value reaches the target, widen over the second
    knob (its value in `base` first). Ties go to the base's second-knob value, then the earlier value."""
    tried, best = [], None
    if knob.widen:
        wname, wvals = knob.widen
        given = getattr(base.knobs, wname)
        widen = [given] + [w for w in wvals if w != given]
    else:
        wname, widen = None, [None]
    for wi, w in enumerate(widen):
        for vi, v in enumerate(knob.values):
            kw = {knob.name: v, **({wname: w} if wname else {})}
            spec = base.with_(**kw)
            lcr = lcr_of(spec)
            tried.append([v, _jv(w), lcr] if wname else [v, lcr])
            key = (*target.distance(lcr), 0 if wi == 0 else 1, vi)
            if best is None or key < best[0]:
                best = (key, spec, lcr)
        if (best[0][0] == 0) if target.hi > target.lo else (best[0][1] <= POINT_TOLERANCE):
            break  # close enough with this value of the second knob: stop widening
    return SearchResult(best[1], best[2], tried)


def search_continuous(lcr_of, base: Run, target: Target, knob: LcrKnob) -> SearchResult:
    """A grid of `step` on [lo, hi], then bisection between the grid points that straddle the
    target's centre (the call ratio is monotone in the knob)."""
    tried, best = [], None

    def ev(x: float):
        nonlocal best
        spec = base.with_(**{knob.name: x})
        lcr = lcr_of(spec)
        tried.append([x, lcr])
        key = (*target.distance(lcr), x)
        if best is None or key < best[0]:
            best = (key, spec, lcr)
        return lcr

    n = int(round((knob.hi - knob.lo) / knob.step))
    grid = [knob.lo + i * knob.step for i in range(0, n + 1)]
    vals = [ev(k) for k in grid]
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


def search_score(scores: Sequence[float | None], n_frames: int, base: Run, target: Target,
                 knob: LcrKnob) -> SearchResult:
    """A threshold on per-frame scores (a probe run's): direction +1 uploads when score <= knob,
    -1 when score >= knob. The LCR of a threshold is the share of frames it uploads. A None score
    is a frame the SVLM did not run on (its image unusable): no threshold uploads it, but it counts
    among the `n_frames`."""
    import bisect

    hs = sorted(h for h in scores if h is not None)
    tried, best = [], None
    if knob.direction > 0:
        cands = sorted({-1e-9, *hs})
        lcr_at = lambda th: bisect.bisect_right(hs, th) / n_frames if n_frames else 0.0  # noqa: E731
        value = lambda th: max(th, 0.0) if th >= 0 else -1e-9  # noqa: E731
    else:
        top = (hs[-1] if hs else 1.0) + 1e-9
        cands = sorted({*hs, top})
        lcr_at = lambda th: (len(hs) - bisect.bisect_left(hs, th)) / n_frames if n_frames else 0.0  # noqa: E731
        value = lambda th: th  # noqa: E731
    for th in cands:
        lcr = lcr_at(th)
        tried.append([th, lcr])
        key = (*target.distance(lcr), th)
        if best is None or key < best[0]:
            best = (key, base.with_(**{knob.name: value(th)}), lcr)
    return SearchResult(best[1], best[2], tried[:200])


def search(sim, base: Run, target: Target, scores: Sequence[float | None] | None = None,
           n_frames: int | None = None) -> SearchResult:
    """Tune `base`'s call-ratio knob to `target` (module docstring)."""
    knob = base.cls.lcr_knob
    if knob is None:
        raise ConfigError(f"strategy '{base.strategy}' declares no knob that sets the call ratio", key="--target-lcr")
    if knob.by_score:
        if scores is None:
            raise ValueError(f"{base.strategy}: the search needs the per-frame scores of a probe run")
        return search_score(scores, n_frames or len(scores), base, target, knob)
    lcr_of = lambda spec: dry_lcr(sim, spec)  # noqa: E731
    if knob.values:
        return search_values(lcr_of, base, target, knob)
    return search_continuous(lcr_of, base, target, knob)

"""Bootstrap confidence intervals over streams.

Frames inside a stream are strongly correlated (the same scene a second later, and a history that
carries answers forward), so resampling frames would make intervals far too narrow. The unit of
resampling is the **stream**: draw as many streams as there are, with replacement, pool the frames
of the drawn streams, and recompute the metric on the pool with `edgevlm_eval.core.metrics.compute`
(the one implementation of the metrics). The interval is the percentile interval of the
recomputed values. Everything is driven by one seeded numpy Generator, so the same seed gives
the same interval.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Callable, Mapping, Sequence, TypeVar

import numpy as np

from edgevlm_eval.core.labels import LabelSpace
from edgevlm_eval.core.metrics import Scored, compute
from edgevlm_eval.core.records import FrameLine

DEFAULT_N = 1000
DEFAULT_LEVEL = 0.95
DEFAULT_SEED = 0
METHOD = "percentile bootstrap over streams (streams resampled with replacement, metric recomputed on the pooled frames)"

G = TypeVar("G")


@dataclass(frozen=True)
class Interval:
    """A bootstrap confidence interval for one statistic."""

    value: float | None  # the statistic on all streams (the point estimate)
    lo: float | None
    hi: float | None
    level: float
    n_boot: int  # resamples drawn
    n_valid: int  # resamples where the statistic was defined (e.g. Macro-F1 needs a label present)
    n_streams: int
    seed: int

    def to_json(self) -> dict:
        return asdict(self)

    @property
    def width(self) -> float | None:
        return None if self.lo is None or self.hi is None else self.hi - self.lo


def _check(n: int, level: float) -> None:
    if not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"bootstrap n must be a positive integer, got {n!r}")
    if not 0.0 < level < 1.0:
        raise ValueError(f"bootstrap level must be in (0, 1), e.g. 0.95; got {level!r}")


def resample_indices(n_streams: int, n: int, seed: int) -> np.ndarray:
    """(n, n_streams) stream indices drawn with replacement; deterministic for a seed."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, n_streams, size=(n, n_streams))


def bootstrap_streams(groups: Sequence[G], statistic: Callable[[list[G]], Mapping[str, float | None]],
                      *, n: int = DEFAULT_N, level: float = DEFAULT_LEVEL, seed: int = DEFAULT_SEED,
                      draws_out: dict[str, list[float]] | None = None) -> dict[str, Interval]:
    """Percentile intervals for every key `statistic` returns.

    `groups` holds one entry per stream (whatever `statistic` needs from it); `statistic` gets a
    list of such entries (a resample may hold a stream several times) and returns {name: value};
    a value of None (undefined on that resample) is left out of that name's percentiles.
    `draws_out`, when given, receives every name's resampled values.
    """
    _check(n, level)
    groups = list(groups)
    point = dict(statistic(groups))
    k = len(groups)
    if k == 0:
        return {name: Interval(v, None, None, level, 0, 0, 0, seed) for name, v in point.items()}
    draws: dict[str, list[float]] = {name: [] for name in point}
    for idx in resample_indices(k, n, seed):
        got = statistic([groups[i] for i in idx])
        for name in draws:
            v = got.get(name)
            if v is not None:
                draws[name].append(float(v))
    if draws_out is not None:
        draws_out.update(draws)
    alpha = (1.0 - level) / 2.0
    out = {}
    for name, vals in draws.items():
        if vals:
            lo, hi = np.quantile(np.asarray(vals), [alpha, 1.0 - alpha])
            lo, hi = float(lo), float(hi)
        else:
            lo = hi = None
        out[name] = Interval(point[name], lo, hi, level, n, len(vals), k, seed)
    return out


def bootstrap_metrics(streams: Mapping[str, Sequence[Scored]] | Sequence[Sequence[Scored]], space: LabelSpace,
                      metrics: Sequence[str], *, n: int = DEFAULT_N, level: float = DEFAULT_LEVEL,
                      seed: int = DEFAULT_SEED, macro_f1_label_set: str | None = None) -> dict[str, Interval]:
    """Intervals for the task metrics. `streams`: the scored frames of each stream (a mapping
    stream id -> items, or a list of per-stream item lists). Streams are taken in sorted-id order
    so the result does not depend on dict order. `macro_f1_label_set` as for `compute` (pass the
    task's, or the one a results file names, so the interval matches the point value)."""
    if isinstance(streams, Mapping):
        per_stream = [list(streams[s]) for s in sorted(streams)]
    else:
        per_stream = [list(s) for s in streams]
    metrics = list(metrics)

    def stat(chosen: list[list[Scored]]) -> dict:
        pooled = [it for s in chosen for it in s]
        got = compute(pooled, space, metrics, macro_f1_label_set=macro_f1_label_set)
        return {m: got.get(m) for m in metrics}

    return bootstrap_streams(per_stream, stat, n=n, level=level, seed=seed)


def bootstrap_ratio(per_stream: Mapping[str, tuple[float, float]] | Sequence[tuple[float, float]], *,
                    name: str = "lcr", n: int = DEFAULT_N, level: float = DEFAULT_LEVEL,
                    seed: int = DEFAULT_SEED) -> Interval:
    """Interval of a pooled ratio such as LCR = uploads / frames, from per-stream
    (numerator, denominator) pairs."""
    pairs = [per_stream[s] for s in sorted(per_stream)] if isinstance(per_stream, Mapping) else list(per_stream)

    def stat(chosen):
        den = sum(d for _, d in chosen)
        return {name: (sum(nu for nu, _ in chosen) / den) if den else None}

    return bootstrap_streams(pairs, stat, n=n, level=level, seed=seed)[name]


@dataclass(frozen=True)
class Difference:
    """A paired comparison of two runs on one metric: run A minus run B, on the same streams."""

    metric: str
    a: float | None  # A's metric on all streams
    b: float | None
    diff: Interval  # A - B: point estimate and percentile interval over stream resamples
    a_better: float | None  # share of (valid) resamples in which A - B > 0

    def to_json(self) -> dict:
        return {"metric": self.metric, "a": self.a, "b": self.b, "diff": self.diff.to_json(),
                "a_better": self.a_better}


def bootstrap_difference(items_a: Mapping[str, Sequence[Scored]], items_b: Mapping[str, Sequence[Scored]],
                         space: LabelSpace, metrics: Sequence[str], *, n: int = DEFAULT_N,
                         level: float = DEFAULT_LEVEL, seed: int = DEFAULT_SEED,
                         macro_f1_label_set: str | None = None) -> dict[str, Difference]:
    """Paired bootstrap of metric(A) - metric(B) for two runs over the same streams (per stream
    scored frames, as `per_stream_items` gives). Each resample draws streams once and scores both
    runs on the drawn streams, so what the streams have in common (an easy scene, a hard one)
    cancels out: the interval of the difference is much narrower than the two runs' own
    intervals suggest. Raises ValueError when the runs cover different streams."""
    if set(items_a) != set(items_b):
        only = sorted(set(items_a) ^ set(items_b))
        raise ValueError(f"the two runs cover different streams ({len(only)} in one only, e.g. {only[:3]}); "
                         "compare complete runs on the same frames")
    ids = sorted(items_a)
    groups = [(list(items_a[s]), list(items_b[s])) for s in ids]
    metrics = list(metrics)

    def stat(chosen):
        got_a = compute([it for a, _ in chosen for it in a], space, metrics, macro_f1_label_set=macro_f1_label_set)
        got_b = compute([it for _, b in chosen for it in b], space, metrics, macro_f1_label_set=macro_f1_label_set)
        return {m: None if got_a.get(m) is None or got_b.get(m) is None else got_a[m] - got_b[m] for m in metrics}

    draws: dict[str, list[float]] = {}
    ivs = bootstrap_streams(groups, stat, n=n, level=level, seed=seed, draws_out=draws)
    point_a = compute([it for a, _ in groups for it in a], space, metrics, macro_f1_label_set=macro_f1_label_set)
    point_b = compute([it for _, b in groups for it in b], space, metrics, macro_f1_label_set=macro_f1_label_set)
    return {m: Difference(m, point_a.get(m), point_b.get(m), ivs[m],
                          (sum(v > 0 for v in draws[m]) / len(draws[m])) if draws[m] else None)
            for m in metrics}


def intervals_to_json(intervals: Mapping[str, Interval]) -> dict:
    """{metric: {"value", "lo", "hi", "level", "n_boot", "n_valid", "n_streams", "seed"}} for a
    results file's run entry (`"ci"`, read by the leaderboard); METHOD says how they were made."""
    return {name: iv.to_json() for name, iv in intervals.items()}


def per_stream_items(lines: Sequence[FrameLine], run: str | None = None) -> dict[str, list[Scored]]:
    """Scored frames per stream from per-frame log lines, of one run (or all lines when `run` is None)."""
    out: dict[str, list[tuple[int, Scored]]] = {}
    for ln in lines:
        if run is not None and ln.run != run:
            continue
        out.setdefault(ln.stream, [])
        if ln.scored:
            out[ln.stream].append((ln.frame, Scored(tuple(ln.truth), None if ln.pred is None else tuple(ln.pred))))
    return {s: [it for _, it in sorted(v, key=lambda x: x[0])] for s, v in out.items()}


def bootstrap_run(lines: Sequence[FrameLine], run: str | None, space: LabelSpace, metrics: Sequence[str], *,
                  n: int = DEFAULT_N, level: float = DEFAULT_LEVEL, seed: int = DEFAULT_SEED,
                  macro_f1_label_set: str | None = None) -> dict[str, Interval]:
    """Intervals of a run's metrics and of its LCR from its per-frame log lines. The metrics and
    LCR are resampled with the same stream draws (same seed), so they describe the same resamples."""
    chosen_lines = [ln for ln in lines if run is None or ln.run == run]
    items = per_stream_items(chosen_lines)
    uploads: dict[str, list[float]] = {}
    for ln in chosen_lines:
        u = uploads.setdefault(ln.stream, [0.0, 0.0])
        u[0] += 1.0 if ln.upload else 0.0
        u[1] += 1.0
    ids = sorted(items)
    groups = [(items[s], tuple(uploads[s])) for s in ids]
    metrics = list(metrics)

    def stat(chosen):
        pooled = [it for its, _ in chosen for it in its]
        got = compute(pooled, space, metrics, macro_f1_label_set=macro_f1_label_set)
        out = {m: got.get(m) for m in metrics}
        den = sum(u[1] for _, u in chosen)
        out["lcr"] = sum(u[0] for _, u in chosen) / den if den else None
        return out

    return bootstrap_streams(groups, stat, n=n, level=level, seed=seed)

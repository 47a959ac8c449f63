"""The one sampling rule every converter uses to go from a source rate to the task's rate.

Rule (documented in docs/tasks.md): the task's frame t is meant to be captured at s_t = t / fps
seconds after the stream's first source frame. For each t with s_t <= (last source time), the
source frame whose timestamp is nearest to s_t is taken (ties go to the earlier one). A target
with no source frame strictly within half a target period (a gap in the source) is skipped, and a source
frame is never used twice. For a regular source at rate r = k * fps this picks source frames 0, k, 2k, ... exactly.

Rates, tolerances and timestamps must be finite numbers (a NaN or an infinity would never reach the
last source time); a bad one is a ValueError naming it.
"""

from __future__ import annotations

import bisect
import math
import numbers
from typing import Sequence


def _finite(value, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise ValueError(f"{what} must be a finite number, got {value!r}")
    return float(value)


def _rate(value, what: str) -> float:
    v = _finite(value, what)
    if v <= 0:
        raise ValueError(f"{what} must be positive, got {value!r}")
    return v


def sample_regular(n_source: int, source_fps: float, fps: float) -> list[int]:
    """0-based source indices to keep from a regular `source_fps` sequence of `n_source` frames
    (regular sources have no gaps, so the t-th index is the stream's frame t)."""
    if isinstance(n_source, bool) or not isinstance(n_source, numbers.Integral) or n_source < 0:
        raise ValueError(f"the number of source frames must be an integer >= 0, got {n_source!r}")
    source_fps = _rate(source_fps, "source_fps")
    _rate(fps, "fps")
    if n_source == 0:
        return []
    return [j for _, j in sample_timestamps([i / source_fps for i in range(n_source)], fps)]


def sample_timestamps(timestamps_s: Sequence[float], fps: float,
                      tolerance_s: float | None = None) -> list[tuple[int, int]]:
    """(t, j) pairs: target t (captured at s_t = t / fps after the first source frame) is
    source frame j of `timestamps_s` (seconds, ascending).

    Targets run up to the last source frame's time. A target with no source frame strictly
    closer than `tolerance_s` (default: half a target period) is
    skipped rather than filled by a far-away frame, and a source frame is used at most once;
    converters keep s_t = t / fps as the frame's timestamp, so a skipped target leaves a gap in
    time, not a shift.

    The work is proportional to the number of source frames, whatever the ratio of the rates:
    runs of targets that no unused source frame is near are jumped over.
    """
    fps = _rate(fps, "fps")
    tol = 0.5 / fps if tolerance_s is None else _rate(tolerance_s, "tolerance_s")
    ts = [_finite(x, f"timestamp {i}") for i, x in enumerate(timestamps_s)]
    if not ts:
        return []
    for i, (a, b) in enumerate(zip(ts, ts[1:])):
        if b < a:
            raise ValueError(f"timestamps must be ascending: timestamp {i + 1} ({b}) comes before timestamp {i} ({a})")
    n = len(ts)
    t0, last = ts[0], ts[-1]
    eps = min(1e-9, tol * 1e-3)  # rounding slack, kept well below the tolerance at any rate
    out: list[tuple[int, int]] = []
    free = 0  # source frames before this index are used (or passed over) and can never be taken again
    t = 0
    while True:
        target = t0 + t / fps
        if target > last + eps:
            break
        i = bisect.bisect_left(ts, target)
        cands = [j for j in (i - 1, i) if 0 <= j < n]
        # nearest, ties to the earlier frame
        j = min(cands, key=lambda j: (abs(ts[j] - target), j))
        if abs(ts[j] - target) < tol - eps and j >= free:
            out.append((t, j))
            free = j + 1
        # A later target can only take an unused frame later than target - tol; targets before
        # that frame's time minus tol take nothing, so jump to just before them (one target of slack
        # for rounding). Without this, fps far above the source rate walks billions of empty targets.
        k = max(free, bisect.bisect_right(ts, target - tol))
        if k >= n:
            break
        ahead = (ts[k] - tol - t0) * fps
        if not math.isfinite(ahead):
            break
        t = max(t + 1, math.floor(ahead) - 1)
    return out

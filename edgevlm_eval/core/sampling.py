"""The one sampling rule every converter uses to go from a source rate to the task's rate.

Rule (documented in docs/tasks.md): the task's frame t is meant to be captured at s_t = t / fps
seconds after the stream's first source frame. For each t with s_t <= (last source time), the
source frame whose timestamp is nearest to s_t is taken (ties go to the earlier one). A target
with no source frame strictly within half a target period (a gap in the source) is skipped, and a source
frame is never used twice. For a regular source at rate r = k * fps this picks source frames 0, k, 2k, ... exactly.
"""

from __future__ import annotations

import bisect
from typing import Sequence


def sample_regular(n_source: int, source_fps: float, fps: float) -> list[int]:
    """0-based source indices to keep from a regular `source_fps` sequence of `n_source` frames
    (regular sources have no gaps, so the t-th index is the stream's frame t)."""
    if n_source <= 0:
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
    """
    if fps <= 0:
        raise ValueError(f"fps must be positive, got {fps}")
    if not timestamps_s:
        return []
    if any(b < a for a, b in zip(timestamps_s, timestamps_s[1:])):
        raise ValueError("timestamps must be ascending")
    t0, last = timestamps_s[0], timestamps_s[-1]
    tol = 0.5 / fps if tolerance_s is None else tolerance_s
    eps = 1e-9
    out: list[tuple[int, int]] = []
    t = 0
    while True:
        target = t0 + t / fps
        if target > last + eps:
            break
        i = bisect.bisect_left(timestamps_s, target)
        cands = [j for j in (i - 1, i) if 0 <= j < len(timestamps_s)]
        # nearest, ties to the earlier frame
        j = min(cands, key=lambda j: (abs(timestamps_s[j] - target), j))
        if abs(timestamps_s[j] - target) < tol - eps and (not out or j > out[-1][1]):
            out.append((t, j))
        t += 1
    return out

import pytest

from edgevlm_eval.core.sampling import sample_regular, sample_timestamps


def test_regular_rates():
    assert sample_regular(65, 30, 1) == [0, 30, 60]
    assert sample_regular(61, 30, 2) == [0, 15, 30, 45, 60]
    assert sample_regular(202, 5, 1) == list(range(0, 202, 5))  # BDD100K: 5 Hz labels -> 1 FPS, 41 frames
    assert len(sample_regular(202, 5, 1)) == 41
    assert sample_regular(1, 30, 1) == [0]
    assert sample_regular(0, 30, 1) == []


def test_no_extrapolation_past_the_end():
    # 40 frames at 30 fps end at 1.3 s: the 1.5 s target has no frame.
    assert sample_regular(40, 30, 2) == [0, 15, 30]


def test_irregular_timestamps_nearest_and_gaps():
    # nuScenes-like 2 Hz keyframes with jitter and a gap after 1.45 s (2.0 s has nothing within 0.5 s)
    ts = [0.0, 0.49, 1.02, 1.45, 3.05, 3.52]
    assert sample_timestamps(ts, 1) == [(0, 0), (1, 2), (3, 4)]  # target 2.0 s has no frame within 0.5 s


def test_tie_goes_to_earlier_and_no_reuse():
    ts = [0.0, 0.75, 1.25, 2.0]
    # target 1.0: 0.75 and 1.25 are equally near -> the earlier one (index 1)
    assert sample_timestamps(ts, 1) == [(0, 0), (1, 1), (2, 3)]


def test_bad_input():
    with pytest.raises(ValueError):
        sample_timestamps([1.0, 0.5], 1)
    with pytest.raises(ValueError):
        sample_timestamps([0.0], 0)


def _plain_walk(ts, fps, tolerance_s=None):
    """The rule walked target by target (the definition in docs/tasks.md), to check the fast walk against."""
    import bisect

    t0, last = ts[0], ts[-1]
    tol = 0.5 / fps if tolerance_s is None else tolerance_s
    eps = min(1e-9, tol * 1e-3)
    out, t = [], 0
    while t0 + t / fps <= last + eps:
        target = t0 + t / fps
        i = bisect.bisect_left(ts, target)
        j = min((j for j in (i - 1, i) if 0 <= j < len(ts)), key=lambda j: (abs(ts[j] - target), j))
        if abs(ts[j] - target) < tol - eps and (not out or j > out[-1][1]):
            out.append((t, j))
        t += 1
    return out


def test_fast_walk_picks_what_the_plain_walk_picks():
    import random

    rng = random.Random(7)
    for _ in range(3000):
        n = rng.randint(1, 30)
        if rng.random() < 0.4:
            r = rng.choice([1, 2, 5, 15, 29.97, 30, 0.5])
            ts = [i / r for i in range(n)]
        else:
            ts, x = [], rng.uniform(-3, 3)
            for _ in range(n):
                x += rng.choice([0, 0.01, 0.1, 0.49, 0.5, 0.51, 1, 2.5])
                ts.append(x)
        fps = rng.choice([0.1, 0.5, 1, 2, 3, 10, 30, 100])
        tol = None if rng.random() < 0.7 else rng.choice([0.01, 0.2, 1.0, 4.0])
        assert sample_timestamps(ts, fps, tol) == _plain_walk(ts, fps, tol), (ts, fps, tol)


@pytest.mark.parametrize("call", [
    lambda: sample_timestamps([0.0, 1.0, 2.0], float("nan")),
    lambda: sample_timestamps([0.0, 1.0, 2.0], float("inf")),
    lambda: sample_timestamps([0.0, float("nan"), 2.0], 1),
    lambda: sample_timestamps([0.0, float("inf")], 1),
    lambda: sample_timestamps([0.0, 1.0], 1, tolerance_s=float("nan")),
    lambda: sample_regular(10, float("nan"), 1),
    lambda: sample_regular(10, float("inf"), 1),
    lambda: sample_regular(10, 30, float("nan")),
], ids=["fps-nan", "fps-inf", "timestamp-nan", "timestamp-inf", "tolerance-nan", "source-nan", "source-inf",
        "regular-fps-nan"])
def test_nan_and_inf_raise_instead_of_looping_forever(no_hang, call):
    with pytest.raises(ValueError, match="finite number"):
        no_hang(call, seconds=10)


def test_other_bad_arguments():
    with pytest.raises(ValueError, match="source frames must be an integer >= 0"):
        sample_regular(-5, 30, 1)
    with pytest.raises(ValueError, match="timestamp 0 must be a finite number"):
        sample_timestamps(["0", "1"], 1)
    with pytest.raises(ValueError, match="tolerance_s must be positive"):
        sample_timestamps([0.0, 1.0], 1, tolerance_s=-1)
    with pytest.raises(ValueError, match=r"timestamp 2 \(0.5\) comes before timestamp 1"):
        sample_timestamps([0.0, 1.0, 0.5], 1)


def test_a_rate_far_above_the_source_rate_does_not_walk_every_empty_target(no_hang):
    # 1e9 targets per second over 100 s: the two source frames are targets 0 and 1e11
    assert no_hang(sample_timestamps, [0.0, 100.0], 1e9, seconds=10) == [(0, 0), (100_000_000_000, 1)]
    # a BDD100K record at frameIndex 1e12 (5 Hz): 2e11 s after the first, one target per second
    assert no_hang(sample_timestamps, [0.0, 1e12 / 5], 1.0, seconds=10) == [(0, 0), (200_000_000_000, 1)]

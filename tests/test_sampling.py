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

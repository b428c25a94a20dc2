"""One Euro filter: still signals are smoothed, steps are followed, real timestamps drive the smoothing."""

import numpy as np
import pytest

from landmark.filters import OneEuroFilter


def run_filter(filt: OneEuroFilter, values: np.ndarray, times: np.ndarray) -> np.ndarray:
    return np.array([filt(v, t) for v, t in zip(values, times, strict=True)])


def settle_time(filtered: np.ndarray, times: np.ndarray, target: float, t_step: float) -> float:
    """Seconds after the step until the output stays within 1% of the target."""
    outside = np.abs(filtered - target) > 0.01 * abs(target)
    last_outside = np.nonzero(outside)[0].max()
    return times[last_outside + 1] - t_step


def test_still_noisy_point_is_smoothed():
    rng = np.random.default_rng(0)
    times = np.arange(600) / 30.0
    raw = 120.0 + rng.normal(0.0, 2.0, size=(600, 98, 2))  # all 98 landmarks at once, 2 px of jitter
    filtered = run_filter(OneEuroFilter(), raw, times)
    assert filtered.shape == raw.shape
    steady = filtered[60:]  # after the first two seconds
    assert steady.std() < 0.4 * raw[60:].std()
    assert abs(steady.mean() - 120.0) < 0.1


def test_step_is_followed_and_beta_speeds_it_up():
    times = np.arange(90) / 30.0
    values = np.where(times < 1.0, 0.0, 100.0)
    plain = run_filter(OneEuroFilter(beta=0.0), values, times)
    adaptive = run_filter(OneEuroFilter(beta=0.007), values, times)
    t_plain = settle_time(plain, times, 100.0, 1.0)
    t_adaptive = settle_time(adaptive, times, 100.0, 1.0)
    assert t_plain < 1.0  # 1 Hz cutoff: tau = 0.16 s, 1% after about five tau
    assert t_adaptive < 0.5 * t_plain


def test_timestamps_drive_alpha():
    """The response after 0.5 s is about the same at 30 Hz, 120 Hz and irregular frame times.

    A filter with a fixed per-frame alpha would be four times further along at 120 Hz than at 30 Hz.
    """
    rng = np.random.default_rng(1)
    irregular = np.concatenate([[0.0], np.cumsum(rng.uniform(1 / 120, 1 / 20, size=200))])
    remaining = []
    for times in (np.arange(0, 2, 1 / 30), np.arange(0, 2, 1 / 120), irregular):
        values = np.where(times < 1.0, 0.0, 1.0)
        out = run_filter(OneEuroFilter(beta=0.0), values, times)
        after = np.searchsorted(times, 1.5)  # first sample at or after 0.5 s past the step
        remaining.append(1.0 - out[after])
    assert 0.02 < min(remaining) and max(remaining) < 0.1
    assert max(remaining) - min(remaining) < 0.03


def test_long_gap_lets_the_output_jump():
    filt = OneEuroFilter(beta=0.0)
    filt(np.array([0.0]), 0.0)
    assert filt(np.array([10.0]), 1 / 30)[0] < 2.0  # one frame later: heavily smoothed
    assert filt(np.array([10.0]), 30.0)[0] > 9.9  # half a minute later: the old value means nothing


def test_reset_repeated_time_and_shape_change():
    filt = OneEuroFilter()
    first = filt(np.array([[1.0, 2.0]]), 0.0)
    np.testing.assert_array_equal(first, [[1.0, 2.0]])
    moved = filt(np.array([[5.0, 5.0]]), 0.1)
    again = filt(np.array([[9.0, 9.0]]), 0.1)  # same timestamp: no information, keep the last output
    np.testing.assert_array_equal(again, moved)
    with pytest.raises(ValueError, match="reset"):
        filt(np.zeros((3, 2)), 0.2)
    filt.reset()
    np.testing.assert_array_equal(filt(np.array([7.0, 8.0, 9.0]), 0.3), [7.0, 8.0, 9.0])


def test_bad_parameters_rejected():
    with pytest.raises(ValueError):
        OneEuroFilter(min_cutoff=0.0)

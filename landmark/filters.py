"""The One Euro filter (Casiez, Roussel & Vogel, CHI 2012) for smoothing landmarks in real time.

A first-order low-pass filter whose cutoff frequency rises with the signal's speed: when a landmark is
still, the cutoff stays at ``min_cutoff`` and jitter is strongly smoothed; when it moves fast, the cutoff
grows by ``beta * |speed|`` so the output follows with little lag. Speed itself is a low-passed derivative
(cutoff ``d_cutoff``). The smoothing factor of each step comes from the real time elapsed since the previous
sample, so irregular frame times (dropped frames, a slow detector) are handled correctly.

The filter works element-wise on numpy arrays of any fixed shape, e.g. all (K, 2) landmarks of a face at
once; each coordinate gets its own adaptive cutoff.
"""

from __future__ import annotations

import math

import numpy as np


def smoothing_factor(cutoff_hz: float | np.ndarray, dt: float) -> float | np.ndarray:
    """alpha of an exponential low-pass filter with the given cutoff, sampled ``dt`` seconds apart."""
    tau = 1.0 / (2.0 * math.pi * cutoff_hz)
    return 1.0 / (1.0 + tau / dt)


class OneEuroFilter:
    """Adaptive low-pass filter; ``filtered = f(x, t)`` with ``t`` in seconds, increasing.

    min_cutoff (Hz): smoothing of a still signal; lower means less jitter but more lag.
    beta: how much the cutoff grows with speed (in signal units per second); 0 gives a plain low-pass.
    d_cutoff (Hz): smoothing of the speed estimate.
    """

    def __init__(self, min_cutoff: float = 1.0, beta: float = 0.007, d_cutoff: float = 1.0) -> None:
        if min_cutoff <= 0 or d_cutoff <= 0 or beta < 0:
            raise ValueError("OneEuroFilter needs min_cutoff > 0, d_cutoff > 0 and beta >= 0")
        self.min_cutoff = min_cutoff
        self.beta = beta
        self.d_cutoff = d_cutoff
        self.reset()

    def reset(self) -> None:
        """Forget the past: the next sample is passed through unchanged (e.g. after the face was lost)."""
        self._t: float | None = None
        self._x: np.ndarray | None = None  # last filtered value
        self._dx: np.ndarray | None = None  # last filtered speed

    def __call__(self, x: np.ndarray, t: float) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        if self._x is None or self._t is None:
            self._t, self._x, self._dx = t, x.copy(), np.zeros_like(x)
            return x.copy()
        if x.shape != self._x.shape:
            raise ValueError(f"OneEuroFilter got shape {x.shape} after {self._x.shape}; call reset() first")
        dt = t - self._t
        if dt <= 0:
            # A repeated or out-of-order timestamp carries no timing information: keep the last output.
            return self._x.copy()

        # Speed, low-passed so that noise does not open the cutoff.
        a_d = smoothing_factor(self.d_cutoff, dt)
        dx = a_d * ((x - self._x) / dt) + (1.0 - a_d) * self._dx
        # The faster the signal moves, the higher the cutoff and the less lag.
        cutoff = self.min_cutoff + self.beta * np.abs(dx)
        a = smoothing_factor(cutoff, dt)
        filtered = a * x + (1.0 - a) * self._x

        self._t, self._x, self._dx = t, filtered, dx
        return filtered.copy()

"""Per-frame eye and mouth signals computed from landmarks.

The eye aspect ratio (EAR, Soukupova & Cech 2016) is the mean lid opening divided by the eye width:
about 0.25-0.35 for an open eye and near 0 for a closed one, whatever the face's size in the image. The
mouth aspect ratio (MAR) is the same ratio on the inner lip contour. Both work for any scheme because the
contours come from ``Scheme`` (``left_eye``, ``right_eye``, ``mouth_inner``).
"""

from __future__ import annotations

import numpy as np

from landmark.data.schemes import EyeIndices, Scheme


def aspect_ratios(points: np.ndarray, contour: EyeIndices) -> np.ndarray:
    """Aspect ratio of one contour for (..., K, 2) points: an array of shape (...), e.g. (T,) for (T, K, 2).

    A contour whose corners coincide (a degenerate prediction) gives 0 rather than a division by zero.
    """
    points = np.asarray(points, dtype=np.float64)
    upper = [u for u, _ in contour.pairs]
    lower = [lo for _, lo in contour.pairs]
    opening = np.linalg.norm(points[..., upper, :] - points[..., lower, :], axis=-1).mean(axis=-1)
    width = np.linalg.norm(points[..., contour.corner_a, :] - points[..., contour.corner_b, :], axis=-1)
    return np.divide(opening, width, out=np.zeros_like(opening), where=width > 0)


def eye_aspect_ratio(points: np.ndarray, eye: EyeIndices) -> float:
    """EAR of one eye for a single (K, 2) face: mean(|upper - lower|) / |corner_a - corner_b|."""
    return float(aspect_ratios(points, eye))


def mouth_aspect_ratio(points: np.ndarray, scheme: Scheme) -> float:
    """MAR of a single (K, 2) face, measured on the inner lip contour ``scheme.mouth_inner``."""
    return float(aspect_ratios(points, scheme.mouth_inner))


class FaceRatios:
    """Left EAR, right EAR and MAR of one (K, 2) face in a single vectorised step.

    The same numbers as the functions above, with the index arrays built once: the monitor calls this
    every frame, and three separate calls cost several times more in numpy overhead than the arithmetic.
    A degenerate contour (coinciding corners) gives NaN, which the monitor treats as no face.
    """

    def __init__(self, scheme: Scheme) -> None:
        contours = (scheme.left_eye, scheme.right_eye, scheme.mouth_inner)
        self.upper = np.array([u for c in contours for u, _ in c.pairs])
        self.lower = np.array([lo for c in contours for _, lo in c.pairs])
        counts = [len(c.pairs) for c in contours]
        self.starts = np.cumsum([0] + counts[:-1])  # where each contour's pairs begin, for reduceat
        self.counts = np.array(counts, dtype=np.float64)
        self.corner_a = np.array([c.corner_a for c in contours])
        self.corner_b = np.array([c.corner_b for c in contours])

    def __call__(self, points: np.ndarray) -> np.ndarray:
        lids = points[self.upper] - points[self.lower]
        opening = np.add.reduceat(np.sqrt((lids * lids).sum(axis=1)), self.starts) / self.counts
        corners = points[self.corner_a] - points[self.corner_b]
        width = np.sqrt((corners * corners).sum(axis=1))
        return np.divide(opening, width, out=np.full(3, np.nan), where=width > 0)

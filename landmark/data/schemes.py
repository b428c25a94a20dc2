"""Landmark schemes: what each index of a 98-point (WFLW) or 68-point (300-W) annotation means.

Everything that depends on the meaning of an index lives here as data: the left-right mirror permutation
used by horizontal flips, the normalisation indices for NME, the eye and mouth contours used for aspect
ratios, and the standard WFLW-98 -> 300W-68 mapping.

"Left" and "right" below are *image* left and right for a face looking at the camera, as in the annotation
guides: in 300-W, points 36-41 are the eye on the image's left (the subject's right eye).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class EyeIndices:
    """An eye (or inner mouth) contour: the two corners and the (upper, lower) lid pairs between them.

    The aspect ratio is mean(|upper - lower|) / |corner_a - corner_b| (Soukupova & Cech, 2016).
    """

    corner_a: int
    corner_b: int
    pairs: tuple[tuple[int, int], ...]

    @property
    def indices(self) -> tuple[int, ...]:
        """Every point of the contour: the two corners, then the lid pairs."""
        return (self.corner_a, self.corner_b, *(i for pair in self.pairs for i in pair))


@dataclass(frozen=True)
class Scheme:
    name: str
    num_points: int
    flip_permutation: tuple[int, ...]  # flipped[i] = original[flip_permutation[i]] after mirroring x
    nme_indices: tuple[int, int]  # outer eye corners: the inter-ocular normaliser
    left_eye: EyeIndices  # image-left eye
    right_eye: EyeIndices  # image-right eye
    mouth_inner: EyeIndices
    pupils: tuple[int, int] | None  # annotated pupil centres, when the scheme has them
    to_68: tuple[int, ...] | None  # indices that turn this scheme into 300W-68 order

    def eye_centres(self, points: np.ndarray) -> np.ndarray:
        """(..., 2, 2): pupils if annotated, else the mean of each eye contour (for inter-pupil NME)."""
        if self.pupils is not None:
            return points[..., list(self.pupils), :]
        centres = []
        for eye in (self.left_eye, self.right_eye):
            centres.append(points[..., list(eye.indices), :].mean(axis=-2))
        return np.stack(centres, axis=-2)


def _mirror_pairs(num_points: int, pairs: list[tuple[int, int]]) -> tuple[int, ...]:
    """Build a permutation from mirror pairs; indices not listed map to themselves (on the midline)."""
    perm = list(range(num_points))
    for a, b in pairs:
        perm[a], perm[b] = b, a
    return tuple(perm)


def _span_pairs(first: range, second: range) -> list[tuple[int, int]]:
    return list(zip(first, second, strict=True))


# --- WFLW, 98 points -------------------------------------------------------------------------------------
# 0-32 face contour (16 = chin), 33-41 left brow (33-37 upper, 38-41 lower), 42-50 right brow
# (42-46 upper, 47-50 lower), 51-54 nose bridge, 55-59 nostrils, 60-67 left eye (60 outer corner,
# 61-63 upper lid, 64 inner corner, 65-67 lower lid), 68-75 right eye (68 inner corner, 69-71 upper lid,
# 72 outer corner, 73-75 lower lid), 76-87 outer lips (76 left corner, 82 right corner), 88-95 inner lips
# (88 left corner, 92 right corner), 96 left pupil, 97 right pupil.
_WFLW_PAIRS = (
    _span_pairs(range(0, 16), range(32, 16, -1))
    + _span_pairs(range(33, 38), range(46, 41, -1))
    + _span_pairs(range(38, 42), range(50, 46, -1))
    + [(55, 59), (56, 58)]
    + _span_pairs(range(60, 65), range(72, 67, -1))
    + [(65, 75), (66, 74), (67, 73)]
    + [(76, 82), (77, 81), (78, 80), (83, 87), (84, 86)]
    + [(88, 92), (89, 91), (93, 95)]
    + [(96, 97)]
)

WFLW_TO_68 = tuple(
    list(range(0, 33, 2))  # contour: every other point
    + [33, 34, 35, 36, 37, 42, 43, 44, 45, 46]  # upper brows
    + [51, 52, 53, 54, 55, 56, 57, 58, 59]  # nose
    + [60, 61, 63, 64, 65, 67, 68, 69, 71, 72, 73, 75]  # eyes
    + list(range(76, 96))  # lips
)

WFLW_98 = Scheme(
    name="wflw98",
    num_points=98,
    flip_permutation=_mirror_pairs(98, _WFLW_PAIRS),
    nme_indices=(60, 72),
    left_eye=EyeIndices(60, 64, ((61, 67), (62, 66), (63, 65))),
    right_eye=EyeIndices(68, 72, ((69, 75), (70, 74), (71, 73))),
    mouth_inner=EyeIndices(88, 92, ((89, 95), (90, 94), (91, 93))),
    pupils=(96, 97),
    to_68=WFLW_TO_68,
)

# --- 300-W, 68 points (iBUG) -----------------------------------------------------------------------------
# 0-16 jaw (8 = chin), 17-21 left brow, 22-26 right brow, 27-30 nose bridge, 31-35 nostrils,
# 36-41 left eye (36 outer corner, 39 inner), 42-47 right eye (42 inner, 45 outer), 48-59 outer lips
# (48 left corner, 54 right corner), 60-67 inner lips (60 left corner, 64 right corner).
_IBUG_PAIRS = (
    _span_pairs(range(0, 8), range(16, 8, -1))
    + _span_pairs(range(17, 22), range(26, 21, -1))
    + [(31, 35), (32, 34)]
    + [(36, 45), (37, 44), (38, 43), (39, 42), (40, 47), (41, 46)]
    + [(48, 54), (49, 53), (50, 52), (55, 59), (56, 58)]
    + [(60, 64), (61, 63), (65, 67)]
)

IBUG_68 = Scheme(
    name="300w68",
    num_points=68,
    flip_permutation=_mirror_pairs(68, _IBUG_PAIRS),
    nme_indices=(36, 45),
    left_eye=EyeIndices(36, 39, ((37, 41), (38, 40))),
    right_eye=EyeIndices(42, 45, ((43, 47), (44, 46))),
    mouth_inner=EyeIndices(60, 64, ((61, 67), (62, 66), (63, 65))),
    pupils=None,
    to_68=tuple(range(68)),
)

SCHEMES = {WFLW_98.name: WFLW_98, IBUG_68.name: IBUG_68}


def scheme_for(name_or_points: str | int) -> Scheme:
    """Look a scheme up by name ("wflw98", "300w68") or by its number of points (98, 68)."""
    for scheme in SCHEMES.values():
        if name_or_points in (scheme.name, scheme.num_points):
            return scheme
    known = ", ".join(f"{s.name} ({s.num_points} points)" for s in SCHEMES.values())
    raise ValueError(f"unknown landmark scheme {name_or_points!r}; known: {known}")


def flip_points(points: np.ndarray, scheme: Scheme, mirror_x: float = 1.0) -> np.ndarray:
    """Mirror (..., K, 2) points horizontally (x -> mirror_x - x) and reorder them by the flip permutation.

    ``mirror_x`` is 1.0 for normalised crop coordinates in [0, 1], or ``width - 1`` for 0-based
    pixel-centre coordinates in an image ``width`` pixels wide.
    """
    mirrored = points[..., list(scheme.flip_permutation), :].copy()
    mirrored[..., 0] = mirror_x - mirrored[..., 0]
    return mirrored

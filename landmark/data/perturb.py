"""Photometric perturbations of whole photos: how landmarks hold up in a driver camera's conditions.

The 300-W photos are well exposed, in colour and sharp; a driver camera at night, against the sun or in
near-infrared is none of those. ``landmark eval --perturb NAME`` applies one of these to every photo before
the face detector and the landmark model see it, so the figure covers both, as deployed. Each is a fixed,
deterministic change of the kind the conditions cause (the noise is seeded), strong enough to show a
difference between models but leaving the face plainly visible to a person.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np

from landmark.data.readers import FaceRecord
from landmark.errors import DataError

NOISE_SIGMA = 20.0  # grey levels: a dim cabin at high sensor gain


def _levels(image: np.ndarray, gain: float, offset: float) -> np.ndarray:
    return cv2.convertScaleAbs(image, alpha=gain, beta=offset)


def _gamma(image: np.ndarray, gamma: float) -> np.ndarray:
    table = np.round(255.0 * (np.arange(256) / 255.0) ** gamma).astype(np.uint8)
    return cv2.LUT(image, table)


def _grey(image: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(cv2.cvtColor(image, cv2.COLOR_BGR2GRAY), cv2.COLOR_GRAY2BGR)


def _noise(image: np.ndarray) -> np.ndarray:
    rng = np.random.default_rng(0)
    return np.clip(image + rng.normal(0.0, NOISE_SIGMA, image.shape), 0, 255).astype(np.uint8)


def _motion_blur(image: np.ndarray) -> np.ndarray:
    kernel = np.zeros((9, 9), np.float32)
    kernel[4, :] = 1.0 / 9.0  # 9 px sideways: a head turning during the exposure
    return cv2.filter2D(image, -1, kernel)


def _jpeg(image: np.ndarray) -> np.ndarray:
    ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 15])
    return cv2.imdecode(data, cv2.IMREAD_COLOR) if ok else image


# name -> (what it stands for, the change)
PERTURBATIONS: dict[str, tuple[str, Callable[[np.ndarray], np.ndarray]]] = {
    "dark": ("underexposed: every grey level 70 down", lambda im: _levels(im, 1.0, -70.0)),
    "bright": ("overexposed: every grey level 70 up", lambda im: _levels(im, 1.0, 70.0)),
    "low-contrast": ("haze or glare: contrast x0.4 about mid-grey", lambda im: _levels(im, 0.4, 76.5)),
    "high-contrast": ("harsh sun: contrast x2 about mid-grey", lambda im: _levels(im, 2.0, -127.5)),
    "shadows": ("gamma 2.5: dark tones crushed", lambda im: _gamma(im, 2.5)),
    "highlights": ("gamma 0.4: bright tones washed out", lambda im: _gamma(im, 0.4)),
    "noise": (f"sensor noise: Gaussian, sigma {NOISE_SIGMA:g} grey levels", _noise),
    "motion-blur": ("9 px horizontal motion blur", _motion_blur),
    "jpeg": ("JPEG quality 15: a heavily compressed stream", _jpeg),
    "grey": ("a monochrome camera", _grey),
    "near-infrared": (
        "a monochrome NIR cabin camera's look: grey, contrast x1.8",
        lambda im: _levels(_grey(im), 1.8, -100.0),
    ),
}


def perturb_image(image: np.ndarray, name: str) -> np.ndarray:
    """``image`` (H, W, 3) uint8 BGR changed as ``PERTURBATIONS[name]`` says; the same shape and type."""
    return PERTURBATIONS[name][1](image)


@contextmanager
def perturbed_records(
    records: list[FaceRecord], name: str, progress: Callable | None = None
) -> Iterator[list[FaceRecord]]:
    """``records`` whose photos are perturbed copies, written losslessly (PNG) to a temporary folder that is
    removed on exit: every reader of ``image_path`` (detectors, datasets, dlib) then sees the same pixels.
    ``progress`` wraps the record list (e.g. ``progress_bar``)."""
    from landmark.data.dataset import load_image

    with tempfile.TemporaryDirectory(prefix=f"landmark-{name}-") as folder:
        out, written = [], {}
        for record in progress(records) if progress else records:
            path = written.get(record.image_path)
            if path is None:  # a photo with several faces is perturbed once
                path = Path(folder) / f"{len(written):06d}.png"
                if not cv2.imwrite(str(path), perturb_image(load_image(record.image_path), name)):
                    raise DataError(f"{folder}: cannot write the perturbed copy of {record.image_path} (disk full?)")
                written[record.image_path] = path
            out.append(replace(record, image_path=path))
        yield out

"""Eye-state data on disk: a folder with ``open/`` and ``closed/`` eye crops (the CEW layout) and its split.

File names keep the face they come from (``closed_eye_0001.jpg_face_1_L.jpg``, ``Aaron_Guiel_0001_L.jpg``),
so both eyes of a face, and every photo of a person in ``open/``, fall on the same side of a split: a model
is validated on faces it never saw. Reading needs only OpenCV and NumPy (``landmark eval-eyes`` runs here).
"""

from __future__ import annotations

import hashlib
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np

from landmark.dms.signals import eye_aspect_ratio
from landmark.errors import DataError
from landmark.eyes.crop import EYE_SIZE, eye_crop_matrix, warp_eye

if TYPE_CHECKING:
    from landmark.data.readers import FaceRecord
    from landmark.data.schemes import Scheme

CLASSES = ("open", "closed")  # label 0 = open, 1 = closed
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".pgm")
SPLITS = ("all", "train", "val")
VAL_FRACTION = 0.2  # share of faces (persons for open/) held out for validation by the default split
SPLIT_SEED = 0


@dataclass
class EyeSet:
    """Eye crops in memory: (N, S, S) uint8 grey, labels (N,) 1 = closed, a face group and a path per crop."""

    crops: np.ndarray
    labels: np.ndarray
    groups: list[str]
    paths: list[Path]

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, mask: np.ndarray) -> EyeSet:
        index = np.flatnonzero(mask)
        return EyeSet(
            self.crops[index], self.labels[index], [self.groups[i] for i in index], [self.paths[i] for i in index]
        )


def face_group(name: str, label: str) -> str:
    """The face (closed/) or person (open/) a crop file belongs to: the name without the eye and photo number.

    ``closed_eye_0001.jpg_face_1_L.jpg`` -> ``closed/closed_eye_0001.jpg_face_1``;
    ``Aaron_Guiel_0001_L.jpg`` -> ``open/Aaron_Guiel``. Other names keep everything before a final
    ``_L`` / ``_R`` (or the whole stem).
    """
    stem = Path(name).stem
    stem = re.sub(r"_[LR]$", "", stem)
    if label == "open":
        stem = re.sub(r"_\d{4}$", "", stem)  # LFW photo number: all photos of a person together
    return f"{label}/{stem}"


def in_validation(group: str, val_fraction: float = VAL_FRACTION, seed: int = SPLIT_SEED) -> bool:
    """Whether a face group is in the validation part: a stable hash of (seed, group), independent of which
    other files exist, so adding crops never moves old ones across the split."""
    digest = hashlib.sha256(f"{seed}:{group}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < val_fraction


def split_mask(groups: list[str], split: str, val_fraction: float = VAL_FRACTION, seed: int = SPLIT_SEED) -> np.ndarray:
    """Boolean mask of the crops in ``split`` ("all", "train" or "val") of the by-face split."""
    if split not in SPLITS:
        raise ValueError(f"split: expected one of {', '.join(SPLITS)}, got {split!r}")
    if split == "all":
        return np.ones(len(groups), dtype=bool)
    val = np.array([in_validation(g, val_fraction, seed) for g in groups], dtype=bool)
    return val if split == "val" else ~val


def read_eye_image(path: Path, size: int = EYE_SIZE) -> np.ndarray:
    """One crop as (size, size) uint8 grey (resized with area averaging when it has another size)."""
    image = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if image is None or image.size == 0:
        raise DataError(f"{path}: cannot read as an image (expected a grey or colour eye crop)")
    if image.shape != (size, size):
        shrink = image.shape[0] > size or image.shape[1] > size
        image = cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
    return image


def list_eye_folder(root: str | Path) -> list[tuple[Path, int]]:
    """(path, label) of every image in ``root/open`` and ``root/closed``; a missing folder is one error line."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: eye data folder not found (expected a folder with open/ and closed/ eye crops)")
    for name in CLASSES:
        if not (root / name).is_dir():
            raise DataError(f"{root / name}: folder not found (expected eye crops in {root}/open and {root}/closed)")
    items = []
    for label, name in enumerate(CLASSES):
        folder = root / name
        files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        if not files:
            kinds = ", ".join(IMAGE_SUFFIXES)
            raise DataError(f"{folder}: no eye images ({kinds}) in the folder")
        items += [(p, label) for p in files]
    return items


def load_eye_folder(root: str | Path, split: str = "all", size: int = EYE_SIZE, **split_args) -> EyeSet:
    """The crops of ``root`` (CEW layout) in ``split`` of the by-face split."""
    items = list_eye_folder(root)
    groups = [face_group(p.name, CLASSES[label]) for p, label in items]
    mask = split_mask(groups, split, **split_args)
    chosen = [(item, g) for item, g, keep in zip(items, groups, mask, strict=True) if keep]
    if not chosen:
        raise DataError(f"{root}: no eye images in the '{split}' split")
    crops = np.stack([read_eye_image(p, size) for (p, _), _ in chosen])
    labels = np.array([label for (_, label), _ in chosen], dtype=np.int64)
    return EyeSet(crops, labels, [g for _, g in chosen], [p for (p, _), _ in chosen])


# --- eyes of annotated faces (300-W) -------------------------------------------------------------------------

FACE_OPEN_EAR = 0.18  # an annotated eye with EAR >= this is open ...
FACE_CLOSED_EAR = 0.06  # ... <= this closed; the squints and half-shut lids in between are left out
# The eye-state model's training takes only the NARROW open eyes (train.EyeTrainConfig.faces_open_ears): lids
# lowered by a downward gaze, a smile or a squint, still open by the PERCLOS P80 rule (at EAR 0.12 an eye with
# an open EAR of 0.28 is about 64% closed, under the 80% that counts as closed), which LFW's portraits lack.
NARROW_OPEN_EARS = (0.12, FACE_OPEN_EAR)


def face_eyes(
    records: list[FaceRecord],
    scheme: Scheme,
    size: int = EYE_SIZE,
    open_ears: tuple[float, float] = (FACE_OPEN_EAR, math.inf),
    closed_ear: float | None = FACE_CLOSED_EAR,
) -> EyeSet:
    """Both eyes of annotated face photos (``FaceRecord``s), cropped from their annotated points exactly as the
    runtime crops predicted ones, labelled by the annotated eye aspect ratio: open when it lies in
    ``open_ears`` (low inclusive, high exclusive), closed when it is at most ``closed_ear`` (None: no closed
    crops), left out otherwise.

    300-W photos are mostly open eyes seen from every angle -- looking down, behind glasses, in shadow -- the
    open eyes that LFW's frontal portraits (CEW's open class) lack; the few shut lids in them are closed
    examples from yet another source. Give only the faces a landmark model trains on, never its validation
    faces: the open-eye check (``landmark eval-eyes --faces``) scores those.
    """
    crops, labels, groups, paths = [], [], [], []
    for record in records:
        image = cv2.imread(str(record.image_path), cv2.IMREAD_COLOR)
        if image is None:
            raise DataError(f"{record.image_path}: cannot read image")
        points = np.asarray(record.points, dtype=np.float64)
        for eye in (scheme.left_eye, scheme.right_eye):
            ear = eye_aspect_ratio(points, eye)
            is_open = open_ears[0] <= ear < open_ears[1]
            is_closed = closed_ear is not None and ear <= closed_ear
            if not (is_open or is_closed):
                continue
            crops.append(warp_eye(image, eye_crop_matrix(points, eye, size), size))
            labels.append(int(is_closed))
            groups.append(f"faces/{Path(record.image_path).stem}")
            paths.append(Path(record.image_path))
    if not crops:
        raise DataError("no annotated face gave an open or closed eye crop")
    return EyeSet(np.stack(crops), np.array(labels, dtype=np.int64), groups, paths)

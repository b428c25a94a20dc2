"""The training/evaluation Dataset: decode, crop (+ augment), normalise, and attach head-pose targets.

Each sample is a dict:
    image       float32 (3, S, S)  BGR crop normalised as in ``landmark.data.crop.image_to_tensor``
    landmarks   float32 (K, 2)     normalised crop coordinates ((crop_px + 0.5) / S)
    angles      float32 (3,)       yaw, pitch, roll (radians) of the final crop landmarks (PFLD's
                                   auxiliary target), conventions in ``landmark.data.pose``
    attributes  float32 (6,)       WFLW attribute flags (zeros when unknown)
    index       int                position in ``records``
"""

from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset, get_worker_info

from landmark.data.augment import Augmenter
from landmark.data.crop import face_box_from_points, image_to_tensor
from landmark.data.pose import head_pose
from landmark.data.readers import FaceRecord, read_300w, read_table, read_wflw, split_records
from landmark.data.schemes import Scheme
from landmark.errors import ConfigError, DataError

logger = logging.getLogger(__name__)


def load_image(path: Path) -> np.ndarray:
    """BGR uint8 image; ``DataError`` naming the path when it cannot be decoded."""
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise DataError(f"{path}: cannot read image (missing, unreadable or not an image)")
    return image


class LandmarkDataset(Dataset):
    """Faces from ``records`` as fixed-size crops with normalised landmarks.

    ``box_source="points"`` crops around the landmark box (training, and evaluation protocols that use the
    ground truth); ``"box"`` uses the annotated face box (WFLW's detector-like rectangles). ``augment`` is a
    dict as in ``configs/augment/*.yaml`` (None: no augmentation); ``box_jitter`` adds detector-like box
    noise. With ``box_source="box"``, ``landmark_box_share`` of the samples (drawn at random each time) are
    cropped around the landmark box instead: a tracker re-crops from the last frame's landmarks, so a model
    trained on detector boxes should also see those. Random streams restart from ``seed`` and, in DataLoader
    workers, from torch's per-worker seed.
    """

    def __init__(
        self,
        records: list[FaceRecord],
        scheme: Scheme,
        input_size: int = 112,
        crop_scale: float = 1.25,
        augment: dict | None = None,
        box_source: str = "points",
        box_jitter: float = 0.0,
        seed: int = 0,
        landmark_box_share: float = 0.0,
    ):
        if box_source not in ("points", "box"):
            raise ConfigError(f"box_source must be 'points' or 'box', got {box_source!r}")
        if not 0.0 <= landmark_box_share <= 1.0:
            raise ConfigError(f"landmark_box_share must be in [0, 1], got {landmark_box_share}")
        for record in records:
            if len(record.points) != scheme.num_points:
                raise DataError(
                    f"{record.source}: {len(record.points)} points, but scheme {scheme.name} has {scheme.num_points}"
                )
            if box_source == "box" and record.box is None:
                raise DataError(f"{record.source}: box_source is 'box' but this sample has no face box")
        self.records = records
        self.scheme = scheme
        self.input_size = input_size
        self.crop_scale = crop_scale
        self.box_source = box_source
        self.landmark_box_share = landmark_box_share
        self.augmenter = Augmenter(augment, scheme, box_jitter, seed)
        self._worker_seed: int | None = None

    def __len__(self) -> int:
        return len(self.records)

    def reseed(self, seed: int) -> None:
        self.augmenter.reseed(seed)
        self._worker_seed = seed

    def _seed_worker(self) -> None:
        """Forked workers start with identical random state: give each torch's own worker seed."""
        info = get_worker_info()
        if info is not None and self._worker_seed != info.seed:
            self.reseed(info.seed)

    def __getitem__(self, index: int) -> dict:
        self._seed_worker()
        record = self.records[index]
        image = load_image(record.image_path)
        use_box = self.box_source == "box"
        if use_box and self.landmark_box_share > 0:  # no draw otherwise: other configs keep their random streams
            use_box = self.augmenter.rng.random() >= self.landmark_box_share
        box = record.box if use_box else face_box_from_points(record.points)
        crop, landmarks = self.augmenter(image, record.points, box, self.input_size, self.crop_scale)
        size = self.input_size
        angles = head_pose(landmarks * size - 0.5, self.scheme, (size, size))
        return {
            "image": torch.from_numpy(image_to_tensor(crop)),
            "landmarks": torch.from_numpy(landmarks.astype(np.float32)),
            "angles": torch.from_numpy(angles.astype(np.float32)),
            "attributes": torch.from_numpy(record.attributes.astype(np.float32)),
            "index": index,
        }


def prepare_workers(workers: int) -> None:
    """Call before a DataLoader with ``workers`` processes starts them: OpenCV goes single-threaded in this
    process, and the forked workers inherit that.

    Why: one process per core already, so OpenCV's own pool would only oversubscribe the cores. It is set here,
    not in each worker, because ``cv2.setNumThreads`` in a freshly forked worker can deadlock on the thread
    pool state it inherited (a worker hung there once in the test suite); a worker that inherits a single
    thread never touches the pool.
    """
    if workers > 0:
        cv2.setNumThreads(1)


def worker_init_fn(worker_id: int) -> None:
    """DataLoader ``worker_init_fn``: reseed the worker's dataset copy with torch's per-worker seed.

    ``LandmarkDataset`` also does this by itself on its first item in a worker; this hook covers wrappers
    such as ``torch.utils.data.Subset``.
    """
    info = get_worker_info()
    dataset = info.dataset
    while not hasattr(dataset, "reseed") and hasattr(dataset, "dataset"):
        dataset = dataset.dataset
    if hasattr(dataset, "reseed"):
        dataset.reseed(info.seed % 2**32)


DATA_FORMATS = ("wflw", "300w", "csv", "json")


def build_records(data_cfg: dict, split: str) -> list[FaceRecord]:
    """Records for ``split`` ("train", "val" or "test") of a data config.

    Keys: ``format`` (wflw | 300w | csv | json), ``root`` (WFLW folder, 300-W folder or table file), and
    optionally ``val_fraction`` + ``split_seed`` to hold out a fixed random validation part of the
    training data, ``skip_invalid``. Without ``val_fraction`` "val" is the WFLW test list, or all records for
    the other formats; "test" is always the WFLW test list or all records.
    """
    fmt, root = data_cfg.get("format"), data_cfg.get("root")
    if fmt not in DATA_FORMATS:
        raise ConfigError(f"data.format: expected one of {', '.join(DATA_FORMATS)}, got {fmt!r}")
    if not root:
        raise ConfigError("data.root: missing (the dataset folder or annotation file)")
    if split not in ("train", "val", "test"):
        raise ConfigError(f"split must be 'train', 'val' or 'test', got {split!r}")
    skip_invalid = bool(data_cfg.get("skip_invalid", False))
    val_fraction = data_cfg.get("val_fraction")
    seed = int(data_cfg.get("split_seed", 0))

    if fmt == "wflw":
        if split == "test" or (split == "val" and val_fraction is None):
            return read_wflw(Path(root), "test", skip_invalid=skip_invalid)
        records = read_wflw(Path(root), "train", skip_invalid=skip_invalid)
    elif fmt == "300w":
        records = read_300w(Path(root), skip_invalid=skip_invalid)
    else:
        records = read_table(Path(root), skip_invalid=skip_invalid, fmt=fmt)

    if val_fraction is None or split == "test":
        return records
    if not isinstance(val_fraction, (int, float)) or not 0.0 < val_fraction < 1.0:
        raise ConfigError(f"data.val_fraction: expected a number in (0, 1), got {val_fraction!r}")
    train, val = split_records(records, float(val_fraction), seed)
    return train if split == "train" else val

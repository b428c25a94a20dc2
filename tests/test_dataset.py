"""LandmarkDataset, build_records and the pipeline throughput helper."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
import torch
from conftest import write_synthetic_face
from torch.utils.data import DataLoader

from landmark.data.augment import load_augment_config
from landmark.data.crop import crop_matrix, face_box_from_points, points_to_crop
from landmark.data.dataset import LandmarkDataset, build_records, prepare_workers, worker_init_fn
from landmark.data.readers import FaceRecord
from landmark.data.schemes import IBUG_68, WFLW_98
from landmark.data.throughput import measure_pipeline
from landmark.errors import ConfigError, DataError


def write_300w_folder(folder, n: int = 4):
    """n synthetic faces as a 300-W folder (.png + 1-based .pts)."""
    folder.mkdir(exist_ok=True)
    for i in range(n):
        path, points = write_synthetic_face(folder, f"face_{i}")
        body = "\n".join(f"{x + 1} {y + 1}" for x, y in points)
        path.with_suffix(".pts").write_text(f"version: 1\nn_points: 68\n{{\n{body}\n}}\n")
    return folder


def synthetic_records(tmp_path, n: int = 4) -> list[FaceRecord]:
    records = []
    for i in range(n):
        path, points = write_synthetic_face(tmp_path, f"face_{i}")
        attributes = np.array([1, 0, 0, 1, 0, i % 2], np.uint8)
        records.append(FaceRecord(path, points, None, attributes, f"synthetic:{i}"))
    return records


def test_sample_contents_without_augmentation(tmp_path):
    records = synthetic_records(tmp_path, 2)
    dataset = LandmarkDataset(records, IBUG_68, input_size=96)
    sample = dataset[1]
    assert sample["image"].shape == (3, 96, 96) and sample["image"].dtype == torch.float32
    assert -1.0 <= sample["image"].min() and sample["image"].max() <= 1.0 and sample["image"].max() > 0.0
    expected = points_to_crop(records[1].points, crop_matrix(face_box_from_points(records[1].points), 96), 96)
    np.testing.assert_allclose(sample["landmarks"].numpy(), expected, atol=1e-6)
    assert sample["landmarks"].dtype == torch.float32
    assert sample["angles"].shape == (3,) and torch.isfinite(sample["angles"]).all()
    assert sample["attributes"].tolist() == [1, 0, 0, 1, 0, 1] and sample["index"] == 1
    np.testing.assert_array_equal(dataset[1]["image"].numpy(), sample["image"].numpy())  # deterministic


def test_angles_follow_the_augmented_crop(tmp_path):
    records = synthetic_records(tmp_path, 1)
    dataset = LandmarkDataset(records, IBUG_68, augment={"rotation": 30}, seed=1)
    rolls = [float(dataset[0]["angles"][2]) for _ in range(20)]
    assert max(rolls) - min(rolls) > math.radians(20)  # in-plane rotation shows up as roll


def test_box_source_and_errors(tmp_path):
    records = synthetic_records(tmp_path, 1)
    with pytest.raises(DataError, match="synthetic:0: box_source is 'box' but this sample has no face box"):
        LandmarkDataset(records, IBUG_68, box_source="box")
    with pytest.raises(DataError, match="synthetic:0: 68 points, but scheme wflw98 has 98"):
        LandmarkDataset(records, WFLW_98)
    with pytest.raises(ConfigError, match="box_source"):
        LandmarkDataset(records, IBUG_68, box_source="detector")
    records[0].box = face_box_from_points(records[0].points) + np.array([-20, -20, 20, 20], np.float32)
    wide = LandmarkDataset(records, IBUG_68, box_source="box")[0]["landmarks"]
    tight = LandmarkDataset(records, IBUG_68)[0]["landmarks"]
    assert np.ptp(wide.numpy(), axis=0).max() < np.ptp(tight.numpy(), axis=0).max()

    # landmark_box_share: that fraction of draws crops around the landmark box instead of the record's box
    mixed = LandmarkDataset(records * 200, IBUG_68, box_source="box", landmark_box_share=0.25, seed=3)
    spans = np.array([np.ptp(mixed[i]["landmarks"].numpy(), axis=0).max() for i in range(200)])
    tight_span = np.ptp(tight.numpy(), axis=0).max()
    assert 0.15 < np.isclose(spans, tight_span, atol=1e-4).mean() < 0.35
    with pytest.raises(ConfigError, match=r"landmark_box_share must be in \[0, 1\], got -0.1"):
        LandmarkDataset(records, IBUG_68, box_source="box", landmark_box_share=-0.1)


def test_unreadable_image_names_the_path(tmp_path):
    records = synthetic_records(tmp_path, 1)
    records[0].image_path.write_bytes(b"this is not a png")
    with pytest.raises(DataError, match=r"face_0.png: cannot read image"):
        LandmarkDataset(records, IBUG_68)[0]


def test_workers_get_different_random_streams(tmp_path):
    records = synthetic_records(tmp_path, 1) * 4
    dataset = LandmarkDataset(records, IBUG_68, input_size=32, augment=load_augment_config("strong"))
    prepare_workers(2)
    loader = DataLoader(dataset, batch_size=2, num_workers=2, worker_init_fn=worker_init_fn)
    first, second = (batch["landmarks"] for batch in loader)  # batch 0 from worker 0, batch 1 from worker 1
    assert (first - second).abs().max() > 1e-3


def test_build_records_formats_and_splits(tmp_path):
    folder = write_300w_folder(tmp_path / "faces", n=10)
    cfg = {"format": "300w", "root": str(folder), "val_fraction": 0.3, "split_seed": 1}
    train, val = build_records(cfg, "train"), build_records(cfg, "val")
    assert len(train) == 7 and len(val) == 3
    assert not {r.image_path for r in train} & {r.image_path for r in val}
    assert len(build_records(cfg, "test")) == 10
    assert len(build_records({"format": "300w", "root": str(folder)}, "val")) == 10

    rows = ["image," + ",".join(f"x{i},y{i}" for i in range(68))]
    for record in train[:2]:
        rows.append(f"faces/{record.image_path.name}," + ",".join(f"{v:.3f}" for v in record.points.ravel()))
    (tmp_path / "faces.csv").write_text("\n".join(rows) + "\n")
    assert len(build_records({"format": "csv", "root": str(tmp_path / "faces.csv")}, "train")) == 2

    for cfg, message in [
        ({"format": "coco", "root": "x"}, r"data.format: expected one of wflw, 300w, csv, json, got 'coco'"),
        ({"format": "300w"}, r"data.root: missing"),
        ({"format": "300w", "root": str(folder), "val_fraction": 2}, r"data.val_fraction"),
    ]:
        with pytest.raises(ConfigError, match=message):
            build_records(cfg, "train")


def test_measure_pipeline_counts_samples(tmp_path):
    dataset = LandmarkDataset(synthetic_records(tmp_path, 3), IBUG_68, input_size=32)
    result = measure_pipeline(dataset, workers=0, batch_size=2, seconds=0.2)
    assert result["workers"] == 0 and result["samples"] > 0 and result["samples_per_s"] > 0


def test_dataloader_over_real_300w(shared_data):
    records = build_records({"format": "300w", "root": str(shared_data / "faces300w" / "train")}, "test")
    dataset = LandmarkDataset(records, IBUG_68, augment=load_augment_config("default"), box_jitter=0.05)
    batch = next(iter(DataLoader(dataset, batch_size=8, shuffle=True, num_workers=0)))
    assert batch["image"].shape == (8, 3, 112, 112)
    assert batch["landmarks"].shape == (8, 68, 2) and torch.isfinite(batch["landmarks"]).all()
    assert batch["angles"].shape == (8, 3) and batch["attributes"].shape == (8, 6)
    # The faces fill most of the crop: landmarks are spread over a good part of [0, 1].
    spread = batch["landmarks"].amax(dim=1) - batch["landmarks"].amin(dim=1)
    assert (spread > 0.4).all() and (spread < 1.0).all()


class _OpenCvThreads(torch.utils.data.Dataset):
    def __len__(self) -> int:
        return 2

    def __getitem__(self, index: int) -> int:
        return cv2.getNumThreads()


def test_workers_inherit_a_single_opencv_thread_without_setting_it_themselves():
    before = cv2.getNumThreads()
    cv2.setNumThreads(2)
    try:
        prepare_workers(1)
        seen = [int(batch) for batch in DataLoader(_OpenCvThreads(), batch_size=1, num_workers=1)]
    finally:
        cv2.setNumThreads(before)
    assert seen == [1, 1]

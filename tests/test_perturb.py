"""Photometric perturbations for robustness evaluation (landmark/data/perturb.py, ``landmark eval --perturb``)."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from landmark.cli import main
from landmark.data.perturb import PERTURBATIONS, perturb_image, perturbed_records
from landmark.data.readers import FaceRecord


def _photo() -> np.ndarray:
    """A colour gradient with a bright disc and vertical stripes: mid tones, both ends of the range, edges."""
    y, x = np.mgrid[0:96, 0:128]
    image = np.stack([x * 2, y * 2, (x + y)], axis=-1).astype(np.uint8)
    image[:, (x[0] // 4) % 2 == 0] //= 2
    cv2.circle(image, (64, 48), 20, (250, 240, 230), -1)
    return image


@pytest.mark.parametrize("name", list(PERTURBATIONS))
def test_each_perturbation_changes_the_photo_the_same_way_every_time(name: str) -> None:
    image = _photo()
    changed = perturb_image(image, name)
    assert changed.shape == image.shape and changed.dtype == np.uint8
    assert np.array_equal(changed, perturb_image(image.copy(), name))  # deterministic, noise included
    difference = np.abs(changed.astype(int) - image).mean()
    assert 2.0 < difference < 100.0  # a real change that leaves the picture recognisable
    assert np.array_equal(image, _photo())  # the input is not modified


def test_perturbed_records_point_at_temporary_copies(tmp_path: Path) -> None:
    cv2.imwrite(str(tmp_path / "a.jpg"), _photo())
    points = np.zeros((68, 2), np.float32)
    records = [FaceRecord(tmp_path / "a.jpg", points), FaceRecord(tmp_path / "a.jpg", points + 1)]  # two faces
    with perturbed_records(records, "dark") as copies:
        assert [c.points.tolist() for c in copies] == [r.points.tolist() for r in records]
        assert copies[0].image_path == copies[1].image_path != records[0].image_path  # one copy per photo
        copy = cv2.imread(str(copies[0].image_path))
        assert copy.mean() < cv2.imread(str(tmp_path / "a.jpg")).mean() - 30
        folder = copies[0].image_path.parent
    assert not folder.exists()
    assert [r.image_path for r in records] == [tmp_path / "a.jpg"] * 2


def test_eval_perturb_scores_the_shipped_model_on_changed_real_faces(
    shared_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    # The 121 held-out 300-W faces, landmark boxes, the shipped model: a camera's conditions cost accuracy
    # (that is what the option measures), the HELEN / AFW subsets are still told apart by the photos' names.
    results = {}
    for perturb in (None, "near-infrared"):
        out = tmp_path / f"{perturb}.json"
        args = ["eval", "--data-format", "300w", "--data", str(shared_data / "faces300w" / "train")]
        args += ["--val-fraction", "0.1", "--json", str(out), "--report", str(tmp_path / f"report-{perturb}")]
        args += ["--perturb", perturb] if perturb else []
        assert main(args) == 0
        results[perturb] = json.loads(out.read_text())
    assert "photos perturbed: near-infrared" in capsys.readouterr().out
    assert "- photos perturbed: near-infrared" in (tmp_path / "report-near-infrared" / "report.md").read_text()
    assert "- photos perturbed: no" in (tmp_path / "report-None" / "report.md").read_text()
    plain, infrared = results[None], results["near-infrared"]
    assert infrared["perturb"] == "near-infrared" and plain["perturb"] is None
    assert {"helen", "afw"} <= infrared["subsets"].keys()
    assert plain["nme_mean"] < 0.045 and plain["nme_mean"] + 0.003 < infrared["nme_mean"] < 0.08

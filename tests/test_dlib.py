"""dlib as the measured incumbent: its HOG detector, its shape predictor behind ``eval --dlib`` and ``bench --dlib``.

The real 68-point model is 100 MB and optional, so these tests train a tiny dlib shape predictor on
synthetic dot faces (under a second) and check our side of the plumbing with it: box conventions, the
flip test, the CLI and the errors.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import write_synthetic_face

from landmark.cli import main
from landmark.config import default_model_path
from landmark.data.crop import face_box_from_points
from landmark.data.dataset import load_image
from landmark.data.readers import read_300w
from landmark.data.schemes import IBUG_68, flip_points
from landmark.detect import DlibHogDetector, build_detector
from landmark.detect.calibration import BoxCalibration, box_iou
from landmark.detect.dlib_hog import DLIB_CALIBRATION
from landmark.errors import LandmarkError
from landmark.inference.dlib_predictor import DlibShapePredictor
from landmark.train.metrics import per_face_nme

dlib = pytest.importorskip("dlib", reason="dlib-bin is part of the dev install (pyproject's dev extra)")

SPACINGS = (12.0, 13.0, 14.0, 15.0, 16.0, 13.5)


def write_faces(folder: Path) -> list[tuple[Path, np.ndarray]]:
    """Six symmetric 68-point dot faces of different sizes as a 300-W folder (.png + 1-based .pts)."""
    folder.mkdir(parents=True, exist_ok=True)
    faces = []
    for i, spacing in enumerate(SPACINGS):
        path, points = write_synthetic_face(folder, f"face_{i}", spacing=spacing)
        body = "\n".join(f"{x + 1} {y + 1}" for x, y in points)
        path.with_suffix(".pts").write_text(f"version: 1\nn_points: 68\n{{\n{body}\n}}\n")
        faces.append((path, points))
    return faces


@pytest.fixture(scope="module")
def tiny_dlib_model(tmp_path_factory) -> tuple[Path, list[tuple[Path, np.ndarray]]]:
    """(a dlib shape predictor .dat trained on the dot faces, the faces), trained on dlib's box convention:
    the HOG-style box that ``DLIB_CALIBRATION.invert`` makes of each landmark box."""
    folder = tmp_path_factory.mktemp("dlib")
    faces = write_faces(folder / "faces")
    images, objects = [], []
    for path, points in faces:
        box = np.round(DLIB_CALIBRATION.invert(face_box_from_points(points))).astype(int)
        rect = dlib.rectangle(*(int(v) for v in box))
        parts = [dlib.point(int(round(x)), int(round(y))) for x, y in points]
        images.append(np.ascontiguousarray(load_image(path)[:, :, ::-1]))
        objects.append([dlib.full_object_detection(rect, parts)])
    options = dlib.shape_predictor_training_options()
    options.cascade_depth, options.tree_depth, options.num_trees_per_cascade_level = 3, 2, 10
    options.oversampling_amount, options.feature_pool_size, options.num_threads = 5, 100, 1
    options.random_seed = "0"
    model = folder / "tiny.dat"
    dlib.train_shape_predictor(images, objects, options).save(str(model))
    return model, faces


def test_box_calibration_invert_undoes_apply() -> None:
    calibration = BoxCalibration(scale_x=1.025, scale_y=0.97, shift_x=0.01, shift_y=0.119)
    detection = np.array([40.0, 60.0, 140.0, 170.0], np.float32)
    np.testing.assert_allclose(calibration.invert(calibration.apply(detection)), detection, atol=1e-4)
    np.testing.assert_allclose(calibration.apply(calibration.invert(detection)), detection, atol=1e-4)


def test_the_dlib_predictor_finds_the_faces_it_was_trained_on(tiny_dlib_model) -> None:
    model, faces = tiny_dlib_model
    predictor = DlibShapePredictor(model)
    assert predictor.scheme is IBUG_68
    pred = np.stack([predictor.predict(load_image(path), face_box_from_points(points)) for path, points in faces])
    truth = np.stack([points for _, points in faces])
    # A box convention that differed between training and prediction would put every point far off.
    assert per_face_nme(pred, truth, IBUG_68).max() < 0.05


def test_the_dlib_flip_test_is_exactly_symmetric_on_a_symmetric_face(tiny_dlib_model) -> None:
    """On a left-right symmetric image and box, the mirrored pass sees the same pixels, so a correct flip
    test returns a mirror-symmetric shape; a wrong mirror axis (width instead of width - 1) shifts it by a
    pixel and a wrong point order breaks the symmetry."""
    model, faces = tiny_dlib_model
    path, points = faces[2]
    image = load_image(path)
    averaged = DlibShapePredictor(model).predict(image, face_box_from_points(points), flip_test=True)
    np.testing.assert_allclose(flip_points(averaged, IBUG_68, image.shape[1] - 1), averaged, atol=1e-4)


def test_eval_dlib_writes_the_issue_fields_and_falls_back_where_hog_finds_nothing(tiny_dlib_model, tmp_path) -> None:
    model, faces = tiny_dlib_model
    folder = faces[0][0].parent
    out = tmp_path / "dlib.json"
    assert main(["eval", "--dlib", str(model), "--data-format", "300w", "--data", str(folder), "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    for key in ("nme_mean", "nme_median", "fr10", "auc10", "n", "fallbacks"):
        assert key in report
    assert report["n"] == len(faces) and report["nme_mean"] < 0.05
    assert report["checkpoint"] == f"dlib:{model}"
    # Dots on black are no face to dlib's HOG detector: every face falls back to its landmark box.
    args = ["eval", "--dlib", str(model), "--data-format", "300w", "--data", str(folder), "--json", str(out)]
    assert main([*args, "--box", "detector", "--detector", "dlib"]) == 0
    assert json.loads(out.read_text())["fallbacks"] == len(faces)


def test_eval_dlib_with_a_checkpoint_is_one_clear_error(tiny_dlib_model, capsys) -> None:
    model, faces = tiny_dlib_model
    code = main(
        ["eval", "--dlib", str(model), "--checkpoint", str(default_model_path((".pt",))),
         "--data-format", "300w", "--data", str(faces[0][0].parent)]
    )  # fmt: skip
    assert code == 2
    assert "--dlib and --checkpoint: choose one" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("content", "message"),
    [(None, "dlib shape predictor model not found"), (b"not a model", "not a dlib shape predictor model")],
)
def test_a_bad_dlib_model_file_is_one_clear_error(tmp_path, content, message) -> None:
    path = tmp_path / "model.dat"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(LandmarkError, match=message) as error:
        DlibShapePredictor(path)
    assert str(path) in str(error.value)


def test_without_dlib_installed_the_errors_say_how_to_install_it(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "dlib", None)  # makes ``import dlib`` raise ImportError
    with pytest.raises(LandmarkError, match=r"dlib is not installed: pip install dlib-bin face_recognition_models"):
        DlibShapePredictor()
    with pytest.raises(LandmarkError, match=r"dlib is not installed: pip install dlib-bin"):
        build_detector("dlib", photos=True)  # asked for by name: that detector or an error, never Haar instead


def test_the_hog_detector_returns_n_by_5_rows_and_finds_real_faces(shared_data, tmp_path) -> None:
    detector = build_detector("dlib", photos=True)
    assert isinstance(detector, DlibHogDetector) and detector.upsample == 1
    assert build_detector("dlib").upsample == 0  # video: a driver's face is large, and 4x faster
    empty = detector.detect(np.zeros((120, 160, 3), np.uint8))
    assert empty.shape == (0, 5) and empty.dtype == np.float32
    source = shared_data / "faces300w" / "train"
    for pts in sorted(source.glob("helen_*.pts"))[:3]:  # linked, not copied, into a small folder
        for path in (pts, pts.with_suffix(".jpg")):
            (tmp_path / path.name).symlink_to(path)
    for record in read_300w(tmp_path):
        boxes = detector.detect(load_image(record.image_path))
        truth = face_box_from_points(record.points)
        assert max(box_iou(detector.to_landmark_box(box), truth) for box in boxes) > 0.5


def test_bench_dlib_times_both_models_and_reports_their_ratio(tiny_dlib_model) -> None:
    from landmark.bench.infer import benchmark_against_dlib

    model, _ = tiny_dlib_model
    result = benchmark_against_dlib(default_model_path((".onnx",)), model, rounds=2, runs=5, warmup=1)
    assert len(result["rounds"]) == 2
    assert result["ours_p50_ms"] > 0 and result["dlib_p50_ms"] > 0
    assert result["ratio"] == pytest.approx(result["ours_p50_ms"] / result["dlib_p50_ms"])

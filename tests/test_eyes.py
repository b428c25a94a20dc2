"""The eye-state model: crops framed from landmarks, the CEW folder and its by-face split, the scores,
``landmark eval-eyes`` (and its errors), and the driver monitor's fusion of the model with EAR."""

from __future__ import annotations

import json
import math
from pathlib import Path

import cv2
import numpy as np
import pytest

from landmark.cli import main
from landmark.data.readers import FaceRecord
from landmark.data.schemes import IBUG_68, WFLW_98
from landmark.dms import DMSConfig, DriverMonitor
from landmark.dms.config import load_dms_config
from landmark.errors import ConfigError, DataError, LandmarkError
from landmark.eyes.crop import EYE_SIZE, WIDTH_SCALE, eye_crop_matrix, normalise_crops, warp_eye
from landmark.eyes.data import face_eyes, face_group, load_eye_folder, split_mask
from landmark.eyes.metrics import eye_state_scores, roc_auc
from landmark.eyes.model import DEFAULT_EYE_MODEL, EyeStateModel
from tests.conftest import place_contour, shared_data_root

# --- crops -----------------------------------------------------------------------------------------------


def _face(scheme, angle_deg: float = 0.0, width: float = 40.0, opening: float = 12.0) -> np.ndarray:
    points = np.zeros((scheme.num_points, 2))
    place_contour(points, scheme.left_eye, (100.0, 120.0), width, opening)
    place_contour(points, scheme.right_eye, (200.0, 120.0), width, opening)
    a = math.radians(angle_deg)
    rot = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
    return (points - 150.0) @ rot.T + 150.0


@pytest.mark.parametrize("scheme", [IBUG_68, WFLW_98])
@pytest.mark.parametrize("angle", [0.0, 20.0, -35.0])
def test_eye_crop_levels_the_corners_and_spans_one_and_a_half_eye_widths(scheme, angle) -> None:
    points = _face(scheme, angle)
    for eye in (scheme.left_eye, scheme.right_eye):
        m = eye_crop_matrix(points, eye)
        a, b = (m[:, :2] @ points[i] + m[:, 2] for i in (eye.corner_a, eye.corner_b))
        assert a[1] == pytest.approx(b[1], abs=1e-9)  # level
        assert b[0] - a[0] == pytest.approx(EYE_SIZE / WIDTH_SCALE)  # corner a on the left, 16 px apart
        assert (a[0] + b[0]) / 2 == pytest.approx((EYE_SIZE - 1) / 2)  # centred (symmetric contour)


def test_warp_eye_gives_grey_crops_and_averages_a_large_eye() -> None:
    image = np.zeros((400, 400, 3), np.uint8)
    image[:, ::2] = 255  # one-pixel stripes: point sampling would alias, area averaging gives grey
    points = _face(IBUG_68, width=160.0)  # the eye 10x larger than its crop
    crop = warp_eye(image, eye_crop_matrix(points, IBUG_68.left_eye))
    assert crop.shape == (EYE_SIZE, EYE_SIZE) and crop.dtype == np.uint8
    assert abs(float(crop.mean()) - 127.5) < 20 and crop.std() < 40


def test_normalise_crops_removes_exposure() -> None:
    rng = np.random.default_rng(0)
    crop = rng.integers(40, 120, (EYE_SIZE, EYE_SIZE)).astype(np.uint8)
    brighter = np.clip(crop.astype(int) * 2 + 10, 0, 255).astype(np.uint8)
    x = normalise_crops(np.stack([crop, brighter]))
    assert x.shape == (2, 1, EYE_SIZE, EYE_SIZE) and x.dtype == np.float32
    np.testing.assert_allclose(x[0], x[1], atol=1e-4)


# --- data and split ----------------------------------------------------------------------------------------


def test_face_groups_keep_both_eyes_and_every_photo_of_a_person_together() -> None:
    assert face_group("closed_eye_0001.jpg_face_1_L.jpg", "closed") == "closed/closed_eye_0001.jpg_face_1"
    assert face_group("closed_eye_0001.jpg_face_1_R.jpg", "closed") == "closed/closed_eye_0001.jpg_face_1"
    assert face_group("Aaron_Guiel_0001_L.jpg", "open") == face_group("Aaron_Guiel_0003_R.jpg", "open")
    assert face_group("Aaron_Guiel_0001_L.jpg", "open") == "open/Aaron_Guiel"


def test_split_is_by_group_stable_and_about_a_fifth() -> None:
    groups = [f"open/person_{i // 2}" for i in range(2000)]
    val = split_mask(groups, "val")
    assert np.array_equal(val, split_mask(groups, "val")) and np.array_equal(~val, split_mask(groups, "train"))
    assert np.array_equal(val[0::2], val[1::2])  # both eyes of a face on the same side
    assert 0.15 < val.mean() < 0.25
    assert np.array_equal(split_mask(groups[:500], "val"), val[:500])  # other files never move a face


def _write_eyes(root: Path, n: int = 4) -> None:
    rng = np.random.default_rng(1)
    for label in ("open", "closed"):
        (root / label).mkdir(parents=True)
        for i in range(n):
            crop = rng.integers(0, 255, (EYE_SIZE, EYE_SIZE)).astype(np.uint8)
            cv2.imwrite(str(root / label / f"{label}_{i:04d}_L.png"), crop)


def test_load_eye_folder_reads_both_classes(tmp_path: Path) -> None:
    _write_eyes(tmp_path)
    eyes = load_eye_folder(tmp_path)
    assert eyes.crops.shape == (8, EYE_SIZE, EYE_SIZE) and eyes.labels.tolist() == [0] * 4 + [1] * 4


# --- scores ------------------------------------------------------------------------------------------------


def test_face_eyes_labels_annotated_eyes_by_their_aspect_ratio(tmp_path: Path) -> None:
    """Open (EAR 0.3) and shut (EAR 0.03) eyes become crops labelled 0 / 1; a half-shut one (EAR 0.1) is left
    out; an unreadable photo is one error line naming it."""
    image = tmp_path / "face.png"
    cv2.imwrite(str(image), np.full((240, 300, 3), 128, np.uint8))
    records = []
    for left, right in [(12.0, 1.2), (4.0, 12.0)]:  # openings over a 40 px eye: EAR 0.3 / 0.03, 0.1 / 0.3
        points = np.zeros((IBUG_68.num_points, 2))
        place_contour(points, IBUG_68.left_eye, (100.0, 120.0), 40.0, left)
        place_contour(points, IBUG_68.right_eye, (200.0, 120.0), 40.0, right)
        records.append(FaceRecord(image_path=image, points=points))
    eyes = face_eyes(records, IBUG_68)
    assert eyes.crops.shape == (3, EYE_SIZE, EYE_SIZE) and eyes.labels.tolist() == [0, 1, 0]
    assert eyes.groups == ["faces/face"] * 3
    narrow = face_eyes(records, IBUG_68, open_ears=(0.08, 0.18), closed_ear=None)  # only the EAR 0.1 eye
    assert narrow.labels.tolist() == [0]
    alone = face_eyes(records[1:], IBUG_68, open_ears=(0.05, 0.2), closed_ear=None)
    assert np.array_equal(narrow.crops[0], alone.crops[0])
    bad = [FaceRecord(image_path=tmp_path / "missing.jpg", points=records[0].points)]
    with pytest.raises(DataError, match=r"missing\.jpg: cannot read image"):
        face_eyes(bad, IBUG_68)


def _write_300w_eye_faces(folder: Path, n: int) -> None:
    """``n`` grey 300-W photos with 68 points whose eyes are narrow but open (EAR 0.15, as when looking down);
    the other points sit at the eyes."""
    folder.mkdir(parents=True)
    for i in range(n):
        points = np.full((IBUG_68.num_points, 2), 150.0)
        place_contour(points, IBUG_68.left_eye, (100.0, 120.0), 40.0, 6.0)
        place_contour(points, IBUG_68.right_eye, (200.0, 120.0), 40.0, 6.0)
        cv2.imwrite(str(folder / f"face{i}.png"), np.full((240, 300, 3), 60 + 10 * i, np.uint8))
        rows = "\n".join(f"{x + 1:.3f} {y + 1:.3f}" for x, y in points)
        (folder / f"face{i}.pts").write_text(f"version: 1\nn_points: 68\n{{\n{rows}\n}}\n")


def test_train_eyes_adds_the_eyes_of_the_training_faces(tmp_path: Path, capsys) -> None:
    rng = np.random.default_rng(2)
    for label in ("open", "closed"):
        (tmp_path / "cew" / label).mkdir(parents=True)
        for i in range(20):  # 20 faces a class: both classes on both sides of the by-face split
            name = f"Person{i}_0001_L.png" if label == "open" else f"closed_eye_{i:04d}.jpg_face_1_L.png"
            cv2.imwrite(str(tmp_path / "cew" / label / name), rng.integers(0, 255, (EYE_SIZE, EYE_SIZE), np.uint8))
    _write_300w_eye_faces(tmp_path / "faces", 4)  # 1 validation face (fraction 0.1), 3 training faces
    out = tmp_path / "new" / "eye.onnx"  # a folder that does not exist yet: created before training
    argv = ["train-eyes", "--data", str(tmp_path / "cew"), "--faces", str(tmp_path / "faces"), "--out", str(out)]
    assert main([*argv, "--rendered-faces", "0", "--epochs", "1", "--threads", "1", "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "eyes of annotated faces: 6 crops (0 closed)" in printed
    report = json.loads(out.with_suffix(".json").read_text())
    cew_train = len(load_eye_folder(tmp_path / "cew", "train"))
    assert report["train_crops"] == cew_train + 6 and EyeStateModel.from_path(out) is not None
    line = _error_line(capsys, [*argv[:-4], "--faces", str(tmp_path / "nowhere"), "--out", str(out)])
    assert line.endswith("nowhere: folder not found (expected 300-W faces: NAME.jpg + NAME.pts)")
    line = _error_line(capsys, [*argv, "--faces-share", "0.8"])
    assert line.endswith(
        "--faces-share 0.8: must be below 0.7 "
        "(the rendered eyes carry 0.3 of the loss, the real crops of --data the rest)"
    )


def test_eval_eyes_faces_scores_the_chosen_split(tmp_path: Path, capsys) -> None:
    """``--faces`` scores the validation faces by default and every face with ``--split all`` (a held-out
    folder); faces the detector does not find are counted, not scored, and the rates print as '-'."""
    _write_300w_eye_faces(tmp_path / "faces", 4)  # flat grey photos: no detector finds a face in them
    for split, n in ((None, 1), ("all", 4), ("train", 3)):
        out = tmp_path / f"{split}.json"
        argv = ["eval-eyes", "--faces", str(tmp_path / "faces"), "--json", str(out)]
        assert main(argv + (["--split", split] if split else [])) == 0
        report = json.loads(out.read_text())
        assert (report["n"], report["detected"], report["split"]) == (n, 0, split or "val")
        assert report["closed_rate"] is None
    assert "detected 0; reported eyes closed: fused 0 (-), EAR alone 0 (-); mean p" in capsys.readouterr().out


def test_roc_auc_counts_ordered_pairs_and_ties() -> None:
    assert roc_auc(np.array([0.1, 0.2, 0.8, 0.9]), np.array([0, 0, 1, 1])) == 1.0
    assert roc_auc(np.array([0.9, 0.8, 0.2, 0.1]), np.array([0, 0, 1, 1])) == 0.0
    assert roc_auc(np.array([0.5, 0.5]), np.array([0, 1])) == 0.5
    assert roc_auc(np.array([0.1, 0.4, 0.35, 0.8]), np.array([0, 0, 1, 1])) == 0.75
    assert roc_auc(np.array([0.1, 0.2]), np.array([1, 1])) is None


def test_eye_state_scores() -> None:
    s = eye_state_scores(np.array([0.1, 0.6, 0.7, 0.4]), np.array([0, 0, 1, 1]), 0.5)
    assert s["n"] == 4 and s["accuracy"] == 0.5 and s["recall_open"] == 0.5 and s["recall_closed"] == 0.5
    assert s["threshold"] == 0.5 and s["auc"] == 0.75


# --- eval-eyes ---------------------------------------------------------------------------------------------


def _error_line(capsys, argv: list[str]) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


def test_eval_eyes_bad_input_is_one_line_naming_the_path(tmp_path: Path, capsys) -> None:
    line = _error_line(capsys, ["eval-eyes", "--data", str(tmp_path / "nowhere")])
    assert "nowhere" in line and "open/ and closed/" in line
    (tmp_path / "only_open" / "open").mkdir(parents=True)
    line = _error_line(capsys, ["eval-eyes", "--data", str(tmp_path / "only_open")])
    assert str(tmp_path / "only_open" / "closed") in line and "folder not found" in line
    _write_eyes(tmp_path / "bad")
    (tmp_path / "bad" / "closed" / "broken_0001_L.jpg").write_bytes(b"not a jpeg")
    line = _error_line(capsys, ["eval-eyes", "--data", str(tmp_path / "bad")])
    assert "broken_0001_L.jpg" in line and "cannot read as an image" in line
    (tmp_path / "empty" / "open").mkdir(parents=True)
    (tmp_path / "empty" / "closed").mkdir()
    line = _error_line(capsys, ["eval-eyes", "--data", str(tmp_path / "empty")])
    assert "no eye images" in line


def test_eval_eyes_prints_the_table_and_writes_json(tmp_path: Path, capsys) -> None:
    _write_eyes(tmp_path / "eyes")
    assert main(["eval-eyes", "--data", str(tmp_path / "eyes"), "--json", str(tmp_path / "s.json")]) == 0
    out = capsys.readouterr().out
    assert "accuracy" in out and "AUC" in out and "threshold" in out
    report = json.loads((tmp_path / "s.json").read_text())
    assert {"n", "accuracy", "auc", "recall_open", "recall_closed", "threshold"} <= set(report)
    assert report["n"] == 8


def test_shipped_eye_model_is_small_and_reads_its_metadata() -> None:
    assert DEFAULT_EYE_MODEL.stat().st_size < 500_000  # 111 k float32 weights
    model = EyeStateModel.from_path()
    assert (model.size, model.width_scale) == (EYE_SIZE, WIDTH_SCALE) and 0 < model.threshold < 1
    probs = model.predict_crops(np.full((3, EYE_SIZE, EYE_SIZE), 128, np.uint8))
    assert probs.shape == (3,) and np.all((probs >= 0) & (probs <= 1))


def test_eye_model_gives_no_reading_for_an_eye_outside_the_image() -> None:
    model = EyeStateModel.from_path()
    image = np.full((240, 320, 3), 128, np.uint8)
    points = _face(IBUG_68)  # eyes at x 100 and 200, y 120, 40 px wide: crops 60 px, inside
    probs = model.predict_face(image, points, IBUG_68)
    assert probs is not None and len(probs) == 2
    assert model.predict_face(image, points + [150.0, 0.0], IBUG_68) is None  # the right eye's crop leaves
    assert model.predict_face(image, points - [0.0, 100.0], IBUG_68) is None  # both leave at the top


def test_eye_model_refuses_a_landmark_model() -> None:
    from landmark.config import default_model_path
    from landmark.errors import LandmarkError

    with pytest.raises(LandmarkError, match="not an eye-state model"):
        EyeStateModel.from_path(default_model_path((".onnx",)))


def test_augmentation_is_deterministic_and_keeps_crops_grey_bytes() -> None:
    pytest.importorskip("torch")
    from landmark.eyes.train import augment

    crops = np.random.default_rng(0).integers(0, 256, (16, EYE_SIZE, EYE_SIZE), dtype=np.uint8)
    for mode in ("basic", "strong"):
        a = augment(crops, np.random.default_rng(1), mode)
        assert a.shape == crops.shape and a.dtype == np.uint8
        assert np.array_equal(a, augment(crops, np.random.default_rng(1), mode))
    assert not np.array_equal(augment(crops, np.random.default_rng(1), "basic"), a)
    with pytest.raises(ValueError, match="photometric"):
        augment(crops, np.random.default_rng(1), "wild")


def test_weight_average_moves_towards_the_network_and_copies_batch_statistics() -> None:
    torch = pytest.importorskip("torch")
    from landmark.eyes.nets import EyeNet
    from landmark.eyes.train import _ema_update

    torch.manual_seed(0)
    net, ema = EyeNet(), EyeNet()
    net.features[0][1].running_mean.fill_(3.0)
    before = ema.head[-1].weight.detach().clone()
    _ema_update(ema, net, 0.9)
    assert torch.allclose(ema.head[-1].weight, 0.9 * before + 0.1 * net.head[-1].weight)
    assert torch.equal(ema.features[0][1].running_mean, net.features[0][1].running_mean)


def _imagenet_like_file(path: Path, torch, widen_pair: int | None = None) -> dict:
    """A training checkpoint laid out like the ImageNet MobileNetV1 0.25 file (``module.stage1.N`` keys, an RGB
    stem, deeper pairs and a classifier the eye network does not take); ``widen_pair`` makes one pair too wide."""
    from landmark.eyes.nets import EyeMobileNet

    torch.manual_seed(3)
    state = {}
    for key, value in EyeMobileNet().features.state_dict().items():
        if key.endswith("num_batches_tracked"):
            continue
        index, rest = key.split(".", 1)
        value = torch.randn(value.shape) if value.dim() else value
        if key == "0.0.weight":
            value = torch.randn(8, 3, 3, 3)
        if widen_pair is not None and int(index) == widen_pair and rest == "3.weight":
            value = torch.randn(value.shape[0] * 2, *value.shape[1:])
        state[f"module.stage1.{index}.{rest}"] = value
    state["module.stage2.0.0.weight"] = torch.randn(128, 1, 3, 3)  # deeper layers: left out
    state["module.fc.weight"] = torch.randn(1000, 256)
    torch.save({"state_dict": state, "epoch": 24}, path)
    return state


def test_eye_mobilenet_starts_from_an_imagenet_body_by_tensor_order(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    from landmark.eyes.nets import EyeMobileNet, load_imagenet_body

    state = _imagenet_like_file(tmp_path / "body.pth.tar", torch)
    net = EyeMobileNet()
    assert load_imagenet_body(net, tmp_path / "body.pth.tar") == 75  # stem + 7 pairs, 5 tensors per conv
    loaded = net.features.state_dict()
    assert torch.allclose(loaded["0.0.weight"], state["module.stage1.0.0.weight"].sum(1, keepdim=True))
    assert torch.equal(loaded["7.3.weight"], state["module.stage1.7.3.weight"])
    assert torch.equal(loaded["7.4.running_var"], state["module.stage1.7.4.running_var"])
    assert net(torch.zeros(2, 1, EYE_SIZE, EYE_SIZE)).shape == (2,)


def test_an_imagenet_file_that_does_not_fit_names_the_first_tensor(tmp_path: Path, capsys) -> None:
    torch = pytest.importorskip("torch")
    from landmark.eyes.nets import EyeMobileNet, load_imagenet_body

    _imagenet_like_file(tmp_path / "wide.pth", torch, widen_pair=2)
    net = EyeMobileNet()
    before = net.features.state_dict()["0.0.weight"].clone()
    with pytest.raises(LandmarkError, match=r"tensor 20 stage1.2.3.weight \(64, 16, 1, 1\) does not fit"):
        load_imagenet_body(net, tmp_path / "wide.pth")
    assert torch.equal(net.features.state_dict()["0.0.weight"], before)  # nothing changed
    out = str(tmp_path / "eye.onnx")
    line = _error_line(
        capsys, ["train-eyes", "--rendered-faces", "5", "--pretrained", str(tmp_path / "no.pth"), "--out", out]
    )
    assert line.endswith("no.pth: --pretrained: file not found")
    line = _error_line(
        capsys, ["train-eyes", "--arch", "small", "--pretrained", str(tmp_path / "wide.pth"), "--out", out]
    )
    assert line.endswith("only --arch mobilenet starts from ImageNet weights")


def test_the_shared_imagenet_body_fits_the_eye_network() -> None:
    torch = pytest.importorskip("torch")
    from landmark.eyes.nets import EyeMobileNet, load_imagenet_body

    path = shared_data_root().parent / "pretrained" / "mobilenet_v1_0.25_imagenet_relu.pth.tar"
    if not path.is_file():
        pytest.skip(f"ImageNet MobileNetV1 0.25 weights not found at {path}")
    net = EyeMobileNet()
    assert load_imagenet_body(net, path) == 75
    source = torch.load(path, map_location="cpu", weights_only=True)["state_dict"]
    stem = source["module.stage1.0.0.weight"].sum(1, keepdim=True)
    assert torch.allclose(net.features[0][0].weight, stem)


@pytest.fixture
def cew() -> Path:
    root = shared_data_root() / "cew_eyes"
    if not (root / "open").is_dir() or not (root / "closed").is_dir():
        pytest.skip(f"CEW eye crops not found at {root} (set LANDMARK_SHARED_DATA)")
    return root


def test_shipped_eye_model_on_real_eyes_it_never_trained_on(cew: Path, tmp_path: Path) -> None:
    """The validation faces of the by-face split: issue 20's target, accuracy >= 97% with AUC >= 0.99 (the
    shipped model: 97.2%, AUC 0.995; docs/eye-state.md)."""
    out = tmp_path / "val.json"
    assert main(["eval-eyes", "--data", str(cew), "--split", "val", "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["n"] > 600
    assert report["accuracy"] >= 0.97 and report["auc"] >= 0.99


def test_shipped_pipeline_keeps_open_eyes_open_on_real_faces(tmp_path: Path) -> None:
    """Issue 20's target: of the 300-W validation faces whose annotated eyes are open, the whole shipped pipeline
    (YuNet, default.onnx, the eye model, the fused decision) reports at most 1% closed (shipped: 1 of 111)."""
    faces = shared_data_root() / "faces300w" / "train"
    if not faces.is_dir():
        pytest.skip(f"300-W faces not found at {faces} (set LANDMARK_SHARED_DATA)")
    out = tmp_path / "faces.json"
    assert main(["eval-eyes", "--faces", str(faces), "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["detected"] == report["n"] == 121 and report["annotated_open"] > 100
    assert report["annotated_open_closed_rate"] <= 0.01


# --- fusion in the driver monitor --------------------------------------------------------------------------


def _eyes(scheme, opening: float) -> np.ndarray:
    points = np.zeros((scheme.num_points, 2))
    place_contour(points, scheme.left_eye, (100.0, 100.0), 40.0, opening)
    place_contour(points, scheme.right_eye, (200.0, 100.0), 40.0, opening)
    place_contour(points, scheme.mouth_inner, (150.0, 200.0), 60.0, 2.0)
    return points


def _run(monitor: DriverMonitor, frames: list[tuple[float, float | None]], fps: float = 30.0, t0: float = 0.0):
    """Feed (EAR opening px of a 40 px eye, closed probability) frames; returns the states."""
    return [
        monitor.update(t0 + i / fps, _eyes(IBUG_68, opening), None, prob) for i, (opening, prob) in enumerate(frames)
    ]


def test_the_eye_model_leads_and_ear_confirms() -> None:
    monitor = DriverMonitor(IBUG_68, DMSConfig())
    _run(monitor, [(12.0, 0.02)] * 180)  # 6 s open: calibrated (open EAR 0.3, floor 0.03)
    assert monitor.calibrated
    # the model sure the eye is shut, EAR partly down (0.2: closure 0.37): closed, score 0.6 * 0.95 + 0.4 * 0.37
    states = _run(monitor, [(8.0, 0.95)] * 6 + [(12.0, 0.02)] * 6, t0=6.0)
    assert states[0].eyes_closed and states[0].eye_score == pytest.approx(0.6 * 0.95 + 0.4 * (1 - 0.17 / 0.27))
    assert not states[-1].eyes_closed and states[-1].blink_count == 1
    # the model sure, EAR wide open (a crop off the eye?): stays open
    assert not any(s.eyes_closed for s in _run(monitor, [(12.0, 0.95)] * 10, t0=8.0))
    # EAR shut, the model sure the eye is open: stays open (0.6 * 0.05 + 0.4 * 1 = 0.43 < 0.65)
    assert not any(s.eyes_closed for s in _run(monitor, [(0.0, 0.05)] * 10, t0=9.0))
    # the model unsure (0.5): EAR decides
    assert _run(monitor, [(0.0, 0.5)], t0=10.0)[0].eyes_closed
    monitor.reset()
    _run(monitor, [(12.0, 0.02)] * 180)
    assert not _run(monitor, [(12.0, 0.5)], t0=6.0)[0].eyes_closed
    # one eye read shut, the other open: the smaller probability counts
    state = monitor.update(6.5, _eyes(IBUG_68, 4.0), None, (0.99, 0.1))
    assert state.eye_prob == pytest.approx(0.1) and not state.eyes_closed
    # the head turned: the image-right eye a third as wide as the left; the near (left) eye counts
    turned = _eyes(IBUG_68, 4.0)
    right = list(IBUG_68.right_eye.indices)
    turned[right, 0] = 200.0 + (turned[right, 0] - 200.0) / 3
    state = monitor.update(6.6, turned, None, (0.99, 0.1))
    assert state.eye_prob == pytest.approx(0.99) and state.eyes_closed


def test_without_eye_probabilities_the_monitor_uses_ear_alone() -> None:
    monitor = DriverMonitor(IBUG_68)
    states = _run(monitor, [(12.0, None)] * 180 + [(1.0, None)] * 6 + [(12.0, None)] * 6)
    assert states[180].eyes_closed and states[180].eye_prob is None and states[180].eye_score is None
    assert states[-1].blink_count == 1
    assert "eye_prob" in states[-1].to_log(0) and states[-1].to_log(0)["eye_score"] is None


def test_fused_microsleep_and_perclos() -> None:
    monitor = DriverMonitor(IBUG_68)
    _run(monitor, [(12.0, 0.0)] * 180)
    states = _run(monitor, [(4.0, 0.99)] * 30, t0=6.0)  # 1 s shut
    assert states[-1].microsleep and states[-1].microsleep_count == 1
    assert states[-1].perclos > 0


def test_dms_config_reads_and_checks_the_fusion_keys(tmp_path: Path) -> None:
    assert load_dms_config("configs/dms.yaml") == DMSConfig()
    bad = tmp_path / "dms.yaml"
    bad.write_text("eyes:\n  state_closed: 0.3\n  state_open: 0.4\n")
    with pytest.raises(ConfigError, match="eyes.state_open"):
        load_dms_config(bad)


# --- the whole pipeline on a short rendered clip -----------------------------------------------------------


def test_fixed_models_find_the_blinks_of_a_short_rendered_clip(tmp_path: Path) -> None:
    """10 s of rendered driver (seed 5: blinks at 1.9 s and 8.5 s, a yawn between whose squint must not count)
    through the demo pipeline with the shipped landmark and eye-state models: both blinks, nothing else."""
    from landmark.data.synthetic_video import render_driver_video
    from landmark.demo_app import run_pipeline
    from landmark.detect import build_detector, close_detector
    from landmark.dms.evaluate import events_from_log, load_log, score_events, truth_events
    from landmark.inference.predictor import LandmarkPredictor

    video, timeline_path, log = tmp_path / "clip.mp4", tmp_path / "clip.json", tmp_path / "clip.jsonl"
    summary = render_driver_video(video, timeline_path, 10.0, seed=5, size=(320, 240))
    assert [e["type"] for e in summary["events"]].count("blink") == 2
    predictor = LandmarkPredictor.from_path(Path("landmark/weights/default.onnx"), threads=1)
    detector = build_detector(None)
    try:
        run_pipeline(str(video), predictor, detector, log=log, draw=False, eye_model=EyeStateModel.from_path())
    finally:
        close_detector(detector)
    lines = load_log(log)
    scores = score_events(events_from_log(lines), truth_events(json.loads(timeline_path.read_text())))
    assert scores["blink"]["tp"] == 2 and scores["blink"]["fp"] == 0
    assert all(line["eye_prob"] is not None for line in lines if line["face"])

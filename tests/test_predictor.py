"""LandmarkPredictor: crop -> model -> image coordinates, backends that agree, and clear errors."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest
import torch

from landmark.checkpoint import save_checkpoint
from landmark.config import CONFIG_DIR
from landmark.data.crop import IMAGE_MEAN, IMAGE_STD, crop_matrix
from landmark.data.schemes import IBUG_68, flip_points
from landmark.errors import LandmarkError
from landmark.inference.export import export_checkpoint
from landmark.inference.predictor import LandmarkPredictor
from landmark.models.pfld import build_pfld, load_model_config

SIZE = 112


def make_checkpoint(path: Path, num_points: int = 68) -> Path:
    torch.manual_seed(0)
    cfg = load_model_config(CONFIG_DIR / "models" / "pfld.yaml", num_points=num_points, width=0.25)
    model = build_pfld(cfg)
    with torch.no_grad():  # realistic BatchNorm statistics, so outputs depend on the input
        model.train()(torch.rand(4, 3, SIZE, SIZE) * 2 - 1)
    scheme = "300w68" if num_points == 68 else "wflw98"
    state = {"model": model.eval().state_dict(), "ema": None, "model_config": cfg, "scheme": scheme}
    save_checkpoint(state, path)
    return path


@pytest.fixture(scope="module")
def model_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("predictor")
    checkpoint = make_checkpoint(folder / "tiny.pt")
    export_checkpoint(checkpoint, folder / "tiny.onnx")
    return checkpoint, folder / "tiny.onnx"


def centroid_backend(batch: np.ndarray) -> np.ndarray:
    """A fake model that finds the brightest blob of each crop: every landmark = its intensity centroid,
    in normalised crop coordinates. What it returns is known from the image alone."""
    intensity = np.clip(batch[:, 0] * IMAGE_STD + IMAGE_MEAN, 0, 1)  # back to [0, 1]
    ys, xs = np.mgrid[0 : batch.shape[2], 0 : batch.shape[3]]
    total = intensity.sum(axis=(1, 2))
    cx = (intensity * xs).sum(axis=(1, 2)) / total
    cy = (intensity * ys).sum(axis=(1, 2)) / total
    centre = np.stack([(cx + 0.5) / batch.shape[3], (cy + 0.5) / batch.shape[2]], axis=1)
    return np.repeat(centre[:, None, :], IBUG_68.num_points, axis=1).astype(np.float32)


def blob_image(centres: list[tuple[float, float]], size: tuple[int, int] = (400, 300)) -> np.ndarray:
    """Black BGR image with a Gaussian blob (sigma 4 px) centred exactly on each sub-pixel centre."""
    width, height = size
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float64)
    canvas = np.zeros((height, width))
    for x, y in centres:
        canvas += np.exp(-((xs - x) ** 2 + (ys - y) ** 2) / (2 * 4.0**2))
    return cv2.cvtColor(np.round(np.clip(canvas, 0, 1) * 255).astype(np.uint8), cv2.COLOR_GRAY2BGR)


def test_predict_maps_crop_coordinates_back_to_the_image() -> None:
    # Two faces in one frame, each box off-centre from its blob, so the crop must be mapped back exactly.
    centres = [(101.3, 97.8), (287.6, 181.2)]
    boxes = np.array([[70.0, 60.0, 140.0, 130.0, 0.9], [250.0, 150.0, 330.0, 222.0, 0.8]])
    predictor = LandmarkPredictor(centroid_backend, IBUG_68, SIZE, crop_scale=1.25)
    prediction = predictor.predict(blob_image(centres), boxes)
    assert prediction.landmarks.shape == (2, 68, 2) and prediction.landmarks.dtype == np.float32
    assert np.allclose(prediction.landmarks[:, 0], centres, atol=0.1)
    assert np.allclose(prediction.scores, [0.9, 0.8])


def test_predict_matches_the_crop_geometry_by_hand() -> None:
    # Without rotation, normalised u maps to x = centre + (u - 0.5) * side, side = scale * max(w, h).
    outputs = np.random.default_rng(0).uniform(0, 1, (2, 68, 2)).astype(np.float32)
    predictor = LandmarkPredictor(lambda batch: outputs[: len(batch)], IBUG_68, SIZE, crop_scale=1.4)
    boxes = np.array([[10.0, 20.0, 90.0, 80.0], [200.0, 40.0, 260.0, 140.0]])
    landmarks = predictor.predict(np.zeros((300, 400, 3), np.uint8), boxes).landmarks
    for box, points, normalised in zip(boxes, landmarks, outputs, strict=True):
        side = 1.4 * max(box[2] - box[0], box[3] - box[1])
        centre = np.array([(box[0] + box[2]) / 2, (box[1] + box[3]) / 2])
        assert np.allclose(points, centre + (normalised - 0.5) * side, atol=1e-3)


def test_predict_from_matrices_equals_predict_on_boxes() -> None:
    centres = [(150.0, 120.0)]
    image = blob_image(centres)
    predictor = LandmarkPredictor(centroid_backend, IBUG_68, SIZE)
    box = np.array([120.0, 95.0, 185.0, 150.0])
    by_box = predictor.predict(image, box[None])
    # a rotated, shifted crop such as a tracker would use still finds the blob in image coordinates
    matrix = crop_matrix(box, SIZE, 1.25, shift=(0.05, -0.03), rotation_deg=20.0)
    by_matrix = predictor.predict_from_matrices(image, matrix[None])
    assert np.allclose(by_box.landmarks[0, 0], centres[0], atol=0.1)
    assert np.allclose(by_matrix.landmarks[0, 0], centres[0], atol=0.1)


def template_backend(template: np.ndarray):
    """A fake model that places ``template`` (K, 2, normalised) around the brightest blob of each crop."""

    def run(batch: np.ndarray) -> np.ndarray:
        return (centroid_backend(batch) + template).astype(np.float32)

    return run


def test_flip_test_averages_with_the_mirrored_crop_in_the_right_order() -> None:
    # A template that is its own mirror image (left/right points swapped by the flip permutation) makes the
    # fake model mirror-equivariant: the flip average must then equal the plain prediction exactly. A
    # lopsided template must come out symmetrised, which only happens when the mirrored crop's points are
    # un-mirrored AND re-ordered.
    image = blob_image([(150.0, 120.0)])
    boxes = np.array([[120.0, 95.0, 185.0, 150.0]])
    lopsided = np.random.default_rng(0).uniform(-0.2, 0.2, (IBUG_68.num_points, 2))
    symmetric = (lopsided + flip_points(lopsided, IBUG_68, mirror_x=0.0)) / 2

    def run(template: np.ndarray, flip_test: bool) -> np.ndarray:
        predictor = LandmarkPredictor(template_backend(template), IBUG_68, SIZE, flip_test=flip_test)
        return predictor.predict(image, boxes).landmarks[0]

    assert np.allclose(run(symmetric, True), run(symmetric, False), atol=1e-3)
    assert np.allclose(run(lopsided, True), run(symmetric, False), atol=1e-3)
    assert np.abs(run(lopsided, False) - run(symmetric, False)).max() > 1.0  # pixels: the test can fail


def test_empty_box_list_gives_an_empty_result() -> None:
    predictor = LandmarkPredictor(centroid_backend, IBUG_68, SIZE)
    image = np.zeros((50, 60, 3), np.uint8)
    for empty in (np.zeros((0, 5)), [], None):
        prediction = predictor.predict(image, empty, with_pose=True)
        assert prediction.landmarks.shape == (0, 68, 2) and prediction.pose.shape == (0, 3)
    assert predictor.predict_from_matrices(image, np.zeros((0, 2, 3))).landmarks.shape == (0, 68, 2)


@pytest.mark.parametrize(
    "image, message",
    [
        (None, "NoneType"),
        (np.zeros((40, 40, 3), np.float32), "dtype float32"),
        (np.zeros((40, 40, 4), np.uint8), r"shape \(40, 40, 4\)"),
        ("face.jpg", "str"),
    ],
)
def test_an_image_that_is_not_an_image_is_one_line(image: object, message: str) -> None:
    predictor = LandmarkPredictor(centroid_backend, IBUG_68, SIZE)
    with pytest.raises(LandmarkError, match=message) as info:
        predictor.predict(image, [[0, 0, 10, 10]])
    assert "\n" not in str(info.value)


def test_bad_boxes_and_grayscale() -> None:
    predictor = LandmarkPredictor(centroid_backend, IBUG_68, SIZE)
    with pytest.raises(LandmarkError, match=r"\(N, 4\) or \(N, 5\)"):
        predictor.predict(np.zeros((40, 40, 3), np.uint8), [[0, 0, 10]])
    with pytest.raises(LandmarkError, match="NaN"):
        predictor.predict(np.zeros((40, 40, 3), np.uint8), [[0, 0, np.nan, 10]])
    gray = blob_image([(60.0, 50.0)], (120, 100))[:, :, 0]  # an IR camera frame
    landmarks = predictor.predict(gray, [[35, 25, 85, 75]]).landmarks
    assert np.allclose(landmarks[0, 0], (60.0, 50.0), atol=0.1)


def test_backends_agree_on_a_real_model(model_files: tuple[Path, Path]) -> None:
    checkpoint, onnx_path = model_files
    image = blob_image([(120.0, 100.0), (300.0, 200.0)])
    boxes = np.array([[80.0, 60.0, 160.0, 140.0], [260.0, 160.0, 340.0, 240.0]])
    results = [
        LandmarkPredictor.from_path(path, backend=backend, threads=1).predict(image, boxes, with_pose=True)
        for path, backend in [(checkpoint, "torch"), (checkpoint, "onnx"), (onnx_path, "auto")]
    ]
    for other in results[1:]:
        assert np.abs(other.landmarks - results[0].landmarks).max() < 1e-2  # pixels
    assert results[0].pose.shape == (2, 3)
    # the two faces differ, so the batch really carried both crops
    assert np.abs(results[0].landmarks[0] - results[0].landmarks[1]).max() > 1.0


def test_predictor_attributes_and_predict_crops(model_files: tuple[Path, Path]) -> None:
    predictor = LandmarkPredictor.from_path(model_files[1])
    assert (predictor.scheme.name, predictor.num_points, predictor.input_size) == ("300w68", 68, SIZE)
    assert predictor.predict_crops(np.zeros((3, 3, SIZE, SIZE), np.float32)).shape == (3, 68, 2)
    with pytest.raises(LandmarkError, match="expected crops"):
        predictor.predict_crops(np.zeros((1, 3, 64, 64), np.float32))


def test_corrupt_onnx_names_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "broken.onnx"
    bad.write_bytes(b"definitely not onnx")
    with pytest.raises(LandmarkError, match="broken.onnx"):
        LandmarkPredictor.from_path(bad)
    with pytest.raises(LandmarkError, match="missing.onnx"):
        LandmarkPredictor.from_path(tmp_path / "missing.onnx")


def relabelled(source: Path, out: Path, graph: onnx.GraphProto | None = None, **metadata: object) -> Path:
    """A copy of the ONNX file ``source`` with some metadata values changed and, optionally, another graph."""
    model = onnx.load(str(source))
    if graph is not None:
        model.graph.CopyFrom(graph)
    props = {prop.key: prop.value for prop in model.metadata_props} | {k: str(v) for k, v in metadata.items()}
    del model.metadata_props[:]
    for key, value in props.items():
        model.metadata_props.add(key=key, value=value)
    onnx.save(model, str(out))
    return out


def identity_graph(shape: list | None, out_shape: list | None, op: str = "Identity") -> onnx.GraphProto:
    """``image`` straight to ``landmarks`` (or reshaped to (-1, 68, 2)), with declared shapes (None: unknown)."""
    image = onnx.helper.make_tensor_value_info("image", onnx.TensorProto.FLOAT, shape)
    out = onnx.helper.make_tensor_value_info("landmarks", onnx.TensorProto.FLOAT, out_shape)
    target = onnx.helper.make_tensor("target", onnx.TensorProto.INT64, [3], [-1, 68, 2])
    inputs = ["image", "target"] if op == "Reshape" else ["image"]
    node = onnx.helper.make_node(op, inputs, ["landmarks"])
    return onnx.helper.make_graph([node], "fake", [image], [out], initializer=[target] if op == "Reshape" else [])


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"num_points": 98}, r"metadata num_points: expected 68 \(scheme 300w68\), got 98"),
        ({"scheme": "wflw98", "num_points": 98}, r"graph output 'landmarks' .*\['batch', 68, 2\].* \(N, 98, 2\)"),
        ({"input_size": 64}, r"graph input 'image' .*\['batch', 3, 112, 112\].* \(N, 3, 64, 64\)"),
        ({"crop_scale": -1}, r"metadata crop_scale: expected a positive number"),  # gave mirrored landmarks
        ({"image_std": 0}, r"metadata image_std: expected 0.5"),
        ({"image_mean": 0.45}, r"metadata image_mean: expected 0.5"),
        ({"color_order": "rgb"}, r"metadata color_order: expected 'bgr'"),
        ({"graph": identity_graph(["batch", 3, 112, 112], ["batch", 3, 112, 112])}, r"graph output .* \(N, 68, 2\)"),
    ],
)
def test_onnx_metadata_that_does_not_fit_the_graph_is_refused_on_load(
    tmp_path: Path, model_files: tuple[Path, Path], change: dict, message: str
) -> None:
    path = relabelled(model_files[1], tmp_path / "odd.onnx", **change)
    with pytest.raises(LandmarkError, match=r"odd\.onnx: " + message) as info:
        LandmarkPredictor.from_path(path)
    assert "\n" not in str(info.value)


def test_onnx_model_that_only_fails_when_run_is_one_error(tmp_path: Path, model_files: tuple[Path, Path]) -> None:
    crops = np.zeros((1, 3, SIZE, SIZE), np.float32)
    # declared shapes unknown: only the output's shape (1, 3, 112, 112) gives it away (a reshape error before)
    unknown = LandmarkPredictor.from_path(relabelled(model_files[1], tmp_path / "a.onnx", identity_graph(None, None)))
    with pytest.raises(LandmarkError, match=r"a\.onnx: returned shape \(1, 3, 112, 112\) for 1 crops, expected"):
        unknown.predict_crops(crops)
    # declared right, but the graph cannot run on the crops: ONNX Runtime's failure names the file
    reshape = identity_graph(["batch", 3, SIZE, SIZE], ["batch", 68, 2], "Reshape")
    failing = relabelled(model_files[1], tmp_path / "b.onnx", reshape)
    with pytest.raises(LandmarkError, match=r"b\.onnx: ONNX Runtime cannot run the model"):
        LandmarkPredictor.from_path(failing).predict_crops(crops)


def test_model_of_another_scheme_is_refused(model_files: tuple[Path, Path]) -> None:
    for path in model_files:
        with pytest.raises(LandmarkError, match="68 points .*but 98 were expected"):
            LandmarkPredictor.from_path(path, expect_points=98)
    assert LandmarkPredictor.from_path(model_files[1], expect_points=68).num_points == 68
    with pytest.raises(LandmarkError, match="backend"):
        LandmarkPredictor.from_path(model_files[0], backend="tensorrt")

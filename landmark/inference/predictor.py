"""``LandmarkPredictor``: face boxes (or crop matrices) in, landmarks in image pixels out.

One predictor wraps one model -- a ``.pt`` checkpoint run by PyTorch, or an exported ``.onnx`` file run by
ONNX Runtime -- and does exactly what training did to a face: ``crop_matrix`` around the box with the
model's crop scale, ``crop_image``, ``images_to_batch``; then maps the network's normalised crop
coordinates back with ``points_from_crop``. There is no second implementation of the crop.

PyTorch is imported only to load a ``.pt`` checkpoint: an ONNX model runs where torch is not installed.

All faces of a frame go through the network as ONE batch, so the per-frame cost is one model call plus a
warp per face (two calls with ``flip_test``, the second on the mirrored crops). A backend is any callable
``(N, 3, S, S) float32 -> (N, K, 2) float32``, which keeps the predictor testable with a fake model whose
output is known.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from landmark.data.crop import crop_image, crop_matrix, images_to_batch, points_from_crop
from landmark.data.pose import head_pose
from landmark.data.schemes import Scheme, flip_points, scheme_for
from landmark.errors import LandmarkError, first_line
from landmark.inference.metadata import DEFAULT_CROP_SCALE, INPUT_NAME, OUTPUT_NAME, crop_scale_of, parse_metadata

logger = logging.getLogger(__name__)

Backend = Callable[[np.ndarray], np.ndarray]
BACKENDS = ("auto", "onnx", "torch")


@dataclass
class Prediction:
    """Landmarks of every face of one image, in image pixel coordinates (0-based, centres at integers)."""

    landmarks: np.ndarray  # (N, K, 2) float32
    matrices: np.ndarray  # (N, 2, 3) float64 crop matrices used (image px -> crop px)
    scores: np.ndarray  # (N,) float32 detector scores (1.0 when the boxes had none)
    pose: np.ndarray | None = None  # (N, 3) float32 yaw, pitch, roll in radians, when asked for

    def __len__(self) -> int:
        return len(self.landmarks)


# ---------------------------------------------------------------------------------------------------------
# Backends


def torch_backend(model, threads: int | None = None) -> Backend:
    """Run a PyTorch module in eval mode without autograd. ``threads`` sets torch's (process-wide) pool."""
    import torch

    if threads is not None:
        torch.set_num_threads(threads)
    model.eval()

    def run(batch: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return model(torch.from_numpy(batch)).numpy()

    return run


def onnx_session(model: str | Path | bytes, threads: int | None = None, source: str | None = None):
    """An ONNX Runtime CPU session tuned for small batches; a corrupt file is one ``LandmarkError``."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.inter_op_num_threads = 1
    if threads is not None:
        options.intra_op_num_threads = threads
    source = source or str(model if not isinstance(model, bytes) else "<in-memory model>")
    if not isinstance(model, bytes):
        if not Path(model).is_file():
            raise LandmarkError(f"{source}: ONNX model not found")
        model = str(model)
    try:
        return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
    except Exception as err:  # ORT raises its own pybind exception types for bad protobufs and graphs
        reason = first_line(err)
        raise LandmarkError(f"{source}: not a usable ONNX model ({reason})") from None


def onnx_backend(session, source: str = "ONNX model") -> Backend:
    """Run an ONNX Runtime session; a model that fails to run (a graph that does not fit the crops its
    metadata asks for) is one ``LandmarkError`` naming ``source``."""
    output_names = [OUTPUT_NAME]

    def run(batch: np.ndarray) -> np.ndarray:
        try:
            return session.run(output_names, {INPUT_NAME: batch})[0]
        except Exception as err:  # ORT raises its own pybind exception types
            raise LandmarkError(f"{source}: ONNX Runtime cannot run the model ({first_line(err)})") from None

    return run


def check_onnx_graph(session, num_points: int, input_size: int, source: str) -> None:
    """The graph's declared input (N, 3, S, S) and output (N, K, 2) must fit the metadata where their dims are
    static, so a file whose metadata belongs to another graph is refused when it is loaded."""
    for kind, args, name, expected in (
        ("input", session.get_inputs(), INPUT_NAME, (None, 3, input_size, input_size)),
        ("output", session.get_outputs(), OUTPUT_NAME, (None, num_points, 2)),
    ):
        found = {arg.name: arg for arg in args}
        if name not in found:
            raise LandmarkError(f"{source}: the graph has no {kind} '{name}' (its {kind}s: {', '.join(found)})")
        arg = found[name]
        if arg.type != "tensor(float)" or not _shape_fits(arg.shape, expected):
            wanted = ", ".join("N" if dim is None else str(dim) for dim in expected)
            raise LandmarkError(
                f"{source}: graph {kind} '{name}' is {arg.type} {arg.shape}, but the metadata "
                f"(input_size {input_size}, num_points {num_points}) needs float ({wanted})"
            )


def _shape_fits(shape: list | None, expected: tuple[int | None, ...]) -> bool:
    """Whether a declared ONNX shape can be ``expected``: symbolic dims fit anything, and so does an unknown
    rank (ORT reports it as []), which only the first run can check."""
    if not shape:
        return True
    return len(shape) == len(expected) and all(
        not isinstance(dim, int) or want is None or dim == want for dim, want in zip(shape, expected, strict=True)
    )


# ---------------------------------------------------------------------------------------------------------
# Checking what callers hand us


def check_image(image: object) -> np.ndarray:
    """A BGR uint8 (H, W, 3) image; grayscale (H, W) is converted (IR driver cameras); else one error line."""
    if not isinstance(image, np.ndarray):
        raise LandmarkError(f"expected a BGR uint8 image (numpy array), got {type(image).__name__}")
    if image.dtype != np.uint8:
        raise LandmarkError(f"expected a BGR uint8 image, got dtype {image.dtype}")
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    if image.ndim != 3 or image.shape[2] != 3 or image.shape[0] == 0 or image.shape[1] == 0:
        raise LandmarkError(f"expected a BGR image of shape (H, W, 3), got shape {image.shape}")
    return image


def check_boxes(boxes: object) -> np.ndarray:
    """(N, 4) or (N, 5) boxes (x_min, y_min, x_max, y_max[, score]) as float64; None or [] -> (0, 5)."""
    if boxes is None:
        return np.zeros((0, 5))
    array = np.asarray(boxes, dtype=np.float64)
    if array.size == 0:
        return np.zeros((0, 5))
    if array.ndim == 1 and array.shape[0] in (4, 5):
        array = array[None]
    if array.ndim != 2 or array.shape[1] not in (4, 5):
        raise LandmarkError(f"expected face boxes of shape (N, 4) or (N, 5), got shape {array.shape}")
    if not np.isfinite(array[:, :4]).all():
        raise LandmarkError("face boxes contain NaN or infinite coordinates")
    if array.shape[1] == 4:
        array = np.concatenate([array, np.ones((len(array), 1))], axis=1)
    return array


# ---------------------------------------------------------------------------------------------------------
# The predictor


class LandmarkPredictor:
    """Landmarks for face boxes in BGR images, with one model call per frame (two with ``flip_test``)."""

    def __init__(
        self,
        backend: Backend,
        scheme: Scheme,
        input_size: int,
        crop_scale: float = DEFAULT_CROP_SCALE,
        name: str = "",
        flip_test: bool = False,
    ) -> None:
        self.backend = backend
        self.scheme = scheme
        self.num_points = scheme.num_points
        self.input_size = input_size
        self.crop_scale = crop_scale
        self.name = name
        # Off by default: averaging with the mirrored crop costs a second model call for a few percent less
        # error (docs/model-card.md, "Metrics"), worth it for still images more than for video.
        self.flip_test = flip_test

    @classmethod
    def from_path(
        cls,
        path: str | Path,
        backend: str = "auto",
        threads: int | None = None,
        expect_points: int | None = None,
        flip_test: bool = False,
    ) -> LandmarkPredictor:
        """A predictor for a ``.pt`` checkpoint or an exported ``.onnx`` file.

        ``backend="auto"`` runs ``.onnx`` files with ONNX Runtime and checkpoints with PyTorch;
        ``"onnx"`` on a checkpoint exports it in memory first (same graph as ``landmark export``).
        ``flip_test`` averages every prediction with the one on the mirrored crop (as ``landmark eval
        --flip-test`` does).
        """
        path = Path(path)
        if backend not in BACKENDS:
            raise LandmarkError(f"backend: expected one of {', '.join(BACKENDS)}, got {backend!r}")
        if path.suffix.lower() == ".onnx":
            if backend == "torch":
                raise LandmarkError(f"{path}: an ONNX file runs with backend 'onnx' (or 'auto'), not 'torch'")
            predictor = cls._from_onnx(path, threads, flip_test)
        else:
            predictor = cls._from_checkpoint(path, backend, threads, flip_test)
        if expect_points is not None and predictor.num_points != expect_points:
            raise LandmarkError(
                f"{path}: model predicts {predictor.num_points} points ({predictor.scheme.name}) "
                f"but {expect_points} were expected"
            )
        return predictor

    @classmethod
    def _from_onnx(cls, path: Path, threads: int | None, flip_test: bool) -> LandmarkPredictor:
        session = onnx_session(path, threads)
        meta = parse_metadata(session.get_modelmeta().custom_metadata_map, str(path))
        scheme = scheme_for(meta["scheme"])  # parse_metadata checked it
        check_onnx_graph(session, scheme.num_points, meta["input_size"], str(path))
        backend = onnx_backend(session, str(path))
        return cls(backend, scheme, meta["input_size"], meta["crop_scale"], str(path), flip_test)

    @classmethod
    def _from_checkpoint(cls, path: Path, backend: str, threads: int | None, flip_test: bool) -> LandmarkPredictor:
        from landmark.checkpoint import load_model  # torch: only for .pt checkpoints, never for an .onnx file
        from landmark.inference.export import to_onnx

        model, scheme, state = load_model(path)
        if backend == "onnx":
            proto = to_onnx(model, scheme.num_points, model.input_size)
            run = onnx_backend(onnx_session(proto.SerializeToString(), threads, source=str(path)), str(path))
        else:
            run = torch_backend(model, threads)
        return cls(run, scheme, model.input_size, crop_scale_of(state), str(path), flip_test)

    # --- the three entry points ------------------------------------------------------------------------

    def predict_crops(self, batch: np.ndarray) -> np.ndarray:
        """(N, K, 2) normalised crop coordinates for a (N, 3, S, S) float32 batch of prepared crops."""
        if batch.ndim != 4 or batch.shape[1:] != (3, self.input_size, self.input_size):
            size = self.input_size
            raise LandmarkError(f"expected crops of shape (N, 3, {size}, {size}), got shape {batch.shape}")
        if len(batch) == 0:
            return np.zeros((0, self.num_points, 2), dtype=np.float32)
        batch = np.ascontiguousarray(batch, dtype=np.float32)  # no copy when it already is
        landmarks = self._call(batch)
        if self.flip_test:
            mirrored = self._call(np.ascontiguousarray(batch[..., ::-1]))
            landmarks = (landmarks + flip_points(mirrored, self.scheme)) / 2
        return landmarks

    def _call(self, batch: np.ndarray) -> np.ndarray:
        output = np.asarray(self.backend(batch), dtype=np.float32)
        n, k = len(batch), self.num_points
        if output.shape not in ((n, k, 2), (n, 2 * k)):  # a reshape of any other shape would scramble points
            raise LandmarkError(
                f"{self.name or 'model'}: returned shape {output.shape} for {n} crops, expected ({n}, {k}, 2) "
                f"({self.scheme.name}); does the model match its metadata?"
            )
        return output.reshape(n, k, 2)

    def crop_matrices(self, boxes: np.ndarray) -> np.ndarray:
        """(N, 2, 3) crop matrices of (N, >=4) boxes at the model's crop scale."""
        matrices = [crop_matrix(box[:4], self.input_size, self.crop_scale) for box in boxes]
        return np.stack(matrices) if matrices else np.zeros((0, 2, 3))

    def predict(self, image: np.ndarray, boxes: np.ndarray, with_pose: bool = False) -> Prediction:
        """Landmarks of every face box (N, 4 or 5) of one BGR image, in image pixels."""
        image = check_image(image)
        boxes = check_boxes(boxes)
        return self._run(image, self.crop_matrices(boxes), boxes[:, 4].astype(np.float32), with_pose)

    def predict_from_matrices(self, image: np.ndarray, matrices: np.ndarray, with_pose: bool = False) -> Prediction:
        """Landmarks for crops the caller chose, e.g. a tracker cropping around the previous frame's face."""
        image = check_image(image)
        matrices = np.asarray(matrices, dtype=np.float64)
        if matrices.size == 0:
            matrices = np.zeros((0, 2, 3))
        if matrices.ndim == 2:
            matrices = matrices[None]
        if matrices.ndim != 3 or matrices.shape[1:] != (2, 3):
            raise LandmarkError(f"expected crop matrices of shape (N, 2, 3), got shape {matrices.shape}")
        return self._run(image, matrices, np.ones(len(matrices), dtype=np.float32), with_pose)

    def _run(self, image: np.ndarray, matrices: np.ndarray, scores: np.ndarray, with_pose: bool) -> Prediction:
        size = self.input_size
        if len(matrices) == 0:
            landmarks = np.zeros((0, self.num_points, 2), dtype=np.float32)
        else:
            batch = images_to_batch([crop_image(image, matrix, size) for matrix in matrices])
            landmarks = points_from_crop(self.predict_crops(batch), matrices, size)
        pose = None
        if with_pose:
            image_size = (image.shape[1], image.shape[0])
            pose = np.zeros((len(landmarks), 3), dtype=np.float32)
            for i, points in enumerate(landmarks):
                pose[i] = head_pose(points, self.scheme, image_size)
        return Prediction(landmarks=landmarks, matrices=matrices, scores=scores, pose=pose)

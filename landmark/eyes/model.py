"""``EyeStateModel``: the tiny open/closed eye network, run by ONNX Runtime (no PyTorch on this path).

Input ``eyes``: (N, 1, 24, 24) float32 crops from ``landmark.eyes.crop`` (``normalise_crops``); output
``prob_closed``: (N,) float32, the probability that each eye is closed (sigmoid inside the graph). The file's
metadata names the crop (``eye_size``, ``width_scale``) and the decision ``threshold``.
"""

from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np

from landmark.config import WEIGHTS_DIR
from landmark.data.schemes import Scheme
from landmark.errors import LandmarkError, first_line
from landmark.eyes.crop import EYE_SIZE, WIDTH_SCALE, eye_crop_matrix, normalise_crops, warp_eye

logger = logging.getLogger(__name__)

DEFAULT_EYE_MODEL = WEIGHTS_DIR / "eye_state.onnx"
INPUT_NAME = "eyes"
OUTPUT_NAME = "prob_closed"
KIND = "eye_state"


class EyeStateModel:
    """Closed-eye probabilities for eye crops, or for both eyes of a face given its landmarks."""

    def __init__(
        self, session, size: int = EYE_SIZE, width_scale: float = WIDTH_SCALE, threshold: float = 0.5, name: str = ""
    ) -> None:
        self.session = session
        self.size = size
        self.width_scale = width_scale
        self.threshold = threshold
        self.name = name

    @classmethod
    def from_path(cls, path: str | Path | None = None, threads: int | None = 1) -> EyeStateModel:
        """Load an eye-state ONNX file (default: the shipped ``landmark/weights/eye_state.onnx``)."""
        from landmark.inference.predictor import onnx_session

        path = Path(path) if path is not None else DEFAULT_EYE_MODEL
        session = onnx_session(path, threads)
        meta = session.get_modelmeta().custom_metadata_map
        if meta.get("kind") != KIND:
            raise LandmarkError(
                f"{path}: not an eye-state model (metadata 'kind' is {meta.get('kind')!r}, expected {KIND!r})"
            )
        try:
            size, width_scale, threshold = int(meta["eye_size"]), float(meta["width_scale"]), float(meta["threshold"])
        except (KeyError, ValueError) as err:
            raise LandmarkError(f"{path}: eye-state metadata incomplete ({first_line(err)})") from None
        inputs = [arg.name for arg in session.get_inputs()]
        if INPUT_NAME not in inputs:
            raise LandmarkError(f"{path}: the graph has no input '{INPUT_NAME}' (its inputs: {', '.join(inputs)})")
        return cls(session, size, width_scale, threshold, str(path))

    def predict_batch(self, batch: np.ndarray) -> np.ndarray:
        """(N,) closed probabilities of a (N, 1, S, S) float32 batch of normalised crops."""
        if len(batch) == 0:
            return np.zeros(0, dtype=np.float32)
        try:
            out = self.session.run([OUTPUT_NAME], {INPUT_NAME: np.ascontiguousarray(batch, dtype=np.float32)})[0]
        except Exception as err:  # ORT raises its own pybind exception types
            raise LandmarkError(f"{self.name}: ONNX Runtime cannot run the eye model ({first_line(err)})") from None
        return np.asarray(out, dtype=np.float32).reshape(len(batch))

    def predict_crops(self, crops: np.ndarray) -> np.ndarray:
        """(N,) closed probabilities of (N, S, S) uint8 grey eye crops."""
        return self.predict_batch(normalise_crops(crops))

    def matrices(self, points: np.ndarray, scheme: Scheme) -> list[np.ndarray]:
        """The crop matrices of the image-left and image-right eye, framed as the model was trained."""
        return [
            eye_crop_matrix(points, eye, self.size, self.width_scale) for eye in (scheme.left_eye, scheme.right_eye)
        ]

    def crops(self, image: np.ndarray, points: np.ndarray, scheme: Scheme) -> np.ndarray:
        """(2, S, S) uint8 crops of the image-left and image-right eye."""
        return np.stack([warp_eye(image, m, self.size) for m in self.matrices(points, scheme)])

    def predict_face(self, image: np.ndarray, points: np.ndarray, scheme: Scheme) -> tuple[float, float] | None:
        """Closed probabilities (image-left eye, image-right eye) of one face, both eyes in one model call; None
        when either eye's crop leaves the image (a face sliding out of view: the crop would be smeared border
        pixels, not an eye), or the points are not finite."""
        if not np.all(np.isfinite(points)):
            return None
        matrices = self.matrices(points, scheme)
        height, width = image.shape[:2]
        corners = np.array([[0, 0, 1], [self.size - 1, 0, 1], [0, self.size - 1, 1], [self.size - 1, self.size - 1, 1]])
        for m in matrices:
            inverse = cv2.invertAffineTransform(m)
            xy = corners @ inverse.T
            if xy.min() < 0 or np.any(xy[:, 0] > width - 1) or np.any(xy[:, 1] > height - 1):
                return None
        left, right = self.predict_crops(np.stack([warp_eye(image, m, self.size) for m in matrices]))
        return float(left), float(right)


def eye_latency(model: EyeStateModel, repeats: int = 200, rounds: int = 25) -> dict:
    """Milliseconds per face (both eyes) of the eye model in one ONNX Runtime call of batch 2, and of cropping
    and normalising both eyes of a face in a 640 x 480 frame: per call, the fastest and the median of ``rounds``
    rounds of ``repeats`` calls (on a shared CPU the fastest round is the cost without waiting for it)."""
    import time

    from landmark.data.schemes import IBUG_68

    rng = np.random.default_rng(0)
    frame = rng.integers(0, 255, (480, 640, 3), dtype=np.uint8)
    points = np.zeros((IBUG_68.num_points, 2))
    for eye, x in ((IBUG_68.left_eye, 280.0), (IBUG_68.right_eye, 360.0)):  # 40 px wide eyes, 80 px apart
        points[list(eye.indices)] = [[x - 20, 240], [x + 20, 240]] + [[x, 236], [x, 244]] * len(eye.pairs)
    batch = normalise_crops(model.crops(frame, points, IBUG_68))
    for _ in range(200):  # warm-up
        model.predict_batch(batch)

    def per_call(fn) -> tuple[float, float]:
        times = []
        for _ in range(rounds):
            start = time.perf_counter()
            for _ in range(repeats):
                fn()
            times.append(1000 * (time.perf_counter() - start) / repeats)
        return float(np.min(times)), float(np.median(times))

    model_min, model_median = per_call(lambda: model.predict_batch(batch))
    crop_min, crop_median = per_call(lambda: normalise_crops(model.crops(frame, points, IBUG_68)))
    return {
        "model_ms_per_face": model_min,
        "model_ms_per_face_median": model_median,
        "crop_ms_per_face": crop_min,
        "crop_ms_per_face_median": crop_median,
    }

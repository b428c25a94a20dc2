"""dlib's shape predictor, the incumbent, run on the same faces and boxes as our models.

dlib's ``shape_predictor_68_face_landmarks.dat`` (an ensemble of regression trees, Kazemi & Sullivan 2014,
trained on the 300-W training set) is what most face-landmark code uses today. ``landmark eval --dlib``
scores it with the same metrics, split and boxes as our models, and ``landmark bench --dlib`` times it beside
ours in the same run, so the comparison does not depend on figures measured on another machine or day.

It is optional: ``pip install -e '.[dlib]'`` installs dlib (``dlib-bin``) and the model file
(``face_recognition_models``, 100 MB); any other dlib shape predictor ``.dat`` can be given by path.
The predictor was trained on dlib's HOG detector boxes, so every face box -- ours are estimates of the
landmark box -- is first mapped back to a HOG-style box with the HOG detector's calibration.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from landmark.data.schemes import Scheme, flip_points, scheme_for
from landmark.detect.calibration import BoxCalibration
from landmark.detect.dlib_hog import DLIB_CALIBRATION, INSTALL_HINT, import_dlib
from landmark.errors import LandmarkError, first_line

DEFAULT_MODEL_NAME = "shape_predictor_68_face_landmarks.dat"


def default_dlib_model_path() -> Path:
    """dlib's 68-point model as installed by the ``face_recognition_models`` package.

    Found without importing that package: its ``__init__`` needs ``pkg_resources``, which recent setuptools
    no longer ship.
    """
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise LandmarkError(f"dlib's 68-point model is not installed: {INSTALL_HINT}, or pass a .dat file")
    return Path(next(iter(spec.submodule_search_locations))) / "models" / DEFAULT_MODEL_NAME


class DlibShapePredictor:
    """``predict(image_bgr, landmark_box) -> (K, 2)`` float32 points in image pixels, dlib's way.

    ``landmark_box`` is an estimate of the face's landmark box, as our detectors' ``to_landmark_box`` give
    and as the annotation gives for ``--box gt``. dlib returns whole pixels, so its points are integers.
    """

    def __init__(self, path: str | Path | None = None, calibration: BoxCalibration = DLIB_CALIBRATION) -> None:
        dlib = import_dlib()
        self.path = Path(path) if path else default_dlib_model_path()
        if not self.path.is_file():
            raise LandmarkError(f"{self.path}: dlib shape predictor model not found")
        try:
            self.shape_predictor = dlib.shape_predictor(str(self.path))
        except RuntimeError as err:  # dlib's deserialisation errors are RuntimeErrors with a long message
            reason = first_line(err, 120, "unreadable")
            raise LandmarkError(f"{self.path}: not a dlib shape predictor model ({reason})") from None
        self._rectangle = dlib.rectangle
        self.calibration = calibration
        # The Python binding does not expose the point count; one call on a blank image tells it.
        num_points = self.shape_predictor(np.zeros((8, 8), np.uint8), dlib.rectangle(0, 0, 7, 7)).num_parts
        try:
            self.scheme: Scheme = scheme_for(num_points)
        except ValueError:
            raise LandmarkError(
                f"{self.path}: a {num_points}-point dlib model; only the 68-point (300-W) and 98-point (WFLW) "
                "layouts can be scored"
            ) from None

    def dlib_box(self, landmark_box: np.ndarray) -> Any:
        """The ``dlib.rectangle`` (whole pixels, HOG-style) that dlib's predictor expects for a landmark box."""
        return self._rectangle(*np.round(self.calibration.invert(landmark_box)).astype(int).tolist())

    def _predict_once(self, rgb: np.ndarray, landmark_box: np.ndarray) -> np.ndarray:
        shape = self.shape_predictor(rgb, self.dlib_box(landmark_box))
        return np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float32)

    def predict(self, image_bgr: np.ndarray, landmark_box: np.ndarray, flip_test: bool = False) -> np.ndarray:
        """(K, 2) points; with ``flip_test`` averaged with the prediction on the mirrored image, as for ours."""
        rgb = cv2.cvtColor(image_bgr, cv2.COLOR_BGR2RGB) if image_bgr.ndim == 3 else image_bgr
        points = self._predict_once(rgb, landmark_box)
        if flip_test:
            mirror_x = rgb.shape[1] - 1
            x_min, y_min, x_max, y_max = np.asarray(landmark_box, dtype=np.float32)[:4]
            mirrored_box = np.array([mirror_x - x_max, y_min, mirror_x - x_min, y_max], dtype=np.float32)
            mirrored = self._predict_once(np.ascontiguousarray(rgb[:, ::-1]), mirrored_box)
            points = 0.5 * (points + flip_points(mirrored, self.scheme, mirror_x))
        return points

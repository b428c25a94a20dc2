"""MediaPipe's Face Landmarker, the landmarker people pick for real-time face meshes on a CPU, run so that it can
be timed beside our models (``landmark bench --peers``).

MediaPipe Tasks ``FaceLandmarker`` finds faces with its BlazeFace detector and fits a 478-point mesh to each.
In VIDEO mode it tracks, as our demo does: once it has a face, the next frame's crop comes from the last mesh
and the detector runs again only when the track is lost. Its 478 points are not the 68 of 300-W, so nothing
here scores them; they are returned for checks such as "a face was found".

The model file is not shipped: ``face_landmarker.task`` from the MediaPipe Face Landmarker page
(https://ai.google.dev/edge/mediapipe/solutions/vision/face_landmarker#models).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import numpy as np

from landmark.errors import LandmarkError, first_line

MODEL_HELP = (
    "download 'face_landmarker.task' from the MediaPipe Face Landmarker page "
    "(https://ai.google.dev/edge/mediapipe/solutions/vision/face_landmarker#models)"
)
MESH_POINTS = 478


class MediaPipeFaceLandmarker:
    """``landmarks(image_bgr, timestamp_ms) -> (N, 478, 2)`` float32 mesh points in image pixels.

    ``video=True`` is MediaPipe's VIDEO mode (tracking; timestamps must increase from call to call),
    ``video=False`` its IMAGE mode (the detector on every call). Blendshapes are off: the driver monitor's
    signals (eye and mouth opening) come from points, ours and MediaPipe's alike. The facial transformation
    matrix (head pose) is on, the counterpart of our pipeline's head-pose stage. Use it as a context manager,
    or call ``close``: MediaPipe's graph must be closed before the interpreter exits.
    """

    def __init__(self, model_path: str | Path | None, video: bool = True, num_faces: int = 1) -> None:
        if model_path is None or not Path(model_path).is_file():
            raise LandmarkError(f"MediaPipe face landmarker model {str(model_path)!r} not found: {MODEL_HELP}")
        try:
            import mediapipe as mp  # imported here: it is slow to import and only this peer needs it
            from mediapipe.tasks.python import BaseOptions, vision
        except ImportError:
            raise LandmarkError("mediapipe is not installed: pip install mediapipe") from None
        options = vision.FaceLandmarkerOptions(
            base_options=BaseOptions(model_asset_path=str(model_path)),
            running_mode=vision.RunningMode.VIDEO if video else vision.RunningMode.IMAGE,
            num_faces=num_faces,
            output_face_blendshapes=False,
            output_facial_transformation_matrixes=True,
        )
        try:
            self._landmarker = vision.FaceLandmarker.create_from_options(options)
        except (ValueError, RuntimeError) as error:
            reason = first_line(error, 120, "unreadable")
            raise LandmarkError(f"{model_path}: not a MediaPipe face landmarker model ({reason})") from None
        self._mp = mp
        self.path = Path(model_path)
        self.video = video

    def image(self, image_bgr: np.ndarray) -> Any:
        """The ``mediapipe.Image`` (RGB) that ``detect`` takes, made from an OpenCV BGR image."""
        rgb = cv2.cvtColor(image_bgr, cv2.COLOR_BGR2RGB)
        return self._mp.Image(image_format=self._mp.ImageFormat.SRGB, data=rgb)

    def detect(self, image: Any, timestamp_ms: int = 0) -> Any:
        """MediaPipe's own result for a ``mediapipe.Image`` (``timestamp_ms`` is used in VIDEO mode only)."""
        if self.video:
            return self._landmarker.detect_for_video(image, int(timestamp_ms))
        return self._landmarker.detect(image)

    def landmarks(self, image_bgr: np.ndarray, timestamp_ms: int = 0) -> np.ndarray:
        """(N, 478, 2) float32 mesh points of the faces found, in image pixels."""
        result = self.detect(self.image(image_bgr), timestamp_ms)
        height, width = image_bgr.shape[:2]
        faces = [[(p.x * width, p.y * height) for p in face] for face in result.face_landmarks]
        return np.asarray(faces, dtype=np.float32).reshape(-1, MESH_POINTS, 2)

    def close(self) -> None:
        self._landmarker.close()

    def __enter__(self) -> MediaPipeFaceLandmarker:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

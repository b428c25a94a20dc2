"""Our demo and our landmark model beside their peers (``landmark bench --peers``): MediaPipe's Face Landmarker
and dlib's 68-point shape predictor, measured in the same run on the same frames.

Demo frames per second, on a video decoded into memory first (decoding is not timed):

* ours: ``run_pipeline`` with the given detector -- tracking, landmarks, head pose and the driver monitor; no
  drawing, no video writing, no log, no window;
* MediaPipe: ``FaceLandmarker`` in VIDEO mode (it tracks too), one face, blendshapes off (our driver monitor
  reads eye and mouth opening from points; the mesh has them too), the facial transformation matrix on (the
  counterpart of our head pose). Each frame's BGR -> RGB conversion into a ``mediapipe.Image`` is timed with
  it: a camera read through OpenCV delivers BGR, which our pipeline takes as it is.

The two take turns for a few rounds, each round on all frames, and each side's figure is the median of its
rounds. CPU milliseconds per frame (all threads of the process) are reported beside the FPS: our landmark
model runs on one thread, OpenCV's detectors and MediaPipe choose their own.

Per face, in alternating rounds (``time_in_rounds``) of single calls on one face:

* ``ours``: our ONNX model on a ready crop (ONNX Runtime, 1 thread), as ``benchmark_against_dlib`` times it;
* ``ours_with_crop``: ``LandmarkPredictor.predict`` on the image and the face's box -- the crop, the model and
  the points mapped back to the image: what a tracked frame costs us, and what MediaPipe's figure includes;
* ``dlib``: dlib's predictor on a ready RGB image and rectangle (``benchmark_against_dlib``);
* ``mediapipe``: one ``detect_for_video`` call on a ready ``mediapipe.Image`` of the frame, while it tracks
  the face (its detector does not run): its own crop, the 478-point mesh model and its post-processing.

A peer that cannot run here (no model file, its package not installed) is None, with the reason under
``missing``.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from landmark.bench.frames import FramesInMemory
from landmark.bench.infer import median_of_rounds, time_in_rounds
from landmark.demo_app import run_pipeline
from landmark.detect import Detector
from landmark.errors import LandmarkError
from landmark.eyes.model import EyeStateModel
from landmark.inference.mediapipe_landmarker import MediaPipeFaceLandmarker
from landmark.inference.predictor import LandmarkPredictor, onnx_backend, onnx_session

DEMO_ROUNDS = 3


# --- demo frames per second ---------------------------------------------------------------------------------


def _rate(frames: int, wall_s: float, cpu_s: float) -> dict[str, float]:
    return {"fps": frames / wall_s, "cpu_ms_per_frame": 1000.0 * cpu_s / frames}


def pipeline_fps(
    video: str | Path,
    frames: list[np.ndarray],
    fps: float,
    predictor: LandmarkPredictor,
    detector: Detector,
    eye_model: EyeStateModel | None = None,
) -> dict[str, Any]:
    """Our demo pipeline (no drawing, writing or window) over ``frames``, which stand in for the file ``video``
    (it names the source; nothing is decoded from it). Returns FPS, CPU ms per frame and the stage timings."""
    replay = FramesInMemory(frames, fps)
    wall, cpu = time.perf_counter(), time.process_time()
    summary = run_pipeline(
        str(video), predictor, detector, draw=False, capture_factory=lambda _: replay, eye_model=eye_model
    )
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    keep = ("frames", "face_frames", "detect_calls", "stage_ms")
    return {**_rate(summary["frames"], wall, cpu), **{key: summary[key] for key in keep}}


def mediapipe_fps(frames: list[np.ndarray], fps: float, model_path: str | Path) -> dict[str, Any]:
    """MediaPipe's Face Landmarker in VIDEO mode over ``frames`` at their frame rate's timestamps."""
    with MediaPipeFaceLandmarker(model_path, video=True) as landmarker:
        face_frames = 0
        wall, cpu = time.perf_counter(), time.process_time()
        for index, frame in enumerate(frames):
            result = landmarker.detect(landmarker.image(frame), round(1000.0 * index / fps))
            face_frames += bool(result.face_landmarks)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return {**_rate(len(frames), wall, cpu), "frames": len(frames), "face_frames": face_frames}


def _median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The run with the median FPS (the middle one of an odd number), with every round's FPS beside it."""
    middle = sorted(runs, key=lambda run: run["fps"])[(len(runs) - 1) // 2]
    return {**middle, "round_fps": [run["fps"] for run in runs]}


def benchmark_demo_peers(
    video: str | Path,
    frames: list[np.ndarray],
    fps: float,
    predictor: LandmarkPredictor,
    detector: Detector,
    mediapipe_model: str | Path | None,
    rounds: int = DEMO_ROUNDS,
    eye_model: EyeStateModel | None = None,
) -> dict[str, Any]:
    """``pipeline_fps`` (ours) and ``mediapipe_fps`` in alternating rounds: ``{"ours": ..., "mediapipe": ...
    or None, "missing": {name: reason}}``, each side the run with its median FPS."""
    missing: dict[str, str] = {}
    ours, theirs = [], []
    for _ in range(rounds):
        ours.append(pipeline_fps(video, frames, fps, predictor, detector, eye_model))
        if "mediapipe" not in missing:
            try:
                theirs.append(mediapipe_fps(frames, fps, mediapipe_model))
            except LandmarkError as error:
                missing["mediapipe"] = str(error)
    return {"ours": _median_run(ours), "mediapipe": _median_run(theirs) if theirs else None, "missing": missing}


# --- per face --------------------------------------------------------------------------------------------------


def _dlib_contender(dlib_model: str | Path | None, image: np.ndarray, box: np.ndarray) -> Callable[[], Any]:
    from landmark.inference.dlib_predictor import DlibShapePredictor

    predictor = DlibShapePredictor(dlib_model)  # LandmarkError: dlib or its model is not installed
    rgb, rect = cv2.cvtColor(image, cv2.COLOR_BGR2RGB), predictor.dlib_box(box)
    return lambda: predictor.shape_predictor(rgb, rect)


def _mediapipe_contender(landmarker: MediaPipeFaceLandmarker, image: np.ndarray) -> Callable[[], Any]:
    """One VIDEO-mode call per timing call, 33 ms apart (30 FPS timestamps must increase); the first call finds
    the face, the later ones track it."""
    mp_image = landmarker.image(image)
    timestamps = itertools.count(start=0, step=33)
    if not landmarker.detect(mp_image, next(timestamps)).face_landmarks:
        raise LandmarkError("MediaPipe's landmarker finds no face in the timing image")
    return lambda: landmarker.detect(mp_image, next(timestamps))


def benchmark_face_peers(
    onnx_path: str | Path,
    image: np.ndarray,
    box: np.ndarray,
    dlib_model: str | Path | None = None,
    mediapipe_model: str | Path | None = None,
    rounds: int = 5,
    runs: int = 200,
    warmup: int = 20,
) -> dict[str, Any]:
    """Per-face milliseconds (p50, median of the rounds) of ours, ours with the crop, dlib and MediaPipe on one
    face (``image`` BGR, ``box`` its landmark box), in alternating rounds; what each times is in the module
    docstring. Returns ``face_ms`` (None for a missing peer), ``missing`` reasons and each round's p50s."""
    session = onnx_session(onnx_path, 1)
    size = session.get_inputs()[0].shape[-1]
    crop = np.random.default_rng(0).uniform(-1, 1, (1, 3, size, size)).astype(np.float32)
    ours = onnx_backend(session)
    predictor = LandmarkPredictor.from_path(onnx_path, threads=1)
    boxes = np.asarray(box, np.float32)[None, :4]
    contenders: dict[str, Callable[[], Any]] = {
        "ours": lambda: ours(crop),
        "ours_with_crop": lambda: predictor.predict(image, boxes),
    }
    missing: dict[str, str] = {}
    try:
        contenders["dlib"] = _dlib_contender(dlib_model, image, box)
    except LandmarkError as error:
        missing["dlib"] = str(error)
    landmarker = None
    try:
        landmarker = MediaPipeFaceLandmarker(mediapipe_model, video=True)
        contenders["mediapipe"] = _mediapipe_contender(landmarker, image)
    except LandmarkError as error:
        missing["mediapipe"] = str(error)
    try:
        rows = time_in_rounds(contenders, rounds, runs, warmup)
    finally:
        if landmarker is not None:
            landmarker.close()
    names = ("ours", "ours_with_crop", "dlib", "mediapipe")
    face_ms = {name: median_of_rounds(rows, name) if name in contenders else None for name in names}
    return {"face_ms": face_ms, "missing": missing, "rounds": rows, "model": str(onnx_path)}


def peer_ratios(demo: dict[str, Any], face: dict[str, Any]) -> dict[str, float | None]:
    """Ours against each peer (None where a peer is missing): FPS ours / MediaPipe (above 1: ours is faster);
    per-face ms ours / dlib, model call against model call, and ours with the crop / MediaPipe, each a whole
    per-face step (below 1: ours is faster)."""

    def ratio(a: float | None, b: float | None) -> float | None:
        return a / b if a is not None and b else None

    theirs = demo["mediapipe"]
    ms = face["face_ms"]
    return {
        "fps_ours_over_mediapipe": ratio(demo["ours"]["fps"], theirs["fps"] if theirs else None),
        "face_ms_ours_over_dlib": ratio(ms["ours"], ms["dlib"]),
        "face_ms_ours_with_crop_over_mediapipe": ratio(ms["ours_with_crop"], ms["mediapipe"]),
    }

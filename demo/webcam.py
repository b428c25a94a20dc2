"""A minimal webcam driver-monitoring demo on the ``landmark`` library -- read it, copy it, change it.

    python demo/webcam.py --model landmark/weights/default.onnx [--camera 0]

Per frame: the tracker finds the driver's face (the YuNet detector every few frames, otherwise a crop around
the previous landmarks), the model predicts the landmarks, solvePnP gives the head pose, the driver monitor
turns landmarks and pose into drowsiness/distraction alerts, and the overlay draws it all. Press q to quit.
``landmark demo`` is the full version (video files, headless mode, logs, reconnects, timings).
"""

import argparse
import time

import cv2
import numpy as np

from landmark.data.pose import angles_from_rotation, solve_head_pose
from landmark.detect import build_detector
from landmark.dms import DriverMonitor, load_dms_config
from landmark.inference.predictor import LandmarkPredictor
from landmark.overlay import draw_overlay
from landmark.tracking import FaceTracker, TrackerConfig

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--model", required=True, help="landmark model (.onnx or .pt)")
parser.add_argument("--camera", type=int, default=0, help="camera index")
parser.add_argument("--dms-config", default=None, help="DMS thresholds YAML (default: the shipped values)")
args = parser.parse_args()

predictor = LandmarkPredictor.from_path(args.model)
tracker = FaceTracker(build_detector(), predictor, TrackerConfig(redetect_every=10))
dms_config = load_dms_config(args.dms_config)
monitor = DriverMonitor(predictor.scheme, dms_config)

camera = cv2.VideoCapture(args.camera)
if not camera.isOpened():
    raise SystemExit(f"cannot open camera {args.camera}")
start = last = time.monotonic()
frame_s = 0.03  # running mean of the frame time, for the FPS shown
while True:
    ok, frame = camera.read()
    if not ok:
        print("the camera stopped delivering frames")
        break
    t = time.monotonic() - start
    track = tracker.update(frame, t)  # track.points: smoothed (K, 2) landmarks, or None without a face

    pose, pose_deg = None, None
    if track.points is not None:
        pose = solve_head_pose(track.points, predictor.scheme, (frame.shape[1], frame.shape[0]))
        if pose is not None:
            pose_deg = np.degrees(angles_from_rotation(pose[0]))  # yaw, pitch, roll
    state = monitor.update(t, track.raw_points, pose_deg)  # raw points keep the quick eyelid motion
    for event in state.events:
        print(f"{t:7.2f} s  {event}")

    now = time.monotonic()
    frame_s, last = 0.9 * frame_s + 0.1 * (now - last), now
    draw_overlay(frame, track.points, track.box, pose, state, dms_config, 1.0 / frame_s, track.state)
    cv2.imshow("landmark webcam demo (q quits)", frame)
    if cv2.waitKey(1) & 0xFF == ord("q"):
        break
camera.release()
cv2.destroyAllWindows()

"""The runtime does not drag in training: ``landmark --help``, ``landmark predict`` and ``landmark demo`` with
the default ONNX model run where torch, torchvision, albumentations, tensorboard and matplotlib are not
installed (an in-car computer), and never even try to import them.

Each command runs in a fresh interpreter whose first ``sys.meta_path`` finder makes every import of those
packages fail as if they were uninstalled, and remembers the attempt: an import that some code catches and
works around would still load the package where it is installed, so an attempt fails the test too.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import pytest

from landmark.data.synthetic_video import render_driver_video

REPO_ROOT = Path(__file__).resolve().parents[1]
BLOCKED = ("torch", "torchvision", "albumentations", "tensorboard", "matplotlib")
REPORT_MARK = "blocked imports: "

# Runs ``landmark ARGS...`` (``python -c SCRIPT ARGS...``) with the blocked packages "uninstalled", then
# reports on its last stderr line which of them were attempted and which ended up in sys.modules.
WITHOUT_TRAINING = f"""
import importlib.abc
import json
import sys

BLOCKED = {BLOCKED!r}
attempted = []


class Uninstalled(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in BLOCKED:
            attempted.append(name)
            raise ModuleNotFoundError(f"No module named {{name!r}} (uninstalled by the test)", name=name)
        return None


sys.meta_path.insert(0, Uninstalled())
from landmark.cli import main

try:
    code = main(sys.argv[1:])
except SystemExit as stop:  # argparse's --help
    code = stop.code
loaded = sorted(name for name in sys.modules if name.partition(".")[0] in BLOCKED)
print({REPORT_MARK!r} + json.dumps({{"attempted": attempted, "loaded": loaded}}), file=sys.stderr)
sys.exit(code)
"""


def python(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    """``python ARGS`` in a fresh interpreter that imports ``landmark`` from this checkout."""
    path = os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "PYTHONPATH": path}
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


def run_without_training(args: list[str], cwd: Path) -> tuple[subprocess.CompletedProcess, dict]:
    """``landmark ARGS`` in a fresh interpreter without the training packages; (result, import report)."""
    result = python(["-c", WITHOUT_TRAINING, *args], cwd)
    lines = [line for line in result.stderr.splitlines() if line.startswith(REPORT_MARK)]
    assert lines, f"no import report; exit {result.returncode}, stderr:\n{result.stderr[-3000:]}"
    return result, json.loads(lines[-1].removeprefix(REPORT_MARK))


@pytest.fixture(scope="module")
def driver_video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 1 s rendered driver video (320x240, 30 frames) with a face in every frame."""
    folder = tmp_path_factory.mktemp("runtime")
    render_driver_video(folder / "drive.mp4", folder / "drive.json", 1.0, seed=1, size=(320, 240))
    return folder / "drive.mp4"


def test_importing_the_cli_loads_no_training_package(tmp_path: Path) -> None:
    script = f"import sys, landmark.cli; print(sorted(m for m in sys.modules if m.partition('.')[0] in {BLOCKED!r}))"
    result = python(["-c", script], tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_help_runs_without_training_packages(tmp_path: Path) -> None:
    result, report = run_without_training(["--help"], tmp_path)
    assert result.returncode == 0, result.stderr
    assert "predict" in result.stdout and "demo" in result.stdout
    assert report == {"attempted": [], "loaded": []}


def test_predict_with_the_default_onnx_model_runs_without_training_packages(driver_video: Path, tmp_path: Path) -> None:
    capture = cv2.VideoCapture(str(driver_video))
    ok, frame = capture.read()
    capture.release()
    assert ok
    cv2.imwrite(str(tmp_path / "driver.png"), frame)
    # Haar finds this face; the model runs only on a detected face, and proving that it runs is the point.
    args = ["predict", "driver.png", "--out", "out", "--detector", "haar"]
    result, report = run_without_training(args, tmp_path)
    assert result.returncode == 0, result.stderr
    assert "default.onnx" in result.stdout  # no --model: the shipped default ONNX model
    [entry] = json.loads((tmp_path / "out" / "predictions.json").read_text())
    assert len(entry["faces"]) >= 1 and len(entry["faces"][0]["landmarks"]) > 0
    assert report == {"attempted": [], "loaded": []}


def test_headless_demo_with_the_default_onnx_model_runs_without_training_packages(
    driver_video: Path, tmp_path: Path
) -> None:
    args = ["demo", "--source", str(driver_video), "--headless", "--output", "demo.mp4", "--log", "demo.jsonl"]
    result, report = run_without_training([*args, "--detector", "haar"], tmp_path)
    assert result.returncode == 0, result.stderr
    frames = [json.loads(line) for line in (tmp_path / "demo.jsonl").read_text().splitlines()]
    assert len(frames) == 30
    assert sum(frame["box"] is not None for frame in frames) > 20  # the landmark model ran on tracked faces
    assert report == {"attempted": [], "loaded": []}


def test_eval_eyes_with_the_shipped_eye_model_runs_without_training_packages(tmp_path: Path) -> None:
    import numpy as np

    rng = np.random.default_rng(0)
    for label in ("open", "closed"):
        (tmp_path / "eyes" / label).mkdir(parents=True)
        for i in range(3):
            cv2.imwrite(str(tmp_path / "eyes" / label / f"{label}_{i}_L.png"), rng.integers(0, 255, (24, 24), np.uint8))
    result, report = run_without_training(["eval-eyes", "--data", "eyes", "--json", "eyes.json"], tmp_path)
    assert result.returncode == 0, result.stderr
    assert json.loads((tmp_path / "eyes.json").read_text())["n"] == 6
    assert report == {"attempted": [], "loaded": []}

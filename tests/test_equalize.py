"""Equalizing activation ranges before INT8 export (landmark/models/equalize.py)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from conftest import write_synthetic_face
from onnx import numpy_helper

from landmark.checkpoint import save_checkpoint
from landmark.cli import main
from landmark.config import CONFIG_DIR
from landmark.data.schemes import scheme_for
from landmark.inference.export import export_model
from landmark.inference.metadata import INPUT_NAME, OUTPUT_NAME
from landmark.inference.quantize import quantize_int8
from landmark.models.equalize import channel_maxima, equalize_activation_ranges
from landmark.models.pfld import build_pfld, load_model_config
from landmark.models.prune import depthwise_boundaries


def _uneven_config(config: str = "pfld_local.yaml") -> dict:
    return load_model_config(CONFIG_DIR / "models" / config, num_points=68, width=0.5)


def _uneven_model(config: str = "pfld_local.yaml") -> torch.nn.Module:
    """A random PFLD (68 points, width 0.5) whose backbone channels differ in range as an ImageNet-started one's do: the
    BatchNorm scales span two orders of magnitude, so a few channels dwarf the rest of their map."""
    torch.manual_seed(0)
    model = build_pfld(_uneven_config(config))
    with torch.no_grad():
        model.fc.bias.uniform_(0.3, 0.7)
        model.fc.weight.mul_(0.05)
        if model.local is not None:
            model.local.weight.normal_(0.0, 0.05)
        for module in model.backbone.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.weight.copy_(torch.exp(torch.randn(module.num_features) * 1.5))
                module.bias.uniform_(0.0, 0.2)
    return model.eval()


def _crops(count: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-1, 1, (count, 3, 112, 112)).astype(np.float32)


def _spread(peaks: torch.Tensor) -> float:
    """Largest over median channel maximum of a map."""
    return float(peaks.max() / peaks.median())


def test_equalizing_keeps_the_landmarks_and_evens_out_each_map() -> None:
    model = _uneven_model()
    images = _crops(16)
    boundaries = list(depthwise_boundaries(model))
    layers = [b.index for b in boundaries]
    assert layers == [0, 1, 2, 3, 4]  # every map up to the head's; layer 3 is the one the local refiner samples
    before_peaks = channel_maxima(model, images, layers)
    with torch.no_grad():
        before = model(torch.from_numpy(images))

    factors = equalize_activation_ranges(model, images)

    assert set(factors) == {f"backbone.layers.{i}" for i in layers}
    with torch.no_grad():
        after = model(torch.from_numpy(images))
    assert torch.allclose(before, after, atol=1e-4)
    after_peaks = channel_maxima(model, images, layers)
    for boundary in boundaries:
        old, new = _spread(before_peaks[boundary.index]), _spread(after_peaks[boundary.index])
        assert old > 3.0  # the test model is uneven to begin with
        if boundary.sampled:  # square-root factors: the spread shrinks to its square root
            assert np.isclose(new, np.sqrt(old), rtol=1e-3)
        else:
            assert np.isclose(new, 1.0, rtol=1e-3)


def test_equalizing_brings_int8_closer_to_fp32(tmp_path: Path) -> None:
    # The reason it exists: the same uneven model quantized with and without it, calibrated on the same crops
    # and compared with its fp32 output on other crops. Min-max ranges, so that the percentile's clipping of
    # the loud channels does not blur what equalizing does.
    calibration, test = _crops(32), _crops(16, seed=1)
    errors = {}
    for equalize in (False, True):
        model = _uneven_model()
        if equalize:
            equalize_activation_ranges(model, calibration)
        fp32, int8 = tmp_path / f"{equalize}.onnx", tmp_path / f"{equalize}.int8.onnx"
        export_model(model, scheme_for(68), fp32)
        quantize_int8(fp32, int8, calibration, method="minmax")
        sessions = [ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]) for path in (fp32, int8)]
        outputs = [session.run([OUTPUT_NAME], {INPUT_NAME: test})[0] for session in sessions]
        errors[equalize] = float(np.abs(outputs[1] - outputs[0]).mean())
    assert errors[True] < 0.7 * errors[False], errors


def test_a_mobilenet_v2_backbone_is_left_as_it_is() -> None:
    # Its depthwise convs sit inside inverted-residual blocks, behind no map of ours: nothing to equalize.
    model = _uneven_model("pfld_v2.yaml")
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    assert equalize_activation_ranges(model, _crops(4)) == {}
    assert all(torch.equal(v, weights[k]) for k, v in model.state_dict().items())


def test_export_int8_equalizes_unless_told_not_to(tmp_path: Path, capsys) -> None:
    checkpoint = tmp_path / "uneven.pt"
    state = {"model": _uneven_model().state_dict(), "ema": None, "model_config": _uneven_config(), "scheme": "300w68"}
    save_checkpoint({**state, "train_config": None}, checkpoint)
    entries = []
    for i, spacing in enumerate(np.linspace(10.0, 17.0, 4)):
        image, points = write_synthetic_face(tmp_path, f"face{i}", spacing=float(spacing))
        entries.append({"image": image.name, "points": points.tolist()})
    (tmp_path / "faces.json").write_text(json.dumps(entries))
    weights = {}
    for flag in ([], ["--no-equalize"]):
        out = tmp_path / f"m{len(flag)}.onnx"
        args = ["export", "--checkpoint", str(checkpoint), "--out", str(out), "--int8", "--calibration"]
        assert main([*args, str(tmp_path / "faces.json"), "--data-format", "json", *flag]) == 0
        assert out.with_name(f"{out.stem}.int8.onnx").is_file()
        graph = onnx.load(str(out)).graph
        weights[bool(flag)] = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
    assert "NME on 4 crops" in capsys.readouterr().out
    # the same function written with other scales: some folded conv weights differ, none changes shape
    changed = [name for name, array in weights[False].items() if not np.allclose(array, weights[True][name])]
    assert weights[False].keys() == weights[True].keys() and len(changed) >= 5


def test_export_offers_the_calibration_methods_the_quantizer_has(tmp_path: Path) -> None:
    from landmark.commands import export as export_command
    from landmark.errors import LandmarkError
    from landmark.inference.quantize import CALIBRATION_METHODS

    assert set(export_command.CALIBRATION_METHODS) == set(CALIBRATION_METHODS)
    model = _uneven_model()
    export_model(model, scheme_for(68), tmp_path / "m.onnx")
    with pytest.raises(LandmarkError, match="calibration method: expected one of percentile, minmax, got 'entropy'"):
        quantize_int8(tmp_path / "m.onnx", tmp_path / "m.int8.onnx", _crops(2), method="entropy")
    assert not (tmp_path / "m.int8.onnx").exists()

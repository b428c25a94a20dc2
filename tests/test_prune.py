"""Removing dead backbone channels before export: fewer channels, the same landmarks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from landmark.config import CONFIG_DIR
from landmark.data.schemes import scheme_for
from landmark.inference.export import export_model
from landmark.models.backbone import silence_dead_channels
from landmark.models.pfld import build_pfld, load_model_config
from landmark.models.prune import remove_dead_channels


def _model_with_dead_channels(dead: dict[int, int]) -> torch.nn.Module:
    """PFLD-local 1.0 (68 points) with random weights where ``dead[i]`` output channels of backbone layer i
    never fire (their BatchNorm gives -1 whatever the input, so the ReLU gives 0), as training leaves them;
    the depthwise BatchNorm after them saw a constant (running variance ~0) and has a bias of its own."""
    torch.manual_seed(0)
    model = build_pfld(load_model_config(CONFIG_DIR / "models" / "pfld_local.yaml", num_points=68, width=1.0))
    with torch.no_grad():
        model.fc.bias.uniform_(0.3, 0.7)
        model.fc.weight.mul_(0.01)
        model.local.weight.normal_(0.0, 0.05)
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.normal_(0.0, 0.1)
                module.running_var.uniform_(0.5, 2.0)
                module.bias.uniform_(-0.1, 0.3)
        for index, count in dead.items():
            producer = model.backbone.layers[index][1][1]  # the pointwise BatchNorm of block ``index``
            producer.weight[:count] = 0.0
            producer.bias[:count] = -1.0
            consumer = model.backbone.layers[index + 1][0][1]  # the depthwise BatchNorm after it
            consumer.running_var[:count] = 1e-6
            consumer.bias[:count] = torch.linspace(-0.5, 0.5, count)  # constants the ReLU passes or stops
    silence_dead_channels(model)
    return model.eval()


def test_dead_channels_go_in_multiples_of_16_and_the_landmarks_stay() -> None:
    # layer 3 is the stride-4 map the local refiner samples; layer 4 feeds only layer 5
    model = _model_with_dead_channels({3: 22, 4: 20})
    images = torch.rand(3, 3, 112, 112) * 2 - 1
    with torch.no_grad():
        before = model(images)
    assert remove_dead_channels(model) == {"backbone.layers.3": 16, "backbone.layers.4": 16}
    layers = model.backbone.layers
    assert layers[3][1][0].out_channels == 112 and layers[4][0][0].groups == 112
    assert layers[4][1][0].out_channels == 240 and layers[5][1][0].in_channels == 240
    assert model.local.weight.shape[1] == 112
    with torch.no_grad():
        after = model(images)
    assert torch.allclose(before, after, atol=1e-5)
    assert remove_dead_channels(model) == {}  # the 6 and 4 dead channels left would break the multiple


def test_no_dead_channels_no_change() -> None:
    model = _model_with_dead_channels({})
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    assert remove_dead_channels(model) == {}
    assert all(torch.equal(v, weights[k]) for k, v in model.state_dict().items())


def test_a_pruned_model_exports_with_parity(tmp_path: Path) -> None:
    model = _model_with_dead_channels({3: 16})
    remove_dead_channels(model)
    summary = export_model(model, scheme_for(68), tmp_path / "pruned.onnx")
    assert summary["max_abs_diff"] <= 1e-4
    graph = onnx.load(str(tmp_path / "pruned.onnx"))
    shapes = {init.name: tuple(init.dims) for init in graph.graph.initializer}
    assert any(shape[:2] == (112, 1) and shape[2:] == (3, 3) for shape in shapes.values())  # the 112-channel depthwise


@pytest.mark.parametrize("multiple", [1, 8])
def test_the_multiple_sets_how_many_go(multiple: int) -> None:
    model = _model_with_dead_channels({3: 22})
    removed = remove_dead_channels(model, multiple=multiple)
    assert removed == {"backbone.layers.3": 22 if multiple == 1 else 16}
    assert np.isclose(model.local.weight.shape[1], 128 - removed["backbone.layers.3"])

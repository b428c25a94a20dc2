"""Model summaries: parameters, FLOPs, size and the output shape of every stage."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from landmark.models.pfld import PFLD


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def state_dict_bytes(model: nn.Module) -> int:
    """Bytes of the fp32 weights and buffers (BatchNorm statistics too): what a checkpoint holds."""
    return sum(t.numel() * t.element_size() for t in model.state_dict().values())


def count_flops(model: nn.Module, input_size: int) -> int:
    """FLOPs of one 3 x input_size x input_size image (a multiply-add counts as 2)."""
    model.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(torch.zeros(1, 3, input_size, input_size))
    return int(counter.get_total_flops())


def stage_shapes(model: PFLD) -> list[dict[str, Any]]:
    """The output shape (C, H, W) of every backbone layer and head stage for one image."""
    named = [
        (f"backbone.{i} ({spec.kind}, stride {stride})", layer)
        for i, (spec, stride, layer) in enumerate(
            zip(model.backbone.specs, model.backbone.layer_strides, model.backbone.layers, strict=True)
        )
    ]
    named += [("head.s1", model.s1), ("head.s2", model.s2), ("head.s3", model.s3), ("head.fc", model.fc)]
    shapes: list[dict[str, Any]] = []
    hooks = [
        module.register_forward_hook(
            lambda _m, _i, out, name=name: shapes.append({"stage": name, "shape": list(out.shape[1:])})
        )
        for name, module in named
    ]
    model.eval()
    with torch.no_grad():
        model(torch.zeros(1, 3, model.input_size, model.input_size))
    for hook in hooks:
        hook.remove()
    return shapes


def summarise_model(model: PFLD) -> dict[str, Any]:
    """Everything ``landmark info`` reports, as one JSON-ready dict."""
    params = count_parameters(model)
    flops = count_flops(model, model.input_size)
    return {
        "params": params,
        "mflops": round(flops / 1e6, 2),
        "size_mb": round(state_dict_bytes(model) / 2**20, 3),
        "input_size": model.input_size,
        "num_points": model.num_points,
        "stages": stage_shapes(model),
    }

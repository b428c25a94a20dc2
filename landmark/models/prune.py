"""Removing a trained PFLD's dead backbone channels before export: the same function with fewer channels.

A dead channel (``silence_dead_channels``) follows a depthwise conv whose input, the ReLU of the layer
before, never fired on a training image. Once its BatchNorm scale is zero the depthwise channel outputs a
constant whatever the input, so three things can go:

* the producing layer's output channel (the conv filter and its BatchNorm entry),
* the depthwise channel itself (filter and BatchNorm entry), and
* the pointwise conv's input column for it -- its constant contribution moves into the running mean of the
  pointwise BatchNorm, where it is exact.

Where the producing layer's map is also a tap the local refiner samples (the stride-4 map), the channel's
read-out weights go too; there the channel was zero on every training image, so nothing changes for them.
The default model has 22 such channels of 128 after ``backbone.layers.3`` and 4 of 256 after
``backbone.layers.4``. Only whole multiples of 16 are removed from a layer: ONNX Runtime's integer kernels
were slower at 106 channels than at 128, and faster at 112 (0.62 against 0.64 ms a face for the INT8 graph).
Used by ``landmark export``; checkpoints keep their full shapes, so training and ``model.init`` are unaffected.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import nn

from landmark.models.backbone import DEAD_CHANNEL_VARIANCE, DepthwiseSeparable, silence_dead_channels

logger = logging.getLogger(__name__)

CHANNEL_MULTIPLE = 16


def _conv_bn(block: nn.Module) -> tuple[nn.Conv2d, nn.BatchNorm2d] | None:
    """The (conv, BatchNorm) of a conv-BN-activation ``nn.Sequential``, else None."""
    if isinstance(block, nn.Sequential) and len(block) >= 2:
        conv, bn = block[0], block[1]
        if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
            return conv, bn
    return None


def _producer(layer: nn.Module) -> tuple[nn.Conv2d, nn.BatchNorm2d] | None:
    """The conv and BatchNorm that produce a layer's output: the stem itself or a v1 block's pointwise part."""
    if isinstance(layer, DepthwiseSeparable):
        return _conv_bn(layer[1])
    return _conv_bn(layer)


@dataclass
class DepthwiseBoundary:
    """A backbone map whose channels can be changed one by one: read only by the next v1 block's depthwise
    conv (one filter per channel) and perhaps by the local refiner (one read-out weight per channel)."""

    index: int  # of the producing layer
    producer: tuple[nn.Conv2d, nn.BatchNorm2d]
    consumer: DepthwiseSeparable
    depthwise: tuple[nn.Conv2d, nn.BatchNorm2d]
    pointwise: tuple[nn.Conv2d, nn.BatchNorm2d]
    sampled: bool  # the local refiner samples this map (the stride-4 tap)


def depthwise_boundaries(model: nn.Module) -> Iterator[DepthwiseBoundary]:
    """Every ``DepthwiseBoundary`` of a PFLD's backbone, in order. Skipped: maps the head reads (its convs
    mix channels), maps a reduced or shared local read-out mixes, and MobileNetV2 blocks."""
    backbone, local = model.backbone, getattr(model, "local", None)
    for index in range(1, len(backbone.layers)):
        consumer, producer = backbone.layers[index], _producer(backbone.layers[index - 1])
        if not isinstance(consumer, DepthwiseSeparable) or producer is None:
            continue
        depthwise, pointwise = _conv_bn(consumer[0]), _conv_bn(consumer[1])
        if depthwise is None or pointwise is None:
            continue
        readers = [stride for stride, tap in backbone.tap_index.items() if tap == index - 1]
        sampled = local is not None and model.aux_stride in readers
        if any(stride != model.aux_stride for stride in readers):
            continue  # the head reads this map
        if sampled and not (isinstance(local.reduce, nn.Identity) and isinstance(local.shared, nn.Identity)):
            continue
        yield DepthwiseBoundary(index - 1, producer, consumer, depthwise, pointwise, sampled)


def _keep_outputs(conv: nn.Conv2d, bn: nn.BatchNorm2d, keep: torch.Tensor) -> None:
    """Keep only output channels ``keep`` of a conv and its BatchNorm."""
    conv.weight = nn.Parameter(conv.weight.detach()[keep].clone())
    conv.out_channels = len(keep)
    if conv.groups > 1:  # depthwise: one input channel per output channel
        conv.in_channels = conv.groups = len(keep)
    bn.weight = nn.Parameter(bn.weight.detach()[keep].clone())
    bn.bias = nn.Parameter(bn.bias.detach()[keep].clone())
    bn.running_mean = bn.running_mean[keep].clone()
    bn.running_var = bn.running_var[keep].clone()
    bn.num_features = len(keep)


def _keep_inputs(conv: nn.Conv2d, keep: torch.Tensor) -> None:
    """Keep only input channels ``keep`` of a (pointwise) conv."""
    conv.weight = nn.Parameter(conv.weight.detach()[:, keep].clone())
    conv.in_channels = len(keep)


def _channels_to_remove(dead: torch.Tensor, multiple: int) -> torch.Tensor:
    """The first dead channels, as many as leave a channel count that is a multiple of ``multiple``."""
    total, count = len(dead), int(dead.sum())
    count = max((n for n in range(count + 1) if (total - n) % multiple == 0), default=0)
    chosen = torch.zeros_like(dead)
    chosen[dead.nonzero().squeeze(1)[:count]] = True
    return chosen


@torch.no_grad()
def remove_dead_channels(model: nn.Module, multiple: int = CHANNEL_MULTIPLE) -> dict[str, int]:
    """Remove the dead channels of ``model`` (a ``PFLD`` in eval use) in place; returns {producing layer:
    channels removed}. The output is unchanged on the images it was trained on (see the module docstring)."""
    silence_dead_channels(model)
    local = getattr(model, "local", None)
    removed = {}
    for boundary in depthwise_boundaries(model):
        dw_conv, dw_bn = boundary.depthwise
        gone = _channels_to_remove(dw_bn.running_var < DEAD_CHANNEL_VARIANCE, multiple)
        if not gone.any():
            continue
        keep = (~gone).nonzero().squeeze(1)
        # silenced: the depthwise channel outputs its BatchNorm bias, then the block's activation
        constant = boundary.consumer[0][2](dw_bn.bias.detach()[gone].clone())
        pw_conv, pw_bn = boundary.pointwise
        pw_bn.running_mean -= (pw_conv.weight[:, gone, 0, 0] * constant).sum(1)
        _keep_inputs(pw_conv, keep)
        _keep_outputs(dw_conv, dw_bn, keep)
        _keep_outputs(*boundary.producer, keep)
        if boundary.sampled:
            per_channel = len(local.offsets)  # grid x grid samples of each channel, channel-major
            columns = (keep[:, None] * per_channel + torch.arange(per_channel)).reshape(-1)
            local.weight = nn.Parameter(local.weight.detach()[:, columns].clone())
            local.features = local.readout_features = len(columns)
        removed[f"backbone.layers.{boundary.index}"] = int(gone.sum())
    if removed:
        logger.info("removed dead channels before export: %s", removed)
    return removed

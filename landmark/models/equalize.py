"""Equalizing a trained PFLD's per-channel activation ranges before INT8 export: the same function, a
better fit for one INT8 scale per tensor.

INT8 export quantizes each activation tensor with a single scale, set by its largest value on the
calibration crops, while weights get one scale per output channel. A map whose channels differ widely in
range -- one channel up to 100, most under 10 -- leaves the quiet channels a few integer steps. Models
started from ImageNet weights have such maps (in the 300-W line of docs/results.md the largest channel
reached up to 11x the median one, where the scratch-trained default model has 2-4x), and INT8 cost them
0.20 points of NME against the default model's 0.03.

A ReLU commutes with a positive scale, so a map's channel ``c`` can be multiplied by ``k_c`` where it is
made (the producing BatchNorm's weight and bias) and divided by it where it is read, exactly. We do that at
every ``DepthwiseBoundary``: the reader is a depthwise conv, one filter per channel, quantized per channel,
so dividing a filter by ``k_c`` costs nothing in INT8 either. ``k_c`` brings each channel's largest value
on the calibration crops up to the map's largest. On the stride-4 map the local refiner also reads each
channel through its own read-out weights, which share one scale per point with all other channels; there
``k_c`` is the square root, halving the spread on both sides. This is the cross-layer equalization of
Nagel et al. (2019, "Data-free quantization"), scaled by measured activations rather than weights, and only
where the reader is per channel; equalizing the depthwise outputs as well (their reader, a pointwise conv,
mixes channels) was measured no better (docs/results.md, 2026-12-05).
"""

from __future__ import annotations

import logging

import numpy as np
import torch
from torch import nn

from landmark.models.backbone import DepthwiseSeparable
from landmark.models.prune import depthwise_boundaries

logger = logging.getLogger(__name__)

# Channels quieter than this share of the map's largest value keep their scale: near-dead channels would
# otherwise get huge factors for no gain.
QUIET_SHARE = 1e-3
BATCH = 32


def _scales_commute(layer: nn.Module) -> bool:
    """Whether a conv-BN-activation block's activation commutes with positive per-channel scales."""
    block = layer[1] if isinstance(layer, DepthwiseSeparable) else layer  # a v1 block's pointwise part, or the stem
    return len(block) < 3 or isinstance(block[2], (nn.ReLU, nn.LeakyReLU, nn.Identity))


@torch.no_grad()
def channel_maxima(model: nn.Module, images: np.ndarray, layers: list[int]) -> dict[int, torch.Tensor]:
    """{layer index: the largest value of each output channel of ``backbone.layers[index]`` on ``images``}."""
    maxima: dict[int, torch.Tensor] = {}

    def record(index: int):
        def hook(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
            batch_max = output.abs().amax(dim=(0, 2, 3))
            maxima[index] = torch.maximum(maxima[index], batch_max) if index in maxima else batch_max

        return hook

    handles = [model.backbone.layers[index].register_forward_hook(record(index)) for index in layers]
    try:
        for start in range(0, len(images), BATCH):
            model(torch.from_numpy(np.ascontiguousarray(images[start : start + BATCH], dtype=np.float32)))
    finally:
        for handle in handles:
            handle.remove()
    return maxima


@torch.no_grad()
def equalize_activation_ranges(model: nn.Module, images: np.ndarray) -> dict[str, float]:
    """Rescale ``model``'s channels in place (see the module docstring) so that each equalized map's channels
    reach about the same largest value on ``images`` (N, 3, S, S); returns {producing layer: the largest
    factor applied}. The model's output is unchanged up to float rounding."""
    model.eval()
    boundaries = [b for b in depthwise_boundaries(model) if _scales_commute(model.backbone.layers[b.index])]
    maxima = channel_maxima(model, images, [b.index for b in boundaries])
    local = getattr(model, "local", None)
    factors = {}
    for boundary in boundaries:
        peak = maxima[boundary.index]
        top = peak.max()
        if not top > 0:
            continue
        scale = torch.where(peak > QUIET_SHARE * top, top / peak.clamp_min(1e-12), torch.ones_like(peak))
        if boundary.sampled:
            scale = scale.sqrt()
        bn = boundary.producer[1]
        bn.weight.mul_(scale)
        bn.bias.mul_(scale)
        boundary.depthwise[0].weight.div_(scale.view(-1, 1, 1, 1))
        if boundary.sampled:
            # grid x grid samples of each channel, channel-major
            local.weight.div_(scale.repeat_interleave(len(local.offsets)).view(1, -1, 1))
        factors[f"backbone.layers.{boundary.index}"] = round(float(scale.max()), 1)
    if factors:
        logger.info("equalized activation ranges before INT8 export (largest factor per map): %s", factors)
    return factors

"""MobileNet backbones built from YAML tables.

Two table formats (see ``configs/models/``):

* ``type: mobilenet_v1`` -- ``stem: [out_channels, kernel, stride]`` then ``body``, a list of
  depthwise-separable pairs ``[[dw_out, k, s], [pw_out, 1, 1]]`` or repeated pairs
  ``[repeat, [dw_out, k, s], [pw_out, 1, 1]]``.
* ``type: mobilenet_v2`` -- ``stem`` as above, ``blocks`` of inverted-residual rows ``[t, c, n, s]`` and an
  optional ``last_channels`` 1x1 conv.

The parser turns a table into a flat list of ``LayerSpec`` rows (checking every row and naming the file and
row index when one is wrong); the builder turns the rows into modules. A ``Backbone`` knows the stride and
width of every layer's output, so a head can ask for "the last map at stride 8" instead of a layer index.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import torch
from torch import nn

from landmark.config import check_keys, load_yaml
from landmark.errors import ConfigError

BACKBONE_KEYS = {"type", "input_size", "width_multiplier", "activation", "stem", "body", "blocks", "last_channels"}
ACTIVATIONS = ("relu", "leaky_relu")


@dataclass(frozen=True)
class LayerSpec:
    """One layer of the flattened table: what to build and what comes out of it."""

    kind: str  # "conv" (full conv), "dw_pw" (depthwise + pointwise pair) or "inverted_residual"
    in_channels: int
    out_channels: int
    kernel: int
    stride: int
    expansion: int = 1  # inverted residual only
    activation: str = "relu"  # one of ACTIVATIONS


def make_divisible(value: float, divisor: int = 8) -> int:
    """Round a channel count to a multiple of ``divisor`` without losing more than 10% (as torchvision)."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:
        rounded += divisor
    return rounded


def activation_layer(name: str) -> nn.Module:
    """``relu``, or ``leaky_relu`` with slope 0.1 (as in YOLOv3), which keeps a gradient below zero so a
    channel cannot die (stay off on every image) the way a ReLU channel can."""
    return nn.LeakyReLU(0.1, inplace=True) if name == "leaky_relu" else nn.ReLU(inplace=True)


def conv_bn_act(
    in_channels: int, out_channels: int, kernel: int, stride: int = 1, groups: int = 1, activation: str = "relu"
) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel, stride, padding=kernel // 2, groups=groups, bias=False),
        nn.BatchNorm2d(out_channels),
        activation_layer(activation),
    )


# A BatchNorm channel whose running variance is below this saw (almost) the same value on every training
# image: its input has died (the ReLU before it never fires on a training image).
DEAD_CHANNEL_VARIANCE = 1e-4


def silence_dead_channels(model: nn.Module, min_variance: float = DEAD_CHANNEL_VARIANCE) -> int:
    """Set the scale of every BatchNorm channel with running variance < ``min_variance`` to zero; return how
    many there were.

    Why: BatchNorm divides by sqrt(running_var + eps), so a dead channel gets a gain of several hundred. In
    the 300-W runs such channels sit after a depthwise conv whose input channel is a ReLU that never fires
    on a training image (the filters themselves are as large as the live ones; leaky_relu backbones have
    almost none). On training images the channel outputs its bias; an unusual image (a bright,
    high-contrast photo) wakes the ReLU slightly and the gain turns that into activations of 100+ that
    swamp the head. Measured on the 300-W validation split, the last epoch of configs/train/300w_68.yaml
    put two faces at 55% and 104% NME; zeroing its 9 dead channels brought the worst face to 10% and the
    mean from 6.71% to 5.01%. For the images the network was trained on the output is unchanged (the
    channel gives its bias either way), so this is applied whenever a checkpoint is loaded for inference.
    """
    silenced = 0
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d) and module.affine and module.running_var is not None:
                dead = module.running_var < min_variance
                module.weight[dead] = 0.0
                silenced += int(dead.sum())
    return silenced


class DepthwiseSeparable(nn.Sequential):
    """MobileNetV1 block: a depthwise conv that carries the stride, then a pointwise conv."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int, stride: int, activation: str = "relu") -> None:
        super().__init__(
            conv_bn_act(in_channels, in_channels, kernel, stride, groups=in_channels, activation=activation),
            conv_bn_act(in_channels, out_channels, 1, activation=activation),
        )


class InvertedResidual(nn.Module):
    """MobileNetV2 block: 1x1 expansion, 3x3 depthwise, linear 1x1 projection, residual when shapes match."""

    def __init__(
        self, in_channels: int, out_channels: int, stride: int, expansion: int, activation: str = "relu"
    ) -> None:
        super().__init__()
        hidden = in_channels * expansion
        layers: list[nn.Module] = []
        if expansion != 1:
            layers.append(conv_bn_act(in_channels, hidden, 1, activation=activation))
        layers += [
            conv_bn_act(hidden, hidden, 3, stride, groups=hidden, activation=activation),
            nn.Conv2d(hidden, out_channels, 1, bias=False),
            nn.BatchNorm2d(out_channels),
        ]
        self.block = nn.Sequential(*layers)
        self.use_residual = stride == 1 and in_channels == out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.block(x)
        return x + out if self.use_residual else out


# ---------------------------------------------------------------------------------------------------------
# Parsing the tables


def _int_row(row: object, length: int, where: str, what: str) -> list[int]:
    if not isinstance(row, list) or len(row) != length:
        raise ConfigError(f"{where}: expected {what}, got {row!r}")
    for value in row:
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ConfigError(f"{where}: expected {what} of positive integers, got {row!r}")
    return row


def _v1_specs(cfg: dict, width: float, source: str) -> list[LayerSpec]:
    row_what = "a row [out_channels, kernel, stride]"
    scale = lambda c: max(8, int(c * width))  # noqa: E731 -- MobileNetV1 scales channels plainly
    out, kernel, stride = _int_row(cfg.get("stem"), 3, f"{source}: stem", row_what)
    specs = [LayerSpec("conv", 3, scale(out), kernel, stride)]
    body = cfg.get("body")
    if not isinstance(body, list) or not body:
        raise ConfigError(f"{source}: body: expected a list of depthwise/pointwise pairs")
    for index, entry in enumerate(body):
        where = f"{source}: body row {index}"
        is_list = isinstance(entry, list)
        if is_list and len(entry) == 3 and isinstance(entry[0], int) and isinstance(entry[1], list):
            repeat, dw, pw = entry
            if isinstance(repeat, bool) or repeat <= 0:
                raise ConfigError(f"{where}: expected a positive repeat count, got {repeat!r}")
        elif is_list and len(entry) == 2:
            repeat, (dw, pw) = 1, entry
        else:
            expected = "[[dw_out, k, s], [pw_out, 1, 1]] or [repeat, [dw_out, k, s], [pw_out, 1, 1]]"
            raise ConfigError(f"{where}: expected {expected}, got {entry!r}")
        dw_out, dw_kernel, dw_stride = _int_row(dw, 3, f"{where} (depthwise)", row_what)
        pw_out, pw_kernel, pw_stride = _int_row(pw, 3, f"{where} (pointwise)", row_what)
        if pw_kernel != 1 or pw_stride != 1:
            raise ConfigError(f"{where} (pointwise): expected kernel 1 and stride 1, got {pw!r}")
        for _ in range(repeat):
            in_channels = specs[-1].out_channels
            if scale(dw_out) != in_channels:
                raise ConfigError(
                    f"{where} (depthwise): out_channels {dw_out} must equal the input channels "
                    f"({in_channels} after width scaling) because a depthwise conv keeps the width"
                )
            specs.append(LayerSpec("dw_pw", in_channels, scale(pw_out), dw_kernel, dw_stride))
    return specs


def _v2_specs(cfg: dict, width: float, source: str) -> list[LayerSpec]:
    out, kernel, stride = _int_row(cfg.get("stem"), 3, f"{source}: stem", "a row [out_channels, kernel, stride]")
    specs = [LayerSpec("conv", 3, make_divisible(out * width), kernel, stride)]
    blocks = cfg.get("blocks")
    if not isinstance(blocks, list) or not blocks:
        raise ConfigError(f"{source}: blocks: expected a list of [t, c, n, s] rows")
    for index, row in enumerate(blocks):
        t, c, n, s = _int_row(row, 4, f"{source}: blocks row {index}", "a row [t, c, n, s]")
        for repeat in range(n):
            specs.append(
                LayerSpec(
                    "inverted_residual",
                    specs[-1].out_channels,
                    make_divisible(c * width),
                    3,
                    s if repeat == 0 else 1,
                    expansion=t,
                )
            )
    last = cfg.get("last_channels")
    if last is not None:
        if isinstance(last, bool) or not isinstance(last, int) or last <= 0:
            raise ConfigError(f"{source}: last_channels: expected a positive integer, got {last!r}")
        specs.append(LayerSpec("conv", specs[-1].out_channels, make_divisible(last * max(1.0, width)), 1, 1))
    return specs


def parse_backbone(cfg: dict, source: str, width: float | None = None) -> list[LayerSpec]:
    """Check a backbone table and flatten it into layer rows. ``width`` overrides ``width_multiplier``."""
    check_keys(cfg, BACKBONE_KEYS, source, required={"type", "stem"})
    # The table's own values are checked even when ``width`` overrides them: a typo must not pass silently.
    for value in (cfg.get("width_multiplier", 1.0), width if width is not None else 1.0):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < float("inf"):
            raise ConfigError(f"{source}: width_multiplier: expected a positive number, got {value!r}")
    input_size = cfg.get("input_size", 224)  # the table's native resolution, for reference only
    if isinstance(input_size, bool) or not isinstance(input_size, int) or input_size <= 0:
        raise ConfigError(f"{source}: input_size: expected a positive integer, got {input_size!r}")
    if width is None:
        width = cfg.get("width_multiplier", 1.0)
    activation = cfg.get("activation", "relu")
    if activation not in ACTIVATIONS:
        raise ConfigError(f"{source}: activation: expected one of {', '.join(ACTIVATIONS)}, got {activation!r}")
    kind = cfg["type"]
    if kind == "mobilenet_v1":
        if "blocks" in cfg:
            raise ConfigError(f"{source}: 'blocks' belongs to mobilenet_v2; mobilenet_v1 uses 'body'")
        specs = _v1_specs(cfg, float(width), source)
    elif kind == "mobilenet_v2":
        if "body" in cfg:
            raise ConfigError(f"{source}: 'body' belongs to mobilenet_v1; mobilenet_v2 uses 'blocks'")
        specs = _v2_specs(cfg, float(width), source)
    else:
        raise ConfigError(f"{source}: type: expected mobilenet_v1 or mobilenet_v2, got {kind!r}")
    return [replace(spec, activation=activation) for spec in specs]


# ---------------------------------------------------------------------------------------------------------
# Building


def build_layer(spec: LayerSpec) -> nn.Module:
    if spec.kind == "conv":
        return conv_bn_act(spec.in_channels, spec.out_channels, spec.kernel, spec.stride, activation=spec.activation)
    if spec.kind == "dw_pw":
        return DepthwiseSeparable(spec.in_channels, spec.out_channels, spec.kernel, spec.stride, spec.activation)
    return InvertedResidual(spec.in_channels, spec.out_channels, spec.stride, spec.expansion, spec.activation)


class Backbone(nn.Module):
    """A stack of layers returning the last feature map at each requested total stride.

    Layers after the last one needed are not built, so a head that taps stride 8 pays for nothing deeper.
    """

    def __init__(self, specs: list[LayerSpec], return_strides: tuple[int, ...]) -> None:
        super().__init__()
        total, strides = 1, []
        for spec in specs:
            total *= spec.stride
            strides.append(total)
        missing = [s for s in return_strides if s not in strides]
        if missing:
            raise ConfigError(f"backbone has no layer at stride {missing[0]}; its strides are {sorted(set(strides))}")
        # the last layer at each requested stride
        self.tap_index = {s: max(i for i, t in enumerate(strides) if t == s) for s in return_strides}
        depth = max(self.tap_index.values()) + 1
        self.layers = nn.ModuleList(build_layer(spec) for spec in specs[:depth])
        self.specs = specs[:depth]
        self.layer_strides = strides[:depth]
        self.out_channels = {s: specs[i].out_channels for s, i in self.tap_index.items()}

    def forward(self, x: torch.Tensor) -> dict[int, torch.Tensor]:
        taps = {index: stride for stride, index in self.tap_index.items()}
        features = {}
        for index, layer in enumerate(self.layers):
            x = layer(x)
            if index in taps:
                features[taps[index]] = x
        return features


class MobileNetClassifier(nn.Module):
    """The full backbone with global pooling and a linear classifier (ImageNet layout, used for checks)."""

    def __init__(self, specs: list[LayerSpec], num_classes: int = 1000, dropout: float = 0.0) -> None:
        super().__init__()
        final_stride = 1
        for spec in specs:
            final_stride *= spec.stride
        self.final_stride = final_stride
        self.backbone = Backbone(specs, (final_stride,))
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(specs[-1].out_channels, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.backbone(x)[self.final_stride]
        return self.classifier(torch.flatten(nn.functional.adaptive_avg_pool2d(features, 1), 1))


def build_classifier(path: str | Path, num_classes: int = 1000, width: float | None = None) -> MobileNetClassifier:
    """Build the ImageNet-style classifier described by a backbone YAML file."""
    cfg = load_yaml(path)
    specs = parse_backbone(cfg, str(path), width)
    dropout = 0.2 if cfg["type"] == "mobilenet_v2" else 0.0  # as torchvision; no parameters either way
    return MobileNetClassifier(specs, num_classes, dropout)

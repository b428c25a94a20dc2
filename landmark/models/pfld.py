"""PFLD: a practical facial landmark detector (Guo et al., 2019) on a YAML-built MobileNet backbone.

``PFLD`` is the inference network: backbone -> multi-scale head -> (B, K, 2) landmarks in normalised crop
coordinates. ``AuxiliaryNet`` predicts (yaw, pitch, roll) from the backbone's stride-4 map; it exists only
while training (the PFLD loss weights samples by pose error), so it is a separate module that the inference
model, its checkpoint and its ONNX export never contain.

A model config (``configs/models/pfld.yaml``) is resolved once into a plain dict -- the backbone table
inlined, overrides applied -- and that dict is stored in every checkpoint, so a checkpoint rebuilds its
network without the YAML files.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from landmark.config import check_keys, expect, load_yaml
from landmark.errors import ConfigError
from landmark.models.backbone import Backbone, conv_bn_relu, parse_backbone

MODEL_KEYS = {"backbone", "width", "num_points", "input_size", "aux_stride", "main_stride", "head", "aux"}
HEAD_KEYS = {"s1_channels", "s2_channels", "s3_channels"}
AUX_KEYS = {"channels", "fc_channels"}


def scaled(channels: int, width: float) -> int:
    return max(8, int(round(channels * width)))


class PFLD(nn.Module):
    """Backbone + multi-scale regression head.

    S1: global average of the (optionally 1x1-reduced) stride-8 map; S2: a stride-2 3x3 conv of it, pooled;
    S3: a conv whose kernel covers the whole S2 map (7x7 at 112x112), giving 1x1. Their concatenation feeds a
    fully connected layer with 2K outputs.
    """

    def __init__(
        self,
        backbone: Backbone,
        num_points: int,
        input_size: int,
        aux_stride: int,
        main_stride: int,
        s1_channels: int | None,
        s2_channels: int,
        s3_channels: int,
    ) -> None:
        super().__init__()
        self.num_points = num_points
        self.input_size = input_size
        self.aux_stride = aux_stride
        self.main_stride = main_stride
        self.backbone = backbone
        main_channels = backbone.out_channels[main_stride]
        self.s1 = conv_bn_relu(main_channels, s1_channels, 1) if s1_channels else nn.Identity()
        s1_out = s1_channels or main_channels
        self.s2 = conv_bn_relu(s1_out, s2_channels, 3, stride=2)
        s2_size = -(-input_size // (main_stride * 2))  # ceil: a padded stride-2 conv
        self.s3 = nn.Sequential(
            nn.Conv2d(s2_channels, s3_channels, s2_size, bias=False), nn.BatchNorm2d(s3_channels), nn.ReLU(inplace=True)
        )
        self.fc = nn.Linear(s1_out + s2_channels + s3_channels, num_points * 2)

    def forward_with_features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Landmarks (B, K, 2) and the stride-4 feature map that the auxiliary net reads while training."""
        features = self.backbone(x)
        s1 = self.s1(features[self.main_stride])
        s2 = self.s2(s1)
        s3 = self.s3(s2)
        pooled = torch.cat([s1.mean((2, 3)), s2.mean((2, 3)), torch.flatten(s3, 1)], dim=1)
        landmarks = self.fc(pooled).view(-1, self.num_points, 2)
        return landmarks, features.get(self.aux_stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_with_features(x)[0]


class AuxiliaryNet(nn.Module):
    """Training-only head: (yaw, pitch, roll) in radians from the stride-4 map (28x28 at 112x112)."""

    def __init__(self, in_channels: int, input_size: int, aux_stride: int, channels: int, fc_channels: int) -> None:
        super().__init__()
        map_size = -(-input_size // (aux_stride * 4))  # after two stride-2 convs
        self.convs = nn.Sequential(
            conv_bn_relu(in_channels, channels, 3, stride=2),
            conv_bn_relu(channels, channels, 3),
            conv_bn_relu(channels, fc_channels, 3, stride=2),
            nn.Conv2d(fc_channels, channels, map_size),
            nn.ReLU(inplace=True),
        )
        self.fc = nn.Sequential(nn.Linear(channels, fc_channels), nn.ReLU(inplace=True), nn.Linear(fc_channels, 3))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.convs(features), 1))


# ---------------------------------------------------------------------------------------------------------
# Configs


def _positive_int(cfg: dict, key: str, where: str) -> int:
    value = expect(cfg.get(key), int, f"{where}: {key}", "a positive integer")
    if value <= 0:
        raise ConfigError(f"{where}: {key}: expected a positive integer, got {value}")
    return value


def load_model_config(
    path: str | Path, num_points: int | None = None, width: float | None = None, input_size: int | None = None
) -> dict[str, Any]:
    """Read a PFLD model YAML, inline its backbone table, apply overrides and check everything."""
    path = Path(path)
    cfg = load_yaml(path)
    backbone = cfg.get("backbone")
    if isinstance(backbone, str):
        backbone_path = path.parent / backbone
        if not backbone_path.is_file():
            raise ConfigError(f"{path}: backbone: file {backbone_path} not found")
        cfg["backbone"] = load_yaml(backbone_path)
        cfg["backbone_source"] = str(backbone_path)
    overrides = {"num_points": num_points, "width": width, "input_size": input_size}
    cfg.update({k: v for k, v in overrides.items() if v is not None})
    source = cfg.pop("backbone_source", str(path))
    check_model_config(cfg, str(path), source)
    return cfg


def check_model_config(cfg: dict, where: str, backbone_where: str | None = None) -> None:
    """Validate a resolved model config (also used on the copy stored in a checkpoint)."""
    check_keys(cfg, MODEL_KEYS, where, required=MODEL_KEYS - {"aux"})
    if not isinstance(cfg["backbone"], dict):
        raise ConfigError(f"{where}: backbone: expected a YAML file name or a backbone table")
    width = expect(cfg["width"], (int, float), f"{where}: width", "a positive number")
    if width <= 0:
        raise ConfigError(f"{where}: width: expected a positive number, got {width}")
    for key in ("num_points", "input_size", "aux_stride", "main_stride"):
        _positive_int(cfg, key, where)
    if cfg["input_size"] % 16:
        raise ConfigError(f"{where}: input_size: expected a multiple of 16 (e.g. 112), got {cfg['input_size']}")
    head = expect(cfg["head"], dict, f"{where}: head", "a mapping")
    check_keys(head, HEAD_KEYS, f"{where}: head", required=HEAD_KEYS)
    if head["s1_channels"] is not None:
        _positive_int(head, "s1_channels", f"{where}: head")
    for key in ("s2_channels", "s3_channels"):
        _positive_int(head, key, f"{where}: head")
    aux = expect(cfg.get("aux", {"channels": 128, "fc_channels": 32}), dict, f"{where}: aux", "a mapping")
    check_keys(aux, AUX_KEYS, f"{where}: aux", required=AUX_KEYS)
    for key in AUX_KEYS:
        _positive_int(aux, key, f"{where}: aux")
    parse_backbone(cfg["backbone"], backbone_where or f"{where}: backbone", width)


def build_pfld(cfg: dict) -> PFLD:
    """The inference network described by a resolved model config."""
    width = float(cfg["width"])
    specs = parse_backbone(cfg["backbone"], "backbone", width)
    backbone = Backbone(specs, (cfg["aux_stride"], cfg["main_stride"]))
    head = cfg["head"]
    return PFLD(
        backbone,
        num_points=cfg["num_points"],
        input_size=cfg["input_size"],
        aux_stride=cfg["aux_stride"],
        main_stride=cfg["main_stride"],
        s1_channels=scaled(head["s1_channels"], width) if head["s1_channels"] else None,
        s2_channels=scaled(head["s2_channels"], width),
        s3_channels=scaled(head["s3_channels"], width),
    )


def build_auxiliary(cfg: dict, model: PFLD) -> AuxiliaryNet:
    """The training-only pose net that matches ``model``."""
    aux = cfg.get("aux", {"channels": 128, "fc_channels": 32})
    width = float(cfg["width"])
    return AuxiliaryNet(
        model.backbone.out_channels[cfg["aux_stride"]],
        cfg["input_size"],
        cfg["aux_stride"],
        scaled(aux["channels"], width),
        scaled(aux["fc_channels"], width),
    )

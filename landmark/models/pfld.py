"""PFLD: a practical facial landmark detector (Guo et al., 2019) on a YAML-built MobileNet backbone.

``PFLD`` is the inference network: backbone -> multi-scale head -> (B, K, 2) landmarks in normalised crop
coordinates, optionally followed by second stages: a ``RegionRefiner`` that re-reads small regions (the eyes,
the inner mouth) at the input's full resolution, and a ``LocalRefiner`` that corrects every other point from
the backbone's features at that point.

``AuxiliaryNet`` predicts (yaw, pitch, roll) from the backbone's stride-4 map; it exists only
while training (the PFLD loss weights samples by pose error), so it is a separate module that the inference
model, its checkpoint and its ONNX export never contain.

A model config (``configs/models/pfld.yaml``) is resolved once into a plain dict -- the backbone table
inlined, overrides applied -- and that dict is stored in every checkpoint, so a checkpoint rebuilds its
network without the YAML files.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from landmark.config import check_keys, expect, load_yaml
from landmark.data.crop import MAX_INPUT_SIZE
from landmark.data.schemes import scheme_for
from landmark.errors import ConfigError
from landmark.models.backbone import Backbone, conv_bn_act, parse_backbone

OPTIONAL_KEYS = {"aux", "refine", "local"}  # the training-only pose net and the two second stages
MODEL_KEYS = {"backbone", "width", "num_points", "input_size", "aux_stride", "main_stride", "head", *OPTIONAL_KEYS}
HEAD_KEYS = {"s1_channels", "s2_channels", "s3_channels"}
AUX_KEYS = {"channels", "fc_channels"}
REFINE_DEFAULTS = {"patch_size": 24, "margin": 1.6, "channels": [16, 32, 64], "jitter": 0.1}  # all but regions
REFINE_KEYS = {"regions", *REFINE_DEFAULTS}
REGION_NAMES = ("left_eye", "right_eye", "mouth_inner")  # contours a ``Scheme`` defines for every layout
LOCAL_DEFAULTS = {"channels": 0, "hidden": 0, "grid": 1, "spread": 0.04, "jitter": 0.02}


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
        refiner: RegionRefiner | None = None,
        local: LocalRefiner | None = None,
    ) -> None:
        super().__init__()
        self.num_points = num_points
        self.input_size = input_size
        self.aux_stride = aux_stride
        self.main_stride = main_stride
        self.backbone = backbone
        main_channels = backbone.out_channels[main_stride]
        self.s1 = conv_bn_act(main_channels, s1_channels, 1) if s1_channels else nn.Identity()
        s1_out = s1_channels or main_channels
        self.s2 = conv_bn_act(s1_out, s2_channels, 3, stride=2)
        s2_size = -(-input_size // (main_stride * 2))  # ceil: a padded stride-2 conv
        self.s3 = nn.Sequential(
            nn.Conv2d(s2_channels, s3_channels, s2_size, bias=False), nn.BatchNorm2d(s3_channels), nn.ReLU(inplace=True)
        )
        self.fc = nn.Linear(s1_out + s2_channels + s3_channels, num_points * 2)
        self.refiner = refiner
        self.local = local
        if refiner is not None or local is not None:
            # Output slot k takes entry order[k] of cat([coarse, region-refined, locally refined points]): one
            # gather assembles the final landmarks (no in-place writes, so the ONNX graph stays simple).
            refined = (refiner.indices if refiner is not None else ()) + (local.indices if local is not None else ())
            order = list(range(num_points))
            for j, index in enumerate(refined):
                order[index] = num_points + j
            self.register_buffer("order", torch.tensor(order, dtype=torch.long), persistent=False)

    def forward_with_features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
        """Final landmarks (B, K, 2), the first stage's landmarks when there is a refiner (else None), and
        the stride-4 feature map that the auxiliary net reads while training."""
        features = self.backbone(x)
        s1 = self.s1(features[self.main_stride])
        s2 = self.s2(s1)
        s3 = self.s3(s2)
        pooled = torch.cat([s1.mean((2, 3)), s2.mean((2, 3)), torch.flatten(s3, 1)], dim=1)
        coarse = self.fc(pooled).view(-1, self.num_points, 2)
        if self.refiner is None and self.local is None:
            return coarse, None, features.get(self.aux_stride)
        stages = [coarse]
        if self.refiner is not None:
            stages.append(self.refiner(x, coarse))
        if self.local is not None:
            stages.append(self.local(features[self.aux_stride], coarse))
        landmarks = torch.cat(stages, dim=1)[:, self.order]
        return landmarks, coarse, features.get(self.aux_stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_with_features(x)[0]


@dataclass(frozen=True)
class Region:
    """A face region a refiner re-reads: its point indices and the two corners that set its patch."""

    indices: tuple[int, ...]
    corner_a: int
    corner_b: int


class RegionRefiner(nn.Module):
    """Second stage: re-reads small face regions (the eyes) at full resolution and regresses their points.

    Why: PFLD regresses every point from pooled whole-face features. That places an eye well but pulls its
    *opening* towards the average eye -- measured on synthetic faces, a shut eye (true EAR 0.01) came out
    with EAR 0.23, so blinks were invisible to the driver monitor.

    For each region the refiner samples a square patch centred between the region's two coarse corners,
    aligned with the corner-to-corner axis and ``margin`` times as wide as the corners are apart, straight
    from the input crop (``grid_sample``, so the whole model stays one ONNX graph). The patches sit side by
    side in one (P, R*P) strip that a single small conv net reads -- one chain of operations for both eyes,
    which matters more than FLOPs at this size, and the net sees both eyes at once (they blink together).
    It regresses each region's points in that region's patch frame (x along the axis, both in [-1, 1]).
    The patch geometry comes from detached coarse corners: the first stage is trained by its own loss.
    """

    def __init__(
        self,
        regions: list[Region],
        patch_size: int = 24,
        margin: float = 1.6,
        channels: tuple[int, ...] = (16, 32, 64),
        jitter: float = 0.1,
    ) -> None:
        super().__init__()
        self.regions = list(regions)
        self.indices = tuple(i for region in self.regions for i in region.indices)  # output order
        self.patch_size = patch_size
        self.margin = margin
        self.jitter = jitter
        layers, in_channels = [], 3
        for out_channels in channels:  # each stage halves the strip: a stride-2 conv, then a 3x3 conv
            layers.append(conv_bn_act(in_channels, out_channels, 3, stride=2))
            layers.append(conv_bn_act(out_channels, out_channels, 3))
            in_channels = out_channels
        self.convs = nn.Sequential(*layers)
        map_size = patch_size // 2 ** len(channels)
        self.fc = nn.Linear(in_channels * map_size * map_size * len(self.regions), len(self.indices) * 2)
        self.register_buffer("grid_basis", self._grid_basis(), persistent=False)
        corners = torch.tensor([[region.corner_a, region.corner_b] for region in self.regions])
        self.register_buffer("corners", corners, persistent=False)
        # which region (patch) each output point belongs to
        owner = [r for r, region in enumerate(self.regions) for _ in region.indices]
        self.register_buffer("owner", torch.tensor(owner, dtype=torch.long), persistent=False)

    def _grid_basis(self) -> torch.Tensor:
        """(4R, P * R * P * 2): the sampling grid as a linear function of the corners' coordinates.

        Region r's patch point (qx, qy) sits at u = (a + b) / 2 + m/2 * (qx * d + qy * d_perp), with corners
        a and b, d = b - a, d_perp = d turned 90 degrees (image y points down) and m = ``margin``: the patch is
        m corner distances wide. grid_sample wants g = 2u - 1 (align_corners=False: pixel centres at
        (i + 0.5) / S, the landmarks' own convention). g is linear in (ax, ay, bx, by), so the whole grid is
        one matrix product -- two ONNX nodes instead of dozens of small ones that cost more than the convs.
        """
        size, m, count = self.patch_size, self.margin, len(self.regions)
        q = (torch.arange(size, dtype=torch.float64) + 0.5) / size * 2.0 - 1.0
        qy, qx = torch.meshgrid(q, q, indexing="ij")  # (P, P): rows are y
        basis = torch.zeros(count, 4, size, count, size, 2, dtype=torch.float64)
        for r in range(count):  # rows: ax, ay, bx, by of region r; the "- 1" is added in sample_patches
            basis[r, 0, :, r, :, 0], basis[r, 1, :, r, :, 0] = 1 - m * qx, m * qy
            basis[r, 2, :, r, :, 0], basis[r, 3, :, r, :, 0] = 1 + m * qx, -m * qy
            basis[r, 0, :, r, :, 1], basis[r, 1, :, r, :, 1] = -m * qy, 1 - m * qx
            basis[r, 2, :, r, :, 1], basis[r, 3, :, r, :, 1] = m * qy, 1 + m * qx
        return basis.reshape(count * 4, -1).float()

    def region_corners(self, coarse: torch.Tensor) -> torch.Tensor:
        """(B, R, 2, 2) corners a, b of every region's patch, taken from the detached coarse points.

        While training, ``jitter`` moves each pair as a whole -- a shift (in corner distances), a log-scale
        and a turn (radians) about its midpoint -- so the refiner learns from imperfect first-stage corners.
        """
        corners = coarse.detach()[:, self.corners]
        if not (self.training and self.jitter > 0):
            return corners
        centre = corners.mean(dim=2, keepdim=True)
        half = corners[:, :, 1:] - centre  # (B, R, 1, 2): b - centre; a - centre is its negative
        noise = torch.randn(*corners.shape[:2], 1, 4, device=corners.device) * self.jitter
        width = 2 * half.norm(dim=3, keepdim=True)
        centre = centre + noise[..., :2] * width
        cos, sin = torch.cos(noise[..., 3:4]), torch.sin(noise[..., 3:4])
        half = torch.cat([half[..., :1] * cos - half[..., 1:] * sin, half[..., :1] * sin + half[..., 1:] * cos], 3)
        half = half * torch.exp(noise[..., 2:3])
        return torch.cat([centre - half, centre + half], dim=2)

    def sample_patches(self, image: torch.Tensor, corners: torch.Tensor) -> torch.Tensor:
        """The (B, C, P, R * P) strip of patches the net reads, for (B, R, 2, 2) region corners."""
        size = self.patch_size
        grid = (corners.flatten(1) @ self.grid_basis - 1.0).view(-1, size, size * len(self.regions), 2)
        return nn.functional.grid_sample(image, grid, mode="bilinear", padding_mode="zeros", align_corners=False)

    def forward(self, image: torch.Tensor, coarse: torch.Tensor) -> torch.Tensor:
        """Refined (B, n, 2) points of every region, in ``self.indices`` order, normalised crop coordinates."""
        corners = self.region_corners(coarse)
        q = self.fc(torch.flatten(self.convs(self.sample_patches(image, corners)), 1)).view(-1, len(self.indices), 2)
        a, b = corners[:, self.owner, 0], corners[:, self.owner, 1]  # (B, n, 2) each point's patch corners
        d = (b - a) * (0.5 * self.margin)  # the patch's half-axis along x; y is it turned 90 degrees
        qx, qy = q[..., :1], q[..., 1:]
        return 0.5 * (a + b) + qx * d + qy * torch.cat([-d[..., 1:], d[..., :1]], dim=2)


class LocalRefiner(nn.Module):
    """Second stage for the points no region refiner owns: a correction read from the features at each point.

    Why: the first stage regresses all points from pooled whole-face features, so a point is only as exact as
    the global shape model allows -- on 300-W the jaw and brows, whose place varies most from face to face,
    carry most of the error. This is the shape-indexed step of cascaded regression (the idea behind dlib's
    regression trees) done with CNN features: for each point it bilinearly samples the stride-4 feature map
    (28x28 at 112x112; first reduced by a 1x1 conv to ``channels`` when that is set) on a ``grid`` x ``grid``
    neighbourhood ``spread`` crop widths apart around the point's coarse position, optionally maps the samples
    through one layer shared by all points (``hidden`` units), and reads out the point's own (dx, dy) with its
    own weights. The read-out starts at zero, so the stage starts as the identity. One GridSample serves all
    points. The sampling positions come from the detached coarse points (jittered while training), as in
    ``RegionRefiner``.
    """

    def __init__(
        self,
        indices: tuple[int, ...],
        in_channels: int,
        channels: int = 0,
        hidden: int = 0,
        grid: int = 1,
        spread: float = 0.04,
        jitter: float = 0.02,
    ) -> None:
        super().__init__()
        self.indices = tuple(indices)
        self.jitter = jitter
        self.reduce = conv_bn_act(in_channels, channels, 1) if channels else nn.Identity()
        steps = (torch.arange(grid, dtype=torch.float32) - (grid - 1) / 2) * spread
        offsets = torch.stack(torch.meshgrid(steps, steps, indexing="xy"), dim=-1).reshape(grid * grid, 2)
        self.register_buffer("offsets", offsets, persistent=False)
        # grid_sample's grid is 2u - 1 for a crop position u (align_corners=False: the landmarks' convention)
        self.register_buffer("grid_shift", 2.0 * offsets - 1.0, persistent=False)
        self.register_buffer("index", torch.tensor(self.indices, dtype=torch.long), persistent=False)
        self.features = (channels or in_channels) * grid * grid
        self.shared = nn.Identity()
        if hidden:
            self.shared = nn.Sequential(nn.Linear(self.features, hidden), nn.ReLU(inplace=True))
        self.readout_features = hidden or self.features
        self.weight = nn.Parameter(torch.zeros(len(self.indices), self.readout_features, 2))
        self.bias = nn.Parameter(torch.zeros(len(self.indices), 2))

    def forward(self, features: torch.Tensor, coarse: torch.Tensor) -> torch.Tensor:
        """Refined (B, n, 2) points in ``self.indices`` order, normalised crop coordinates."""
        points = coarse.detach()[:, self.index]
        if self.training and self.jitter > 0:
            points = points + torch.randn_like(points) * self.jitter
        grid = points[:, :, None] * 2.0 + self.grid_shift  # (B, n, G, 2)
        samples = nn.functional.grid_sample(
            self.reduce(features), grid, mode="bilinear", padding_mode="zeros", align_corners=False
        )  # (B, C, n, G)
        count = len(self.indices)
        hidden = self.shared(samples.permute(0, 2, 1, 3).reshape(-1, count, self.features))  # (B, n, F)
        # Each point's own read-out, as one grouped 1x1 conv: ONNX Runtime runs it in a few microseconds
        # (an Einsum or a batched MatMul of the same (n, F, 2) weights took 3-4 times as long).
        weight = self.weight.permute(0, 2, 1).reshape(count * 2, self.readout_features, 1)
        hidden = hidden.reshape(-1, count * self.readout_features, 1)
        delta = nn.functional.conv1d(hidden, weight, self.bias.reshape(-1), groups=count)
        return points + delta.view(-1, count, 2)


class AuxiliaryNet(nn.Module):
    """Training-only head: (yaw, pitch, roll) in radians from the stride-4 map (28x28 at 112x112)."""

    def __init__(self, in_channels: int, input_size: int, aux_stride: int, channels: int, fc_channels: int) -> None:
        super().__init__()
        map_size = -(-input_size // (aux_stride * 4))  # after two stride-2 convs
        self.convs = nn.Sequential(
            conv_bn_act(in_channels, channels, 3, stride=2),
            conv_bn_act(channels, channels, 3),
            conv_bn_act(channels, fc_channels, 3, stride=2),
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
    check_keys(cfg, MODEL_KEYS, where, required=MODEL_KEYS - OPTIONAL_KEYS)
    if not isinstance(cfg["backbone"], dict):
        raise ConfigError(f"{where}: backbone: expected a YAML file name or a backbone table")
    width = expect(cfg["width"], (int, float), f"{where}: width", "a positive number")
    if width <= 0:
        raise ConfigError(f"{where}: width: expected a positive number, got {width}")
    for key in ("num_points", "input_size", "aux_stride", "main_stride"):
        _positive_int(cfg, key, where)
    if cfg["input_size"] % 16 or cfg["input_size"] > MAX_INPUT_SIZE:
        raise ConfigError(
            f"{where}: input_size: expected a multiple of 16 up to {MAX_INPUT_SIZE} (e.g. 112), got {cfg['input_size']}"
        )
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
    if cfg.get("refine") is not None:
        check_refine_config(cfg["refine"], f"{where}: refine", cfg["num_points"])
    if cfg.get("local") is not None:
        check_local_config(cfg["local"], f"{where}: local")


def check_local_config(local: Any, where: str) -> None:
    """``local: {channels: 0, hidden: 0, grid: 1, spread: 0.04, jitter: 0.02}`` -- every key optional
    (``LOCAL_DEFAULTS``; 0 channels or hidden units leave that layer out); ``local: {}`` turns the stage on."""
    expect(local, dict, where, "a mapping")
    check_keys(local, set(LOCAL_DEFAULTS), where, required=set())
    for key, least in (("channels", 0), ("hidden", 0), ("grid", 1)):
        value = local.get(key, LOCAL_DEFAULTS[key])
        if not isinstance(value, int) or isinstance(value, bool) or value < least:
            raise ConfigError(f"{where}: {key}: expected an integer >= {least}, got {value!r}")
    for key in ("spread", "jitter"):
        value = expect(local.get(key, LOCAL_DEFAULTS[key]), (int, float), f"{where}: {key}", "a number >= 0")
        if value < 0 or isinstance(value, bool):
            raise ConfigError(f"{where}: {key}: expected a number >= 0, got {value}")


def check_refine_config(refine: Any, where: str, num_points: int) -> None:
    """``refine: {regions: [left_eye, right_eye], patch_size: 24, margin: 1.6, channels: [16, 32, 64],
    jitter: 0.1}`` -- regions from ``REGION_NAMES``, the rest optional (``REFINE_DEFAULTS``)."""
    expect(refine, dict, where, "a mapping")
    check_keys(refine, REFINE_KEYS, where, required={"regions"})
    refine = {**REFINE_DEFAULTS, **refine}
    regions = expect(refine["regions"], list, f"{where}: regions", f"a list of names from {', '.join(REGION_NAMES)}")
    if not regions or len(set(regions)) != len(regions) or any(name not in REGION_NAMES for name in regions):
        raise ConfigError(f"{where}: regions: expected distinct names from {', '.join(REGION_NAMES)}, got {regions}")
    try:
        scheme_for(num_points)
    except ValueError:
        raise ConfigError(f"{where}: the refiner needs a 68- or 98-point landmark scheme, not {num_points}") from None
    channels = expect(refine["channels"], list, f"{where}: channels", "a list of positive integers")
    if not channels or any(not isinstance(c, int) or isinstance(c, bool) or c <= 0 for c in channels):
        raise ConfigError(f"{where}: channels: expected a list of positive integers, got {channels}")
    patch = refine["patch_size"]
    if not isinstance(patch, int) or isinstance(patch, bool) or patch <= 0 or patch % 2 ** len(channels):
        raise ConfigError(f"{where}: patch_size: expected a positive multiple of {2 ** len(channels)}, got {patch!r}")
    margin = expect(refine["margin"], (int, float), f"{where}: margin", "a number > 1")
    if margin <= 1:
        raise ConfigError(f"{where}: margin: expected a number > 1 (patch width over corner distance), got {margin}")
    jitter = expect(refine["jitter"], (int, float), f"{where}: jitter", "a number >= 0")
    if jitter < 0:
        raise ConfigError(f"{where}: jitter: expected a number >= 0, got {jitter}")


def build_refiner(refine: dict, num_points: int) -> RegionRefiner:
    """The ``RegionRefiner`` for the named regions of the scheme with ``num_points`` points.

    An eye's points are its contour (corners and lids) plus its pupil when the scheme annotates one.
    """
    scheme = scheme_for(num_points)
    pupils = dict(zip(("left_eye", "right_eye"), scheme.pupils, strict=True)) if scheme.pupils else {}
    regions = []
    for name in refine["regions"]:
        contour = getattr(scheme, name)
        indices = list(contour.indices) + ([pupils[name]] if name in pupils else [])
        regions.append(Region(tuple(indices), contour.corner_a, contour.corner_b))
    refine = {**REFINE_DEFAULTS, **refine}
    return RegionRefiner(
        regions,
        patch_size=refine["patch_size"],
        margin=float(refine["margin"]),
        channels=tuple(refine["channels"]),
        jitter=float(refine["jitter"]),
    )


def build_local(local: dict, num_points: int, skip: tuple[int, ...], in_channels: int, width: float) -> LocalRefiner:
    """The ``LocalRefiner`` for every point not in ``skip`` (the points a region refiner already owns)."""
    local = {**LOCAL_DEFAULTS, **local}
    return LocalRefiner(
        tuple(i for i in range(num_points) if i not in skip),
        in_channels,
        channels=scaled(local["channels"], width) if local["channels"] else 0,
        hidden=scaled(local["hidden"], width) if local["hidden"] else 0,
        grid=local["grid"],
        spread=float(local["spread"]),
        jitter=float(local["jitter"]),
    )


def build_pfld(cfg: dict) -> PFLD:
    """The inference network described by a resolved model config."""
    width = float(cfg["width"])
    specs = parse_backbone(cfg["backbone"], "backbone", width)
    backbone = Backbone(specs, (cfg["aux_stride"], cfg["main_stride"]))
    head = cfg["head"]
    refiner = build_refiner(cfg["refine"], cfg["num_points"]) if cfg.get("refine") else None
    local = None
    if cfg.get("local") is not None:
        skip = refiner.indices if refiner is not None else ()
        in_channels = backbone.out_channels[cfg["aux_stride"]]
        local = build_local(cfg["local"], cfg["num_points"], skip, in_channels, width)
    return PFLD(
        backbone,
        num_points=cfg["num_points"],
        input_size=cfg["input_size"],
        aux_stride=cfg["aux_stride"],
        main_stride=cfg["main_stride"],
        s1_channels=scaled(head["s1_channels"], width) if head["s1_channels"] else None,
        s2_channels=scaled(head["s2_channels"], width),
        s3_channels=scaled(head["s3_channels"], width),
        refiner=refiner,
        local=local,
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

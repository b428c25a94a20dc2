"""Landmark regression losses, and PFLD's pose- and attribute-weighted wrapper.

Every loss takes ``pred`` and ``target`` of shape ``(B, K, 2)`` in normalised crop coordinates
(``(crop_px + 0.5) / S``). Each one computes an elementwise loss on the coordinate errors, averages it over
the K points and both axes to get one value per sample (``per_sample -> (B,)``), and ``forward`` returns
the mean of those over the batch. ``PFLDLoss`` needs the per-sample values so it can weight each face.

Units. Wing and Adaptive Wing have thresholds that their papers define in *pixels* (Wing: w=10, epsilon=2;
the switch from log to linear at |x| = w). Rather than asking users to convert those constants by hand
(w=10 px is 0.089 of a 112-px crop) we keep the papers' numbers and scale the normalised errors to crop
pixels with an ``input_size`` argument. Their values are therefore in pixel-like units and much larger than
an L2 loss on normalised coordinates: a learning rate tuned for one will not carry over to the other.
L1, L2 and SmoothL1 work directly on normalised coordinates (SmoothL1's ``beta`` is in those units too).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from landmark.errors import ConfigError

ANGLE_NAMES = ("yaw", "pitch", "roll")


def _check_shapes(pred: Tensor, target: Tensor) -> None:
    if pred.shape != target.shape or pred.dim() != 3 or pred.shape[-1] != 2:
        raise ValueError(f"pred and target must both be (B, K, 2), got {tuple(pred.shape)} and {tuple(target.shape)}")


def _require_positive(name: str, value: float) -> None:
    if not value > 0:
        raise ValueError(f"{name} must be > 0, got {value}")


class PerSampleLoss(nn.Module):
    """A coordinate loss that can report one value per sample; ``forward`` is their batch mean."""

    def per_sample(self, pred: Tensor, target: Tensor) -> Tensor:
        raise NotImplementedError

    def forward(self, pred: Tensor, target: Tensor) -> Tensor:
        return self.per_sample(pred, target).mean()


class L1Loss(PerSampleLoss):
    """Mean absolute coordinate error (normalised units)."""

    def per_sample(self, pred: Tensor, target: Tensor) -> Tensor:
        _check_shapes(pred, target)
        return (pred - target).abs().mean(dim=(1, 2))


class L2Loss(PerSampleLoss):
    """Mean squared coordinate error (normalised units), the loss of the original PFLD."""

    def per_sample(self, pred: Tensor, target: Tensor) -> Tensor:
        _check_shapes(pred, target)
        return (pred - target).square().mean(dim=(1, 2))


class SmoothL1Loss(PerSampleLoss):
    """Huber-style loss: quadratic below ``beta``, linear above (``beta`` in normalised units).

    The default 0.01 is about one pixel of a 112-px crop: sub-pixel errors get the gentle L2 gradient,
    everything larger the constant L1 gradient.
    """

    def __init__(self, beta: float = 0.01) -> None:
        super().__init__()
        _require_positive("beta", beta)
        self.beta = beta

    def per_sample(self, pred: Tensor, target: Tensor) -> Tensor:
        _check_shapes(pred, target)
        loss = nn.functional.smooth_l1_loss(pred, target, reduction="none", beta=self.beta)
        return loss.mean(dim=(1, 2))


class WingLoss(PerSampleLoss):
    """Wing loss (Feng et al., CVPR 2018) on coordinate errors measured in crop pixels.

        wing(x) = w * ln(1 + |x| / epsilon)   if |x| < w
                  |x| - C                     otherwise,  C = w - w * ln(1 + w / epsilon)

    The log branch amplifies small and medium errors (gradient w / (epsilon + |x|) instead of L1's 1), which
    is what refines points that are already nearly right; C makes the two branches meet at |x| = w.
    ``w`` and ``epsilon`` are in pixels, as in the paper, so errors are scaled by ``input_size`` first.
    """

    def __init__(self, w: float = 10.0, epsilon: float = 2.0, input_size: int = 112) -> None:
        super().__init__()
        _require_positive("w", w)
        _require_positive("epsilon", epsilon)
        _require_positive("input_size", input_size)
        self.w = w
        self.epsilon = epsilon
        self.input_size = input_size
        self.c = w - w * math.log(1.0 + w / epsilon)

    def per_sample(self, pred: Tensor, target: Tensor) -> Tensor:
        _check_shapes(pred, target)
        x = (pred - target).abs() * self.input_size
        loss = torch.where(x < self.w, self.w * torch.log1p(x / self.epsilon), x - self.c)
        return loss.mean(dim=(1, 2))


class AdaptiveWingLoss(PerSampleLoss):
    """Adaptive Wing loss (Wang et al., ICCV 2019) adapted from heatmaps to coordinate regression.

        awing(x) = omega * ln(1 + (|x| / epsilon) ** p)   if |x| < theta
                   A * |x| - C                            otherwise
        A = omega * p * (theta / epsilon) ** (p - 1) / (epsilon * (1 + (theta / epsilon) ** p))
        C = theta * A - omega * ln(1 + (theta / epsilon) ** p)

    In the paper the exponent is ``p = alpha - y`` where y is the target heatmap *intensity* in [0, 1]:
    near 2 on the background (L2-like, tolerant of small errors) and near 1 on the foreground pixels around
    a landmark (Wing-like, sensitive to small errors). A regressed coordinate has no intensity, and feeding
    the coordinate itself in as y (as some ports do) makes the loss depend on where the face sits in the
    crop. We use the foreground exponent ``p = alpha - 1`` (1.1 by default) for every coordinate, which is
    the case the paper designed for precise localisation: Wing-like emphasis on small errors, but with
    p > 1 the gradient falls smoothly to zero at zero error instead of jumping like Wing's. A and C make the
    value and the slope continuous at |x| = theta. As for Wing, errors are in crop pixels (``input_size``),
    so with the defaults the log branch covers sub-pixel errors (theta = 0.5 px) and larger errors get a
    constant slope A (about 9.8).
    """

    def __init__(
        self,
        omega: float = 14.0,
        theta: float = 0.5,
        epsilon: float = 1.0,
        alpha: float = 2.1,
        input_size: int = 112,
    ) -> None:
        super().__init__()
        for name, value in (
            ("omega", omega),
            ("theta", theta),
            ("epsilon", epsilon),
            ("input_size", input_size),
        ):
            _require_positive(name, value)
        # p < 1 would give an infinite gradient at zero error (|x| ** (p - 1) blows up).
        if not alpha >= 2.0:
            raise ValueError(f"alpha must be >= 2 (exponent alpha - 1 >= 1 keeps the gradient finite), got {alpha}")
        self.omega = omega
        self.theta = theta
        self.epsilon = epsilon
        self.alpha = alpha
        self.input_size = input_size
        self.p = alpha - 1.0
        ratio = theta / epsilon
        self.a = omega * self.p * ratio ** (self.p - 1) / (epsilon * (1.0 + ratio**self.p))
        self.c = theta * self.a - omega * math.log1p(ratio**self.p)

    def per_sample(self, pred: Tensor, target: Tensor) -> Tensor:
        _check_shapes(pred, target)
        x = (pred - target).abs() * self.input_size
        log_branch = self.omega * torch.log1p((x / self.epsilon).pow(self.p))
        loss = torch.where(x < self.theta, log_branch, self.a * x - self.c)
        return loss.mean(dim=(1, 2))


class PFLDLoss(nn.Module):
    """PFLD loss (Guo et al. 2019): faces with rare attributes or a poorly predicted pose count more.

    Per sample b, with the base loss L_b (one value per face from ``base.per_sample``):

        attribute_b = 1 + sum_c w_c * flag_bc,     w_c = 1 / (share of the batch with attribute c)
        angle_b     = angle_floor + sum over yaw, pitch, roll of (1 - cos(pred - true))
        loss        = mean_b(attribute_b * angle_b * L_b)

    Two deliberate departures from the paper's formula and its public ports:

    * Angles are in RADIANS (the project's convention). ``1 - cos`` of an error in degrees is meaningless
      (a 10-degree error would read as 1 - cos(10 rad) = 1.84); ``forward`` refuses ground-truth angles
      outside [-pi, pi] because those are almost certainly degrees.
    * The naive weight sum(w_c * flag) * sum(1 - cos) is zero for a frontal, attribute-free face whose pose
      is predicted well -- the most common face never contributes. Hence the "1 +" in the attribute term
      and ``angle_floor`` in the angle term: every sample weighs at least ``angle_floor`` (with the default
      1.0 both terms only ever *add* weight to the plain base loss).

    The angle term is not detached: its gradient sin(pred - true) * L_b is what trains the auxiliary pose
    branch, as in the paper. Without auxiliary angles (``angles_pred is None``) the angle term is dropped and
    the attribute weight is used alone; without attributes (or with ``attribute_weighting=False``) the
    attribute term is 1.
    """

    def __init__(self, base: PerSampleLoss, attribute_weighting: bool = True, angle_floor: float = 1.0) -> None:
        super().__init__()
        if not angle_floor > 0:
            raise ValueError(f"angle_floor must be > 0 so every face keeps a non-zero weight, got {angle_floor}")
        self.base = base
        self.attribute_weighting = attribute_weighting
        self.angle_floor = angle_floor

    def attribute_weights(self, attributes: Tensor) -> Tensor:
        """(B,) 1 + sum_c w_c * flag, with w_c the reciprocal share of attribute c in this batch."""
        flags = attributes.float()
        share = flags.mean(dim=0)  # (C,)
        # An attribute absent from the batch gets weight 0; no sample carries its flag anyway.
        class_weight = torch.where(share > 0, 1.0 / share.clamp(min=1e-12), torch.zeros_like(share))
        return 1.0 + (flags * class_weight).sum(dim=1)

    def angle_weights(self, angles_pred: Tensor, angles_true: Tensor) -> Tensor:
        """(B,) angle_floor + sum over yaw, pitch, roll of (1 - cos(error)), angles in radians."""
        return self.angle_floor + (1.0 - torch.cos(angles_pred - angles_true)).sum(dim=1)

    def forward(
        self,
        pred: Tensor,
        target: Tensor,
        angles_pred: Tensor | None = None,
        angles_true: Tensor | None = None,
        attributes: Tensor | None = None,
    ) -> tuple[Tensor, dict[str, float]]:
        """Return the weighted batch loss and a dict of plain floats for logging."""
        per_sample = self.base.per_sample(pred, target)  # (B,)
        batch = per_sample.shape[0]
        weight = torch.ones_like(per_sample)
        parts: dict[str, float] = {"landmark": float(per_sample.detach().mean())}

        if self.attribute_weighting and attributes is not None:
            if attributes.dim() != 2 or attributes.shape[0] != batch:
                raise ValueError(f"attributes must be (B={batch}, C), got {tuple(attributes.shape)}")
            weight = weight * self.attribute_weights(attributes).to(per_sample.dtype)

        if angles_pred is not None:
            if angles_true is None:
                raise ValueError("angles_pred was given without angles_true")
            if angles_pred.shape != (batch, 3) or angles_true.shape != (batch, 3):
                raise ValueError(
                    f"angles must be (B={batch}, 3) as {', '.join(ANGLE_NAMES)}, got "
                    f"{tuple(angles_pred.shape)} and {tuple(angles_true.shape)}"
                )
            largest = float(angles_true.detach().abs().max())
            if largest > math.pi + 1e-3:
                raise ValueError(f"ground-truth angles must be radians in [-pi, pi]; got {largest:.3f} (degrees?)")
            angle_weight = self.angle_weights(angles_pred, angles_true)
            parts["angle"] = float((angle_weight.detach() - self.angle_floor).mean())
            weight = weight * angle_weight

        loss = (weight * per_sample).mean()
        parts["weight"] = float(weight.detach().mean())
        parts["total"] = float(loss.detach())
        return loss, parts


# --- building a loss from the training YAML --------------------------------------------------------------

# name -> (class, the keys its constructor accepts)
_BASE_LOSSES: dict[str, tuple[type[PerSampleLoss], tuple[str, ...]]] = {
    "l1": (L1Loss, ()),
    "l2": (L2Loss, ()),
    "smooth_l1": (SmoothL1Loss, ("beta",)),
    "wing": (WingLoss, ("w", "epsilon", "input_size")),
    "adaptive_wing": (AdaptiveWingLoss, ("omega", "theta", "epsilon", "alpha", "input_size")),
}
_PFLD_KEYS = ("enabled", "attribute_weighting", "angle_floor")


def _number(key: str, value: object) -> float:
    # bool is an int subclass, and YAML turns "yes"/"true" into booleans: refuse them as numbers.
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{key}: expected a number, got {value!r}")
    return value


def _flag(key: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"{key}: expected true or false, got {value!r}")
    return value


def build_loss(cfg: dict) -> nn.Module:
    """Build the loss described by the ``loss:`` section of a training YAML.

    Example: ``{"name": "wing", "w": 10, "epsilon": 2, "pfld": {"enabled": true, "angle_floor": 1.0}}``.
    Returns the base loss (call it as ``loss(pred, target)``), or, when ``pfld.enabled`` is true, a
    ``PFLDLoss`` around it (call it as ``loss(pred, target, angles_pred, angles_true, attributes)`` and get
    ``(loss, parts)`` back). Errors are ``ConfigError`` naming ``loss.<key>``.
    """
    if not isinstance(cfg, dict):
        raise ConfigError(f"loss: expected a mapping with at least a 'name', got {cfg!r}")
    names = ", ".join(_BASE_LOSSES)
    if "name" not in cfg:
        raise ConfigError(f"loss.name: missing; expected one of {names}")
    name = cfg["name"]
    if name not in _BASE_LOSSES:
        raise ConfigError(f"loss.name: unknown loss {name!r}; expected one of {names}")
    loss_class, allowed = _BASE_LOSSES[name]
    for key in cfg:
        if key not in ("name", "pfld", *allowed):
            expected = ", ".join(("name", "pfld", *allowed))
            raise ConfigError(f"loss.{key}: unknown key for loss {name!r}; expected one of {expected}")

    kwargs = {key: _number(f"loss.{key}", cfg[key]) for key in allowed if key in cfg}
    try:
        base = loss_class(**kwargs)
    except ValueError as error:  # the constructors name the offending argument first
        raise ConfigError(f"loss.{error}") from None

    pfld = cfg.get("pfld")
    if pfld is None:
        return base
    if not isinstance(pfld, dict):
        raise ConfigError(f"loss.pfld: expected a mapping with keys {', '.join(_PFLD_KEYS)}, got {pfld!r}")
    for key in pfld:
        if key not in _PFLD_KEYS:
            raise ConfigError(f"loss.pfld.{key}: unknown key; expected one of {', '.join(_PFLD_KEYS)}")
    if not _flag("loss.pfld.enabled", pfld.get("enabled", False)):
        return base
    attribute_weighting = _flag("loss.pfld.attribute_weighting", pfld.get("attribute_weighting", True))
    angle_floor = _number("loss.pfld.angle_floor", pfld.get("angle_floor", 1.0))
    try:
        return PFLDLoss(base, attribute_weighting=attribute_weighting, angle_floor=angle_floor)
    except ValueError as error:
        raise ConfigError(f"loss.pfld.{error}") from None

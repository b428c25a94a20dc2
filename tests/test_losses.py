"""Landmark losses and PFLD weighting against values worked out by hand."""

from __future__ import annotations

import math

import pytest
import torch

from landmark.errors import ConfigError
from landmark.train.losses import (
    AdaptiveWingLoss,
    L1Loss,
    L2Loss,
    PFLDLoss,
    SmoothL1Loss,
    WingLoss,
    build_loss,
)


def _pair(error_x: float, error_y: float, batch: int = 1, points: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """target at 0.5, pred off by (error_x, error_y) in normalised units, float64 for exact comparisons."""
    target = torch.full((batch, points, 2), 0.5, dtype=torch.float64)
    pred = target + torch.tensor([error_x, error_y], dtype=torch.float64)
    return pred, target


def _all_losses() -> list[torch.nn.Module]:
    return [L1Loss(), L2Loss(), SmoothL1Loss(), WingLoss(), AdaptiveWingLoss()]


def test_wing_log_branch_by_hand():
    # 1 px on both axes of a 112-px crop: 10 * ln(1 + 1/2) = 10 * 0.4054651 = 4.054651
    pred, target = _pair(1 / 112, 1 / 112)
    assert WingLoss()(pred, target).item() == pytest.approx(4.054651081, rel=1e-9)
    # 1 px on x only: the y axis contributes 0, the mean over 2 coordinates halves it
    pred, target = _pair(1 / 112, 0.0)
    assert WingLoss()(pred, target).item() == pytest.approx(4.054651081 / 2, rel=1e-9)


def test_wing_linear_branch_by_hand():
    # C = 10 - 10 * ln(1 + 10/2) = 10 - 17.917595 = -7.917595; 20 px -> 20 - C = 27.917595
    pred, target = _pair(20 / 112, -20 / 112)
    assert WingLoss()(pred, target).item() == pytest.approx(27.917594692, rel=1e-9)


def test_wing_is_continuous_at_w():
    loss = WingLoss(input_size=1)
    below = loss(*_pair(10 - 1e-9, 10 - 1e-9)).item()  # log branch: 10 * ln 6 = 17.917595
    above = loss(*_pair(10 + 1e-9, 10 + 1e-9)).item()  # linear branch
    assert below == pytest.approx(17.917594692, rel=1e-8)
    assert above == pytest.approx(below, abs=1e-6)


def test_adaptive_wing_log_branch_by_hand():
    # p = alpha - 1 = 1.1; 0.25 px: 0.25 ** 1.1 = 0.2176376; 14 * ln(1.2176376) = 2.7567767
    pred, target = _pair(0.25 / 112, 0.25 / 112)
    assert AdaptiveWingLoss()(pred, target).item() == pytest.approx(2.756776702, rel=1e-8)


def test_adaptive_wing_linear_branch_by_hand():
    # A = 14 * 1.1 * 0.5 ** 0.1 / (1 + 0.5 ** 1.1) = 14.368710 / 1.466516 = 9.797850
    # C = 0.5 * A - 14 * ln(1 + 0.5 ** 1.1) = 4.898925 - 5.360458 = -0.461533; 2 px -> 2A - C = 20.057232
    pred, target = _pair(2 / 112, 2 / 112)
    assert AdaptiveWingLoss()(pred, target).item() == pytest.approx(20.057232417, rel=1e-8)


def test_adaptive_wing_value_and_slope_continuous_at_theta():
    loss = AdaptiveWingLoss(input_size=1)
    values, slopes = [], []
    for x in (0.5 - 1e-7, 0.5 + 1e-7):
        pred, target = _pair(x, x)
        pred.requires_grad_(True)
        value = loss(pred, target)
        value.backward()
        values.append(value.item())
        slopes.append(pred.grad[0, 0, 0].item() * 2)  # the mean over 2 coordinates halves each gradient
    assert values[0] == pytest.approx(values[1], abs=1e-5)
    assert slopes[0] == pytest.approx(9.797849606, rel=1e-5)
    assert slopes[1] == pytest.approx(9.797849606, rel=1e-9)


def test_adaptive_wing_refuses_exponent_below_one():
    with pytest.raises(ValueError, match="alpha"):
        AdaptiveWingLoss(alpha=1.5)


@pytest.mark.parametrize("loss", _all_losses(), ids=lambda loss: type(loss).__name__)
def test_zero_at_zero_error_with_finite_gradient(loss):
    target = torch.rand(3, 98, 2, dtype=torch.float64)
    pred = target.clone().requires_grad_(True)
    value = loss(pred, target)
    value.backward()
    assert value.item() == 0.0
    assert torch.isfinite(pred.grad).all()
    assert value.dim() == 0


@pytest.mark.parametrize("loss", _all_losses(), ids=lambda loss: type(loss).__name__)
def test_per_sample_values_and_batch_mean(loss):
    pred, target = _pair(0.01, -0.02, batch=2, points=5)
    pred[1] = target[1]  # second sample perfect
    per_sample = loss.per_sample(pred, target)
    assert per_sample.shape == (2,)
    assert per_sample[0] > 0 and per_sample[1] == 0
    assert loss(pred, target).item() == pytest.approx(per_sample.mean().item())


def test_simple_losses_by_hand():
    pred, target = _pair(0.1, -0.3)
    assert L1Loss()(pred, target).item() == pytest.approx(0.2)  # (0.1 + 0.3) / 2
    assert L2Loss()(pred, target).item() == pytest.approx(0.05)  # (0.01 + 0.09) / 2
    # beta = 0.2: 0.1 is quadratic, 0.5 * 0.01 / 0.2 = 0.025; 0.3 is linear, 0.3 - 0.1 = 0.2
    assert SmoothL1Loss(beta=0.2)(pred, target).item() == pytest.approx((0.025 + 0.2) / 2)


def test_shape_mismatch_is_refused():
    with pytest.raises(ValueError, match=r"\(B, K, 2\)"):
        L2Loss()(torch.zeros(2, 5, 2), torch.zeros(2, 6, 2))


# --- PFLD ------------------------------------------------------------------------------------------------

TEN_DEGREES = math.radians(10.0)  # 0.174533


def test_pfld_angle_term_uses_radians():
    pfld = PFLDLoss(L2Loss(), angle_floor=1.0)
    weight = pfld.angle_weights(torch.tensor([[0.1745, 0.0, 0.0]]), torch.zeros(1, 3))
    # 1 + (1 - cos(0.1745)) = 1 + 0.0152; cos of "10" (degrees read as radians) would give 1 + 1.839
    assert weight.item() == pytest.approx(1.0152, abs=1e-4)


def test_pfld_refuses_angles_in_degrees():
    pred, target = _pair(0.01, 0.01)
    with pytest.raises(ValueError, match="radians"):
        PFLDLoss(L2Loss())(pred, target, torch.zeros(1, 3), torch.tensor([[30.0, 0.0, 0.0]]), torch.zeros(1, 6))


def test_pfld_frontal_attribute_free_face_keeps_weight_and_full_value_by_hand():
    # sample 0: frontal, no attributes, pose predicted exactly, every coordinate off by 0.1 -> L2 = 0.01
    # sample 1: pose flag, yaw 10 degrees off, every coordinate off by 0.2 -> L2 = 0.04
    target = torch.zeros(2, 4, 2, dtype=torch.float64)
    pred = target.clone()
    pred[0] += 0.1
    pred[1] += 0.2
    attributes = torch.zeros(2, 6)
    attributes[1, 0] = 1
    angles_true = torch.zeros(2, 3, dtype=torch.float64)
    angles_pred = angles_true.clone()
    angles_pred[1, 0] = TEN_DEGREES
    pfld = PFLDLoss(L2Loss(), angle_floor=1.0)

    # attribute term: pose share 1/2 -> w = 2: [1, 1 + 2] = [1, 3]; angle term: [1, 1 + 0.0151922]
    assert pfld.attribute_weights(attributes).tolist() == [1.0, 3.0]
    loss, parts = pfld(pred, target, angles_pred, angles_true, attributes)
    # (0.01 * 1 + 0.04 * 3 * 1.0151922) / 2 = (0.01 + 0.1218231) / 2 = 0.0659115
    assert loss.item() == pytest.approx(0.0659115348, rel=1e-8)
    assert parts["landmark"] == pytest.approx(0.025)  # unweighted (0.01 + 0.04) / 2
    assert parts["total"] == pytest.approx(loss.item())

    # The naive paper formula gives sample 0 weight sum(w_c * 0) * sum(1 - cos 0) = 0; ours keeps 1.
    only_frontal, _ = pfld(pred[:1], target[:1], angles_pred[:1], angles_true[:1], attributes[:1])
    assert only_frontal.item() == pytest.approx(0.01)


def test_pfld_class_weighting_favours_rare_attributes():
    attributes = torch.zeros(4, 6)
    attributes[:3, 0] = 1  # pose in 3 of 4 faces: w = 4/3
    attributes[3, 5] = 1  # blur in 1 of 4 faces: w = 4
    weights = PFLDLoss(L2Loss()).attribute_weights(attributes)
    assert weights.tolist() == pytest.approx([1 + 4 / 3, 1 + 4 / 3, 1 + 4 / 3, 1 + 4])
    assert weights[3] > weights[0]


def test_pfld_without_angles_uses_attribute_weight_alone():
    target = torch.zeros(2, 3, 2, dtype=torch.float64)
    pred = target + 0.1  # L2 = 0.01 for both
    attributes = torch.zeros(2, 6)
    attributes[0, 4] = 1  # occlusion in 1 of 2: weights [1 + 2, 1]
    loss, parts = PFLDLoss(L2Loss())(pred, target, None, None, attributes)
    assert loss.item() == pytest.approx((0.01 * 3 + 0.01 * 1) / 2)
    assert "angle" not in parts
    unweighted, _ = PFLDLoss(L2Loss(), attribute_weighting=False)(pred, target, None, None, attributes)
    assert unweighted.item() == pytest.approx(0.01)


def test_pfld_trains_the_pose_branch_and_is_zero_when_perfect():
    target = torch.zeros(2, 3, 2, dtype=torch.float64)
    pred = target + 0.1
    angles_true = torch.zeros(2, 3, dtype=torch.float64)
    angles_pred = torch.full((2, 3), 0.3, dtype=torch.float64, requires_grad=True)
    loss, _ = PFLDLoss(WingLoss())(pred, target, angles_pred, angles_true, torch.zeros(2, 6))
    loss.backward()
    assert (angles_pred.grad > 0).all()  # reducing the angle error lowers the loss
    perfect, _ = PFLDLoss(WingLoss())(target, target, angles_true, angles_true, torch.ones(2, 6))
    assert perfect.item() == 0.0


# --- build_loss ------------------------------------------------------------------------------------------


def test_build_loss_from_yaml_dict():
    loss = build_loss({"name": "wing", "w": 5, "epsilon": 1})
    assert isinstance(loss, WingLoss) and (loss.w, loss.epsilon) == (5, 1)
    loss = build_loss({"name": "wing", "w": 10, "epsilon": 2, "pfld": {"enabled": True, "angle_floor": 0.5}})
    assert isinstance(loss, PFLDLoss) and isinstance(loss.base, WingLoss) and loss.angle_floor == 0.5
    assert isinstance(build_loss({"name": "l2", "pfld": {"enabled": False}}), L2Loss)
    assert build_loss({"name": "smooth_l1", "beta": 0.02}).beta == 0.02
    assert build_loss({"name": "adaptive_wing", "alpha": 2.5}).p == pytest.approx(1.5)


@pytest.mark.parametrize(
    "cfg, key",
    [
        ({"w": 10}, "loss.name"),
        ({"name": "huber"}, "loss.name"),
        ({"name": "wing", "omega": 14}, "loss.omega"),
        ({"name": "wing", "w": "ten"}, "loss.w"),
        ({"name": "wing", "w": True}, "loss.w"),
        ({"name": "wing", "epsilon": -1}, "loss.epsilon"),
        ({"name": "adaptive_wing", "alpha": 1.5}, "loss.alpha"),
        ({"name": "l2", "pfld": {"enabled": True, "angle_floor": 0}}, "loss.pfld.angle_floor"),
        ({"name": "l2", "pfld": {"enabled": "yes"}}, "loss.pfld.enabled"),
        ({"name": "l2", "pfld": {"enabled": True, "floor": 1}}, "loss.pfld.floor"),
        ({"name": "l2", "pfld": True}, "loss.pfld"),
    ],
)
def test_build_loss_errors_name_the_key(cfg, key):
    with pytest.raises(ConfigError, match=f"^{key.replace('.', '[.]')}[ :]"):
        build_loss(cfg)

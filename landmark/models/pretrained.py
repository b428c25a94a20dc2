"""Starting a YAML-built backbone from ImageNet-pretrained MobileNet weights (``model.pretrained``).

An ImageNet body and our backbone name their tensors differently (``stage1.3.0.weight`` against
``layers.3.0.0.weight``, torchvision's ``features.2.conv.1.0.weight`` against ``layers.2.block.1.0.weight``)
but hold the same tensors in the same order: conv weight, then its BatchNorm's weight, bias, running mean and
running variance, layer after layer. So the weights are mapped by position, with a shape check per tensor;
the backbone is usually shorter (PFLD cuts the body at stride 8), and the classifier is never used.

Two things differ from ImageNet training and are fixed in the first conv, where they are exact:

* Colour order: the networks were trained on RGB; we feed BGR, so the first conv's input channels are
  reversed.
* Input scaling: we feed ``u = bgr / 127.5 - 1`` (``landmark.data.crop``). ``imagenet`` weights expect
  ``(rgb / 255 - mean) / std``; with ``x = (u + 1) / 2`` that is ``u / (2 std) + (0.5 - mean) / std``, so the
  conv weights are divided by ``2 std`` per input channel and the constant term is moved into the following
  BatchNorm's running mean. ``signed`` weights (the Coral conversions) expect ``rgb / 127.5 - 1``: nothing to do.

Then ``recalibrate_batchnorm`` re-expresses every BatchNorm for the statistics of face crops while keeping
the function the pretrained network computes on them (see there): without it, training-mode BatchNorm
would normalise away the scale of the pretrained features at the first step.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from landmark.errors import LandmarkError, first_line

# The input scalings a pretrained file may expect (``model.pretrained_input``).
INPUT_SCALINGS = ("imagenet", "signed")
IMAGENET_MEAN_RGB = (0.485, 0.456, 0.406)
IMAGENET_STD_RGB = (0.229, 0.224, 0.225)
# Keys of classifier layers, which a backbone never takes (torchvision ``classifier.1``, the RetinaFace
# checkpoint's ``fc``).
CLASSIFIER_PREFIXES = ("fc.", "classifier.")


@dataclass(frozen=True)
class PretrainedLoad:
    """What ``load_pretrained`` did: it filled every backbone tensor from the first ``loaded`` of the file's
    ``available`` body tensors (the rest are deeper layers the backbone does not build)."""

    path: str
    loaded: int
    available: int


def read_state_dict(path: str | Path, setting: str = "model.pretrained") -> list[tuple[str, torch.Tensor]]:
    """The body tensors of a pretrained file, in file order: a plain state dict or a training checkpoint
    holding one under ``state_dict`` (``module.`` prefixes from DataParallel removed); no classifier, no
    BatchNorm step counters. Errors name the file and ``setting``, the option that gave it."""
    path = Path(path)
    if not path.is_file():
        raise LandmarkError(f"{path}: {setting}: file not found")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # a truncated file, a pickle with code in it, not a torch file at all
        raise LandmarkError(f"{path}: {setting}: not a readable PyTorch weights file ({first_line(err)})") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise LandmarkError(f"{path}: {setting}: expected a state dict of tensors (or a checkpoint with one)")
    tensors = []
    for key, value in state.items():
        key = key.removeprefix("module.")
        if key.endswith("num_batches_tracked") or key.startswith(CLASSIFIER_PREFIXES):
            continue
        tensors.append((key, value))
    return tensors


def fold_input_scaling(weight: torch.Tensor, scaling: str) -> tuple[torch.Tensor, torch.Tensor]:
    """A first conv trained on RGB with ``scaling`` -> (weight for our BGR input in [-1, 1], the constant
    (out_channels,) that the original conv added on top of the new one, to be taken off downstream)."""
    if weight.shape[1] != 3:
        raise LandmarkError(f"the first conv takes {weight.shape[1]} input channels, not 3 (an RGB image)")
    weight = weight.detach().clone().float()
    offset = torch.zeros(weight.shape[0])
    if scaling == "imagenet":
        mean, std = torch.tensor(IMAGENET_MEAN_RGB), torch.tensor(IMAGENET_STD_RGB)
        offset = (weight * ((0.5 - mean) / std).view(1, 3, 1, 1)).sum((1, 2, 3))
        weight = weight / (2 * std).view(1, 3, 1, 1)
    elif scaling != "signed":
        raise LandmarkError(f"model.pretrained_input: expected one of {', '.join(INPUT_SCALINGS)}, got {scaling!r}")
    return weight.flip(1), offset  # RGB -> BGR


def match_by_position(
    source: list[tuple[str, torch.Tensor]],
    target: list[tuple[str, torch.Tensor]],
    where: str,
    network: str,
    adapt: Callable[[int, torch.Tensor], torch.Tensor] | None = None,
) -> dict[str, torch.Tensor]:
    """The first ``len(target)`` source tensors (``read_state_dict``), keyed by the target's names, each checked
    against its target's shape; ``adapt(index, tensor)`` may convert a source tensor first. Too few tensors, or
    the first that does not fit, is one ``LandmarkError`` line starting with ``where`` and naming ``network``."""
    if len(source) < len(target):
        raise LandmarkError(
            f"{where}: holds {len(source)} body tensors, {network} needs {len(target)} "
            f"(the first without a source: {target[len(source)][0]})"
        )
    weights = {}
    for index, ((t_key, t_value), (s_key, s_value)) in enumerate(zip(target, source, strict=False)):
        if adapt is not None:
            s_value = adapt(index, s_value)
        if tuple(t_value.shape) != tuple(s_value.shape):
            raise LandmarkError(
                f"{where}: tensor {index} {s_key} {tuple(s_value.shape)} does not fit {network}'s {t_key} "
                f"{tuple(t_value.shape)}: a different architecture, width or layer order"
            )
        weights[t_key] = s_value.detach().clone().to(t_value.dtype)
    return weights


def load_pretrained(backbone: nn.Module, path: str | Path, scaling: str = "imagenet") -> PretrainedLoad:
    """Copy an ImageNet body into ``backbone`` (a ``landmark.models.backbone.Backbone``) by tensor order.

    Every target tensor must get a source tensor of the same shape; the first that does not is named in a
    one-line ``LandmarkError`` and nothing is changed. The first conv is converted for BGR input in [-1, 1]
    (see the module docstring); its constant term goes into the running mean of the BatchNorm after it.
    """
    source = read_state_dict(path)
    target = [(k, v) for k, v in backbone.state_dict().items() if not k.endswith("num_batches_tracked")]
    weights = match_by_position(source, target, f"{path}: model.pretrained", "the backbone")
    first_conv, first_bn_mean = target[0][0], target[3][0]  # conv weight, then BN weight, bias, running mean
    if not first_bn_mean.endswith("running_mean"):
        raise LandmarkError(f"{path}: model.pretrained: the backbone's first conv is not followed by a BatchNorm")
    weights[first_conv], offset = fold_input_scaling(weights[first_conv], scaling)
    # BN(conv_orig(z) - mean) with conv_orig(z) = conv_new(u) + offset  ==  BN(conv_new(u) - (mean - offset))
    weights[first_bn_mean] = weights[first_bn_mean] - offset
    backbone.load_state_dict(weights, strict=False)  # all but the BatchNorm step counters
    return PretrainedLoad(str(path), len(target), len(source))


@torch.no_grad()
def recalibrate_batchnorm(model: nn.Module, images: torch.Tensor) -> int:
    """Re-express each BatchNorm of ``model`` for the statistics of ``images`` without changing what the
    network computes on them; return how many BatchNorms changed.

    Why: a pretrained BatchNorm holds ImageNet statistics (and the Coral conversions hold none: identity with
    the folded bias). In training mode BatchNorm normalises with the batch's own statistics, which would
    rescale every pretrained feature at the first step. Here each BatchNorm ``g (c - m) / s + b`` (running
    mean m, s = sqrt(running var + eps)) measures the mean mu and deviation sigma of its input c on these
    images (in eval mode, i.e. with the pretrained function) and becomes ``g' (c - mu) / sigma + b'`` with
    ``g' = g sigma / s`` and ``b' = b + g (mu - m) / s``: the same output, now in both modes, on these images.
    """
    inputs: dict[nn.BatchNorm2d, torch.Tensor] = {}
    hooks = [
        module.register_forward_hook(lambda m, args, out: inputs.__setitem__(m, args[0]))
        for module in model.modules()
        if isinstance(module, nn.BatchNorm2d)
    ]
    was_training = model.training
    model.eval()
    try:
        model(images)
    finally:
        for hook in hooks:
            hook.remove()
        model.train(was_training)
    for bn, c in inputs.items():
        mu = c.mean((0, 2, 3))
        var = c.var((0, 2, 3), unbiased=False)
        s = torch.sqrt(bn.running_var + bn.eps)
        sigma = torch.sqrt(var + bn.eps)
        if bn.affine:  # the builder makes every BatchNorm affine
            bn.bias.add_(bn.weight * (mu - bn.running_mean) / s)
            bn.weight.mul_(sigma / s)
        bn.running_mean.copy_(mu)
        bn.running_var.copy_(var)
    return len(inputs)

"""The eye-state networks (PyTorch, training only; what ships is their ONNX export).

Both read a (N, 1, 24, 24) standardised grey eye crop and return the logit of "closed":

* ``EyeMobileNet`` (the default): the first layers of MobileNetV1 at width 0.25, so it can start from that
  network's ImageNet weights (``load_imagenet_body``). With 3,134 real training crops, features learnt on
  ImageNet are what tells a lid from a shadow or a lash: from ImageNet (lr 0.001, CEW and rendered eyes) it scored
  97.1-97.5% on the validation faces over three seeds, the same network from scratch 95.5-95.7% (docs/eye-state.md).
* ``EyeNet``: three plain conv blocks, the earlier default (96.3-96.6% over two seeds).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from landmark.errors import LandmarkError

# MobileNetV1 0.25's stem width and its first seven depthwise-separable pairs (out channels, stride): the
# layers of the ImageNet body that a 24 px crop can use (they end at 3 x 3 px).
MOBILENET_STEM = 8
MOBILENET_PAIRS = ((16, 1), (32, 2), (32, 1), (64, 2), (64, 1), (128, 2), (128, 1))
HIDDEN = 64  # units of the hidden layer of both heads


def _head(features: int) -> nn.Sequential:
    """Flattened map -> hidden layer -> logit. Not pooled: where the lids are in the crop matters."""
    return nn.Sequential(
        nn.Flatten(), nn.Dropout(0.2), nn.Linear(features, HIDDEN), nn.ReLU(inplace=True), nn.Linear(HIDDEN, 1)
    )


def _conv_bn_relu(cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1) -> list[nn.Module]:
    conv = nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups, bias=False)
    return [conv, nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


class EyeNet(nn.Module):
    """Three 3x3 convolutions (``widths``: 16, 32 and 64 channels by default), each followed by 2x2 max
    pooling (24 -> 12 -> 6 -> 3 px), and a 64-unit hidden layer on the flattened 3x3 map: with the default
    widths 60 k parameters, 1.4 M multiply-adds an eye."""

    def __init__(self, widths: tuple[int, int, int] = (16, 32, 64)) -> None:
        super().__init__()
        c1, c2, c3 = widths
        self.features = nn.Sequential(
            nn.Sequential(*_conv_bn_relu(1, c1, 3), nn.MaxPool2d(2)),
            nn.Sequential(*_conv_bn_relu(c1, c2, 3), nn.MaxPool2d(2)),
            nn.Sequential(*_conv_bn_relu(c2, c3, 3), nn.MaxPool2d(2)),
        )
        self.head = _head(c3 * 3 * 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 1, 24, 24) normalised crops -> (N,) logits of 'closed'."""
        return self.head(self.features(x)).squeeze(1)


class EyeMobileNet(nn.Module):
    """MobileNetV1 0.25's stem and first seven depthwise-separable pairs, then the hidden layer and logit.

    The stem runs at stride 1, not ImageNet's 2: a 24 px crop then meets the pretrained filters at the scale
    of a 48 px one, and the three stride-2 pairs bring it to 3 x 3 px x 128 channels. 111 k parameters (74 k of
    them in the hidden layer), 1.0 M multiply-adds an eye. ``features[0]`` is the stem, ``features[i]`` (i >= 1)
    a pair: depthwise conv, BatchNorm, ReLU, pointwise conv, BatchNorm, ReLU -- the tensor order of the ImageNet
    file.
    """

    def __init__(self) -> None:
        super().__init__()
        layers = [nn.Sequential(*_conv_bn_relu(1, MOBILENET_STEM, 3))]
        channels = MOBILENET_STEM
        for out_channels, stride in MOBILENET_PAIRS:
            depthwise = _conv_bn_relu(channels, channels, 3, stride, groups=channels)
            layers.append(nn.Sequential(*depthwise, *_conv_bn_relu(channels, out_channels, 1)))
            channels = out_channels
        self.features = nn.Sequential(*layers)
        self.head = _head(channels * 3 * 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 1, 24, 24) normalised crops -> (N,) logits of 'closed'."""
        return self.head(self.features(x)).squeeze(1)


def build_eye_net(arch: str, widths: tuple[int, int, int] = (16, 32, 64)) -> nn.Module:
    """``"mobilenet"`` (``EyeMobileNet``) or ``"small"`` (``EyeNet`` with ``widths``)."""
    if arch == "mobilenet":
        return EyeMobileNet()
    if arch == "small":
        return EyeNet(widths)
    raise LandmarkError(f"eye network: expected 'mobilenet' or 'small', got {arch!r}")


def load_imagenet_body(net: EyeMobileNet, path: str | Path) -> int:
    """Start ``net.features`` from an ImageNet MobileNetV1 0.25 file (``../shared/pretrained/
    mobilenet_v1_0.25_imagenet_relu.pth.tar``); returns the number of tensors loaded.

    Tensors are taken by position (the file's stem, then its pairs, in order) with a shape check each; the
    first that does not fit is named in a one-line ``LandmarkError`` and nothing is changed. The first conv's
    three colour filters are summed, which is what the RGB network computes on a grey image.
    """
    from landmark.models.pretrained import match_by_position, read_state_dict

    def grey_stem(index: int, tensor: torch.Tensor) -> torch.Tensor:
        rgb_stem = index == 0 and tensor.dim() == 4 and tensor.shape[1] == 3
        return tensor.sum(1, keepdim=True) if rgb_stem else tensor  # RGB filters -> one grey filter

    source = read_state_dict(path, "--pretrained")
    target = [
        (k, v)
        for k, v in net.state_dict().items()
        if k.startswith("features.") and not k.endswith("num_batches_tracked")
    ]
    weights = match_by_position(source, target, f"{path}: --pretrained", "the eye network", grey_stem)
    net.load_state_dict(weights, strict=False)  # the features but their BatchNorm step counters
    return len(weights)

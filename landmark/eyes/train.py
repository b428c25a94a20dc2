"""Training the eye-state network (PyTorch; ``landmark train-eyes``), and its export to a tiny ONNX file.

Data: the real crops of a CEW-layout folder, training part of the by-face split only (``landmark.eyes.data``),
plus eyes of synthetic faces (``landmark.data.synthetic.render_face_image``), cropped from their true
landmarks exactly as the runtime crops predicted ones; the renderer knows each eye's closure, so closure <=
``OPEN_MAX`` is open, >= ``CLOSED_MIN`` closed, and eyes in between are left out. Every epoch draws a new
augmentation of every crop (scale, rotation, shift, mirror, gamma, blur, low resolution, noise), so the
network does not depend on the exact framing, exposure or sharpness of one source. ``EyeTrainConfig`` also
has a stronger photometric augmentation (contrast, brightness, JPEG: the open CEW-layout crops come from LFW
photos, the closed ones from CEW's), label smoothing and a moving average of the weights; they are off by
default because two seeds did not show them better than the shipped recipe (docs/eye-state.md). Deterministic: one seed
fixes the rendered faces, the initial weights, the batch order and every augmentation.
"""

from __future__ import annotations

import copy
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from landmark.data.schemes import scheme_for
from landmark.data.synthetic import render_face_image
from landmark.errors import LandmarkError
from landmark.eyes.crop import EYE_SIZE, WIDTH_SCALE, eye_crop_matrix, normalise_crops, warp_eye
from landmark.eyes.data import NARROW_OPEN_EARS, EyeSet, face_eyes, load_eye_folder
from landmark.eyes.metrics import eye_state_scores
from landmark.eyes.model import INPUT_NAME, KIND, OUTPUT_NAME
from landmark.eyes.nets import EyeMobileNet, build_eye_net, load_imagenet_body

logger = logging.getLogger(__name__)

OPEN_MAX = 0.35  # rendered eyes with closure <= this are open ...
CLOSED_MIN = 0.7  # ... >= this closed; in between is left out (a half-shut eye is neither)


@dataclass
class EyeTrainConfig:
    data: Path | None  # CEW-layout folder (open/, closed/); None trains on rendered eyes only
    rendered_faces: int = 1500  # synthetic faces rendered (two eyes each)
    epochs: int = 30
    batch_size: int = 128
    lr: float = 0.001  # the ImageNet-started network's (the small one was trained at 0.003)
    weight_decay: float = 1e-4
    seed: int = 0
    threshold: float = 0.5
    threads: int = 1  # the result depends on it (summation order): the shipped model used 1
    rendered_share: float = 0.3  # share of the loss that the rendered eyes carry (the real crops the rest)
    # a 300-W folder: the eyes of the TRAINING faces of its split (the landmark model's split: fraction, seed),
    # by default only the narrow open ones (annotated EAR 0.12-0.18: downcast, smiling, squinting; no closed
    # ones), which keep such open eyes open (docs/eye-state.md); (0.18, inf) with closed_ear 0.06 takes all
    faces: Path | None = None
    faces_share: float = 0.05  # share of the loss they carry, taken from the real crops' share
    faces_open_ears: tuple[float, float] = NARROW_OPEN_EARS
    faces_closed_ear: float | None = None
    faces_val_fraction: float = 0.1
    faces_split_seed: int = 0
    arch: str = "mobilenet"  # landmark.eyes.nets: "mobilenet" (EyeMobileNet) or "small" (EyeNet)
    pretrained: Path | None = None  # "mobilenet": the ImageNet MobileNetV1 0.25 file to start from
    widths: tuple[int, int, int] = (16, 32, 64)  # "small": channels of the three convolutions
    # Tried, not shipped (docs/eye-state.md): label_smoothing 0.1, ema_decay 0.995, photometric "strong".
    label_smoothing: float = 0.0  # targets 0/1 -> s/2, 1 - s/2
    ema_decay: float = 0.0  # > 0: the exported weights are an exponential moving average over the steps
    photometric: str = "basic"  # "strong": also contrast, brightness, JPEG, wider gamma, more blur and noise


class _WithSigmoid(nn.Module):
    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.net(x))


# --- data --------------------------------------------------------------------------------------------------


def render_eyes(n_faces: int, seed: int, progress: bool = True) -> EyeSet:
    """Eyes of ``n_faces`` synthetic faces, cropped from their true landmarks; labels from the true closure.

    Crops are taken with the runtime's framing at a random 1-1.4x sharper resolution and then sized to 24 px,
    half the faces at the renderer's supersampled quality and half without supersampling (as the driver video).
    """
    rng = np.random.default_rng(seed)
    scheme = scheme_for("wflw98")
    crops, labels, groups = [], [], []
    for i in tqdm(range(n_faces), desc="rendering eyes", unit="face", disable=not progress, leave=False):
        size = int(rng.choice([160, 224, 288]))
        image, points, _, params = render_face_image(rng, size=size, supersample=1 + (i % 2))
        for eye, closure in zip((scheme.left_eye, scheme.right_eye), params["eye_closure"], strict=True):
            if OPEN_MAX < closure < CLOSED_MIN:
                continue
            width = float(np.linalg.norm(points[eye.corner_a] - points[eye.corner_b]))
            if width < 4.0:  # an eye seen edge-on: no useful crop
                continue
            crops.append(warp_eye(image, eye_crop_matrix(points, eye), EYE_SIZE))
            labels.append(int(closure >= CLOSED_MIN))
            groups.append(f"rendered/{seed}/{i}")
    return EyeSet(np.stack(crops), np.array(labels, dtype=np.int64), groups, [Path(g) for g in groups])


def annotated_face_eyes(cfg: EyeTrainConfig) -> EyeSet:
    """The eyes of the training faces of ``cfg.faces``'s split (``landmark.eyes.data.face_eyes``) in the
    config's EAR ranges; the validation faces stay out, so ``landmark eval-eyes --faces`` still scores faces
    the model never saw."""
    from landmark.data.readers import read_300w, split_records

    train_faces, _ = split_records(read_300w(cfg.faces), cfg.faces_val_fraction, cfg.faces_split_seed)
    return face_eyes(train_faces, scheme_for(68), open_ears=cfg.faces_open_ears, closed_ear=cfg.faces_closed_ear)


def augment(crops: np.ndarray, rng: np.random.Generator, photometric: str = "basic") -> np.ndarray:
    """One random variant of each (N, S, S) uint8 crop: framing (scale 0.85-1.18, rotation +-12 deg, shift +-2
    px, mirror), gamma 0.7-1.4, sometimes blur or a lower resolution, sensor noise.

    ``photometric="strong"`` widens what a camera changes and the eye does not, so the network cannot tell the
    two CEW sources (open eyes from LFW, closed eyes from CEW photos) apart by exposure or sharpness: gamma
    0.6-1.6, contrast 0.6-1.5 and brightness +-25 grey levels about the crop's mean, blur on 30% of the crops
    (sigma up to 1.2), a lower resolution on 15%, noise up to 8 grey levels, and JPEG compression (quality
    30-90) on 30%; the framing draws are the same."""
    if photometric not in ("basic", "strong"):
        raise ValueError(f"photometric: expected 'basic' or 'strong', got {photometric!r}")
    strong = photometric == "strong"
    n, size = len(crops), crops.shape[1]
    out = np.empty_like(crops)
    half = (size - 1) / 2
    scales = np.exp(rng.uniform(math.log(0.85), math.log(1.18), n))
    angles = rng.uniform(-12, 12, n)
    shifts = rng.uniform(-2.0, 2.0, (n, 2))
    flips = rng.random(n) < 0.5
    gammas = np.exp(rng.uniform(math.log(0.7), math.log(1.4), n))
    blurs = np.where(rng.random(n) < 0.2, rng.uniform(0.3, 1.0, n), 0.0)
    lowres = np.where(rng.random(n) < 0.1, rng.integers(12, 19, n), 0)
    noise = rng.uniform(0.0, 5.0, n)
    if strong:  # drawn after the basic draws, so the framing of a seed is the same in both modes
        gammas = np.exp(rng.uniform(math.log(0.6), math.log(1.6), n))
        contrasts = np.exp(rng.uniform(math.log(0.6), math.log(1.5), n))
        brightness = rng.uniform(-25.0, 25.0, n)
        blurs = np.where(rng.random(n) < 0.3, rng.uniform(0.3, 1.2, n), 0.0)
        lowres = np.where(rng.random(n) < 0.15, rng.integers(10, 19, n), 0)
        noise = rng.uniform(0.0, 8.0, n)
        jpeg = np.where(rng.random(n) < 0.3, rng.integers(30, 91, n), 0)
    for i in range(n):
        m = cv2.getRotationMatrix2D((half, half), float(angles[i]), float(scales[i]))
        m[:, 2] += shifts[i]
        img = cv2.warpAffine(crops[i], m, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)
        if flips[i]:
            img = img[:, ::-1]
        img = img.astype(np.float32)
        img = 255.0 * (img / 255.0) ** gammas[i]
        if strong:
            img = (img - img.mean()) * contrasts[i] + img.mean() + brightness[i]
        if blurs[i] > 0:
            img = cv2.GaussianBlur(img, (0, 0), float(blurs[i]))
        if lowres[i]:
            small = cv2.resize(img, (int(lowres[i]), int(lowres[i])), interpolation=cv2.INTER_AREA)
            img = cv2.resize(small, (size, size), interpolation=cv2.INTER_LINEAR)
        img += rng.standard_normal(img.shape, dtype=np.float32) * noise[i]
        img = np.clip(img + 0.5, 0, 255).astype(np.uint8)
        if strong and jpeg[i]:
            ok, code = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, int(jpeg[i])])
            img = cv2.imdecode(code, cv2.IMREAD_GRAYSCALE) if ok else img
        out[i] = img
    return out


# --- training ----------------------------------------------------------------------------------------------


def predict_probs(net: nn.Module, crops: np.ndarray, batch: int = 512) -> np.ndarray:
    """Closed probabilities of (N, S, S) uint8 crops with a torch network (eval mode)."""
    net.eval()
    out = []
    with torch.inference_mode():
        for start in range(0, len(crops), batch):
            x = torch.from_numpy(normalise_crops(crops[start : start + batch]))
            out.append(torch.sigmoid(net(x)).numpy())
    return np.concatenate(out) if out else np.zeros(0, dtype=np.float32)


def train_eye_model(
    cfg: EyeTrainConfig, progress: bool = True, log: Callable[[str], None] | None = None
) -> tuple[nn.Module, dict]:
    """Train on the training split of ``cfg.data`` plus rendered eyes; returns (network, report).

    The report holds the counts of each source and the scores on the validation split of ``cfg.data``
    (faces never trained on) after the last epoch; no epoch or threshold is chosen on it.
    """
    say = log or logger.info
    torch.manual_seed(cfg.seed)
    torch.set_num_threads(cfg.threads)
    torch.use_deterministic_algorithms(True)
    rng = np.random.default_rng(cfg.seed)
    net = build_eye_net(cfg.arch, cfg.widths)
    if cfg.pretrained is not None:
        if not isinstance(net, EyeMobileNet):
            raise LandmarkError(f"pretrained {cfg.pretrained}: only the 'mobilenet' eye network starts from ImageNet")
        say(f"eye network: {cfg.arch}, {load_imagenet_body(net, cfg.pretrained)} tensors from {cfg.pretrained}")
    elif cfg.arch == "mobilenet":
        say("eye network: mobilenet, from scratch (from ImageNet weights, --pretrained, it scores 1.3-1.7 points more)")
    else:
        say(f"eye network: {cfg.arch}, from scratch")

    parts = []
    val: EyeSet | None = None
    if cfg.data is not None:
        parts.append(load_eye_folder(cfg.data, "train"))
        val = load_eye_folder(cfg.data, "val")
        say(
            f"real eyes: {len(parts[0])} training crops ({int(parts[0].labels.sum())} closed), "
            f"{len(val)} validation crops from other faces"
        )
    if cfg.faces is not None:
        faces = annotated_face_eyes(cfg)
        say(
            f"eyes of annotated faces: {len(faces)} crops ({int(faces.labels.sum())} closed) from the training "
            f"faces of {cfg.faces}"
        )
        parts.append(faces)
    if cfg.rendered_faces:
        rendered = render_eyes(cfg.rendered_faces, cfg.seed + 1000, progress)
        say(f"rendered eyes: {len(rendered)} crops ({int(rendered.labels.sum())} closed)")
        parts.append(rendered)
    crops = np.concatenate([p.crops for p in parts])
    labels = np.concatenate([p.labels for p in parts]).astype(np.float32)
    # each source carries a fixed share of the loss, whatever its number of crops: the rendered eyes
    # rendered_share, the annotated faces' eyes faces_share, the real crops of cfg.data the rest
    shares = [cfg.faces_share] * (cfg.faces is not None) + [cfg.rendered_share] * bool(cfg.rendered_faces)
    if cfg.data is not None:
        shares.insert(0, 1.0 - sum(shares))
    if len(parts) == 1:
        shares = [1.0]
    weights = np.concatenate([np.full(len(p), share / len(p)) for p, share in zip(parts, shares, strict=True)])
    weights = (weights * len(weights) / weights.sum()).astype(np.float32)

    ema = copy.deepcopy(net).eval() if cfg.ema_decay > 0 else None
    lo, hi = cfg.label_smoothing / 2, 1 - cfg.label_smoothing / 2
    optimizer = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps = cfg.epochs * math.ceil(len(crops) / cfg.batch_size)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=cfg.lr, total_steps=steps, pct_start=0.1)
    loss_fn = nn.BCEWithLogitsLoss(reduction="none")
    history = []
    bar = tqdm(range(cfg.epochs), desc="training eye model", unit="epoch", disable=not progress, leave=False)
    for epoch in bar:
        net.train()
        order = rng.permutation(len(crops))
        x_all = normalise_crops(augment(crops[order], rng, cfg.photometric))
        total = 0.0
        for start in range(0, len(order), cfg.batch_size):
            idx = slice(start, start + cfg.batch_size)
            x = torch.from_numpy(x_all[idx])
            y = torch.from_numpy(labels[order[idx]] * (hi - lo) + lo)
            w = torch.from_numpy(weights[order[idx]])
            loss = (loss_fn(net(x), y) * w).mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            scheduler.step()
            if ema is not None:
                _ema_update(ema, net, cfg.ema_decay)
            total += float(loss.detach()) * len(y)
        entry = {"epoch": epoch + 1, "loss": total / len(order)}
        if val is not None:
            scores = eye_state_scores(predict_probs(ema or net, val.crops), val.labels, cfg.threshold)
            entry.update(val_accuracy=scores["accuracy"], val_auc=scores["auc"])
            bar.set_postfix(loss=f"{entry['loss']:.3f}", val_acc=f"{scores['accuracy']:.3f}")
        if not progress:
            say(
                f"epoch {epoch + 1}/{cfg.epochs}: "
                + ", ".join(f"{k} {v:.4f}" for k, v in entry.items() if k != "epoch")
            )
        history.append(entry)
    if ema is not None:
        net = ema
    threshold = cfg.threshold
    if cfg.data is not None:  # chosen on the real TRAINING crops (never on validation): equal recall of both classes
        threshold = equal_recall_threshold(predict_probs(net, parts[0].crops), parts[0].labels)
        say(f"threshold {threshold:.3f}: equal recall of open and closed on the real training crops")
    report = {"train_crops": len(crops), "threshold": threshold, "history": history}
    if val is not None:
        report["val"] = eye_state_scores(predict_probs(net, val.crops), val.labels, threshold)
    return net, report


def _ema_update(ema: nn.Module, net: nn.Module, decay: float) -> None:
    """ema <- decay * ema + (1 - decay) * net for the weights; the BatchNorm statistics are copied."""
    with torch.no_grad():
        for e, p in zip(ema.parameters(), net.parameters(), strict=True):
            e.mul_(decay).add_(p.detach(), alpha=1 - decay)
        for e, b in zip(ema.buffers(), net.buffers(), strict=True):
            e.copy_(b)


def equal_recall_threshold(probs: np.ndarray, labels: np.ndarray) -> float:
    """The threshold (a multiple of 0.01 in [0.05, 0.95]) where recall of open and of closed are closest."""
    thresholds = np.round(np.arange(0.05, 0.951, 0.01), 2)
    closed, opened = probs[labels == 1], probs[labels == 0]
    gaps = [abs((closed >= t).mean() - (opened < t).mean()) for t in thresholds]
    return float(thresholds[int(np.argmin(gaps))])


def export_eye_model(net: nn.Module, path: str | Path, threshold: float = 0.5, opset: int = 17) -> None:
    """Write the network (sigmoid included, BatchNorm folded) as ONNX with its crop and threshold metadata,
    after checking that ONNX Runtime agrees with PyTorch."""
    import io

    import onnx
    import onnxruntime as ort

    from landmark.files import write_atomic

    net.eval()
    wrapped = _WithSigmoid(net).eval()
    dummy = torch.zeros(2, 1, EYE_SIZE, EYE_SIZE)
    buffer = io.BytesIO()
    torch.onnx.export(
        wrapped,
        (dummy,),
        buffer,
        input_names=[INPUT_NAME],
        output_names=[OUTPUT_NAME],
        dynamic_axes={INPUT_NAME: {0: "N"}, OUTPUT_NAME: {0: "N"}},
        opset_version=opset,
        do_constant_folding=True,
        dynamo=False,
    )
    model = onnx.load_from_string(buffer.getvalue())
    meta = {"kind": KIND, "eye_size": str(EYE_SIZE), "width_scale": str(WIDTH_SCALE), "threshold": str(threshold)}
    for key, value in meta.items():
        model.metadata_props.add(key=key, value=value)
    data = model.SerializeToString()
    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).standard_normal((4, 1, EYE_SIZE, EYE_SIZE)).astype(np.float32)
    with torch.inference_mode():
        expected = wrapped(torch.from_numpy(x)).numpy()
    got = session.run([OUTPUT_NAME], {INPUT_NAME: x})[0]
    if not np.allclose(expected, got, atol=1e-5):
        raise RuntimeError(f"ONNX export of the eye model disagrees with PyTorch by {np.abs(expected - got).max()}")
    write_atomic(path, data)

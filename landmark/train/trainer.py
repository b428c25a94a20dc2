"""The training loop: a resolved config in, a run folder with checkpoints and metrics out.

Read ``train`` from top to bottom: set up (distributed, seeds, data, model, optimiser), optionally resume,
then for each epoch train, validate, log and checkpoint. Runs the same on one CPU, one GPU, or several
processes under ``torchrun`` (DistributedDataParallel: gloo on CPU, NCCL on GPU; rank 0 alone logs and
writes files).

Reproducibility: every random stream is derived from ``train.seed`` and the epoch number -- the shuffle
order, each DataLoader worker's augmentation stream, and the main-process augmentation stream -- so two
epochs in one go and one epoch + ``--resume`` + one epoch produce the same weights on CPU.
"""

from __future__ import annotations

import copy
import csv
import logging
import math
import os
import random
import time
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import yaml
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler, RandomSampler, SubsetRandomSampler

from landmark.checkpoint import load_checkpoint, save_checkpoint
from landmark.data.crop import face_box_from_points
from landmark.data.dataset import LandmarkDataset, build_records, prepare_workers, worker_init_fn
from landmark.data.readers import FaceRecord
from landmark.data.schemes import scheme_for
from landmark.detect import build_detector, close_detector
from landmark.detect.calibration import boxes_from_detector
from landmark.errors import ConfigError, LandmarkError, first_line
from landmark.models.backbone import silence_dead_channels
from landmark.models.pfld import PFLD, build_auxiliary, build_pfld
from landmark.models.pretrained import load_pretrained, recalibrate_batchnorm
from landmark.progress import progress_bar
from landmark.train.evaluate import predict_loader, score
from landmark.train.losses import PFLDLoss, build_loss

logger = logging.getLogger(__name__)


class TrainingNet(nn.Module):
    """The inference network plus, when the loss needs head pose, the auxiliary pose net (one DDP unit)."""

    def __init__(self, model: PFLD, aux: nn.Module | None) -> None:
        super().__init__()
        self.model = model
        self.aux = aux

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """Final landmarks, first-stage landmarks (models with refiners, else None), pose (or None)."""
        landmarks, coarse, features = self.model.forward_with_features(images)
        angles = self.aux(features) if self.aux is not None else None
        return landmarks, coarse, angles


def landmark_loss(
    criterion: nn.Module,
    landmarks: torch.Tensor,
    target: torch.Tensor,
    angles: torch.Tensor | None,
    batch: dict,
    device: torch.device | str,
) -> torch.Tensor:
    """The configured loss of one set of predicted landmarks (with PFLD's pose weighting when ``angles``)."""
    if angles is None:
        return criterion(landmarks.float(), target)
    loss, _ = criterion(
        landmarks.float(), target, angles.float(), batch["angles"].to(device), batch["attributes"].to(device)
    )
    return loss


def training_loss(
    criterion: nn.Module,
    outputs: tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None],
    target: torch.Tensor,
    batch: dict,
    device: torch.device | str,
) -> torch.Tensor:
    """The loss of ``TrainingNet``'s outputs. A refined model's first stage keeps its own target: its points
    place the refiner's patches."""
    landmarks, coarse, angles = outputs
    loss = landmark_loss(criterion, landmarks, target, angles, batch, device)
    if coarse is not None:
        loss = loss + landmark_loss(criterion, coarse, target, angles, batch, device)
    return loss


class EMA:
    """Exponential moving average of the weights, with the usual warm-up so early steps are not frozen in."""

    def __init__(self, model: nn.Module, decay: float) -> None:
        self.model = copy.deepcopy(model).eval().requires_grad_(False)
        self.decay = decay
        self.updates = 0

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.updates += 1
        decay = min(self.decay, (1 + self.updates) / (10 + self.updates))
        for ema_value, value in zip(self.model.state_dict().values(), model.state_dict().values(), strict=True):
            if ema_value.dtype.is_floating_point:
                ema_value.lerp_(value.detach(), 1.0 - decay)
            else:
                ema_value.copy_(value)


@dataclass
class Distributed:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def setup_distributed(device_name: str) -> tuple[Distributed, torch.device]:
    """Join the process group when launched by torchrun (RANK/WORLD_SIZE set), and pick the device."""
    world = Distributed(
        int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)), int(os.environ.get("LOCAL_RANK", 0))
    )
    use_cuda = device_name.startswith("cuda") or (device_name == "auto" and torch.cuda.is_available())
    if use_cuda and not torch.cuda.is_available():
        raise LandmarkError(f"train.device is {device_name!r} but CUDA is not available on this machine")
    if use_cuda:
        # under torchrun each process takes the GPU of its local rank
        device = (
            torch.device("cuda", world.local_rank)
            if world.enabled or device_name == "auto"
            else torch.device(device_name)
        )
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
    if world.enabled and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    return world, device


def set_cpu_threads(workers: int, world_size: int) -> int:
    """Give PyTorch the cores that the data workers and other ranks leave free; returns the thread count.

    Why: PyTorch's default pool uses every core, and its threads spin while they wait. With data workers
    decoding and augmenting on the same cores, the pool oversubscribes them and each step stalls: measured
    on this 2-core machine, a PFLD 0.25 epoch took 109 s with the default and 5.5 s with one thread. An
    explicit OMP_NUM_THREADS is respected.
    """
    if "OMP_NUM_THREADS" in os.environ:
        return torch.get_num_threads()
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    threads = max(1, cores // max(1, world_size) - workers)
    torch.set_num_threads(threads)
    return threads


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rng_state() -> dict[str, Any]:
    np_state = np.random.get_state()
    return {
        "python": random.getstate(),
        "torch": torch.get_rng_state(),
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]],
    }


def restore_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    torch.set_rng_state(state["torch"])
    name, keys, *rest = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), *rest))


def lr_factor(step: int, steps_per_epoch: int, schedule: dict, epochs: int, base_lr: float) -> float:
    """Multiplier of the base learning rate after ``step`` optimiser steps: linear warm-up, then cosine or step."""
    warmup = schedule["warmup_epochs"] * steps_per_epoch
    if step < warmup:
        return (step + 1) / warmup
    if schedule["name"] == "step":
        epoch = step // steps_per_epoch
        return schedule["gamma"] ** sum(epoch >= m for m in schedule["milestones"])
    total = max(1, epochs * steps_per_epoch - warmup)
    progress = min(1.0, (step - warmup) / total)
    floor = schedule["min_lr"] / base_lr
    return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))


def load_run_checkpoint(path: str | Path, num_points: int, what: str) -> dict[str, Any]:
    """A checkpoint, or a run folder's last.pt, refused when it predicts another number of points."""
    state = load_checkpoint(Path(path) / "last.pt" if Path(path).is_dir() else path)
    if state["model_config"]["num_points"] != num_points:
        raise LandmarkError(
            f"{path}: {what} predicts {state['model_config']['num_points']} points but the config asks for {num_points}"
        )
    return state


def load_initial_weights(
    model: PFLD, aux: nn.Module | None, path: str | Path, num_points: int, skip: list[str] | None = None
) -> None:
    """Start from a checkpoint's weights (its EMA weights when it kept them): fine-tuning, e.g. the default
    model on your own faces. The optimiser and schedule start afresh, unlike ``--resume``. A run folder
    means its last.pt. Tensors whose names start with an entry of ``skip`` (``model.init_skip``) keep their
    fresh initialisation -- a part whose shape changed, such as a refiner with another patch size -- and every
    other tensor must fit exactly."""
    state = load_run_checkpoint(path, num_points, "model.init")
    weights = state["ema"] if state.get("ema") is not None else state["model"]
    skip = tuple(skip or ())
    own = model.state_dict()
    for prefix in skip:
        if not any(name.startswith(prefix) for name in own):
            raise LandmarkError(f"model.init_skip: '{prefix}' names no tensor of the model (e.g. refiner.fc, local)")
    kept = {name: value for name, value in weights.items() if not name.startswith(skip)}
    missing = sorted(name for name in own if not name.startswith(skip) and name not in kept)
    unexpected = sorted(name for name in kept if name not in own)
    if missing or unexpected:
        problem = f"missing {missing[0]}" if missing else f"unexpected {unexpected[0]}"
        raise LandmarkError(f"{path}: model.init weights do not fit model.config ({problem})")
    try:
        model.load_state_dict(kept, strict=False)  # names checked above; a shape that differs still raises
        if aux is not None and state.get("aux") is not None:
            aux.load_state_dict(state["aux"])
    except RuntimeError as err:
        raise LandmarkError(f"{path}: model.init weights do not fit model.config ({first_line(err)})") from None
    if skip:
        fresh = [name for name in own if name.startswith(skip)]
        logger.info("model.init: %d tensors left fresh (%s)", len(fresh), ", ".join(skip))


def trainable_parts(net: TrainingNet) -> dict[str, nn.Module]:
    """What ``train.trainable`` can name: the model's top-level modules, and "aux" for the pose net."""
    return dict(net.model.named_children()) | ({"aux": net.aux} if net.aux is not None else {})


def freeze_modules(net: TrainingNet, trainable: list[str] | None) -> list[nn.Parameter]:
    """``train.trainable``: freeze every top-level module of the model (and the pose net, "aux") not listed,
    and return the parameters that still learn. A frozen module gets no gradients, and ``set_frozen_eval``
    keeps its BatchNorm statistics: the rest of the network stays exactly as model.init left it."""
    if trainable is None:
        return list(net.parameters())
    modules = trainable_parts(net)
    for name in trainable:
        if name not in modules:
            raise ConfigError(
                f"train.trainable: '{name}' is not a module of the model (its modules: {', '.join(modules)})"
            )
    for name, module in modules.items():
        module.requires_grad_(name in trainable)
    return [param for param in net.parameters() if param.requires_grad]


def set_frozen_eval(net: TrainingNet, trainable: list[str] | None) -> None:
    """After ``net.train()``: put the frozen modules back in eval mode, so their BatchNorms neither use batch
    statistics nor update their running ones."""
    if trainable is None:
        return
    for name, module in trainable_parts(net).items():
        if name not in trainable:
            module.eval()


# Training crops that re-express a pretrained body's BatchNorms for faces (``recalibrate_batchnorm``).
CALIBRATION_CROPS = 64


def start_from_pretrained(model: PFLD, train_set: LandmarkDataset, path: str, scaling: str) -> None:
    """``model.pretrained``: the backbone from an ImageNet body, its BatchNorms re-expressed for the
    statistics of (augmented) training crops; the head and second stages start fresh."""
    loaded = load_pretrained(model.backbone, path, scaling)
    count = min(CALIBRATION_CROPS, len(train_set))
    images = torch.stack([train_set[i]["image"] for i in range(count)])
    recalibrate_batchnorm(model.backbone, images)
    trained = [(name, part) for name, part in model.named_children() if any(True for _ in part.parameters())]
    fresh = [name for name, _ in trained if name != "backbone"]
    logger.info(
        "model.pretrained: the backbone's %d layers from the first %d of the %d body tensors in %s, input "
        "scaling %s folded into the first conv, BatchNorms re-expressed on %d training crops; fresh: %s",
        len(model.backbone.layers),
        loaded.loaded,
        loaded.available,
        path,
        scaling,
        count,
        ", ".join(fresh),
    )


def check_resume_config(state: dict[str, Any], cfg: dict, path: str | Path) -> None:
    """``--resume`` continues a run as it was: refuse a model or optimiser config other than the checkpoint's,
    whose weights or optimiser state would not fit (or whose new values the restored state would override)."""
    saved_model, model = state["model_config"], cfg["model_config"]
    differing = [
        f"model.{key}" for key in sorted(saved_model.keys() | model.keys()) if saved_model.get(key) != model.get(key)
    ]
    saved_optim = (state.get("train_config") or {}).get("optim", cfg["optim"])  # older checkpoints lack it
    differing += [
        f"optim.{key}"
        for key in sorted(saved_optim.keys() | cfg["optim"].keys())
        if saved_optim.get(key) != cfg["optim"].get(key)
    ]
    # the optimiser state holds exactly the parameters that learn
    saved_trainable = (state.get("train_config") or {}).get("train", {}).get("trainable")
    if saved_trainable != cfg["train"]["trainable"]:
        differing.append("train.trainable")
    if differing:
        raise LandmarkError(
            f"{path}: the run's checkpoint was made with a different model/optimizer config ({', '.join(differing)}); "
            "--resume continues a run as it was: drop those changes, or start a new run (model.init can start it "
            "from these weights)"
        )


def build_optimizer(params: list[nn.Parameter], optim: dict) -> torch.optim.Optimizer:
    if optim["name"] == "sgd":
        return torch.optim.SGD(
            params, lr=optim["lr"], momentum=optim["momentum"], weight_decay=optim["weight_decay"], nesterov=True
        )
    cls = torch.optim.AdamW if optim["name"] == "adamw" else torch.optim.Adam
    return cls(params, lr=optim["lr"], weight_decay=optim["weight_decay"])


def detected_records(records: list[FaceRecord], data: dict, split: str) -> list[FaceRecord]:
    """``box_source: detector``: crop every face around the box the deployed detector finds for it, so the
    model learns that detector's real box errors (YuNet unless ``data.detector`` names another, with the
    still-photo settings ``landmark eval --box detector`` runs); a face it misses keeps its landmark box.
    The validation faces get the same, so the validation NME is the deployed one. A detector that cannot be
    loaded stops the run rather than training on another detector's boxes."""
    detector = build_detector(data["detector"], data["detector_model"], photos=True)
    progress = partial(progress_bar, desc=f"detecting {split} faces", unit="face", disable=len(records) < 50)
    try:
        records, fallbacks = boxes_from_detector(records, detector, progress=progress)
    finally:
        close_detector(detector)
    logger.info(
        "%s: the %s detector missed %d of %d faces (landmark box used)",
        split,
        data["detector"],
        fallbacks,
        len(records),
    )
    return records


def extra_records(data: dict) -> list[FaceRecord]:
    """``data.extra_root``: every face of the extra set (no validation part), cropped around its landmark box
    (with the box jitter) when the main faces use detector boxes: the extra set is not run through the
    detector, whose boxes the main faces already teach."""
    if data["extra_root"] is None:
        return []
    records = build_records({"format": data["extra_format"], "root": data["extra_root"]}, "test")
    if data["box_source"] == "detector":
        records = [replace(r, box=face_box_from_points(r.points).astype(np.float32)) for r in records]
    return records


def build_datasets(cfg: dict) -> tuple[LandmarkDataset, LandmarkDataset, int]:
    """(training set, validation set, number of extra faces): the extra faces (``data.extra_root``) are the
    last ones of the training set, and ``make_train_loader`` draws them at ``data.extra_share``."""
    data, model_cfg = cfg["data"], cfg["model_config"]
    scheme = scheme_for(model_cfg["num_points"])
    records = {split: build_records(data, split) for split in ("train", "val")}
    if not records["val"]:  # only a one-face dataset splits this way
        raise ConfigError(
            f"{cfg['source']}: data.val_fraction: {data['val_fraction']} of {len(records['train'])} faces leaves no "
            "validation face; use 2 or more faces, or leave val_fraction out to validate on the training faces"
        )
    if data["box_source"] == "detector":
        records = {split: detected_records(recs, data, split) for split, recs in records.items()}
    extra = extra_records(data)
    if extra:
        logger.info(
            "extra faces: %d from %s, %.0f%% of each epoch", len(extra), data["extra_root"], 100 * data["extra_share"]
        )
    common = {
        "scheme": scheme,
        "input_size": model_cfg["input_size"],
        "crop_scale": data["crop_scale"],
        "box_source": "box" if data["box_source"] == "detector" else data["box_source"],
    }
    train_set = LandmarkDataset(
        records["train"] + extra,
        augment=cfg["augment"],
        box_jitter=data["box_jitter"],
        seed=cfg["train"]["seed"],
        landmark_box_share=data["landmark_box_share"],
        **common,
    )
    val_set = LandmarkDataset(records["val"], augment=None, **common)
    return train_set, val_set, len(extra)


def epoch_seed(seed: int, epoch: int) -> int:
    return seed * 100_003 + epoch


def make_train_loader(
    dataset: LandmarkDataset, cfg: dict, world: Distributed, epoch: int, n_extra: int = 0
) -> DataLoader:
    """A fresh loader per epoch whose shuffle and augmentation streams depend only on (seed, epoch).

    With ``n_extra`` extra faces at the end of ``dataset``, an epoch is every main face once plus a fresh
    random draw of extra faces making up ``data.extra_share`` of it (all of them, if there are fewer).
    """
    seed = epoch_seed(cfg["train"]["seed"], epoch)
    dataset.reseed(seed)  # the main-process stream (workers reseed from the loader's generator)
    generator = torch.Generator().manual_seed(seed)
    if world.enabled:
        sampler = DistributedSampler(dataset, world.world_size, world.rank, shuffle=True, seed=cfg["train"]["seed"])
        sampler.set_epoch(epoch)
    elif n_extra:
        n_main = len(dataset) - n_extra
        share = cfg["data"]["extra_share"]
        n_draw = min(round(n_main * share / (1 - share)), n_extra)
        drawn = n_main + torch.randperm(n_extra, generator=generator)[:n_draw]
        sampler = SubsetRandomSampler(list(range(n_main)) + drawn.tolist(), generator=generator)
    else:
        sampler = RandomSampler(dataset, generator=generator)
    # a batch of one face crashes BatchNorm, so the last incomplete batch is dropped (a different one each
    # epoch); a training set smaller than one batch trains as one batch rather than not at all
    batch_size = min(cfg["train"]["batch_size"], len(sampler))
    prepare_workers(cfg["data"]["workers"])
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=cfg["data"]["workers"],
        worker_init_fn=worker_init_fn,
        generator=generator,
        drop_last=True,
        pin_memory=torch.cuda.is_available(),
    )


def validate(model: nn.Module, dataset: LandmarkDataset, cfg: dict, device: torch.device) -> dict:
    """Scores of the model as it will be deployed: a copy with its dead channels silenced, as every
    checkpoint load does (see ``silence_dead_channels``)."""
    model = copy.deepcopy(model)
    silence_dead_channels(model)
    prepare_workers(cfg["data"]["workers"])
    loader = DataLoader(dataset, batch_size=128, num_workers=cfg["data"]["workers"], worker_init_fn=worker_init_fn)
    out = predict_loader(model, loader, dataset.scheme, device, cfg["train"]["flip_test"])
    return score(out["pred"], out["gt"], dataset.scheme)


class MetricsLog:
    """metrics.csv (one row per epoch) and TensorBoard scalars, written by rank 0 only."""

    FIELDS = ["epoch", "train_loss", "lr", "val_nme", "val_fr10", "val_auc10", "seconds", "data_wait"]

    def __init__(self, out_dir: Path) -> None:
        from torch.utils.tensorboard import SummaryWriter  # imported here: slow, and only rank 0 needs it

        self.csv_path = out_dir / "metrics.csv"
        if not self.csv_path.exists():
            with self.csv_path.open("w", newline="") as handle:
                csv.writer(handle).writerow(self.FIELDS)
        self.writer = SummaryWriter(str(out_dir / "tensorboard"))

    def write(self, row: dict) -> None:
        with self.csv_path.open("a", newline="") as handle:
            csv.writer(handle).writerow([row.get(f, "") for f in self.FIELDS])
        for key, value in row.items():
            if key != "epoch" and isinstance(value, float):
                self.writer.add_scalar(key, value, row["epoch"])
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


def train(
    cfg: dict,
    out_dir: str | Path,
    resume: str | Path | None = None,
    progress: bool = True,
    stop_after: int | None = None,
) -> dict:
    """Train as ``cfg`` says, writing ``out_dir``; return the validation history and best NME.

    ``stop_after`` ends the run after that epoch without changing the schedule, so a long schedule can be
    split into sessions with ``--resume``.
    """
    out_dir = Path(out_dir)
    world, device = setup_distributed(cfg["train"]["device"])
    if device.type == "cpu":
        threads = set_cpu_threads(cfg["data"]["workers"], world.world_size)
        logger.info("PyTorch uses %d CPU thread(s) next to %d data worker(s)", threads, cfg["data"]["workers"])
    seed_everything(cfg["train"]["seed"])
    use_amp = cfg["train"]["amp"] and device.type == "cuda"

    # ---- data, model, loss, optimiser ----
    train_set, val_set, n_extra = build_datasets(cfg)
    if n_extra and world.enabled:  # DistributedSampler would draw them like the main faces, at full weight
        raise LandmarkError(f"{cfg['source']}: data.extra_root: extra faces train in one process only (not torchrun)")
    scheme = train_set.scheme
    faces_per_process = math.ceil(len(train_set) / world.world_size)
    if faces_per_process < 2:  # BatchNorm needs two faces in every batch
        raise LandmarkError(
            f"{cfg['source']}: data.root: {len(train_set)} training face(s) in {cfg['data']['root']}; training "
            f"needs at least 2{' per process' if world.enabled else ''}"
        )
    if cfg["train"]["batch_size"] > faces_per_process and world.is_main:
        logger.info(
            "train.batch_size %d is more than the %d training faces%s: training with batches of %d",
            cfg["train"]["batch_size"],
            faces_per_process,
            " per process" if world.enabled else "",
            faces_per_process,
        )
    model = build_pfld(cfg["model_config"])
    criterion = build_loss(cfg["loss"])
    aux = build_auxiliary(cfg["model_config"], model) if isinstance(criterion, PFLDLoss) else None
    if cfg["model"]["init"] is not None and resume is None:
        load_initial_weights(
            model, aux, cfg["model"]["init"], cfg["model_config"]["num_points"], cfg["model"]["init_skip"]
        )
        logger.info("starting from the weights in %s", cfg["model"]["init"])
    if cfg["model"]["pretrained"] is not None and resume is None:
        start_from_pretrained(model, train_set, cfg["model"]["pretrained"], cfg["model"]["pretrained_input"])
    net = TrainingNet(model, aux).to(device)
    trainable = cfg["train"]["trainable"]
    optimizer = build_optimizer(freeze_modules(net, trainable), cfg["optim"])
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    ema = EMA(model, cfg["train"]["ema"]) if cfg["train"]["ema"] else None
    epochs = cfg["train"]["epochs"]
    steps_per_epoch = len(make_train_loader(train_set, cfg, Distributed(0, world.world_size), 0, n_extra))
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_factor(step, steps_per_epoch, cfg["schedule"], epochs, cfg["optim"]["lr"])
    )

    # ---- resume ----
    start_epoch, best_nme, history = 0, math.inf, []
    if resume is not None:
        state = load_run_checkpoint(resume, cfg["model_config"]["num_points"], "checkpoint")
        check_resume_config(state, cfg, resume)
        model.load_state_dict(state["model"])
        if aux is not None and state.get("aux") is not None:
            aux.load_state_dict(state["aux"])
        if ema is not None and state.get("ema") is not None:
            ema.model.load_state_dict(state["ema"])
            ema.updates = state.get("ema_updates", 0)
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        restore_rng_state(state["rng"])
        start_epoch, best_nme, history = state["epoch"], state["best_nme"], state["history"]
        logger.info("resumed from %s at epoch %d", resume, start_epoch)
    if ema is not None:
        ema.model.to(device)

    ddp_net = (
        DistributedDataParallel(net, device_ids=[device.index] if device.type == "cuda" else None)
        if world.enabled
        else net
    )
    eval_model = lambda: ema.model if ema is not None else model  # noqa: E731

    metrics = None
    if world.is_main:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
        metrics = MetricsLog(out_dir)
        logger.info(
            "training %s on %d faces, validating on %d; %d steps per epoch; device %s%s",
            scheme.name,
            len(train_set),
            len(val_set),
            steps_per_epoch,
            device,
            f" x{world.world_size} processes" if world.enabled else "",
        )
        if cfg["data"]["val_fraction"] is None and cfg["data"]["format"] != "wflw":
            logger.warning(
                "no data.val_fraction: validating on the training faces themselves, so best.pt is picked on "
                "training data; set data.val_fraction (e.g. 0.1) to hold out validation faces"
            )
        if not history:
            before = validate(eval_model(), val_set, cfg, device)
            history.append({"epoch": 0, **before})
            logger.info("epoch 0 (before training): val NME %.4f", before["nme_mean"])

    def checkpoint(epoch: int) -> dict:
        return {
            "model": model.state_dict(),
            "ema": ema.model.state_dict() if ema else None,
            "ema_updates": ema.updates if ema else 0,
            "aux": aux.state_dict() if aux else None,
            "model_config": cfg["model_config"],
            "scheme": scheme.name,
            "train_config": cfg,
            "epoch": epoch,
            "best_nme": best_nme,
            "history": history,
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "scaler": scaler.state_dict(),
            "rng": rng_state(),
        }

    epoch = start_epoch
    try:
        for epoch in range(start_epoch, min(epochs, stop_after or epochs)):
            # ---- train one epoch ----
            net.train()
            set_frozen_eval(net, trainable)
            loader = make_train_loader(train_set, cfg, world, epoch, n_extra)
            started, data_wait, losses = time.perf_counter(), 0.0, []
            bar = progress_bar(
                loader,
                desc=f"epoch {epoch + 1}/{epochs}",
                unit="batch",
                disable=not (progress and world.is_main),
                dynamic_ncols=True,
            )
            tick = time.perf_counter()
            for batch in bar:
                data_wait += time.perf_counter() - tick
                images = batch["image"].to(device, non_blocking=True)
                target = batch["landmarks"].to(device, non_blocking=True)
                with torch.autocast(device.type, dtype=torch.float16, enabled=use_amp):
                    outputs = ddp_net(images)
                loss = training_loss(criterion, outputs, target, batch, device)
                if not torch.isfinite(loss):
                    raise LandmarkError(
                        f"loss became {loss.item()} at epoch {epoch + 1}: lower optim.lr or set train.grad_clip"
                    )
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                if cfg["train"]["grad_clip"]:
                    scaler.unscale_(optimizer)
                    nn.utils.clip_grad_norm_(net.parameters(), cfg["train"]["grad_clip"])
                scaler.step(optimizer)
                scaler.update()
                scheduler.step()
                if ema is not None:
                    ema.update(model)
                losses.append(loss.item())
                bar.set_postfix(loss=f"{losses[-1]:.4f}", lr=f"{scheduler.get_last_lr()[0]:.2e}")
                tick = time.perf_counter()
            bar.close()
            seconds = time.perf_counter() - started

            # ---- validate, log, checkpoint (rank 0) ----
            if world.is_main:
                val = validate(eval_model(), val_set, cfg, device)
                history.append({"epoch": epoch + 1, **val})
                row = {
                    "epoch": epoch + 1,
                    "train_loss": float(np.mean(losses)) if losses else float("nan"),
                    "lr": float(scheduler.get_last_lr()[0]),
                    "val_nme": val["nme_mean"],
                    "val_fr10": val["fr10"],
                    "val_auc10": val["auc10"],
                    "seconds": seconds,
                    "data_wait": data_wait / max(seconds, 1e-9),
                }
                metrics.write(row)
                logger.info(
                    "epoch %d/%d  loss %.4f  val NME %.4f  FR@10 %.3f  AUC@10 %.3f  (%.1fs, %.0f%% waiting for data)",
                    epoch + 1,
                    epochs,
                    row["train_loss"],
                    val["nme_mean"],
                    val["fr10"],
                    val["auc10"],
                    seconds,
                    100 * row["data_wait"],
                )
                if val["nme_mean"] < best_nme:
                    best_nme = val["nme_mean"]
                    save_checkpoint(checkpoint(epoch + 1), out_dir / "best.pt")
                save_checkpoint(checkpoint(epoch + 1), out_dir / "last.pt")
            if world.enabled:
                dist.barrier()
    except KeyboardInterrupt:
        if world.is_main:
            # the interrupted epoch is incomplete: resuming restarts it from these weights
            save_checkpoint(checkpoint(epoch), out_dir / "last.pt")
            logger.warning("interrupted: saved %s (resume with --resume %s)", out_dir / "last.pt", out_dir)
        raise
    finally:
        if metrics is not None:
            metrics.close()
        if world.enabled and dist.is_initialized():
            dist.destroy_process_group()
    return {"history": history, "best_nme": best_nme, "out_dir": str(out_dir)}

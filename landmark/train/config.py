"""Training configs: the YAML schema, ``--set key=value`` overrides, and validation before anything runs.

A training YAML has the sections below; every key is optional except ``data.root`` and falls back to the
default shown. Paths to other configs (``model.config``, ``augment``) are relative to the YAML file (the
defaults are the built-in ``configs/models/pfld.yaml`` and ``configs/augment/default.yaml``, wherever the
YAML is); data paths are relative to the working directory and may use ``$LANDMARK_SHARED_DATA``.
"""

from __future__ import annotations

import copy
import logging
from pathlib import Path
from typing import Any

import yaml

from landmark.config import CONFIG_DIR, check_keys, expand_path, load_yaml
from landmark.data.augment import load_augment_config, validate_augment_config
from landmark.detect import DETECTORS
from landmark.errors import ConfigError
from landmark.models.pfld import load_model_config
from landmark.models.pretrained import INPUT_SCALINGS
from landmark.train.losses import build_loss

logger = logging.getLogger(__name__)

NUMBER = (int, float)
OPTIONAL_NUMBER = (int, float, type(None))

# section -> key -> (allowed types, default)
SCHEMA: dict[str, dict[str, tuple[tuple[type, ...], Any]]] = {
    "model": {
        "config": ((str,), str(CONFIG_DIR / "models" / "pfld.yaml")),  # absolute: any YAML finds it
        "width": (OPTIONAL_NUMBER, None),
        "num_points": ((int, type(None)), None),
        "input_size": ((int, type(None)), None),
        "init": ((str, type(None)), None),
        # parameter-name prefixes that model.init leaves fresh, e.g. [refiner.fc] for a refiner of another size
        "init_skip": ((list,), []),
        "pretrained": ((str, type(None)), None),
        "pretrained_input": ((str,), "imagenet"),
    },
    "data": {
        "format": ((str,), "wflw"),
        "root": ((str,), None),
        "val_fraction": (OPTIONAL_NUMBER, None),
        "split_seed": ((int,), 0),
        "skip_invalid": ((bool,), False),
        "crop_scale": (NUMBER, 1.25),
        "box_source": ((str,), "points"),
        "detector": ((str,), "yunet"),  # see landmark.detect.DETECTORS
        "detector_model": ((str, type(None)), None),
        "landmark_box_share": (NUMBER, 0.0),
        "box_jitter": (NUMBER, 0.0),
        # extra training faces (all of them; no validation part), drawn so that extra_share of each epoch's
        # crops are theirs: more faces, weighted below the main set (noisy labels such as ytf68's)
        "extra_format": ((str,), "csv"),
        "extra_root": ((str, type(None)), None),
        "extra_share": (NUMBER, 0.25),
        "workers": ((int,), 2),
    },
    "optim": {
        "name": ((str,), "adamw"),
        "lr": (NUMBER, 1e-3),
        "weight_decay": (NUMBER, 1e-4),
        "momentum": (NUMBER, 0.9),
    },
    "schedule": {
        "name": ((str,), "cosine"),
        "warmup_epochs": (NUMBER, 1),
        "min_lr": (NUMBER, 1e-5),
        "milestones": ((list,), [30, 45]),
        "gamma": (NUMBER, 0.1),
    },
    "train": {
        "epochs": ((int,), 10),
        "batch_size": ((int,), 64),
        "grad_clip": (OPTIONAL_NUMBER, 5.0),
        "amp": ((bool,), True),
        "ema": (OPTIONAL_NUMBER, None),
        "seed": ((int,), 0),
        "device": ((str,), "auto"),
        "flip_test": ((bool,), False),
        # the model's top-level modules that learn, e.g. [refiner] ("aux": the pose net); null: all of them.
        # The others are frozen: no gradients, BatchNorm statistics kept.
        "trainable": ((list, type(None)), None),
    },
}
FREE_SECTIONS = {"augment", "loss"}  # validated by their own modules
CHOICES = {
    ("model", "pretrained_input"): INPUT_SCALINGS,
    ("data", "format"): ("wflw", "300w", "csv", "json"),
    ("data", "extra_format"): ("wflw", "300w", "csv", "json"),
    ("data", "box_source"): ("points", "box", "detector"),
    ("data", "detector"): DETECTORS,
    ("optim", "name"): ("adam", "adamw", "sgd"),
    ("schedule", "name"): ("cosine", "step"),
}
DEFAULT_LOSS = {"name": "wing", "pfld": {"enabled": True}}


def _type_names(types: tuple[type, ...]) -> str:
    return " or ".join(
        "null" if t is type(None) else {"int": "integer", "float": "number"}.get(t.__name__, t.__name__) for t in types
    )


def _yaml11_float(text: str) -> float | str:
    """YAML 1.1 reads ``1e-4`` (no dot) as a string; accept it as the number the user meant."""
    try:
        return float(text)
    except ValueError:
        return text


def apply_overrides(cfg: dict, overrides: list[str], source: str) -> dict:
    """Apply ``--set section.key=value`` overrides; values are parsed as YAML (so 3, 0.5, true work)."""
    cfg = copy.deepcopy(cfg)
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"--set {item}: expected section.key=value, e.g. data.root=/data/wflw")
        dotted, raw = item.split("=", 1)
        keys = dotted.split(".")
        node = cfg
        for key in keys[:-1]:
            node = node.setdefault(key, {})
            if not isinstance(node, dict):
                raise ConfigError(f"--set {dotted}: '{key}' in {source} is not a section")
        try:
            node[keys[-1]] = yaml.safe_load(raw) if raw else ""
        except yaml.YAMLError:
            node[keys[-1]] = raw
    return cfg


def resolve_train_config(path: str | Path, overrides: list[str] | None = None) -> dict[str, Any]:
    """Read, override and check a training YAML; return it with every default filled in.

    The result also holds the resolved model config (``model_config``) and augmentation (``augment``), so
    the copy saved in a run folder or checkpoint describes the run completely.
    """
    path = Path(path)
    raw = apply_overrides(load_yaml(path), overrides or [], str(path))
    check_keys(raw, set(SCHEMA) | FREE_SECTIONS, str(path))
    cfg: dict[str, Any] = {}
    for section, keys in SCHEMA.items():
        given = raw.get(section, {})
        if not isinstance(given, dict):
            raise ConfigError(f"{path}: {section}: expected a mapping of keys, got {given!r}")
        check_keys(given, set(keys), f"{path}: {section}")
        cfg[section] = {}
        for key, (types, default) in keys.items():
            value = given.get(key, default)
            where = f"{path}: {section}.{key}"
            if float in types and isinstance(value, str):
                value = _yaml11_float(value)
            if value is None and type(None) not in types:
                raise ConfigError(f"{where}: missing; expected {_type_names(types)}")
            if isinstance(value, bool) and bool not in types or not isinstance(value, types):
                raise ConfigError(f"{where}: expected {_type_names(types)}, got {value!r}")
            choices = CHOICES.get((section, key))
            if choices and value not in choices:
                raise ConfigError(f"{where}: expected one of {', '.join(choices)}, got {value!r}")
            cfg[section][key] = value
    _check_ranges(cfg, str(path))

    model_path = expand_path(cfg["model"]["config"], path.parent)
    model = cfg["model"]
    cfg["model_config"] = load_model_config(model_path, model["num_points"], model["width"], model["input_size"])
    cfg["model"]["config"] = str(model_path)

    augment = raw.get("augment", "default")
    if isinstance(augment, str):
        candidate = expand_path(augment, path.parent)
        cfg["augment"] = load_augment_config(candidate if candidate.exists() else augment)
    else:
        cfg["augment"] = validate_augment_config(augment, f"{path}: augment")

    cfg["loss"] = raw.get("loss", DEFAULT_LOSS)
    try:
        build_loss(cfg["loss"])
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}") from None
    cfg["data"]["root"] = str(expand_path(cfg["data"]["root"]))
    if cfg["data"]["extra_root"] is not None:
        cfg["data"]["extra_root"] = str(expand_path(cfg["data"]["extra_root"]))
    for key in ("init", "pretrained"):
        if cfg["model"][key] is not None:
            cfg["model"][key] = str(expand_path(cfg["model"][key]))
    if cfg["model"]["init"] is not None and cfg["model"]["pretrained"] is not None:
        # model.init replaces every weight, so an ImageNet body from the recipe would be overwritten anyway:
        # fine-tuning with a recipe that names one (configs/train/300w_68.yaml) needs no extra override.
        logger.info("model.init is set: model.pretrained (%s) is not used", cfg["model"]["pretrained"])
        cfg["model"]["pretrained"] = None
    cfg["source"] = str(path)
    return cfg


def _check_ranges(cfg: dict, where: str) -> None:
    positive = [("optim", "lr"), ("train", "epochs"), ("train", "batch_size"), ("data", "crop_scale")]
    for section, key in positive:
        if cfg[section][key] <= 0:
            raise ConfigError(f"{where}: {section}.{key}: expected a positive number, got {cfg[section][key]}")
    if cfg["data"]["workers"] < 0:
        raise ConfigError(f"{where}: data.workers: expected 0 or more, got {cfg['data']['workers']}")
    share = cfg["data"]["landmark_box_share"]
    if not 0.0 <= share <= 1.0:
        raise ConfigError(f"{where}: data.landmark_box_share: expected a fraction in [0, 1], got {share}")
    if share > 0 and cfg["data"]["box_source"] == "points":
        raise ConfigError(
            f"{where}: data.landmark_box_share: needs data.box_source box or detector (crops "
            "are already around the landmark box)"
        )
    extra_share = cfg["data"]["extra_share"]
    if cfg["data"]["extra_root"] is not None and not 0.0 < extra_share < 1.0:
        raise ConfigError(f"{where}: data.extra_share: expected a fraction in (0, 1), got {extra_share}")
    for section, key in [("train", "seed"), ("data", "split_seed")]:
        if cfg[section][key] < 0:  # numpy's random generators refuse negative seeds
            raise ConfigError(f"{where}: {section}.{key}: expected an integer >= 0, got {cfg[section][key]}")
    for section, key in [("model", "init_skip"), ("train", "trainable")]:
        names = cfg[section][key]
        if names is not None and not all(isinstance(name, str) and name for name in names):
            raise ConfigError(f"{where}: {section}.{key}: expected a list of names, got {names!r}")
    if cfg["train"]["trainable"] == []:
        raise ConfigError(f"{where}: train.trainable: expected at least one module name, or null for all of them")
    _check_optimisation(cfg, where)
    ema = cfg["train"]["ema"]
    if ema is not None and not 0.0 < ema < 1.0:
        raise ConfigError(f"{where}: train.ema: expected a decay in (0, 1) such as 0.999, or null, got {ema}")
    if cfg["train"]["device"] not in ("auto", "cpu") and not cfg["train"]["device"].startswith("cuda"):
        raise ConfigError(f"{where}: train.device: expected auto, cpu or cuda[:N], got {cfg['train']['device']!r}")


def _check_optimisation(cfg: dict, where: str) -> None:
    """Optimiser, schedule and clipping values that would flip or zero the updates, or crash torch later.

    Written as ``not low <= value`` so that NaN fails too.
    """
    optim, schedule = cfg["optim"], cfg["schedule"]
    if not optim["weight_decay"] >= 0:
        raise ConfigError(f"{where}: optim.weight_decay: expected a number >= 0, got {optim['weight_decay']}")
    if not 0 < optim["momentum"] < 1:  # SGD runs with Nesterov momentum, which needs momentum > 0
        raise ConfigError(f"{where}: optim.momentum: expected a number in (0, 1) such as 0.9, got {optim['momentum']}")
    if not schedule["min_lr"] >= 0:
        raise ConfigError(f"{where}: schedule.min_lr: expected a number >= 0, got {schedule['min_lr']}")
    if schedule["min_lr"] > optim["lr"]:  # the cosine would then climb, not decay
        raise ConfigError(
            f"{where}: schedule.min_lr: expected at most optim.lr ({optim['lr']}), got {schedule['min_lr']}"
        )
    epochs = cfg["train"]["epochs"]
    if not 0 <= schedule["warmup_epochs"] <= epochs:
        raise ConfigError(
            f"{where}: schedule.warmup_epochs: expected a number in [0, train.epochs = {epochs}], "
            f"got {schedule['warmup_epochs']}"
        )
    if not 0 < schedule["gamma"] <= 1:
        raise ConfigError(
            f"{where}: schedule.gamma: expected a decay factor in (0, 1] such as 0.1, got {schedule['gamma']}"
        )
    milestones = schedule["milestones"]
    if not all(isinstance(m, int) and not isinstance(m, bool) and m >= 1 for m in milestones):
        raise ConfigError(
            f"{where}: schedule.milestones: expected a list of epochs (integers >= 1), got {milestones!r}"
        )
    clip = cfg["train"]["grad_clip"]
    if clip is not None and not clip >= 0:  # 0 and null both mean no clipping
        raise ConfigError(
            f"{where}: train.grad_clip: expected a maximum gradient norm > 0, or 0 or null for none, got {clip}"
        )

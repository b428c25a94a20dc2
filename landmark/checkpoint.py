"""Checkpoints: written atomically, read with ``weights_only=True`` so a file from elsewhere cannot run code.

A checkpoint is a dict of plain types and tensors:
    model          state dict of the inference network (``PFLD``)
    ema            state dict of its exponential moving average, or None
    aux            state dict of the training-only auxiliary pose net, or None
    model_config   the resolved model config (rebuilds the network without any YAML file)
    scheme         landmark scheme name ("wflw98", "300w68")
    train_config   the resolved training config (None for exported/shipped weights)
    epoch, best_nme, history, optimizer, scheduler, scaler, rng   -- for ``--resume``
"""

from __future__ import annotations

import io
import logging
import pickle
import re
from pathlib import Path
from typing import Any

import torch

from landmark.data.schemes import Scheme, scheme_for
from landmark.errors import LandmarkError, first_line
from landmark.files import check_path, make_folder, write_atomic
from landmark.models.backbone import silence_dead_channels
from landmark.models.pfld import PFLD, build_pfld, check_model_config

logger = logging.getLogger(__name__)

REQUIRED_KEYS = ("model", "model_config", "scheme")


def save_checkpoint(state: dict[str, Any], path: str | Path) -> None:
    """Serialise in memory, then write atomically (``write_atomic``): a crash never leaves half a checkpoint,
    and a path that cannot be written is one ``LandmarkError`` line naming it."""
    path = Path(path)
    check_path(path)  # an error names the checkpoint, not just the folder it would go in
    make_folder(path.parent)  # not check_writable: its probe file would be wasted work on every epoch's save
    buffer = io.BytesIO()
    torch.save(state, buffer)
    write_atomic(path, buffer.getvalue())


def _unpickling_problem(error: pickle.UnpicklingError) -> tuple[bool, str]:
    """(whether the file references code, the informative part) of torch's weights-only error, which wraps
    its reason in paragraphs of advice that differ between kinds of failure."""
    text = str(error)
    reference = re.search(r"GLOBAL ([\w.]+)", text)  # a class or function the unpickler would have called
    if reference:
        return True, f"a reference to {reference.group(1)}"
    detail = text.split("WeightsUnpickler error:", 1)[-1]
    return False, next((line.strip()[:120] for line in detail.splitlines() if line.strip()), "unsupported content")


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint safely; any problem is one ``LandmarkError`` line naming the file."""
    path = Path(path)
    if not path.is_file():
        raise LandmarkError(f"{path}: checkpoint not found")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        references_code, reason = _unpickling_problem(err)
        if references_code:
            raise LandmarkError(f"{path}: refused to load: it holds more than weights ({reason})") from None
        raise LandmarkError(f"{path}: not a readable PyTorch checkpoint ({reason})") from None
    except Exception as err:  # torch raises many types for foreign or damaged files (IndexError, EOFError, ...)
        reason = first_line(err, 120)
        raise LandmarkError(f"{path}: not a readable PyTorch checkpoint ({reason})") from None
    if not isinstance(state, dict) or any(key not in state for key in REQUIRED_KEYS):
        raise LandmarkError(f"{path}: not a landmark checkpoint (expected keys {', '.join(REQUIRED_KEYS)})")
    return state


def model_from_checkpoint(state: dict[str, Any], source: str, prefer_ema: bool = True) -> tuple[PFLD, Scheme]:
    """The inference network (EMA weights when the run kept them) and its landmark scheme, in eval mode."""
    check_model_config(state["model_config"], f"{source}: model_config")
    model = build_pfld(state["model_config"])
    weights = state.get("ema") if prefer_ema and state.get("ema") is not None else state["model"]
    try:
        model.load_state_dict(weights)
    except RuntimeError as err:
        reason = first_line(err)
        raise LandmarkError(f"{source}: weights do not match the model config stored with them ({reason})") from None
    try:
        scheme = scheme_for(state["scheme"])
    except ValueError as err:
        raise LandmarkError(f"{source}: {err}") from None
    if scheme.num_points != model.num_points:
        raise LandmarkError(
            f"{source}: scheme {scheme.name} has {scheme.num_points} points but the model predicts {model.num_points}"
        )
    silenced = silence_dead_channels(model)
    if silenced:
        logger.debug("%s: silenced %d dead BatchNorm channels", source, silenced)
    return model.eval(), scheme


def inference_checkpoint(state: dict[str, Any]) -> dict[str, Any]:
    """What a deployed model needs: the inference weights (the EMA when the run kept one), the model config,
    the scheme and the training config and history for the record -- no optimiser, aux net or RNG state."""
    weights = state["ema"] if state.get("ema") is not None else state["model"]
    keep = ("model_config", "scheme", "train_config", "epoch", "best_nme", "history")
    return {"model": weights, "ema": None, "aux": None, **{key: state.get(key) for key in keep}}


def load_model(path: str | Path, prefer_ema: bool = True) -> tuple[PFLD, Scheme, dict[str, Any]]:
    """Load a checkpoint file and build its inference network: (model, scheme, checkpoint dict)."""
    state = load_checkpoint(path)
    model, scheme = model_from_checkpoint(state, str(path), prefer_ema)
    return model, scheme, state

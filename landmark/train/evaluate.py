"""Running a model over a dataset and scoring it: shared by training-time validation and ``landmark eval``."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import torch
from torch import nn

from landmark.data.schemes import Scheme
from landmark.train.metrics import attribute_subsets, per_face_nme, per_landmark_error, region_errors, summarise


@torch.no_grad()
def predict_batch(model: nn.Module, images: torch.Tensor, scheme: Scheme, flip_test: bool = False) -> torch.Tensor:
    """(B, K, 2) normalised landmarks; with ``flip_test`` averaged with the prediction on the mirrored crop."""
    landmarks = model(images)
    if flip_test:
        mirrored = model(torch.flip(images, dims=[3]))
        perm = list(scheme.flip_permutation)
        unmirrored = mirrored[:, perm, :].clone()
        unmirrored[..., 0] = 1.0 - unmirrored[..., 0]
        landmarks = (landmarks + unmirrored) / 2
    return landmarks


@torch.no_grad()
def predict_loader(
    model: nn.Module, batches: Iterable[dict], scheme: Scheme, device: torch.device, flip_test: bool = False
) -> dict[str, np.ndarray]:
    """Predictions and targets for every sample: ``pred``, ``gt`` (N, K, 2) normalised, ``attributes``, ``index``."""
    was_training = model.training
    model.eval()
    out: dict[str, list] = {"pred": [], "gt": [], "attributes": [], "index": []}
    for batch in batches:
        pred = predict_batch(model, batch["image"].to(device), scheme, flip_test)
        out["pred"].append(pred.float().cpu().numpy())
        out["gt"].append(batch["landmarks"].numpy())
        out["attributes"].append(batch["attributes"].numpy())
        out["index"].append(np.asarray(batch["index"]))
    model.train(was_training)
    return {key: np.concatenate(values) for key, values in out.items()}


def score(pred: np.ndarray, gt: np.ndarray, scheme: Scheme, mode: str = "inter_ocular") -> dict:
    """NME summary (``nme_mean``, ``nme_median``, ``fr10``, ``auc10``, ``n``) for (N, K, 2) arrays."""
    return summarise(per_face_nme(pred, gt, scheme, mode))


def evaluate_predictions(pred: np.ndarray, gt: np.ndarray, attributes: np.ndarray, scheme: Scheme) -> dict:
    """The full evaluation report: inter-ocular NME summary at the top level (``nme_mean``, ``nme_median``,
    ``fr10``, ``auc10``, ``n``), the other normalisations, WFLW's attribute subsets (when any flag is set),
    the mean error per landmark and per face region (``regions``), and the per-face NMEs (for CED plots)."""
    nme = per_face_nme(pred, gt, scheme, "inter_ocular")
    result = summarise(nme)
    result["normalisations"] = {
        mode: summarise(per_face_nme(pred, gt, scheme, mode)) for mode in ("inter_ocular", "inter_pupil", "box")
    }
    result["subsets"] = attribute_subsets(nme, attributes) if attributes.any() else {}
    per_landmark = per_landmark_error(pred, gt, scheme, "inter_ocular")
    result["per_landmark"] = [round(float(e), 6) for e in per_landmark]
    result["regions"] = {name: round(e, 6) for name, e in region_errors(per_landmark, scheme).items()}
    result["per_face_nme"] = [round(float(e), 6) for e in nme]
    return result

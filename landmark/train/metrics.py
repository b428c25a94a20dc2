"""Landmark accuracy metrics: NME, failure rate, the CED curve and its AUC.

All functions take predictions and ground truth as ``(N, K, 2)`` arrays in the *same* units (image pixels
or normalised crop coordinates; NME is a ratio, so the units cancel). The conventions follow the WFLW and
300-W papers:

* NME of one face = mean over its K points of the Euclidean point-to-point error, divided by a per-face
  normaliser (``normalisers``): the inter-ocular distance (outer eye corners, the default and the WFLW
  standard), the inter-pupil distance, or the geometric mean of the box sides.
* FR@t = share of faces whose NME is strictly greater than t.
* CED(x) = share of faces whose NME is <= x; AUC@t = area under CED on [0, t] divided by t, so 1.0 means
  every face is perfect and 0.0 means every face failed.
"""

from __future__ import annotations

import os
import tempfile

import numpy as np

from landmark.data.schemes import Scheme

NORMALISER_MODES = ("inter_ocular", "inter_pupil", "box")

# WFLW's attribute flags, in the column order of its annotation files.
WFLW_ATTRIBUTES = ("pose", "expression", "illumination", "make-up", "occlusion", "blur")


def _check_points(points: np.ndarray, scheme: Scheme, what: str) -> np.ndarray:
    points = np.asarray(points, dtype=np.float64)
    if points.ndim != 3 or points.shape[1:] != (scheme.num_points, 2):
        raise ValueError(
            f"{what} must have shape (N, {scheme.num_points}, 2) for scheme {scheme.name}, got {points.shape}"
        )
    return points


def _check_pair(pred: np.ndarray, gt: np.ndarray, scheme: Scheme) -> tuple[np.ndarray, np.ndarray]:
    pred = _check_points(pred, scheme, "pred")
    gt = _check_points(gt, scheme, "gt")
    if pred.shape != gt.shape:
        raise ValueError(f"pred and gt differ in shape: {pred.shape} vs {gt.shape}")
    return pred, gt


def normalisers(
    gt: np.ndarray, scheme: Scheme, mode: str = "inter_ocular", boxes: np.ndarray | None = None
) -> np.ndarray:
    """Per-face NME normaliser, shape (N,).

    ``boxes`` (only for ``mode="box"``) is ``(N, 4)`` as ``x1, y1, x2, y2`` in the units of ``gt``; without it
    the box is the tight bounding box of the ground-truth landmarks.
    """
    gt = _check_points(gt, scheme, "gt")
    if mode == "inter_ocular":
        a, b = scheme.nme_indices
        norm = np.linalg.norm(gt[:, a] - gt[:, b], axis=-1)
    elif mode == "inter_pupil":
        centres = scheme.eye_centres(gt)  # (N, 2, 2): pupils if annotated, else eye-contour means
        norm = np.linalg.norm(centres[:, 0] - centres[:, 1], axis=-1)
    elif mode == "box":
        if boxes is None:
            lo, hi = gt.min(axis=1), gt.max(axis=1)
        else:
            boxes = np.asarray(boxes, dtype=np.float64)
            if boxes.shape != (len(gt), 4):
                raise ValueError(f"boxes must have shape ({len(gt)}, 4) as x1, y1, x2, y2, got {boxes.shape}")
            lo, hi = boxes[:, :2], boxes[:, 2:]
        size = hi - lo
        norm = np.sqrt(size[:, 0] * size[:, 1])
    else:
        raise ValueError(f"unknown NME normaliser {mode!r}; expected one of {', '.join(NORMALISER_MODES)}")
    # A zero normaliser means a degenerate annotation (both eye corners on one pixel, a flat box); an
    # infinite NME would silently poison the mean, so say which face it is.
    bad = np.flatnonzero(~(norm > 0))
    if bad.size:
        raise ValueError(f"{mode} normaliser is zero or invalid for face index {int(bad[0])} ({bad.size} in all)")
    return norm


def _normalised_point_errors(pred: np.ndarray, gt: np.ndarray, scheme: Scheme, mode: str) -> np.ndarray:
    """(N, K) Euclidean error of every point divided by its face's normaliser."""
    pred, gt = _check_pair(pred, gt, scheme)
    errors = np.linalg.norm(pred - gt, axis=-1)
    return errors / normalisers(gt, scheme, mode)[:, None]


def per_face_nme(pred: np.ndarray, gt: np.ndarray, scheme: Scheme, mode: str = "inter_ocular") -> np.ndarray:
    """NME of each face, shape (N,): mean point-to-point error over K points / normaliser."""
    return _normalised_point_errors(pred, gt, scheme, mode).mean(axis=1)


def per_landmark_error(pred: np.ndarray, gt: np.ndarray, scheme: Scheme, mode: str = "inter_ocular") -> np.ndarray:
    """Mean normalised error of each landmark over the faces, shape (K,): which points are hardest."""
    return _normalised_point_errors(pred, gt, scheme, mode).mean(axis=0)


# Face regions in the iBUG 68-point order; every scheme maps onto it (``Scheme.to_68``), so regional errors
# of WFLW models are reported on the same 68 points.
REGIONS_68 = {
    "jaw": range(0, 17),
    "brows": range(17, 27),
    "nose": range(27, 36),
    "eyes": range(36, 48),
    "mouth": range(48, 68),
}


def region_errors(per_landmark: np.ndarray, scheme: Scheme) -> dict[str, float]:
    """Mean normalised error of each face region (``REGIONS_68``) from the per-landmark errors: where a model
    is weak (the jaw, whose points slide along the contour, is always the largest)."""
    if scheme.to_68 is None:
        return {}
    return {
        name: float(np.mean([per_landmark[scheme.to_68[i]] for i in indices])) for name, indices in REGIONS_68.items()
    }


def _check_nme(nme: np.ndarray) -> np.ndarray:
    nme = np.asarray(nme, dtype=np.float64).reshape(-1)
    if nme.size == 0:
        raise ValueError("no faces to summarise: the NME array is empty")
    if not np.all(np.isfinite(nme)):
        raise ValueError(f"NME array holds {int(np.sum(~np.isfinite(nme)))} non-finite values")
    return nme


def _check_threshold(threshold: float, step: float | None = None) -> None:
    if not threshold > 0:
        raise ValueError(f"threshold must be > 0, got {threshold}")
    if step is not None and not 0 < step <= threshold:
        raise ValueError(f"step must be in (0, threshold={threshold}], got {step}")


def failure_rate(nme: np.ndarray, threshold: float = 0.10) -> float:
    """Share of faces with NME strictly above ``threshold`` (a face exactly at it is not a failure)."""
    nme = _check_nme(nme)
    _check_threshold(threshold)
    return float(np.mean(nme > threshold))


def ced_curve(nme: np.ndarray, threshold: float = 0.10, step: float = 1e-4) -> tuple[np.ndarray, np.ndarray]:
    """Cumulative error distribution: x = 0..``threshold`` in ``step``s, y = share of faces with NME <= x.

    The grid comes from ``linspace`` so its last point is exactly ``threshold`` (``arange`` can stop one
    floating-point hair short and drop the faces sitting exactly on it).
    """
    nme = _check_nme(nme)
    _check_threshold(threshold, step)
    num_steps = max(1, int(round(threshold / step)))
    x = np.linspace(0.0, threshold, num_steps + 1)
    y = np.searchsorted(np.sort(nme), x, side="right") / nme.size
    return x, y


def auc(nme: np.ndarray, threshold: float = 0.10, step: float = 1e-4) -> float:
    """Area under the CED curve on [0, threshold] divided by threshold (trapezoid rule), in [0, 1]."""
    x, y = ced_curve(nme, threshold, step)
    # Trapezoid rule written out: np.trapz was renamed np.trapezoid in numpy 2 and we support both.
    area = np.sum((y[1:] + y[:-1]) * 0.5 * np.diff(x))
    return float(area / threshold)


def summarise(nme: np.ndarray, threshold: float = 0.10) -> dict:
    """Mean/median NME, failure rate and AUC of a set of faces.

    Keys: ``nme_mean``, ``nme_median``, ``fr10``, ``auc10``, ``n``. The FR/AUC keys are named after the
    threshold in percent, so the default 0.10 gives ``fr10``/``auc10`` and e.g. 0.08 gives ``fr8``/``auc8``:
    a table can never label an 8% failure rate as FR@10%.
    """
    nme = _check_nme(nme)
    percent = f"{threshold * 100:g}".replace(".", "_")
    return {
        "nme_mean": float(nme.mean()),
        "nme_median": float(np.median(nme)),
        f"fr{percent}": failure_rate(nme, threshold),
        f"auc{percent}": auc(nme, threshold),
        "n": int(nme.size),
    }


W300_SOURCES = ("afw", "helen", "ibug", "lfpw")  # 300-W's source datasets, the prefix of its file names


def source_subsets(nme: np.ndarray, names: list[str], threshold: float = 0.10) -> dict[str, dict]:
    """``summarise`` per 300-W source dataset, read from file names such as ``helen_123.jpg``: the HELEN, LFPW,
    AFW and iBUG faces differ a lot in difficulty, so a mixed set's mean hides which one a model struggles on.
    Faces without such a prefix are left out; no prefixed names, no subsets."""
    nme = _check_nme(nme)
    if len(names) != nme.size:
        raise ValueError(f"{len(names)} names for {nme.size} faces")
    sources = np.array([name.split("_", 1)[0].lower() for name in names])
    return {
        source: summarise(nme[sources == source], threshold) for source in W300_SOURCES if (sources == source).any()
    }


def attribute_subsets(nme: np.ndarray, attributes: np.ndarray, threshold: float = 0.10) -> dict[str, dict]:
    """``summarise`` of each WFLW attribute subset (the faces whose flag is 1); empty subsets are left out."""
    nme = _check_nme(nme)
    attributes = np.asarray(attributes)
    if attributes.shape != (nme.size, len(WFLW_ATTRIBUTES)):
        raise ValueError(
            f"attributes must have shape ({nme.size}, {len(WFLW_ATTRIBUTES)}) "
            f"({', '.join(WFLW_ATTRIBUTES)}), got {attributes.shape}"
        )
    subsets = {}
    for column, name in enumerate(WFLW_ATTRIBUTES):
        members = attributes[:, column] == 1
        if members.any():
            subsets[name] = summarise(nme[members], threshold)
    return subsets


def plot_ced(curves: dict[str, np.ndarray], path: str | os.PathLike, threshold: float = 0.10) -> None:
    """Write a CED plot (one line per named NME array) to ``path`` as PNG, atomically.

    Uses a bare Agg ``Figure`` rather than pyplot, so it needs no display, leaves no global figure state and
    does not change the backend of a caller that uses pyplot itself. The PNG is written to a temporary file
    in the same folder and moved into place with ``os.replace``, so a reader never sees half a file.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if not curves:
        raise ValueError("plot_ced needs at least one curve")
    figure = Figure(figsize=(6, 4.5), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    for name, nme in curves.items():
        x, y = ced_curve(nme, threshold)
        label = f"{name}: NME {100 * float(np.mean(nme)):.2f}%, AUC {auc(nme, threshold):.3f}"
        axes.plot(x, y, label=label)
    axes.set_xlim(0, threshold)
    axes.set_ylim(0, 1)
    axes.set_xlabel("NME")
    axes.set_ylabel("share of faces")
    axes.set_title(f"Cumulative error distribution (up to NME {threshold:g})")
    axes.grid(True, alpha=0.3)
    axes.legend(loc="lower right")

    folder = os.path.dirname(os.path.abspath(path))
    handle, temp_path = tempfile.mkstemp(prefix=".ced-", suffix=".png.tmp", dir=folder)
    try:
        with os.fdopen(handle, "wb") as file:
            figure.savefig(file, format="png")
        os.chmod(temp_path, 0o644)  # mkstemp makes owner-only files; a plot is meant to be shared
        os.replace(temp_path, path)
    except BaseException:
        if os.path.exists(temp_path):
            os.remove(temp_path)
        raise

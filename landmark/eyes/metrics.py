"""Open/closed scoring: accuracy, recall per class and ROC AUC of closed-eye probabilities (NumPy only)."""

from __future__ import annotations

import numpy as np


def roc_auc(scores: np.ndarray, labels: np.ndarray) -> float | None:
    """Area under the ROC curve of ``scores`` for ``labels`` (1 = positive), ties counted half; None when
    one class is absent. Equal to the Mann-Whitney U statistic divided by n_pos * n_neg."""
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels).astype(bool)
    n_pos, n_neg = int(labels.sum()), int((~labels).sum())
    if n_pos == 0 or n_neg == 0:
        return None
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(len(scores), dtype=np.float64)
    sorted_scores = scores[order]
    # average ranks over ties
    starts = np.r_[0, np.flatnonzero(np.diff(sorted_scores)) + 1]
    ends = np.r_[starts[1:], len(scores)]
    for s, e in zip(starts, ends, strict=True):
        ranks[order[s:e]] = (s + e + 1) / 2.0
    return float((ranks[labels].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def eye_state_scores(prob_closed: np.ndarray, labels: np.ndarray, threshold: float) -> dict:
    """n, accuracy, recall_open, recall_closed, auc and the threshold (closed when prob >= threshold)."""
    prob_closed = np.asarray(prob_closed, dtype=np.float64)
    labels = np.asarray(labels).astype(bool)
    predicted = prob_closed >= threshold
    n_closed, n_open = int(labels.sum()), int((~labels).sum())
    return {
        "n": len(labels),
        "n_open": n_open,
        "n_closed": n_closed,
        "accuracy": float((predicted == labels).mean()) if len(labels) else None,
        "recall_open": float((~predicted[~labels]).mean()) if n_open else None,
        "recall_closed": float(predicted[labels].mean()) if n_closed else None,
        "auc": roc_auc(prob_closed, labels),
        "threshold": float(threshold),
    }

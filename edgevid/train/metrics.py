"""The field's video metrics on numpy arrays: top-k, confusion matrix, per-class accuracy, mAP and mIoU."""

from __future__ import annotations

import numpy as np


def softmax(scores: np.ndarray, axis: int = 1) -> np.ndarray:
    shifted = scores - scores.max(axis=axis, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=axis, keepdims=True)


def topk_correct(scores: np.ndarray, labels: np.ndarray, k: int) -> int:
    """How many rows of ``scores`` [N, C] have their label among the ``k`` highest scores (k capped at C)."""
    k = min(k, scores.shape[1])
    top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    return int((top == labels[:, None]).any(axis=1).sum())


def confusion_matrix(labels: np.ndarray, predictions: np.ndarray, num_classes: int) -> np.ndarray:
    """``[true, predicted]`` counts."""
    flat = labels.astype(np.int64) * num_classes + predictions.astype(np.int64)
    return np.bincount(flat, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def per_class_accuracy(confusion: np.ndarray) -> np.ndarray:
    """Recall of each class; NaN for a class with no samples."""
    totals = confusion.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(totals > 0, np.diag(confusion) / totals, np.nan)


def mean_class_accuracy(confusion: np.ndarray) -> float:
    """Mean of the per-class accuracies over the classes that have samples."""
    return float(np.nanmean(per_class_accuracy(confusion)))


def average_precision(scores: np.ndarray, positives: np.ndarray) -> float:
    """Area under the precision-recall curve of one class (the mean of the precision at every true positive,
    as in sklearn's ``average_precision_score``); NaN when the class has no positives."""
    if not positives.any():
        return float("nan")
    order = np.argsort(-scores, kind="stable")
    hits = positives[order].astype(np.float64)
    precision = np.cumsum(hits) / np.arange(1, len(hits) + 1)
    return float((precision * hits).sum() / hits.sum())


def mean_average_precision(scores: np.ndarray, labels: np.ndarray) -> tuple[float, np.ndarray]:
    """mAP over classes with at least one positive, and the per-class APs, for ``scores`` [N, C], ``labels`` [N]."""
    per_class = np.array([average_precision(scores[:, c], labels == c) for c in range(scores.shape[1])])
    return float(np.nanmean(per_class)), per_class


def mean_iou(confusion: np.ndarray) -> tuple[float, np.ndarray]:
    """mIoU over classes that occur (as label or prediction): TP / (TP + FP + FN) per class."""
    tp = np.diag(confusion).astype(np.float64)
    union = confusion.sum(axis=0) + confusion.sum(axis=1) - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = np.where(union > 0, tp / union, np.nan)
    return float(np.nanmean(iou)), iou

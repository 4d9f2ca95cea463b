"""PNG plots of training curves and confusion matrices (matplotlib, Agg backend, written atomically)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edgevid.utils.plotting import pyplot, save_figure


def plot_curves(rows: Sequence[dict[str, Any]], path: str | Path, title: str = "") -> Path:
    """Loss and accuracy against epoch from the per-epoch metric rows (train and val)."""
    plt = pyplot()
    from matplotlib.ticker import MaxNLocator  # matplotlib: heavy, loaded only when a plot is drawn

    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4))
    for ax, series in ((ax_loss, (("train_loss", "train"), ("val_loss", "val"))),
                       (ax_acc, (("train_acc", "train top-1"), ("val_top1", "val top-1"), ("val_top5", "val top-5")))):
        for key, label in series:
            points = [(r["epoch"], r[key]) for r in rows if r.get(key) is not None]
            if points:
                epochs, values = zip(*points, strict=True)
                ax.plot(epochs, values, marker="o", markersize=3, label=label)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.legend()
    ax_loss.set_ylabel("loss")
    ax_acc.set_ylabel("accuracy (%)")
    if title:
        fig.suptitle(title)
    return save_figure(fig, path)


def plot_confusion(confusion: np.ndarray, classes: Sequence[str], path: str | Path, title: str = "") -> Path:
    """Row-normalised confusion matrix (true class per row) with the counts written in the cells."""
    plt = pyplot()
    n = len(classes)
    side = min(max(4.0, 0.45 * n + 2.0), 24.0)
    fig, ax = plt.subplots(figsize=(side, side))
    totals = confusion.sum(axis=1, keepdims=True)
    normalised = np.divide(confusion, totals, out=np.zeros(confusion.shape, dtype=float), where=totals > 0)
    ax.imshow(normalised, cmap="Blues", vmin=0.0, vmax=1.0)
    ax.set_xticks(range(n), classes, rotation=90 if n > 6 else 0)
    ax.set_yticks(range(n), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if n <= 30:
        for i in range(n):
            for j in range(n):
                if confusion[i, j]:
                    ax.text(j, i, str(int(confusion[i, j])), ha="center", va="center", fontsize=7,
                            color="white" if normalised[i, j] > 0.5 else "black")
    if title:
        ax.set_title(title)
    return save_figure(fig, path)

"""``edgevid eval``: accuracy metrics of any artifact (run directory, checkpoint, ONNX, OpenVINO, TensorRT).

The artifact runs through :func:`edgevid.runtime.load`, so every backend is measured the same way. Clips are
sampled and preprocessed from the artifact's metadata (frames, size, stride, mean/std, sampling mode, and its
class order). With ``views=(N, M)`` each video gives N temporal clips x M spatial crops; softmax scores are
averaged over the views.

Metrics (all in percent): top-1, top-5 (top-k with k capped at the class count), per-class accuracy,
mean-class accuracy and the confusion matrix. For a ``frame`` head, frame-level mAP; for ``dense``, mIoU over
voxels. Classification data has one label per clip, so every frame (voxel) of a clip is labelled with the
clip's class for these two.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from edgevid.data import build_dataset, build_loader
from edgevid.data.datasets import distinct_skips
from edgevid.errors import EdgevidError
from edgevid.runtime import load
from edgevid.train.metrics import (
    confusion_matrix,
    mean_average_precision,
    mean_class_accuracy,
    mean_iou,
    per_class_accuracy,
    softmax,
    topk_correct,
)
from edgevid.train.plots import plot_confusion
from edgevid.utils.atomic import write_json_atomic
from edgevid.utils.console import progress


def parse_views(text: str) -> tuple[int, int]:
    """``"3x3"`` -> (3 clips, 3 crops)."""
    clips, sep, crops = text.lower().partition("x")
    if not sep or not clips.isdigit() or not crops.isdigit() or int(clips) < 1 or int(crops) < 1:
        raise EdgevidError(f"--views: expected CLIPSxCROPS such as 1x1 or 3x3, got {text!r}")
    return int(clips), int(crops)


def _as_percent(values: np.ndarray) -> list[float | None]:
    return [None if np.isnan(v) else round(100.0 * float(v), 4) for v in values]


class _Accumulator:
    """Collects per-clip (and per-frame / per-voxel) scores batch by batch."""

    def __init__(self, head: str, num_classes: int) -> None:
        self.head, self.num_classes = head, num_classes
        self.clip_probs: list[np.ndarray] = []
        self.labels: list[np.ndarray] = []
        self.frame_probs: list[np.ndarray] = []
        self.frame_labels: list[np.ndarray] = []
        self.voxel_confusion = np.zeros((num_classes, num_classes), dtype=np.int64)

    def add(self, scores: np.ndarray, labels: np.ndarray, views: int) -> None:
        """``scores`` [B*V, C, ...] for ``labels`` [B] (the V views of a video are consecutive)."""
        if scores.ndim < 2 or scores.shape[1] != self.num_classes:
            raise EdgevidError(f"artifact output {list(scores.shape)} is not class scores for "
                               f"{self.num_classes} classes (head {self.head!r})")
        probs = softmax(scores.astype(np.float64), axis=1)
        per_view = probs.reshape(probs.shape[0], self.num_classes, -1).mean(axis=2)
        self.clip_probs.append(per_view.reshape(len(labels), views, self.num_classes).mean(axis=1))
        self.labels.append(labels)
        position_labels = np.repeat(labels, views)
        if self.head == "frame":
            self.frame_probs.append(probs.transpose(0, 2, 1).reshape(-1, self.num_classes))
            self.frame_labels.append(np.repeat(position_labels, probs.shape[2]))
        elif self.head == "dense":
            predicted = probs.argmax(axis=1).reshape(probs.shape[0], -1)
            truth = np.broadcast_to(position_labels[:, None], predicted.shape)
            self.voxel_confusion += confusion_matrix(truth.ravel(), predicted.ravel(), self.num_classes)

    def results(self, classes: list[str]) -> dict[str, Any]:
        probs, labels = np.concatenate(self.clip_probs), np.concatenate(self.labels)
        confusion = confusion_matrix(labels, probs.argmax(axis=1), self.num_classes)
        out: dict[str, Any] = {
            "clips": len(labels),
            "top1": 100.0 * topk_correct(probs, labels, 1) / len(labels),
            "top5": 100.0 * topk_correct(probs, labels, 5) / len(labels),
            "mean_class_acc": 100.0 * mean_class_accuracy(confusion),
            "per_class_acc": dict(zip(classes, _as_percent(per_class_accuracy(confusion)), strict=True)),
            "confusion": confusion.tolist(),
        }
        if self.head == "frame":
            mean_ap, per_class = mean_average_precision(np.concatenate(self.frame_probs),
                                                        np.concatenate(self.frame_labels))
            out["frame_map"] = 100.0 * mean_ap
            out["frame_ap"] = dict(zip(classes, _as_percent(per_class), strict=True))
        elif self.head == "dense":
            miou, per_class = mean_iou(self.voxel_confusion)
            out["miou"] = 100.0 * miou
            out["iou"] = dict(zip(classes, _as_percent(per_class), strict=True))
        return out


def evaluate(artifact: str | Path, data: str | Path, split: str = "val", views: tuple[int, int] = (1, 1),
             batch: int = 8, device: str = "cpu", workers: int = 2, strict: bool = False,
             out: str | Path | None = None, threads: int | None = None,
             precision: str | None = None) -> dict[str, Any]:
    """Evaluate ``artifact`` on the ``split`` of the dataset at ``data``, in ``precision`` (default: its own); returns
    the metrics dict.

    With ``out``, writes ``eval.json`` and ``confusion.png`` there.
    """

    if batch < 1:
        raise EdgevidError(f"--batch: expected a positive batch size, got {batch}")
    predictor = load(artifact, device=device, threads=threads, precision=precision)
    meta = predictor.meta
    if meta.head == "features":
        raise EdgevidError(f"{artifact}: a 'features' head artifact has no class scores to evaluate")
    dataset = build_dataset(data, split, frames=meta.frames, size=meta.size, sampling_stride=meta.sampling_stride,
                            mean=meta.mean, std=meta.std, train=False, sampling=meta.sampling,
                            views=views, strict=strict, classes=meta.classes, clip_seconds=meta.clip_seconds,
                            fit=meta.fit)
    if len(dataset) == 0:
        raise EdgevidError(f"{data}: split {split!r} has no clips")
    loader = build_loader(dataset, batch, shuffle=False, workers=workers)
    acc = _Accumulator(meta.head, meta.num_classes)
    skipped: list[tuple[str, str]] = []
    short: set[str] = set()
    view_count = views[0] * views[1]
    start = time.perf_counter()
    with progress(transient=True) as bar:
        task = bar.add_task(f"eval {Path(artifact).name}", total=len(loader), info="")
        for batch in loader:
            clips, labels, bad = batch
            skipped.extend(bad)
            short.update(batch.short)
            bar.advance(task)
            if labels.numel() == 0:
                continue
            flat = clips.reshape(-1, *clips.shape[-4:]).numpy()
            acc.add(predictor.predict(flat), labels.numpy(), view_count)
    elapsed = time.perf_counter() - start
    if not acc.labels:
        raise EdgevidError(f"{data}: no readable clip in split {split!r}")
    results = {
        "artifact": str(artifact), "backend": predictor.backend, "model": meta.model, "head": meta.head,
        "data": str(data), "split": split, "views": f"{views[0]}x{views[1]}", "classes": meta.classes,
        **acc.results(meta.classes),
        "skipped": [list(item) for item in distinct_skips(skipped)], "seconds": elapsed,
        "short_videos": len(short), "short_note": dataset.short_note(len(short)) if short else None,
    }
    results["clips_per_s"] = results["clips"] / elapsed
    if out is not None:
        out = Path(out)
        write_json_atomic(out / "eval.json", results)
        plot_confusion(np.asarray(results["confusion"]), meta.classes, out / "confusion.png",
                       title=f"{meta.model} on {split} ({results['views']} views): top-1 {results['top1']:.1f}%")
    return results

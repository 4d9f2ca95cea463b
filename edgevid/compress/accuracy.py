"""Accuracy guard for INT8: a validation set held in memory, top-1 of any predict function, and the ONNX
per-layer sensitivity pass that keeps the most sensitive layers in float until the top-1 drop fits.

The validation clips are decoded once (centre clip, centre crop, as ``edgevid eval`` does) and every candidate
model is scored on the same arrays, so comparing FP32 with INT8 and ranking layers costs model time only.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgevid.data import build_dataset
from edgevid.errors import EdgevidError
from edgevid.meta import ArtifactMeta
from edgevid.runtime.onnx_backend import open_session
from edgevid.utils.console import progress

PredictFn = Callable[[np.ndarray], np.ndarray]


class AccuracyGuardError(EdgevidError):
    """INT8 stays more than ``--max-drop`` points below FP32 with every set of layers the guard tried in float."""

    def __init__(self, fp32_top1: float, int8_top1: float, max_drop: float, what: str) -> None:
        super().__init__(f"accuracy guard: INT8 top-1 {int8_top1:.2f}% stays more than --max-drop {max_drop:g} points "
                         f"below FP32 {fp32_top1:.2f}% even with {what} in float; use more calibration clips or "
                         "another --method; nothing written")
        self.fp32_top1, self.int8_top1 = fp32_top1, int8_top1


@dataclass
class ValidationSet:
    """Normalised clips [N, 3, T, S, S] and labels [N] of a validation split."""

    clips: np.ndarray
    labels: np.ndarray
    source: str

    def __len__(self) -> int:
        return len(self.labels)

    @classmethod
    def load(cls, data: str | Path, meta: ArtifactMeta, split: str = "val", max_clips: int | None = None,
             show_progress: bool = True) -> ValidationSet:
        """Decode ``split`` of ``data`` with the artifact's preprocessing; ``max_clips`` takes an evenly spaced
        subset (stratification follows from the list order being class-grouped or not: every k-th video)."""

        dataset = build_dataset(data, split, frames=meta.frames, size=meta.size,
                                sampling_stride=meta.sampling_stride, mean=meta.mean, std=meta.std, train=False,
                                sampling=meta.sampling, classes=meta.classes,
                                clip_seconds=meta.clip_seconds, fit=meta.fit)
        indices = np.arange(len(dataset))
        if max_clips is not None and max_clips < len(indices):
            indices = np.linspace(0, len(indices) - 1, max_clips).round().astype(int)
        clips, labels = [], []
        with progress(transient=True) as bar:
            task = bar.add_task(f"{split} clips", total=len(indices), info=str(data), visible=show_progress)
            for index in indices:
                item = dataset[int(index)]
                bar.advance(task)
                if item is not None:
                    clips.append(item[0].numpy())
                    labels.append(item[1])
        if not clips:
            raise EdgevidError(f"{data}: split {split!r} has no readable clips for the accuracy guard")
        return cls(np.stack(clips), np.asarray(labels), f"{data} ({split}, {len(labels)} clips)")

    def scores(self, predict: PredictFn, batch: int = 8, subset: Sequence[int] | None = None) -> np.ndarray:
        """Class scores of every clip (or of ``subset``), run in batches."""
        clips = self.clips if subset is None else self.clips[np.asarray(subset)]
        return np.concatenate([predict(clips[i:i + batch]) for i in range(0, len(clips), batch)])

    def top1(self, scores: np.ndarray) -> float:
        """Top-1 accuracy in percent of ``scores`` for all clips."""
        return float(100.0 * np.mean(scores.argmax(axis=1) == self.labels))

    def items(self) -> list[tuple[np.ndarray, int]]:
        """(clip [1, 3, T, S, S], label) pairs, as NNCF's validation dataset wants them."""
        return [(clip[None], int(label)) for clip, label in zip(self.clips, self.labels, strict=True)]


def ort_predict(model: Path | bytes, threads: int | None = None) -> PredictFn:
    """A predict function over an ONNX file (or serialised model) in ONNX Runtime (CPU, all graph optimisations)."""
    # log_severity 3: an edited model's unused Q/DQ constants are warned about, not wrong
    session = open_session(model, threads, log_severity=3)
    name = session.get_inputs()[0].name
    return lambda clips: session.run(None, {name: np.ascontiguousarray(clips, dtype=np.float32)})[0]


@dataclass
class GuardResult:
    """What the ONNX accuracy guard did: layers kept in float (most sensitive first) and the top-1 it reached."""

    float_layers: list[str]
    top1: float
    sensitivity: dict[str, float] = field(default_factory=dict)
    evaluations: int = 0


def onnx_accuracy_guard(quantizer, out: Path, valset: ValidationSet, fp32_scores: np.ndarray, max_drop: float, *,
                        ranking_clips: int = 32, threads: int | None = None, show_progress: bool = True) -> GuardResult:
    """Keep the most sensitive weighted layers of a QDQ model in float until top-1 drops at most ``max_drop``.

    Sensitivity of a layer = how much the mean squared logit error against FP32 (on ``ranking_clips`` evenly
    spaced validation clips) shrinks when that layer's weights alone go back to float in the INT8 graph
    (:meth:`~edgevid.compress.quant_onnx.OnnxQuantizer.with_float_weights`, no re-quantization). How many of the
    most sensitive layers stay in float is then searched with real re-quantized models scored on the whole
    validation set: 1, 2, 4 ... until the drop fits, then bisection between the last two counts (about
    2 log2(layers) quantizations, not one per layer). ``quantizer`` is an
    :class:`~edgevid.compress.quant_onnx.OnnxQuantizer`; ``out`` receives the final model. Raises
    :class:`AccuracyGuardError` when no count tried fits, the last being every weighted layer in float (their
    input activations mostly stay quantized, so that is not FP32); nothing is written to ``out`` then.
    """

    fp32_top1 = valset.top1(fp32_scores)
    subset = np.linspace(0, len(valset) - 1, min(ranking_clips, len(valset))).round().astype(int)
    reference = fp32_scores[subset]
    candidates = quantizer.quantizable_nodes()
    with tempfile.TemporaryDirectory(prefix=".sensitivity-", dir=out.parent) as work:
        trial = Path(work) / "trial.onnx"
        top1: dict[int, float] = {}

        def fits(layers: Sequence[str]) -> bool:
            """Top-1 of the model re-quantized with ``layers`` in float (kept per count) is within the drop."""
            if len(layers) not in top1:
                predict = ort_predict(quantizer.quantize(trial, layers), threads)
                top1[len(layers)] = valset.top1(valset.scores(predict))
            return fp32_top1 - top1[len(layers)] <= max_drop

        def logit_error(layers: Sequence[str]) -> float:
            model = quantizer.with_float_weights(layers)
            scores = valset.scores(ort_predict(model, threads), subset=subset)
            return float(np.mean((scores - reference) ** 2))

        base_error = logit_error(())
        sensitivity: dict[str, float] = {}
        with progress(transient=True) as bar:
            task = bar.add_task("layer sensitivity", total=len(candidates), info="", visible=show_progress)
            for node in candidates:
                sensitivity[node] = base_error - logit_error([node])
                bar.update(task, advance=1, info=node)
        ranked = sorted(candidates, key=lambda n: sensitivity[n], reverse=True)
        with progress(transient=True) as bar:
            task = bar.add_task("layers in float", total=None, info="", visible=show_progress)
            low, high = 0, 1
            while not fits(ranked[:high]):
                bar.update(task, advance=1, info=f"{high} float: top-1 {top1[high]:.2f}%")
                if high == len(ranked):
                    raise AccuracyGuardError(fp32_top1, max(top1.values()), max_drop,
                                             f"up to all {high} weighted layers")
                low, high = high, min(2 * high, len(ranked))
            while high - low > 1:
                middle = (low + high) // 2
                low, high = (low, middle) if fits(ranked[:middle]) else (middle, high)
                bar.update(task, advance=1, info=f"{middle} float: top-1 {top1[middle]:.2f}%")
    kept = ranked[:high]
    quantizer.quantize(out, kept)
    return GuardResult(kept, top1[high], sensitivity, len(candidates) + 1 + len(top1))

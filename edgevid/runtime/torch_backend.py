"""PyTorch backend: checkpoints and run directories."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from edgevid.checkpoint import load_model, resolve_checkpoint
from edgevid.errors import EdgevidError
from edgevid.formats import FORMATS
from edgevid.precision import resolve_precision
from edgevid.runtime.base import Predictor, register_backend


@contextlib.contextmanager
def torch_inference(device: str, precision: str) -> Iterator[None]:
    """No-grad inference on ``device``, under BF16 autocast when ``precision`` is ``bf16``."""
    with torch.inference_mode(), torch.autocast(device.split(":")[0], dtype=torch.bfloat16,
                                                enabled=precision == "bf16"):
        yield


def torch_execution(precision: str) -> str:
    """What the torch backend computes in for ``precision``: FP32, or BF16 through autocast."""
    return "bf16 (autocast)" if precision == "bf16" else "fp32"


@register_backend(*FORMATS["torch"].suffixes)
class TorchPredictor(Predictor):
    backend = FORMATS["torch"].backend

    def __init__(self, model: torch.nn.Module, meta, path: Path, device: str, precision: str | None = None) -> None:
        super().__init__(meta, path, device, precision)
        self.model = model

    @property
    def execution(self) -> str:
        return torch_execution(self.precision)

    @classmethod
    def open(cls, path: Path, device: str = "cpu", threads: int | None = None,
             precision: str | None = None) -> TorchPredictor:
        if threads:
            torch.set_num_threads(threads)
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise EdgevidError(f"device {device!r} requested but CUDA is not available to PyTorch")
        if device not in ("cpu",) and not device.startswith("cuda"):
            raise EdgevidError(f"torch backend runs on 'cpu' or 'cuda[:N]', not {device!r}")
        checkpoint = resolve_checkpoint(path)
        model, meta = load_model(checkpoint)
        precision = resolve_precision(cls.backend, meta.precision, precision, device.split(":")[0], str(checkpoint))
        return cls(model.to(device), meta, checkpoint, device, precision)

    def _accepts_frames(self, frames: int) -> bool:
        return frames >= self.model.min_frames and frames % self.model.frame_multiple == 0

    def _run(self, clips: np.ndarray) -> np.ndarray:
        with torch_inference(self.device, self.precision):
            out = self.model(torch.from_numpy(clips).to(self.device))
        return out.float().cpu().numpy()

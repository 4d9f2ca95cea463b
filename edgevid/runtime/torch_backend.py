"""PyTorch backend: checkpoints and run directories."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from edgevid.checkpoint import load_model, resolve_checkpoint
from edgevid.errors import EdgevidError
from edgevid.runtime.base import Predictor, register_backend


@register_backend(".pt", ".pth", ".ckpt")
class TorchPredictor(Predictor):
    backend = "torch"

    def __init__(self, model: torch.nn.Module, meta, path: Path, device: str) -> None:
        super().__init__(meta, path, device)
        self.model = model

    @classmethod
    def open(cls, path: Path, device: str = "cpu", threads: int | None = None) -> TorchPredictor:
        if threads:
            torch.set_num_threads(threads)
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise EdgevidError(f"device {device!r} requested but CUDA is not available to PyTorch")
        if device not in ("cpu",) and not device.startswith("cuda"):
            raise EdgevidError(f"torch backend runs on 'cpu' or 'cuda[:N]', not {device!r}")
        checkpoint = resolve_checkpoint(path)
        model, meta = load_model(checkpoint)
        return cls(model.to(device), meta, checkpoint, device)

    def _accepts_frames(self, frames: int) -> bool:
        return frames >= self.model.min_frames and frames % self.model.frame_multiple == 0

    @torch.inference_mode()
    def _run(self, clips: np.ndarray) -> np.ndarray:
        out = self.model(torch.from_numpy(clips).to(self.device))
        return out.float().cpu().numpy()

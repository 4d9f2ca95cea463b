"""Multi-process training through PyTorch's own launcher (``torchrun``): process group set-up and reductions.

``torchrun`` sets ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK``; without them training runs as a single process
and every helper here is a no-op. The backend is gloo on CPU and nccl on CUDA.
"""

from __future__ import annotations

import contextlib
import datetime
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.distributed as dist

from edgevid.errors import EdgevidError


@dataclass
class DistContext:
    """This process's place in the job: rank, number of processes, and the device it trains on."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def all_reduce_sum(self, values: list[float]) -> list[float]:
        """Element-wise sum of ``values`` over all processes."""
        if not self.enabled:
            return list(values)
        tensor = torch.tensor(values, dtype=torch.float64, device=self.device)
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return tensor.tolist()

    def all_gather(self, obj: Any) -> list[Any]:
        """Every process's ``obj`` (picklable), in rank order."""
        if not self.enabled:
            return [obj]
        gathered: list[Any] = [None] * self.world_size
        dist.all_gather_object(gathered, obj)
        return gathered

    def broadcast(self, obj: Any) -> Any:
        """Rank 0's ``obj`` on every process."""
        if not self.enabled:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()


def _device_for(requested: str, local_rank: int) -> torch.device:
    if requested == "cpu":
        return torch.device("cpu")
    if not requested.startswith("cuda"):
        raise EdgevidError(f"--device: expected cpu or cuda[:N], got {requested!r}")
    if not torch.cuda.is_available():
        raise EdgevidError(f"--device {requested}: CUDA is not available to PyTorch")
    if requested == "cuda":
        return torch.device("cuda", local_rank % torch.cuda.device_count())
    return torch.device(requested)


@contextlib.contextmanager
def distributed_context(device: str = "cpu") -> Iterator[DistContext]:
    """Join the torchrun job if there is one (init and, on exit, destroy the process group)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    target = _device_for(device, local_rank)
    if world_size <= 1:
        yield DistContext(device=target)
        return
    if target.type == "cuda":
        torch.cuda.set_device(target)
    backend = "nccl" if target.type == "cuda" else "gloo"
    owns_group = not dist.is_initialized()
    if owns_group:
        dist.init_process_group(backend=backend, timeout=datetime.timedelta(minutes=30))
    try:
        yield DistContext(rank=rank, world_size=world_size, local_rank=local_rank, device=target)
    finally:
        if owns_group and dist.is_initialized():
            dist.destroy_process_group()

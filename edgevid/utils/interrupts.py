"""The one line ``edgevid`` prints on Ctrl-C: what the interrupted command kept and how to continue.

A long-running API call registers a hint (a callable, evaluated only when an interrupt arrives, so it can look at
what is on disk then); the CLI prints ``interrupted: <hint>`` and exits with code 130.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable
from pathlib import Path

_hint: list[Callable[[], str]] = []


def set_interrupt_hint(hint: Callable[[], str] | None) -> None:
    """What to tell the user if the current command is interrupted from now on (``None``: the default line)."""
    _hint.clear()
    if hint is not None:
        _hint.append(hint)


def interrupt_message(command: str) -> str:
    """``interrupted: ...`` for ``edgevid COMMAND`` (the registered hint, else what every command guarantees)."""
    detail = None
    if _hint:
        try:
            detail = _hint[0]()
        except Exception:  # the hint must never turn an interrupt into a traceback
            detail = None
    if not detail:
        detail = (f"edgevid {command} stopped before it finished; every file it wrote is complete (none is left "
                  "half-written); run the same command again to redo the rest").strip()
    return f"interrupted: {detail}"


def train_hint(run_dir: Path, data: Path, device: str = "cpu") -> Callable[[], str]:
    """The hint of a training run: the epochs committed in ``run_dir`` and the ``--resume`` command line."""

    def hint() -> str:
        epoch = _committed_epoch(run_dir)
        command = f"edgevid train --resume --out {shlex.quote(str(run_dir))} --data {shlex.quote(str(data))}"
        if device != "cpu":
            command += f" --device {shlex.quote(device)}"
        if epoch == 0:
            return f"no epoch of {run_dir} had finished, nothing to resume; start it again with the same command"
        return f"kept {run_dir} at epoch {epoch} (last.pt/best.pt and metrics); continue with: {command}"

    return hint


def _committed_epoch(run_dir: Path) -> int:
    import torch  # torch: heavy, loaded only where a model or CUDA is asked about

    best = 0
    for name in ("last.pt", "best.pt"):
        path = run_dir / name
        if path.is_file():
            try:
                payload = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
                best = max(best, int(payload["train_state"]["epoch"]))
            except Exception:
                continue
    return best

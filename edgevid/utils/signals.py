"""Child-process signals in processes that mix PyTorch DataLoaders, OpenVINO and subprocesses.

PyTorch's DataLoader leaves a Python SIGCHLD handler installed in any process that used worker processes
(training, ``evaluate``). OpenVINO's CPU plugin sets a new alternate signal stack for the thread whenever it compiles
a model and restores the previous one when that model is destroyed, so destroying compiled models out of creation
order (NNCF quantization does) leaves the thread's alternate stack pointing at unmapped memory. From then on any
signal with a Python handler (CPython installs them with ``SA_ONSTACK``) crashes the process with SIGSEGV, and a
child process exiting is enough to send SIGCHLD. Keeping SIGCHLD at its default disposition (ignored, no handler)
avoids that in long pipelines such as ``edgevid demo`` and ``edgevid bench``.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator


def _can_set() -> bool:
    return hasattr(signal, "SIGCHLD") and threading.current_thread() is threading.main_thread()


def reset_sigchld() -> None:
    """Put SIGCHLD back to its default disposition (no Python handler), e.g. once a DataLoader is done."""
    if _can_set():
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)


@contextlib.contextmanager
def default_sigchld() -> Iterator[None]:
    """SIGCHLD at its default disposition inside the block (e.g. while waiting for a subprocess), then restored."""
    if not _can_set():
        yield
        return
    previous = signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    try:
        yield
    finally:
        signal.signal(signal.SIGCHLD, previous)

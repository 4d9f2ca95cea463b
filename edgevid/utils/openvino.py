"""The process's one OpenVINO ``Core``."""

from __future__ import annotations

import functools
from typing import Any


@functools.cache
def openvino_core() -> Any:
    """One ``openvino.Core`` shared by every reader, compiler and predictor in this process.

    OpenVINO recommends one Core per application. With a Core per predictor, deleting two Cores that had compiled
    models and then training with DataLoader workers killed the process with SIGSEGV when the workers shut down
    (OpenVINO 2026.4, reproduced with two X3D-XS predictors).
    """
    import openvino as ov  # openvino: optional backend, loaded only when an IR is read or compiled

    return ov.Core()

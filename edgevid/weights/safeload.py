"""Read another project's checkpoint file without running code from it.

``torch.load(weights_only=True)`` unpickles only tensors, containers and plain values (plus the numpy scalar and
dtype types that training loops leave in their metadata); anything else in the pickle (a callable, a class of
the training framework) makes the whole file an error that names the offending global. Nothing from the file is
imported or called.
"""

from __future__ import annotations

import pickle
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from edgevid.errors import EdgevidError

# numpy types that MMAction2 / PySlowFast metadata (epoch counters, accuracies) are pickled with.
_NUMPY_SAFE = [np.dtype, *(getattr(np.dtypes, n) for n in ("Float64DType", "Float32DType", "Int64DType",
                                                            "Int32DType", "BoolDType") if hasattr(np, "dtypes"))]
try:  # numpy >= 2
    from numpy._core.multiarray import scalar as _np_scalar
except ImportError:  # pragma: no cover - numpy 1.x
    from numpy.core.multiarray import scalar as _np_scalar
_NUMPY_SAFE.append(_np_scalar)


def load_payload(path: str | Path) -> Any:
    """The unpickled content of a ``torch.save`` file, tensors and plain data only."""
    path = Path(path)
    if not path.is_file():
        raise EdgevidError(f"{path}: no such checkpoint file")
    try:
        with torch.serialization.safe_globals(_NUMPY_SAFE):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        text = str(exc)
        found = re.search(r"GLOBAL ([\w.]+)", text)
        if not found and "allowed" not in text:
            detail = next((ln.strip() for ln in text.splitlines() if "rror" in ln), "corrupt pickle")
            raise EdgevidError(f"{path}: not a readable PyTorch checkpoint ({detail[:160]})") from None
        what = f"'{found.group(1)}'" if found else "objects other than tensors and plain data"
        raise EdgevidError(f"{path}: refused to load: the pickle holds {what}, which could run code; only tensors "
                           "and plain data are read (re-save the weights alone: torch.save(model.state_dict(), "
                           "PATH))") from None
    except (RuntimeError, EOFError, OSError, ValueError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise EdgevidError(f"{path}: not a readable PyTorch checkpoint ({first[:160]})") from None


def is_tensor_dict(value: Any) -> bool:
    return isinstance(value, Mapping) and bool(value) and all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in value.items())


def split_weights(payload: Any, path: Path, keys: tuple[str, ...] = ("model_state", "state_dict", "model",
                                                                      "module")) -> tuple[dict[str, torch.Tensor],
                                                                                          list[str]]:
    """The weights of a checkpoint payload (a bare state_dict, or one under ``keys``) and the names of the other
    top-level entries (optimizer state, config, epoch...), which are ignored."""
    if is_tensor_dict(payload):
        return dict(payload), []
    if isinstance(payload, Mapping):
        for key in keys:
            if is_tensor_dict(payload.get(key)):
                return dict(payload[key]), sorted(str(k) for k in payload if k != key)
    kind = f"a dict with keys {', '.join(map(str, list(payload)[:8]))}" if isinstance(payload, Mapping) \
        else f"a {type(payload).__name__}"
    raise EdgevidError(f"{path}: holds no model weights (expected a state_dict, or one under "
                       f"{'/'.join(keys)}; found {kind})")

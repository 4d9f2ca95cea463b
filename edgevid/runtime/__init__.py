"""One way to run any artifact: ``load(path) -> Predictor``. Importing registers the available backends."""

from edgevid.runtime import torch_backend  # noqa: F401  (registers)
from edgevid.runtime.base import Predictor, backend_for, load, register_backend

__all__ = ["Predictor", "backend_for", "load", "register_backend"]

"""edgevid: compact video action-recognition models from training to edge inference."""

__version__ = "0.1.0"

"""Matplotlib without a display, and PNGs written atomically."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgevid.utils.atomic import atomic_path


def pyplot() -> Any:
    """``matplotlib.pyplot`` on the Agg backend (no GUI needed)."""
    import matplotlib  # matplotlib: heavy, loaded only when a plot is drawn

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # matplotlib: heavy, loaded only when a plot is drawn

    return plt


def save_figure(fig: Any, path: str | Path, dpi: int = 100) -> Path:
    """Lay out ``fig``, write it as a PNG at ``path`` (temp file + rename) and close it."""
    fig.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=dpi, format="png")
    pyplot().close(fig)
    return Path(path)

"""Text files a user hands us (list files, label files, JSON beside data): bounded in size, UTF-8, one error."""

from __future__ import annotations

from pathlib import Path

from edgevid.errors import EdgevidError

MAX_LIST_BYTES = 128 << 20  # a list file: Kinetics-700's largest CSV is about 30 MiB
MAX_LABEL_BYTES = 4 << 20  # classes.txt, mirror_classes.txt, classInd.txt, synth.json


def read_user_text(path: str | Path, what: str, limit: int, hint: str = "") -> str:
    """The UTF-8 text of ``path`` (a leading BOM dropped); one :class:`EdgevidError` naming it when it is larger
    than ``limit`` bytes or not UTF-8 text. ``what`` names the kind of file in the message; ``hint`` (what was
    expected instead) follows the not-text error."""
    path = Path(path)
    size = path.stat().st_size
    if size > limit:
        raise EdgevidError(f"{path}: {size / 2**20:.1f} MiB is more than a {what} may be ({limit / 2**20:g} MiB)")
    try:
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise EdgevidError(f"{path}: not a text {what} (byte {exc.start} is not UTF-8){hint}") from None

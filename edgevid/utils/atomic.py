"""Atomic file writes: a crash or Ctrl-C never leaves a half-written file under the final name.

Temporary files and folders are named ``.NAME.tmp-PID-XXXX`` beside the output ``NAME`` (:func:`temp_prefix`):
a process that is killed (SIGKILL, power loss) cannot remove its own, and the next command that writes into the
same folder removes those whose process is gone (:func:`remove_stale_temporaries`); temporaries of processes that
still run are left alone.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from edgevid.utils.console import err_console

_UMASK = os.umask(0)
os.umask(_UMASK)
_TEMPORARY = re.compile(r"^\..+\.tmp-(?:(\d+)-)?")


def temp_prefix(name: str) -> str:
    """The name prefix of a temporary file or folder for the output ``name``: ``.NAME.tmp-PID-``."""
    return f".{name}.tmp-{os.getpid()}-"


@contextlib.contextmanager
def temp_dir(beside: str | os.PathLike, name: str) -> Iterator[Path]:
    """A scratch folder ``.NAME.tmp-PID-*`` in the folder ``beside``, removed when the block ends."""
    with tempfile.TemporaryDirectory(prefix=temp_prefix(name), dir=beside) as work:
        yield Path(work)


def _alive(pid: int) -> bool:
    if pid == os.getpid():  # called before this process writes there: its own temporaries are left from before
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def stale_temporaries(folder: str | os.PathLike) -> list[Path]:
    """Temporary files and folders in ``folder`` whose writer is gone (a PID that no longer runs, or a name
    without a PID from an older edgevid)."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    stale = []
    for path in sorted(folder.iterdir()):
        match = _TEMPORARY.match(path.name)
        if match and not (match.group(1) and _alive(int(match.group(1)))):
            stale.append(path)
    return stale


def remove_stale_temporaries(folder: str | os.PathLike) -> list[Path]:
    """Remove what :func:`stale_temporaries` finds in ``folder`` and say so on stderr (one line); returns it."""
    stale = stale_temporaries(folder)
    for path in stale:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
    if stale:
        err_console.print(f"removed {len(stale)} temporary file(s) a killed process left in {folder}: "
                          f"{', '.join(p.name for p in stale)}", highlight=False, soft_wrap=True, markup=False)
    return stale


@contextlib.contextmanager
def atomic_path(final: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``final``; rename it onto ``final`` only if the block succeeds.

    ``suffix`` keeps the temporary name's extension for writers that infer the format from it.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(
        prefix=temp_prefix(final.name), suffix=suffix if suffix is not None else final.suffix, dir=final.parent
    )
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        if tmp_path.exists():
            os.chmod(tmp_path, 0o666 & ~_UMASK)
        os.replace(tmp_path, final)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        raise


@contextlib.contextmanager
def atomic_dir(final: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary directory beside ``final``; it replaces ``final`` only if the block succeeds."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=temp_prefix(final.name), dir=final.parent))
    try:
        yield tmp
        os.chmod(tmp, 0o777 & ~_UMASK)
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def write_json_atomic(path: str | os.PathLike, data: Any) -> Path:
    return write_text_atomic(path, json.dumps(data, indent=2, default=_json_default) + "\n")


def _json_default(obj: Any) -> Any:
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "item"):
        return obj.item()
    if hasattr(obj, "tolist"):
        return obj.tolist()
    raise TypeError(f"cannot serialise {type(obj).__name__} to JSON")

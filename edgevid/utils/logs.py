"""Log lines of the libraries underneath edgevid: libav (inside PyAV and OpenCV) and ONNX Runtime.

They never go raw onto the terminal, where they would land in the middle of progress bars. By default only their
errors pass (the error edgevid raises names the cause); with ``edgevid --verbose`` PyAV's libav warnings go to
Python logging (the ``libav`` logger, printed to stderr as ``libav.CODEC: message``), ONNX Runtime sessions log
warnings, and OpenCV's FFmpeg prints its errors as FFmpeg does (it has no hook into Python logging).
"""

from __future__ import annotations

import logging
import os
import sys

_state = {"verbose": False}
_HANDLER = logging.StreamHandler(sys.stderr)
_HANDLER.setFormatter(logging.Formatter("%(name)s: %(message)s"))


def quiet_libraries(verbose: bool | None = None) -> None:
    """Route the libraries' log lines (module docstring); ``verbose`` None keeps the current setting.

    OpenCV reads its FFmpeg log level when it first opens a video, so this runs before any decoding: from the
    CLI's ``--verbose`` flag and on import of :mod:`edgevid.data.decode` (which imports PyAV and OpenCV; until
    then only the setting is kept, so commands that decode nothing do not load them).
    """
    if verbose is not None:
        _state["verbose"] = verbose
    verbose = _state["verbose"]
    if verbose:
        os.environ.pop("OPENCV_FFMPEG_LOGLEVEL", None)
    else:
        os.environ["OPENCV_FFMPEG_LOGLEVEL"] = "-8"  # AV_LOG_QUIET
    libav = logging.getLogger("libav")
    libav.setLevel(logging.WARNING if verbose else logging.ERROR)
    libav.propagate = not verbose
    if verbose and _HANDLER not in libav.handlers:
        libav.addHandler(_HANDLER)
    elif not verbose:
        libav.removeHandler(_HANDLER)
    av_logging = sys.modules.get("av.logging")
    if av_logging is not None:  # PyAV's default is None: libav's own printing off, errors still raise their cause
        av_logging.set_level(av_logging.WARNING if verbose else None)
    cv2 = sys.modules.get("cv2")
    if cv2 is not None:
        levels = cv2.utils.logging
        levels.setLogLevel(levels.LOG_LEVEL_WARNING if verbose else levels.LOG_LEVEL_ERROR)


def ort_log_severity() -> int:
    """ONNX Runtime's log severity for a session (0 verbose ... 3 error): warnings with ``--verbose``."""
    return 2 if _state["verbose"] else 3

"""Writing synthetic videos: H.264 .mp4, MPEG-4 Part 2 .avi or Motion-JPEG .mkv via PyAV, atomically."""

from __future__ import annotations

import fractions
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np

from edgevid.utils.atomic import atomic_path


@dataclass(frozen=True)
class Codec:
    """One codec/container pair the generator writes."""

    name: str
    container: str  # FFmpeg muxer
    suffix: str
    encoder: str
    pix_fmt: str


CODECS = {
    "h264": Codec("h264", "mp4", ".mp4", "libx264", "yuv420p"),
    "mpeg4": Codec("mpeg4", "avi", ".avi", "mpeg4", "yuv420p"),
    "mjpeg": Codec("mjpeg", "matroska", ".mkv", "mjpeg", "yuvj420p"),
}


def write_video(path: str | Path, frames: Iterable[np.ndarray], fps: float, *, crf: int = 23,
                preset: str = "superfast", gop: int | None = None, pts: Sequence[int] | None = None,
                time_base: fractions.Fraction | None = None, codec: str = "h264", qscale: int = 6) -> Path:
    """Encode uint8 RGB frames [H, W, 3] (even H and W) atomically; ``codec`` is a key of :data:`CODECS`.

    The container is the codec's (MP4 for H.264, as always, whatever the file is named: tests name some .avi).

    H.264 (.mp4, yuv420p) uses ``crf``/``preset``; MPEG-4 (.avi) and MJPEG (.mkv) the fixed quantiser
    ``qscale`` (2-31, lower is better; 6 gives about H.264 crf 23's PSNR on the synthetic videos).
    ``pts`` with ``time_base`` give each frame its own timestamp (variable frame rate); ``gop`` sets the
    keyframe interval (the encoder's default otherwise).
    """
    spec = CODECS[codec]
    path = Path(path)
    with atomic_path(path) as tmp:
        container = av.open(str(tmp), mode="w", format=spec.container)
        try:
            stream = None
            for i, frame in enumerate(frames):
                if stream is None:
                    height, width = frame.shape[:2]
                    if height % 2 or width % 2:
                        raise ValueError(f"{spec.pix_fmt} needs even frame sizes, got {width}x{height}")
                    stream = container.add_stream(spec.encoder, rate=fractions.Fraction(fps).limit_denominator(1001))
                    stream.width, stream.height, stream.pix_fmt = width, height, spec.pix_fmt
                    stream.codec_context.thread_count = 1
                    if codec == "h264":
                        stream.options = {"preset": preset, "crf": str(crf), **({"g": str(gop)} if gop else {})}
                    else:  # a fixed quantiser: qmin = qmax
                        stream.codec_context.qmin = stream.codec_context.qmax = qscale
                        if gop:
                            stream.codec_context.gop_size = gop
                    if time_base is not None:
                        stream.time_base = stream.codec_context.time_base = time_base
                video_frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
                if pts is not None:
                    video_frame.pts, video_frame.time_base = int(pts[i]), time_base
                container.mux(stream.encode(video_frame))
            if stream is None:
                raise ValueError("write_video got no frames")
            container.mux(stream.encode(None))
        finally:
            container.close()
    return path

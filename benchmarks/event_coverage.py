"""How much of each video's event (its motion or fade) the clips of a sampling setting see, per synth style.

    .venv/bin/python -m benchmarks.event_coverage [--styles photo wild] [--clips 4x1.28 4x2.56 4x3.0 8seg ...]

A ``wild`` video lasts 1.5-6 s and its motion 1.2-2.4 s of it (``photo``: 1.92 s videos, the motion most of it), so
a clip of fixed duration centred in the video, as training validates, can miss the motion that names the class.
``synth.json`` records each video's event window (``event_s``); for every val video of the style's default set
(``runs/bench/synth-<style>``, the sets ``bench_generalise`` trains on) and each clip setting, coverage is the
share of the event's duration between the clip's first and last frame (frame i at i / fps). A setting is
``FxS`` (F frames over S seconds, dense, as ``data.frames`` and ``data.clip_seconds``) or ``Fseg`` (F uniform
segments over the whole video). Reported per style and setting: mean coverage and the share of videos with
coverage under 25% and under 50%, for the centre clip and for the best of the 3 clips ``edgevid eval --views 3x1``
takes (it averages their scores, so the best of 3 is an upper bound). Computed from the data, no training:
results in ``benchmarks/results/<machine>/event_coverage.*``.

``--trimmed OUT`` also writes list files of a style's videos (``--trim-style``, default wild) trimmed to their
events (``OUT/{train,val}.csv`` with ``start,end`` columns: the event window, widened to at least
``--min-seconds`` within the video), so that ``edgevid train -d OUT`` shows what a model learns when every clip
holds the motion.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.bench_generalise import style_data
from benchmarks.common import machine_info, write_results
from edgevid.data.sampling import video_stride, view_indices
from edgevid.utils.atomic import write_text_atomic
from edgevid.utils.console import console, make_table

COLUMNS = ["style", "clip", "videos", "centre_mean", "centre_under_25", "centre_under_50", "best_of_3_mean",
           "best_of_3_under_25", "best_of_3_under_50"]
DEFAULT_CLIPS = ["4x1.28", "4x2.0", "4x2.56", "4x3.0", "8x2.56", "4seg", "8seg"]


def parse_clip(text: str) -> tuple[int, float | None]:
    """``"4x1.28"`` -> (4, 1.28) dense; ``"8seg"`` -> (8, None) segments."""
    try:
        if text.endswith("seg"):
            return int(text[:-3]), None
        frames, seconds = text.split("x")
        return int(frames), float(seconds)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected FRAMESxSECONDS (e.g. 4x1.28) or FRAMESseg") from None


def coverage(indices: np.ndarray, fps: float, event: tuple[float, float]) -> float:
    """Share of the ``event`` window (seconds) between the first and last of a clip's frame ``indices``."""
    first, last = indices.min() / fps, indices.max() / fps
    start, end = event
    return max(0.0, min(last, end) - max(first, start)) / max(end - start, 1e-9)


def style_rows(style: str, clips: list[str]) -> list[dict[str, Any]]:
    meta = json.loads((style_data(style) / "synth.json").read_text())
    videos = [v for path, v in meta["videos"].items() if path.startswith("val/")]
    rows = []
    for clip in clips:
        frames, seconds = parse_clip(clip)
        mode = "dense" if seconds is not None else "segments"
        centre, best = [], []
        for video in videos:
            stride = video_stride(1.0, frames, video["fps"], seconds, video["frames"]) if seconds else 1.0
            views = [coverage(i, video["fps"], video["event_s"])
                     for i in view_indices(video["frames"], frames, stride, mode, 3)]
            centre.append(coverage(view_indices(video["frames"], frames, stride, mode, 1)[0], video["fps"],
                                   video["event_s"]))
            best.append(max(views))
        centre_a, best_a = np.array(centre), np.array(best)
        rows.append({"style": style, "clip": clip, "videos": len(videos),
                     **{f"{name}_{key}": round(100 * float(value), 1)
                        for name, values in (("centre", centre_a), ("best_of_3", best_a))
                        for key, value in (("mean", values.mean()), ("under_25", np.mean(values < 0.25)),
                                           ("under_50", np.mean(values < 0.5)))}})
    return rows


def write_trimmed(root: Path, out: Path, min_seconds: float) -> Path:
    """List files of the synth set in ``root`` with each video cut to its event window (at least ``min_seconds``)."""
    meta = json.loads((root / "synth.json").read_text())
    out.mkdir(parents=True, exist_ok=True)
    for split in ("train", "val"):
        lines = ["path,label,start,end"]
        for path, video in meta["videos"].items():
            if not path.startswith(f"{split}/"):
                continue
            duration = video["frames"] / video["fps"]
            start, end = video["event_s"]
            width = min(max(end - start, min_seconds), duration)
            start = min(max(0.0, (start + end - width) / 2), duration - width)
            lines.append(f"{(root / path).resolve()},{path.split('/')[1]},{start:.3f},{start + width:.3f}")
        write_text_atomic(out / f"{split}.csv", "\n".join(lines) + "\n")
    write_text_atomic(out / "classes.txt", "".join(f"{name}\n" for name in meta["classes"]))
    write_text_atomic(out / "mirror_classes.txt", "".join(f"{a}, {b}\n" for a, b in meta["mirror_classes"]))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--styles", nargs="+", default=["photo", "wild"], choices=["photo", "wild"])
    parser.add_argument("--clips", nargs="+", default=DEFAULT_CLIPS, help="Settings: FxS (dense) or Fseg.")
    parser.add_argument("--trimmed", type=Path, default=None, metavar="OUT",
                        help="Also write list files of --trim-style's videos trimmed to their events here.")
    parser.add_argument("--trim-style", default="wild", choices=["photo", "wild"], help="The style --trimmed cuts.")
    parser.add_argument("--min-seconds", type=float, default=1.28, help="Shortest trimmed segment (--trimmed).")
    args = parser.parse_args()
    for clip in args.clips:
        try:
            parse_clip(clip)
        except argparse.ArgumentTypeError as exc:
            parser.error(f"--clips: {exc}")
    rows = [row for style in args.styles for row in style_rows(style, args.clips)]
    notes = ("Coverage (%): the share of a val video's event (its motion, or fade) between a clip's first and last "
             "frame; centre: the one centred clip training validates on; best_of_3: the best of the 3 clips of "
             "`edgevid eval --views 3x1` (an upper bound: eval averages them). under_25 / under_50: % of videos "
             "whose clip sees less than a quarter / half of the event. FxS: F frames over S seconds (dense); Fseg: "
             "F segments over the whole video.")
    write_results("event_coverage", rows, machine_info(), notes=notes, columns=COLUMNS)
    console.print(make_table(rows, COLUMNS, title="event coverage of sampled clips (val videos)"))
    if args.trimmed is not None:
        out = write_trimmed(style_data(args.trim_style), args.trimmed, args.min_seconds)
        console.print(f"{args.trim_style} videos trimmed to their events: edgevid train -d {out}", highlight=False)


if __name__ == "__main__":
    main()

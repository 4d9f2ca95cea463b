"""Is a synth dataset's motion in its decoded pixels? A hand-written optical-flow rule, no training.

    .venv/bin/python -m benchmarks.synth_motion_check DATA [--split val]   (from the repo root)

For every translation and rotation video of DATA's split (an ``edgevid data synth`` output of any style) it
decodes 9 frames spread over the video, computes Farneback optical flow between neighbours, subtracts the median
flow (the camera's motion), keeps the 10 % of pixels moving most and calls the class from their mean flow
(left/right/up/down) or its curl (clockwise/anticlockwise). Prints right/total per class. A score near 100 %
says the classes are visible in the pixels, so a model that stays at chance has not learnt them yet.
"""

from __future__ import annotations

import argparse
import itertools
from pathlib import Path

import cv2
import numpy as np

from edgevid.data import probe, read_clip


def flow_guess(frames: np.ndarray, label: str) -> str:
    """The translation or rotation class the relative optical flow of ``frames`` [T, H, W, 3] points to."""
    gray = [cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY) for frame in frames]
    mean_x = mean_y = curl = 0.0
    for a, b in itertools.pairwise(gray):
        flow = cv2.calcOpticalFlowFarneback(a, b, None, 0.5, 3, 15, 3, 5, 1.2, 0)
        relative = flow - np.median(flow.reshape(-1, 2), axis=0)
        magnitude = np.linalg.norm(relative, axis=2)
        ys, xs = np.nonzero(magnitude > np.percentile(magnitude, 90))
        mean_x += float(relative[ys, xs, 0].mean())
        mean_y += float(relative[ys, xs, 1].mean())
        dx, dy = xs - xs.mean(), ys - ys.mean()
        curl += float(np.sum(dx * relative[ys, xs, 1] - dy * relative[ys, xs, 0]))
    if label.startswith("rotate_"):
        return "rotate_clockwise" if curl > 0 else "rotate_anticlockwise"
    if abs(mean_x) > abs(mean_y):
        return "move_right" if mean_x > 0 else "move_left"
    return "move_down" if mean_y > 0 else "move_up"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path)
    parser.add_argument("--split", default="val")
    args = parser.parse_args()
    rows = [line.split(",") for line in (args.data / f"{args.split}.csv").read_text().splitlines()[1:]]
    hits: dict[str, list[bool]] = {}
    for path, label in rows:
        if label.startswith(("move_", "rotate_")):
            count = probe(args.data / path).num_frames
            frames = read_clip(args.data / path, np.linspace(0, count - 1, 9).round().astype(int))
            hits.setdefault(label, []).append(flow_guess(frames, label) == label)
    for label, right in hits.items():
        print(f"{label}: {sum(right)}/{len(right)}")
    print(f"all: {sum(map(sum, hits.values()))}/{sum(map(len, hits.values()))}")


if __name__ == "__main__":
    main()

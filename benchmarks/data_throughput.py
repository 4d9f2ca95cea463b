"""Data pipeline speed: synth generation, decode + augment throughput, next to the X3D-XS training step rate.

    .venv/bin/python -m benchmarks.data_throughput [--data DIR] [--workers 2] [--epochs 3]   (from the repo root)

Without ``--data`` it first generates ``edgevid data synth`` defaults into a temporary folder (timed). Then,
for X3D-XS inputs (4 frames at stride 12, dense sampling, ``--size`` 112 as in ``recipes/x3d_xs.yaml``; the
paper's 160 with ``--size 160``) it measures, per augmentation setting:
CPU milliseconds per clip in one process (decode only, and decode + augment + normalise), and clips/s of the
real ``build_loader`` with ``--workers`` workers (median over epochs after a warm-up epoch). Finally it times
X3D-XS training steps (forward + backward + SGD, batch 16, 8 classes, 2 threads) on random clips and reports
the ratio of loader clips/s to training clips/s. Results: ``benchmarks/results/<machine>/data_throughput.*``.
"""

from __future__ import annotations

import argparse
import resource
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks.common import machine_info, write_results
from edgevid.data import AugmentConfig, VideoReader, build_dataset, build_loader
from edgevid.data.sampling import train_indices
from edgevid.data.synth import SynthConfig, generate_synth
from edgevid.models import create_model, get_spec

FRAMES, STRIDE, BATCH = 4, 12, 16
MIRRORS = [("move_left", "move_right"), ("rotate_clockwise", "rotate_anticlockwise")]
SETTINGS = {
    "recipe: crop+flip+stride jitter": AugmentConfig(scale=(0.5, 1.0), mirror_classes=MIRRORS, stride_jitter=0.15),
    "+ colour jitter 0.4 + RandAugment(2, 9)": AugmentConfig(scale=(0.5, 1.0), mirror_classes=MIRRORS,
                                                            stride_jitter=0.15, color_jitter=0.4,
                                                            randaugment=(2, 9)),
}


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def time_synth(out: Path, workers: int) -> dict:
    wall, cpu, children = time.perf_counter(), time.process_time(), _children_cpu()
    summary = generate_synth(out, SynthConfig(), workers=workers, show_progress=False)
    return {"videos": sum(summary["counts"].values()), "wall_s": time.perf_counter() - wall,
            "cpu_s": time.process_time() - cpu + _children_cpu() - children, "workers": workers}


def cpu_ms_per_clip(dataset, count: int, decode_only: bool) -> float:
    rng = np.random.default_rng(0)
    start = time.process_time()
    for i in range(count):
        sample = dataset.samples[i % len(dataset)]
        if decode_only:
            with VideoReader(sample.path) as video:
                video.read(train_indices(video.info.num_frames, FRAMES, STRIDE, "dense", rng))
        else:
            dataset.load(i % len(dataset))
    return (time.process_time() - start) / count * 1e3


def loader_clips_per_s(dataset, workers: int, epochs: int) -> float:
    loader = build_loader(dataset, BATCH, shuffle=True, workers=workers, seed=0, drop_last=False)
    rates = []
    for epoch in range(epochs + 1):
        start, clips = time.perf_counter(), 0
        for _clips, labels, _ in loader:
            clips += len(labels)
        if epoch:  # epoch 0 starts the workers
            rates.append(clips / (time.perf_counter() - start))
    del loader
    return statistics.median(rates)


def train_clips_per_s(steps: int, threads: int, size: int) -> float:
    torch.set_num_threads(threads)
    model = create_model("x3d_xs", num_classes=8).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    clips, labels = torch.randn(BATCH, 3, FRAMES, size, size), torch.randint(0, 8, (BATCH,))
    times = []
    for step in range(steps + 1):
        start = time.perf_counter()
        loss = torch.nn.functional.cross_entropy(model(clips), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step >= 1:
            times.append(time.perf_counter() - start)
    return BATCH / statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, help="synth dataset (default: generate one, timed)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--size", type=int, default=112, help="crop size (recipes/x3d_xs.yaml: 112)")
    parser.add_argument("--train-steps", type=int, default=3)
    args = parser.parse_args()
    info = machine_info()
    spec = get_spec("x3d_xs")
    scratch = None
    synth = None
    if args.data is None:
        scratch = Path(tempfile.mkdtemp(prefix="edgevid-synth-"))
        args.data = scratch / "synth"
        synth = time_synth(args.data, args.workers)
        print(f"synth defaults: {synth['videos']} videos in {synth['wall_s']:.1f} s wall, {synth['cpu_s']:.1f} s CPU",
              flush=True)
    try:
        rows = []
        train_rate = train_clips_per_s(args.train_steps, threads=2, size=args.size)
        print(f"x3d_xs training: {train_rate:.1f} clips/s", flush=True)
        for name, augment in SETTINGS.items():
            dataset = build_dataset(args.data, "train", frames=FRAMES, size=args.size, sampling_stride=STRIDE,
                                    mean=spec.mean, std=spec.std, train=True, augment=augment)
            decode_ms = cpu_ms_per_clip(dataset, 120, decode_only=True)
            total_ms = cpu_ms_per_clip(dataset, 120, decode_only=False)
            rate = loader_clips_per_s(dataset, args.workers, args.epochs)
            rows.append({"augment": name, "decode_cpu_ms": decode_ms, "decode_augment_cpu_ms": total_ms,
                         "loader_workers": args.workers, "loader_clips_s": rate, "x3d_xs_train_clips_s": train_rate,
                         "loader_over_train": rate / train_rate})
            print(rows[-1], flush=True)
    finally:
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)
    synth_note = (f"`edgevid data synth` defaults ({synth['videos']} videos, 48 frames, 128x128, {synth['workers']} "
                  f"workers): {synth['wall_s']:.1f} s wall, {synth['cpu_s']:.1f} s CPU in all.\n\n") if synth else ""
    notes = (
        synth_note
        + f"X3D-XS inputs: {FRAMES} frames x {args.size}, stride {STRIDE}, dense random clips from the 128x128 synth "
        f"train split (480 videos), batch {BATCH}. CPU ms per clip are measured in one process; loader clips/s is the "
        f"median epoch of `build_loader` with {args.workers} workers after a warm-up epoch. The training rate is "
        "forward + backward + SGD of x3d_xs (8 classes) on random clips with 2 torch threads, measured alone. "
        "On a 2-core machine the loader and training share the cores: the CPU cost per clip says what share the "
        "data takes at the training rate. The machine is shared with other jobs: timings are noisy."
    )
    columns = ["augment", "decode_cpu_ms", "decode_augment_cpu_ms", "loader_workers", "loader_clips_s",
               "x3d_xs_train_clips_s", "loader_over_train"]
    name = "data_throughput" if args.size == 112 else f"data_throughput_{args.size}"
    paths = write_results(name, rows, info, notes=notes, columns=columns)
    print("wrote", *paths)


if __name__ == "__main__":
    main()

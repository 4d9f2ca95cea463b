"""Data pipeline speed: synth generation, decode + augment throughput, next to the X3D-XS training step rate.

    .venv/bin/python -m benchmarks.data_throughput [--data DIR] [--workers 2] [--batches 30]   (from the repo root)

Without ``--data`` it first generates ``edgevid data synth`` defaults into a temporary folder (timed). The clips
are those of ``recipes/x3d_xs.yaml`` (frames, crop size, sampling stride and augmentation; ``key=value``
overrides as for ``edgevid train``, e.g. ``data.size=160``). Per augmentation setting (the recipe's, then the
recipe's plus colour jitter and RandAugment) it measures CPU milliseconds per clip in one process (decode only,
and decode + augment + normalise) and clips/s of the real training loader with ``--workers`` workers; then it
times X3D-XS training steps on one batch in memory (the same measurement as ``benchmarks.bench_training``) and
reports the ratio. Results: ``benchmarks/results/<machine>/data_throughput.*``.
"""

from __future__ import annotations

import argparse
import resource
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.bench_training import RECIPES, loader_clips_per_s, recipe_dataset, step_clips_per_s
from benchmarks.common import machine_info, write_results
from edgevid.data import VideoReader
from edgevid.data.sampling import train_indices
from edgevid.data.synth import SynthConfig, generate_synth
from edgevid.train import load_recipe
from edgevid.train.recipe import Recipe

HEAVY_AUGMENT = ("data.augment.color_jitter=0.4", "data.augment.randaugment=[2,9]")


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def time_synth(out: Path, workers: int) -> dict:
    wall, cpu, children = time.perf_counter(), time.process_time(), _children_cpu()
    summary = generate_synth(out, SynthConfig(), workers=workers, show_progress=False)
    return {"videos": sum(summary["counts"].values()), "wall_s": time.perf_counter() - wall,
            "cpu_s": time.process_time() - cpu + _children_cpu() - children, "workers": workers}


def cpu_ms_per_clip(recipe: Recipe, dataset, count: int, decode_only: bool) -> float:
    """CPU ms per training clip of ``dataset`` (the recipe's) in this process: decoding the sampled frames only,
    or the whole dataset item."""
    rng = np.random.default_rng(0)
    start = time.process_time()
    for i in range(count):
        if decode_only:
            with VideoReader(dataset.samples[i % len(dataset)].path) as video:
                video.read(train_indices(video.info.num_frames, recipe.data.frames, recipe.data.sampling_stride,
                                         recipe.data.sampling, rng))
        else:
            dataset.load(i % len(dataset))
    return (time.process_time() - start) / count * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, help="synth dataset (default: generate one, timed)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batches", type=int, default=30, help="Loader batches timed per setting.")
    parser.add_argument("--train-steps", type=int, default=5)
    parser.add_argument("overrides", nargs="*", help="key=value overrides of recipes/x3d_xs.yaml")
    args = parser.parse_args()
    info = machine_info()
    recipes = {
        "recipe: crop+flip+stride jitter": load_recipe(RECIPES / "x3d_xs.yaml", args.overrides).resolved(),
        "+ colour jitter 0.4 + RandAugment(2, 9)":
            load_recipe(RECIPES / "x3d_xs.yaml", [*args.overrides, *HEAVY_AUGMENT]).resolved(),
    }
    base = next(iter(recipes.values()))
    scratch = synth = None
    if args.data is None:
        scratch = Path(tempfile.mkdtemp(prefix="edgevid-synth-"))
        args.data = scratch / "synth"
        synth = time_synth(args.data, args.workers)
        print(f"synth defaults: {synth['videos']} videos in {synth['wall_s']:.1f} s wall, {synth['cpu_s']:.1f} s CPU",
              flush=True)
    try:
        train_rate = step_clips_per_s(base, args.data, args.train_steps)
        print(f"x3d_xs training: {train_rate:.1f} clips/s", flush=True)
        rows = []
        for name, recipe in recipes.items():
            rate = loader_clips_per_s(recipe, args.data, args.workers, args.batches)
            dataset = recipe_dataset(recipe, args.data)
            rows.append({"augment": name, "decode_cpu_ms": cpu_ms_per_clip(recipe, dataset, 120, decode_only=True),
                         "decode_augment_cpu_ms": cpu_ms_per_clip(recipe, dataset, 120, decode_only=False),
                         "loader_workers": args.workers, "loader_clips_s": rate, "x3d_xs_train_clips_s": train_rate,
                         "loader_over_train": rate / train_rate})
            print(rows[-1], flush=True)
    finally:
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)
    cfg = base.data
    synth_note = (f"`edgevid data synth` defaults ({synth['videos']} videos, 48 frames, 128x128, {synth['workers']} "
                  f"workers): {synth['wall_s']:.1f} s wall, {synth['cpu_s']:.1f} s CPU in all.\n\n") if synth else ""
    notes = (
        synth_note
        + f"Clips of `recipes/x3d_xs.yaml`{' with ' + ', '.join(args.overrides) if args.overrides else ''}: "
        f"{cfg.frames} frames x {cfg.size}, {cfg.sampling} sampling at stride {cfg.sampling_stride}, batch "
        f"{base.train.batch_size}, from the synth train split. CPU ms per clip are measured in one process; loader "
        f"clips/s: {args.batches} batches of the training loader with {args.workers} workers after its first batch. "
        "The training rate is forward + backward + optimiser step of x3d_xs (the recipe's optimiser) on one batch in "
        "memory, measured alone. On a 2-core machine the loader and training share the cores: the CPU cost per clip "
        "says what share the data takes at the training rate. The machine is shared with other jobs: timings are "
        "noisy."
    )
    columns = ["augment", "decode_cpu_ms", "decode_augment_cpu_ms", "loader_workers", "loader_clips_s",
               "x3d_xs_train_clips_s", "loader_over_train"]
    paths = write_results("data_throughput", rows, info, notes=notes, columns=columns)
    print("wrote", *paths)


if __name__ == "__main__":
    main()

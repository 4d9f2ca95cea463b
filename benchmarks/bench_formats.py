"""Formats study: ``edgevid bench`` on the demo's trained X3D-XS, every target x precision at batch 1 and 4.

Needs a finished ``make demo`` (its run, data and calibration manifest; its INT8 artifacts are reused rather than
quantized again). Results go to ``benchmarks/results/<machine>/formats.{json,csv,md,png}``; the exported
artifacts to ``<demo>/bench_formats/``. Usage::

    .venv/bin/python -m benchmarks.bench_formats [--demo demo_out] [--seconds 10] [--batch 1,4] [--threads 2]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from benchmarks.common import results_dir
from edgevid.bench import bench, parse_list
from edgevid.errors import EdgevidError
from edgevid.utils.console import console

NOTES = """\
Latency is per call of `batch` clips (p50/p95/p99 over up to `iters` calls within `max_seconds`); FPS = clips/s =
batch x 1000 / p50. Each row runs in a fresh process: peak RSS includes the Python runtime and the libraries
`edgevid.runtime` imports (PyTorch among them) for every row. Top-1 is on the demo's synthetic val split. The
machine is a shared, noisy 2-core VM: compare rows of the same run, not absolute numbers across runs. TensorRT is
not installed here (no CUDA GPU): its rows are `unavailable`; see benchmarks/JETSON.md."""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--demo", type=Path, default=Path("demo_out"), help="Output folder of `make demo`.")
    parser.add_argument("--seconds", type=float, default=10.0, help="Time box of each row's timing loop.")
    parser.add_argument("--iters", type=int, default=200, help="Most timed calls per row.")
    parser.add_argument("--batch", default="1,4", help="Comma-separated batch sizes.")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads per backend.")
    args = parser.parse_args()
    run, data = args.demo / "run", args.demo / "data"
    if not (run / "best.pt").is_file() or not data.is_dir():
        raise SystemExit(f"{args.demo}: no finished demo (run/best.pt and data/); run `make demo` first")
    calib = args.demo / "calibration.json"
    int8 = sorted((args.demo / "artifacts").glob("*int8*.xml")) + sorted((args.demo / "artifacts").glob("*int8*.onnx"))
    directory = results_dir("formats")
    try:
        result = bench(run, args.demo / "bench_formats", batches=[int(b) for b in parse_list(args.batch)], data=data,
                       calib=calib if calib.is_file() else None, artifacts=int8, iters=args.iters,
                       max_seconds=args.seconds, threads=args.threads, notes=NOTES,
                       json=directory / "formats.json", csv=directory / "formats.csv", md=directory / "formats.md",
                       plot=directory / "formats.png")
    except EdgevidError as exc:
        raise SystemExit(f"error: {exc}") from None
    result.print(console)
    console.print("wrote " + ", ".join(str(p) for p in result.files.values()), highlight=False, soft_wrap=True)


if __name__ == "__main__":
    main()

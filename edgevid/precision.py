"""The one table of precisions: what each runs on every backend, its parity tolerance, and the OpenVINO setting.

``fp32`` is FP32 arithmetic everywhere (OpenVINO is told ``INFERENCE_PRECISION_HINT=f32``: its CPU plugin would
otherwise compute in BF16 on CPUs with AVX512_BF16 or AMX, and in FP16 on some ARM CPUs). ``bf16`` runs BF16
arithmetic where the hardware has it and is an error elsewhere. ``fp16`` halves the weights everywhere and computes
in FP16 where the device has FP16 arithmetic. ``int8`` runs quantized layers in INT8; the layers left in float
compute in FP32, as the accuracy guard measured them.
"""

from __future__ import annotations

from dataclasses import dataclass

from edgevid.errors import EdgevidError
from edgevid.utils.machine import cpu_features


@dataclass(frozen=True)
class Precision:
    """A precision: its parity tolerance (max |logit diff| / max(1, max |logit|)) and OpenVINO hint."""

    name: str
    tolerance: float
    openvino_hint: str
    summary: str


PRECISIONS: dict[str, Precision] = {p.name: p for p in (
    Precision("fp32", 1e-3, "f32", "FP32 weights and arithmetic"),
    Precision("fp16", 5e-2, "f16", "FP16 weights; FP16 arithmetic where the device has it, else FP32"),
    Precision("bf16", 6e-2, "bf16", "BF16 arithmetic (AVX512_BF16/AMX CPUs, Ampere+ GPUs); FP32 weights"),
    Precision("int8", 2.5e-1, "f32", "INT8 quantized layers (Q/DQ or FakeQuantize); float layers in FP32"),
)}
PRECISION_NAMES = tuple(PRECISIONS)

# Which requested precisions each backend runs an artifact of a given precision in: (backend, artifact) -> runs.
RUNS_AS: dict[str, dict[str, tuple[str, ...]]] = {
    "torch": {"fp32": ("fp32", "bf16")},
    "onnxruntime": {"fp32": ("fp32",), "fp16": ("fp16",), "int8": ("int8",)},
    "openvino": {"fp32": ("fp32", "bf16", "fp16"), "fp16": ("fp16", "fp32", "bf16"), "bf16": ("bf16", "fp32"),
                 "int8": ("int8",)},
    "tensorrt": {"fp32": ("fp32",), "fp16": ("fp16",), "int8": ("int8",)},
}
NO_BF16 = {
    "onnxruntime": "ONNX Runtime's CPU provider has no BF16 convolution kernels; use --target openvino for BF16",
    "tensorrt": "edgevid builds TensorRT engines in fp32, fp16 or int8; BF16 engines are not supported",
}


def get_precision(name: str, option: str = "--precision") -> Precision:
    """The table row of ``name``; a clear error naming ``option`` otherwise."""
    if name not in PRECISIONS:
        raise EdgevidError(f"{option} {name!r} is not one of {', '.join(PRECISIONS)}")
    return PRECISIONS[name]


def cpu_has_bf16() -> bool:
    """Whether this CPU has BF16 arithmetic (AVX512_BF16 or AMX-BF16), read from /proc/cpuinfo."""
    return cpu_features()["bf16"]


def resolve_precision(backend: str, artifact_precision: str, requested: str | None, device: str, label: str) -> str:
    """The precision ``backend`` will run an artifact in: ``requested`` or the artifact's own.

    A combination the backend cannot run is a clear error naming ``label`` (the artifact): never a silent run in
    another precision.
    """
    precision = get_precision(requested or artifact_precision).name
    if precision == "bf16" and backend in NO_BF16:
        raise EdgevidError(f"{label}: bf16 is not available on {backend}: {NO_BF16[backend]}")
    runs = RUNS_AS.get(backend, {}).get(artifact_precision, (artifact_precision,))
    if precision not in runs:
        raise EdgevidError(f"{label}: a {artifact_precision} artifact runs on {backend} as "
                           f"{' or '.join(runs)}, not {precision}")
    if precision == "bf16" and backend == "torch" and device == "cpu" and not cpu_has_bf16():
        raise EdgevidError(f"{label}: bf16 needs a CPU with AVX512_BF16 or AMX; this one has no BF16 arithmetic "
                           f"(detected: {describe_cpu()})")
    return precision


def describe_cpu() -> str:
    """The CPU features that decide precisions, as detected: e.g. ``AVX2, AVX-512, VNNI, BF16, AMX, FP16``."""
    names = {"avx2": "AVX2", "avx512": "AVX-512", "vnni": "VNNI", "bf16": "BF16", "amx": "AMX", "fp16": "FP16",
             "neon": "NEON"}
    found = [label for key, label in names.items() if cpu_features().get(key)]
    return ", ".join(found) or "none of AVX2/AVX-512/VNNI/BF16/AMX/FP16/NEON"


__all__ = ["NO_BF16", "PRECISIONS", "PRECISION_NAMES", "RUNS_AS", "Precision", "cpu_has_bf16", "describe_cpu",
           "get_precision", "resolve_precision"]

"""Producing the artifact of each benchmarked format from a checkpoint, through the export API.

Per target (``export`` is :func:`edgevid.pipeline.export`: :func:`edgevid.export.export`, and INT8 from a float
checkpoint through ``quantize``):

- torch: fp32 and bf16 (autocast) run the checkpoint itself; fp16 and int8 are unavailable.
- onnx: ``export(.., "onnx", fp32|fp16)``; int8 ``export(.., "int8", calib=..)``; bf16 unavailable.
- openvino: ``export(.., "openvino", fp32|fp16|bf16)``; int8 through ``edgevid quantize``.
- trt: ``export(.., "trt", fp32|fp16)``; int8 from the Q/DQ ONNX, then the engine; bf16 unavailable.

bf16 is unavailable (with the reason) where the CPU has no BF16 arithmetic (:mod:`edgevid.precision`).

With ``streaming`` the streaming export (``export(.., streaming=True)``) is measured instead: torch and onnx in
fp32 (torch also bf16), openvino in fp32/fp16/bf16, trt built from the streaming ONNX; INT8 streaming is unavailable.

INT8 uses a calibration manifest: ``--calib``, else the run's own (``<run>/calibration.json``), else one built
from ``--data`` with the compression API. Where TensorRT cannot be imported, its rows are ``unavailable`` and
the fp32/fp16 rows carry the ``trtexec`` command that builds the engine on the device.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from edgevid.compress.calibration import Preprocessing, build_manifest
from edgevid.errors import EdgevidError
from edgevid.formats import BACKEND_TARGETS, EXPORT_TARGETS, FORMATS, TARGET_BACKENDS
from edgevid.formats import TARGETS as TARGETS  # re-exported: edgevid.bench.TARGETS
from edgevid.meta import ArtifactMeta, read_meta
from edgevid.pipeline import export
from edgevid.precision import resolve_precision
from edgevid.runtime import backend_for
from edgevid.runtime.openvino_backend import precision_hint
from edgevid.runtime.tensorrt_backend import tensorrt_module

SUFFIXES = {target: FORMATS[target].suffix for target in EXPORT_TARGETS}
RUN_CALIBRATION = "calibration.json"


class FormatUnavailable(EdgevidError):
    """This format cannot run on this machine (a missing package or device); ``command`` may say how to build
    it on the target device instead."""

    def __init__(self, message: str, command: str | None = None) -> None:
        super().__init__(message)
        self.command = command


@dataclass(frozen=True)
class Format:
    """One target x precision, and the artifact that runs it once prepared."""

    target: str
    precision: str

    @property
    def key(self) -> str:
        return f"{self.target}:{self.precision}"


def artifact_format(path: Path) -> Format:
    """The format of an existing artifact, from its backend and its metadata's precision."""

    return Format(BACKEND_TARGETS[backend_for(path).backend], read_meta(path).precision)


class FormatBuilder:
    """Turns a checkpoint into the artifact of each requested format under ``artifacts_dir``."""

    def __init__(self, checkpoint: Path, meta: ArtifactMeta, artifacts_dir: Path, *, data: Path | None,
                 calib: Path | None, calib_clips: int, streaming: bool, threads: int | None) -> None:
        self.checkpoint = checkpoint
        self.meta = meta
        self.artifacts_dir = artifacts_dir
        self.data = data
        self.calib = calib
        self.calib_clips = calib_clips
        self.streaming = streaming
        self.threads = threads

    def path_for(self, fmt: Format, suffix: str | None = None) -> Path:
        stream = ".stream" if self.streaming else ""
        return self.artifacts_dir / f"{self.meta.model}{stream}.{fmt.precision}{suffix or SUFFIXES[fmt.target]}"

    def build(self, fmt: Format) -> Path:
        """The artifact of ``fmt``; :class:`FormatUnavailable` when it cannot run here, any other error when
        producing it failed."""
        if fmt.precision == "bf16":
            self._check_bf16(fmt)
        if fmt.target == "torch":
            if fmt.precision not in ("fp32", "bf16"):
                raise FormatUnavailable("the torch backend runs checkpoints in FP32 or BF16 (autocast); FP16/INT8 "
                                        "run through the onnx, openvino and trt targets")
            return self.checkpoint
        if self.streaming and fmt.precision == "int8":
            raise FormatUnavailable("INT8 is not available for streaming exports; benchmark INT8 without --streaming")
        if fmt.target == "trt":
            return self._tensorrt(fmt)
        return self._export(self.checkpoint, fmt, streaming=self.streaming)

    @staticmethod
    def _check_bf16(fmt: Format) -> None:
        """:class:`FormatUnavailable`, with the runtime's own reason, where ``fmt`` cannot run BF16 here."""
        try:
            if fmt.target == "openvino":
                precision_hint("bf16", "CPU")
            else:
                resolve_precision(TARGET_BACKENDS[fmt.target], "fp32", "bf16", "cpu", fmt.key)
        except EdgevidError as exc:
            raise FormatUnavailable(str(exc)) from None

    def _export(self, source: Path, fmt: Format, **options) -> Path:
        if fmt.precision == "int8":
            options["calib"] = self.calibration()
        return export(source, fmt.target, fmt.precision, self.path_for(fmt), threads=self.threads,
                      **({} if options.get("streaming") else {"data": self.data}), **options).path

    def _tensorrt(self, fmt: Format) -> Path:
        """A TensorRT engine, from the streaming ONNX with ``streaming``; unavailable without TensorRT (the fp32
        and fp16 rows then carry the trtexec command for the device)."""

        source = self._export(self.checkpoint, Format("onnx", "fp32"), streaming=True) if self.streaming \
            else self.checkpoint
        trt, why = tensorrt_module()
        if trt is not None:
            return self._export(source, fmt)
        if fmt.precision == "int8":
            raise FormatUnavailable(f"tensorrt is not importable here ({why}); on the device run `edgevid "
                                    "quantize --target trt`, then `edgevid export --target trt --precision int8`")

        result = export(source, "trt", fmt.precision, self.path_for(fmt), onnx_only=True, threads=self.threads)
        raise FormatUnavailable(f"tensorrt is not importable here ({why}); the ONNX for the engine is "
                                f"{result.onnx_path or result.path}", command=result.command)

    def calibration(self) -> Path:
        """The calibration manifest for INT8: given, the run's own, or built from ``data`` once."""
        if self.calib is not None:
            return self.calib
        own = self.checkpoint.parent / RUN_CALIBRATION
        if own.is_file():
            self.calib = own
        elif self.data is not None:
            manifest, _ = build_manifest(self.data, self.calib_clips, Preprocessing.from_meta(self.meta),
                                         model=self.meta.model, classes=self.meta.classes, show_progress=False)
            self.calib = manifest.save(self.artifacts_dir / RUN_CALIBRATION)
        else:
            raise EdgevidError(f"INT8 needs a calibration set: {self.checkpoint.parent} has no {RUN_CALIBRATION}; "
                               "pass --calib MANIFEST or --data DIR to build one")
        return self.calib

"""Choosing and creating a backend: 'auto' takes the fastest one available here and says why."""

from __future__ import annotations

import importlib.util
import logging
from dataclasses import replace
from typing import List, Optional, Tuple

from .base import BackendError, InferenceBackend, ModelSpec

LOG = logging.getLogger(__name__)
BACKENDS = ("tensorrt", "onnxruntime", "torch")


def cpu_has_bf16() -> bool:
    """True when the CPU has AMX-BF16 or AVX512-BF16 (bf16 is then faster than fp32, not emulated)."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = f.read()
    except OSError:
        return False
    return "amx_bf16" in flags or "avx512_bf16" in flags


def cuda_available() -> bool:
    try:
        import torch

        return bool(torch.cuda.is_available())
    except Exception:  # torch missing or broken CUDA install
        return False


def checkpoint_has_int8(spec: ModelSpec) -> bool:
    """True when the checkpoint's own export, the one the onnxruntime backend will run for ``spec`` (same
    network size), holds int8 graphs calibrated by ``ros2-monodepth-export --int8``."""
    if importlib.util.find_spec("onnxruntime") is None:
        return False
    from ..quantize import has_int8_graphs
    from .onnxruntime_backend import checkpoint_export

    own = checkpoint_export(spec)
    return own is not None and has_int8_graphs(own)


def resolve_device_precision(device: str, precision: str, spec: Optional[ModelSpec] = None) -> Tuple[str, str]:
    """'auto' device -> cuda when available, else cpu; 'auto' precision -> fp16 (CUDA); on the CPU int8 when the
    checkpoint carries calibrated int8 graphs (the fastest here, README Performance), else bf16 (CPU with
    AMX/AVX512-BF16), else fp32."""
    if device == "auto":
        device = "cuda" if cuda_available() else "cpu"
    if precision == "auto":
        if device.startswith("cuda"):
            precision = "fp16"
        elif spec is not None and checkpoint_has_int8(spec):
            precision = "int8"
        else:
            precision = "bf16" if cpu_has_bf16() else "fp32"
    return device, precision


def available_backends() -> List[str]:
    """Backends whose libraries import here, fastest first."""
    found = []
    if cuda_available():
        from .tensorrt_backend import tensorrt_available

        if tensorrt_available():
            found.append("tensorrt")
    if importlib.util.find_spec("onnxruntime") is not None:
        found.append("onnxruntime")
    if importlib.util.find_spec("torch") is not None:
        found.append("torch")
    return found


def create_backend(name: str, spec: ModelSpec) -> Tuple[InferenceBackend, str]:
    """Create backend ``name`` ('auto' or one of BACKENDS). Returns (backend, why it was chosen)."""
    device, precision = resolve_device_precision(spec.device, spec.precision, spec)
    spec = replace(spec, device=device, precision=precision)
    if name == "auto":
        errors = []
        for candidate in _auto_order(spec):
            try:
                backend = _create(candidate, spec)
            except BackendError as exc:
                errors.append(f"{candidate}: {exc}")
                continue
            why = f"auto chose {candidate}"
            if errors:
                why += " (" + "; ".join(errors) + ")"
            return backend, why
        raise BackendError("no backend could be created: " + "; ".join(errors))
    if name not in BACKENDS:
        raise BackendError(f"backend must be 'auto' or one of {BACKENDS}, got '{name}'")
    return _create(name, spec), f"{name} requested"


def _auto_order(spec: ModelSpec) -> List[str]:
    """Fastest first, as measured: on CUDA TensorRT, then torch fp16; int8 on the CPU is onnxruntime's; on a CPU
    with AMX/AVX512-BF16 torch bf16 + channels_last beats onnxruntime fp32 (README, Performance); on other CPUs
    onnxruntime's optimised fp32 graph beats eager torch."""
    have = available_backends()
    if spec.device.startswith("cuda"):
        order = ["tensorrt", "torch", "onnxruntime"]
    elif spec.precision == "int8":
        order = ["onnxruntime"]
    elif spec.precision == "bf16":
        order = ["torch", "onnxruntime"]
    else:
        order = ["onnxruntime", "torch"]
    return [b for b in order if b in have]


def _create(name: str, spec: ModelSpec) -> InferenceBackend:
    try:
        return _import_and_create(name, spec)
    except ImportError as exc:
        raise BackendError(f"{name} is not usable here ({exc})") from exc


def _import_and_create(name: str, spec: ModelSpec) -> InferenceBackend:
    if name == "torch":
        from .torch_backend import TorchBackend

        return TorchBackend(spec)
    if name == "onnxruntime":
        from .onnxruntime_backend import OnnxRuntimeBackend

        return OnnxRuntimeBackend(spec)
    if name == "tensorrt":
        from .tensorrt_backend import TensorRTBackend

        return TensorRTBackend(spec)
    raise BackendError(f"unknown backend '{name}'")

"""Page-locked host buffers, device buffers, one CUDA stream and the device's facts, via NVIDIA's cuda-python.

cuda-python's major must match the CUDA of the machine: 12.x for JetPack 6 and CUDA 12 desktops
(``requirements-gpu-cuda12.txt``), 13.x for CUDA 13 drivers (``requirements-gpu-cuda13.txt``). 12.6 and later
(and 13) import the runtime as ``cuda.bindings.runtime``; older 12.x as ``cuda.cudart``. Kept apart from TensorRT
so the copy path can be exercised on any CUDA machine, with or without TensorRT. Every allocation is freed on
every path, including a failure halfway through allocating.
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass
from typing import Any, Tuple

import numpy as np

try:  # cuda-python >= 12.6 (and 13.x) layout, then the older one
    from cuda.bindings import runtime as cudart
except ImportError:  # pragma: no cover
    from cuda import cudart


def check(result: Tuple[Any, ...]) -> Any:
    """Unwrap a cuda-python (err, value...) tuple, raising on error."""
    err, *values = result
    if int(err) != 0:
        name = cudart.cudaGetErrorName(err)[1]
        raise RuntimeError(f"CUDA error {int(err)}: {name!r}")
    return values[0] if len(values) == 1 else (tuple(values) if values else None)


class PinnedBuffer:
    """A host array in page-locked memory (fast async copies) with its device twin, allocated once."""

    def __init__(self, shape: Tuple[int, ...], dtype: Any):
        self.dtype = np.dtype(dtype)
        self.shape = tuple(int(s) for s in shape)
        self.nbytes = int(np.prod(self.shape)) * self.dtype.itemsize
        self.host_ptr = 0
        self.device_ptr = 0
        try:
            self.host_ptr = check(cudart.cudaMallocHost(self.nbytes))
            raw = (ctypes.c_byte * self.nbytes).from_address(int(self.host_ptr))
            self.host = np.frombuffer(raw, dtype=self.dtype).reshape(self.shape)
            self.device_ptr = check(cudart.cudaMalloc(self.nbytes))
        except BaseException:
            self.free()
            raise

    def to_device(self, stream: Any) -> None:
        check(cudart.cudaMemcpyAsync(self.device_ptr, self.host_ptr, self.nbytes,
                                     cudart.cudaMemcpyKind.cudaMemcpyHostToDevice, stream))

    def to_host(self, stream: Any) -> None:
        check(cudart.cudaMemcpyAsync(self.host_ptr, self.device_ptr, self.nbytes,
                                     cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost, stream))

    def free(self) -> None:
        if self.device_ptr:
            check(cudart.cudaFree(self.device_ptr))
            self.device_ptr = 0
        if self.host_ptr:
            check(cudart.cudaFreeHost(self.host_ptr))
            self.host_ptr = 0


class Stream:
    def __init__(self) -> None:
        self.handle = check(cudart.cudaStreamCreate())

    def synchronize(self) -> None:
        check(cudart.cudaStreamSynchronize(self.handle))

    def destroy(self) -> None:
        if self.handle is not None:
            check(cudart.cudaStreamDestroy(self.handle))
            self.handle = None


@dataclass(frozen=True)
class GpuInfo:
    """What tells two GPUs apart for an engine: Jetson Orin modules all report the name 'Orin' and capability 8.7,
    but differ in SM count and memory."""

    name: str
    capability: str
    sm_count: int
    memory_mb: int


def device_properties(device: int = 0) -> GpuInfo:
    props = check(cudart.cudaGetDeviceProperties(device))
    name = props.name.decode() if isinstance(props.name, bytes) else str(props.name)
    return GpuInfo(name.strip("\x00"), f"{props.major}.{props.minor}", int(props.multiProcessorCount),
                   int(props.totalGlobalMem) // (1 << 20))

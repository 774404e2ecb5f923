"""TensorRT 10 backend: engines built from the exported ONNX (FP16, optional INT8), cached by key, run
with the named-tensor API (``set_tensor_address`` + ``execute_async_v3``) on one CUDA stream with
page-locked host buffers and device buffers allocated once.

TensorRT cannot be installed in this project's CI or development machines: this module is type-checked
with mypy against ``tensorrt-stubs``; the cache logic lives in ``engine_cache`` and is unit-tested; the
end-to-end test runs only where ``import tensorrt`` works.
"""

from __future__ import annotations

import functools
import logging
import time
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Tuple

import numpy as np

from ..fileio import default_cache_dir, file_sha256
from .base import DEPTH_INPUT, DEPTH_OUTPUT, POSE_INPUTS, POSE_OUTPUT, BackendError, ExportedGraphBackend, GraphSet, ModelSpec
from .engine_cache import EngineKey, load_or_build

LOG = logging.getLogger(__name__)
DEFAULT_WORKSPACE = 1 << 30

_IMPORT_ERROR: Optional[ImportError] = None
try:
    import tensorrt as trt

    if not hasattr(trt, "Builder"):
        # tensorrt-stubs installs a bare `tensorrt/` folder that imports as an empty namespace package
        raise ImportError("only the tensorrt type stubs are installed, not TensorRT")
except ImportError as _exc:  # pragma: no cover - the normal case outside NVIDIA machines
    trt = None  # type: ignore[assignment]
    _IMPORT_ERROR = _exc


def tensorrt_available() -> bool:
    return trt is not None


def import_error() -> Optional[BaseException]:
    """Why ``import tensorrt`` failed (None when it worked)."""
    return _IMPORT_ERROR


def dims_to_tuple(dims: "trt.Dims") -> Tuple[int, ...]:
    """TensorRT Dims -> plain tuple (-1 marks a dynamic dimension)."""
    return tuple(int(dims[i]) for i in range(len(dims)))


if trt is not None:

    class _BuildProgress(trt.IProgressMonitor):
        """Logs build phases: an engine build takes minutes on a Jetson."""

        def __init__(self) -> None:
            trt.IProgressMonitor.__init__(self)
            self._t0 = time.monotonic()

        def phase_start(self, phase_name: str, parent_phase: Optional[str], num_steps: int) -> None:
            LOG.info("TensorRT build: %s (%d steps) at %.0f s", phase_name, num_steps, time.monotonic() - self._t0)

        def step_complete(self, phase_name: str, step: int) -> bool:
            return True  # never cancel

        def phase_finish(self, phase_name: str) -> None:
            LOG.info("TensorRT build: %s done at %.0f s", phase_name, time.monotonic() - self._t0)

    class FrameCalibrator(trt.IInt8EntropyCalibrator2):
        """INT8 entropy calibration on real frames (uint8 HxWx3, e.g. read from a bag), cached to a file."""

        def __init__(self, frames: Iterator[np.ndarray], input_names: List[str], shape: Tuple[int, ...], cache_file: Path):
            trt.IInt8EntropyCalibrator2.__init__(self)
            from .cuda_buffers import PinnedBuffer

            self._frames = frames
            self._names = input_names
            self._buffers = [PinnedBuffer(shape, np.uint8) for _ in input_names]
            self._cache_file = cache_file
            self._previous: Optional[np.ndarray] = None

        def get_batch_size(self) -> int:
            return 1

        def get_batch(self, names: List[str]) -> List[int]:
            frame = next(self._frames, None)
            if frame is None:
                return []
            inputs = [frame] if len(self._names) == 1 else [self._previous if self._previous is not None else frame, frame]
            self._previous = frame
            from .cuda_buffers import check, cudart

            for buf, img in zip(self._buffers, inputs):
                buf.host[...] = img
                check(cudart.cudaMemcpy(buf.device_ptr, buf.host_ptr, buf.nbytes, cudart.cudaMemcpyKind.cudaMemcpyHostToDevice))
            return [int(self._buffers[self._names.index(n)].device_ptr) for n in names]

        def read_calibration_cache(self) -> bytes:
            return self._cache_file.read_bytes() if self._cache_file.is_file() else b""

        def write_calibration_cache(self, cache: object) -> None:
            self._cache_file.write_bytes(bytes(memoryview(cache)))  # type: ignore[arg-type]


def build_engine(onnx_path: Path, precision: str, workspace: int, calibration_frames: Optional[Iterator[np.ndarray]] = None
                 ) -> bytes:
    """Parse ONNX and build a serialised engine (FP16 / INT8 flags, workspace limit, progress logging)."""
    assert trt is not None
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # explicit batch is the only mode in TensorRT 10
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx_path.read_bytes()):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise BackendError(f"TensorRT could not parse {onnx_path}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace)
    config.progress_monitor = _BuildProgress()
    if precision in ("fp16", "int8"):
        config.set_flag(trt.BuilderFlag.FP16)
    if precision == "int8":
        if calibration_frames is None:
            raise BackendError("int8 needs calibration frames (e.g. from a bag)")
        config.set_flag(trt.BuilderFlag.INT8)
        names = [network.get_input(i).name for i in range(network.num_inputs)]
        shape = dims_to_tuple(network.get_input(0).shape)
        config.int8_calibrator = FrameCalibrator(calibration_frames, names, shape, onnx_path.with_suffix(".calib"))
    LOG.info("building TensorRT engine for %s (%s); this can take minutes", onnx_path.name, precision)
    blob = builder.build_serialized_network(network, config)
    if blob is None:
        raise BackendError(f"TensorRT failed to build an engine for {onnx_path}")
    return bytes(memoryview(blob))


def prepare_engine(runtime: "trt.Runtime", onnx_path: Path, stem: str, precision: str, workspace: int,
                   gpu: Tuple[str, str], calibration_frames: Optional[Iterator[np.ndarray]] = None) -> "trt.ICudaEngine":
    """The engine for ``onnx_path`` from the cache, or built (and cached) when the key has none."""
    assert trt is not None
    key = EngineKey(file_sha256(onnx_path), trt.__version__, gpu[0], gpu[1], precision, workspace)
    path = default_cache_dir() / "engines" / key.filename(stem)
    engine = load_or_build(path, runtime.deserialize_cuda_engine,
                           functools.partial(build_engine, onnx_path, precision, workspace, calibration_frames))
    LOG.info("TensorRT engine %s", path)
    return engine


class _EngineRunner:
    """One engine, its execution context, and its IO buffers bound once by name."""

    def __init__(self, engine: "trt.ICudaEngine", stream: object):
        from .cuda_buffers import PinnedBuffer

        assert trt is not None
        self.engine = engine
        self.context = engine.create_execution_context()
        self.stream = stream
        self.buffers: Dict[str, PinnedBuffer] = {}
        self.inputs: List[str] = []
        self.outputs: List[str] = []
        for i in range(engine.num_io_tensors):
            name = engine.get_tensor_name(i)
            shape = dims_to_tuple(engine.get_tensor_shape(name))
            if any(d < 0 for d in shape):
                raise BackendError(f"tensor '{name}' has a dynamic shape {shape}: export with static shapes")
            dtype = trt.nptype(engine.get_tensor_dtype(name))
            buf = PinnedBuffer(shape, dtype)
            self.buffers[name] = buf
            if not self.context.set_tensor_address(name, int(buf.device_ptr)):
                raise BackendError(f"set_tensor_address failed for '{name}'")
            (self.inputs if engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT else self.outputs).append(name)

    def run(self, feeds: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
        for name, value in feeds.items():
            buf = self.buffers[name]
            if value.shape != buf.shape or value.dtype != buf.dtype:
                raise BackendError(f"input '{name}': expected {buf.dtype} {buf.shape}, got {value.dtype} {value.shape}")
            buf.host[...] = value
            buf.to_device(self.stream)
        if not self.context.execute_async_v3(int(self.stream)):  # type: ignore[call-overload]
            raise BackendError("execute_async_v3 failed")
        for name in self.outputs:
            self.buffers[name].to_host(self.stream)
        from .cuda_buffers import check, cudart

        check(cudart.cudaStreamSynchronize(self.stream))
        return {name: self.buffers[name].host.copy() for name in self.outputs}

    def free(self) -> None:
        for buf in self.buffers.values():
            buf.free()


class TensorRTBackend(ExportedGraphBackend):
    name = "tensorrt"

    def __init__(self, spec: ModelSpec, graphs: GraphSet, workspace: int = DEFAULT_WORKSPACE,
                 calibration_frames: Optional[Iterator[np.ndarray]] = None):
        super().__init__(spec, graphs)
        if trt is None:
            raise BackendError(f"tensorrt is not importable ({_IMPORT_ERROR})")
        from .cuda_buffers import Stream, device_name_and_capability

        precision = spec.precision if spec.precision in ("fp16", "int8", "fp32") else "fp16"
        gpu, capability = device_name_and_capability()
        self.runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        self.stream = Stream()
        runners = {}
        onnx_graphs = [("depth", graphs.depth)] + ([("pose", graphs.pose)] if spec.with_pose and graphs.pose else [])
        for stem, onnx_path in onnx_graphs:
            engine = prepare_engine(self.runtime, onnx_path, stem, precision, workspace, (gpu, capability),
                                    calibration_frames)
            runners[stem] = _EngineRunner(engine, self.stream.handle)
        self.depth_runner = runners["depth"]
        self.pose_runner = runners.get("pose")
        self.precision = precision
        self.gpu = gpu

    @property
    def has_pose(self) -> bool:
        return self.pose_runner is not None

    def depth(self, image: np.ndarray) -> np.ndarray:
        return self.depth_runner.run({DEPTH_INPUT: image})[DEPTH_OUTPUT]

    def relative_pose(self, earlier: np.ndarray, later: np.ndarray) -> np.ndarray:
        if self.pose_runner is None:
            raise BackendError("no pose engine")
        out = self.pose_runner.run({POSE_INPUTS[0]: earlier, POSE_INPUTS[1]: later})[POSE_OUTPUT]
        return out.astype(np.float64)

    def describe(self) -> str:
        assert trt is not None
        return f"tensorrt {trt.__version__} ({self.gpu}, {self.precision})"

    def close(self) -> None:
        for runner in (self.depth_runner, self.pose_runner):
            if runner is not None:
                runner.free()
        self.stream.destroy()

"""TensorRT backend: runs engines (built and cached by ``core.artifacts`` through ``tensorrt_engines``) with the
named-tensor API (``set_tensor_address`` + ``execute_async_v3``, TensorRT 10 and 11) on one CUDA stream, with
page-locked host buffers and device buffers allocated once.

TensorRT cannot be installed in this project's CI or development machines: this module is type-checked with mypy
against ``tensorrt-stubs``, its engine building (``tensorrt_engines``) is exercised up to the build with TensorRT for
RTX's library, the cache logic (``engine_cache``) is unit-tested, and the end-to-end test and the GPU check
(``ros2-monodepth-gpu-check``) run only where TensorRT and a GPU are.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, List, Optional

import numpy as np

from .base import (DEPTH_FEATURES, DEPTH_INPUT, DEPTH_OUTPUT, POSE_FEATURE_INPUTS, POSE_INPUTS, POSE_OUTPUT, BackendError,
                   ExportedGraphBackend, FeatureCache, GraphSet, ModelSpec)
from .trt_compat import TensorRTApi, load_tensorrt

if TYPE_CHECKING:   # the TensorRT 10 API as tensorrt-stubs types it; never imported at run time from here
    import tensorrt

LOG = logging.getLogger(__name__)


def tensorrt_available() -> bool:
    return load_tensorrt()[0] is not None


class _EngineRunner:
    """One engine, its execution context, and its IO buffers bound once by name."""

    def __init__(self, api: TensorRTApi, engine: "tensorrt.ICudaEngine", stream: Any):
        from .cuda_buffers import PinnedBuffer

        trt = api.trt
        self.engine = engine
        self.stream = stream
        self.buffers: Dict[str, PinnedBuffer] = {}
        self.inputs: List[str] = []
        self.outputs: List[str] = []
        self.context: Optional["tensorrt.IExecutionContext"] = engine.create_execution_context()
        if self.context is None:
            raise BackendError("TensorRT could not create an execution context (out of GPU memory?)")
        try:
            for i in range(engine.num_io_tensors):
                name = engine.get_tensor_name(i)
                dims = engine.get_tensor_shape(name)
                shape = tuple(int(dims[k]) for k in range(len(dims)))
                if any(d < 0 for d in shape):
                    raise BackendError(f"tensor '{name}' has a dynamic shape {shape}: export with static shapes")
                buf = PinnedBuffer(shape, trt.nptype(engine.get_tensor_dtype(name)))
                self.buffers[name] = buf
                if not self.context.set_tensor_address(name, int(buf.device_ptr)):
                    raise BackendError(f"set_tensor_address failed for '{name}'")
                is_input = engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT
                (self.inputs if is_input else self.outputs).append(name)
        except BaseException:
            self.free()
            raise

    def run(self, feeds: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
        from .cuda_buffers import check, cudart

        for name, value in feeds.items():
            buf = self.buffers[name]
            if value.shape != buf.shape or value.dtype != buf.dtype:
                raise BackendError(f"input '{name}': expected {buf.dtype} {buf.shape}, got {value.dtype} {value.shape}")
            buf.host[...] = value
            buf.to_device(self.stream)
        if self.context is None:
            raise BackendError("the engine's execution context was released")
        if not self.context.execute_async_v3(int(self.stream)):   # the cudaStream_t handle as an address
            raise BackendError("execute_async_v3 failed")
        for name in self.outputs:
            self.buffers[name].to_host(self.stream)
        check(cudart.cudaStreamSynchronize(self.stream))
        return {name: self.buffers[name].host.copy() for name in self.outputs}

    def free(self) -> None:
        for buf in self.buffers.values():
            buf.free()
        self.buffers.clear()
        self.context = None


class TensorRTBackend(ExportedGraphBackend):
    """Runs the engines of ``engines`` (a GraphSet whose depth / pose paths are serialised engines)."""

    name = "tensorrt"

    def __init__(self, spec: ModelSpec, engines: GraphSet, api: Optional[TensorRTApi] = None):
        super().__init__(spec, engines)
        if api is None:
            api, why = load_tensorrt()
            if api is None:
                raise BackendError(why)
        self.api = api
        from .cuda_buffers import Stream

        trt = api.trt
        self.runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        self.stream = Stream()
        self.depth_runner: Optional[_EngineRunner] = None
        self.pose_runner: Optional[_EngineRunner] = None
        # the shared pose model: the depth engine's features output, kept for this frame's and the next's pose
        self.features = FeatureCache() if engines.pose_model == "shared" else None
        try:
            self.depth_runner = self._runner(engines.depth)
            if spec.with_pose and engines.pose is not None:
                self.pose_runner = self._runner(engines.pose)
        except BaseException:
            self.close()
            raise

    def _runner(self, path: Path) -> _EngineRunner:
        engine = self.runtime.deserialize_cuda_engine(path.read_bytes())
        if engine is None:
            raise BackendError(f"TensorRT could not deserialise {path} (built by another TensorRT? delete it to rebuild)")
        return _EngineRunner(self.api, engine, self.stream.handle)

    @property
    def has_pose(self) -> bool:
        return self.pose_runner is not None

    def _run_depth(self, image: np.ndarray) -> Dict[str, np.ndarray]:
        assert self.depth_runner is not None
        return self.depth_runner.run({DEPTH_INPUT: self.check_image(image)})

    def depth(self, image: np.ndarray) -> np.ndarray:
        outs = self._run_depth(image)
        if self.features is not None:
            self.features.put(image, outs[DEPTH_FEATURES])
        return outs[DEPTH_OUTPUT]

    def relative_pose(self, earlier: np.ndarray, later: np.ndarray) -> np.ndarray:
        if self.pose_runner is None:
            raise BackendError("no pose engine")
        if self.features is not None:
            def compute(image: np.ndarray) -> np.ndarray:     # a frame depth has not run on
                return self._run_depth(image)[DEPTH_FEATURES]
            feeds = {POSE_FEATURE_INPUTS[0]: self.features.fetch(earlier, compute),
                     POSE_FEATURE_INPUTS[1]: self.features.fetch(later, compute)}
        else:
            feeds = {POSE_INPUTS[0]: self.check_image(earlier), POSE_INPUTS[1]: self.check_image(later)}
        out = self.pose_runner.run(feeds)
        return out[POSE_OUTPUT].astype(np.float64)

    def describe(self) -> str:
        return f"tensorrt {self.api.version_text} ({self.graphs.precision}, {self.graphs.source})"

    def close(self) -> None:
        for runner in (self.depth_runner, self.pose_runner):
            if runner is not None:
                runner.free()
        self.depth_runner = self.pose_runner = None
        if getattr(self, "stream", None) is not None:
            self.stream.destroy()

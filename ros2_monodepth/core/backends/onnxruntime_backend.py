"""ONNX Runtime backend: exported graphs (uint8 in, depth / pose out) on the CPU in fp32 or int8 (QDQ graphs from
``core.quantize``; VNNI / AMX-INT8 kernels), or on the CUDA / TensorRT execution providers where installed.

Given a ``GraphSet`` by ``core.artifacts`` (which exports, quantises and checks the graph files); this module
only opens sessions and runs them.
"""

from __future__ import annotations

import logging
import os
from typing import Any, List

import numpy as np

from .base import (DEPTH_INPUT, POSE_FEATURE_INPUTS, POSE_INPUTS, BackendError, ExportedGraphBackend, FeatureCache, GraphSet,
                   ModelSpec)

LOG = logging.getLogger(__name__)


def _providers(device: str) -> List[str]:
    import onnxruntime as ort

    available = ort.get_available_providers()
    wanted = ["CPUExecutionProvider"]
    if device.startswith("cuda"):
        wanted = [p for p in ("TensorrtExecutionProvider", "CUDAExecutionProvider") if p in available] + wanted
    return wanted


def session_options() -> Any:
    """Session options for the CPU: every graph optimisation, one thread per core, no spinning."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.intra_op_num_threads = os.cpu_count() or 1
    # Idle pool threads sleep instead of spinning: measured on 2 cores, spinning threads of the depth session
    # steal the CPU from the pose session and from the node's executor (int8 depth + pose 63 ms vs 108 ms).
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return opts


class OnnxRuntimeBackend(ExportedGraphBackend):
    name = "onnxruntime"

    def __init__(self, spec: ModelSpec, graphs: GraphSet):
        super().__init__(spec, graphs)
        try:
            import onnxruntime as ort
        except ImportError as exc:
            raise BackendError(f"onnxruntime is not installed ({exc})") from exc
        if graphs.precision == "int8" and spec.device != "cpu":
            raise BackendError("onnxruntime int8 graphs are for the CPU; on CUDA use TensorRT int8")
        providers = _providers(spec.device)
        opts = session_options()
        try:
            self.depth_session = ort.InferenceSession(str(graphs.depth), opts, providers=providers)
            self.pose_session = None
            if spec.with_pose and graphs.pose is not None:
                self.pose_session = ort.InferenceSession(str(graphs.pose), opts, providers=providers)
        except Exception as exc:  # onnxruntime raises its own exception types for unreadable graphs
            raise BackendError(f"onnxruntime cannot load the graphs of {graphs.source}: {exc}") from exc
        self.providers = self.depth_session.get_providers()
        # the shared pose model: depth also returns the encoder's features, kept for this frame's and the next's pose
        self.features = FeatureCache() if graphs.pose_model == "shared" else None

    @property
    def has_pose(self) -> bool:
        return self.pose_session is not None

    def _run_depth(self, image: np.ndarray) -> List[np.ndarray]:
        return self.depth_session.run(None, {DEPTH_INPUT: self.check_image(image)})

    def depth(self, image: np.ndarray) -> np.ndarray:
        outs = self._run_depth(image)
        if self.features is not None:
            self.features.put(image, outs[1])
        return outs[0]

    def relative_pose(self, earlier: np.ndarray, later: np.ndarray) -> np.ndarray:
        if self.pose_session is None:
            raise BackendError("no pose graph loaded")
        if self.features is not None:
            def compute(image: np.ndarray) -> np.ndarray:     # a frame depth has not run on
                return self._run_depth(image)[1]
            feed = {POSE_FEATURE_INPUTS[0]: self.features.fetch(earlier, compute),
                    POSE_FEATURE_INPUTS[1]: self.features.fetch(later, compute)}
        else:
            feed = {POSE_INPUTS[0]: self.check_image(earlier), POSE_INPUTS[1]: self.check_image(later)}
        return self.pose_session.run(None, feed)[0].astype(np.float64)

    def describe(self) -> str:
        import onnxruntime as ort

        return f"onnxruntime {ort.__version__} ({', '.join(self.providers)}, {self.graphs.precision}, {self.graphs.source})"

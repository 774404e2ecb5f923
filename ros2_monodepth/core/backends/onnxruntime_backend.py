"""ONNX Runtime backend: the exported graphs (uint8 in, depth / pose out) on CPU in fp32 or int8 (QDQ graphs
from ``core.quantize``; VNNI / AMX-INT8 kernels), or the CUDA / TensorRT execution providers where installed.

Graphs come from ``<checkpoint_dir>/onnx`` (written by ``ros2-monodepth-export``) when present; otherwise
they are exported once from the checkpoint (or the seeded untrained networks) at the network size into
the cache folder (``~/.cache/ros2_monodepth/onnx/<fingerprint>``) and the node resizes frames to fit.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import List, Optional

import numpy as np

from ..export import (DEPTH_INPUT, DEPTH_ONNX, GRAPH_FORM, POSE_INPUTS, POSE_ONNX, ExportInfo, build_cache_dir,
                      checkpoint_fingerprint, default_cache_dir, export_onnx)
from ..quantize import DEPTH_INT8_ONNX, INT8_FORM, POSE_INT8_ONNX, QuantizationError, int8_graphs_for
from .base import BackendError, ExportedGraphBackend, ModelSpec

LOG = logging.getLogger(__name__)


def checkpoint_export(spec: ModelSpec, warn: bool = False) -> Optional[Path]:
    """``<checkpoint_dir>/onnx`` when it holds graphs that fit ``spec`` (network size, pose), else None."""
    if not spec.checkpoint_dir:
        return None
    own = Path(spec.checkpoint_dir) / "onnx"
    if not ((own / DEPTH_ONNX).is_file() and (own / "export.json").is_file()):
        return None
    info = ExportInfo.read(own)
    if tuple(info.network_size) == tuple(spec.network_size) and (info.has_pose or not spec.with_pose):
        return own
    if warn:
        LOG.warning("%s was exported for network size %s (pose: %s); exporting again for %s", own,
                    info.network_size, info.has_pose, spec.network_size)
    return None


def locate_or_export(spec: ModelSpec) -> Path:
    """Folder holding depth.onnx / pose.onnx / export.json that match ``spec``."""
    own = checkpoint_export(spec, warn=True)
    if own is not None:
        return own
    key = checkpoint_fingerprint(spec.checkpoint_dir, spec.network_size, spec.min_depth, spec.max_depth,
                                 spec.num_layers, spec.seed, spec.with_pose)
    target = default_cache_dir() / "onnx" / key
    if (target / "export.json").is_file():
        return target
    from .torch_backend import build_networks

    depth_net, pose_net = build_networks(spec)
    return build_cache_dir(target, lambda tmp: export_onnx(depth_net, pose_net, tmp, spec.network_size, spec.network_size,
                                                           spec.min_depth, spec.max_depth))


def _providers(device: str) -> List[str]:
    import onnxruntime as ort

    available = ort.get_available_providers()
    wanted = ["CPUExecutionProvider"]
    if device.startswith("cuda"):
        wanted = [p for p in ("TensorrtExecutionProvider", "CUDAExecutionProvider") if p in available] + wanted
    return wanted


class OnnxRuntimeBackend(ExportedGraphBackend):
    name = "onnxruntime"

    def __init__(self, spec: ModelSpec):
        super().__init__(spec)
        try:
            import onnxruntime as ort
        except ImportError as exc:
            raise BackendError(f"onnxruntime is not installed ({exc})") from exc
        if spec.precision in ("bf16", "fp16") and spec.device == "cpu":
            LOG.info("onnxruntime runs the fp32 graph on the CPU (precision %s applies to torch/TensorRT)", spec.precision)
        if spec.precision == "int8" and spec.device != "cpu":
            raise BackendError("onnxruntime int8 graphs are for the CPU; on CUDA use TensorRT int8")
        self.onnx_dir = locate_or_export(spec)
        self.info = ExportInfo.read(self.onnx_dir)
        self.graph_dir, depth_file, pose_file = self.onnx_dir, DEPTH_ONNX, POSE_ONNX
        self.int8 = spec.precision == "int8"
        if self.int8:
            try:
                self.graph_dir = int8_graphs_for(self.onnx_dir, self.info)
            except QuantizationError as exc:
                raise BackendError(str(exc)) from exc
            self.info = ExportInfo.read(self.graph_dir)
            depth_file, pose_file = DEPTH_INT8_ONNX, POSE_INT8_ONNX
        outdated = self.info.graph_form != GRAPH_FORM or (self.int8 and self.info.int8_form != INT8_FORM)
        if outdated:
            # a checkpoint's own export from an older version: still correct, only slower (README, Performance)
            LOG.warning("graphs in %s were exported by an older ros2_monodepth (form %r/%r, now %r/%r); they run, "
                        "but exporting again gives faster ones: ros2-monodepth-export %s%s", self.graph_dir,
                        self.info.graph_form, self.info.int8_form, GRAPH_FORM, INT8_FORM, spec.checkpoint_dir,
                        " --int8 --calibration-bag BAG" if self.int8 else "")
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.intra_op_num_threads = os.cpu_count() or 1
        # Idle pool threads sleep instead of spinning: measured on 2 cores, spinning threads of the depth session
        # steal the CPU from the pose session and from the node's executor (int8 depth + pose 63 ms vs 108 ms).
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        providers = _providers(spec.device)
        self.depth_session = ort.InferenceSession(str(self.graph_dir / depth_file), opts, providers=providers)
        self.pose_session = None
        if spec.with_pose and self.info.has_pose:
            self.pose_session = ort.InferenceSession(str(self.graph_dir / pose_file), opts, providers=providers)
        self.providers = self.depth_session.get_providers()

    @property
    def has_pose(self) -> bool:
        return self.pose_session is not None

    def _check(self, image: np.ndarray) -> np.ndarray:
        h, w = self.info.camera_size
        if image.dtype != np.uint8 or image.shape != (h, w, 3):
            raise BackendError(f"expected uint8 ({h}, {w}, 3), got {image.dtype} {image.shape}")
        return np.ascontiguousarray(image)

    def depth(self, image: np.ndarray) -> np.ndarray:
        return self.depth_session.run(None, {DEPTH_INPUT: self._check(image)})[0]

    def relative_pose(self, earlier: np.ndarray, later: np.ndarray) -> np.ndarray:
        if self.pose_session is None:
            raise BackendError("no pose graph loaded")
        out = self.pose_session.run(None, {POSE_INPUTS[0]: self._check(earlier), POSE_INPUTS[1]: self._check(later)})[0]
        return out.astype(np.float64)

    def describe(self) -> str:
        import onnxruntime as ort

        if self.int8:
            return (f"onnxruntime {ort.__version__} ({', '.join(self.providers)}, int8, calibrated on "
                    f"{self.info.int8_calibration}, graphs in {self.graph_dir})")
        return f"onnxruntime {ort.__version__} ({', '.join(self.providers)}, fp32, graphs in {self.onnx_dir})"

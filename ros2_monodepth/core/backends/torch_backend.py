"""PyTorch backend: CPU fp32, CPU bf16 (AMX where the CPU has it) with channels_last, CUDA fp32/fp16.

Given the networks to run (``core.artifacts.build_networks`` loads them from a checkpoint).

On the CPU the deployment wrappers are traced and frozen once per input shape (TorchScript): one C++ call per
frame instead of a Python call per layer, which also keeps the node's executor thread from stalling the
inference thread on the GIL, and lets conv/batch-norm fold. In bf16 the networks' weights are bf16 (inputs
cast at the network's door) rather than autocast, which saves a cast per layer. See README, Performance.
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections import OrderedDict
from typing import Callable, ContextManager, Optional, Tuple

import numpy as np
import torch

from ..inference_model import DepthInference, PoseFromFeatures, PoseInference
from ..networks import DepthNet, PoseNet
from .base import BackendError, FeatureCache, InferenceBackend, ModelSpec

LOG = logging.getLogger(__name__)
PRECISIONS = ("fp32", "bf16", "fp16")
# Traced graphs kept, least recently used first out: two input sizes of depth and pose. A stream whose size keeps
# changing re-traces (about a second each) but holds no more memory than this (each graph pair is 100-400 MB).
TRACED_GRAPHS = 4


def _cast_inputs_bf16(module: torch.nn.Module, args: tuple) -> tuple:
    return tuple(a.to(torch.bfloat16) for a in args)


class TorchBackend(InferenceBackend):
    """Runs ``DepthInference`` / ``PoseInference`` eagerly under ``torch.inference_mode``."""

    name = "torch"

    def __init__(self, spec: ModelSpec, networks: tuple[DepthNet, Optional[PoseNet]]):
        super().__init__(spec)
        if spec.precision == "int8":
            raise BackendError("int8 runs on onnxruntime (CPU) or TensorRT (CUDA), not the torch backend")
        if spec.precision not in PRECISIONS:
            raise BackendError(f"precision must be one of {PRECISIONS}, got '{spec.precision}'")
        if spec.device.startswith("cuda") and not torch.cuda.is_available():
            raise BackendError(f"device '{spec.device}' asked for, but torch sees no CUDA device")
        if spec.device == "cpu" and spec.precision == "fp16":
            raise BackendError("fp16 is for CUDA; on the CPU use bf16 (AMX) or fp32")
        self.device = torch.device(spec.device)
        if self.device.type == "cuda" and spec.precision == "fp32":
            # fp32 means fp32: cuDNN would otherwise run fp32 convolutions in TF32 on Ampere and newer (Orin included)
            torch.backends.cudnn.allow_tf32 = False
            torch.backends.cuda.matmul.allow_tf32 = False
        depth_net, pose_net = networks
        bgr = spec.channel_order == "bgr"
        shared = pose_net is not None and pose_net.shared
        self.depth_model = DepthInference(depth_net, spec.network_size, spec.min_depth, spec.max_depth, bgr, spec.output_size,
                                          with_features=shared, output_scale=spec.depth_output_scale)
        self.pose_model: Optional[torch.nn.Module] = None
        if pose_net is not None:
            self.pose_model = PoseFromFeatures(pose_net) if shared else PoseInference(pose_net, spec.network_size, bgr)
        # the shared pose model: depth also gives the encoder's features, kept for this frame's and the next's pose
        self.features = FeatureCache() if shared else None
        reduced = spec.precision in ("bf16", "fp16")
        memory_format = torch.channels_last if (reduced or self.device.type == "cuda") else torch.preserve_format
        for model in (self.depth_model, self.pose_model):
            if model is not None:
                model.to(self.device).eval()
                if memory_format is torch.channels_last:
                    model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        self._trace = self.device.type == "cpu" and spec.trace
        if self._trace and spec.precision == "bf16":
            for net in (depth_net, pose_net if not shared else None):   # a shared encoder is the depth net's
                if net is not None:
                    net.to(torch.bfloat16)
                    # at the encoder's door: every path into either network starts there (PoseInference calls
                    # the encoder on the stacked frames, not PoseNet.forward)
                    net.encoder.register_forward_pre_hook(_cast_inputs_bf16)
        self._traced: "OrderedDict[tuple, torch.jit.ScriptModule]" = OrderedDict()
        self._autocast: Callable[[], ContextManager] = contextlib.nullcontext if self._trace else self._make_autocast()

    def _run(self, kind: str, model: torch.nn.Module, *inputs: torch.Tensor) -> torch.Tensor:
        if not self._trace:
            return model(*inputs)
        key = (kind,) + tuple(tuple(t.shape) for t in inputs)
        fn = self._traced.get(key)
        if fn is None:
            while len(self._traced) >= TRACED_GRAPHS:
                dropped, _ = self._traced.popitem(last=False)
                LOG.info("dropped the traced %s graph for input %s (at most %d kept)", dropped[0], dropped[1:], TRACED_GRAPHS)
            with torch.no_grad(), warnings.catch_warnings():
                # shape tests become constants in the trace: right, since there is one graph per input shape
                warnings.simplefilter("ignore", torch.jit.TracerWarning)
                fn = torch.jit.freeze(torch.jit.trace(model, inputs, check_trace=False))
            self._traced[key] = fn
            LOG.info("traced and froze the %s graph for input %s", kind, key[1:])
        else:
            self._traced.move_to_end(key)
        return fn(*inputs)

    def _make_autocast(self) -> Callable[[], ContextManager]:
        p = self.spec.precision
        if p == "fp32":
            return contextlib.nullcontext
        dtype = torch.bfloat16 if p == "bf16" else torch.float16
        return lambda: torch.autocast(self.device.type, dtype=dtype)

    @property
    def has_pose(self) -> bool:
        return self.pose_model is not None

    @property
    def input_size(self) -> Optional[Tuple[int, int]]:
        """Frames at the network size, as the exported-graph backends take them: the caller resizes once (the
        same bilinear sampling for every backend), and one traced graph serves a camera whose size changes."""
        return (int(self.spec.network_size[0]), int(self.spec.network_size[1]))

    def _to_tensor(self, image: np.ndarray) -> torch.Tensor:
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise BackendError(f"expected a uint8 (H, W, 3) image, got {image.dtype} {image.shape}")
        return torch.from_numpy(np.ascontiguousarray(image)).to(self.device, non_blocking=True)

    def _depth_and_features(self, image: np.ndarray) -> tuple:
        with torch.inference_mode(), self._autocast():
            out = self._run("depth", self.depth_model, self._to_tensor(image))
        if self.features is None:
            return out.float().cpu().numpy(), None
        return out[0].float().cpu().numpy(), out[1].float().cpu().numpy()

    def depth(self, image: np.ndarray) -> np.ndarray:
        depth, features = self._depth_and_features(image)
        if self.features is not None:
            self.features.put(image, features)
        return depth

    def relative_pose(self, earlier: np.ndarray, later: np.ndarray) -> np.ndarray:
        if self.pose_model is None:
            raise BackendError("this backend was built without the pose network")
        if self.features is not None:
            def compute(image: np.ndarray) -> np.ndarray:     # a frame depth has not run on
                return self._depth_and_features(image)[1]
            inputs = [torch.from_numpy(self.features.fetch(f, compute)).to(self.device) for f in (earlier, later)]
        else:
            inputs = [self._to_tensor(earlier), self._to_tensor(later)]
        with torch.inference_mode(), self._autocast():
            out = self._run("pose", self.pose_model, *inputs)
        return out.double().cpu().numpy()

    def describe(self) -> str:
        threads = torch.get_num_threads() if self.device.type == "cpu" else 0
        extra = f", {threads} threads" if threads else ""
        return f"torch {torch.__version__} ({self.spec.device}, {self.spec.precision}{extra}{', traced' if self._trace else ''})"

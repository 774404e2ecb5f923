"""The runtime interface every inference backend implements (PyTorch, ONNX Runtime, TensorRT).

A backend takes camera images as uint8 HxWx3 arrays and returns numpy results; it owns its device
memory, precision and threads. The node and the benchmarks only see this interface.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import Any, Optional, Tuple

import numpy as np


class BackendError(RuntimeError):
    """A backend that cannot be created or run here (missing library, bad model file, wrong input)."""


@dataclass(frozen=True)
class ModelSpec:
    """What the node asks of a backend.

    ``checkpoint_dir`` empty means untrained weights (a warning is the caller's job).
    ``network_size`` is (height, width), multiples of 32. ``channel_order`` is the order of the images the
    caller will pass ('rgb' or 'bgr'). ``output_size`` None gives depth at network resolution.
    """

    checkpoint_dir: str = ""
    num_layers: int = 18
    network_size: Tuple[int, int] = (192, 640)
    min_depth: float = 0.1
    max_depth: float = 100.0
    channel_order: str = "rgb"
    output_size: Optional[Tuple[int, int]] = None
    with_pose: bool = True
    device: str = "cpu"
    precision: str = "fp32"
    seed: int = 0
    trace: bool = True            # torch on CPU: TorchScript-trace and freeze (False: eager, for debugging)


class InferenceBackend(abc.ABC):
    """Depth for a frame; relative pose for a frame pair."""

    name: str = "abstract"

    def __init__(self, spec: ModelSpec):
        self.spec = spec

    @property
    def has_pose(self) -> bool:
        return self.spec.with_pose

    @property
    def channel_order(self) -> str:
        """Channel order the backend wants its images in ('rgb' or 'bgr')."""
        return self.spec.channel_order

    @property
    def input_size(self) -> Optional[Tuple[int, int]]:
        """(H, W) the backend needs its input images to be, or None when any size is accepted."""
        return None

    @abc.abstractmethod
    def depth(self, image: np.ndarray) -> np.ndarray:
        """uint8 (H, W, 3) -> float32 depth (h, w), network units (before metric scale)."""

    @abc.abstractmethod
    def relative_pose(self, earlier: np.ndarray, later: np.ndarray) -> np.ndarray:
        """Two uint8 (H, W, 3) frames -> float64 (4, 4) ``T_a_b``, the later camera's pose in the earlier's frame."""

    def describe(self) -> str:
        return f"{self.name} ({self.spec.device}, {self.spec.precision})"

    def warmup(self, image_size: Tuple[int, int], runs: int = 2) -> None:
        """Run on blank frames so first-frame latency (allocation, graph optimisation) is paid up front."""
        blank = np.zeros((image_size[0], image_size[1], 3), np.uint8)
        for _ in range(runs):
            self.depth(blank)
            if self.has_pose:
                self.relative_pose(blank, blank)

    def close(self) -> None:
        """Release device memory and handles."""


class ExportedGraphBackend(InferenceBackend):
    """A backend that runs the exported graphs: input size and channel order are the export's
    (``self.info``, an ``export.ExportInfo``), not the caller's."""

    info: Any

    @property
    def input_size(self) -> Optional[Tuple[int, int]]:
        return (int(self.info.camera_size[0]), int(self.info.camera_size[1]))

    @property
    def channel_order(self) -> str:
        return str(self.info.channel_order)

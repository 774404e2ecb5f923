"""The runtime interface every inference backend implements (PyTorch, ONNX Runtime, TensorRT), and what a
backend is given to run.

A backend takes camera images as uint8 HxWx3 arrays and returns numpy results; it owns its device memory,
precision and threads. It is handed what it runs, already prepared by ``core.artifacts``: networks for
PyTorch, a ``GraphSet`` of exported graphs for ONNX Runtime and TensorRT. No backend imports another. The
node, the pipeline and the benchmarks only see this interface.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, List, Optional, Tuple

import numpy as np


# Tensor names of the exported graphs (``core.export`` writes them, the graph backends feed them).
DEPTH_INPUT, DEPTH_OUTPUT = "image", "depth"
POSE_INPUTS, POSE_OUTPUT = ("earlier", "later"), "T_a_b"
# The shared pose model: the depth graph's second output, and the pose graph's inputs (two frames' features)
DEPTH_FEATURES = "features"
POSE_FEATURE_INPUTS = ("earlier_features", "later_features")


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
    # 1: depth from the decoder's half-resolution disparity head, upsampled (its full-resolution stage not run)
    depth_output_scale: int = 0


@dataclass(frozen=True)
class GraphSet:
    """Exported graphs ready to run: files already checked by ``core.artifacts``.

    ``camera_size`` (H, W) and ``channel_order`` are what the graphs take (static shapes); ``precision`` is
    'fp32' or 'int8'; ``source`` says where they came from (folder, calibration), for logs and diagnostics.
    """

    depth: Path
    pose: Optional[Path]
    camera_size: Tuple[int, int]
    channel_order: str
    precision: str
    source: str
    pose_model: str = "separate"      # 'shared': depth also gives DEPTH_FEATURES, pose takes POSE_FEATURE_INPUTS


class FeatureCache:
    """The depth encoder's features of the last frames a backend ran depth on (the shared pose model), so that a
    frame pair's pose costs the pose decoder alone.

    A frame is found by identity (the very array object passed to ``depth``, held here so its id cannot be reused)
    and by a sample of its pixels, so that a caller that writes a new frame into the same buffer gets the features
    computed again rather than the old frame's. ``fetch`` runs ``compute`` on a miss. Least recently used first out,
    so that one miss (a pair whose earlier frame depth never saw) costs one encoder pass and not one on every pair
    after it.

    >>> cache = FeatureCache()
    >>> a, b = np.zeros((4, 4, 3), np.uint8), np.ones((4, 4, 3), np.uint8)
    >>> cache.put(a, np.array([1.0]))
    >>> cache.get(a), cache.get(b), cache.fetch(b, lambda img: np.array([2.0]))
    (array([1.]), None, array([2.]))
    >>> a[...] = 9          # the same buffer, a new frame: computed again
    >>> cache.fetch(a, lambda img: np.array([3.0])), cache.misses
    (array([3.]), 2)
    """

    def __init__(self, capacity: int = 3):
        self.capacity = max(1, int(capacity))
        self._entries: List[Tuple[np.ndarray, bytes, np.ndarray]] = []   # oldest first
        self.misses = 0

    @staticmethod
    def _probe(image: np.ndarray) -> bytes:
        h, w = image.shape[:2]
        return image[:: max(1, h // 8), :: max(1, w // 8)].tobytes()

    def put(self, image: np.ndarray, features: np.ndarray) -> None:
        self._entries = [e for e in self._entries if e[0] is not image]
        self._entries.append((image, self._probe(image), features))
        del self._entries[:-self.capacity]

    def get(self, image: np.ndarray) -> Optional[np.ndarray]:
        """The features put for this very frame (now the most recently used), or None."""
        for i, (held, probe, features) in enumerate(self._entries):
            if held is image and probe == self._probe(image):
                self._entries.append(self._entries.pop(i))
                return features
        return None

    def fetch(self, image: np.ndarray, compute: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
        """The features of this frame: the cached ones, else ``compute(image)`` (kept)."""
        found = self.get(image)
        if found is not None:
            return found
        self.misses += 1
        features = compute(image)
        self.put(image, features)
        return features

    def clear(self) -> None:
        self._entries = []


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
    """A backend that runs exported graphs: input size and channel order are the graphs' (``self.graphs``), not
    the caller's."""

    def __init__(self, spec: ModelSpec, graphs: GraphSet):
        super().__init__(spec)
        self.graphs = graphs

    @property
    def input_size(self) -> Optional[Tuple[int, int]]:
        return (int(self.graphs.camera_size[0]), int(self.graphs.camera_size[1]))

    @property
    def channel_order(self) -> str:
        return self.graphs.channel_order

    def check_image(self, image: np.ndarray) -> np.ndarray:
        """The image as the graphs take it (contiguous uint8 at the camera size), or BackendError naming the
        difference."""
        h, w = self.graphs.camera_size
        if image.dtype != np.uint8 or image.shape != (h, w, 3):
            raise BackendError(f"expected uint8 ({h}, {w}, 3), got {image.dtype} {image.shape}")
        return np.ascontiguousarray(image)

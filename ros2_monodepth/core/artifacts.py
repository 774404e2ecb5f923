"""What a backend runs, prepared in one place: from a checkpoint and a backend/precision choice to networks, fp32
graphs, int8 graphs or TensorRT engines, and ``auto``'s choice of backend with its reasons.

Owns:
- ``build_networks``: the networks of a checkpoint (or seeded untrained ones);
- the exported graphs: a checkpoint's own ``<checkpoint>/onnx`` when it fits the request, else an export into
  the cache (``~/.cache/ros2_monodepth/onnx/<fingerprint>``), and the int8 graphs beside them (or calibrated
  on generated frames into ``.../int8/<key>`` when the export has none);
- the device / precision resolution of ``auto`` and the order in which ``auto`` tries backends;
- ``create_backend``: the only function that imports backends. Backends receive what they run and never
  import one another.

    >>> spec = ModelSpec(network_size=(64, 128), device="cpu", precision="fp32")
    >>> backend, why = create_backend("torch", spec)
    >>> backend.depth(np.zeros((64, 128, 3), np.uint8)).shape
    (64, 128)
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
from dataclasses import replace
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

import numpy as np

from .backends.base import BackendError, GraphSet, InferenceBackend, ModelSpec
from .fileio import build_cache_dir, default_cache_dir, file_sha256
from .hardware import cpu_has_bf16, cuda_available

LOG = logging.getLogger(__name__)
BACKENDS = ("tensorrt", "onnxruntime", "torch")


# ------------------------------------------------------------------------------------------------ networks
def build_networks(spec: ModelSpec):
    """(DepthNet, PoseNet or None) from the checkpoint folder, or seeded untrained ones when ``checkpoint_dir``
    is empty."""
    import torch

    from .checkpoint import load_checkpoint
    from .networks import DepthNet, PoseNet

    if spec.checkpoint_dir:
        depth_net, pose_net, _ = load_checkpoint(spec.checkpoint_dir, load_pose=spec.with_pose)
        if spec.with_pose and pose_net is None:
            raise BackendError(f"{spec.checkpoint_dir}: no pose_encoder.pth / pose.pth, but odometry was asked for")
        return depth_net, pose_net
    torch.manual_seed(spec.seed)
    return DepthNet(spec.num_layers).eval(), (PoseNet(spec.num_layers).eval() if spec.with_pose else None)


# ------------------------------------------------------------------------------------------------ graphs
def checkpoint_fingerprint(checkpoint_dir: str, *extra: object) -> str:
    """Short hash of a checkpoint's weight files (or 'untrained'), export settings and the graph form."""
    from .export import GRAPH_FORM

    h = hashlib.sha256(GRAPH_FORM.encode())
    if checkpoint_dir:
        for name in sorted(os.listdir(checkpoint_dir)):
            if name.endswith(".pth"):
                h.update(name.encode())
                h.update(file_sha256(os.path.join(checkpoint_dir, name)).encode())
    else:
        h.update(b"untrained")
    h.update(repr(extra).encode())
    return h.hexdigest()[:16]


def checkpoint_export(spec: ModelSpec, warn: bool = False) -> Optional[Path]:
    """``<checkpoint_dir>/onnx`` when it holds graphs that fit ``spec`` (network size, pose), else None."""
    from .export import DEPTH_ONNX, ExportInfo

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


def exported_graphs(spec: ModelSpec) -> Path:
    """Folder holding depth.onnx / pose.onnx / export.json that match ``spec``: the checkpoint's own export, or
    one exported once into the cache at the network size (the caller resizes frames to fit)."""
    from .export import export_onnx

    own = checkpoint_export(spec, warn=True)
    if own is not None:
        return own
    key = checkpoint_fingerprint(spec.checkpoint_dir, spec.network_size, spec.min_depth, spec.max_depth,
                                 spec.num_layers, spec.seed, spec.with_pose)
    target = default_cache_dir() / "onnx" / key
    if (target / "export.json").is_file():
        return target
    depth_net, pose_net = build_networks(spec)
    return build_cache_dir(target, lambda tmp: export_onnx(depth_net, pose_net, tmp, spec.network_size, spec.network_size,
                                                           spec.min_depth, spec.max_depth))


def generated_calibration_frames(camera_size: Tuple[int, int], count: int = 24, seed: int = 7) -> List[np.ndarray]:
    """Frames of the synthetic street (a seed the benchmark and tests do not use), for when no bag was given."""
    from .synthetic import SceneConfig, SyntheticSequence, TrajectoryConfig

    seq = SyntheticSequence(SceneConfig(seed=seed, moving_object=True), TrajectoryConfig(num_frames=count, fps=10.0),
                            int(camera_size[1]), int(camera_size[0]))
    return [seq.frame(i)[1] for i in range(count)]


def int8_graphs(onnx_dir: Path) -> Path:
    """Folder with int8 graphs for the export in ``onnx_dir``: the export's own when calibrated, else a cached
    quantisation calibrated on generated frames (with a warning: calibrate on your camera's frames with
    ``ros2-monodepth-export --int8 --calibration-bag``)."""
    from .export import ExportInfo
    from .quantize import has_int8_graphs, quantize_export

    if has_int8_graphs(onnx_dir):
        return onnx_dir
    info = ExportInfo.read(onnx_dir)
    key = hashlib.sha256(f"{info.depth_sha256}|{info.pose_sha256}|generated-v5".encode()).hexdigest()[:16]
    target = default_cache_dir() / "int8" / key
    if has_int8_graphs(target):
        LOG.warning("int8 graphs calibrated on generated frames (%s); for your camera run ros2-monodepth-export "
                    "--int8 --calibration-bag BAG", target)
        return target
    LOG.warning("no calibrated int8 graphs in %s: calibrating on generated street frames into %s (for your camera "
                "run ros2-monodepth-export --int8 --calibration-bag BAG)", onnx_dir, target)
    return build_cache_dir(target, lambda tmp: quantize_export(onnx_dir, generated_calibration_frames(info.camera_size),
                                                               "generated street frames", tmp))


def checkpoint_has_int8(spec: ModelSpec) -> bool:
    """True when the checkpoint's own export, the one the onnxruntime backend will run for ``spec`` (same
    network size), holds int8 graphs calibrated by ``ros2-monodepth-export --int8``."""
    if importlib.util.find_spec("onnxruntime") is None:
        return False
    from .quantize import has_int8_graphs

    own = checkpoint_export(spec)
    return own is not None and has_int8_graphs(own)


def graph_set(spec: ModelSpec) -> GraphSet:
    """The graphs the ONNX Runtime backend runs for ``spec``: fp32, or int8 when ``spec.precision`` is int8."""
    from .export import DEPTH_ONNX, GRAPH_FORM, POSE_ONNX, ExportInfo
    from .quantize import DEPTH_INT8_ONNX, INT8_FORM, POSE_INT8_ONNX, QuantizationError

    onnx_dir = exported_graphs(spec)
    directory, depth_file, pose_file, precision = onnx_dir, DEPTH_ONNX, POSE_ONNX, "fp32"
    if spec.precision == "int8":
        try:
            directory = int8_graphs(onnx_dir)
        except QuantizationError as exc:
            raise BackendError(str(exc)) from exc
        depth_file, pose_file, precision = DEPTH_INT8_ONNX, POSE_INT8_ONNX, "int8"
    info = ExportInfo.read(directory)
    if info.graph_form != GRAPH_FORM or (precision == "int8" and info.int8_form != INT8_FORM):
        # a checkpoint's own export from an older version: still correct, only slower (README, Performance)
        LOG.warning("graphs in %s were exported by an older ros2_monodepth (form %r/%r, now %r/%r); they run, "
                    "but exporting again gives faster ones: ros2-monodepth-export %s%s", directory,
                    info.graph_form, info.int8_form, GRAPH_FORM, INT8_FORM, spec.checkpoint_dir,
                    " --int8 --calibration-bag BAG" if precision == "int8" else "")
    pose = directory / pose_file if (spec.with_pose and info.has_pose) else None
    source = (f"int8, calibrated on {info.int8_calibration}, graphs in {directory}" if precision == "int8"
              else f"graphs in {directory}")
    return GraphSet(directory / depth_file, pose, (int(info.camera_size[0]), int(info.camera_size[1])),
                    info.channel_order, precision, source)


# ------------------------------------------------------------------------------------------------ choice
def resolve_device_precision(spec: ModelSpec) -> Tuple[str, str]:
    """'auto' device -> cuda when available, else cpu; 'auto' precision -> fp16 (CUDA); on the CPU int8 when the
    checkpoint carries calibrated int8 graphs (the fastest here, README Performance), else bf16 (CPU with
    AMX/AVX512-BF16), else fp32."""
    device, precision = spec.device, spec.precision
    if device == "auto":
        device = "cuda" if cuda_available() else "cpu"
    if precision == "auto":
        if device.startswith("cuda"):
            precision = "fp16"
        elif checkpoint_has_int8(replace(spec, device=device)):
            precision = "int8"
        else:
            precision = "bf16" if cpu_has_bf16() else "fp32"
    return device, precision


def available_backends() -> List[str]:
    """Backends whose libraries import here, fastest first."""
    found = []
    if cuda_available():
        from .backends.tensorrt_backend import tensorrt_available

        if tensorrt_available():
            found.append("tensorrt")
    if importlib.util.find_spec("onnxruntime") is not None:
        found.append("onnxruntime")
    if importlib.util.find_spec("torch") is not None:
        found.append("torch")
    return found


def auto_order(spec: ModelSpec, have: Sequence[str]) -> List[str]:
    """Fastest first, as measured: on CUDA TensorRT, then torch fp16; int8 on the CPU is onnxruntime's; on a CPU
    with AMX/AVX512-BF16 torch bf16 + channels_last beats onnxruntime fp32 (README, Performance); on other CPUs
    onnxruntime's optimised fp32 graph beats eager torch."""
    if spec.device.startswith("cuda"):
        order = ["tensorrt", "torch", "onnxruntime"]
    elif spec.precision == "int8":
        order = ["onnxruntime"]
    elif spec.precision == "bf16":
        order = ["torch", "onnxruntime"]
    else:
        order = ["onnxruntime", "torch"]
    return [b for b in order if b in have]


def create_backend(name: str, spec: ModelSpec) -> Tuple[InferenceBackend, str]:
    """Create backend ``name`` ('auto' or one of BACKENDS) with what it runs. Returns (backend, why it was chosen)."""
    device, precision = resolve_device_precision(spec)
    spec = replace(spec, device=device, precision=precision)
    if name == "auto":
        errors = []
        for candidate in auto_order(spec, available_backends()):
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


def _create(name: str, spec: ModelSpec) -> InferenceBackend:
    try:
        if name == "torch":
            from .backends.torch_backend import TorchBackend

            return TorchBackend(spec, build_networks(spec))
        if name == "onnxruntime":
            from .backends.onnxruntime_backend import OnnxRuntimeBackend

            return OnnxRuntimeBackend(spec, graph_set(spec))
        if name == "tensorrt":
            from .backends.tensorrt_backend import TensorRTBackend, tensorrt_available

            if not tensorrt_available():
                from .backends.tensorrt_backend import import_error

                raise BackendError(f"tensorrt is not importable ({import_error()})")
            return TensorRTBackend(spec, graph_set(replace(spec, precision="fp32")))
    except ImportError as exc:
        raise BackendError(f"{name} is not usable here ({exc})") from exc
    raise BackendError(f"unknown backend '{name}'")

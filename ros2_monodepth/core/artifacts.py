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
import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from .backends.base import BackendError, GraphSet, InferenceBackend, ModelSpec
from .checkpoint import CheckpointError
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
    from .export import GRAPH_FORM, weights_fingerprint

    h = hashlib.sha256(GRAPH_FORM.encode())
    h.update((weights_fingerprint(checkpoint_dir) if checkpoint_dir else "untrained").encode())
    h.update(repr(extra).encode())
    return h.hexdigest()[:16]


def _read_info(directory: Path) -> Optional[Any]:
    """export.json of ``directory``, or None (with a warning naming the problem) when it is missing or malformed."""
    from .export import ExportError, ExportInfo

    try:
        return ExportInfo.read(directory)
    except ExportError as exc:
        LOG.warning("%s", exc)
        return None


def graph_problem(directory: Path, names: Sequence[str], checkpoint_dir: str = "") -> Optional[str]:
    """Why the graphs ``names`` of export folder ``directory`` cannot be used (export.json unreadable, a graph
    missing or not the file recorded when it was written, or exported from other weights than the checkpoint's
    .pth files), or None when every one checks out."""
    from .export import ExportError, ExportInfo, weights_fingerprint

    try:
        info = ExportInfo.read(directory)
    except ExportError as exc:
        return str(exc)
    for name in names:
        problem = info.problem(directory, name)
        if problem:
            return problem
    if checkpoint_dir and info.weights_sha256 and info.weights_sha256 != weights_fingerprint(checkpoint_dir):
        return (f"{directory} was exported from other weights than the .pth files in {checkpoint_dir} (trained on "
                "after the export?)")
    return None


def _other_weights(cached: Path, source: Any) -> Optional[str]:
    """Why graphs cached from the export ``source`` (its ExportInfo) are not bound to the same weights, or None."""
    from .export import ExportError, ExportInfo

    try:
        recorded = ExportInfo.read(cached).weights_sha256
    except ExportError as exc:
        return str(exc)
    if recorded != source.weights_sha256:
        return f"{cached} was made from other weights ({recorded[:12] or 'none recorded'}) than {source.weights_sha256[:12]}"
    return None


def _graph_names(with_pose: bool, depth: str, pose: str) -> List[str]:
    return [depth] + ([pose] if with_pose else [])


def checkpoint_export(spec: ModelSpec, warn: bool = False) -> Optional[Path]:
    """``<checkpoint_dir>/onnx`` when it holds graphs that fit ``spec`` (network size, pose) and check out (hashes
    recorded at export, the checkpoint's weights), else None (with the reason logged when ``warn``)."""
    from .export import DEPTH_ONNX, EXPORT_INFO, POSE_ONNX

    if not spec.checkpoint_dir:
        return None
    own = Path(spec.checkpoint_dir) / "onnx"
    if not (own / EXPORT_INFO).is_file():
        return None
    info = _read_info(own) if warn else _quiet_info(own)
    if info is None:
        return None
    if tuple(info.network_size) != tuple(spec.network_size) or (spec.with_pose and not info.has_pose):
        if warn:
            LOG.warning("%s was exported for network size %s (pose: %s); exporting again for %s", own,
                        info.network_size, info.has_pose, spec.network_size)
        return None
    if info.depth_output_scale != spec.depth_output_scale:
        if warn:
            LOG.info("%s ends the depth graph at disparity scale %d; exporting scale %d into the cache", own,
                     info.depth_output_scale, spec.depth_output_scale)
        return None
    problem = graph_problem(own, _graph_names(spec.with_pose, DEPTH_ONNX, POSE_ONNX), spec.checkpoint_dir)
    if problem:
        if warn:
            LOG.warning("%s; exporting the checkpoint's weights again into the cache instead "
                        "(ros2-monodepth-export %s replaces it)", problem, spec.checkpoint_dir)
        return None
    return own


def _quiet_info(directory: Path) -> Optional[Any]:
    from .export import ExportError, ExportInfo

    try:
        return ExportInfo.read(directory)
    except ExportError:
        return None


def exported_graphs(spec: ModelSpec) -> Path:
    """Folder holding depth.onnx / pose.onnx / export.json that match ``spec``: the checkpoint's own export when it
    checks out, or one exported once into the cache at the network size (the caller resizes frames to fit). A
    cached export that does not check out is exported again, with a warning."""
    from .export import DEPTH_ONNX, POSE_ONNX, ExportInfo, export_onnx, weights_fingerprint

    own = checkpoint_export(spec, warn=True)
    if own is not None:
        return own
    # the half-resolution head keys its own export (scale 0 keeps the keys of the graphs cached before it existed)
    key = checkpoint_fingerprint(spec.checkpoint_dir, spec.network_size, spec.min_depth, spec.max_depth,
                                 spec.num_layers, spec.seed, spec.with_pose,
                                 *((f"depth_output_scale={spec.depth_output_scale}",) if spec.depth_output_scale else ()))
    target = default_cache_dir() / "onnx" / key
    if target.exists():
        # bound to the weights that made it: a graph swapped in with a consistent export.json is still refused
        problem = graph_problem(target, _graph_names(spec.with_pose, DEPTH_ONNX, POSE_ONNX), spec.checkpoint_dir)
        if problem is None and spec.checkpoint_dir and not ExportInfo.read(target).weights_sha256:
            problem = f"{target} does not record the weights it was exported from"
        if problem is None:
            return target
        LOG.warning("cached export unusable (%s): exporting again", problem)
        shutil.rmtree(target, ignore_errors=True)
    depth_net, pose_net = build_networks(spec)
    weights = weights_fingerprint(spec.checkpoint_dir) if spec.checkpoint_dir else ""
    return build_cache_dir(target, lambda tmp: export_onnx(depth_net, pose_net, tmp, spec.network_size, spec.network_size,
                                                           spec.min_depth, spec.max_depth, weights_sha256=weights,
                                                           depth_output_scale=spec.depth_output_scale))


def generated_calibration_frames(camera_size: Tuple[int, int], count: int = 24, seed: int = 7) -> List[np.ndarray]:
    """Frames of the synthetic street (a seed the benchmark and tests do not use), for when no bag was given."""
    from .synthetic import SceneConfig, SyntheticSequence, TrajectoryConfig

    seq = SyntheticSequence(SceneConfig(seed=seed, moving_object=True), TrajectoryConfig(num_frames=count, fps=10.0),
                            int(camera_size[1]), int(camera_size[0]))
    return [seq.frame(i)[1] for i in range(count)]


def int8_graphs(onnx_dir: Path, flavour: str = "onnxruntime", has_pose: bool = True) -> Path:
    """Folder with int8 graphs of ``flavour`` ('onnxruntime' or 'tensorrt') for the export in ``onnx_dir``: the
    export's own when calibrated and intact, else a cached quantisation (both flavours) calibrated on generated
    frames, with a warning (calibrate on your camera's frames with ``ros2-monodepth-export --int8
    --calibration-bag``)."""
    from .export import ExportInfo
    from .quantize import has_int8_graphs, int8_files, quantize_export

    names = _graph_names(has_pose, *int8_files(flavour))
    if has_int8_graphs(onnx_dir, flavour):
        problem = graph_problem(onnx_dir, names)
        if problem is None:
            return onnx_dir
        LOG.warning("%s: calibrating again on generated frames instead (ros2-monodepth-export --int8 replaces it)", problem)
    info = ExportInfo.read(onnx_dir)
    key = hashlib.sha256(f"{info.depth_sha256}|{info.pose_sha256}|generated-v7".encode()).hexdigest()[:16]
    target = default_cache_dir() / "int8" / key
    if target.exists():
        problem = (graph_problem(target, names) or _other_weights(target, info)) if has_int8_graphs(target, flavour) \
            else "incomplete"
        if problem is None:
            LOG.warning("int8 graphs calibrated on generated frames (%s); for your camera run ros2-monodepth-export "
                        "--int8 --calibration-bag BAG", target)
            return target
        LOG.warning("cached int8 graphs unusable (%s): calibrating again", problem)
        shutil.rmtree(target, ignore_errors=True)
    LOG.warning("no calibrated int8 graphs in %s: calibrating on generated street frames into %s (for your camera "
                "run ros2-monodepth-export --int8 --calibration-bag BAG)", onnx_dir, target)
    return build_cache_dir(target, lambda tmp: quantize_export(onnx_dir, generated_calibration_frames(info.camera_size),
                                                               "generated street frames", tmp))


def fp16_graphs(spec: ModelSpec, onnx_dir: Path) -> Path:
    """Folder with depth.fp16.onnx (+ pose.fp16.onnx) for the export in ``onnx_dir`` (strongly typed TensorRT
    builds): the export's own when it has them, else exported once from the checkpoint into the cache."""
    from .export import DEPTH_FP16_ONNX, EXPORT_INFO, POSE_FP16_ONNX, ExportInfo, export_fp16_graphs

    names = _graph_names(spec.with_pose, DEPTH_FP16_ONNX, POSE_FP16_ONNX)
    if graph_problem(onnx_dir, names) is None:
        return onnx_dir
    info = ExportInfo.read(onnx_dir)
    target = default_cache_dir() / "onnx-fp16" / hashlib.sha256(f"{info.depth_sha256}|{info.pose_sha256}".encode()).hexdigest()[:16]
    if target.exists():
        if graph_problem(target, names) is None and not _other_weights(target, info):
            return target
        shutil.rmtree(target, ignore_errors=True)
    depth_net, pose_net = build_networks(spec)

    def build(tmp: Path) -> None:
        shutil.copy(onnx_dir / EXPORT_INFO, tmp / EXPORT_INFO)
        export_fp16_graphs(depth_net, pose_net, tmp)

    return build_cache_dir(target, build)


def checkpoint_has_int8(spec: ModelSpec, flavour: str = "onnxruntime") -> bool:
    """True when the checkpoint's own export, the one the backends will run for ``spec`` (same network size), holds
    int8 graphs of ``flavour`` calibrated by ``ros2-monodepth-export --int8``."""
    if importlib.util.find_spec("onnxruntime") is None:
        return False
    from .quantize import has_int8_graphs

    own = checkpoint_export(spec)
    return own is not None and has_int8_graphs(own, flavour)


def graph_set(spec: ModelSpec, flavour: str = "onnxruntime", onnx_dir: Optional[Path] = None) -> GraphSet:
    """The graphs for ``spec``: fp32; int8 when ``spec.precision`` is int8 (of ``flavour``: ONNX Runtime's CPU graphs
    or TensorRT's Q/DQ graphs); fp16 graphs when ``flavour`` is 'tensorrt-fp16'. From ``onnx_dir`` when given (an
    export folder), else the export that fits ``spec`` (``exported_graphs``)."""
    from .export import DEPTH_FP16_ONNX, DEPTH_ONNX, GRAPH_FORM, POSE_FP16_ONNX, POSE_ONNX, ExportInfo
    from .quantize import INT8_FORM, QuantizationError, int8_files

    onnx_dir = exported_graphs(spec) if onnx_dir is None else onnx_dir
    directory, (depth_file, pose_file), precision = onnx_dir, (DEPTH_ONNX, POSE_ONNX), "fp32"
    if spec.precision == "int8":
        try:
            directory = int8_graphs(onnx_dir, "tensorrt" if flavour.startswith("tensorrt") else "onnxruntime",
                                    spec.with_pose)
        except QuantizationError as exc:
            raise BackendError(str(exc)) from exc
        depth_file, pose_file = int8_files("tensorrt" if flavour.startswith("tensorrt") else "onnxruntime")
        precision = "int8"
    elif flavour == "tensorrt-fp16":
        directory, (depth_file, pose_file), precision = fp16_graphs(spec, onnx_dir), (DEPTH_FP16_ONNX, POSE_FP16_ONNX), "fp16"
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
                    info.channel_order, precision, source, info.pose_model)


def tensorrt_engines(spec: ModelSpec, api: Any, workspace: int = 1 << 30, onnx_dir: Optional[Path] = None) -> GraphSet:
    """The TensorRT engines for ``spec`` (precision fp32, fp16 or int8) on this GPU: built from the graphs the build
    recipe of the installed TensorRT needs (``tensorrt_engines.build_recipe``), cached under
    ``~/.cache/ros2_monodepth/engines`` by key (``engine_cache.EngineKey``) and checked against their recorded
    hash. Needs a CUDA device."""
    from functools import partial

    from .backends.cuda_buffers import device_properties
    from .backends.engine_cache import EngineKey, ensure_engine
    from .backends.tensorrt_engines import build_recipe, build_serialized_engine

    recipe = build_recipe(api, spec.precision)
    flavour = {"fp32": "tensorrt", "fp16": "tensorrt-fp16", "int8": "tensorrt"}[recipe.graph]
    graphs = graph_set(replace(spec, precision="int8" if recipe.graph == "int8" else "fp32"), flavour, onnx_dir)
    gpu = device_properties()
    calibration = graphs.source if recipe.graph == "int8" else ""
    engines: Dict[str, Path] = {}
    for stem, onnx_path in (("depth", graphs.depth), ("pose", graphs.pose)):
        if onnx_path is None:
            continue
        key = EngineKey(file_sha256(onnx_path), api.version_text, gpu.name, gpu.capability, gpu.sm_count,
                        gpu.memory_mb, spec.precision, recipe.describe(), calibration, graphs.channel_order)
        path = default_cache_dir() / "engines" / key.filename(stem)
        engines[stem] = ensure_engine(path, partial(build_serialized_engine, api, onnx_path, recipe, workspace), key)
        LOG.info("TensorRT %s engine %s", stem, path)
    return GraphSet(engines["depth"], engines.get("pose"), graphs.camera_size, graphs.channel_order, spec.precision,
                    f"{recipe.describe()} on {gpu.name} (sm {gpu.capability}, {gpu.sm_count} SMs), from {graphs.source}",
                    graphs.pose_model)


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
        from .backends.trt_compat import load_tensorrt

        if load_tensorrt()[0] is not None:
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
        have = available_backends()
        if spec.device.startswith("cuda") and "tensorrt" not in have:
            from .backends.trt_compat import load_tensorrt

            errors.append(f"tensorrt: {load_tensorrt()[1] or 'not usable'}")
        for candidate in auto_order(spec, have):
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

            try:
                graphs = graph_set(spec)
            except (BackendError, CheckpointError):
                raise
            except Exception as exc:   # export, quantisation or a file that cannot be rebuilt: the next backend runs
                raise BackendError(f"the onnxruntime graphs could not be prepared: {type(exc).__name__}: {exc}") from exc
            return OnnxRuntimeBackend(spec, graphs)
        if name == "tensorrt":
            return _create_tensorrt(spec)
    except ImportError as exc:
        raise BackendError(f"{name} is not usable here ({exc})") from exc
    raise BackendError(f"unknown backend '{name}'")


def _create_tensorrt(spec: ModelSpec) -> InferenceBackend:
    """The TensorRT backend, or BackendError with the reason: TensorRT missing or of an unusable version, no GPU,
    a precision it does not build, or any failure while building engines (so that ``auto`` falls back)."""
    from .backends.trt_compat import load_tensorrt

    api, why = load_tensorrt()
    if api is None:
        raise BackendError(f"tensorrt is not usable here: {why}")
    if not spec.device.startswith("cuda"):
        raise BackendError(f"TensorRT runs on CUDA devices, not '{spec.device}'")
    if spec.precision not in ("fp32", "fp16", "int8"):
        raise BackendError(f"TensorRT builds fp32, fp16 or int8 engines, not '{spec.precision}'")
    try:
        from .backends.tensorrt_backend import TensorRTBackend

        return TensorRTBackend(spec, tensorrt_engines(spec, api), api)
    except (BackendError, CheckpointError):
        raise
    except Exception as exc:   # AttributeError from an API that changed, CUDA errors, build failures
        raise BackendError(f"TensorRT ({api.describe()}) failed: {type(exc).__name__}: {exc}") from exc

"""ONNX export of the deployment wrappers (uint8 camera image in; depth / 4x4 pose out).

The graphs do the resize, normalisation and disparity -> depth inside, so a runtime only copies bytes in
and out. Static shapes at the camera size they were exported for; opset 17. One form for every backend
(``GRAPH_FORM`` "portable"): each uint8 input is cast to float before any other op and every weight is a
constant (the sub-pixel stage's rearranged weights are computed at export, no Einsum over weights), which
TensorRT's ONNX parser accepts (checked in the tests with the parser of TensorRT for RTX) and ONNX Runtime runs
as fast as the earlier uint8-first form. ``export.json`` beside the graphs records what they expect.
"""

from __future__ import annotations

import copy
import hashlib
import io
import json
import os
import warnings
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Dict, Optional, Tuple, Union

import numpy as np
import torch

from .backends.base import DEPTH_FEATURES, DEPTH_INPUT, DEPTH_OUTPUT, POSE_FEATURE_INPUTS, POSE_INPUTS, POSE_OUTPUT
from .fileio import atomic_write_bytes, atomic_write_text, file_sha256
from .inference_model import DepthInference, PoseFromFeatures, PoseInference, check_output_scale
from .networks import DepthNet, PoseNet

OPSET = 17
EXPORT_INFO = "export.json"
DEPTH_ONNX = "depth.onnx"
POSE_ONNX = "pose.onnx"
# fp16 graphs (networks in float16, conversions in float32) for TensorRT builds that take precision from the graph
# (strongly typed networks: TensorRT 11 has no FP16 builder flag)
DEPTH_FP16_ONNX = "depth.fp16.onnx"
POSE_FP16_ONNX = "pose.fp16.onnx"
# Changes whenever exported graphs change form for the same weights: cached exports are rebuilt, and a
# checkpoint's own export of an older form runs with a warning to export again.
GRAPH_FORM = "portable-3"


class ExportError(ValueError):
    """An export folder that cannot be used: export.json missing or malformed, a graph missing or changed since it
    was written. The message names the file and what is wrong."""


@dataclass
class ExportInfo:
    camera_size: Tuple[int, int]            # (H, W) of the uint8 input images
    network_size: Tuple[int, int]           # (h, w) the network runs at
    output_size: Tuple[int, int]            # (h, w) of the depth output
    channel_order: str                      # 'rgb' or 'bgr'
    min_depth: float
    max_depth: float
    num_layers: int
    opset: int = OPSET
    has_pose: bool = True
    depth_sha256: str = ""
    pose_sha256: str = ""
    int8_calibration: str = ""              # where the int8 graphs' calibration frames came from ('' = none)
    graph_form: str = ""                    # GRAPH_FORM of the code that exported the graphs ('' = before it existed)
    int8_form: str = ""                     # quantize.INT8_FORM of the code that made the int8 graphs
    files: Dict[str, str] = field(default_factory=dict)   # every graph file here -> its SHA-256 when written
    weights_sha256: str = ""                # ``weights_fingerprint`` of the checkpoint the graphs came from ('' unknown)
    # 'shared': the depth graph also outputs the encoder's features (DEPTH_FEATURES) and the pose graph takes two
    # frames' features (POSE_FEATURE_INPUTS) instead of two images
    pose_model: str = "separate"
    # 1: the depth graph ends at the decoder's half-resolution disparity head, upsampled to the network size
    # (``inference_model.DepthInference``'s ``output_scale``); 0: the full-resolution head
    depth_output_scale: int = 0

    @classmethod
    def read(cls, directory: str | os.PathLike) -> "ExportInfo":
        """export.json of ``directory``; ExportError naming what is wrong when it is missing or malformed."""
        path = Path(directory) / EXPORT_INFO
        try:
            raw = json.loads(path.read_text())
        except FileNotFoundError as exc:
            raise ExportError(f"{path}: not found") from exc
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ExportError(f"{path}: not readable as JSON ({exc})") from exc
        if not isinstance(raw, dict):
            raise ExportError(f"{path}: expected a JSON object, found {type(raw).__name__}")
        known = {f.name for f in fields(cls)}
        try:
            values = {k: v for k, v in raw.items() if k in known}
            for k in ("camera_size", "network_size", "output_size"):
                values[k] = tuple(int(v) for v in values[k])
                if len(values[k]) != 2 or min(values[k]) <= 0:
                    raise ValueError(f"{k} must be two positive integers, got {raw[k]!r}")
            if values.get("channel_order") not in ("rgb", "bgr"):
                raise ValueError(f"channel_order must be 'rgb' or 'bgr', got {values.get('channel_order')!r}")
            if values.get("pose_model", "separate") not in ("separate", "shared"):
                raise ValueError(f"pose_model must be 'separate' or 'shared', got {values.get('pose_model')!r}")
            check_output_scale(values.get("depth_output_scale", 0))
            if not isinstance(values.get("files", {}), dict):
                raise ValueError(f"files must be an object, got {values['files']!r}")
            return cls(**values)
        except (KeyError, TypeError, ValueError) as exc:
            raise ExportError(f"{path}: {exc if not isinstance(exc, KeyError) else f'missing entry {exc}'}") from exc

    def write(self, directory: str | os.PathLike) -> None:
        atomic_write_text(json.dumps(asdict(self), indent=2), Path(directory) / EXPORT_INFO)

    def record(self, directory: str | os.PathLike, name: str) -> str:
        """Note graph file ``name`` of ``directory`` with its SHA-256 (call ``write`` after); returns the hash."""
        digest = file_sha256(Path(directory) / name)
        self.files[name] = digest
        if name == DEPTH_ONNX:
            self.depth_sha256 = digest
        elif name == POSE_ONNX:
            self.pose_sha256 = digest
        return digest

    def problem(self, directory: str | os.PathLike, name: str) -> Optional[str]:
        """Why graph file ``name`` of ``directory`` cannot be trusted (missing, or not the file recorded when it was
        written: truncated, replaced, corrupted), or None when its SHA-256 is the one recorded."""
        path = Path(directory) / name
        expected = self.files.get(name) or {DEPTH_ONNX: self.depth_sha256, POSE_ONNX: self.pose_sha256}.get(name, "")
        if not path.is_file():
            return f"{path} is missing"
        if not expected:
            return f"{path} is not recorded in {EXPORT_INFO}"
        if file_sha256(path) != expected:
            return f"{path} is not the file written by the export (its SHA-256 differs from {EXPORT_INFO}'s)"
        return None


def _export(module: torch.nn.Module, args: tuple, path: Path, input_names, output_names) -> None:
    import onnx

    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings about the static shapes we want
        # The TorchScript-based exporter: no onnxscript dependency, plain static graphs for TensorRT.
        torch.onnx.export(module, args, buffer,  # type: ignore[arg-type]  # file objects are documented; the stub says paths
                          input_names=list(input_names), output_names=list(output_names),
                          opset_version=OPSET, do_constant_folding=True, dynamo=False)
    model = onnx.load_from_string(buffer.getvalue())
    _set_static_output_shapes(model, module, args)
    atomic_write_bytes(model.SerializeToString(), path)


def _set_static_output_shapes(model, module: torch.nn.Module, args: tuple) -> None:
    """Write the outputs' concrete shapes into the graph (the tracer leaves them symbolic), so that
    TensorRT and readers of the model see fully static shapes."""
    with torch.no_grad():
        outs = module(*args)
    outs = outs if isinstance(outs, (tuple, list)) else (outs,)
    for value, out in zip(model.graph.output, outs):
        dims = value.type.tensor_type.shape.dim
        del dims[:]
        for n in out.shape:
            dims.add().dim_value = int(n)


def deployment_modules(depth_net: DepthNet, pose_net: Optional[PoseNet], info: ExportInfo, subpixel_head: bool = True,
                       dtype: torch.dtype = torch.float32
                       ) -> Tuple[DepthInference, Optional[Union[PoseInference, PoseFromFeatures]]]:
    """The wrappers an export describes: what is traced (``subpixel_head`` True, see ``subpixel.py``), and what
    its graphs are checked against (False: the reference form, so the check covers that rewrite too). With
    ``dtype`` float16 the networks are half-precision copies (the given networks are not changed)."""
    bgr = info.channel_order == "bgr"
    output_size = info.output_size if tuple(info.output_size) != tuple(info.network_size) else None
    shared = info.pose_model == "shared"
    if dtype != torch.float32:
        depth_net = copy.deepcopy(depth_net).to(dtype)
        pose_net = copy.deepcopy(pose_net).to(dtype) if pose_net is not None else None
    else:
        depth_net, pose_net = depth_net.float(), pose_net.float() if pose_net is not None else None
    depth_model = DepthInference(depth_net.eval(), info.network_size, info.min_depth, info.max_depth, bgr,
                                 output_size, subpixel_head, dtype, with_features=shared,
                                 output_scale=info.depth_output_scale).eval()
    pose_model: Optional[Union[PoseInference, PoseFromFeatures]] = None
    if pose_net is not None and info.has_pose:
        pose_model = (PoseFromFeatures(pose_net.eval(), dtype) if shared
                      else PoseInference(pose_net.eval(), info.network_size, bgr, dtype)).eval()
    return depth_model, pose_model


def export_onnx(depth_net: DepthNet, pose_net: Optional[PoseNet], out_dir: str | os.PathLike,
                camera_size: Tuple[int, int], network_size: Tuple[int, int], min_depth: float, max_depth: float,
                channel_order: str = "rgb", depth_at_camera_resolution: bool = False, weights_sha256: str = "",
                depth_output_scale: int = 0) -> ExportInfo:
    """Write depth.onnx (+ pose.onnx) and export.json into ``out_dir``. ``weights_sha256`` is the
    ``weights_fingerprint`` of the checkpoint the networks came from ('' for untrained networks);
    ``depth_output_scale`` the disparity head the depth graph ends at (``inference_model.check_output_scale``)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    camera_size = (int(camera_size[0]), int(camera_size[1]))
    network_size = (int(network_size[0]), int(network_size[1]))
    output_size = camera_size if depth_at_camera_resolution else network_size
    info = ExportInfo(camera_size, network_size, output_size, channel_order, float(min_depth), float(max_depth),
                      depth_net.encoder.num_layers, has_pose=pose_net is not None, graph_form=GRAPH_FORM,
                      weights_sha256=weights_sha256,
                      pose_model="shared" if pose_net is not None and pose_net.shared else "separate",
                      depth_output_scale=check_output_scale(depth_output_scale))
    _export_graphs(depth_net, pose_net, out, info, torch.float32, DEPTH_ONNX, POSE_ONNX)
    info.write(out)
    return info


def export_fp16_graphs(depth_net: DepthNet, pose_net: Optional[PoseNet], onnx_dir: str | os.PathLike) -> ExportInfo:
    """Add depth.fp16.onnx (+ pose.fp16.onnx) to the export in ``onnx_dir``: the same wrappers with the networks in
    float16 (input conversion, resize and disparity -> depth stay float32), for strongly typed TensorRT builds."""
    out = Path(onnx_dir)
    info = ExportInfo.read(out)
    _export_graphs(depth_net, pose_net, out, info, torch.float16, DEPTH_FP16_ONNX, POSE_FP16_ONNX)
    info.write(out)
    return info


def _export_graphs(depth_net: DepthNet, pose_net: Optional[PoseNet], out: Path, info: ExportInfo, dtype: torch.dtype,
                   depth_name: str, pose_name: str) -> None:
    depth_model, pose_model = deployment_modules(depth_net, pose_net, info, dtype=dtype)
    example = torch.zeros(info.camera_size[0], info.camera_size[1], 3, dtype=torch.uint8)
    shared = info.pose_model == "shared"
    _export(depth_model, (example,), out / depth_name, [DEPTH_INPUT], [DEPTH_OUTPUT] + ([DEPTH_FEATURES] if shared else []))
    info.record(out, depth_name)
    if pose_model is not None:
        if shared:
            with torch.no_grad():
                features = depth_model(example)[1]
            _export(pose_model, (features, features), out / pose_name, POSE_FEATURE_INPUTS, [POSE_OUTPUT])
        else:
            _export(pose_model, (example, example), out / pose_name, POSE_INPUTS, [POSE_OUTPUT])
        info.record(out, pose_name)


def weights_fingerprint(checkpoint_dir: str | os.PathLike) -> str:
    """SHA-256 over a checkpoint's weight files (name and content of every *.pth) and the model-contract entries that
    change a graph built from them (``pose_downscale`` when it is not 1, ``pose_model`` when shared), '' when there is no weight file: what an
    export records, so that graphs exported from other weights than the ones beside them are noticed."""
    from .checkpoint import read_metadata

    d = Path(checkpoint_dir)
    names = sorted(p.name for p in d.glob("*.pth")) if d.is_dir() else []
    if not names:
        return ""
    h = hashlib.sha256()
    for name in names:
        h.update(name.encode())
        h.update(file_sha256(d / name).encode())
    meta = read_metadata(d)
    if meta.pose_downscale != 1:   # 1 adds nothing: the fingerprints of every earlier checkpoint stay as they were
        h.update(f"pose_downscale={meta.pose_downscale}".encode())
    if meta.pose_model != "separate":
        h.update(f"pose_model={meta.pose_model}".encode())
    return h.hexdigest()


def onnxruntime_parity(depth_net: DepthNet, pose_net: Optional[PoseNet], onnx_dir: str | os.PathLike, seed: int = 0
                       ) -> dict:
    """Max absolute error between the PyTorch wrappers and the ONNX graphs under onnxruntime (CPU)."""
    import onnxruntime as ort

    info = ExportInfo.read(onnx_dir)
    depth_model, pose_model = deployment_modules(depth_net, pose_net, info, subpixel_head=False)
    rng = np.random.default_rng(seed)
    h, w = info.camera_size
    a = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    b = np.clip(a.astype(np.int16) + rng.integers(-8, 9, a.shape), 0, 255).astype(np.uint8)
    result = {}
    shared = info.pose_model == "shared"
    sess = ort.InferenceSession(str(Path(onnx_dir) / DEPTH_ONNX), providers=["CPUExecutionProvider"])
    outs = sess.run(None, {DEPTH_INPUT: a})
    got = outs[0]
    with torch.no_grad():
        ref_out = depth_model(torch.from_numpy(a))
    ref = (ref_out[0] if shared else ref_out).numpy()
    result["depth_max_abs_error"] = float(np.abs(got - ref).max())
    result["depth_max_rel_error"] = float((np.abs(got - ref) / np.abs(ref)).max())
    if shared:
        result["features_max_abs_error"] = float(np.abs(outs[1] - ref_out[1].numpy()).max())
    if pose_model is not None:
        sess_pose = ort.InferenceSession(str(Path(onnx_dir) / POSE_ONNX), providers=["CPUExecutionProvider"])
        if shared:
            # the graph's own features of both frames in, against the wrappers' features of both frames
            fb = sess.run(None, {DEPTH_INPUT: b})[1]
            got = sess_pose.run(None, {POSE_FEATURE_INPUTS[0]: outs[1], POSE_FEATURE_INPUTS[1]: fb})[0]
            with torch.no_grad():
                ref = pose_model(ref_out[1], depth_model(torch.from_numpy(b))[1]).numpy()
        else:
            got = sess_pose.run(None, {POSE_INPUTS[0]: a, POSE_INPUTS[1]: b})[0]
            with torch.no_grad():
                ref = pose_model(torch.from_numpy(a), torch.from_numpy(b)).numpy()
        result["pose_max_abs_error"] = float(np.abs(got - ref).max())
    return result

"""ONNX export of the deployment wrappers (uint8 camera image in; depth / 4x4 pose out).

The graphs do the resize, normalisation and disparity -> depth inside, so a runtime only copies bytes in
and out. Static shapes at the camera size they were exported for; opset 17 (supported by TensorRT 10 and
ONNX Runtime). ``export.json`` beside the graphs records what they expect.
"""

from __future__ import annotations

import io
import json
import os
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional, Tuple

import numpy as np
import torch

from .backends.base import DEPTH_INPUT, DEPTH_OUTPUT, POSE_INPUTS, POSE_OUTPUT
from .fileio import atomic_write_bytes, atomic_write_text, file_sha256
from .inference_model import DepthInference, PoseInference
from .networks import DepthNet, PoseNet

OPSET = 17
EXPORT_INFO = "export.json"
DEPTH_ONNX = "depth.onnx"
POSE_ONNX = "pose.onnx"
# Changes whenever exported graphs change form for the same weights: cached exports are rebuilt, and a
# checkpoint's own export of an older form runs with a warning to export again.
GRAPH_FORM = "subpixel-head-2"


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

    @classmethod
    def read(cls, directory: str | os.PathLike) -> "ExportInfo":
        raw = json.loads((Path(directory) / EXPORT_INFO).read_text())
        for k in ("camera_size", "network_size", "output_size"):
            raw[k] = tuple(raw[k])
        return cls(**raw)

    def write(self, directory: str | os.PathLike) -> None:
        atomic_write_text(json.dumps(asdict(self), indent=2), Path(directory) / EXPORT_INFO)


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


def deployment_modules(depth_net: DepthNet, pose_net: Optional[PoseNet], info: ExportInfo, subpixel_head: bool = True
                       ) -> Tuple[DepthInference, Optional[PoseInference]]:
    """The wrappers an export describes: what is traced (``subpixel_head`` True, see ``subpixel.py``), and what
    its graphs are checked against (False: the reference form, so the check covers that rewrite too)."""
    bgr = info.channel_order == "bgr"
    output_size = info.output_size if tuple(info.output_size) != tuple(info.network_size) else None
    depth_model = DepthInference(depth_net.float().eval(), info.network_size, info.min_depth, info.max_depth, bgr,
                                 output_size, subpixel_head).eval()
    pose_model = None
    if pose_net is not None and info.has_pose:
        pose_model = PoseInference(pose_net.float().eval(), info.network_size, bgr).eval()
    return depth_model, pose_model


def export_onnx(depth_net: DepthNet, pose_net: Optional[PoseNet], out_dir: str | os.PathLike,
                camera_size: Tuple[int, int], network_size: Tuple[int, int], min_depth: float, max_depth: float,
                channel_order: str = "rgb", depth_at_camera_resolution: bool = False) -> ExportInfo:
    """Write depth.onnx (+ pose.onnx) and export.json into ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    camera_size = (int(camera_size[0]), int(camera_size[1]))
    network_size = (int(network_size[0]), int(network_size[1]))
    output_size = camera_size if depth_at_camera_resolution else network_size
    info = ExportInfo(camera_size, network_size, output_size, channel_order, float(min_depth), float(max_depth),
                      depth_net.encoder.num_layers, has_pose=pose_net is not None, graph_form=GRAPH_FORM)
    depth_model, pose_model = deployment_modules(depth_net, pose_net, info)
    example = torch.zeros(camera_size[0], camera_size[1], 3, dtype=torch.uint8)
    _export(depth_model, (example,), out / DEPTH_ONNX, [DEPTH_INPUT], [DEPTH_OUTPUT])
    info.depth_sha256 = file_sha256(out / DEPTH_ONNX)
    if pose_model is not None:
        _export(pose_model, (example, example), out / POSE_ONNX, POSE_INPUTS, [POSE_OUTPUT])
        info.pose_sha256 = file_sha256(out / POSE_ONNX)
    info.write(out)
    return info


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
    sess = ort.InferenceSession(str(Path(onnx_dir) / DEPTH_ONNX), providers=["CPUExecutionProvider"])
    got = sess.run(None, {DEPTH_INPUT: a})[0]
    with torch.no_grad():
        ref = depth_model(torch.from_numpy(a)).numpy()
    result["depth_max_abs_error"] = float(np.abs(got - ref).max())
    result["depth_max_rel_error"] = float((np.abs(got - ref) / np.abs(ref)).max())
    if pose_model is not None:
        sess = ort.InferenceSession(str(Path(onnx_dir) / POSE_ONNX), providers=["CPUExecutionProvider"])
        got = sess.run(None, {POSE_INPUTS[0]: a, POSE_INPUTS[1]: b})[0]
        with torch.no_grad():
            ref = pose_model(torch.from_numpy(a), torch.from_numpy(b)).numpy()
        result["pose_max_abs_error"] = float(np.abs(got - ref).max())
    return result

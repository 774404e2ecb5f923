"""INT8 graphs for ONNX Runtime on the CPU: static (QDQ) quantisation of the exported depth and pose graphs,
calibrated on camera frames.

Owns: which operators are quantised and how, the calibration readers, where the int8 graphs live
(``depth.int8.onnx`` / ``pose.int8.onnx`` beside the fp32 graphs, described in ``export.json``), and the
int8-vs-fp32 accuracy check.

Choices, measured on a 2-core AVX512-VNNI CPU at 640x192 (README, Performance):
- Conv is quantised (weights int8 per output channel, activations uint8 asymmetric, min-max calibration):
  every layer of both networks is a convolution. So are the encoders' Relu and MaxPool: the quantiser then
  drops each Relu into its convolution's output quantisation (one rounding instead of a uint8 -> float -> uint8
  round trip) and the stem's max-pool runs on uint8 NHWC, so each ResNet encoder runs without a float tensor
  or a layout transpose between convolutions (depth graph -8 %, pose graph -6 %; int8-vs-fp32 depth abs_rel
  0.0056 instead of 0.0061). The MatMuls after the networks build the 4x4 pose from 6 numbers and must stay
  fp32 (quantised, the rotation stopped being orthonormal, by 7e-4). Quantising Pad, Resize and Concat with
  the quantiser as well was no faster (it wraps them in more Q/DQ pairs) and made the pose translation 300x
  less accurate; the exact rewrite below does better for Pad and Concat.
- Three exact rewrites of the quantised graph follow (``rewrite_for_cpu``), measured on the 640x192 depth graph:
  * the encoders' first convolution (7x7, stride 2, 3 or 6 input channels) becomes SpaceToDepth(2), before its
    input's QuantizeLinear, and a 4x4 stride-1 convolution on 12 or 24 channels whose int8 kernel holds the same
    values (and zeros, ``stem_space_to_depth``): the same integer sums, bit-identical output where ORT's int8
    kernels are exact (AVX512-VNNI, AVX2; with AMX they differed by 0.3 %, docs/performance.md). ORT's int8
    convolution ran the 3-channel stem at a third of the graph's best rate; the stem alone (Q, conv, ReLU, DQ at
    640x192) went from 4.0-4.7 ms to 3.0-3.2 ms.
  * each QuantizeLinear that follows a reflection / edge Pad or a Concat moves above it, so those move uint8
    instead of float32. Quantising is elementwise, so the values are bit-identical; the graph got 10 % faster.
    Not through Resize: ORT's uint8 nearest Resize was slower than its float one.
  * ELU becomes Max(x, Exp(Min(x, 0)) - 1): ORT's Elu kernel took 2.4 ms on a 16x192x640 map, the four ops
    1.5 ms (its Exp is vectorised). Another 5 %. Where x is dequantised (every ELU of the int8 decoder), the
    clamps run on the uint8 values before dequantising (``expand_elu``): no float Min/Max, and no second copy of
    the DequantizeLinear that onnxruntime made for x's two consumers; -2 % more. The int8 graphs are for this
    CPU path only; TensorRT builds from the fp32 graph, where Elu is one fused activation.
- The graph keeps uint8 camera input and the in-graph resize; only the networks' convolutions change.
- TensorRT gets its own flavour (``*.qdq.onnx``): explicit Q/DQ in TensorRT's scheme (signed int8, symmetric
  activations and weights, float biases) on the convolutions only, none of the CPU rewrites; TensorRT fuses the
  rest and runs it in fp16 (TensorRT 10) or as the graph says (strongly typed, TensorRT 11). Made from the same
  calibration frames by ``quantize_export``.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Sequence

import numpy as np

from .backends.base import DEPTH_INPUT, POSE_FEATURE_INPUTS, POSE_INPUTS
from .export import DEPTH_ONNX, POSE_ONNX, ExportInfo
from .fileio import atomic_write_bytes

LOG = logging.getLogger(__name__)
# ONNX Runtime on the CPU: uint8 activations, the CPU rewrites below
DEPTH_INT8_ONNX = "depth.int8.onnx"
POSE_INT8_ONNX = "pose.int8.onnx"
QUANTIZED_OPS = ["Conv", "Relu", "MaxPool"]
# TensorRT: explicit Q/DQ the way TensorRT quantises (signed int8, symmetric activations and weights, per-channel
# weights, float biases: its ONNX parser refuses uint8 intermediates and int32 bias DequantizeLinear), no rewrites
DEPTH_QDQ_ONNX = "depth.qdq.onnx"
POSE_QDQ_ONNX = "pose.qdq.onnx"
TENSORRT_QUANTIZED_OPS = ["Conv"]
# Changes whenever the int8 graphs change form (``rewrite_for_cpu``, the TensorRT flavour) for the same fp32 graphs.
INT8_FORM = "cpu-rewrites-4+qdq-1"
FLAVOURS = ("onnxruntime", "tensorrt")


class QuantizationError(RuntimeError):
    """Quantisation could not run (onnxruntime's quantisation tools missing, no frames, bad graphs)."""


def int8_files(flavour: str) -> tuple:
    """(depth, pose) file names of the int8 graphs of ``flavour`` ('onnxruntime' or 'tensorrt')."""
    return (DEPTH_INT8_ONNX, POSE_INT8_ONNX) if flavour == "onnxruntime" else (DEPTH_QDQ_ONNX, POSE_QDQ_ONNX)


def has_int8_graphs(onnx_dir: str | os.PathLike, flavour: str = "onnxruntime") -> bool:
    """True when ``onnx_dir`` holds calibrated int8 graphs of ``flavour`` for every fp32 graph it has."""
    d = Path(onnx_dir)
    try:
        info = ExportInfo.read(d)
    except ValueError:
        return False
    depth_file, pose_file = int8_files(flavour)
    if not info.int8_calibration or not (d / depth_file).is_file():
        return False
    return not info.has_pose or (d / pose_file).is_file()


def _reader(kind: str, frames: Sequence[np.ndarray]):
    """A calibration data reader: each frame for depth, consecutive pairs for pose (kind 'pose_features': ``frames``
    are the depth graph's features of consecutive frames, for the shared pose model's decoder)."""
    from onnxruntime.quantization import CalibrationDataReader

    class FrameReader(CalibrationDataReader):
        def __init__(self) -> None:
            self.i = 0

        def get_next(self) -> Optional[Dict[str, np.ndarray]]:
            if kind == "depth":
                if self.i >= len(frames):
                    return None
                feed = {DEPTH_INPUT: frames[self.i]}
            else:
                if self.i + 1 >= len(frames):
                    return None
                names = POSE_FEATURE_INPUTS if kind == "pose_features" else POSE_INPUTS
                feed = {names[0]: frames[self.i], names[1]: frames[self.i + 1]}
            self.i += 1
            return feed

    return FrameReader()


def quantize_graph(src: Path, dst: Path, kind: str, frames: Sequence[np.ndarray], flavour: str = "onnxruntime",
                   stem_rewrite: bool = True) -> None:
    """Write the QDQ int8 version of fp32 graph ``src`` to ``dst``, calibrated on ``frames`` (uint8 (H, W, 3) at the
    graph's camera size): for ONNX Runtime on the CPU (uint8 activations, CPU rewrites; ``stem_rewrite`` False leaves
    the stem as exported, to compare) or for TensorRT (signed symmetric int8, float biases)."""
    try:
        from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
        from onnxruntime.quantization.shape_inference import quant_pre_process
    except ImportError as exc:
        raise QuantizationError(f"onnxruntime's quantisation tools are not importable ({exc})") from exc
    if len(frames) < 2:
        raise QuantizationError(f"calibration needs at least 2 frames, got {len(frames)}")
    if kind == "pose" and _is_shared(src.parent):
        kind, frames = "pose_features", depth_features(src.parent / DEPTH_ONNX, frames)
    prepared = dst.with_name(dst.name + ".pre.tmp")
    quantized = dst.with_name(dst.name + ".qdq.tmp")
    try:
        quant_pre_process(str(src), str(prepared))  # shape inference + graph clean-up, as ORT recommends
        if flavour == "onnxruntime":
            quantize_static(str(prepared), str(quantized), _reader(kind, frames), quant_format=QuantFormat.QDQ,
                            per_channel=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                            op_types_to_quantize=QUANTIZED_OPS, calibrate_method=CalibrationMethod.MinMax)
        else:
            quantize_static(str(prepared), str(quantized), _reader(kind, frames), quant_format=QuantFormat.QDQ,
                            per_channel=True, activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
                            op_types_to_quantize=TENSORRT_QUANTIZED_OPS, calibrate_method=CalibrationMethod.MinMax,
                            extra_options={"ActivationSymmetric": True, "WeightSymmetric": True, "QuantizeBias": False})
        import onnx

        model = onnx.load(str(quantized))
        if flavour == "onnxruntime":
            rewrite_for_cpu(model, stem_rewrite)
        atomic_write_bytes(model.SerializeToString(), dst)
    finally:
        prepared.unlink(missing_ok=True)
        quantized.unlink(missing_ok=True)


def _attribute(node, name: str, default):
    from onnx import helper

    for a in node.attribute:
        if a.name == name:
            return helper.get_attribute_value(a)
    return default


def _moves_uint8_exactly(node) -> bool:
    """Data movement that commutes with an elementwise QuantizeLinear: Q(op(x)) == op(Q(x)) bit for bit."""
    if node.op_type == "Pad":  # constant padding would need the pad value quantised too
        return _attribute(node, "mode", b"constant") in (b"reflect", b"edge")
    return node.op_type == "Concat"


def _producers_and_uses(graph) -> tuple:
    """(tensor name -> node that writes it, tensor name -> how many node inputs read it)."""
    producer = {out: n for n in graph.node for out in n.output}
    uses: Dict[str, int] = {}
    for n in graph.node:
        for name in n.input:
            uses[name] = uses.get(name, 0) + 1
    return producer, uses


def quantize_before_data_movement(model) -> int:
    """Move every QuantizeLinear that is the only consumer of a reflection/edge Pad or a Concat above that op
    (one QuantizeLinear per data input, same scale and zero point), so the op moves uint8. Repeats until nothing
    moves (a Pad after a Concat moves both). Returns how many ops now run on uint8. Edits ``model`` in place."""
    from onnx import helper

    graph = model.graph
    graph_outputs = {o.name for o in graph.output}
    moved = 0
    while True:
        producer, uses = _producers_and_uses(graph)
        candidate = None
        for q in graph.node:
            if q.op_type != "QuantizeLinear":
                continue
            op = producer.get(q.input[0])
            if (op is not None and _moves_uint8_exactly(op) and uses[q.input[0]] == 1
                    and q.input[0] not in graph_outputs):
                candidate = (q, op)
                break
        if candidate is None:
            break
        q, op = candidate
        data = range(len(op.input)) if op.op_type == "Concat" else range(1)
        new_nodes = []
        for k in data:
            quantized = f"{op.input[k]}_quantized_for_{op.name or op.output[0]}_{k}"
            new_nodes.append(helper.make_node("QuantizeLinear", [op.input[k], *q.input[1:]], [quantized],
                                              name=f"{q.name}_before_{op.name}_{k}"))
            op.input[k] = quantized
        op.output[0] = q.output[0]
        nodes = [n for n in graph.node if n is not q]
        at = nodes.index(op)
        del graph.node[:]
        graph.node.extend(nodes[:at] + new_nodes + nodes[at:])
        moved += 1
    if moved:
        del graph.value_info[:]  # element types changed; onnxruntime infers them again
    return moved


def _scalar_initializers(model) -> set:
    return {t.name for t in model.graph.initializer if len(t.dims) == 0}


def expand_elu(model) -> int:
    """Replace each Elu (alpha 1) by the same function in ops onnxruntime vectorises. Returns how many were
    replaced. Edits ``model`` in place.

    When the Elu's input is a per-tensor DequantizeLinear ``x = DQ(q)`` (the int8 graphs), the clamps are taken
    on ``q`` in uint8, at the zero point, and dequantised after: ``DQ(Max(q, z)) + (Exp(DQ(Min(q, z))) - 1)``.
    DQ is monotone with DQ(z) == 0, so DQ(Min(q, z)) == Min(x, 0) and DQ(Max(q, z)) == Max(x, 0) bit for bit,
    and at each element one of the two sums is exactly 0. Otherwise: ``Max(x, Exp(Min(x, 0)) - 1)``.
    """
    from onnx import helper, numpy_helper

    graph = model.graph
    producer, uses = _producers_and_uses(graph)
    scalars = _scalar_initializers(model)
    graph_outputs = {o.name for o in graph.output}
    nodes, replaced, dropped = [], 0, set()
    for n in graph.node:
        if n.op_type != "Elu" or abs(float(_attribute(n, "alpha", 1.0)) - 1.0) > 1e-12:
            nodes.append(n)
            continue
        x, y = n.input[0], n.output[0]
        dq = producer.get(x)
        if (dq is not None and dq.op_type == "DequantizeLinear" and len(dq.input) == 3
                and dq.input[1] in scalars and dq.input[2] in scalars):
            q, scale, zero = dq.input
            nodes += [helper.make_node("Min", [q, zero], [f"{y}_q_negative_part"]),
                      helper.make_node("DequantizeLinear", [f"{y}_q_negative_part", scale, zero], [f"{y}_negative_part"]),
                      helper.make_node("Exp", [f"{y}_negative_part"], [f"{y}_exp"]),
                      helper.make_node("Sub", [f"{y}_exp", "elu_one"], [f"{y}_expm1"]),
                      helper.make_node("Max", [q, zero], [f"{y}_q_positive_part"]),
                      helper.make_node("DequantizeLinear", [f"{y}_q_positive_part", scale, zero], [f"{y}_positive_part"]),
                      helper.make_node("Add", [f"{y}_positive_part", f"{y}_expm1"], [y])]
            if uses[x] == 1 and x not in graph_outputs:
                dropped.add(id(dq))
        else:
            nodes += [helper.make_node("Min", [x, "elu_zero"], [f"{y}_negative_part"]),
                      helper.make_node("Exp", [f"{y}_negative_part"], [f"{y}_exp"]),
                      helper.make_node("Sub", [f"{y}_exp", "elu_one"], [f"{y}_expm1"]),
                      helper.make_node("Max", [x, f"{y}_expm1"], [y])]
        replaced += 1
    if replaced:
        used = {name for n in nodes for name in n.input}
        # only the constants used: onnxruntime logs a warning for every unused initializer
        graph.initializer.extend(numpy_helper.from_array(np.array(value, np.float32), name)
                                 for name, value in (("elu_zero", 0.0), ("elu_one", 1.0)) if name in used)
        del graph.node[:]
        graph.node.extend(n for n in nodes if id(n) not in dropped)
    return replaced


def _space_to_depth_kernel(weight: np.ndarray) -> np.ndarray:
    """A 7x7 stride-2 kernel (O, C, 7, 7) as the 4x4 stride-1 kernel (O, 4C, 4, 4) over SpaceToDepth(2)'s channels.

    SpaceToDepth puts input pixel (2i + dy, 2j + dx) of channel c into channel (2 dy + dx) C + c of block (i, j).
    Output pixel (i, j) of the original reads rows 2i - 3 .. 2i + 3, i.e. blocks i - 2 .. i + 1: kernel row m + 2
    of the new kernel, offset dy within the block, is original row 2m + dy + 3 (rows outside 0..6 are zeros). The
    same holds for columns, so pads (2, 2, 1, 1) give the same output size and values.

    >>> w = np.arange(1, 50, dtype=np.float32).reshape(1, 1, 7, 7)      # w[0, 0, r, c] = 7 r + c + 1
    >>> k = _space_to_depth_kernel(w)
    >>> k.shape, float(k[0, 0, 0, 0]), float(k[0, 3, 0, 0]), float(k[0, 0, 1, 1]), int((k != 0).sum())
    ((1, 4, 4, 4), 0.0, 1.0, 9.0, 49)
    """
    out_ch, in_ch = weight.shape[:2]
    kernel = np.zeros((out_ch, 4 * in_ch, 4, 4), weight.dtype)
    for m in range(4):
        for dy in range(2):
            ky = 2 * (m - 2) + dy + 3
            if not 0 <= ky <= 6:
                continue
            for n in range(4):
                for dx in range(2):
                    kx = 2 * (n - 2) + dx + 3
                    if 0 <= kx <= 6:
                        kernel[:, (2 * dy + dx) * in_ch:(2 * dy + dx + 1) * in_ch, m, n] = weight[:, :, ky, kx]
    return kernel


def stem_space_to_depth(model) -> int:
    """Rewrite the stem of each encoder in a quantised (QDQ) graph: every 7x7 stride-2 convolution with padding 3 on
    at most 8 channels whose input is QuantizeLinear -> DequantizeLinear of a float tensor and whose weight is a
    DequantizeLinear of an int8 initializer. SpaceToDepth(2) goes before the QuantizeLinear (same scale and zero
    point: quantising is elementwise, so the values are the same), the int8 weights are laid out as the 4x4 kernel of
    ``_space_to_depth_kernel`` (the same values and zeros, the same per-channel scales), the convolution becomes 4x4
    stride 1 with pads (2, 2, 1, 1). The integer sums are the same: bit-identical output. Returns how many. In place."""
    from onnx import helper, numpy_helper

    graph = model.graph
    inits = {t.name: t for t in graph.initializer}
    producer, uses = _producers_and_uses(graph)
    rewritten = 0
    for node in list(graph.node):
        if node.op_type != "Conv" or len(node.input) < 2:
            continue
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        if (list(attrs.get("kernel_shape", [])) != [7, 7] or list(attrs.get("strides", [1, 1])) != [2, 2]
                or list(attrs.get("pads", [0] * 4)) != [3, 3, 3, 3] or int(attrs.get("group", 1)) != 1
                or list(attrs.get("dilations", [1, 1])) != [1, 1]):
            continue
        dq_x, dq_w = producer.get(node.input[0]), producer.get(node.input[1])
        q_x = producer.get(dq_x.input[0]) if dq_x is not None and dq_x.op_type == "DequantizeLinear" else None
        if (q_x is None or q_x.op_type != "QuantizeLinear" or uses.get(q_x.output[0]) != 1
                or uses.get(dq_x.output[0]) != 1 or uses.get(q_x.input[0]) != 1
                or dq_w is None or dq_w.op_type != "DequantizeLinear" or dq_w.input[0] not in inits
                or uses.get(dq_w.input[0]) != 1):
            continue
        weight = numpy_helper.to_array(inits[dq_w.input[0]])
        if weight.ndim != 4 or weight.shape[1] > 8 or tuple(weight.shape[2:]) != (7, 7):
            continue
        name = node.name or node.output[0]
        packed = f"{q_x.input[0]}_space_to_depth_for_{name}"
        s2d = helper.make_node("SpaceToDepth", [q_x.input[0]], [packed], blocksize=2, name=f"{name}_space_to_depth")
        q_x.input[0] = packed
        inits[dq_w.input[0]].CopyFrom(numpy_helper.from_array(_space_to_depth_kernel(weight), dq_w.input[0]))
        for a in list(node.attribute):
            node.attribute.remove(a)
        node.attribute.extend([helper.make_attribute("kernel_shape", [4, 4]), helper.make_attribute("strides", [1, 1]),
                               helper.make_attribute("pads", [2, 2, 1, 1])])
        graph.node.insert(list(graph.node).index(q_x), s2d)
        rewritten += 1
    if rewritten:
        del graph.value_info[:]   # shapes changed; onnxruntime infers them again
    return rewritten


def rewrite_for_cpu(model, stem_rewrite: bool = True) -> Dict[str, int]:
    """The exact rewrites applied to every quantised graph (module docstring): returns their counts."""
    return {"stem_space_to_depth": stem_space_to_depth(model) if stem_rewrite else 0, "uint8_data_movement": quantize_before_data_movement(model),
            "elu_expanded": expand_elu(model)}


def _is_shared(onnx_dir: Path) -> bool:
    try:
        return ExportInfo.read(onnx_dir).pose_model == "shared"
    except Exception:       # no export.json beside a loose graph: a separate pose graph takes images
        return False


def depth_features(depth_graph: Path, frames: Sequence[np.ndarray]) -> List[np.ndarray]:
    """The shared pose model's calibration inputs: the encoder features ``depth_graph`` outputs for each frame."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(depth_graph), providers=["CPUExecutionProvider"])
    return [session.run(None, {DEPTH_INPUT: f})[1] for f in frames]


def quantize_export(onnx_dir: str | os.PathLike, frames: Sequence[np.ndarray], source: str,
                    out_dir: Optional[str | os.PathLike] = None, flavours: Sequence[str] = FLAVOURS) -> Path:
    """Quantise the graphs of export folder ``onnx_dir`` (both flavours by default: ONNX Runtime's CPU graphs and
    TensorRT's Q/DQ graphs) and record the calibration and the files' hashes in its export.json.

    ``out_dir`` None writes beside the fp32 graphs; otherwise the folder receives a copy of export.json and the
    int8 graphs only (the fp32 graphs stay where they are). ``source`` says where the frames came from.
    """
    src = Path(onnx_dir)
    dst = Path(out_dir) if out_dir is not None else src
    dst.mkdir(parents=True, exist_ok=True)
    info = ExportInfo.read(src)
    h, w = info.camera_size
    frames = [_fit(f, (h, w)) for f in frames]
    for flavour in flavours:
        depth_file, pose_file = int8_files(flavour)
        quantize_graph(src / DEPTH_ONNX, dst / depth_file, "depth", frames, flavour)
        info.record(dst, depth_file)
        if info.has_pose and (src / POSE_ONNX).is_file():
            quantize_graph(src / POSE_ONNX, dst / pose_file, "pose", frames, flavour)
            info.record(dst, pose_file)
    info.int8_calibration = f"{source} ({len(frames)} frames)"
    info.int8_form = INT8_FORM
    info.write(dst)
    return dst


def _fit(frame: np.ndarray, size: tuple) -> np.ndarray:
    if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
        raise QuantizationError(f"calibration frames must be uint8 (H, W, 3), got {frame.dtype} {frame.shape}")
    if frame.shape[:2] == tuple(size):
        return np.ascontiguousarray(frame)
    import cv2

    return cv2.resize(frame, (size[1], size[0]), interpolation=cv2.INTER_AREA)


def int8_accuracy(fp32_dir: Path, int8_dir: Path, frames: Iterable[np.ndarray]) -> Dict[str, float]:
    """Mean relative depth difference (abs_rel) and mean pose translation difference of the int8 graphs
    against the fp32 graphs on ``frames`` (uint8 (H, W, 3) at the camera size)."""
    import onnxruntime as ort

    info = ExportInfo.read(fp32_dir)
    fp32_depth = ort.InferenceSession(str(fp32_dir / DEPTH_ONNX), providers=["CPUExecutionProvider"])
    int8_depth = ort.InferenceSession(str(int8_dir / DEPTH_INT8_ONNX), providers=["CPUExecutionProvider"])
    pose_pair = None
    if info.has_pose and (int8_dir / POSE_INT8_ONNX).is_file():
        pose_pair = (ort.InferenceSession(str(fp32_dir / POSE_ONNX), providers=["CPUExecutionProvider"]),
                     ort.InferenceSession(str(int8_dir / POSE_INT8_ONNX), providers=["CPUExecutionProvider"]))
    shared = info.pose_model == "shared"
    rel, dt, tnorm = [], [], []
    previous: Any = None
    for frame in frames:
        frame = _fit(frame, info.camera_size)
        ref_out = fp32_depth.run(None, {DEPTH_INPUT: frame})
        got_out = int8_depth.run(None, {DEPTH_INPUT: frame})
        ref, got = ref_out[0], got_out[0]
        rel.append(float(np.mean(np.abs(got - ref) / np.maximum(ref, 1e-6))))
        # the shared pose model: each graph set's pose from its own depth graph's features (int8 end to end)
        current = (ref_out[1], got_out[1]) if shared else (frame, frame)
        if pose_pair is not None and previous is not None:
            names = POSE_FEATURE_INPUTS if shared else POSE_INPUTS
            t_ref = pose_pair[0].run(None, {names[0]: previous[0], names[1]: current[0]})[0][:3, 3]
            t_got = pose_pair[1].run(None, {names[0]: previous[1], names[1]: current[1]})[0][:3, 3]
            dt.append(float(np.linalg.norm(t_got - t_ref)))
            tnorm.append(float(np.linalg.norm(t_ref)))
        previous = current
    if not rel:
        raise QuantizationError("no frames to compare int8 against fp32 on")
    out: Dict[str, float] = {"frames": len(rel), "depth_abs_rel": float(np.mean(rel))}
    if dt:
        out["pose_translation_diff"] = float(np.mean(dt))
        out["pose_translation_mean"] = float(np.mean(tnorm))
    return out

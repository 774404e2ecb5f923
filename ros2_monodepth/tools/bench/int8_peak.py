"""The int8 floor of a frame, measured in the run that quotes it.

A CPU's int8 convolution rate differs between machines of the same name (one EPYC reached 962 GMAC/s on the
convolution below, another 420), so a floor taken from another day's figure says little. ``bench model`` and
``bench node`` therefore time, in the same run, one large 3x3 ``QLinearConv`` (256 -> 256 channels on a 160x48 map,
uint8 activations with zero point 128, int8 per-channel weights: the form the exported int8 graphs use) with the
node's ONNX Runtime session options, and set the graphs' own multiply-accumulates against that rate:
``floor_ms = GMAC / peak``, and the measured time's ratio to it.

    >>> f = floor_figures(macs=8_000_000_000, peak_gmac_s=400.0, measured_ms=36.0)
    >>> f["floor_ms"], f["ratio_to_floor"]
    (20.0, 1.8)
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Dict, Optional, Sequence

import numpy as np

# channels in, channels out, height, width of the probe convolution (the one the workplace's 962 GMAC/s names)
PEAK_CONV = (256, 256, 48, 160)


def probe_conv_model(cin: int, cout: int, height: int, width: int) -> bytes:
    """A one-node ONNX model: a 3x3 same-padded ``QLinearConv`` on a uint8 (1, cin, height, width) input, int8
    per-channel weights, as the exported int8 graphs quantise their convolutions."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(np.array(0.02, np.float32), "x_scale"),
             numpy_helper.from_array(np.array(128, np.uint8), "x_zero"),
             numpy_helper.from_array(rng.integers(-127, 128, size=(cout, cin, 3, 3), dtype=np.int8), "w"),
             numpy_helper.from_array(np.full(cout, 1e-3, np.float32), "w_scale"),
             numpy_helper.from_array(np.zeros(cout, np.int8), "w_zero"),
             numpy_helper.from_array(np.array(0.05, np.float32), "y_scale"),
             numpy_helper.from_array(np.array(128, np.uint8), "y_zero"),
             numpy_helper.from_array(np.zeros(cout, np.int32), "bias")]
    node = helper.make_node("QLinearConv", ["x", "x_scale", "x_zero", "w", "w_scale", "w_zero", "y_scale", "y_zero",
                                            "bias"], ["y"], pads=[1, 1, 1, 1])
    graph = helper.make_graph([node], "int8_peak_probe",
                              [helper.make_tensor_value_info("x", TensorProto.UINT8, [1, cin, height, width])],
                              [helper.make_tensor_value_info("y", TensorProto.UINT8, [1, cout, height, width])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()


def measure_int8_peak(repeats: int = 20, warmup: int = 3, shape: Sequence[int] = PEAK_CONV) -> Dict[str, Any]:
    """Median GMAC/s of the probe convolution over ``repeats`` runs, with the node's session options."""
    import onnxruntime as ort

    from ...core.backends.onnxruntime_backend import session_options

    cin, cout, height, width = (int(v) for v in shape)
    session = ort.InferenceSession(probe_conv_model(cin, cout, height, width), session_options(),
                                   providers=["CPUExecutionProvider"])
    x = np.random.default_rng(1).integers(0, 256, size=(1, cin, height, width), dtype=np.uint8)
    for _ in range(max(0, warmup)):
        session.run(None, {"x": x})
    times = []
    for _ in range(max(1, repeats)):
        t0 = time.perf_counter()
        session.run(None, {"x": x})
        times.append(time.perf_counter() - t0)
    ms = float(np.median(times) * 1000.0)
    macs = cin * cout * 9 * height * width
    return {"conv": f"QLinearConv 3x3 {cin}->{cout} at {width}x{height}", "ms": ms, "gmac_s": macs / (ms * 1e6),
            "threads": session_options().intra_op_num_threads}


def graph_macs(graph: Path) -> int:
    """Multiply-accumulates of one run of an ONNX graph's convolutions (Conv, QLinearConv, ConvInteger): output
    elements x input channels per group x kernel area. The output shapes come from one run of the graph on zeros
    with every convolution's output exposed (the exporter computes some pads and sizes, which static shape inference
    does not follow), optimisations off so that every node is there under its own name."""
    import onnx
    import onnxruntime as ort

    from .profile import kernel_volumes

    volumes = kernel_volumes(graph)
    model = onnx.load(str(graph))
    convs = [n for n in model.graph.node if n.name in volumes and n.output]
    present = {o.name for o in model.graph.output}
    for n in convs:
        if n.output[0] not in present:
            model.graph.output.append(onnx.ValueInfoProto(name=n.output[0]))
            present.add(n.output[0])
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    dtypes = {"tensor(uint8)": np.uint8, "tensor(int8)": np.int8, "tensor(float)": np.float32,
              "tensor(float16)": np.float16}
    feeds = {i.name: np.zeros([int(d) if isinstance(d, int) else 1 for d in i.shape], dtypes.get(i.type, np.float32))
             for i in session.get_inputs()}
    names = [n.output[0] for n in convs]
    shapes = dict(zip(names, (o.shape for o in session.run(names, feeds))))
    return int(sum(int(np.prod(shapes[n.output[0]])) * volumes[n.name] for n in convs))


def floor_figures(macs: int, peak_gmac_s: float, measured_ms: Optional[float] = None) -> Dict[str, Any]:
    """The floor (``macs`` at ``peak_gmac_s``) in ms, and ``measured_ms``'s ratio to it."""
    floor_ms = macs / (peak_gmac_s * 1e6) if peak_gmac_s > 0 else float("nan")
    out: Dict[str, Any] = {"gmac": round(macs / 1e9, 3), "peak_gmac_s": round(peak_gmac_s, 1),
                           "floor_ms": round(floor_ms, 2)}
    if measured_ms is not None:
        out["ratio_to_floor"] = round(measured_ms / floor_ms, 2)
    return out

"""``ros2-monodepth-bench profile``: where the time of each ONNX Runtime graph goes, operator by operator.

Runs the depth and the pose graph the node would run (``core.artifacts.graph_set``: the checkpoint's own int8 graphs,
or graphs exported and calibrated once into the cache) with ONNX Runtime's profiler on the same frames, and adds up
each node's kernel time over the timed runs. For every convolution it also counts the multiply-accumulates from the
shapes the profiler recorded, so that each one's rate (GMAC/s) can be set against the fastest convolution of the same
run: the graph's *floor* is its MACs at that rate, and a node's *gap* is the time it takes beyond its MACs at that
rate. What is far from the floor (memory-bound stages, layout transposes, element-wise work) stands at the top.

    >>> conv_macs([1, 96, 320, 64], 64 * 3 * 3)     # a 3x3 convolution, 64 -> 64 channels at 320x96
    1132462080
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

# ONNX Runtime's names of the kernels that do a convolution's multiply-accumulates
CONV_OPS = ("Conv", "QLinearConv", "ConvInteger", "FusedConv", "NhwcFusedConv", "QLinearConvTranspose", "ConvTranspose")


@dataclass(frozen=True)
class ProfileConfig:
    checkpoint: str = ""
    network_size: Tuple[int, int] = (192, 640)
    precision: str = "int8"          # 'int8' or 'fp32' graphs
    warmup: int = 5
    repeats: int = 30
    top: int = 15
    depth_output_scale: int = 0


def conv_macs(output_shape: Sequence[int], kernel_volume: int) -> int:
    """Multiply-accumulates of a convolution: output elements (any layout) x the weight's input channels per group x
    kernel area (``kernel_volumes``)."""
    return int(np.prod([int(v) for v in output_shape])) * int(kernel_volume) if output_shape and kernel_volume else 0


def kernel_volumes(graph: Path) -> Dict[str, int]:
    """Per convolution node of the ONNX file: input channels per group x kernel height x width, from its weight (an
    initializer, or the initializer a DequantizeLinear turns into it). The profiler does not record weight shapes:
    ONNX Runtime packs them."""
    import onnx

    model = onnx.load(str(graph))
    shapes = {t.name: list(t.dims) for t in model.graph.initializer}
    made_by = {out: n for n in model.graph.node for out in n.output}
    out: Dict[str, int] = {}
    for n in model.graph.node:
        if n.op_type not in ("Conv", "ConvInteger", "QLinearConv") or len(n.input) < 2:
            continue
        w = n.input[3] if n.op_type == "QLinearConv" else n.input[1]
        while w not in shapes and w in made_by and made_by[w].op_type in ("DequantizeLinear", "Identity", "Cast"):
            w = made_by[w].input[0]
        dims = shapes.get(w)
        if dims and len(dims) == 4:
            out[n.name] = int(dims[1] * dims[2] * dims[3])
    return out


def _shapes(entries: Any) -> List[List[int]]:
    """The profiler's ``input_type_shape`` / ``output_type_shape``: [{"float": [1, 3, 4, 4]}, ...] -> shapes."""
    out = []
    for item in entries or []:
        if isinstance(item, dict):
            for shape in item.values():
                out.append([int(v) for v in shape])
    return out


def profile_session(graph: Path, feeds: Sequence[Dict[str, np.ndarray]], warmup: int, repeats: int
                    ) -> Dict[str, Any]:
    """Run ``graph`` warmup + repeats times over ``feeds`` (cycled) with the node's session options and the profiler on;
    per node: op type, mean ms per run, MACs (convolutions), and the whole run's mean wall ms."""
    import re
    import time

    import onnxruntime as ort

    from ...core.backends.onnxruntime_backend import session_options

    volumes = kernel_volumes(graph)
    with tempfile.TemporaryDirectory() as tmp:
        opts = session_options()
        untimed = ort.InferenceSession(str(graph), opts, providers=["CPUExecutionProvider"])
        for i in range(warmup):
            untimed.run(None, feeds[i % len(feeds)])
        del untimed
        opts = session_options()
        opts.enable_profiling = True
        opts.profile_file_prefix = os.path.join(tmp, "ort")
        session = ort.InferenceSession(str(graph), opts, providers=["CPUExecutionProvider"])
        for i in range(warmup):          # kernels chosen and buffers allocated before what is counted
            session.run(None, feeds[i % len(feeds)])
        walls = []
        for i in range(repeats):
            t0 = time.perf_counter()
            session.run(None, feeds[i % len(feeds)])
            walls.append(time.perf_counter() - t0)
        events = json.loads(Path(session.end_profiling()).read_text())
    runs = [e for e in events if e.get("cat") == "Session" and e.get("name") == "model_run"]
    counted = sorted(runs, key=lambda e: e["ts"])[-repeats:] if runs else []
    start = counted[0]["ts"] if counted else 0
    nodes: Dict[str, Dict[str, Any]] = {}
    for e in events:
        if e.get("cat") != "Node" or not str(e.get("name", "")).endswith("_kernel_time") or e.get("ts", 0) < start:
            continue
        args = e.get("args", {})
        name = e["name"][: -len("_kernel_time")]
        row = nodes.setdefault(name, {"node": name, "op": args.get("op_name", "?"), "us": 0.0, "macs": 0})
        row["us"] += float(e.get("dur", 0))
        if row["op"] in CONV_OPS and not row["macs"]:
            # ONNX Runtime names the kernels it rewrote after the graph's node, with a _token_N suffix
            base = re.sub(r"_token_\d+$", "", name)
            outputs = _shapes(args.get("output_type_shape"))
            row["macs"] = conv_macs(outputs[0] if outputs else [], volumes.get(base, volumes.get(name, 0)))
    rows = []
    for row in nodes.values():
        rows.append({"node": row["node"], "op": row["op"], "ms": row["us"] / 1000.0 / max(1, len(counted)),
                     "macs": row["macs"]})
    return {"rows": rows, "wall_ms": float(np.mean(walls) * 1000.0), "runs": len(counted)}


def summarize(profiled: Dict[str, Any], top: int = 15) -> Dict[str, Any]:
    """Per op type and the ``top`` nodes by time, with each convolution's GMAC/s, the fastest of them (the peak this
    run reached), the floor (all MACs at that peak) and each node's gap to it.

    >>> s = summarize({"rows": [{"node": "a", "op": "QLinearConv", "ms": 1.0, "macs": 10**9},
    ...                         {"node": "b", "op": "QLinearConv", "ms": 2.0, "macs": 10**9},
    ...                         {"node": "c", "op": "Transpose", "ms": 0.5, "macs": 0}], "wall_ms": 4.0, "runs": 1}, 2)
    >>> s["peak_gmac_s"], s["floor_ms"], [n["node"] for n in s["top"]], s["top"][0]["gap_ms"]
    (1000.0, 2.0, ['b', 'c'], 1.0)
    """
    rows = profiled["rows"]
    kernel_ms = float(sum(r["ms"] for r in rows))
    rates = [r["macs"] / (r["ms"] * 1e6) for r in rows if r["macs"] and r["ms"] > 0]
    peak = max(rates) if rates else float("nan")
    macs = int(sum(r["macs"] for r in rows))
    for r in rows:
        r["gmac_s"] = r["macs"] / (r["ms"] * 1e6) if r["macs"] and r["ms"] > 0 else None
        r["gap_ms"] = r["ms"] - (r["macs"] / (peak * 1e6) if r["macs"] and np.isfinite(peak) else 0.0)
        r["share"] = r["ms"] / kernel_ms if kernel_ms else 0.0
    by_op: Dict[str, Dict[str, Any]] = {}
    for r in rows:
        o = by_op.setdefault(r["op"], {"op": r["op"], "ms": 0.0, "nodes": 0, "macs": 0, "gap_ms": 0.0})
        o["ms"] += r["ms"]
        o["nodes"] += 1
        o["macs"] += r["macs"]
        o["gap_ms"] += r["gap_ms"]
    ops = sorted(by_op.values(), key=lambda o: -o["ms"])
    for o in ops:
        o["share"] = o["ms"] / kernel_ms if kernel_ms else 0.0
    return {"wall_ms": profiled["wall_ms"], "kernel_ms": kernel_ms, "runs": profiled["runs"], "gmac": macs / 1e9,
            "peak_gmac_s": peak, "floor_ms": macs / (peak * 1e6) if np.isfinite(peak) else float("nan"),
            "by_op": ops, "top": sorted(rows, key=lambda r: -r["gap_ms"])[:top],
            "nodes": sorted(rows, key=lambda r: -r["ms"])}


def profile_bench(cfg: ProfileConfig, frames: Sequence[np.ndarray]) -> Dict[str, Any]:
    """Profile the depth and pose graphs of ``cfg.precision`` for ``cfg.checkpoint`` at the network size, on
    ``frames`` resized to it as the node does."""
    from ...core.artifacts import exported_graphs, graph_set
    from ...core.backends.base import DEPTH_INPUT, POSE_FEATURE_INPUTS, POSE_INPUTS, ModelSpec
    from ...core.checkpoint import read_metadata
    from ...core.model_contract import CropResize

    meta = read_metadata(cfg.checkpoint) if cfg.checkpoint else None
    size = meta.network_size if meta is not None and cfg.network_size == (0, 0) else cfg.network_size
    spec = ModelSpec(checkpoint_dir=cfg.checkpoint, network_size=size, precision=cfg.precision,
                     depth_output_scale=cfg.depth_output_scale)
    graphs = graph_set(spec) if cfg.precision == "int8" else None
    pose_graph: Optional[Path]
    if graphs is None:
        from ...core.export import DEPTH_ONNX, POSE_ONNX

        onnx_dir = exported_graphs(spec)
        depth_graph, pose_graph = onnx_dir / DEPTH_ONNX, onnx_dir / POSE_ONNX
        camera = size
    else:
        depth_graph, pose_graph, camera = graphs.depth, graphs.pose, graphs.camera_size
    plan = CropResize.make(frames[0].shape[:2], camera, meta.crop if meta else "center",
                           meta.resize_filter if meta else "area")
    inputs = [np.ascontiguousarray(plan.apply(f)) for f in frames]
    out: Dict[str, Any] = {"mode": "profile", "precision": cfg.precision, "network_size": list(size),
                           "checkpoint": cfg.checkpoint or "untrained",
                           "pose_downscale": meta.pose_downscale if meta is not None else 1,
                           "pose_model": meta.pose_model if meta is not None else "separate", "graphs": {}}
    depth_feeds = [{DEPTH_INPUT: x} for x in inputs]
    out["graphs"]["depth"] = summarize(profile_session(depth_graph, depth_feeds, cfg.warmup, cfg.repeats), cfg.top)
    if pose_graph is not None and Path(pose_graph).is_file():
        if out["pose_model"] == "shared":
            # the shared model's pose decoder takes the features the depth graph gave for the two frames
            from ...core.quantize import depth_features

            feats = depth_features(Path(depth_graph), inputs)
            pose_feeds = [{POSE_FEATURE_INPUTS[0]: feats[i - 1], POSE_FEATURE_INPUTS[1]: feats[i]} for i in range(1, len(feats))]
        else:
            pose_feeds = [{POSE_INPUTS[0]: inputs[i - 1], POSE_INPUTS[1]: inputs[i]} for i in range(1, len(inputs))]
        out["graphs"]["pose"] = summarize(profile_session(pose_graph, pose_feeds or depth_feeds, cfg.warmup,
                                                          cfg.repeats), cfg.top)
    return out


def print_profile_table(res: Dict[str, Any]) -> str:
    lines = [f"operator profile, ONNX Runtime {res['precision']}, network {res['network_size'][1]}x{res['network_size'][0]}, "
             f"pose_downscale {res['pose_downscale']}, pose model {res.get('pose_model', 'separate')} ({res['checkpoint']})"]
    for name, g in res["graphs"].items():
        lines.append(f"\n{name}: {g['wall_ms']:.2f} ms a run (kernels {g['kernel_ms']:.2f} ms), {g['gmac']:.2f} GMAC; "
                     f"fastest convolution {g['peak_gmac_s']:.0f} GMAC/s, so the floor is {g['floor_ms']:.2f} ms "
                     f"({g['kernel_ms'] / g['floor_ms']:.1f}x above it)")
        lines.append(f"  {'op':<22}{'nodes':>6}{'ms':>9}{'share':>8}{'gap ms':>9}")
        for o in g["by_op"][:10]:
            lines.append(f"  {o['op']:<22}{o['nodes']:>6}{o['ms']:>9.2f}{o['share']:>8.1%}{o['gap_ms']:>9.2f}")
        lines.append(f"  largest gaps to the floor: {'node':<40}{'op':<16}{'ms':>7}{'GMAC/s':>8}{'gap ms':>8}")
        for r in g["top"]:
            rate = f"{r['gmac_s']:.0f}" if r.get("gmac_s") else "-"
            lines.append(f"  {'':<28}{r['node'][:39]:<40}{r['op'][:15]:<16}{r['ms']:>7.2f}{rate:>8}{r['gap_ms']:>8.2f}")
    return "\n".join(lines)


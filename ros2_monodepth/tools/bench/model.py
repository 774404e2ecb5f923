"""``bench model``: depth + pose through each backend/precision on the same camera frames (no ROS), next to the
plain fp32 eager PyTorch networks (NCHW, no autocast: the baseline every speed-up is quoted against), with each
configuration's depth abs_rel difference from fp32."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np

from .common import stats_ms

MODEL_CONFIGS = ("torch:fp32:eager", "torch:bf16:eager", "torch:fp32", "torch:bf16", "onnxruntime:fp32", "onnxruntime:int8")


@dataclass
class ModelBenchConfig:
    checkpoint: str = ""
    network_size: Tuple[int, int] = (192, 640)
    warmup: int = 5
    repeats: int = 30
    threads: int = 0
    configs: List[str] = field(default_factory=lambda: list(MODEL_CONFIGS))
    depth_output_scale: int = 0     # the disparity head of every configuration's depth (the baseline keeps scale 0)


def time_calls(fn: Callable[[np.ndarray, np.ndarray], object], frames: List[np.ndarray], repeats: int) -> List[float]:
    """Seconds per call of ``fn(frame i, frame i + 1)`` over ``repeats`` calls, cycling through ``frames``."""
    times = []
    for i in range(repeats):
        a, b = frames[i % len(frames)], frames[(i + 1) % len(frames)]
        t0 = time.perf_counter()
        fn(a, b)
        times.append(time.perf_counter() - t0)
    return times


def eager_baseline(checkpoint: str, network_size: Tuple[int, int], frames: List[np.ndarray], warmup: int,
                   repeats: int) -> List[float]:
    """Per-frame seconds of the plain fp32 eager depth + pose networks (NCHW, no autocast, inputs resized
    outside the timed region, the pose network at the full network size): the reference every speed-up is quoted
    against."""
    import cv2
    import torch

    from ...core.artifacts import build_networks
    from ...core.backends.base import ModelSpec

    depth_net, pose_net = build_networks(ModelSpec(checkpoint_dir=checkpoint, network_size=network_size))
    assert pose_net is not None
    # the reference is Monodepth2's pair of networks: its pose network runs at the full network size, whatever the
    # checkpoint's pose_downscale (the same weights; only the shrink before the encoder goes), and its own ResNet on
    # the stacked pair when the checkpoint's pose model shares the depth encoder (random weights time the same)
    pose_net.input_downscale = 1
    if pose_net.shared:
        from ...core.networks import PoseNet

        pose_net = PoseNet(depth_net.encoder.num_layers).eval()

    def prep(img: np.ndarray) -> torch.Tensor:
        small = cv2.resize(img, (network_size[1], network_size[0]), interpolation=cv2.INTER_AREA)
        return torch.from_numpy(small).permute(2, 0, 1)[None].float() / 255.0

    tensors = [prep(f) for f in frames]
    with torch.no_grad():
        def eager(a_idx: int, b_idx: int) -> None:
            depth_net(tensors[b_idx], (0,))
            pose_net(tensors[a_idx], tensors[b_idx])

        for i in range(warmup):
            eager(i % len(tensors), (i + 1) % len(tensors))
        times = []
        for i in range(repeats):
            t0 = time.perf_counter()
            eager(i % len(tensors), (i + 1) % len(tensors))
            times.append(time.perf_counter() - t0)
    return times


def model_bench(cfg: ModelBenchConfig, frames: List[np.ndarray]) -> Dict[str, Any]:
    import cv2
    import torch

    from ...core.artifacts import create_backend
    from ...core.backends.base import ModelSpec

    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    size = cfg.network_size
    # accuracy reference: the fp32 eager model with the backends' own preprocessing (in-graph resize)
    # (scale 0: the configurations' difference from the full-resolution head is part of what is reported)
    ref_backend, _ = create_backend("torch", ModelSpec(checkpoint_dir=cfg.checkpoint, network_size=size, device="cpu",
                                                       precision="fp32", trace=False))
    reference: List[np.ndarray] = [ref_backend.depth(f) for f in frames]
    ref_backend.close()
    times = eager_baseline(cfg.checkpoint, size, frames, cfg.warmup, cfg.repeats)
    rows: Dict[str, Dict[str, Any]] = {"torch eager fp32 (baseline)": {"per_frame_ms": stats_ms(times), "abs_rel_vs_fp32": 0.0}}
    base_ms = float(np.median(times) * 1000)
    floor: Optional[Dict[str, Any]] = None
    for name_cfg in cfg.configs:
        name, precision, *mode = name_cfg.split(":")
        try:
            backend, _ = create_backend(name, ModelSpec(checkpoint_dir=cfg.checkpoint, network_size=size, device="cpu",
                                                        precision=precision, trace=mode != ["eager"],
                                                        depth_output_scale=cfg.depth_output_scale))
        except Exception as exc:  # a backend that cannot run here is reported, not fatal
            rows[name_cfg] = {"error": str(exc)}
            continue
        need = backend.input_size   # static graphs take the network size; the node resizes first, as here

        def fit(img: np.ndarray) -> np.ndarray:
            return img if need is None else cv2.resize(img, (need[1], need[0]), interpolation=cv2.INTER_LINEAR)

        backend.warmup(frames[0].shape[:2] if need is None else need, runs=cfg.warmup)
        # resized once, outside the timed region (the node resizes in its preprocess stage): a frame's pose pairs it
        # with the previous call's frame, the same array, as in the node (the shared pose model finds its features)
        fitted = [fit(f) for f in frames]
        t = time_calls(lambda a, b: (backend.depth(b), backend.relative_pose(a, b)), fitted, cfg.repeats)
        diffs = []
        for f, ref in zip(frames, reference):
            d = backend.depth(fit(f))
            if d.shape != ref.shape:
                d = cv2.resize(d, (ref.shape[1], ref.shape[0]), interpolation=cv2.INTER_LINEAR)
            d, ref = np.asarray(d, np.float64).reshape(ref.shape), np.asarray(ref, np.float64)
            diffs.append(float(np.mean(np.abs(d - ref) / ref)))
        med = float(np.median(t) * 1000)
        rows[name_cfg] = {"backend": backend.describe(), "per_frame_ms": stats_ms(t), "speedup_vs_baseline": base_ms / med,
                          "abs_rel_vs_fp32": float(np.mean(diffs))}
        if name == "onnxruntime" and precision == "int8" and floor is None:
            floor = int8_floor(backend, med)
        backend.close()
    out = {"mode": "model", "network_size": list(size), "camera_size": list(frames[0].shape[:2]),
           "depth_output_scale": cfg.depth_output_scale,
           "threads": torch.get_num_threads(), "baseline_ms": base_ms, "rows": rows}
    if floor is not None:
        out["int8_floor"] = floor
    return out


def int8_floor(backend: Any, measured_ms: float) -> Dict[str, Any]:
    """The int8 floor of one frame's depth + pose graphs at the int8 peak measured now (``int8_peak``), and the
    measured median's ratio to it."""
    from .int8_peak import floor_figures, graph_macs, measure_int8_peak

    graphs = [g for g in (backend.graphs.depth, backend.graphs.pose) if g is not None]
    macs = sum(graph_macs(g) for g in graphs)
    peak = measure_int8_peak()
    return {"probe": peak["conv"], "probe_ms": round(peak["ms"], 3), **floor_figures(macs, peak["gmac_s"], measured_ms)}


def print_model_table(res: Dict[str, Any]) -> str:
    lines = [f"model-only, depth + pose per frame, network {res['network_size'][1]}x{res['network_size'][0]}, "
             f"camera {res['camera_size'][1]}x{res['camera_size'][0]}, {res['threads']} threads",
             f"{'configuration':<30}{'p50 ms':>9}{'p99 ms':>9}{'fps':>8}{'x baseline':>12}{'abs_rel vs fp32':>17}"]
    for name, r in res["rows"].items():
        if "error" in r:
            lines.append(f"{name:<30}  not run: {r['error']}")
            continue
        s = r["per_frame_ms"]
        lines.append(f"{name:<30}{s['p50']:>9.1f}{s['p99']:>9.1f}{1000 / s['p50']:>8.1f}"
                     f"{r.get('speedup_vs_baseline', 1.0):>12.2f}{r['abs_rel_vs_fp32']:>17.5f}")
    f = res.get("int8_floor")
    if f:
        lines.append(f"int8 floor: {f['gmac']:.2f} GMAC a frame at {f['peak_gmac_s']:.0f} GMAC/s ({f['probe']}, timed in "
                     f"this run) = {f['floor_ms']:.1f} ms; onnxruntime:int8 is {f['ratio_to_floor']:.2f}x the floor")
    return "\n".join(lines)

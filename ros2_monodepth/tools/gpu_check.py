"""``ros2-monodepth-gpu-check``: on a machine with an NVIDIA GPU, every GPU path against the CPU's fp32 outputs, in one
table.

Rows: PyTorch CUDA fp32 (TF32 off) and fp16; ONNX Runtime's CUDA provider when it is installed; TensorRT fp32, fp16
and int8 (engine build, parity, timing) when TensorRT is installed. Each row gives the depth difference from the
CPU fp32 reference (mean and max relative), the pose translation difference, the time per frame (depth + pose,
p50) and the start-up time (for TensorRT: the engine build), and passes or fails against the tolerance of its
precision. Rows that cannot run say why. Without a CUDA device the check says so and exits 0 (CI has none);
``--allow-cpu`` runs the same harness on the CPU backends instead.

    scripts/gpu_check.sh --checkpoint runs/drive/checkpoint      # or: ros2-monodepth-gpu-check ...
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

from ..cli_help import HelpFormatter, network_size_option
import numpy as np

# Tolerances against the CPU fp32 reference: (depth mean relative, depth max relative, pose translation difference
# relative to the translation's length). fp32 engines and cuDNN run without TF32; fp16 keeps a 10-bit mantissa;
# int8 is the calibrated graphs (0.6 % mean measured on the CPU, README).
TOLERANCE = {"fp32": (1e-4, 1e-3, 1e-3), "fp16": (1e-2, 5e-2, 2e-2), "bf16": (2e-2, 1e-1, 5e-2), "int8": (5e-2, 5e-1, 1e-1)}


@dataclass
class CheckConfig:
    checkpoint: str = ""
    network_size: Tuple[int, int] = (192, 640)
    frames: int = 8
    repeats: int = 20
    out: str = "gpu_check.json"
    allow_cpu: bool = False


@dataclass
class Row:
    name: str
    precision: str
    status: str = "skipped"          # 'pass', 'FAIL', 'skipped', 'error'
    reason: str = ""
    depth_mean_rel: float = float("nan")
    depth_max_rel: float = float("nan")
    pose_rel: float = float("nan")
    p50_ms: float = float("nan")
    startup_s: float = float("nan")
    backend: str = ""
    extra: Dict[str, Any] = field(default_factory=dict)


def reference(cfg: CheckConfig, frames: List[np.ndarray]) -> Tuple[List[np.ndarray], List[np.ndarray]]:
    """The CPU fp32 eager outputs every row is compared with: depth per frame, pose per consecutive pair."""
    from ..core.artifacts import create_backend
    from ..core.backends.base import ModelSpec

    backend, _ = create_backend("torch", ModelSpec(checkpoint_dir=cfg.checkpoint, network_size=cfg.network_size,
                                                   device="cpu", precision="fp32", trace=False))
    depths = [backend.depth(f) for f in frames]
    poses = [backend.relative_pose(a, b) for a, b in zip(frames, frames[1:])]
    backend.close()
    return depths, poses


def run_row(row: Row, backend_name: str, device: str, cfg: CheckConfig, frames: List[np.ndarray],
            ref: Tuple[List[np.ndarray], List[np.ndarray]]) -> Row:
    import cv2

    from ..core.artifacts import create_backend
    from ..core.backends.base import ModelSpec

    t0 = time.perf_counter()
    try:
        backend, why = create_backend(backend_name, ModelSpec(checkpoint_dir=cfg.checkpoint, network_size=cfg.network_size,
                                                                device=device, precision=row.precision))
    except Exception as exc:
        row.status, row.reason = "error", f"{type(exc).__name__}: {exc}"
        return row
    row.startup_s = time.perf_counter() - t0
    row.backend = backend.describe()
    try:
        need = backend.input_size

        def fit(img: np.ndarray) -> np.ndarray:
            return img if need is None else cv2.resize(img, (need[1], need[0]), interpolation=cv2.INTER_LINEAR)

        fitted = [fit(f) for f in frames]
        backend.warmup(fitted[0].shape[:2], runs=2)
        rel_mean, rel_max, pose_rel = [], [], []
        for f, d_ref in zip(fitted, ref[0]):
            d = backend.depth(f)
            if d.shape != d_ref.shape:
                d = cv2.resize(d, (d_ref.shape[1], d_ref.shape[0]), interpolation=cv2.INTER_LINEAR)
            d = np.asarray(d, np.float64)
            rel = np.abs(d - d_ref) / np.abs(d_ref)
            rel_mean.append(float(rel.mean()))
            rel_max.append(float(rel.max()))
        if backend.has_pose:
            for (a, b), T_ref in zip(zip(fitted, fitted[1:]), ref[1]):
                T = backend.relative_pose(a, b)
                length = max(float(np.linalg.norm(T_ref[:3, 3])), 1e-6)
                pose_rel.append(float(np.linalg.norm(T[:3, 3] - T_ref[:3, 3])) / length)
        times = []
        for i in range(cfg.repeats):
            a, b = fitted[i % len(fitted)], fitted[(i + 1) % len(fitted)]
            t = time.perf_counter()
            backend.depth(b)
            if backend.has_pose:
                backend.relative_pose(a, b)
            times.append(time.perf_counter() - t)
        row.depth_mean_rel, row.depth_max_rel = float(np.mean(rel_mean)), float(np.max(rel_max))
        row.pose_rel = float(np.mean(pose_rel)) if pose_rel else float("nan")
        row.p50_ms = 1000 * float(np.median(times))
        tol = TOLERANCE[row.precision]
        ok = row.depth_mean_rel <= tol[0] and row.depth_max_rel <= tol[1] and (not pose_rel or row.pose_rel <= tol[2])
        row.status = "pass" if ok else "FAIL"
        row.reason = f"tolerance mean {tol[0]:g}, max {tol[1]:g}, pose {tol[2]:g}" + ("" if ok else " exceeded")
        row.extra["why"] = why
    except Exception as exc:
        row.status, row.reason = "error", f"{type(exc).__name__}: {exc}"
    finally:
        backend.close()
    return row


def plan_rows(device: str) -> List[Tuple[Row, str, str]]:
    """(row, backend, device) for every path worth checking here, or rows that say why they cannot run."""
    rows: List[Tuple[Row, str, str]] = []
    if device == "cuda":
        rows += [(Row("torch CUDA fp32 (TF32 off)", "fp32"), "torch", "cuda"),
                 (Row("torch CUDA fp16", "fp16"), "torch", "cuda")]
        try:
            import onnxruntime as ort

            have = "CUDAExecutionProvider" in ort.get_available_providers()
        except ImportError:
            have = False
        row = Row("onnxruntime CUDA provider fp32", "fp32")
        if have:
            rows.append((row, "onnxruntime", "cuda"))
        else:
            row.reason = "onnxruntime has no CUDAExecutionProvider here (pip install onnxruntime-gpu)"
            rows.append((row, "", ""))
        from ..core.backends.trt_compat import load_tensorrt

        api, why = load_tensorrt()
        for precision in ("fp32", "fp16", "int8"):
            row = Row(f"TensorRT {precision}", precision)
            if api is None:
                row.reason = why
                rows.append((row, "", ""))
            else:
                rows.append((row, "tensorrt", "cuda"))
    else:
        rows += [(Row("torch CPU bf16 (harness check)", "bf16"), "torch", "cpu"),
                 (Row("onnxruntime CPU fp32 (harness check)", "fp32"), "onnxruntime", "cpu"),
                 (Row("onnxruntime CPU int8 (harness check)", "int8"), "onnxruntime", "cpu")]
    return rows


def check(cfg: CheckConfig) -> Dict[str, Any]:
    import torch

    from ..core.artifacts import generated_calibration_frames

    device = "cuda" if torch.cuda.is_available() else "cpu"
    result: Dict[str, Any] = {"device": device, "network_size": list(cfg.network_size), "checkpoint": cfg.checkpoint or "untrained"}
    if device == "cpu" and not cfg.allow_cpu:
        result["skipped"] = ("no CUDA device (torch.cuda.is_available() is False"
                             + (f"; torch {torch.__version__} is a CPU build" if not torch.version.cuda else "") + ")")
        return result
    if device == "cuda":
        torch.backends.cudnn.allow_tf32 = False      # fp32 means fp32: the reference is compared to 1e-3
        torch.backends.cuda.matmul.allow_tf32 = False
        result["gpu"] = torch.cuda.get_device_name(0)
    frames = generated_calibration_frames(cfg.network_size, count=cfg.frames, seed=21)
    ref = reference(cfg, frames)
    rows = []
    for row, backend, dev in plan_rows(device):
        rows.append(run_row(row, backend, dev, cfg, frames, ref) if backend else row)
    result["rows"] = [row.__dict__ for row in rows]
    result["passed"] = all(r.status in ("pass", "skipped") for r in rows)
    return result


def table(result: Dict[str, Any]) -> str:
    if "skipped" in result:
        return f"GPU check skipped: {result['skipped']}"
    lines = [f"GPU check on {result.get('gpu', result['device'])}, network {result['network_size'][1]}x{result['network_size'][0]}, "
             f"{result['checkpoint']} networks, against CPU fp32",
             f"{'path':<38}{'status':>8}{'depth mean':>12}{'depth max':>11}{'pose':>9}{'p50 ms':>9}{'start s':>9}  notes"]
    for r in result["rows"]:
        def num(v: float, fmt: str) -> str:
            return format(v, fmt) if v == v else "-"
        lines.append(f"{r['name']:<38}{r['status']:>8}{num(r['depth_mean_rel'], '>12.2e')}{num(r['depth_max_rel'], '>11.2e')}"
                     f"{num(r['pose_rel'], '>9.1e')}{num(r['p50_ms'], '>9.1f')}{num(r['startup_s'], '>9.1f')}  {r['reason']}")
    return "\n".join(lines)


def parse_args(argv: Optional[Sequence[str]]) -> CheckConfig:
    p = argparse.ArgumentParser(prog="ros2-monodepth-gpu-check", description=__doc__.split("\n\n")[0],
                                epilog=__doc__.split("\n\n", 1)[1], formatter_class=HelpFormatter)
    p.add_argument("--checkpoint", default="", help="checkpoint folder (default: untrained networks, seeded)")
    p.add_argument("--network-size", type=network_size_option, default=(192, 640), metavar="WxH",
                   help="network input size (default: 640x192)")
    p.add_argument("--frames", type=int, default=8, help="generated frames compared (default: %(default)s)")
    p.add_argument("--repeats", type=int, default=20, help="timed frames per row (default: %(default)s)")
    p.add_argument("--out", default="gpu_check.json", help="JSON result (default: %(default)s)")
    p.add_argument("--allow-cpu", action="store_true", help="without a GPU, run the harness on the CPU backends instead")
    a = p.parse_args(argv)
    return CheckConfig(a.checkpoint, tuple(a.network_size), a.frames, a.repeats, a.out, a.allow_cpu)


def main(argv: Optional[Sequence[str]] = None) -> int:
    import logging

    logging.basicConfig(level=logging.WARNING, format="[gpu-check] %(message)s")   # onnxruntime's quantiser chatters at INFO
    logging.getLogger("ros2_monodepth").setLevel(logging.INFO)
    cfg = parse_args(argv)
    result = check(cfg)
    print(table(result))
    Path(cfg.out).write_text(json.dumps(result, indent=2, default=str))
    print(f"[gpu-check] wrote {cfg.out}")
    return 0 if result.get("passed", True) else 1


if __name__ == "__main__":
    sys.exit(main())

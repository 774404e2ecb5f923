"""``ros2-monodepth-bench``: frame rate, latency and resource figures of the node, and model-only timings.

Two modes, one table on stdout and one JSON file each:

``model``  times depth + pose through each backend/precision on the same generated camera frames (no ROS),
           next to the plain fp32 eager PyTorch networks (NCHW, no autocast: the baseline the speed-ups are
           quoted against), and gives each configuration's depth abs_rel difference from fp32 on the sequence.
``node``   starts monodepth_node (or measures one already running with ``--attach``), publishes generated
           frames (or a bag's) at a fixed rate, or closed-loop at the highest rate it sustains (the next
           frame leaves when the previous frame's odometry arrives), and reports the sustained rate, latency
           from image stamp to depth / points / odom (min, mean, p50, p99, max), jitter (std of the output
           interval), dropped frames, the node process's CPU % and memory (start, end, max, slope), and the
           share of each stage from the node's /diagnostics.

Every process it starts uses loopback-only discovery and its own ROS_DOMAIN_ID.
"""

from __future__ import annotations

import argparse
import bisect
import json
import os
import signal
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from .ros_session import force_loopback_env, params_file, use_large_message_dds_profile


def stats_ms(values_s: Sequence[float]) -> Dict[str, float]:
    """min, mean, p50, p99, max (and std) in milliseconds."""
    v = np.asarray(values_s, np.float64) * 1000.0
    if v.size == 0:
        return {}
    return {"min": float(v.min()), "mean": float(v.mean()), "p50": float(np.percentile(v, 50)),
            "p99": float(np.percentile(v, 99)), "max": float(v.max()), "std": float(v.std())}


def generated_frames(width: int, height: int, count: int, seed: int = 0) -> Tuple[List[np.ndarray], np.ndarray]:
    """Rendered street frames (RGB uint8) and their intrinsics."""
    from ..core.synthetic import SceneConfig, SyntheticSequence, TrajectoryConfig

    seq = SyntheticSequence(SceneConfig(seed=seed), TrajectoryConfig(num_frames=count, fps=10.0), width, height)
    return [seq.frame(i)[1] for i in range(count)], seq.K


def bag_frames(path: str, topic: str, info_topic: str, count: int) -> Tuple[List[np.ndarray], np.ndarray]:
    from ros2_monodepth_training.evaluate import read_ground_truth

    frames, K = read_ground_truth([path], topic, None, None, info_topic=info_topic)
    return [f.rgb for f in frames[:count]], K


# ----------------------------------------------------------------------------------------------- model mode
MODEL_CONFIGS = ("torch:fp32:eager", "torch:bf16:eager", "torch:fp32", "torch:bf16", "onnxruntime:fp32", "onnxruntime:int8")


def _time_calls(fn, frames: List[np.ndarray], repeats: int) -> List[float]:
    times = []
    for i in range(repeats):
        a, b = frames[i % len(frames)], frames[(i + 1) % len(frames)]
        t0 = time.perf_counter()
        fn(a, b)
        times.append(time.perf_counter() - t0)
    return times


def eager_baseline(args: argparse.Namespace, frames: List[np.ndarray]) -> List[float]:
    """Per-frame seconds of the plain fp32 eager depth + pose networks (NCHW, no autocast, inputs resized
    outside the timed region): the reference every speed-up is quoted against."""
    import cv2
    import torch

    from ..core.backends.base import ModelSpec
    from ..core.backends.torch_backend import build_networks

    size = (args.network_height, args.network_width)
    depth_net, pose_net = build_networks(ModelSpec(checkpoint_dir=args.checkpoint, network_size=size))

    def prep(img: np.ndarray) -> torch.Tensor:
        small = cv2.resize(img, (size[1], size[0]), interpolation=cv2.INTER_AREA)
        return torch.from_numpy(small).permute(2, 0, 1)[None].float() / 255.0

    tensors = [prep(f) for f in frames]
    with torch.no_grad():
        def eager(a_idx: int, b_idx: int) -> None:
            depth_net(tensors[b_idx], (0,))
            pose_net(tensors[a_idx], tensors[b_idx])

        for i in range(args.warmup):
            eager(i % len(tensors), (i + 1) % len(tensors))
        times = []
        for i in range(args.repeats):
            t0 = time.perf_counter()
            eager(i % len(tensors), (i + 1) % len(tensors))
            times.append(time.perf_counter() - t0)
    return times


def model_bench(args: argparse.Namespace, frames: List[np.ndarray]) -> Dict[str, object]:
    import cv2
    import torch

    from ..core.backends.base import ModelSpec
    from ..core.backends.factory import create_backend

    if args.threads:
        torch.set_num_threads(args.threads)
    size = (args.network_height, args.network_width)
    # accuracy reference: the fp32 eager model with the backends' own preprocessing (in-graph resize)
    ref_backend, _ = create_backend("torch", ModelSpec(checkpoint_dir=args.checkpoint, network_size=size, device="cpu",
                                                       precision="fp32", trace=False))
    reference: List[np.ndarray] = [ref_backend.depth(f) for f in frames]
    ref_backend.close()
    times = eager_baseline(args, frames)
    rows: Dict[str, Dict[str, object]] = {"torch eager fp32 (baseline)": {"per_frame_ms": stats_ms(times), "abs_rel_vs_fp32": 0.0}}
    base_ms = float(np.median(times) * 1000)
    for cfg in args.configs:
        name, precision, *mode = cfg.split(":")
        try:
            backend, _ = create_backend(name, ModelSpec(checkpoint_dir=args.checkpoint, network_size=size, device="cpu",
                                                        precision=precision, trace=mode != ["eager"]))
        except Exception as exc:  # a backend that cannot run here is reported, not fatal
            rows[cfg] = {"error": str(exc)}
            continue
        need = backend.input_size   # static graphs take the network size; the node resizes first, as here

        def fit(img: np.ndarray) -> np.ndarray:
            return img if need is None else cv2.resize(img, (need[1], need[0]), interpolation=cv2.INTER_LINEAR)

        backend.warmup(frames[0].shape[:2] if need is None else need, runs=args.warmup)
        t = _time_calls(lambda a, b: (backend.depth(fit(b)), backend.relative_pose(fit(a), fit(b))), frames, args.repeats)
        diffs = []
        for f, ref in zip(frames, reference):
            d = backend.depth(fit(f))
            if d.shape != ref.shape:
                d = cv2.resize(d, (ref.shape[1], ref.shape[0]), interpolation=cv2.INTER_LINEAR)
            d, ref = np.asarray(d, np.float64).reshape(ref.shape), np.asarray(ref, np.float64)
            diffs.append(float(np.mean(np.abs(d - ref) / ref)))
        med = float(np.median(t) * 1000)
        rows[cfg] = {"backend": backend.describe(), "per_frame_ms": stats_ms(t), "speedup_vs_baseline": base_ms / med,
                     "abs_rel_vs_fp32": float(np.mean(diffs))}
        backend.close()
    return {"mode": "model", "network_size": list(size), "camera_size": list(frames[0].shape[:2]),
            "threads": torch.get_num_threads(), "baseline_ms": base_ms, "rows": rows}


def print_model_table(res: Dict[str, object]) -> str:
    lines = [f"model-only, depth + pose per frame, network {res['network_size'][1]}x{res['network_size'][0]}, "
             f"camera {res['camera_size'][1]}x{res['camera_size'][0]}, {res['threads']} threads",
             f"{'configuration':<30}{'p50 ms':>9}{'p99 ms':>9}{'fps':>8}{'x baseline':>12}{'abs_rel vs fp32':>17}"]
    for name, r in res["rows"].items():  # type: ignore[union-attr]
        if "error" in r:
            lines.append(f"{name:<30}  not run: {r['error']}")
            continue
        s = r["per_frame_ms"]
        lines.append(f"{name:<30}{s['p50']:>9.1f}{s['p99']:>9.1f}{1000 / s['p50']:>8.1f}"
                     f"{r.get('speedup_vs_baseline', 1.0):>12.2f}{r['abs_rel_vs_fp32']:>17.5f}")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------ node mode
class ProcessMonitor(threading.Thread):
    """Samples a process's CPU % and RSS once a second (psutil)."""

    def __init__(self, pid: int):
        super().__init__(daemon=True)
        import psutil

        self.proc = psutil.Process(pid)
        self.samples: List[Tuple[float, float, float]] = []   # (t, cpu %, rss MB)
        self.stop_event = threading.Event()

    def run(self) -> None:
        import psutil

        try:
            self.proc.cpu_percent(None)
            while not self.stop_event.wait(1.0):
                rss = self.proc.memory_info().rss + sum(c.memory_info().rss for c in self.proc.children(recursive=True))
                self.samples.append((time.monotonic(), self.proc.cpu_percent(None), rss / 2**20))
        except psutil.Error:
            pass

    def summary(self, skip_s: float = 5.0) -> Dict[str, float]:
        if not self.samples:
            return {}
        s = np.array(self.samples)
        t0 = s[0, 0]
        steady = s[s[:, 0] - t0 >= skip_s] if (s[:, 0] - t0 >= skip_s).sum() >= 3 else s
        def slope(rows: np.ndarray) -> float:
            return float(np.polyfit((rows[:, 0] - rows[0, 0]) / 60.0, rows[:, 2], 1)[0]) if len(rows) >= 3 else 0.0

        # the second half's slope tells allocator warm-up (early growth, then flat) from a leak (growth throughout)
        late = steady[len(steady) // 2:]
        every = max(1, int(round(30.0 / max(1e-3, float(np.median(np.diff(s[:, 0])))))) if len(s) > 1 else 1)
        return {"cpu_percent_mean": float(steady[:, 1].mean()), "rss_mb_start": float(steady[0, 2]),
                "rss_mb_end": float(steady[-1, 2]), "rss_mb_max": float(s[:, 2].max()),
                "rss_slope_mb_per_min": slope(steady), "rss_slope_second_half_mb_per_min": slope(late),
                "rss_mb_every_30s": [round(float(v), 1) for v in s[::every, 2]], "samples": int(len(s))}


def node_bench(args: argparse.Namespace, frames: List[np.ndarray], K: np.ndarray) -> Dict[str, object]:
    import rclpy
    from diagnostic_msgs.msg import DiagnosticArray
    from nav_msgs.msg import Odometry
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import CameraInfo, Image, PointCloud2
    from std_msgs.msg import Header

    from ..ros.image_conversions import fill_image_msg
    from ..ros.messages import camera_info_msg

    ns = args.namespace
    baseline_s = eager_baseline(args, frames) if args.baseline else []
    proc = None
    log = None
    if not args.attach:
        cmd = [sys.executable, "-m", "ros2_monodepth.ros.node", "--ros-args", "--params-file", params_file(), "-r", f"__ns:={ns}",
               "-p", f"backend:={args.backend}", "-p", f"precision:={args.precision}", "-p", "input_qos:=reliable",
               "-p", f"network_width:={args.network_width}", "-p", f"network_height:={args.network_height}",
               "-p", "diagnostics_period:=1.0"]
        if args.checkpoint:
            cmd += ["-p", f"checkpoint_dir:={args.checkpoint}"]
        for p in args.param:
            cmd += ["-p", p]
        log = open(args.node_log, "w")
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=dict(os.environ, PYTHONUNBUFFERED="1"))
    rclpy.init()
    node = rclpy.create_node("monodepth_bench")
    qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
    outputs = {"depth": (f"{ns}/depth", Image), "points": (f"{ns}/points", PointCloud2), "odom": (f"{ns}/odom", Odometry)}
    received: Dict[str, List[Tuple[float, float]]] = {k: [] for k in outputs}   # (receive wall time, stamp)
    stages: Dict[str, float] = {}

    def on_output(kind: str, raw: bytes) -> None:
        # Serialized messages, not deserialized: every output starts with its std_msgs/Header, so the stamp is
        # the first 8 bytes after the 4-byte CDR encapsulation. Deserializing 1 MB of depth and points per frame
        # in Python would take CPU from the node under test (2 cores here).
        now = time.time()
        sec, nanosec = struct.unpack_from("<iI" if raw[1] == 1 else ">iI", raw, 4)
        received[kind].append((now, sec + 1e-9 * nanosec))

    def on_diag(msg) -> None:
        for st in msg.status:
            if st.hardware_id:
                result["node_backend"] = st.hardware_id   # the node's backend.describe()
            for kv in st.values:
                if kv.key.startswith("stage ") and kv.key.endswith(" mean (ms)"):
                    stages[kv.key[6:-10]] = float(kv.value)

    for kind, (topic, typ) in outputs.items():
        node.create_subscription(typ, topic, lambda m, k=kind: on_output(k, m), qos, raw=True)
    node.create_subscription(DiagnosticArray, "/diagnostics", on_diag, 10)
    pub_img = node.create_publisher(Image, f"{ns}/image", qos)
    pub_info = node.create_publisher(CameraInfo, f"{ns}/camera_info", qos)
    h, w = frames[0].shape[:2]
    msgs = [fill_image_msg(Image(), f, "rgb8") for f in frames]
    monitor = None
    result: Dict[str, object] = {"mode": "node", "camera_size": [h, w], "network_size": [args.network_height, args.network_width],
                                 "backend": args.backend, "precision": args.precision}
    try:
        deadline = time.time() + 120
        while not (pub_img.get_subscription_count() and all(node.count_publishers(t) for t, _ in outputs.values())):
            if proc is not None and proc.poll() is not None:
                raise RuntimeError(f"monodepth_node exited early, see {args.node_log}")
            if time.time() > deadline:
                raise RuntimeError("the node's topics did not appear within 120 s")
            rclpy.spin_once(node, timeout_sec=0.1)
        end = time.time() + 1.0
        while time.time() < end:
            rclpy.spin_once(node, timeout_sec=0.05)
        pid = proc.pid if proc is not None else args.attach_pid
        if pid:
            monitor = ProcessMonitor(pid)
            monitor.start()
        published: List[float] = []

        def publish(i: int) -> float:
            stamp = time.time()
            header = Header(stamp=rclpy.time.Time(seconds=stamp).to_msg(), frame_id="camera_optical_frame")
            pub_info.publish(camera_info_msg(header, K, w, h))
            m = msgs[i % len(msgs)]
            m.header = header
            pub_img.publish(m)
            return stamp

        # warm-up frames are not counted
        for i in range(args.warmup):
            n0 = len(received["odom"])
            publish(i)
            t_end = time.time() + 30
            while len(received["odom"]) == n0 and time.time() < t_end:
                rclpy.spin_once(node, timeout_sec=0.1)
        for k in received:
            received[k].clear()
        def unanswered(sent: List[float]) -> int:
            """Frames published after the newest answered one (the node answers in order; a frame older than
            an answered one was dropped, latest frame wins, and is not waited for)."""
            last = received["odom"][-1][1] if received["odom"] else -1.0
            return len(sent) - bisect.bisect_right(sent, last + 1e-7)

        t_start = time.time()
        i = 0
        while time.time() - t_start < args.duration:
            if args.rate > 0:
                target = t_start + i / args.rate
                while time.time() < target:
                    rclpy.spin_once(node, timeout_sec=max(0.0, target - time.time()))
                published.append(publish(i))
            else:   # closed loop: one frame in flight
                published.append(publish(i))
                t_end = time.time() + 10
                # spin_once returns when a message arrives: a long timeout does not add latency, and not
                # polling leaves both cores to the node (on 2 cores a busy harness halves its speed)
                while unanswered(published) and time.time() < t_end:
                    rclpy.spin_once(node, timeout_sec=0.1)
            i += 1
        t_end = time.time() + 3
        while time.time() < t_end:
            rclpy.spin_once(node, timeout_sec=0.01)
        elapsed = published[-1] - published[0] if len(published) > 1 else 1.0
        sent = set(round(p, 6) for p in published)
        result.update({"rate_mode": f"fixed {args.rate} Hz" if args.rate > 0 else "closed loop (max sustained)",
                       "duration_s": round(elapsed, 1), "frames_published": len(published)})
        for kind, recs in received.items():
            lat = [r - s for r, s in recs if round(s, 6) in sent]
            arrivals = np.diff([r for r, _ in recs])
            result[kind] = {"received": len(recs), "dropped": len(published) - len(lat),
                            "rate_hz": (len(recs) - 1) / max(1e-6, recs[-1][0] - recs[0][0]) if len(recs) > 1 else 0.0,
                            "latency_ms": stats_ms(lat), "jitter_ms": float(arrivals.std() * 1000) if arrivals.size else 0.0}
        stages.pop("total", None)   # the node's whole-frame time, not a stage
        total = sum(stages.values())
        frame_ms = 1000.0 / result["odom"]["rate_hz"] if result["odom"]["rate_hz"] else float("nan")
        model_ms = stages.get("depth_net", 0.0) + stages.get("pose_net", 0.0)
        odom_p50 = result["odom"]["latency_ms"].get("p50", float("nan"))
        # Time per frame outside the two networks: everything ROS and glue. Per frame is the odometry latency
        # (image stamp -> odometry received) unless frames come faster than the node takes them; then a frame
        # also waits for the one before it ("latest frame wins"), and the output period is the time per frame.
        per_frame_ms = min(odom_p50, frame_ms)
        result["ros_overhead_ms"] = per_frame_ms - model_ms
        result["ros_overhead_share_of_frame"] = (per_frame_ms - model_ms) / frame_ms
        result["stage_ms"] = stages
        result["stage_share"] = {k: v / total for k, v in stages.items()} if total else {}
    finally:
        if monitor is not None:
            monitor.stop_event.set()
            monitor.join(2)
            result["process"] = monitor.summary()
        if proc is not None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
            if log is not None:
                log.close()
        node.destroy_node()
        rclpy.try_shutdown()
    if baseline_s:
        # timed again after the node has stopped: a shared machine drifts, and the ratio should not hang on
        # which minute the baseline happened to run in
        after_s = eager_baseline(args, frames)
        result["baseline_eager_fp32_fps_before_after"] = [1.0 / float(np.median(baseline_s)), 1.0 / float(np.median(after_s))]
        base_fps = 1.0 / float(np.median(baseline_s + after_s))
        result["baseline_eager_fp32_fps"] = base_fps
        result["speedup_vs_baseline"] = result["odom"]["rate_hz"] / base_fps
    return result


def print_node_table(res: Dict[str, object]) -> str:
    lines = [f"node, {res['rate_mode']}, {res['frames_published']} frames in {res['duration_s']} s, camera "
             f"{res['camera_size'][1]}x{res['camera_size'][0]}, network {res['network_size'][1]}x{res['network_size'][0]}, "
             f"backend {res['backend']} {res['precision']}",
             f"{'output':<8}{'rate Hz':>9}{'dropped':>9}{'min':>8}{'mean':>8}{'p50':>8}{'p99':>8}{'max':>8}{'jitter':>8}   latency ms"]
    for kind in ("depth", "points", "odom"):
        r = res.get(kind)
        if not r:
            continue
        s = r["latency_ms"] or {k: float("nan") for k in ("min", "mean", "p50", "p99", "max")}
        lines.append(f"{kind:<8}{r['rate_hz']:>9.2f}{r['dropped']:>9d}{s['min']:>8.1f}{s['mean']:>8.1f}{s['p50']:>8.1f}"
                     f"{s['p99']:>8.1f}{s['max']:>8.1f}{r['jitter_ms']:>8.1f}")
    if res.get("node_backend"):
        lines.append(f"node backend: {res['node_backend']}")
    if "speedup_vs_baseline" in res:
        lines.append(f"whole node {res['odom']['rate_hz']:.2f} Hz = {res['speedup_vs_baseline']:.2f} x the plain fp32 eager "
                     f"depth + pose networks ({res['baseline_eager_fp32_fps']:.2f} Hz, no ROS, timed in this run before "
                     "and after the node: " + " / ".join(f"{v:.2f}" for v in res["baseline_eager_fp32_fps_before_after"]) +
                     " Hz)")
    if "ros_overhead_ms" in res:
        lines.append(f"ROS overhead (min(odom latency p50, output period) - depth_net - pose_net): {res['ros_overhead_ms']:.1f} ms = "
                     f"{100 * res['ros_overhead_share_of_frame']:.1f} % of the frame time")
    p = res.get("process") or {}
    if p:
        lines.append(f"node process: CPU {p['cpu_percent_mean']:.0f} %, RSS {p['rss_mb_start']:.0f} -> {p['rss_mb_end']:.0f} MB "
                     f"(max {p['rss_mb_max']:.0f}, slope {p['rss_slope_mb_per_min']:+.2f} MB/min, second half "
                     f"{p['rss_slope_second_half_mb_per_min']:+.2f} MB/min)")
    if res.get("stage_share"):
        lines.append("stages: " + ", ".join(f"{k} {v * 100:.0f}% ({res['stage_ms'][k]:.1f} ms)"
                                            for k, v in sorted(res["stage_share"].items(), key=lambda kv: -kv[1])))
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------ train mode
def _plain_photometric_error(pred, target):
    """0.85 * (1 - SSIM) / 2 + 0.15 * L1 written as the paper states it: five pooling calls per SSIM."""
    import torch
    import torch.nn.functional as F

    from ros2_monodepth_training.losses import ALPHA, SSIM_C1, SSIM_C2

    a, b = F.pad(pred, (1, 1, 1, 1), mode="reflect"), F.pad(target, (1, 1, 1, 1), mode="reflect")
    mu_a, mu_b = F.avg_pool2d(a, 3, 1), F.avg_pool2d(b, 3, 1)
    sigma_a = F.avg_pool2d(a * a, 3, 1) - mu_a * mu_a
    sigma_b = F.avg_pool2d(b * b, 3, 1) - mu_b * mu_b
    sigma_ab = F.avg_pool2d(a * b, 3, 1) - mu_a * mu_b
    num = (2 * mu_a * mu_b + SSIM_C1) * (2 * sigma_ab + SSIM_C2)
    den = (mu_a * mu_a + mu_b * mu_b + SSIM_C1) * (sigma_a + sigma_b + SSIM_C2)
    ssim = torch.clamp((1 - num / den) / 2, 0, 1).mean(1, keepdim=True)
    return ALPHA * ssim + (1 - ALPHA) * (pred - target).abs().mean(1, keepdim=True)


def _naive_loss(depth_net, pose_net, batch, scales=(0, 1, 2, 3)):
    """A plain implementation of the same Monodepth2 loss: fp32, NCHW, one pose call per pair, one warp and
    one photometric error per source and scale, identity errors recomputed at every scale (the reference the
    training speed-up is quoted against)."""
    import torch
    import torch.nn.functional as F

    from ros2_monodepth_training.losses import combine_reprojection, smoothness_loss, smoothness_weight
    from ros2_monodepth_training.warp import warp_source_to_target

    from ..core.geometry import disp_to_depth, pose_params_to_matrix

    images, aug, K = batch["images"], batch["aug"], batch["K"]
    prev, target, nxt = images[:, 0], images[:, 1], images[:, 2]
    h, w = target.shape[-2:]
    disps = depth_net(aug[:, 1], scales)
    aa_p, t_p = pose_net(aug[:, 0], aug[:, 1])
    aa_n, t_n = pose_net(aug[:, 1], aug[:, 2])
    T = [pose_params_to_matrix(aa_p, t_p, invert=True), pose_params_to_matrix(aa_n, t_n)]
    total = 0.0
    for s in scales:
        disp = F.interpolate(disps[s], size=(h, w), mode="bilinear", align_corners=False) if s else disps[s]
        _, depth = disp_to_depth(disp, 0.1, 100.0)
        reproj = torch.cat([_plain_photometric_error(warp_source_to_target(src, depth, K, Ts), target)
                            for src, Ts in zip((prev, nxt), T)], 1)
        identity = torch.cat([_plain_photometric_error(src, target) for src in (prev, nxt)], 1)
        loss, _ = combine_reprojection(reproj, identity)
        image_s = target if s == 0 else F.interpolate(target, size=disps[s].shape[-2:], mode="area")
        total = total + loss.mean() + smoothness_weight(s) * smoothness_loss(disps[s], image_s)
    return total / len(scales)


def train_bench(args: argparse.Namespace, frames: List[np.ndarray], K: np.ndarray) -> Dict[str, object]:
    """Training steps per second: the project's step (bf16 autocast where the CPU has it, channels_last,
    identity errors once, batched pose pairs) against ``_naive_loss`` in fp32 eager, same batch and weights."""
    import copy

    import torch

    from ros2_monodepth_training.dataset import ResizePlan
    from ros2_monodepth_training.objective import LossConfig
    from ros2_monodepth_training.train import TrainingModel

    if args.threads:
        torch.set_num_threads(args.threads)
    size = (args.network_height, args.network_width)
    plan = ResizePlan.make(frames[0].shape[:2], size, K, "center")
    small = np.stack([plan.apply(f) for f in frames]).astype(np.float32) / 255.0
    b = args.batch_size
    trip = np.stack([small[i:i + 3] for i in range(b)])             # (B, 3, H, W, 3)
    images = torch.from_numpy(trip).permute(0, 1, 4, 2, 3).contiguous()
    batch = {"images": images, "aug": images, "K": torch.from_numpy(np.repeat(plan.K[None], b, 0).astype(np.float32))}
    torch.manual_seed(0)
    naive = TrainingModel(18, LossConfig())
    fast = copy.deepcopy(naive)
    dtype, _, compiled = fast.prepare(torch.device("cpu"), "auto", channels_last=True, compile_loss=args.compile_loss)
    results: Dict[str, object] = {"mode": "train", "network_size": list(size), "batch": b, "threads": torch.get_num_threads(),
                                  "precision": str(dtype).replace("torch.", "") if dtype else "fp32",
                                  "compiled_loss": compiled}
    with torch.no_grad():
        naive.eval(), fast.eval()
        l_naive = float(_naive_loss(naive.depth, naive.pose, batch))
        l_fast = float(fast(batch).total)
    results["loss_naive_fp32"] = l_naive
    results["loss_fast"] = l_fast
    results["loss_relative_difference"] = abs(l_fast - l_naive) / l_naive

    def make_step(fn, opt):
        def step() -> None:
            loss = fn()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        return step

    naive.train(), fast.train()
    # the plain step: Adam as written per op; the project's: the trainer's optimizer (fused)
    steps = {"naive fp32 eager": make_step(lambda: _naive_loss(naive.depth, naive.pose, batch),
                                           torch.optim.Adam([p for p in naive.parameters() if p.requires_grad],
                                                            lr=1e-5, foreach=False)),
             "ros2_monodepth step": make_step(lambda: fast(batch).total, fast.optimizer(1e-5))}
    warm: Dict[str, float] = {}
    for name, step in steps.items():
        t0 = time.perf_counter()
        for _ in range(max(1, args.warmup)):   # the first step compiles the loss when it is compiled
            step()
        warm[name] = time.perf_counter() - t0
    # The two alternate, step by step, so that both see the same machine (shared, noisy: the plain step's
    # median moved by 16 % between two runs minutes apart when each was timed in one block).
    times: Dict[str, List[float]] = {name: [] for name in steps}
    for _ in range(args.repeats):
        for name, step in steps.items():
            t0 = time.perf_counter()
            step()
            times[name].append(time.perf_counter() - t0)
    for name, t in times.items():
        results[name] = {"step_ms": stats_ms(t), "images_per_s": b / float(np.median(t)), "warmup_s": warm[name]}
    results["speedup"] = results["ros2_monodepth step"]["images_per_s"] / results["naive fp32 eager"]["images_per_s"]
    return results


def print_train_table(res: Dict[str, object]) -> str:
    lines = [f"training step, batch {res['batch']} x {res['network_size'][1]}x{res['network_size'][0]}, 3 frames, 4 scales, "
             f"{res['threads']} threads"]
    for name in ("naive fp32 eager", "ros2_monodepth step"):
        r = res[name]
        lines.append(f"{name:<24} p50 {r['step_ms']['p50']:8.1f} ms   {r['images_per_s']:6.2f} images/s")
    lines.append(f"speed-up {res['speedup']:.2f}x ({res['precision']}, compiled loss {res['compiled_loss']}, "
                 f"warm-up incl. compilation {res['ros2_monodepth step']['warmup_s']:.0f} s); loss on the same batch and weights: "
                 f"{res['loss_naive_fp32']:.6f} (fp32) vs {res['loss_fast']:.6f}, relative difference {res['loss_relative_difference']:.2e}")
    return "\n".join(lines)


def plot_result(res: Dict[str, object], path: str) -> None:
    """A picture of a model or node result: time per frame per configuration against the baseline, or the
    node's latency percentiles per output next to its memory over the run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if res["mode"] == "model":
        rows = {k: v for k, v in res["rows"].items() if "per_frame_ms" in v}   # type: ignore[union-attr]
        names = list(rows)[::-1]
        ms = [rows[n]["per_frame_ms"]["p50"] for n in names]
        fig, ax = plt.subplots(figsize=(8, 0.45 * len(names) + 1.2))
        bars = ax.barh(names, ms, color=["#999999" if "baseline" in n else "#3b75af" for n in names])
        for bar, n in zip(bars, names):
            ax.text(bar.get_width(), bar.get_y() + bar.get_height() / 2,
                    f" {bar.get_width():.0f} ms  {rows[n].get('speedup_vs_baseline', 1.0):.2f}x", va="center")
        ax.set_xlabel("depth + pose per frame, p50 (ms)")
        ax.set_xlim(0, max(ms) * 1.35)
        ax.set_title(f"model only, network {res['network_size'][1]}x{res['network_size'][0]}, {res['threads']} threads")
    elif res["mode"] == "node":
        fig, (ax, ax_mem) = plt.subplots(1, 2, figsize=(11, 3.6))
        kinds = [k for k in ("depth", "points", "odom") if res.get(k) and res[k]["latency_ms"]]
        x = np.arange(len(kinds))
        for offset, stat, colour in ((-0.2, "p50", "#3b75af"), (0.2, "p99", "#e08a3c")):
            ax.bar(x + offset, [res[k]["latency_ms"][stat] for k in kinds], 0.4, label=stat, color=colour)
        ax.set_xticks(x, kinds)
        ax.set_ylabel("stamp -> received (ms)")
        rate = res["odom"]["rate_hz"] if res.get("odom") else 0.0
        ax.set_title(f"backend {res['backend']}, precision {res['precision']}: {rate:.2f} Hz, {res['rate_mode']}",
                     fontsize=9)
        ax.legend()
        mem = (res.get("process") or {}).get("rss_mb_every_30s") or []
        ax_mem.plot(np.arange(len(mem)) * 0.5, mem, marker=".")
        ax_mem.set_xlabel("minutes")
        ax_mem.set_ylabel("node RSS (MB)")
        if mem:
            ax_mem.set_ylim(0, max(mem) * 1.15)
        ax_mem.set_title("memory", fontsize=9)
    else:
        return
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def parse_args(argv: Optional[Sequence[str]]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="ros2-monodepth-bench", description=__doc__.split("\n\n")[0],
                                epilog=__doc__.split("\n\n", 1)[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("mode", choices=("model", "node", "train"),
                   help="model-only timings, the whole node, or training steps against a plain fp32 implementation")
    p.add_argument("--out", default="bench.json", help="JSON file to write (default: %(default)s)")
    p.add_argument("--plot", help="also draw the result into this PNG (model and node modes)")
    p.add_argument("--checkpoint", default="", help="checkpoint folder (default: untrained networks; the timing is the same)")
    p.add_argument("--bag", help="take camera frames from this bag instead of generating them")
    p.add_argument("--topic", default="/camera/image_raw", help="image topic in --bag (default: %(default)s)")
    p.add_argument("--camera-info-topic", default="/camera/camera_info", help="CameraInfo topic in --bag (default: %(default)s)")
    p.add_argument("--frames", type=int, default=20, help="distinct frames, looped (default: %(default)s)")
    p.add_argument("--width", type=int, default=640, help="camera width (default: %(default)s)")
    p.add_argument("--height", type=int, default=480, help="camera height (default: %(default)s)")
    p.add_argument("--network-width", type=int, default=640, help="(default: %(default)s)")
    p.add_argument("--network-height", type=int, default=192, help="(default: %(default)s)")
    p.add_argument("--warmup", type=int, default=5, help="untimed runs first (default: %(default)s)")
    p.add_argument("--threads", type=int, default=0, help="model mode: torch threads (0: torch's default)")
    m = p.add_argument_group("model mode")
    p.add_argument("--repeats", type=int, default=30, help="timed frames per configuration / of the baseline (default: %(default)s)")
    m.add_argument("--configs", nargs="+", default=list(MODEL_CONFIGS), metavar="BACKEND:PRECISION",
                   help="configurations to time next to the eager fp32 baseline; torch takes a third field "
                        "'eager' for the untraced path (default: %(default)s)")
    p.add_argument("--batch-size", type=int, default=4, help="train mode: batch (default: %(default)s)")
    p.add_argument("--compile-loss", choices=("auto", "on", "off"), default="auto",
                   help="train mode: as ros2-monodepth-train --compile-loss (default: %(default)s)")
    n = p.add_argument_group("node mode")
    n.add_argument("--no-baseline", dest="baseline", action="store_false",
                   help="skip timing the eager fp32 networks first (the speed-up ratio needs them)")
    n.add_argument("--rate", type=float, default=0.0, help="publish rate in Hz; 0 = closed loop, the highest sustained rate")
    n.add_argument("--duration", type=float, default=30.0, help="seconds of measurement (default: %(default)s)")
    n.add_argument("--backend", default="auto", help="node backend parameter (default: %(default)s)")
    n.add_argument("--precision", default="auto", help="node precision parameter (default: %(default)s)")
    n.add_argument("--attach", action="store_true", help="measure a node already running in --namespace instead of starting one")
    n.add_argument("--attach-pid", type=int, default=0, help="with --attach: the node's PID for CPU/memory figures")
    n.add_argument("--namespace", default="/bench", help="node namespace (default: %(default)s)")
    n.add_argument("--param", action="append", default=[], metavar="NAME:=VALUE", help="extra node parameter, repeatable")
    n.add_argument("--node-log", default="bench_node.log", help="node output (default: %(default)s)")
    return p.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    force_loopback_env()
    use_large_message_dds_profile()
    if args.bag:
        frames, K = bag_frames(args.bag, args.topic, args.camera_info_topic, args.frames)
    else:
        print(f"[bench] rendering {args.frames} frames at {args.width}x{args.height}", flush=True)
        frames, K = generated_frames(args.width, args.height, args.frames)
    if args.mode == "model":
        res = model_bench(args, frames)
        table = print_model_table(res)
    elif args.mode == "train":
        if len(frames) < args.batch_size + 2:
            raise SystemExit(f"train mode needs --frames >= --batch-size + 2 ({args.batch_size + 2})")
        res = train_bench(args, frames, K)
        table = print_train_table(res)
    else:
        res = node_bench(args, frames, K)
        table = print_node_table(res)
    print(table)
    Path(args.out).write_text(json.dumps(res, indent=2))
    print(f"[bench] wrote {args.out}")
    if args.plot and res["mode"] in ("model", "node"):
        plot_result(res, args.plot)
        print(f"[bench] wrote {args.plot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

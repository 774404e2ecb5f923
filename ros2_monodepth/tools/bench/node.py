"""``bench node``: the whole node over loopback DDS, in the style of ros2_benchmark.

Starts monodepth_node (or measures one already running with ``attach``), publishes camera frames at a fixed rate
or closed-loop at the highest rate it sustains (the next frame leaves when the previous frame's odometry arrives),
and reports the sustained rate, latency from image stamp to depth / points / odom (min, mean, p50, p99, max),
jitter (std of the output interval), dropped frames, the node process's CPU % and memory (start, end, max,
slope), the share of each stage from the node's /diagnostics, and the plain fp32 eager networks timed in the
same run (before and after) for the speed-up ratio.
"""

from __future__ import annotations

import bisect
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np

from ...core.bags import header_stamp_ns
from ...core.model_contract import format_size
from ...ros.health import DiagnosticsReading, read_status
from ..bag_player import BagPlayer
from ..node_process import NodeProcess, wait_for_discovery
from .common import stats_ms
from .model import eager_baseline


@dataclass
class NodeBenchConfig:
    checkpoint: str = ""
    network_size: Tuple[int, int] = (192, 640)
    backend: str = "auto"
    precision: str = "auto"
    rate: float = 0.0              # Hz; 0: closed loop
    duration: float = 30.0         # seconds of measurement
    warmup: int = 5                # frames before the measurement (not counted)
    repeats: int = 30              # timed runs of the eager baseline, before and after
    baseline: bool = True
    attach: bool = False
    attach_pid: int = 0
    namespace: str = "/bench"
    params: List[str] = field(default_factory=list)    # extra NAME:=VALUE node parameters
    node_log: str = "bench_node.log"
    bag_rate: float = 0.0          # with a bag player: real-time factor (0: --rate / closed loop as without a bag)


class ProcessMonitor(threading.Thread):
    """Samples a process's CPU % and RSS (with its children) once a second (psutil)."""

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

    def summary(self, skip_s: float = 5.0) -> Dict[str, Any]:
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


def node_bench(cfg: NodeBenchConfig, frames: List[np.ndarray], K: Optional[np.ndarray],
               player: Optional[BagPlayer] = None) -> Dict[str, Any]:
    """Run the node benchmark on generated ``frames`` (published as rgb8 with wall-clock stamps), or with ``player``
    on a recording published as recorded (its encoding, stamps and camera_info; compressed recordings to
    image/compressed with the node's image_transport set to match). Latency is always measured from the moment a
    frame is published to the output carrying its stamp."""
    if player is not None and not frames:
        frames = player.decoded(cfg.repeats)
    baseline_s = eager_baseline(cfg.checkpoint, cfg.network_size, frames, cfg.warmup, cfg.repeats) if cfg.baseline and frames else []
    run = _BenchedNode(cfg, frames, K, player)
    try:
        run.connect()
        run.warm_up()
        run.measure()
        result = run.summary()
    finally:
        process = run.close()
    result["process"] = process
    if baseline_s:
        # timed again after the node has stopped: a shared machine drifts, and the ratio should not hang on
        # which minute the baseline happened to run in
        after_s = eager_baseline(cfg.checkpoint, cfg.network_size, frames, cfg.warmup, cfg.repeats)
        result["baseline_eager_fp32_fps_before_after"] = [1.0 / float(np.median(baseline_s)), 1.0 / float(np.median(after_s))]
        base_fps = 1.0 / float(np.median(baseline_s + after_s))
        result["baseline_eager_fp32_fps"] = base_fps
        result["speedup_vs_baseline"] = result["odom"]["rate_hz"] / base_fps
    return result


class _BenchedNode:
    """One node-benchmark run: the node under test (started here or attached), this side's ROS node with its
    publishers and output subscriptions, what was sent when and what came back."""

    def __init__(self, cfg: NodeBenchConfig, frames: List[np.ndarray], K: Optional[np.ndarray],
                 player: Optional[BagPlayer]):
        import rclpy
        from diagnostic_msgs.msg import DiagnosticArray
        from nav_msgs.msg import Odometry
        from rclpy.qos import QoSProfile, ReliabilityPolicy
        from sensor_msgs.msg import CameraInfo, Image, PointCloud2

        from ...ros.image_messages import fill_image_msg

        self.cfg, self.frames, self.K, self.player = cfg, frames, K, player
        ns = cfg.namespace
        self.proc: Optional[NodeProcess] = None
        if not cfg.attach:
            params: Dict[str, Any] = {"backend": cfg.backend, "precision": cfg.precision, "input_qos": "reliable",
                                      "network_size": format_size(cfg.network_size), "diagnostics_period": 1.0}
            if cfg.checkpoint:
                params["checkpoint_dir"] = cfg.checkpoint
            if player is not None and player.compressed:
                params["image_transport"] = "compressed"
            self.proc = NodeProcess(Path(cfg.node_log), params, namespace=ns, extra_params=cfg.params)
        rclpy.init()
        self.node = rclpy.create_node("monodepth_bench")
        qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        self.outputs = {"depth": (f"{ns}/depth/image", Image), "points": (f"{ns}/points", PointCloud2),
                        "odom": (f"{ns}/odom", Odometry)}
        self.received: Dict[str, List[Tuple[float, int]]] = {k: [] for k in self.outputs}   # (receive wall time, stamp ns)
        self.diagnostics = DiagnosticsReading()
        self.node_backend = ""
        self.size = player.size if player is not None else frames[0].shape[:2]
        self.published: List[int] = []             # stamps (ns) of the measured frames, in order
        self.sent_at: Dict[int, float] = {}         # stamp (ns) -> wall time it was published
        self.monitor: Optional[ProcessMonitor] = None
        self.elapsed = 1.0
        for kind, (topic, typ) in self.outputs.items():
            self.node.create_subscription(typ, topic, self._on_output(kind), qos, raw=True)
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics, 10)
        if player is not None:
            self.pub_img, self.pub_info = player.publishers(self.node, ns, qos)
        else:
            self.pub_img = self.node.create_publisher(Image, f"{ns}/image", qos)
            self.pub_info = self.node.create_publisher(CameraInfo, f"{ns}/camera_info", qos)
            self.msgs = [fill_image_msg(Image(), f, "rgb8") for f in frames]

    def _on_output(self, kind: str) -> Callable[[bytes], None]:
        # the stamp read from the serialized bytes: deserializing 1 MB of depth and points per frame in Python would
        # take the CPU from the node under test
        return lambda raw: self.received[kind].append((time.time(), header_stamp_ns(raw)))

    def _on_diagnostics(self, msg: Any) -> None:
        for st in msg.status:
            if st.hardware_id:
                self.node_backend = st.hardware_id   # the node's backend.describe()
            read_status(self.diagnostics, st.name, ((kv.key, kv.value) for kv in st.values))

    def _spin_for(self, seconds: float, step: float = 0.05) -> None:
        import rclpy

        end = time.time() + seconds
        while time.time() < end:
            rclpy.spin_once(self.node, timeout_sec=step)

    def connect(self) -> None:
        """Wait for both sides to see each other, then start sampling the node's CPU and memory."""
        wait_for_discovery(self.node, [self.pub_img], [t for t, _ in self.outputs.values()], self.proc)
        self._spin_for(1.0)
        pid = self.proc.pid if self.proc is not None else self.cfg.attach_pid
        if pid:
            self.monitor = ProcessMonitor(pid)
            self.monitor.start()

    def publish(self, i: int) -> int:
        """Publish play-out frame ``i``; returns its stamp (ns)."""
        import rclpy
        from std_msgs.msg import Header

        from ...ros.messages import camera_info_msg

        if self.player is not None:
            image, info, stamp_ns = self.player.frame(i)
            if info is not None:
                self.pub_info.publish(info)
            self.pub_img.publish(image)
        else:
            stamp_ns = time.time_ns()
            header = Header(stamp=rclpy.time.Time(nanoseconds=stamp_ns).to_msg(), frame_id="camera_optical_frame")
            assert self.K is not None, "generated frames come with their intrinsics"
            h, w = self.size
            self.pub_info.publish(camera_info_msg(header, self.K, w, h))
            m = self.msgs[i % len(self.msgs)]
            m.header = header
            self.pub_img.publish(m)
        self.sent_at[stamp_ns] = time.time()
        return stamp_ns

    def warm_up(self) -> None:
        """``cfg.warmup`` frames, each answered (or 30 s) before the next; not counted."""
        import rclpy

        for i in range(self.cfg.warmup):
            n0 = len(self.received["odom"])
            self.publish(i)
            t_end = time.time() + 30
            while len(self.received["odom"]) == n0 and time.time() < t_end:
                rclpy.spin_once(self.node, timeout_sec=0.1)
        for k in self.received:
            self.received[k].clear()

    def _unanswered(self) -> int:
        """Frames published after the newest answered one (the node answers in order; a frame older than an
        answered one was dropped, latest frame wins, and is not waited for)."""
        last = self.received["odom"][-1][1] if self.received["odom"] else -1
        return len(self.published) - bisect.bisect_right(self.published, last)

    def measure(self) -> None:
        """Frames for ``cfg.duration`` s: at the recording's pace, at a fixed rate, or closed loop."""
        import rclpy

        cfg, player = self.cfg, self.player
        t_start = time.time()
        i = 0
        next_at = t_start
        while time.time() - t_start < cfg.duration:
            if player is not None and cfg.bag_rate > 0:   # the recording's own pace, scaled
                next_at += player.delay_s(cfg.warmup + i) / cfg.bag_rate
                while time.time() < next_at:
                    rclpy.spin_once(self.node, timeout_sec=max(0.0, next_at - time.time()))
                self.published.append(self.publish(cfg.warmup + i))
            elif cfg.rate > 0:
                target = t_start + i / cfg.rate
                while time.time() < target:
                    rclpy.spin_once(self.node, timeout_sec=max(0.0, target - time.time()))
                self.published.append(self.publish(cfg.warmup + i))
            else:   # closed loop: one frame in flight
                self.published.append(self.publish(cfg.warmup + i))
                t_end = time.time() + 10
                # spin_once returns when a message arrives: a long timeout does not add latency, and not
                # polling leaves both cores to the node (on 2 cores a busy harness halves its speed)
                while self._unanswered() and time.time() < t_end:
                    rclpy.spin_once(self.node, timeout_sec=0.1)
            i += 1
        self._spin_for(3.0, 0.01)
        published = self.published
        self.elapsed = self.sent_at[published[-1]] - self.sent_at[published[0]] if len(published) > 1 else 1.0

    def summary(self) -> Dict[str, Any]:
        """Rates, drops, latency and jitter per output; the stages' share; ROS's overhead per frame."""
        cfg, player = self.cfg, self.player
        h, w = self.size
        result: Dict[str, Any] = {"mode": "node", "camera_size": [h, w], "network_size": list(cfg.network_size),
                                  "backend": cfg.backend, "precision": cfg.precision}
        if player is not None:
            result["bag"] = {"topic": player.image_topic, "type": player.msgtype, "frames": len(player.frames),
                             "encoding": player.encoding, "camera_size": list(player.size)}
        if self.node_backend:
            result["node_backend"] = self.node_backend
        if self.diagnostics.input_format:
            result["node_input_format"] = self.diagnostics.input_format   # what the node decoded: encoding and size
        mode = "closed loop (max sustained)"
        if player is not None and cfg.bag_rate > 0:
            mode = f"recorded pace x {cfg.bag_rate:g}"
        elif cfg.rate > 0:
            mode = f"fixed {cfg.rate} Hz"
        result.update({"rate_mode": mode, "duration_s": round(self.elapsed, 1), "frames_published": len(self.published)})
        counted = set(self.published)
        for kind, recs in self.received.items():
            lat = [r - self.sent_at[s] for r, s in recs if s in counted]
            arrivals = np.diff([r for r, _ in recs])
            result[kind] = {"received": len(recs), "dropped": len(self.published) - len(lat),
                            "rate_hz": (len(recs) - 1) / max(1e-6, recs[-1][0] - recs[0][0]) if len(recs) > 1 else 0.0,
                            "latency_ms": stats_ms(lat), "jitter_ms": float(arrivals.std() * 1000) if arrivals.size else 0.0}
        stages = {k: v for k, v in self.diagnostics.stages_ms.items() if k != "total"}   # total: the whole frame
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
        return result

    def close(self) -> Dict[str, Any]:
        """Stop sampling, stop the node under test (when started here), leave ROS; the process summary."""
        import rclpy

        process: Dict[str, Any] = {}
        if self.monitor is not None:
            self.monitor.stop_event.set()
            self.monitor.join(2)
            process = self.monitor.summary()
        if self.proc is not None:
            self.proc.stop()
        self.node.destroy_node()
        rclpy.try_shutdown()
        return process


def print_node_table(res: Dict[str, Any]) -> str:
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
    if res.get("bag"):
        b = res["bag"]
        lines.append(f"played {b['frames']} recorded frames of {b['topic']} ({b['type']}, {b['encoding']}); the node decoded "
                     f"{res.get('node_input_format', '?')}")
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

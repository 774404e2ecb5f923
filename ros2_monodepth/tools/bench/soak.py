"""``bench soak``: the node under a long, hostile stream: camera frames whose size keeps changing, with bad inputs
mixed in (a catalogue of broken encodings, sizes, data, stamps and camera_info), at a fixed rate. Records the node's
memory every second, what it published per minute, which frames it refused and why (from its /diagnostics), and
whether it stayed up. The memory figures say whether caches stay bounded (traced graphs, rays, message buffers)."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np

from ...core.model_contract import format_size
from ...ros.health import DiagnosticsReading, read_status
from ..node_process import NodeProcess, wait_for_discovery
from .node import ProcessMonitor

SIZES = ((480, 640), (240, 320), (720, 1280), (120, 160), (360, 480))


@dataclass
class SoakConfig:
    checkpoint: str = ""
    network_size: Tuple[int, int] = (192, 640)
    backend: str = "auto"
    precision: str = "auto"
    duration: float = 600.0           # s
    rate: float = 10.0                # Hz of camera frames (good and bad)
    bad_every: int = 5                # one bad input in every N messages
    namespace: str = "/soak"
    params: List[str] = field(default_factory=list)
    node_log: str = "soak_node.log"


def _bad_inputs() -> List[Tuple[str, Callable[[Any, Any, float], Tuple[Any, Any]]]]:
    """(name, mutate(image msg, camera_info msg, last good stamp) -> (image msg, camera_info msg)) for each fault."""
    from builtin_interfaces.msg import Time

    def stamp(t: float) -> Time:
        return Time(sec=int(t), nanosec=int(round((t - int(t)) * 1e9)) % 1_000_000_000)

    def with_stamp(msg: Any, t: float) -> Any:
        msg.header.stamp = stamp(t)
        return msg

    def setf(msg: Any, **kw: Any) -> Any:
        for k, v in kw.items():
            setattr(msg, k, v)
        return msg

    return [
        ("encoding", lambda img, info, t: (setf(img, encoding="yuv422"), info)),
        ("truncated data", lambda img, info, t: (setf(img, data=bytes(img.data)[: len(img.data) // 2]), info)),
        ("step", lambda img, info, t: (setf(img, step=1), info)),
        ("huge size", lambda img, info, t: (setf(img, width=100000, height=100000, step=300000), info)),
        ("zero stamp", lambda img, info, t: (with_stamp(img, 0.0), info)),
        ("duplicated stamp", lambda img, info, t: (with_stamp(img, t), info)),
        ("stamp far ahead", lambda img, info, t: (with_stamp(img, 2.1e9), info)),
        ("camera_info NaN", lambda img, info, t: (img, setf(info, k=[float("nan")] * 9))),
        ("camera_info size", lambda img, info, t: (img, setf(info, width=info.width + 7))),
    ]


def soak(cfg: SoakConfig) -> Dict[str, Any]:
    import rclpy
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import CameraInfo, Image

    print(f"[soak] rendering frames at {len(SIZES)} sizes", flush=True)
    streams = _render_streams()
    params: Dict[str, Any] = {"backend": cfg.backend, "precision": cfg.precision, "input_qos": "reliable",
                              "network_size": format_size(cfg.network_size),
                              "diagnostics_period": 1.0, "warn_throttle": 30.0, "max_frame_gap": 5.0}
    if cfg.checkpoint:
        params["checkpoint_dir"] = cfg.checkpoint
    proc = NodeProcess(Path(cfg.node_log), params, namespace=cfg.namespace, extra_params=cfg.params)
    rclpy.init()
    node = rclpy.create_node("monodepth_soak")
    qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
    ns = cfg.namespace
    watch = _SoakWatch(node, ns, qos)
    pub_img = node.create_publisher(Image, f"{ns}/image", qos)
    pub_info = node.create_publisher(CameraInfo, f"{ns}/camera_info", qos)
    sent: Counter = Counter()
    monitor: Optional[ProcessMonitor] = None
    result: Dict[str, Any] = {"mode": "soak", "duration_s": cfg.duration, "rate_hz": cfg.rate, "sizes": [list(s) for s in SIZES],
                              "bad_every": cfg.bad_every}
    try:
        wait_for_discovery(node, [pub_img], [f"{ns}/depth/image"], proc)
        monitor = ProcessMonitor(proc.pid)
        monitor.start()
        _play_hostile_stream(cfg, node, pub_img, pub_info, streams, sent, proc)
        t_end = time.time() + 3
        while time.time() < t_end:
            rclpy.spin_once(node, timeout_sec=0.05)
    finally:
        alive = proc.alive()
        if monitor is not None:
            monitor.stop_event.set()
            monitor.join(2)
            result["process"] = monitor.summary(skip_s=30.0)
        code = proc.stop()
        node.destroy_node()
        rclpy.try_shutdown()
    result.update(watch.figures(cfg.duration))
    result.update({"messages_sent": dict(sent), "node_alive_at_end": alive, "node_exit_code": code,
                   "crashes": 0 if alive else 1, "traceback_in_log": "Traceback" in Path(cfg.node_log).read_text()})
    return result


def _render_streams() -> List[Tuple[List[np.ndarray], np.ndarray]]:
    """Eight frames and their K at each of SIZES."""
    from ...core.synthetic import SceneConfig, SyntheticSequence, TrajectoryConfig

    streams = []
    for h, w in SIZES:
        seq = SyntheticSequence(SceneConfig(seed=4), TrajectoryConfig(num_frames=8, fps=10.0), w, h)
        streams.append(([seq.frame(i)[1] for i in range(8)], seq.K))
    return streams


class _SoakWatch:
    """What came back from the node: output arrival times, its diagnostics' levels and refusals by reason."""

    def __init__(self, node: Any, ns: str, qos: Any):
        from diagnostic_msgs.msg import DiagnosticArray
        from nav_msgs.msg import Odometry
        from sensor_msgs.msg import Image

        self.received: Dict[str, List[float]] = {"depth": [], "odom": []}
        self.levels: Counter = Counter()
        self.diagnostics = DiagnosticsReading()
        node.create_subscription(Image, f"{ns}/depth/image", self._keep("depth"), qos, raw=True)
        node.create_subscription(Odometry, f"{ns}/odom", self._keep("odom"), qos, raw=True)
        node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics, 10)

    def _keep(self, kind: str) -> Callable[[bytes], None]:
        return lambda raw: self.received[kind].append(time.time())

    def _on_diagnostics(self, msg: Any) -> None:
        for st in msg.status:
            if not st.name.endswith((": input", ": inference", ": outputs")):
                continue
            level = st.level[0] if isinstance(st.level, bytes) else int(st.level)
            self.levels[(st.name.split(": ")[-1], level)] += 1
            read_status(self.diagnostics, st.name, ((kv.key, kv.value) for kv in st.values))

    def figures(self, duration: float) -> Dict[str, Any]:
        depth = self.received["depth"]
        elapsed = max(1e-6, (depth[-1] - depth[0]) if len(depth) > 1 else 1.0)
        minutes = np.arange(0, duration + 60, 60)
        depth_t = np.asarray(depth) - (depth[0] if depth else 0.0)
        return {"depth_received": len(depth), "odom_received": len(self.received["odom"]),
                "output_rate_hz": (len(depth) - 1) / elapsed if len(depth) > 1 else 0.0,
                "depth_per_minute": np.histogram(depth_t, minutes)[0].tolist(),
                "refused_by_reason": dict(self.diagnostics.refused),
                "diagnostic_levels": {f"{k[0]} {['OK', 'WARN', 'ERROR', 'STALE'][k[1]]}": n for k, n in self.levels.items()}}


def _play_hostile_stream(cfg: SoakConfig, node: Any, pub_img: Any, pub_info: Any,
                         streams: List[Tuple[List[np.ndarray], np.ndarray]], sent: Counter, proc: NodeProcess) -> None:
    """Frames at ``cfg.rate`` for ``cfg.duration`` s (or until the node dies): a new size every 4 s, one bad input
    in every ``cfg.bad_every`` messages, counted in ``sent`` by kind."""
    import rclpy
    from sensor_msgs.msg import Image
    from std_msgs.msg import Header

    from ...ros.image_messages import fill_image_msg
    from ...ros.messages import camera_info_msg

    bad = _bad_inputs()
    t0 = time.time()
    i, last_good = 0, 0.0
    while time.time() - t0 < cfg.duration and proc.alive():
        target = t0 + i / cfg.rate
        while time.time() < target:
            rclpy.spin_once(node, timeout_sec=max(0.0, target - time.time()))
        frames, K = streams[(i // 40) % len(streams)]          # a new size every 4 s at 10 Hz
        image = frames[i % len(frames)]
        now = time.time()
        header = Header(stamp=rclpy.time.Time(seconds=now).to_msg(), frame_id="camera_optical_frame")
        img = fill_image_msg(Image(header=header), image, "rgb8")
        info = camera_info_msg(header, K, image.shape[1], image.shape[0])
        if cfg.bad_every and i % cfg.bad_every == cfg.bad_every - 1:
            name, mutate = bad[(i // cfg.bad_every) % len(bad)]
            img, info = mutate(img, info, last_good)
            sent[name] += 1
        else:
            last_good = now
            sent["good"] += 1
        pub_info.publish(info)
        pub_img.publish(img)
        i += 1


def print_soak_table(res: Dict[str, Any]) -> str:
    p = res.get("process") or {}
    lines = [f"soak: {res['duration_s']:.0f} s at {res['rate_hz']:g} Hz, sizes {', '.join(f'{w}x{h}' for h, w in res['sizes'])}, "
             f"one bad input in {res['bad_every']}",
             f"sent: {res['messages_sent']}",
             f"published: {res['depth_received']} depth, {res['odom_received']} odometry ({res['output_rate_hz']:.2f} Hz); "
             f"per minute {res['depth_per_minute']}",
             f"refused by the node, by reason: {res['refused_by_reason']}",
             f"node alive at the end: {res['node_alive_at_end']}, crashes {res['crashes']}, traceback in its log: "
             f"{res['traceback_in_log']}"]
    if p:
        lines.append(f"node RSS {p['rss_mb_start']:.0f} -> {p['rss_mb_end']:.0f} MB (max {p['rss_mb_max']:.0f}), slope "
                     f"{p['rss_slope_mb_per_min']:+.2f} MB/min, second half {p['rss_slope_second_half_mb_per_min']:+.2f} MB/min")
    return "\n".join(lines)

"""Helpers for tests that run the real node as a subprocess and talk to it over loopback DDS."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

import numpy as np
import rclpy
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy

REPO = Path(__file__).resolve().parents[1]
PARAMS_FILE = REPO / "config" / "monodepth.yaml"


class NodeProcess:
    """``monodepth_node --ros-args --params-file config/monodepth.yaml -p ...`` with its log in a file."""

    def __init__(self, tmp_path: Path, params: Dict[str, Any], remaps: Optional[Dict[str, str]] = None, name: str = "node"):
        self.log_path = tmp_path / f"{name}.log"
        cmd = [sys.executable, "-m", "ros2_monodepth.ros.node", "--ros-args", "--params-file", str(PARAMS_FILE)]
        for k, v in params.items():
            if isinstance(v, bool):
                v = "true" if v else "false"
            elif isinstance(v, str) and v == "":
                v = "''"
            cmd += ["-p", f"{k}:={v}"]
        for k, v in (remaps or {}).items():
            cmd += ["-r", f"{k}:={v}"]
        env = dict(os.environ, PYTHONUNBUFFERED="1", RCUTILS_LOGGING_BUFFERED_STREAM="0")
        self._log = open(self.log_path, "w")
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT, env=env, cwd=str(REPO))

    def log(self) -> str:
        return self.log_path.read_text()

    def wait_for_log(self, text: str, timeout: float = 60.0) -> bool:
        end = time.time() + timeout
        while time.time() < end:
            if text in self.log():
                return True
            if self.proc.poll() is not None:
                return text in self.log()
            time.sleep(0.1)
        return False

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._log.close()
        return self.proc.returncode


class Collector:
    """Subscribes to topics and keeps every message received."""

    def __init__(self, node: Any, topics: Dict[str, Any], transient: tuple = ()):
        self.node = node
        self.messages: Dict[str, List[Any]] = {t: [] for t in topics}
        self.subs = []
        for topic, msg_type in topics.items():
            qos = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE)
            if topic in transient:
                qos = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
            self.subs.append(node.create_subscription(msg_type, topic, lambda m, t=topic: self.messages[t].append(m), qos))

    def spin_until(self, predicate: Callable[[], bool], timeout: float) -> bool:
        end = time.time() + timeout
        while time.time() < end:
            rclpy.spin_once(self.node, timeout_sec=0.05)
            if predicate():
                return True
        return predicate()

    def close(self) -> None:
        for s in self.subs:
            self.node.destroy_subscription(s)


def stamp_msg(t: float):
    from builtin_interfaces.msg import Time

    return Time(sec=int(t), nanosec=int(round((t - int(t)) * 1e9)))


def stamp_of(msg: Any) -> float:
    return msg.header.stamp.sec + 1e-9 * msg.header.stamp.nanosec


def finite_fraction(a: np.ndarray) -> float:
    return float(np.isfinite(a).mean())

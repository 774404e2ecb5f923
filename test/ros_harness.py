"""Helpers for tests that run the real node as a subprocess and talk to it over loopback DDS."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

import numpy as np
import rclpy
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy

from ros2_monodepth.tools.node_process import NodeProcess

REPO = Path(__file__).resolve().parents[1]
# Seconds a test waits for an event (a message, a log line) before it fails: far above what a quiet machine needs,
# so that a busy one (scripts/stress_tests.sh runs the suite beside one busy process per core) never fails a test.
EVENT_CEILING = 90.0


def start_node(tmp_path: Path, params: Dict[str, Any], namespace: str = "", name: str = "node",
               remaps: Optional[Dict[str, str]] = None) -> NodeProcess:
    """The node with config/monodepth.yaml and ``params``, its log in ``tmp_path/<name>.log``."""
    return NodeProcess(tmp_path / f"{name}.log", params, namespace=namespace, remaps=remaps, cwd=str(REPO))


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

    def wait(self, predicate: Callable[[], bool], what: str, log: Callable[[], str] = lambda: "",
             timeout: float = EVENT_CEILING) -> None:
        """Spin until ``predicate`` holds; fail naming ``what`` was awaited (and the node's log) after ``timeout`` s.
        The ceiling is generous: the wait ends at the event, so a loaded machine only makes it longer."""
        if not self.spin_until(predicate, timeout):
            raise AssertionError(f"waited {timeout:g} s for {what}\n{log()}")

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

"""``monodepth_node`` as a child process: started with the parameter file and overrides, its output in a log file,
stopped with SIGINT as ``ros2 launch`` stops it. The one way the benchmark, the demo and the tests run the node.

    node = NodeProcess(Path("node.log"), {"backend": "torch"}, namespace="/bench")
    node.wait_for_log("listening on", 90)
    ...
    node.stop()
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence

from .ros_session import params_file


def ros_value(value: Any) -> str:
    """A parameter value as ``-p name:=value`` takes it (YAML): booleans lower-case, '' quoted."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str) and value == "":
        return "''"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(ros_value(v) for v in value) + "]"
    return str(value)


def node_command(params: Mapping[str, Any], namespace: str = "", remaps: Optional[Mapping[str, str]] = None,
                 extra_params: Optional[List[str]] = None) -> List[str]:
    """The command line: ``python -m ros2_monodepth.ros.node --ros-args --params-file ... -p ... -r ...``.
    ``extra_params`` are ``NAME:=VALUE`` strings given by a user (they come last and win)."""
    cmd = [sys.executable, "-m", "ros2_monodepth.ros.node", "--ros-args", "--params-file", params_file()]
    if namespace:
        cmd += ["-r", f"__ns:={namespace}"]
    for k, v in params.items():
        cmd += ["-p", f"{k}:={ros_value(v)}"]
    for k, v in (remaps or {}).items():
        cmd += ["-r", f"{k}:={v}"]
    for p in extra_params or []:
        cmd += ["-p", p]
    return cmd


class NodeProcess:
    """The node in a subprocess with its stdout and stderr in ``log_path``."""

    def __init__(self, log_path: Path, params: Mapping[str, Any], namespace: str = "",
                 remaps: Optional[Mapping[str, str]] = None, extra_params: Optional[List[str]] = None,
                 env: Optional[Dict[str, str]] = None, cwd: Optional[str] = None):
        self.log_path = Path(log_path)
        self.command = node_command(params, namespace, remaps, extra_params)
        environ = dict(os.environ if env is None else env, PYTHONUNBUFFERED="1", RCUTILS_LOGGING_BUFFERED_STREAM="0")
        self._log = open(self.log_path, "w")
        self.proc = subprocess.Popen(self.command, stdout=self._log, stderr=subprocess.STDOUT, env=environ, cwd=cwd)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log(self) -> str:
        return self.log_path.read_text()

    def alive(self) -> bool:
        return self.proc.poll() is None

    def wait_for_log(self, text: str, timeout: float = 60.0) -> bool:
        """True once ``text`` is in the log; False after ``timeout`` s or when the node exited without it."""
        end = time.time() + timeout
        while time.time() < end:
            if text in self.log():
                return True
            if self.proc.poll() is not None:
                return text in self.log()
            time.sleep(0.1)
        return False

    def stop(self, timeout: float = 10.0) -> Optional[int]:
        """SIGINT (as launch sends), then SIGKILL after ``timeout`` s; returns the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if not self._log.closed:
            self._log.close()
        return self.proc.returncode

    def __enter__(self) -> "NodeProcess":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def wait_for_discovery(node: Any, publishers: Sequence[Any], topics: Sequence[str], proc: Optional["NodeProcess"] = None,
                       timeout: float = 120.0) -> None:
    """Spin ``node`` until each of ``publishers`` has a subscriber and each of ``topics`` a publisher (the node under
    test has matched both ways); RuntimeError naming what is missing when ``proc`` exits first or after ``timeout`` s.
    The one discovery wait of the demo and the benchmarks."""
    import rclpy

    deadline = time.time() + timeout
    while True:
        unmatched = [p.topic_name for p in publishers if p.get_subscription_count() == 0]
        silent = [t for t in topics if node.count_publishers(t) == 0]
        if not unmatched and not silent:
            return
        if proc is not None and not proc.alive():
            raise RuntimeError(f"monodepth_node exited early:\n{proc.log()[-4000:]}")
        if time.time() > deadline:
            raise RuntimeError(f"after {timeout:g} s nothing subscribes to {unmatched} or publishes {silent}")
        rclpy.spin_once(node, timeout_sec=0.1)


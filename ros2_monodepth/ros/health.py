"""The node's health as diagnostic_updater users expect it, computed without ROS: three statuses (input, inference,
outputs), each with a level (OK / WARN / ERROR), a one-line message and key-value pairs; rates over a sliding
window checked against expected limits (as diagnostic_updater's FrequencyStatus); refused frames counted by
reason.

Levels:
- input: ERROR when no frame arrived for ``input_timeout`` s (or none since start); WARN while frames are being
  refused (any in the window, with the reasons) or the arrival rate is outside [rate_min, rate_max]; else OK.
- inference: ERROR when processing failed in the window (the backend raised); WARN with untrained networks or
  relative (non-metric) depth; else OK. Values: backend, precision, network size, scale mode, whether depth is metric.
- outputs: ERROR when nothing was published for ``input_timeout`` s although frames arrive (or none ever); WARN when
  the output rate is below rate_min; else OK.

``ros/node.py`` feeds it events and turns ``statuses()`` into a diagnostic_msgs/DiagnosticArray.

    >>> h = NodeHealth(HealthConfig(input_timeout=2.0, rate_min=1.0), start=0.0)
    >>> [r.level for r in h.statuses(now=3.0, context=HealthContext(metric=True))]      # nothing arrived for 3 s
    [2, 0, 2]
    >>> [r.level for r in h.statuses(now=3.0, context=HealthContext(metric=False))]     # and depth is relative
    [2, 1, 2]
"""

from __future__ import annotations

import threading
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any, Deque, Dict, Iterable, List, Optional, Tuple

OK, WARN, ERROR = 0, 1, 2


@dataclass
class HealthConfig:
    input_timeout: float = 5.0     # s without frames (or outputs) before ERROR
    rate_min: float = 0.0          # Hz, 0: not checked
    rate_max: float = 0.0          # Hz, 0: not checked
    window: float = 5.0            # s over which rates and recent refusals are taken


@dataclass
class HealthContext:
    """What the node knows at a diagnostics tick, beyond the events it fed: its topic, model and scale."""

    input_topic: str = ""
    input_format: str = ""          # encoding or compressed format and size of the last decoded frame
    backend: str = ""
    precision: str = ""
    network_size: str = ""          # WIDTHxHEIGHT
    scale_mode: str = ""            # as resolved (auto -> what it chose)
    scale_reason: str = ""
    scale: float = 1.0
    metric: bool = False
    untrained: bool = False
    dropped_newer: int = 0          # frames replaced by a newer one before processing
    stages: Dict[str, float] = field(default_factory=dict)    # stage -> mean seconds
    unrectified: str = ""           # why the camera's images are not rectified ('' when they are)
    warmed_up: bool = False


# The diagnostics value tools wait for before the first frame (tracing and allocation paid): a readiness signal.
# Keys are part of the node's interface (docs/node.md); tools read them back with ``read_status``, not by hand.
READY_KEY, READY_VALUE = "backend warmed up", "yes"
FORMAT_KEY = "format"
REFUSED_PREFIX = "refused: "
STAGE_PREFIX, STAGE_SUFFIX = "stage ", " mean (ms)"


def stage_key(stage: str) -> str:
    return f"{STAGE_PREFIX}{stage}{STAGE_SUFFIX}"


@dataclass
class DiagnosticsReading:
    """What the node's /diagnostics said, read back by tools (demo, benches): ``read_status`` fills it."""

    warmed_up: bool = False
    input_format: str = ""
    stages_ms: Dict[str, float] = field(default_factory=dict)
    refused: Dict[str, int] = field(default_factory=dict)


def read_status(reading: DiagnosticsReading, status_name: str, values: Iterable[Tuple[str, str]]) -> DiagnosticsReading:
    """Fold one status's key-value pairs (a diagnostic_msgs/DiagnosticStatus's ``values``, as (key, value)) into
    ``reading``; statuses are named '<node>: input', '<node>: inference', '<node>: outputs'.

    >>> r = read_status(DiagnosticsReading(), "cam/monodepth: inference", [("backend warmed up", "yes"),
    ...                                                                    ("stage depth mean (ms)", "12.50")])
    >>> r.warmed_up, r.stages_ms
    (True, {'depth': 12.5})
    """
    for key, value in values:
        if key == READY_KEY:
            reading.warmed_up = reading.warmed_up or value == READY_VALUE
        elif key == FORMAT_KEY and status_name.endswith(": input"):
            reading.input_format = value
        elif key.startswith(STAGE_PREFIX) and key.endswith(STAGE_SUFFIX):
            reading.stages_ms[key[len(STAGE_PREFIX):-len(STAGE_SUFFIX)]] = float(value)
        elif key.startswith(REFUSED_PREFIX):
            reading.refused[key[len(REFUSED_PREFIX):]] = int(value)
    return reading


@dataclass
class StatusReport:
    name: str
    level: int
    message: str
    values: Dict[str, Any] = field(default_factory=dict)


class RateWindow:
    """Times of events in a sliding window: how many, and at what rate."""

    def __init__(self, window: float):
        self.window = window
        self.times: Deque[float] = deque()
        self.total = 0
        self.last: Optional[float] = None

    def tick(self, t: float) -> None:
        self.times.append(t)
        self.total += 1
        self.last = t

    def _trim(self, now: float) -> None:
        while self.times and self.times[0] < now - self.window:
            self.times.popleft()

    def count(self, now: float) -> int:
        self._trim(now)
        return len(self.times)

    def rate(self, now: float) -> float:
        """Events per second over the window (from the first event when the window is not yet full)."""
        self._trim(now)
        if len(self.times) < 2:
            return 0.0
        span = max(now - self.times[0], self.times[-1] - self.times[0], 1e-6)
        return (len(self.times) - 1) / span if span < self.window else len(self.times) / self.window


class NodeHealth:
    """Event counts and levels (module docstring). Thread-safe: events come from the callback, worker and publisher."""

    def __init__(self, cfg: HealthConfig, start: float):
        self.cfg = cfg
        self.start = start
        self._lock = threading.Lock()
        self.received = RateWindow(cfg.window)
        self.published = RateWindow(cfg.window)
        self.refused_total: Counter = Counter()
        self.refused_recent: Deque[Tuple[float, str]] = deque()
        self.last_refusal: str = ""
        self.failures: Deque[Tuple[float, str]] = deque()
        self.failures_total = 0
        self.latency_sum = 0.0

    def frame_received(self, t: float) -> None:
        with self._lock:
            self.received.tick(t)

    def frame_refused(self, t: float, kind: str, text: str) -> None:
        with self._lock:
            self.refused_total[kind] += 1
            self.refused_recent.append((t, kind))
            self.last_refusal = text

    def frame_failed(self, t: float, text: str) -> None:
        with self._lock:
            self.failures.append((t, text))
            self.failures_total += 1

    def frame_published(self, t: float, latency: float) -> None:
        with self._lock:
            self.published.tick(t)
            self.latency_sum += latency

    def statuses(self, now: float, context: HealthContext) -> List[StatusReport]:
        """The three statuses at time ``now``, with what the node knows (``context``)."""
        with self._lock:
            return [self._input(now, context), self._inference(now, context), self._outputs(now, context)]

    def _recent(self, items: Deque[Tuple[float, str]], now: float) -> List[str]:
        while items and items[0][0] < now - self.cfg.window:
            items.popleft()
        return [kind for _, kind in items]

    def _rate_problem(self, rate: float) -> str:
        cfg = self.cfg
        if cfg.rate_min > 0 and rate < cfg.rate_min:
            return f"rate {rate:.2f} Hz below the expected minimum {cfg.rate_min:g} Hz"
        if cfg.rate_max > 0 and rate > cfg.rate_max:
            return f"rate {rate:.2f} Hz above the expected maximum {cfg.rate_max:g} Hz"
        return ""

    def _input(self, now: float, ctx: HealthContext) -> StatusReport:
        cfg, rx = self.cfg, self.received
        rate = rx.rate(now)
        recent = Counter(self._recent(self.refused_recent, now))
        values: Dict[str, Any] = {
            "topic": ctx.input_topic, FORMAT_KEY: ctx.input_format or "no frame decoded yet",
            "frames received": rx.total, "rate (Hz)": f"{rate:.2f}",
            "expected rate (Hz)": f"{cfg.rate_min:g} .. {cfg.rate_max:g}" if cfg.rate_max else f">= {cfg.rate_min:g}",
            "frames refused": sum(self.refused_total.values()),
            "frames dropped (a newer frame arrived first)": ctx.dropped_newer,
        }
        values.update({f"{REFUSED_PREFIX}{kind}": n for kind, n in sorted(self.refused_total.items())})
        values["rectified"] = f"no: {ctx.unrectified}" if ctx.unrectified else "yes (or assume_rectified)"
        silent = now - (rx.last if rx.last is not None else self.start)
        if silent > cfg.input_timeout:
            what = "no frame has arrived" if rx.last is None else "no frame for"
            return StatusReport("input", ERROR, f"{what} {silent:.1f} s on {ctx.input_topic or 'the image topic'} "
                                f"(input_timeout {cfg.input_timeout:g} s)", values)
        if recent:
            reasons = ", ".join(f"{n} {kind}" for kind, n in recent.most_common())
            return StatusReport("input", WARN, f"frames refused in the last {cfg.window:g} s: {reasons}; last: "
                                f"{self.last_refusal}", values)
        if ctx.unrectified:
            return StatusReport("input", WARN, f"{ctx.unrectified} (run image_proc rectify, or set assume_rectified)",
                                values)
        if rx.last is None:
            return StatusReport("input", WARN, f"waiting for frames on {ctx.input_topic or 'the image topic'}", values)
        problem = self._rate_problem(rate) if rx.count(now) >= 2 or now - self.start > cfg.window else ""
        return StatusReport("input", WARN if problem else OK, problem or f"{rate:.1f} Hz", values)

    def _inference(self, now: float, ctx: HealthContext) -> StatusReport:
        failures = self._recent(self.failures, now)
        values: Dict[str, Any] = {
            "backend": ctx.backend, "precision": ctx.precision,
            "network size": ctx.network_size, "scale mode": ctx.scale_mode,
            "scale source": ctx.scale_reason,
            "scale": f"{ctx.scale:.4f}", "depth is metric": "yes" if ctx.metric else "no",
            "processing failures": self.failures_total,
            READY_KEY: READY_VALUE if ctx.warmed_up else "no",
        }
        values.update({stage_key(k): f"{1000 * v:.2f}" for k, v in ctx.stages.items()})
        if failures:
            last = self.failures[-1][1] if self.failures else ""
            return StatusReport("inference", ERROR, f"{len(failures)} frames failed in the last {self.cfg.window:g} s: "
                                f"{last}", values)
        if ctx.untrained:
            return StatusReport("inference", WARN, "untrained networks (checkpoint_dir is empty): depth and odometry "
                                "are meaningless", values)
        if not ctx.metric:
            waiting = {"odometry": ": waiting for enough robot motion on the odometry topic",
                       "camera_height": ": waiting for a ground plane"}.get(ctx.scale_mode, "")
            return StatusReport("inference", WARN, f"depth is relative, not metric (scale mode "
                                f"{ctx.scale_mode}{waiting})", values)
        return StatusReport("inference", OK, f"{ctx.backend}, metric depth ({ctx.scale_mode})", values)

    def _outputs(self, now: float, ctx: HealthContext) -> StatusReport:
        cfg, tx = self.cfg, self.published
        rate = tx.rate(now)
        values: Dict[str, Any] = {
            "frames published": tx.total, "rate (Hz)": f"{rate:.2f}",
            "mean latency from arrival (ms)": f"{1000 * self.latency_sum / tx.total:.1f}" if tx.total else "-",
        }
        silent = now - (tx.last if tx.last is not None else self.start)
        if silent > cfg.input_timeout:
            what = "nothing published yet" if tx.last is None else "nothing published for"
            return StatusReport("outputs", ERROR, f"{what} {silent:.1f} s (input_timeout {cfg.input_timeout:g} s)", values)
        if tx.last is None:
            return StatusReport("outputs", WARN, "no frame processed yet", values)
        problem = self._rate_problem(rate) if cfg.rate_min > 0 and rate < cfg.rate_min and tx.count(now) >= 1 else ""
        return StatusReport("outputs", WARN if problem else OK, problem or f"{rate:.1f} Hz", values)

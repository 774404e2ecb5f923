"""Did a training run learn? The evidence gathered step by step, the check for a stuck run early in training, and
the verdict at the end in words a robotics engineer can act on.

Owns ``LearningMonitor``: it keeps the last steps' loss terms (``training.objective``: the photometric error of
the warped frames against the error of not moving at all, the pose network's translation, the frames' brightness
change, the translation/odometry ratio) and turns them into
- ``stuck_reason()``: why the run is stuck (or ''), asked once at ``--stuck-check-steps``; training then restarts
  from a new initialisation (``--stuck-restarts`` times at most);
- ``verdict(...)``: learned or not, the evidence, and the likely cause and what to do when not.

A run has learned when warping the neighbouring frames with the predicted depth and pose explains the target frame
clearly better than leaving it unwarped: the photometric error over the identity (no-motion) error, averaged over
the window, below ``LEARNED_RATIO``. A stuck run stays at the identity error (ratio near 1: auto-masking hides
almost every pixel), the pose network predicting motion that explains nothing.

    >>> m = LearningMonitor(window=3)
    >>> for step in range(1, 4):
    ...     m.add(step, {"photometric": 0.07, "identity_photometric": 0.071, "automask_fraction": 0.1,
    ...                  "brightness_change": 0.002, "translation_share_x": 0.7, "translation_share_y": 0.1,
    ...                  "translation_share_z": 0.2, "translation_norm": 0.01})
    >>> m.stuck_reason().split(" (")[0]
    'the warped frames explain the target no better than not moving'
"""

from __future__ import annotations

from collections import deque
from typing import Any, Deque, Dict, List, Optional

import numpy as np

# Photometric / identity error over the window. Measured on the large-motion street (1 m a frame, 10 seeds, 80 steps
# at 192x64, docs/research.md): runs that learned (held-out RPE below half the untrained networks') ended at
# 0.37-0.52 and stood at 0.57-0.61 at step 40; stuck runs ended at 0.61-0.66 and stood at 0.66-0.70 at step 40.
LEARNED_RATIO = 0.55     # at the end of the run: at most this for "learned"
STUCK_RATIO = 0.63       # at the stuck check: at least this for "stuck"
# mean brightness change between neighbouring frames (images in [0, 1]) above which exposure flicker is named
FLICKER = 0.04
# identity error below which the frames barely change (a static camera, or too little parallax for its speed)
LOW_PARALLAX = 0.01
# Full-resolution photometric loss over the coarser scales' (their median) above which the full-resolution depth
# lags: with the translation made metric by velocity supervision on a fast robot (1 m a frame, 240 steps at 192x64),
# its 16-channel disparity head was 3.8x too near (loss 0.087 against 0.035 at scales 1-3: 2.5x) while every scale
# agreed within 2 % in the runs that had settled.
FULL_RES_LAG = 1.3
# Runs this short are not judged stuck: on the large-motion street the runs that learned crossed LEARNED_RATIO
# between steps 40 and 80 (docs/research.md), so a smoke test of a few steps says "too short" instead.
SHORT_RUN_STEPS = 60
SCALE_TERMS = ("loss/scale0", "loss/scale1", "loss/scale2", "loss/scale3")
EVIDENCE_TERMS = ("photometric", "identity_photometric", "automask_fraction", "brightness_change", "translation_norm",
                  "translation_share_x", "translation_share_y", "translation_share_z", "translation_scale_ratio",
                  *SCALE_TERMS)


class LearningMonitor:
    """The last ``window`` steps' evidence (module docstring)."""

    def __init__(self, window: int = 50):
        self.window = window
        self.terms: Dict[str, Deque[float]] = {k: deque(maxlen=window) for k in EVIDENCE_TERMS}
        self.steps = 0

    def add(self, step: int, terms: Dict[str, float]) -> None:
        self.steps = step
        for k, values in self.terms.items():
            v = terms.get(k)
            if v is not None and np.isfinite(v):
                values.append(float(v))

    def mean(self, name: str) -> float:
        values = self.terms[name]
        return float(np.mean(values)) if values else float("nan")

    @property
    def ratio(self) -> float:
        """Photometric error over the identity (no-motion) error, window means: below 1 when warping helps."""
        ident = self.mean("identity_photometric")
        return self.mean("photometric") / ident if ident > 0 else float("nan")

    @property
    def full_resolution_lag(self) -> float:
        """The full-resolution scale's loss over the median of the coarser scales' (window means): about 1 when the
        four disparity heads agree, NaN without them.

        >>> m = LearningMonitor(window=2)
        >>> m.add(1, {"loss/scale0": 0.087, "loss/scale1": 0.035, "loss/scale2": 0.034, "loss/scale3": 0.036})
        >>> round(m.full_resolution_lag, 2)
        2.49
        """
        coarse = [self.mean(k) for k in SCALE_TERMS[1:] if self.terms[k]]
        if not self.terms[SCALE_TERMS[0]] or not coarse or float(np.median(coarse)) <= 0:
            return float("nan")
        return self.mean(SCALE_TERMS[0]) / float(np.median(coarse))

    def depth_lags(self) -> bool:
        """True when the full-resolution depth has fallen behind the coarser scales (``FULL_RES_LAG``)."""
        lag = self.full_resolution_lag
        return bool(np.isfinite(lag) and lag > FULL_RES_LAG)

    def direction(self) -> str:
        """Where the predicted translation points, in the camera's optical frame."""
        shares = {axis: self.mean(f"translation_share_{axis}") for axis in "xyz"}
        if not all(np.isfinite(v) for v in shares.values()):
            return "unknown"
        axis = max(shares, key=lambda a: shares[a])
        name = {"x": "sideways (optical x)", "y": "up/down (optical y)", "z": "along the optical axis (z)"}[axis]
        return f"mostly {name}: x {shares['x']:.0%}, y {shares['y']:.0%}, z {shares['z']:.0%}"

    def stuck_reason(self) -> str:
        """Why the run looks stuck now ('' when it does not, or when the evidence is missing)."""
        ratio = self.ratio
        if not np.isfinite(ratio):
            return ""
        if ratio >= STUCK_RATIO and self.mean("identity_photometric") >= LOW_PARALLAX:
            return (f"the warped frames explain the target no better than not moving (photometric/identity error "
                    f"{ratio:.3f} over the last {len(self.terms['photometric'])} steps, auto-mask keeps "
                    f"{self.mean('automask_fraction'):.0%} of the pixels); translation {self.direction()}")
        return ""

    def evidence(self) -> Dict[str, Any]:
        out: Dict[str, Any] = {"steps": self.steps, "window": len(self.terms["photometric"]),
                               "photometric_over_identity": round(self.ratio, 4),
                               "translation_direction": self.direction()}
        out.update({k: round(self.mean(k), 5) for k in EVIDENCE_TERMS if self.terms[k]})
        if np.isfinite(self.full_resolution_lag):
            out["full_resolution_lag"] = round(self.full_resolution_lag, 3)
        return out

    def verdict(self, static_frame_share: float, metric_expected: bool, metric: bool, scale_source: str,
                restarts: Optional[List[str]] = None, pose_prior: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
        """Learned or not, with the evidence and, when not, the likely cause and the remedy. ``static_frame_share``:
        of the frames considered, the share dropped as static (``dataset.DataSummary``); ``pose_prior``: the
        run's ``pose_prior.PriorDecision`` as JSON."""
        ev = self.evidence()
        ev["static_frame_share"] = static_frame_share
        ev["metric"] = metric
        if restarts:
            ev["restarts"] = list(restarts)
        if pose_prior is not None:
            ev["pose_prior"] = (f"used ({pose_prior['known']} of {pose_prior['looked_at']} pairs)" if pose_prior["used"]
                                else f"not used: {pose_prior['reason']}")
        ratio, ident = self.ratio, self.mean("identity_photometric")
        causes: List[str] = []
        if not np.isfinite(ident):
            causes.append("no photometric evidence was recorded (a stereo-only run, or no step was taken)")
        learned = bool(np.isfinite(ratio) and ratio < LEARNED_RATIO)
        if not learned and np.isfinite(ident):
            if ev["static_frame_share"] > 0.5 or ident < LOW_PARALLAX:
                causes.append("the camera barely moves between the frames used (static camera, or too little parallax "
                              "for its speed): record while driving, or lower --fps / raise --stride so that "
                              "neighbouring frames are further apart")
            if self.mean("brightness_change") > FLICKER:
                causes.append(f"the brightness changes between neighbouring frames (mean {self.mean('brightness_change'):.3f}"
                              " of full scale): exposure flicker or auto-exposure; fix the camera's exposure or gain")
            elif not causes and self.depth_lags() and abs(self.mean("translation_scale_ratio") - 1.0) < 0.2:
                causes.append(f"the full-resolution depth has not caught up yet with the metric scale that the "
                              f"odometry gave the pose network (translation / odometry "
                              f"{self.mean('translation_scale_ratio'):.2f}; full-resolution loss "
                              f"{self.full_resolution_lag:.2f}x the coarser scales'): train longer")
            elif not causes and self.steps < SHORT_RUN_STEPS:
                causes.append(f"the run is too short to tell: {self.steps} step(s), and runs that learn get there "
                              f"within about {SHORT_RUN_STEPS} steps on fast motion and later on slow: train longer "
                              "(--epochs, --max-steps)")
            elif not causes:
                prior_off = pose_prior is not None and pose_prior.get("mode") == "off"
                causes.append(f"the pose network is stuck: translation {self.direction()}, and warping explains the "
                              f"frames no better than not moving (ratio {ratio:.3f}); train again with another --seed, "
                              "give the robot's odometry (--odometry-topic)"
                              + (", leave --pose-prior at auto" if prior_off else "") + " or train longer")
        if metric_expected and not metric:
            causes.append(f"depth is not metric: {scale_source}. The robot's odometry disagrees with the images "
                          "(check --odometry-topic, the camera mount in /tf_static and the clocks) or the run was short")
        return {"learned": learned, "metric": metric, "cause": "; ".join(causes), "evidence": ev}


def format_verdict(verdict: Dict[str, Any]) -> str:
    """The verdict as the console shows it (one headline, then the evidence)."""
    ev = verdict["evidence"]
    head = "LEARNED" if verdict["learned"] else "NOT LEARNED"
    lines = [f"verdict: {head}" + (" (metric)" if verdict.get("metric") else "") +
             (f": {verdict['cause']}" if verdict["cause"] else "")]
    lines.append(f"  photometric/identity error {ev.get('photometric_over_identity')} (learned below {LEARNED_RATIO}), "
                 f"auto-mask keeps {ev.get('automask_fraction', float('nan')):.0%}, translation {ev.get('translation_direction')}, "
                 f"static frames {ev.get('static_frame_share', 0):.0%}, brightness change {ev.get('brightness_change', float('nan')):.3f}")
    if ev.get("pose_prior"):
        lines.append(f"  two-view pose prior {ev['pose_prior']}")
    if ev.get("restarts"):
        lines.append(f"  restarted {len(ev['restarts'])} time(s): " + "; ".join(ev["restarts"]))
    return "\n".join(lines)

"""``bench pose``: how well the pose network learns with large motion, variant against variant, several seeds.

Generates (once, cached) a training and a held-out bag of synthetic streets driven at ``speed`` m/s at 10 Hz with
turns (1 m a frame at the default 10 m/s, a car's motion), trains each variant from scratch for ``steps`` steps
on the same frames with each seed, evaluates the pose network on the held-out bag with ``ros2-monodepth-eval``'s
odometry metrics (RPE in m/frame and ATE in m after Sim(3) alignment, the chain of the network's frame-to-frame
motion) and prints mean and spread per variant next to the first variant's (by default ``previous``, the
training loop as it was before issue 18, and ``current``, today's defaults).

A run has *learned* when its held-out RPE is below ``LEARNED_SHARE`` of the untrained networks' (stuck runs sit
near the untrained RPE, learned ones far below: README, "Does it learn?"). Per variant the table gives the runs that
learned with a 95 % Wilson interval, mean and worst RPE and ATE, and minutes per run.

A variant is a name and training options, e.g. ``--variant fp32=--precision,fp32``. Figures, not a timed test:
they show what a change does to pose learning; the README quotes them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from ...core.model_contract import format_size

# The training loop before issue 18 (its defaults then), and today's defaults.
BUILTIN_VARIANTS: Dict[str, List[str]] = {
    "previous": ["--tie-break", "fixed", "--pose-batch", "joint", "--pose-precision", "auto", "--resize-filter", "area",
                 "--stuck-check-steps", "0", "--pose-prior", "off"],
    "current": [],
}
LEARNED_SHARE = 0.5   # learned: held-out RPE below half the untrained networks'


def wilson_interval(k: int, n: int, z: float = 1.96) -> Tuple[float, float]:
    """95 % Wilson score interval of a success rate k / n.

    >>> [round(v, 2) for v in wilson_interval(9, 10)]
    [0.6, 0.98]
    """
    if n == 0:
        return 0.0, 1.0
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return float(max(0.0, centre - half)), float(min(1.0, centre + half))


@dataclass
class PoseBenchConfig:
    out: Path = Path("pose_bench")
    steps: int = 480
    seeds: Tuple[int, ...] = (0, 1, 2)
    variants: Dict[str, List[str]] = field(default_factory=lambda: dict(BUILTIN_VARIANTS))
    frames: int = 60
    speed: float = 10.0
    turns: float = 0.15
    network_size: Tuple[int, int] = (96, 320)     # (height, width); the bags are 320x96
    batch_size: int = 8
    lr: float = 2e-4
    threads: int = 0


def _bags(cfg: PoseBenchConfig) -> Tuple[Path, Path]:
    from ros2_monodepth_training.synth_bag import SynthConfig, write_synthetic_bag

    bags = []
    for name, seed in (("train", 10), ("test", 11)):
        # with the robot's /odom (its own random stream: the images are the same as without), so that a variant can
        # try velocity supervision: --variant velocity=--odometry-topic,/odom
        path = cfg.out / f"{name}_bag_{cfg.frames}f_{cfg.speed:g}mps_{cfg.turns:g}rad_odom"
        if not (path / "metadata.yaml").is_file():
            write_synthetic_bag(SynthConfig(path, frames=cfg.frames, width=320, height=96, seed=seed, speed=cfg.speed,
                                            yaw_amplitude=cfg.turns, lateral_amplitude=1.5, odometry=True),
                                progress=False)
        bags.append(path)
    return bags[0], bags[1]


def pose_bench(cfg: PoseBenchConfig) -> Dict[str, Any]:
    from ros2_monodepth_training.config import EvalConfig, parse_train_args
    from ros2_monodepth_training.evaluate import evaluate
    from ros2_monodepth_training.train import train_or_reuse

    train_bag, test_bag = _bags(cfg)
    rows: Dict[str, Dict[str, Any]] = {}
    h, w = cfg.network_size
    # the untrained networks first: "learned" is measured against them
    untrained = evaluate(None, EvalConfig(bags=[str(test_bag)], depth_topic="", network_size=cfg.network_size, backend="offline"))
    for name, options in cfg.variants.items():
        runs = []
        for seed in cfg.seeds:
            out = cfg.out / f"{name}_seed{seed}"
            argv = [str(train_bag), "--out", str(out), "--network-size", format_size(cfg.network_size), "--batch-size",
                    str(cfg.batch_size), "--lr", str(cfg.lr), "--lr-schedule", "constant", "--seed", str(seed),
                    "--workers", "1", "--no-progress", "--static-threshold", "0", "--threads", str(cfg.threads),
                    "--log-every", "1000000", "--image-every", "1000000", "--checkpoint-every", str(cfg.steps),
                    *options]
            train_cfg = parse_train_args(argv)
            print(f"[bench pose] {name} seed {seed}: {' '.join(options) or 'defaults'}", flush=True)
            checkpoint = train_or_reuse(replace(train_cfg, epochs=10_000), cfg.steps)
            summary = json.loads((Path(checkpoint).parent / "summary.json").read_text())
            m = evaluate(str(checkpoint), EvalConfig(bags=[str(test_bag)], network_size=cfg.network_size,   # with depth
                                                     backend="offline"))
            verdict = summary.get("verdict", {})
            runs.append({"seed": seed, "rpe_m": m["rpe_sim3_m"], "ate_m": m["ate_sim3_m"],
                         "learned": bool(m["rpe_sim3_m"] < LEARNED_SHARE * untrained["rpe_sim3_m"]),
                         "verdict_learned": verdict.get("learned"), "restarts": len(verdict.get("evidence", {}).get("restarts", [])),
                         "minutes": summary.get("seconds", float("nan")) / 60.0,
                         "photometric_over_identity": verdict.get("evidence", {}).get("photometric_over_identity"),
                         # depth (median-scaled abs_rel), and whether the run came out metric (velocity supervision):
                         # the checkpoint's own claim and the pose's scale against the ground truth (1 = metres)
                         "abs_rel": m.get("abs_rel", float("nan")), "metric": bool(summary.get("scale", {}).get("metric")),
                         "pose_scale": m.get("sim3_scale", float("nan")),
                         "at_stuck_check": summary.get("stuck_check", {}).get("photometric_over_identity")})
        rpe = np.array([r["rpe_m"] for r in runs])
        ate = np.array([r["ate_m"] for r in runs])
        learned = sum(r["learned"] for r in runs)
        rows[name] = {"options": options, "runs": runs, "rpe_mean": float(rpe.mean()), "rpe_std": float(rpe.std()),
                      "ate_mean": float(ate.mean()), "ate_std": float(ate.std()), "rpe_worst": float(rpe.max()),
                      "ate_worst": float(ate.max()), "learned": learned, "learned_ci95": wilson_interval(learned, len(runs)),
                      "minutes_per_run": float(np.mean([r["minutes"] for r in runs])),
                      "verdict_agrees": sum(r["verdict_learned"] == r["learned"] for r in runs),
                      "abs_rel_mean": float(np.mean([r["abs_rel"] for r in runs])),
                      "metric": sum(r["metric"] for r in runs)}
    return {"mode": "pose", "steps": cfg.steps, "seeds": list(cfg.seeds), "speed_mps": cfg.speed,
            "frames": cfg.frames, "network_size": [h, w], "rows": rows,
            "untrained": {"rpe_m": untrained["rpe_sim3_m"], "ate_m": untrained["ate_sim3_m"]}}


def print_pose_table(res: Dict[str, Any]) -> str:
    rows = res["rows"]
    lines = [f"pose learning: {res['frames']} frames at {res['speed_mps']:g} m/s (10 Hz), {res['steps']} steps, seeds "
             f"{res['seeds']}, network {res['network_size'][1]}x{res['network_size'][0]}; held-out bag, Sim(3)-aligned; "
             f"learned = RPE below {LEARNED_SHARE:g} x the untrained networks'",
             f"{'variant':<16}{'learned':>9}{'95% CI':>13}{'RPE m/frame':>13}{'worst':>8}{'ATE m':>8}{'worst':>8}"
             f"{'abs_rel':>9}{'metric':>8}{'min/run':>9}{'verdict ok':>11}   per seed (RPE, * = restarted)"]
    for name, r in rows.items():
        lo, hi = r["learned_ci95"]
        n = len(r["runs"])
        lines.append(f"{name:<16}{r['learned']:>5}/{n:<3}{f'{lo:.2f}-{hi:.2f}':>13}{r['rpe_mean']:>13.4f}{r['rpe_worst']:>8.3f}"
                     f"{r['ate_mean']:>8.3f}{r['ate_worst']:>8.3f}{r.get('abs_rel_mean', float('nan')):>9.3f}"
                     f"{r.get('metric', 0):>5}/{n:<2}{r['minutes_per_run']:>9.1f}{r['verdict_agrees']:>7}/{n:<3}   "
                     + ", ".join(f"{x['rpe_m']:.4f}" + ("*" * x.get("restarts", 0)) for x in r["runs"]))
    lines.append(f"{'untrained':<16}{'':>22}{res['untrained']['rpe_m']:>13.4f}{'':>8}{res['untrained']['ate_m']:>8.3f}")
    return "\n".join(lines)


def parse_variants(specs: Optional[Sequence[str]]) -> Dict[str, List[str]]:
    """'name' (built in) or 'name=--option,value,--flag' -> {name: options}.

    >>> parse_variants(["previous", "fp32=--precision,fp32"])["fp32"]
    ['--precision', 'fp32']
    """
    if not specs:
        return dict(BUILTIN_VARIANTS)
    out: Dict[str, List[str]] = {}
    for spec in specs:
        name, sep, opts = spec.partition("=")
        if not sep:
            if name not in BUILTIN_VARIANTS:
                raise ValueError(f"unknown variant '{name}' (built in: {', '.join(BUILTIN_VARIANTS)}; or NAME=--opt,value)")
            out[name] = list(BUILTIN_VARIANTS[name])
        else:
            out[name] = [o for o in opts.split(",") if o]
    return out


def write(res: Dict[str, Any], path: Path) -> None:
    path.write_text(json.dumps(res, indent=2))

"""The auto-masking ablation in miniature: an object that moves with the camera, trained with and without it.

A box that keeps its distance ahead of the camera never moves in the image, so without auto-masking the
photometric loss is best explained by infinite depth there (the "hole" of the Monodepth2 paper, fig. 5);
with auto-masking those pixels are left out because the unwarped frame explains them as well.

Trains two runs on the same generated bag with identical options except ``--no-automask`` (reusing runs
that already reached the step count), evaluates both on a test bag of another street with the object's
mask, and writes ``ablation.png`` (input, ground truth, with, without) and ``ablation.json``.

    python -m ros2_monodepth_training.ablation --out runs/ablation --steps 600
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any, Dict, Optional, Sequence
from ros2_monodepth.cli_help import HelpFormatter


def _figure(path: Path, test_bag: Path, checkpoints: Dict[str, str], metrics: Dict[str, Dict[str, Any]], frame: int) -> None:
    import cv2
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ros2_monodepth.core.checkpoint import load_checkpoint
    from ros2_monodepth.core.colorize import colorize_depth

    from .dataset import ResizePlan
    from .evaluate import predict, read_ground_truth

    frames, K = read_ground_truth([test_bag], "/camera/image_raw", "/ground_truth/depth", None, "/ground_truth/moving_mask")
    f = frames[frame]
    assert f.depth is not None and f.mask is not None, f"{test_bag}: frame {frame} has no depth or mask"
    mask = f.mask
    panels = [("camera image (red box moves with the camera)", f.rgb), ("ground-truth depth", colorize_depth(f.depth)[..., ::-1])]
    for name, ckpt in checkpoints.items():
        d, _, meta = load_checkpoint(ckpt, load_pose=False)
        plan = ResizePlan.make(f.rgb.shape[:2], meta.network_size, K, "center")
        depth = cv2.resize(predict(d, None, [f], plan, meta)[0][0], (f.rgb.shape[1], f.rgb.shape[0]), interpolation=cv2.INTER_LINEAR)
        m = metrics[name]
        panels.append((f"{name}: object abs_rel {m['moving_object_abs_rel']:.2f}, depth ratio {m['moving_object_depth_ratio']:.2f}",
                       colorize_depth(depth)[..., ::-1]))
    fig, ax = plt.subplots(len(panels), 1, figsize=(8, 2.1 * len(panels)))
    for a, (title, img) in zip(ax, panels):
        a.imshow(img)
        a.contour(mask.astype(float), levels=[0.5], colors="cyan", linewidths=0.8)
        a.set_title(title, fontsize=9)
        a.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m ros2_monodepth_training.ablation", description=__doc__.split("\n\n")[0],
                                formatter_class=HelpFormatter)
    p.add_argument("--out", required=True, help="folder for the bags, both runs, ablation.png and ablation.json")
    p.add_argument("--steps", type=int, default=600, help="training steps of each run")
    p.add_argument("--frames", type=int, default=400, help="frames in the training bag")
    p.add_argument("--threads", type=int, default=0, help="torch threads per run (0: default)")
    a = p.parse_args(argv)
    from .config import EvalConfig, TrainConfig
    from .evaluate import evaluate
    from .synth_bag import SynthConfig, write_synthetic_bag
    from .train import train_or_reuse

    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    bag, test_bag = out / "train_bag", out / "test_bag"
    if not (bag / "metadata.yaml").is_file():
        write_synthetic_bag(SynthConfig(bag, frames=a.frames, seed=0, moving_object=True), progress=False)
    if not (test_bag / "metadata.yaml").is_file():
        write_synthetic_bag(SynthConfig(test_bag, frames=100, seed=1, moving_object=True), progress=False)
    runs = {"auto-masking on": out / "automask_on", "auto-masking off": out / "automask_off"}
    # constant learning rate: the runs are cut by --steps, and a step schedule over 1000 nominal epochs would drop the
    # rate every few steps (the schedule keeps its share of the run)
    base = TrainConfig(bags=[str(bag)], out="", network_size=(64, 192), lr=2e-4, epochs=1000, lr_schedule="constant", workers=1,
                       checkpoint_every=100, progress=False, threads=a.threads)
    train_or_reuse(replace(base, out=str(runs["auto-masking on"])), a.steps)
    train_or_reuse(replace(base, out=str(runs["auto-masking off"]), automask=False), a.steps)
    metrics: Dict[str, Dict[str, Any]] = {}
    for name, run in runs.items():
        metrics[name] = evaluate(str(run / "checkpoint"), EvalConfig(bags=[str(test_bag)], mask_topic="/ground_truth/moving_mask",
                                                                    pose_topic=""))
    _figure(out / "ablation.png", test_bag, {k: str(v / "checkpoint") for k, v in runs.items()}, metrics, frame=50)
    (out / "ablation.json").write_text(json.dumps(metrics, indent=2))
    keys = ("abs_rel", "a1", "moving_object_abs_rel", "moving_object_depth_ratio")
    print(f"{'':<20}" + "".join(f"{k:>28}" for k in keys))
    for name, m in metrics.items():
        print(f"{name:<20}" + "".join(f"{m[k]:>28.4f}" for k in keys))
    print(f"[ablation] wrote {out / 'ablation.png'} and {out / 'ablation.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""``bench train``: training steps per second, the project's step (bf16 autocast where the CPU has it,
channels_last, identity errors once, batched pose pairs, compiled photometric error, fused Adam) against a plain
fp32 eager implementation of the same Monodepth2 loss on the same batch and weights.

``_plain_loss`` is that plain implementation, written as the paper states it: it is the reference the speed-up is
quoted against, and the loss parity check.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Dict, List, Tuple

import numpy as np

from .common import stats_ms


@dataclass
class TrainBenchConfig:
    network_size: Tuple[int, int] = (192, 640)
    batch_size: int = 4
    warmup: int = 5
    repeats: int = 30
    threads: int = 0
    compile_loss: str = "auto"


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


def _plain_loss(depth_net, pose_net, batch, scales=(0, 1, 2, 3)):
    """A plain implementation of the same Monodepth2 loss: fp32, NCHW, one pose call per pair, one warp and
    one photometric error per source and scale, identity errors recomputed at every scale (the reference the
    training speed-up is quoted against)."""
    import torch
    import torch.nn.functional as F

    from ros2_monodepth_training.losses import combine_reprojection, smoothness_loss, smoothness_weight
    from ros2_monodepth_training.warp import warp_source_to_target

    from ...core.geometry import disp_to_depth, pose_params_to_matrix

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


def train_bench(cfg: TrainBenchConfig, frames: List[np.ndarray], K: np.ndarray) -> Dict[str, Any]:
    """Training steps per second: the project's step (bf16 autocast where the CPU has it, channels_last,
    identity errors once, batched pose pairs) against ``_plain_loss`` in fp32 eager, same batch and weights."""
    import copy

    import torch

    from ros2_monodepth_training.dataset import ResizePlan
    from ros2_monodepth_training.objective import LossConfig, TripletBatch
    from ros2_monodepth_training.train import TrainingModel

    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    size = cfg.network_size
    plan = ResizePlan.make(frames[0].shape[:2], size, K, "center")
    small = np.stack([plan.apply(f) for f in frames]).astype(np.float32) / 255.0
    b = cfg.batch_size
    trip = np.stack([small[i:i + 3] for i in range(b)])             # (B, 3, H, W, 3)
    images = torch.from_numpy(trip).permute(0, 1, 4, 2, 3).contiguous()
    batch = {"images": images, "aug": images, "K": torch.from_numpy(np.repeat(plan.K[None], b, 0).astype(np.float32))}
    torch.manual_seed(0)
    naive = TrainingModel(18, LossConfig())
    fast = copy.deepcopy(naive)
    dtype, _, compiled = fast.prepare(torch.device("cpu"), "auto", channels_last=True, compile_loss=cfg.compile_loss)
    results: Dict[str, Any] = {"mode": "train", "network_size": list(size), "batch": b, "threads": torch.get_num_threads(),
                                  "precision": str(dtype).replace("torch.", "") if dtype else "fp32",
                                  "compiled_loss": compiled}
    with torch.no_grad():
        naive.eval(), fast.eval()
        l_naive = float(_plain_loss(naive.depth, naive.pose, batch))
        l_fast = float(fast(TripletBatch.of(batch)).total)
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
    steps = {"naive fp32 eager": make_step(lambda: _plain_loss(naive.depth, naive.pose, batch),
                                           torch.optim.Adam([p for p in naive.parameters() if p.requires_grad],
                                                            lr=1e-5, foreach=False)),
             "ros2_monodepth step": make_step(lambda: fast(TripletBatch.of(batch)).total, fast.optimizer(1e-5))}
    warm: Dict[str, float] = {}
    for name, step in steps.items():
        t0 = time.perf_counter()
        for _ in range(max(1, cfg.warmup)):   # the first step compiles the loss when it is compiled
            step()
        warm[name] = time.perf_counter() - t0
    # The two alternate, step by step, so that both see the same machine (shared, noisy: the plain step's
    # median moved by 16 % between two runs minutes apart when each was timed in one block).
    times: Dict[str, List[float]] = {name: [] for name in steps}
    for _ in range(cfg.repeats):
        for name, step in steps.items():
            t0 = time.perf_counter()
            step()
            times[name].append(time.perf_counter() - t0)
    for name, t in times.items():
        results[name] = {"step_ms": stats_ms(t), "images_per_s": b / float(np.median(t)), "warmup_s": warm[name]}
    results["speedup"] = results["ros2_monodepth step"]["images_per_s"] / results["naive fp32 eager"]["images_per_s"]
    return results


def print_train_table(res: Dict[str, Any]) -> str:
    lines = [f"training step, batch {res['batch']} x {res['network_size'][1]}x{res['network_size'][0]}, 3 frames, 4 scales, "
             f"{res['threads']} threads"]
    for name in ("naive fp32 eager", "ros2_monodepth step"):
        r = res[name]
        lines.append(f"{name:<24} p50 {r['step_ms']['p50']:8.1f} ms   {r['images_per_s']:6.2f} images/s")
    lines.append(f"speed-up {res['speedup']:.2f}x ({res['precision']}, compiled loss {res['compiled_loss']}, "
                 f"warm-up incl. compilation {res['ros2_monodepth step']['warmup_s']:.0f} s); loss on the same batch and weights: "
                 f"{res['loss_naive_fp32']:.6f} (fp32) vs {res['loss_fast']:.6f}, relative difference {res['loss_relative_difference']:.2e}")
    return "\n".join(lines)

"""``ros2-monodepth-train``: self-supervised training of the depth and pose networks from ROS 2 bags.

Owns the command line and the loop: data (``dataset.py``), objective (``objective.py``), checkpoints
(``state.py``), precision (autocast bf16/fp16 + channels_last), the compiled loss (torch.compile of the
photometric error), DistributedDataParallel under ``torchrun`` (gloo on CPU, nccl on
CUDA), TensorBoard and the progress bar.

    ros2-monodepth-train BAG [BAG ...] --out runs/street --epochs 20
    torchrun --nproc_per_node 2 -m ros2_monodepth_training.train BAG --out runs/ddp
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import math
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any, Callable, Dict, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from ros2_monodepth.core.checkpoint import CheckpointError, CheckpointMetadata
from ros2_monodepth.core.networks import DepthNet, PoseNet

from .bag_frames import BagError
from .dataset import Augmentation, IndexOptions, SampleOrder, TripletDataset, index_frames, make_triplets, split_by_time
from .losses import photometric_error
from .objective import ExplainabilityNet, LossConfig, LossOutput, self_supervised_loss
from .state import Progress, init_from_checkpoint, init_from_resnet_file, load_training_checkpoint, save_training_checkpoint

CHECKPOINT_DIR = "checkpoint"


class CompiledPhotometric:
    """``losses.photometric_error`` (SSIM + L1) through torch.compile (inductor), with the SSIM's 3x3 means as
    shifted slices (``losses.ShiftedBoxMean``), so its chain of elementwise ops and box filters becomes a few
    fused loops, forward and backward. On the 2-core CPU the reprojection losses of a batch (4 scales x
    2 sources x 4 images at 320x96) went from 315 ms eager to 86 ms compiled with the convolution box filter;
    at 640x192 the shifted slices halved that again (300 against 650 ms for 32 maps). Compiling the warp as
    well was slower (121 against 86 ms). Compilation takes about 15-40 s at the first step. Falls back to the
    eager function, with one message, when compilation fails (no C++ compiler, unsupported platform)."""

    def __init__(self) -> None:
        self.compiled: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = torch.compile(
            functools.partial(photometric_error, box="shifted"))
        self.failed = False

    def __call__(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if not self.failed:
            try:
                return self.compiled(pred, target)
            except Exception as exc:  # inductor / compiler problems: train on, uncompiled
                self.failed = True
                print(f"[train] torch.compile of the loss failed, continuing without it: {type(exc).__name__}: "
                      f"{str(exc).splitlines()[0] if str(exc) else ''}", file=sys.stderr, flush=True)
        return photometric_error(pred, target)


def want_compiled_loss(mode: str, device: torch.device) -> bool:
    """'on', 'off', or 'auto': on the CPU when a C++ compiler is there (inductor generates C++); off on CUDA,
    where it would need triton."""
    if mode in ("on", "off"):
        return mode == "on"
    return device.type == "cpu" and any(shutil.which(c) for c in (os.environ.get("CXX", "c++"), "g++", "clang++"))


class TrainingModel(nn.Module):
    """The networks trained together; ``forward(batch)`` is the loss, so DDP sees one forward per step."""

    def __init__(self, num_layers: int, cfg: LossConfig):
        super().__init__()
        self.cfg = cfg
        self.depth = DepthNet(num_layers)
        self.pose = PoseNet(num_layers) if cfg.monocular else None
        self.explain = ExplainabilityNet() if cfg.explainability > 0 and cfg.monocular else None
        self.autocast: contextlib.AbstractContextManager = contextlib.nullcontext()
        self.photometric: Optional[Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = None   # None: eager
        # The ResNets keep torchvision's classifier so that weight files load key for key; it never runs, so
        # it is frozen (DDP would otherwise wait for its gradients).
        for m in self.modules():
            if hasattr(m, "fc") and isinstance(m.fc, nn.Linear):
                m.fc.requires_grad_(False)

    def prepare(self, device: torch.device, precision: str = "auto", channels_last: bool = True,
                compile_loss: str = "auto") -> Tuple[Optional[torch.dtype], Any, bool]:
        """Move to ``device`` and set how a step runs: memory format, autocast dtype, compiled photometric error.
        Returns (autocast dtype or None, grad scaler or None, whether the loss is compiled)."""
        self.to(device)
        if channels_last:
            self.to(memory_format=torch.channels_last)
        dtype, scaler = pick_precision(precision, device)
        self.autocast = torch.autocast(device.type, dtype=dtype) if dtype is not None else contextlib.nullcontext()
        compiled = want_compiled_loss(compile_loss, device)
        self.photometric = CompiledPhotometric() if compiled else None
        return dtype, scaler, compiled

    def optimizer(self, lr: float) -> torch.optim.Adam:
        """Adam over the trainable parameters, fused (all of Adam's arithmetic in one pass over each tensor):
        its step took 30 ms against 50 ms for the per-op form on the 2-core CPU (25 M parameters, 320x96)."""
        return torch.optim.Adam([p for p in self.parameters() if p.requires_grad], lr=lr, fused=True)

    def forward(self, batch: Dict[str, torch.Tensor]) -> LossOutput:
        return self_supervised_loss(self.depth, self.pose, batch, self.cfg, self.explain, self.autocast, self.photometric)


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="ros2-monodepth-train", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("bags", nargs="+", help="ROS 2 bag folders (.db3 or .mcap)")
    p.add_argument("--out", required=True, help="run folder: checkpoint/, tensorboard/, config.json")
    d = p.add_argument_group("data")
    d.add_argument("--topic", default="/camera/image_raw", help="Image or CompressedImage topic")
    d.add_argument("--camera-info-topic", default="/camera/camera_info", help="CameraInfo topic for the intrinsics")
    d.add_argument("--intrinsics", type=float, nargs=4, metavar=("FX", "FY", "CX", "CY"),
                   help="intrinsics at the bag's image size (instead of camera_info)")
    d.add_argument("--right-topic", help="stereo: right camera topic (rectified, same size)")
    d.add_argument("--right-camera-info-topic", help="stereo: right CameraInfo (baseline from P[3] = -fx * baseline)")
    d.add_argument("--height", type=int, default=96, help="training height (multiple of 32)")
    d.add_argument("--width", type=int, default=320, help="training width (multiple of 32)")
    d.add_argument("--crop", choices=("center", "bottom", "top", "none"), default="center",
                   help="crop to the training aspect ratio before resizing (none: squash)")
    d.add_argument("--stride", type=int, default=1, help="use every N-th frame")
    d.add_argument("--fps", type=float, default=0.0, help="use at most this many frames per second (0: all)")
    d.add_argument("--static-threshold", type=float, default=0.3,
                   help="skip frames whose thumbnail differs from the last kept one by less (grey levels; 0: keep all)")
    d.add_argument("--val-fraction", type=float, default=0.1, help="last fraction of the recording's time used for validation")
    d.add_argument("--val-range", type=float, nargs=2, metavar=("START", "END"),
                   help="validation time range in seconds from the first frame (instead of --val-fraction)")
    d.add_argument("--workers", type=int, default=2, help="DataLoader worker processes decoding frames")
    d.add_argument("--no-augment", action="store_true", help="no colour jitter or flip")
    t = p.add_argument_group("optimisation")
    t.add_argument("--num-layers", type=int, choices=(18, 34, 50), default=18, help="ResNet depth of both encoders")
    t.add_argument("--batch-size", type=int, default=8, help="per process")
    t.add_argument("--epochs", type=int, default=20)
    t.add_argument("--max-steps", type=int, default=0, help="stop after this many steps (0: no limit)")
    t.add_argument("--max-minutes", type=float, default=0.0, help="stop (with a checkpoint) after this much time (0: no limit)")
    t.add_argument("--lr", type=float, default=1e-4, help="Adam learning rate")
    t.add_argument("--lr-schedule", choices=("step", "cosine", "constant"), default="step",
                   help="step: x gamma every --lr-step epochs (the paper: 0.1 after 15 of 20); cosine: to 0 over the run")
    t.add_argument("--lr-step", type=int, default=15)
    t.add_argument("--lr-gamma", type=float, default=0.1)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--init-resnet", help="torchvision-format ResNet .pth to initialise both encoders")
    t.add_argument("--init-checkpoint", help="checkpoint folder (this project's or Monodepth2's) to start from")
    t.add_argument("--resume", action="store_true", help="continue from <out>/checkpoint")
    t.add_argument("--precision", choices=("auto", "fp32", "bf16", "fp16"), default="auto",
                   help="autocast dtype for the networks (auto: bf16 on AMX/AVX512-bf16 CPUs and CUDA, else fp32)")
    t.add_argument("--no-channels-last", action="store_true", help="keep NCHW memory format")
    t.add_argument("--compile-loss", choices=("auto", "on", "off"), default="auto",
                   help="torch.compile the photometric error, SSIM + L1 (auto: on the CPU when a C++ compiler "
                        "is found; about 20-40 s of compilation at the first step, then a faster step)")
    t.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto")
    t.add_argument("--threads", type=int, default=0, help="torch intra-op threads per process (0: torch's default)")
    lo = p.add_argument_group("loss (Monodepth2 contributions can be switched off for ablations)")
    lo.add_argument("--scales", type=int, nargs="+", default=[0, 1, 2, 3])
    lo.add_argument("--no-min-reprojection", action="store_true", help="average over sources instead of the per-pixel minimum")
    lo.add_argument("--no-automask", action="store_true", help="no identity-reprojection auto-masking")
    lo.add_argument("--no-full-res", action="store_true", help="compute each scale's loss at its own resolution")
    lo.add_argument("--smoothness", type=float, default=1e-3, help="edge-aware smoothness weight (divided by 2**scale)")
    lo.add_argument("--explainability", type=float, default=0.0, help="SfMLearner explainability mask regulariser weight (0: off)")
    lo.add_argument("--stereo", action="store_true", help="use the right camera as a source (needs --right-topic)")
    lo.add_argument("--no-monocular", action="store_true", help="stereo only: no temporal sources, no pose network")
    lo.add_argument("--min-depth", type=float, default=0.1)
    lo.add_argument("--max-depth", type=float, default=100.0)
    o = p.add_argument_group("output")
    o.add_argument("--checkpoint-every", type=int, default=200, help="steps between checkpoints (a kill loses at most this many)")
    o.add_argument("--log-every", type=int, default=20, help="steps between TensorBoard scalars")
    o.add_argument("--image-every", type=int, default=200, help="steps between TensorBoard depth images")
    o.add_argument("--no-progress", action="store_true", help="no tqdm bar (one log line per epoch)")
    a = p.parse_args(argv)
    if a.height % 32 or a.width % 32:
        p.error(f"--height and --width must be multiples of 32 (the encoder downsamples 32x), got {a.height}x{a.width}")
    if a.stereo and not (a.right_topic and a.right_camera_info_topic):
        p.error("--stereo needs --right-topic and --right-camera-info-topic")
    if a.no_monocular and not a.stereo:
        p.error("--no-monocular needs --stereo")
    if a.init_resnet and a.init_checkpoint:
        p.error("give --init-resnet or --init-checkpoint, not both")
    if a.batch_size < 1 or a.epochs < 1:
        p.error("--batch-size and --epochs must be >= 1")
    return a


def loss_config(a: argparse.Namespace) -> LossConfig:
    return LossConfig(scales=tuple(a.scales), min_reprojection=not a.no_min_reprojection, automask=not a.no_automask,
                      full_res_multiscale=not a.no_full_res, smoothness=a.smoothness, explainability=a.explainability,
                      min_depth=a.min_depth, max_depth=a.max_depth, monocular=not a.no_monocular, stereo=a.stereo)


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0))) if torch.cuda.is_available() else torch.device("cpu")
    return torch.device(name)


def pick_precision(name: str, device: torch.device) -> Tuple[Optional[torch.dtype], Any]:
    """(autocast dtype or None for fp32, GradScaler or None)."""
    from ros2_monodepth.core.backends.factory import cpu_has_bf16

    if name == "auto":
        if device.type == "cuda":
            name = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        else:
            name = "bf16" if cpu_has_bf16() else "fp32"
    if name == "fp32":
        return None, None
    if name == "fp16":
        if device.type != "cuda":
            raise SystemExit("--precision fp16 needs CUDA (use bf16 on CPU)")
        return torch.float16, torch.amp.GradScaler("cuda")
    return torch.bfloat16, None


def make_scheduler(opt: torch.optim.Optimizer, a: argparse.Namespace, steps_per_epoch: int):
    """Stepped once per optimiser step; the schedule is expressed in epochs."""
    total = max(1, a.epochs * steps_per_epoch)
    if a.lr_schedule == "step":
        step_len = max(1, a.lr_step * steps_per_epoch)
        return torch.optim.lr_scheduler.LambdaLR(opt, lambda s: a.lr_gamma ** (s // step_len))
    if a.lr_schedule == "cosine":
        return torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + math.cos(math.pi * min(s, total) / total)))
    return torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)


def build_datasets(a: argparse.Namespace, progress: bool) -> Tuple[TripletDataset, TripletDataset, Dict[str, Any]]:
    opts = IndexOptions(topic=a.topic, camera_info_topic=a.camera_info_topic,
                        intrinsics=tuple(a.intrinsics) if a.intrinsics else None,
                        right_topic=a.right_topic if a.stereo else None,
                        right_camera_info_topic=a.right_camera_info_topic if a.stereo else None,
                        stride=a.stride, fps=a.fps, static_threshold=a.static_threshold)
    index = index_frames(a.bags, opts, progress=progress)
    centres = make_triplets(index)
    train_c, val_c = split_by_time(index, centres, a.val_fraction, tuple(a.val_range) if a.val_range else None)
    if len(train_c) == 0:
        raise BagError(f"no training triplets: {len(index.raw)} frames kept in {int(index.segments.max()) + 1} segments, "
                       f"{len(val_c)} triplets in the validation range")
    size = (a.height, a.width)
    train = TripletDataset(index, train_c, size, a.crop, Augmentation(enabled=not a.no_augment))
    val = TripletDataset(index, val_c, size, a.crop)
    info = {"frames_considered": index.considered, "frames_kept": len(index.raw), "static_skipped": index.static_skipped,
            "unreadable": index.stats.skipped, "unreadable_reasons": index.stats.reasons,
            "segments": int(index.segments.max()) + 1, "train_triplets": len(train_c), "val_triplets": len(val_c),
            "bag_size": list(index.size), "K_train": train.plan.K.round(3).tolist(), "baseline_m": index.baseline}
    return train, val, info


def _to_device(batch: Dict[str, torch.Tensor], device: torch.device, channels_last: bool) -> Dict[str, torch.Tensor]:
    out = {}
    for k, v in batch.items():
        v = v.to(device, non_blocking=True)
        if channels_last and v.dim() == 4:
            v = v.contiguous(memory_format=torch.channels_last)
        out[k] = v
    return out


@torch.no_grad()
def validate(model: TrainingModel, loader: DataLoader, device: torch.device, channels_last: bool) -> float:
    model.eval()
    losses = [float(model(_to_device(b, device, channels_last)).total) for b in loader]
    model.train()
    return float(np.mean(losses)) if losses else float("nan")


def _log_images(writer, out: LossOutput, batch: Dict[str, torch.Tensor], step: int) -> None:
    from ros2_monodepth.core.colorize import colorize_depth

    img = batch["images"][0, 1].float().cpu().numpy()
    disp = out.disp[0, 0].float().cpu().numpy() if out.disp is not None else None
    writer.add_image("input", img, step)
    if disp is not None:
        vis = colorize_depth(1.0 / np.maximum(disp, 1e-6))[..., ::-1].transpose(2, 0, 1).copy()
        writer.add_image("disparity", vis, step)
    if out.automask is not None:
        writer.add_image("automask", out.automask[0:1].float().cpu().numpy(), step)


def train(a: argparse.Namespace) -> Dict[str, Any]:
    """Run the loop described by the parsed options; returns a summary (also written to <out>/summary.json)."""
    world = int(os.environ.get("WORLD_SIZE", 1))
    rank = int(os.environ.get("RANK", 0))
    device = pick_device(a.device)
    if world > 1:
        import torch.distributed as dist

        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        if device.type == "cuda":
            torch.cuda.set_device(device)
    if a.threads > 0:
        torch.set_num_threads(a.threads)
    main_proc = rank == 0
    out_dir = Path(a.out)
    ckpt_dir = out_dir / CHECKPOINT_DIR
    show_progress = main_proc and not a.no_progress

    torch.manual_seed(a.seed)
    train_ds, val_ds, data_info = build_datasets(a, show_progress)
    cfg = loss_config(a)
    model = TrainingModel(a.num_layers, cfg)
    if a.init_resnet:
        msg = init_from_resnet_file(Path(a.init_resnet), model.depth, model.pose)
    elif a.init_checkpoint:
        msg = init_from_checkpoint(Path(a.init_checkpoint), model.depth, model.pose)
    else:
        msg = "networks initialised at random (from scratch)"
    channels_last = not a.no_channels_last
    dtype, scaler, compiled = model.prepare(device, a.precision, channels_last, a.compile_loss)

    sampler = SampleOrder(len(train_ds), a.seed, rank, world)
    steps_per_epoch = sampler.per_rank() // a.batch_size
    if steps_per_epoch == 0:
        raise BagError(f"{len(train_ds)} training triplets over {world} process(es) make no batch of {a.batch_size}")
    opt = model.optimizer(a.lr)
    sched = make_scheduler(opt, a, steps_per_epoch)
    progress = Progress()
    if a.resume:
        progress = load_training_checkpoint(ckpt_dir, model.depth, model.pose, opt, sched, scaler, model.explain)
        msg = f"resumed from {ckpt_dir} at epoch {progress.epoch}, step {progress.step}"
    ddp_model: nn.Module = model
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel as DDP

        ddp_model = DDP(model, device_ids=[device.index] if device.type == "cuda" else None,
                        find_unused_parameters=set(cfg.scales) != {0, 1, 2, 3})  # unused disparity heads

    meta = CheckpointMetadata(num_layers=a.num_layers, height=a.height, width=a.width, use_stereo=a.stereo,
                              min_depth=a.min_depth, max_depth=a.max_depth, stereo_scale=1.0, has_pose=model.pose is not None,
                              source="ros2_monodepth training", extra={"bags": [str(b) for b in a.bags]})
    config = dict(vars(a))
    writer = None
    if main_proc:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "config.json").write_text(json.dumps(config, indent=2))
        print(f"[train] {msg}", flush=True)
        print(f"[train] data: {json.dumps(data_info)}", flush=True)
        print(f"[train] {world} process(es) on {device}, precision {str(dtype).replace('torch.', '') if dtype else 'fp32'}, "
              f"channels_last {channels_last}, compiled loss {compiled}, batch {a.batch_size}/process, "
              f"{steps_per_epoch} steps/epoch", flush=True)
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(str(out_dir / "tensorboard"), purge_step=progress.step or None)

    loader_kw: Dict[str, Any] = dict(batch_size=a.batch_size, num_workers=a.workers, drop_last=True,
                                     pin_memory=device.type == "cuda")
    if a.workers > 0:
        # Workers live across epochs: starting them copies the frame index (the serialized frames) into each.
        # The sampler runs in this process, so its per-epoch position still applies.
        loader_kw.update(persistent_workers=True, prefetch_factor=4)
    loader = DataLoader(train_ds, sampler=sampler, **loader_kw)
    val_loader = DataLoader(val_ds, batch_size=a.batch_size, num_workers=0)

    def checkpoint() -> None:
        if main_proc:
            save_training_checkpoint(ckpt_dir, model.depth, model.pose, meta, opt, sched, scaler, progress, model.explain, config)

    t_start = time.monotonic()
    stop_reason = "epochs done"
    last: Dict[str, float] = {}
    images_seen = 0
    model.train()
    from tqdm import tqdm

    done = False
    while progress.epoch < a.epochs and not done:
        sampler.set_position(progress.epoch, progress.done_in_epoch)
        bar = tqdm(loader, total=len(sampler) // a.batch_size, desc=f"epoch {progress.epoch + 1}/{a.epochs}",
                   unit="step", disable=not show_progress, dynamic_ncols=True)
        t_rate, n_rate = time.monotonic(), 0
        for batch in bar:
            batch = _to_device(batch, device, channels_last)
            out = ddp_model(batch)
            opt.zero_grad(set_to_none=True)
            if scaler is not None:
                scaler.scale(out.total).backward()
                scaler.step(opt)
                scaler.update()
            else:
                out.total.backward()
                opt.step()
            sched.step()
            progress.step += 1
            progress.done_in_epoch += a.batch_size
            n = batch["images"].shape[0] * world
            images_seen += n
            n_rate += n
            last = out.terms
            if not math.isfinite(last["loss"]):
                raise FloatingPointError(f"loss is {last['loss']} at step {progress.step}; the last checkpoint is kept")
            rate = n_rate / max(1e-6, time.monotonic() - t_rate)
            bar.set_postfix(loss=f"{last['loss']:.4f}", img_s=f"{rate:.1f}")
            if writer is not None and progress.step % a.log_every == 0:
                for k, v in last.items():
                    writer.add_scalar(f"train/{k}", v, progress.step)
                writer.add_scalar("train/lr", sched.get_last_lr()[0], progress.step)
                writer.add_scalar("train/images_per_s", rate, progress.step)
            if writer is not None and progress.step % a.image_every == 0:
                _log_images(writer, out, batch, progress.step)
            if progress.step % a.checkpoint_every == 0:
                checkpoint()
            if a.max_steps and progress.step >= a.max_steps:
                stop_reason, done = f"--max-steps {a.max_steps}", True
            elif a.max_minutes and time.monotonic() - t_start > 60 * a.max_minutes:
                stop_reason, done = f"--max-minutes {a.max_minutes}", True
            if done:
                break
        bar.close()
        if not done:
            progress.epoch += 1
            progress.done_in_epoch = 0
            if main_proc:
                val = validate(model, val_loader, device, channels_last)
                if writer is not None:
                    writer.add_scalar("val/loss", val, progress.step)
                if not show_progress:
                    print(f"[train] epoch {progress.epoch}/{a.epochs} step {progress.step} loss {last.get('loss', float('nan')):.4f} "
                          f"val {val:.4f}", flush=True)
        checkpoint()
    elapsed = time.monotonic() - t_start
    summary = {"steps": progress.step, "epochs_done": progress.epoch, "stop": stop_reason, "seconds": round(elapsed, 1),
               "images_per_s": round(images_seen / max(elapsed, 1e-6), 2), "last": last, "data": data_info,
               "checkpoint": str(ckpt_dir)}
    if main_proc:
        (out_dir / "summary.json").write_text(json.dumps(summary, indent=2))
        print(f"[train] stopped ({stop_reason}) after {progress.step} steps in {elapsed:.0f} s; checkpoint in {ckpt_dir}", flush=True)
        if writer is not None:
            writer.close()
    if world > 1:
        import torch.distributed as dist

        dist.barrier()
        dist.destroy_process_group()
    return summary


def train_or_reuse(bag: Path, run: Path, steps: int, options: Sequence[str]) -> Path:
    """Train ``steps`` steps on ``bag`` into ``run`` unless a finished run of that length is there; an
    interrupted one is resumed. Returns the checkpoint folder. (The demo and the ablation cache runs so.)"""
    summary = run / "summary.json"
    if summary.is_file() and json.loads(summary.read_text()).get("steps") == steps:
        print(f"[train] reusing the finished run {run}", flush=True)
        return run / CHECKPOINT_DIR
    resume = ["--resume"] if (run / CHECKPOINT_DIR / "training_state.pt").is_file() else []
    train(parse_args([str(bag), "--out", str(run), "--max-steps", str(steps), *options, *resume]))
    return run / CHECKPOINT_DIR


def main(argv: Optional[Sequence[str]] = None) -> int:
    a = parse_args(argv)
    try:
        train(a)
    except (BagError, CheckpointError) as exc:
        print(f"ros2-monodepth-train: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""``ros2-monodepth-train``: self-supervised training of the depth and pose networks from ROS 2 bags.

Owns the command line and the loop: data (``dataset.py``), objective (``objective.py``), checkpoints
(``state.py``), precision (autocast bf16/fp16 + channels_last), the compiled loss (torch.compile of the
photometric error), DistributedDataParallel under ``torchrun`` (gloo on CPU, nccl on
CUDA), TensorBoard and the progress bar.

    ros2-monodepth-train BAG [BAG ...] --out runs/street --epochs 20
    torchrun --nproc_per_node 2 -m ros2_monodepth_training.train BAG --out runs/ddp
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
import os
import shutil
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from ros2_monodepth.core.bags import BagError
from ros2_monodepth.core.checkpoint import CheckpointError, CheckpointMetadata
from ros2_monodepth.core.fileio import OutputError, writable_output_dir
from ros2_monodepth.core.hardware import cpu_has_bf16
from ros2_monodepth.core.model_contract import format_size, size_for_aspect
from ros2_monodepth.core.networks import DepthNet, PoseNet

from .config import TrainConfig, parse_train_args
from .dataset import (Augmentation, DataSummary, IndexOptions, SampleOrder, TripletDataset, format_summary, index_frames,
                      make_triplets, split_by_time)
from .losses import photometric_error
from .objective import (ExplainabilityNet, LossConfig, LossOutput, ScaleConvergence, TripletBatch, prior_fade,
                        self_supervised_loss, velocity_ramp)
from .odometry_source import attach_travel
from .pose_prior import PRIOR_CACHE_FILE
from .verdict import LearningMonitor, format_verdict
from .state import (STATE_FILE, Progress, checkpoint_exists, init_from_checkpoint, init_from_resnet, load_training_checkpoint,
                    recover_checkpoint, save_training_checkpoint)

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

    def __init__(self, num_layers: int, cfg: LossConfig, translation_gain: float = 1.0, pose_downscale: int = 1,
                 pose_model: str = "separate"):
        super().__init__()
        self.cfg = cfg
        self.depth = DepthNet(num_layers)
        shared = self.depth.encoder if pose_model == "shared" else None
        self.pose = PoseNet(num_layers, translation_gain, pose_downscale, shared_encoder=shared) if cfg.monocular else None
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
            self.to(memory_format=torch.channels_last)  # type: ignore[call-overload]  # documented; not in the stub
        dtype, scaler = pick_precision(precision, device)
        self.autocast = torch.autocast(device.type, dtype=dtype) if dtype is not None else contextlib.nullcontext()
        compiled = want_compiled_loss(compile_loss, device)
        self.photometric = CompiledPhotometric() if compiled else None
        return dtype, scaler, compiled

    def optimizer(self, lr: float) -> torch.optim.Adam:
        """Adam over the trainable parameters, fused (all of Adam's arithmetic in one pass over each tensor):
        its step took 30 ms against 50 ms for the per-op form on the 2-core CPU (25 M parameters, 320x96)."""
        return torch.optim.Adam([p for p in self.parameters() if p.requires_grad], lr=lr, fused=True)

    def forward(self, batch: TripletBatch) -> LossOutput:
        return self_supervised_loss(self.depth, self.pose, batch, self.cfg, self.explain, self.autocast, self.photometric)


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0))) if torch.cuda.is_available() else torch.device("cpu")
    return torch.device(name)


def pick_precision(name: str, device: torch.device) -> Tuple[Optional[torch.dtype], Any]:
    """(autocast dtype or None for fp32, GradScaler or None)."""
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


class LearningRateSchedule:
    """The learning rate as a function of the run's progress, a fraction 0..1 of what ends it: the steps of
    ``--epochs`` (or ``--max-steps`` when that ends the run first), or the time of ``--max-minutes`` when that ends it
    first. So a run cut by steps or minutes still decays (the paper's step schedule: x0.1 at 15 of 20 epochs, i.e. at
    75 % of the run). The minutes count the run's training time over all its parts (resumes included).

    Stepped once per optimiser step; ``state_dict`` carries the training time so far for ``--resume``.
    """

    def __init__(self, opt: torch.optim.Optimizer, cfg: TrainConfig, steps_per_epoch: int):
        self.opt = opt
        self.kind, self.gamma = cfg.lr_schedule, cfg.lr_gamma
        self.drop_at = cfg.lr_step / max(1, cfg.epochs)       # fraction of the run between two drops
        self.lr_step, self.epochs = cfg.lr_step, cfg.epochs
        epoch_steps = max(1, cfg.epochs * steps_per_epoch)
        self.total_steps = min(epoch_steps, cfg.max_steps) if cfg.max_steps else epoch_steps
        self.total_seconds = 60.0 * cfg.max_minutes
        self.base = [float(g["lr"]) for g in opt.param_groups]
        self.seconds_before = 0.0                              # training time of earlier parts of this run
        self._t0 = time.monotonic()
        self.fraction = 0.0

    def seconds(self) -> float:
        return self.seconds_before + time.monotonic() - self._t0

    def progress(self, step: int) -> float:
        f = step / self.total_steps
        if self.total_seconds > 0:
            f = max(f, self.seconds() / self.total_seconds)
        return min(1.0, f)

    def factor(self, fraction: float) -> float:
        if self.kind == "step":
            return self.gamma ** math.floor(fraction / self.drop_at + 1e-9) if self.drop_at > 0 else 1.0
        if self.kind == "cosine":
            return 0.5 * (1 + math.cos(math.pi * fraction))
        return 1.0

    def step(self, step: int) -> None:
        self.fraction = self.progress(step)
        factor = self.factor(self.fraction)
        for group, base in zip(self.opt.param_groups, self.base):
            group["lr"] = base * factor

    def describe(self) -> Tuple[str, bool]:
        """One line for the log: where the learning rate drops in this run; and whether that looks like a mistake
        (more than three drops: ``--epochs 1000 --max-steps 600`` puts a drop every 9 steps, since the drops keep
        their share of the run; give ``--epochs`` the run's real length, or ``--lr-schedule constant``).

        >>> opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=2e-4)
        >>> LearningRateSchedule(opt, TrainConfig(bags=[], out="", epochs=20, lr_step=15, max_steps=600), 42).describe()
        ('learning rate 0.0002, x0.1 at step 450 (every 15 of 20 epochs, as a share of this 600-step run)', False)
        >>> LearningRateSchedule(opt, TrainConfig(bags=[], out="", epochs=1000, lr_step=15, max_steps=600), 42).describe()
        ('learning rate 0.0002, x0.1 at step 9, 18, 27, ... (66 drops) (every 15 of 1000 epochs, as a share of this 600-step run)', True)
        """
        base = f"learning rate {self.base[0]:g}"
        if self.kind != "step":
            return f"{base}, {self.kind} schedule", False
        drops: List[int] = []
        k = 1
        while self.drop_at > 0 and k * self.drop_at < 1 - 1e-9:
            drops.append(round(k * self.drop_at * self.total_steps))
            k += 1
        if not drops:
            return f"{base}, no drop in this run", False
        shown = ", ".join(str(d) for d in drops[:3]) + (f", ... ({len(drops)} drops)" if len(drops) > 3 else "")
        of_run = f"this {self.total_steps}-step run" + (f" or {self.total_seconds / 60:g} minutes" if self.total_seconds else "")
        return (f"{base}, x{self.gamma:g} at step {shown} (every {self.lr_step:g} of {self.epochs} epochs, as a share of "
                f"{of_run})"), len(drops) > 3

    def get_last_lr(self) -> List[float]:
        return [float(g["lr"]) for g in self.opt.param_groups]

    def state_dict(self) -> Dict[str, float]:
        return {"seconds": self.seconds(), "fraction": self.fraction}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        # a checkpoint of an earlier version holds a LambdaLR state (no training time): the steps carry the progress
        self.seconds_before = float(state.get("seconds", 0.0))
        self._t0 = time.monotonic()


def build_datasets(cfg: TrainConfig, progress: bool) -> Tuple[TripletDataset, TripletDataset, DataSummary]:
    opts = IndexOptions(topics=tuple(cfg.topics), camera_info_topics=tuple(cfg.camera_info_topics),
                        intrinsics=cfg.intrinsics, right_topic=cfg.right_topic if cfg.stereo else None,
                        right_camera_info_topic=cfg.right_camera_info_topic if cfg.stereo else None,
                        stride=cfg.stride, fps=cfg.fps, static_threshold=cfg.static_threshold)
    index = index_frames(cfg.bags, opts, progress=progress)
    odometry = cfg.odometry_source()
    odometry_notes = attach_travel(index, odometry) if odometry.enabled else {}
    triplets = make_triplets(index)
    train_t, val_t = split_by_time(index, triplets, cfg.val_fraction, cfg.val_range)
    rows = index.summary((train_t, val_t))
    if len(train_t) == 0:
        raise BagError("no training triplets (three consecutive frames of one segment of one sequence, outside the "
                       "validation range):\n" + format_summary(rows))
    size, why = network_size(cfg, index)
    train = TripletDataset(index, train_t, size, cfg.crop, Augmentation(enabled=cfg.augment), cfg.resize_filter,
                           pose_prior=cfg.prior_mode(), progress=progress,
                           prior_cache=Path(cfg.out) / PRIOR_CACHE_FILE)
    val = TripletDataset(index, val_t, size, cfg.crop, resize_filter=cfg.resize_filter)
    info = DataSummary(rows, len(train_t), len(val_t), size, why,
                       {index.sequences[k].name: plan.K.round(3).tolist() for k, plan in train.plans.items()},
                       pose_prior=train.prior_decision)
    if odometry.enabled:
        travel = median_travel(index, train_t)
        info = replace(info, odometry=odometry_notes, velocity_coverage=velocity_coverage(index, train_t),
                       odometry_source=odometry.describe(), median_travel=round(travel, 4))
    gain = cfg.pose_translation_gain if cfg.pose_translation_gain is not None else translation_gain_for(info.median_travel)
    return train, val, replace(info, translation_gain=gain)


AUTO_PIXELS = 320 * 96   # the network size picked for a camera has about this many pixels (Monodepth2's 640x192 / 4)


def network_size(cfg: TrainConfig, index: Any) -> Tuple[Tuple[int, int], str]:
    """(height, width) the networks are trained at, and why: --network-size, else about
    AUTO_PIXELS pixels at the first usable sequence's camera aspect (the node then sees the whole camera image)."""
    if cfg.network_size != (0, 0):
        return (int(cfg.network_size[0]), int(cfg.network_size[1])), "as given"
    first = next(seq for seq in index.sequences if not seq.unusable)
    size = size_for_aspect(first.size, AUTO_PIXELS)
    return size, (f"about {AUTO_PIXELS} pixels at the aspect ratio of {first.name} ({first.size[1]}x{first.size[0]}); "
                  "--network-size WxH sets it")


def velocity_coverage(index: Any, triplets: np.ndarray) -> float:
    """Fraction of the training triplets' frame pairs with a measured distance travelled."""
    pairs = known = 0
    for k, c in np.asarray(triplets).reshape(-1, 2):
        travel = index.sequences[int(k)].travel
        pairs += 2
        if travel is not None:
            known += int(np.isfinite(travel[c - 1])) + int(np.isfinite(travel[c]))
    return known / pairs if pairs else 0.0


def median_travel(index: Any, triplets: np.ndarray) -> float:
    """Median distance (m) the camera moved between the training triplets' frames, over the pairs where the odometry
    gives it; 0 when it gives none."""
    known: List[float] = []
    for k, c in np.asarray(triplets).reshape(-1, 2):
        travel = index.sequences[int(k)].travel
        if travel is not None:
            known.extend(float(t) for t in (travel[c - 1], travel[c]) if np.isfinite(t))
    return float(np.median(known)) if known else 0.0


# Metres a frame at which Monodepth2's pose output (x0.01) became metric under velocity supervision in about 120 steps
# (the synthetic street); a robot moving N times as far a frame gets a translation gain near N.
TRANSLATION_GAIN_REFERENCE = 0.1
TRANSLATION_GAIN_MAX = 64.0


def translation_gain_for(travel_per_frame: float) -> float:
    """The pose network's training translation gain for a robot that moves ``travel_per_frame`` metres between frames
    (the odometry's median): that over ``TRANSLATION_GAIN_REFERENCE``, as a power of two, at least 1 (the published
    network's own scale) and at most ``TRANSLATION_GAIN_MAX``.

    >>> [translation_gain_for(m) for m in (0.0, 0.05, 0.1, 0.2, 1.0, 1.2, 100.0)]
    [1.0, 1.0, 1.0, 2.0, 8.0, 16.0, 64.0]
    """
    if not np.isfinite(travel_per_frame) or travel_per_frame <= TRANSLATION_GAIN_REFERENCE:
        return 1.0
    return float(min(TRANSLATION_GAIN_MAX, 2.0 ** round(np.log2(travel_per_frame / TRANSLATION_GAIN_REFERENCE))))


def start_depth_further(depth_net: DepthNet, factor: float, min_depth: float, max_depth: float) -> float:
    """Shift the four disparity heads' biases so that untrained depth starts ``factor`` times further away (the
    translation gain's factor: a robot that moves N times as far a frame sees a deeper scene). The heads' sigmoid then
    starts where a fast robot's metric depth needs less travel; without it the full-resolution head, with 16 input
    channels the slowest to move, lagged 3.8x behind the metric translation after 240 steps at 1 m a frame. Returns
    the bias shift (0 for a factor of 1). Initialisation only: saved weights are ordinary weights.

    >>> net = DepthNet(18)
    >>> before = net.decoder.dispconv(0).conv.bias.detach().clone()
    >>> round(start_depth_further(net, 8.0, 0.1, 100.0), 2), start_depth_further(net, 1.0, 0.1, 100.0)
    (-2.72, 0.0)
    >>> from ros2_monodepth.core.geometry import disp_to_depth          # a zero pre-sigmoid output: 8x the depth
    >>> shifted = torch.sigmoid(net.decoder.dispconv(0).conv.bias.detach() - before)
    >>> round(float(disp_to_depth(shifted, 0.1, 100.0)[1] / disp_to_depth(torch.tensor([0.5]), 0.1, 100.0)[1]), 4)
    8.0
    """
    if factor == 1.0:
        return 0.0
    min_disp, max_disp = 1.0 / max_depth, 1.0 / min_depth
    start = 1.0 / (min_disp + 0.5 * (max_disp - min_disp))          # depth at sigmoid 0.5
    target = (1.0 / (factor * start) - min_disp) / (max_disp - min_disp)
    shift = float(np.log(target / (1.0 - target)))
    with torch.no_grad():
        for scale in range(4):
            bias = depth_net.decoder.dispconv(scale).conv.bias
            if bias is not None:
                bias += shift
    return shift


def scale_provenance(cfg: TrainConfig, data_info: DataSummary) -> Tuple[bool, str]:
    """(metric, how): whether the trained networks give metres as they are, and from what."""
    if cfg.stereo:
        return True, "stereo baseline from the right camera_info's P"
    coverage = data_info.velocity_coverage
    if coverage > 0:
        return True, (f"velocity supervision from {data_info.odometry_source} ({coverage:.0%} of the training frame "
                      f"pairs, weight {cfg.velocity_weight:g})")
    return False, ""


def checked_metadata(meta: CheckpointMetadata, scale_check: ScaleConvergence, stereo: bool,
                     monitor: Optional[LearningMonitor] = None) -> CheckpointMetadata:
    """``meta`` as it may be saved now: velocity supervision only calls the checkpoint metric once the pose network's
    translation has come to the odometry's (``ScaleConvergence``) and the full-resolution depth the node publishes
    has followed it (``LearningMonitor.depth_lags``); until then, or if it never does, it is relative and
    ``scale_source`` says why (the node's ``scale_mode: auto`` then takes another source of scale)."""
    if stereo or not meta.metric:
        return meta
    measured = (f"translation / odometry {scale_check.median():.3f} over the last {len(scale_check.ratios)} steps"
                if scale_check.ratios else "not started yet (--velocity-warmup)")
    if not scale_check.converged():
        return replace(meta, metric=False, scale_source=f"NOT metric: {meta.scale_source} has not converged ({measured})")
    if monitor is not None and monitor.depth_lags():
        return replace(meta, metric=False, scale_source=(
            f"NOT metric: {meta.scale_source} made the translation metric ({measured}), but the full-resolution depth "
            f"has not followed yet (its photometric loss {monitor.full_resolution_lag:.2f}x the coarser scales')"))
    return replace(meta, scale_source=f"{meta.scale_source}; {measured}")


@torch.no_grad()
def validate(model: TrainingModel, loader: DataLoader, device: torch.device, channels_last: bool) -> float:
    model.eval()
    losses = [float(model(TripletBatch.of(b).to(device, channels_last)).total) for b in loader]
    model.train()
    return float(np.mean(losses)) if losses else float("nan")


def _log_images(writer, out: LossOutput, batch: TripletBatch, step: int) -> None:
    from ros2_monodepth.core.colorize import colorize_depth

    img = batch.images[0, 1].float().cpu().numpy()
    disp = out.disp[0, 0].float().cpu().numpy() if out.disp is not None else None
    writer.add_image("input", img, step)
    if disp is not None:
        vis = colorize_depth(1.0 / np.maximum(disp, 1e-6))[..., ::-1].transpose(2, 0, 1).copy()
        writer.add_image("disparity", vis, step)
    if out.automask is not None:
        writer.add_image("automask", out.automask[0:1].float().cpu().numpy(), step)


class TrainingStopped(RuntimeError):
    """Training stopped before its end by something outside it (a data-loading worker lost); a checkpoint of the
    last step was saved and ``--resume`` continues."""


class StuckRun(RuntimeError):
    """The stuck check found a run that does not learn (``training.verdict``); ``train`` restarts it."""

    def __init__(self, step: int, reason: str):
        super().__init__(reason)
        self.step, self.reason = step, reason


def train(a: TrainConfig) -> Dict[str, Any]:
    """Run the loop described by the parsed options, restarting a stuck run from a new initialisation (at most
    ``a.stuck_restarts`` times, each with the next seed); returns a summary (also written to <out>/summary.json)."""
    restarts: List[str] = []
    while True:
        try:
            return _train_run(a, restarts)
        except StuckRun as stuck:
            restarts.append(f"seed {a.seed} stuck at step {stuck.step}: {stuck.reason}")
            seed = a.seed + STUCK_SEED_STEP
            print(f"[train] WARNING: stuck at step {stuck.step}: {stuck.reason}. Restarting from a new initialisation "
                  f"(--seed {seed}; restart {len(restarts)} of at most {a.stuck_restarts})", flush=True)
            a = replace(a, seed=seed, resume=False, overwrite=True)


STUCK_SEED_STEP = 1009   # seed offset of a restart (a prime: never another run's seed of a small sweep)


@dataclass
class TrainingRun:
    """One run, built by ``_build_run``: the process, the data, the networks and their optimisation state, what is
    saved with them, and where it is reported. ``_run_epochs`` trains it, ``_finish`` reports and saves."""

    a: TrainConfig
    world: int
    main_proc: bool
    device: torch.device
    out_dir: Path
    ckpt_dir: Path
    show_progress: bool
    data_info: DataSummary
    loss_cfg: LossConfig
    model: TrainingModel
    ddp_model: nn.Module
    opt: torch.optim.Optimizer
    sched: LearningRateSchedule
    scaler: Any
    progress: Progress
    sampler: SampleOrder
    loader: DataLoader
    val_loader: DataLoader
    meta: CheckpointMetadata
    config: Dict[str, Any]
    writer: Any = None
    scale_check: ScaleConvergence = field(default_factory=ScaleConvergence)
    monitor: LearningMonitor = field(default_factory=LearningMonitor)
    stuck_probe: Dict[str, Any] = field(default_factory=dict)
    check_stuck: bool = False
    last: Dict[str, float] = field(default_factory=dict)
    images_seen: int = 0
    stop_reason: str = "epochs done"

    def checkpoint(self) -> None:
        if self.main_proc:
            save_training_checkpoint(self.ckpt_dir, self.model.depth, self.model.pose,
                                     checked_metadata(self.meta, self.scale_check, self.a.stereo, self.monitor), self.opt, self.sched,
                                     self.scaler, self.progress, self.model.explain, self.config)


def _train_run(a: TrainConfig, restarts: List[str]) -> Dict[str, Any]:
    """One run of the loop (``train``): built, trained, reported."""
    run = _build_run(a, restarts)
    t_start = time.monotonic()
    try:
        _run_epochs(run)
    except StuckRun:
        if run.writer is not None:
            run.writer.close()
        raise
    return _finish(run, restarts, time.monotonic() - t_start)


def _start_process(a: TrainConfig) -> Tuple[int, int, torch.device]:
    """(world size, rank, device); the process group under torchrun."""
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
    return world, rank, device


def _build_run(a: TrainConfig, restarts: List[str]) -> TrainingRun:
    """Process, output folder, data, networks (initialised or resumed), optimiser, metadata, loaders, reporting."""
    world, rank, device = _start_process(a)
    main_proc = rank == 0
    out_dir = Path(a.out)
    ckpt_dir = out_dir / CHECKPOINT_DIR
    if main_proc:
        writable_output_dir(out_dir)     # before any work: one line naming the path and why
        repaired = recover_checkpoint(ckpt_dir)
        if repaired:
            print(f"[train] {ckpt_dir}: {repaired}", flush=True)
    if not a.resume and not a.overwrite and checkpoint_exists(ckpt_dir):
        raise CheckpointError(f"{ckpt_dir} holds the checkpoint of an earlier run: add --resume to continue it, or "
                              "--overwrite to train from scratch and replace it (or choose another --out)")
    torch.manual_seed(a.seed)
    train_ds, val_ds, data_info = build_datasets(a, main_proc and a.progress)
    a = replace(a, network_size=data_info.network_size)
    loss_cfg = a.loss_config(pose_prior_used=train_ds.prior_decision.used)
    model = TrainingModel(a.num_layers, loss_cfg, data_info.translation_gain, a.pose_downscale, a.pose_model)
    if a.init_resnet:
        msg = init_from_resnet(a.init_resnet, model.depth, model.pose)
    elif a.init_checkpoint:
        msg = init_from_checkpoint(Path(a.init_checkpoint), model.depth, model.pose)
    else:
        msg = "networks initialised at random (from scratch)"
    if not a.init_checkpoint and not a.resume and data_info.translation_gain != 1.0:
        shift = start_depth_further(model.depth, data_info.translation_gain, a.min_depth, a.max_depth)
        msg += (f"; depth starts {data_info.translation_gain:g}x further away with the translation gain (disparity "
                f"heads' bias {shift:+.2f})")
    dtype, scaler, compiled = model.prepare(device, a.precision, a.channels_last, a.compile_loss)

    sampler = SampleOrder(len(train_ds), a.seed, rank, world)
    steps_per_epoch = sampler.per_rank() // a.batch_size
    if steps_per_epoch == 0:
        raise BagError(f"{len(train_ds)} training triplets over {world} process(es) make no batch of {a.batch_size}")
    opt = model.optimizer(a.lr)
    sched = LearningRateSchedule(opt, a, steps_per_epoch)
    progress = Progress()
    if a.resume:
        progress = load_training_checkpoint(ckpt_dir, model.depth, model.pose, opt, sched, scaler, model.explain)
        msg = f"resumed from {ckpt_dir} at epoch {progress.epoch}, step {progress.step}"
    ddp_model: nn.Module = model
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel as DDP

        ddp_model = DDP(model, device_ids=[device.index] if device.type == "cuda" else None,
                        find_unused_parameters=set(loss_cfg.scales) != {0, 1, 2, 3})  # unused disparity heads

    metric, scale_source = scale_provenance(a, data_info)
    meta = CheckpointMetadata(num_layers=a.num_layers, network_size=a.network_size, use_stereo=a.stereo,
                              min_depth=a.min_depth, max_depth=a.max_depth, stereo_scale=1.0, has_pose=model.pose is not None,
                              metric=metric, scale_source=scale_source, crop=a.crop, resize_filter=a.resize_filter,
                              pose_downscale=a.pose_downscale, pose_model=a.pose_model, source="ros2_monodepth training", extra={"bags": [str(b) for b in a.bags]})
    loader_kw: Dict[str, Any] = dict(batch_size=a.batch_size, num_workers=a.workers, drop_last=True,
                                     pin_memory=device.type == "cuda")
    if a.workers > 0:
        # Workers live across epochs: starting them copies the frame index (the serialized frames) into each.
        # The sampler runs in this process, so its per-epoch position still applies.
        loader_kw.update(persistent_workers=True, prefetch_factor=4)
    run = TrainingRun(a, world, main_proc, device, out_dir, ckpt_dir, main_proc and a.progress, data_info, loss_cfg, model,
                      ddp_model, opt, sched, scaler, progress, sampler, DataLoader(train_ds, sampler=sampler, **loader_kw),
                      DataLoader(val_ds, batch_size=a.batch_size, num_workers=0), meta, a.to_json())
    run.check_stuck = (world == 1 and a.stuck_check_steps > 0 and len(restarts) < a.stuck_restarts
                       and model.pose is not None and progress.step < a.stuck_check_steps)
    if main_proc:
        _report_start(run, msg, dtype, compiled, steps_per_epoch)
    return run


def _report_start(run: TrainingRun, msg: str, dtype: Optional[torch.dtype], compiled: bool, steps_per_epoch: int) -> None:
    """config.json, what the run is about to do (console), and the TensorBoard writer."""
    a, info = run.a, run.data_info
    run.out_dir.mkdir(parents=True, exist_ok=True)
    (run.out_dir / "config.json").write_text(json.dumps(run.config, indent=2))
    print(f"[train] {msg}", flush=True)
    print(f"[train] network {format_size(a.network_size)} ({info.network_size_reason}), {a.crop} crop, "
          f"{a.resize_filter} resize: written into the checkpoint's metadata, which the node and evaluation follow",
          flush=True)
    used = sum(1 for r in info.sequences if "unusable" not in r)
    print(f"[train] data: {used} of {len(info.sequences)} sequence(s) used, {info.train_triplets} training and "
          f"{info.val_triplets} validation triplets\n" + format_summary(info.sequences), flush=True)
    if info.odometry is not None:
        print(f"[train] velocity supervision from {info.odometry_source}: "
              f"{info.velocity_coverage:.0%} of the training frame pairs covered\n" +
              "\n".join(f"  {name}: {note}" for name, note in (info.odometry or {}).items()), flush=True)
        print(f"[train] the camera moves {info.median_travel:.3g} m a frame (median): pose translation gain "
              f"{info.translation_gain:g} while training ({'as given' if a.pose_translation_gain is not None else 'auto'}; "
              "saved checkpoints have it folded into the weights)", flush=True)
        if not run.meta.metric:
            print("[train] WARNING: no training frame pair has odometry: the checkpoint will not be metric", flush=True)
    decision = run.data_info.pose_prior
    if decision is not None and decision.used:
        fade = (f"fading out over {a.pose_prior_steps} steps" if not a.pose_prior_floor else
                f"fading over {a.pose_prior_steps} steps to {a.pose_prior_floor:g} of it, kept there")
        print(f"[train] two-view pose prior (weight {a.pose_prior_weight:g}, {fade}): "
              f"{decision.known} of {decision.looked_at} training frame pairs have a geometric estimate (the others too "
              f"little parallax or texture; --pose-prior {decision.mode})", flush=True)
        if decision.known < 0.5 * decision.looked_at:
            print("[train] WARNING: the pose prior covers under half the frame pairs: the camera moves too little "
                  "between frames for two-view geometry (it helps on large motion, where runs get stuck)", flush=True)
    elif decision is not None and decision.mode != "off":
        print(f"[train] two-view pose prior not used ({decision.reason}); the photometric loss alone starts the pose "
              "network", flush=True)
    print(f"[train] {run.world} process(es) on {run.device}, precision {str(dtype).replace('torch.', '') if dtype else 'fp32'}, "
          f"channels_last {a.channels_last}, compiled loss {compiled}, batch {a.batch_size}/process, "
          f"{steps_per_epoch} steps/epoch", flush=True)
    schedule, suspicious = run.sched.describe()
    print(f"[train] {'WARNING: ' if suspicious else ''}{schedule}" + (
        ": the learning rate all but vanishes early; give --epochs the run's real length or use --lr-schedule "
        "constant" if suspicious else ""), flush=True)
    from torch.utils.tensorboard import SummaryWriter

    run.writer = SummaryWriter(str(run.out_dir / "tensorboard"), purge_step=run.progress.step or None)


def _train_step(run: TrainingRun, batch: TripletBatch) -> LossOutput:
    """One optimiser step on one batch (on the run's device); the step counted."""
    a, model = run.a, run.model
    step = run.progress.step + 1
    velocity_share = velocity_ramp(step, a.velocity_warmup) if run.loss_cfg.velocity > 0 else 1.0
    prior_share = prior_fade(step, a.pose_prior_steps, a.pose_prior_floor) if run.loss_cfg.pose_prior > 0 else 1.0
    if (velocity_share, prior_share) != (model.cfg.velocity_share, model.cfg.pose_prior_share):
        model.cfg = replace(run.loss_cfg, velocity_share=velocity_share, pose_prior_share=prior_share)
    out = run.ddp_model(batch)
    run.opt.zero_grad(set_to_none=True)
    if run.scaler is not None:
        run.scaler.scale(out.total).backward()
        run.scaler.step(run.opt)
        run.scaler.update()
    else:
        out.total.backward()
        run.opt.step()
    run.progress.step += 1
    run.sched.step(run.progress.step)
    run.progress.done_in_epoch += a.batch_size
    run.images_seen += batch.size * run.world
    if "translation_scale_ratio" in out.terms and velocity_share >= 1.0:
        run.scale_check.add(out.terms["translation_scale_ratio"])
    return out


def _after_step(run: TrainingRun, out: LossOutput, batch: TripletBatch, rate: float) -> bool:
    """Evidence, the stuck check, logging and checkpoints after a step; True when the run should stop."""
    a, step = run.a, run.progress.step
    run.last = out.terms
    run.monitor.add(step, run.last)
    if step == a.stuck_check_steps:
        # what the check saw is kept in the summary, restarts allowed or not (for the thresholds' sake)
        run.stuck_probe = {**run.monitor.evidence(), "stuck": run.monitor.stuck_reason()}
        if run.check_stuck and run.stuck_probe["stuck"]:
            raise StuckRun(step, run.stuck_probe["stuck"])
    if not math.isfinite(run.last["loss"]):
        raise FloatingPointError(f"loss is {run.last['loss']} at step {step}; the last checkpoint is kept")
    if run.writer is not None and step % a.log_every == 0:
        for k, v in run.last.items():
            run.writer.add_scalar(f"train/{k}", v, step)
        run.writer.add_scalar("train/lr", run.sched.get_last_lr()[0], step)
        run.writer.add_scalar("train/images_per_s", rate, step)
    if run.writer is not None and step % a.image_every == 0:
        _log_images(run.writer, out, batch, step)
    if step % a.checkpoint_every == 0:
        run.checkpoint()
    if a.max_steps and step >= a.max_steps:
        run.stop_reason = f"--max-steps {a.max_steps}"
    elif a.max_minutes and run.sched.seconds() > 60 * a.max_minutes:
        run.stop_reason = f"--max-minutes {a.max_minutes}"
    else:
        return False
    return True


def _is_lost_worker(exc: BaseException, fetching: bool) -> bool:
    """Whether ``exc`` means a data-loading worker died. torch says so in a RuntimeError, from the loader or from its
    SIGCHLD handler (which can raise in any line of the step); a worker killed while it hands a batch over breaks the
    shared-memory connection instead, seen as an OSError or EOFError while the next batch is fetched."""
    if isinstance(exc, RuntimeError):
        return "DataLoader worker" in str(exc)
    return fetching


def _close_after_lost_worker(batches: Any) -> None:
    """Reaps the dead worker and shuts the loader's others down, so that torch's SIGCHLD handler, which raises for
    every registered worker that died, has none left: otherwise the next child process that exits (a resumed run's
    workers, a subprocess) raises "DataLoader worker is killed" in whatever code runs then."""
    import multiprocessing

    multiprocessing.active_children()  # waits on exited children: their pids are then gone for the handler
    shutdown = getattr(batches, "_shutdown_workers", None)
    if shutdown is not None:
        shutdown()


@contextlib.contextmanager
def _worker_deaths_seen_at_fetch() -> Any:
    """While the epochs run, a data-loading worker's death is reported at one place: the next fetch.

    torch's DataLoader installs a SIGCHLD handler (with its first worker) that raises in whatever line the main thread
    runs when a worker dies: in the middle of an optimiser step, while a checkpoint is written, or while the loader's
    own error for the same death propagates. Inside this block that handler's error is dropped; the loader still finds
    the death itself, at the next fetch (its worker status check, or the broken hand-over of a batch), where the
    training loop saves a checkpoint and stops cleanly. Only in the main thread, and only when torch's handler is there.
    """
    import signal
    import threading

    sigchld = getattr(signal, "SIGCHLD", None)
    if sigchld is None or threading.current_thread() is not threading.main_thread():
        yield
        return
    torch_handler = signal.getsignal(sigchld)
    if not callable(torch_handler):
        yield
        return

    def report_at_fetch(signum: int, frame: Any) -> None:
        try:
            torch_handler(signum, frame)
        except RuntimeError as exc:
            if "DataLoader worker" not in str(exc):
                raise

    signal.signal(sigchld, report_at_fetch)
    try:
        yield
    finally:
        signal.signal(sigchld, torch_handler)


def _run_epochs(run: TrainingRun) -> None:
    """Epochs until the run's end (epochs, --max-steps, --max-minutes), with validation and a checkpoint after each."""
    from tqdm import tqdm

    a, progress = run.a, run.progress
    run.model.train()
    done = False
    while progress.epoch < a.epochs and not done:
        run.sampler.set_position(progress.epoch, progress.done_in_epoch)
        batches = iter(run.loader)
        bar = tqdm(total=len(run.sampler) // a.batch_size, desc=f"epoch {progress.epoch + 1}/{a.epochs}",
                   unit="step", disable=not run.show_progress, dynamic_ncols=True)
        t_rate, n_rate = time.monotonic(), 0
        with _worker_deaths_seen_at_fetch():
            fetching = True
            try:
                while True:
                    fetching = True
                    collated = next(batches, None)
                    fetching = False
                    if collated is None:
                        break
                    batch = TripletBatch.of(collated).to(run.device, a.channels_last)
                    out = _train_step(run, batch)
                    bar.update(1)
                    n_rate += batch.size * run.world
                    rate = n_rate / max(1e-6, time.monotonic() - t_rate)
                    bar.set_postfix(loss=f"{out.terms['loss']:.4f}", img_s=f"{rate:.1f}")
                    done = _after_step(run, out, batch, rate)
                    if done:
                        break
            except (RuntimeError, OSError, EOFError) as exc:
                if not _is_lost_worker(exc, fetching):
                    raise
                # a worker killed (out of memory, a signal): keep what was learned, say how to go on
                _close_after_lost_worker(batches)
                bar.close()
                run.checkpoint()
                raise TrainingStopped(
                    f"a data-loading worker stopped ({type(exc).__name__}: {exc}). The checkpoint of step {progress.step} is "
                    f"saved in {run.ckpt_dir}: run the same command with --resume to continue (with fewer --workers, or a "
                    f"smaller --batch-size, if memory ran out)") from None
        bar.close()
        if not done:
            progress.epoch += 1
            progress.done_in_epoch = 0
            if run.main_proc:
                val = validate(run.model, run.val_loader, run.device, a.channels_last)
                held_out = math.isfinite(val)      # NaN: no validation frames (--val-fraction 0)
                if run.writer is not None and held_out:
                    run.writer.add_scalar("val/loss", val, progress.step)
                if not run.show_progress:
                    print(f"[train] epoch {progress.epoch}/{a.epochs} step {progress.step} loss "
                          f"{run.last.get('loss', float('nan')):.4f} "
                          + (f"val {val:.4f}" if held_out else "(no validation frames)"), flush=True)
        run.checkpoint()


def _finish(run: TrainingRun, restarts: List[str], elapsed: float) -> Dict[str, Any]:
    """The summary (summary.json), the metric check and the verdict (console, TensorBoard, the checkpoint)."""
    progress = run.progress
    summary = {"steps": progress.step, "epochs_done": progress.epoch, "stop": run.stop_reason, "seconds": round(elapsed, 1),
               "images_per_s": round(run.images_seen / max(elapsed, 1e-6), 2), "last": run.last, "data": run.data_info.to_json(),
               "checkpoint": str(run.ckpt_dir)}
    if run.main_proc:
        print(f"[train] stopped ({run.stop_reason}) after {progress.step} steps in {elapsed:.0f} s; checkpoint in "
              f"{run.ckpt_dir}", flush=True)
        saved = checked_metadata(run.meta, run.scale_check, run.a.stereo, run.monitor)
        if run.meta.metric and not saved.metric:
            print(f"[train] WARNING: the checkpoint is {saved.scale_source}. Train longer, check "
                  "--odometry-topic / the camera mount, or run the node with another scale_mode", flush=True)
        summary["scale"] = {"metric": saved.metric, "source": saved.scale_source}
        prior = run.data_info.pose_prior
        verdict = run.monitor.verdict(run.data_info.static_frame_share, run.meta.metric, saved.metric, saved.scale_source,
                                      restarts, prior.to_json() if prior is not None else None)
        summary["verdict"] = verdict
        summary["stuck_check"] = run.stuck_probe
        print("[train] " + format_verdict(verdict).replace("\n", "\n[train] "), flush=True)
        # the verdict travels with the checkpoint: ros2-monodepth-eval prints it too
        run.meta.extra["verdict"] = verdict
        run.checkpoint()
        if run.writer is not None:
            run.writer.add_text("verdict", format_verdict(verdict).replace("\n", "  \n"), progress.step)
            run.writer.close()
        (run.out_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    if run.world > 1:
        import torch.distributed as dist

        dist.barrier()
        dist.destroy_process_group()
    return summary


def train_or_reuse(cfg: TrainConfig, steps: int) -> Path:
    """Train ``cfg`` for ``steps`` steps into ``cfg.out`` unless a finished run of that length is there; an
    interrupted one is resumed. Returns the checkpoint folder. (The demo and the ablation cache runs so.)"""
    run = Path(cfg.out)
    summary = run / "summary.json"
    if summary.is_file() and json.loads(summary.read_text()).get("steps") == steps:
        print(f"[train] reusing the finished run {run}", flush=True)
        return run / CHECKPOINT_DIR
    recover_checkpoint(run / CHECKPOINT_DIR)
    resume = (run / CHECKPOINT_DIR / STATE_FILE).is_file()   # never overwritten: train refuses a foreign checkpoint
    train(replace(cfg, max_steps=steps, resume=resume))
    return run / CHECKPOINT_DIR


def main(argv: Optional[Sequence[str]] = None) -> int:
    cfg = parse_train_args(argv)
    try:
        train(cfg)
    except (BagError, CheckpointError, OutputError) as exc:
        print(f"ros2-monodepth-train: error: {exc}", file=sys.stderr)
        return 2
    except TrainingStopped as exc:
        print(f"ros2-monodepth-train: stopped: {exc}", file=sys.stderr)
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The self-supervised objective of one batch: networks forward, view synthesis, Monodepth2 losses.

Owns how the pieces of ``losses.py`` and ``warp.py`` combine, with the paper's three contributions as
switches (``LossConfig``): per-pixel minimum, auto-masking, full-resolution multi-scale; plus SfMLearner's
explainability mask and stereo pairs as options.

Work done once per batch, not per scale: the pose transforms, the identity (unwarped) errors at full
resolution, the target's inverse intrinsics. Networks may run under autocast (bf16/fp16); the geometry and
the losses always run in float32, where sampling coordinates stay exact.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass, field, fields
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ros2_monodepth.core.geometry import disp_to_depth, pose_params_to_matrix
from ros2_monodepth.core.networks import DepthNet, PoseNet

from .losses import combine_reprojection, photometric_error, smoothness_loss, smoothness_weight
from .warp import warp_source_to_target

PhotometricFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass
class TripletBatch:
    """A batch of training triplets as the objective takes it: ``TripletDataset``'s samples, collated.

    >>> b = TripletBatch.of({"images": torch.zeros(2, 3, 3, 64, 64), "aug": torch.zeros(2, 3, 3, 64, 64),
    ...                      "K": torch.eye(3).expand(2, 3, 3), "sequence": torch.zeros(2)})
    >>> b.size, b.travel is None
    (2, True)
    """

    images: torch.Tensor                      # (B, 3, 3, H, W) frames t-1, t, t+1 in [0, 1], as the loss sees them
    aug: torch.Tensor                         # (B, 3, 3, H, W) the same after colour jitter (what the networks see)
    K: torch.Tensor                           # (B, 3, 3) at (H, W)
    travel: Optional[torch.Tensor] = None     # (B, 2) metres moved t-1 -> t and t -> t+1, NaN where unknown
    dt: Optional[torch.Tensor] = None         # (B, 2) seconds between those frames
    stereo: Optional[torch.Tensor] = None     # (B, 3, H, W) the right camera at t
    T_stereo: Optional[torch.Tensor] = None   # (B, 4, 4) right <- left camera
    prior: Optional[torch.Tensor] = None      # (B, 2, 4, 4) two-view T_prev_cur, T_next_cur (unit translation), NaN: none

    @classmethod
    def of(cls, collated: Dict[str, torch.Tensor]) -> "TripletBatch":
        """From the DataLoader's collated dict (entries the objective does not use, e.g. sequence, are left)."""
        names = [f.name for f in fields(cls)]
        missing = [n for n in ("images", "aug", "K") if n not in collated]
        if missing:
            raise KeyError(f"a triplet batch needs {', '.join(missing)}")
        return cls(**{n: collated[n] for n in names if n in collated})

    @property
    def size(self) -> int:
        return int(self.images.shape[0])

    def to(self, device: torch.device, channels_last: bool = False) -> "TripletBatch":
        def move(v: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
            if v is None:
                return None
            v = v.to(device, non_blocking=True)
            return v.contiguous(memory_format=torch.channels_last) if channels_last and v.dim() == 4 else v

        images, aug, K = (v.to(device, non_blocking=True) for v in (self.images, self.aug, self.K))
        return TripletBatch(images, aug, K, move(self.travel), move(self.dt), move(self.stereo), move(self.T_stereo),
                            move(self.prior))


@dataclass
class LossConfig:
    scales: Tuple[int, ...] = (0, 1, 2, 3)
    min_reprojection: bool = True       # per-pixel minimum over sources (off: mean)
    automask: bool = True               # identity-reprojection auto-masking
    full_res_multiscale: bool = True    # upsample each scale's disparity to the input size before warping
    smoothness: float = 1e-3
    explainability: float = 0.0         # > 0: SfMLearner explainability mask, this regulariser weight
    min_depth: float = 0.1
    max_depth: float = 100.0
    monocular: bool = True              # temporal sources t-1, t+1
    stereo: bool = False                # the right camera as a source (needs stereo batches)
    tie_break: str = "fixed"            # identity vs reprojection ties: 'fixed' bias or Monodepth2's 'noise'
    pose_batch: str = "joint"           # 'joint': both frame pairs in one pose call; 'separate': one call each
    pose_fp32: bool = False             # run the pose network outside autocast
    velocity: float = 0.0               # > 0: velocity supervision weight (batches carry "travel" and "dt")
    velocity_min_speed: float = 0.0     # m/s: pairs slower than this are not velocity-supervised
    velocity_share: float = 1.0         # share of ``velocity`` in force at this step (``velocity_ramp``)
    pose_prior: float = 0.0             # > 0: weight of the two-view pose prior (batches carry "prior")
    pose_prior_share: float = 1.0       # share of ``pose_prior`` in force at this step (it fades out: ``prior_fade``)


class ExplainabilityNet(nn.Module):
    """SfMLearner's explainability mask: per-source confidence in (0, 1) from the stacked frames.

    A small encoder-decoder used only in training (the runtime does not need it).
    Shapes: (B, 3 * F, H, W) -> (B, F - 1, H, W).
    """

    def __init__(self, frames: int = 3, width: int = 16):
        super().__init__()
        c = width

        def down(i: int, o: int) -> nn.Sequential:
            return nn.Sequential(nn.Conv2d(i, o, 3, 2, 1), nn.ReLU(inplace=True))

        self.down = nn.Sequential(down(3 * frames, c), down(c, 2 * c), down(2 * c, 4 * c))
        head = nn.Conv2d(2 * c, frames - 1, 3, 1, 1)
        nn.init.zeros_(head.weight)
        assert head.bias is not None
        nn.init.constant_(head.bias, 3.0)   # start near "everything explainable" (sigmoid(3) = 0.95)
        self.up = nn.Sequential(nn.Conv2d(4 * c, 2 * c, 3, 1, 1), nn.ReLU(inplace=True), head)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        logits = self.up(self.down(frames))
        logits = F.interpolate(logits, size=frames.shape[-2:], mode="bilinear", align_corners=False)
        return torch.sigmoid(logits)


@dataclass
class LossOutput:
    total: torch.Tensor
    terms: Dict[str, float] = field(default_factory=dict)
    disp: Optional[torch.Tensor] = None         # scale-0 disparity (B, 1, H, W), detached
    automask: Optional[torch.Tensor] = None     # scale-0 (B, H, W) bool


def predict_poses(pose_net: PoseNet, prev: torch.Tensor, cur: torch.Tensor, nxt: torch.Tensor, separate: bool = False
                  ) -> Dict[int, torch.Tensor]:
    """T_source_target for sources t-1 and t+1; pairs go to the network in temporal order.

    ``separate``: one call per pair (batch-norm statistics per pair, as Monodepth2) instead of one call on both
    (2B: half the kernel launches, and one forward per step under DDP).
    Shapes: three (B, 3, H, W) -> {-1: (B, 4, 4), 1: (B, 4, 4)}.
    """
    if separate:
        (aa_p, t_p), (aa_n, t_n) = pose_net(prev, cur), pose_net(cur, nxt)
        aa_p, t_p, aa_n, t_n = aa_p.float(), t_p.float(), aa_n.float(), t_n.float()
    else:
        axis_angle, translation = pose_net(torch.cat([prev, cur]), torch.cat([cur, nxt]))
        aa_p, aa_n = axis_angle.float().chunk(2)
        t_p, t_n = translation.float().chunk(2)
    return {-1: pose_params_to_matrix(aa_p, t_p, invert=True),   # (prev, cur) gives T_cur_prev; invert
            1: pose_params_to_matrix(aa_n, t_n)}                 # (cur, next) gives T_next_cur


def shared_depth_and_poses(depth_net: DepthNet, pose_net: PoseNet, prev: torch.Tensor, cur: torch.Tensor, nxt: torch.Tensor,
                           cfg: "LossConfig") -> Tuple[Dict[int, torch.Tensor], Dict[int, torch.Tensor]]:
    """Depth of the target and both poses from one pass of the depth encoder over (prev, cur, nxt) (batch-norm
    statistics over the three, as Monodepth2's shared model computes them).

    Shapes: three (B, 3, H, W) -> ({scale: (B, 1, H / 2**s, W / 2**s)}, {-1: (B, 4, 4), 1: (B, 4, 4)}).
    """
    maps = depth_net.encoder(torch.cat([prev, cur, nxt]))
    per_frame = [m.chunk(3) for m in maps]
    disps = depth_net.decoder([m[1] for m in per_frame], cfg.scales)
    last_prev, last_cur, last_nxt = (m.float() if cfg.pose_fp32 else m for m in per_frame[-1])
    with torch.autocast(cur.device.type, enabled=False) if cfg.pose_fp32 else contextlib.nullcontext():
        axis_angle, translation = pose_net.from_features(torch.cat([last_prev, last_cur]), torch.cat([last_cur, last_nxt]))
    aa_p, aa_n = axis_angle.float().chunk(2)
    t_p, t_n = translation.float().chunk(2)
    return disps, {-1: pose_params_to_matrix(aa_p, t_p, invert=True), 1: pose_params_to_matrix(aa_n, t_n)}


def velocity_loss(translation_norms: torch.Tensor, travel: torch.Tensor, dt: torch.Tensor, min_speed: float = 0.0
                  ) -> Tuple[torch.Tensor, torch.Tensor, int]:
    """PackNet-SfM's velocity supervision: L1 between the pose network's translation length and the distance the
    camera travelled (from the robot's odometry), over the frame pairs where that is known and the camera moved at
    least ``min_speed``. Returns (loss, per-pair ratio predicted / measured of those pairs, how many).

    Shapes: translation_norms, travel, dt (B, 2) -> (), (N,), int.

    >>> loss, ratio, n = velocity_loss(torch.tensor([[0.2, 0.1]]), torch.tensor([[0.1, float("nan")]]), torch.ones(1, 2))
    >>> round(float(loss), 3), n
    (0.1, 1)
    """
    valid = torch.isfinite(travel) & (dt > 0)
    if min_speed > 0:
        valid &= torch.nan_to_num(travel, nan=0.0) >= min_speed * dt
    n = int(valid.sum())
    if n == 0:
        return translation_norms.sum() * 0.0, translation_norms.new_zeros(0), 0   # keeps the graph for DDP
    pred, measured = translation_norms[valid], travel[valid]
    return (pred - measured).abs().mean(), (pred / measured.clamp_min(1e-6)).detach(), n


def velocity_ramp(step: int, warmup: int) -> float:
    """Share of the velocity loss's weight at training step ``step`` (counted from 1): none for the first ``warmup``
    steps, then a linear ramp to all of it over the next ``warmup`` steps.

    The default is no warm-up: from scratch on the synthetic streets, velocity supervision at full weight from the
    first step reached the odometry's length (translation / odometry 1.0) by about step 120 in every run made.
    An option, off by default.

    >>> [velocity_ramp(s, 100) for s in (1, 100, 150, 200, 5000)], velocity_ramp(1, 0)
    ([0.0, 0.0, 0.5, 1.0, 1.0], 1.0)
    """
    if warmup <= 0:
        return 1.0
    return min(1.0, max(0.0, (step - warmup) / warmup))


class ScaleConvergence:
    """Whether velocity supervision made the networks metric: the median of the last ``window`` batches'
    translation / odometry ratios (``translation_scale_ratio``) must lie within ``1/tolerance .. tolerance``.
    A checkpoint is only called metric when it does; otherwise the node would publish a wrong scale as metres.

    >>> c = ScaleConvergence(window=3)
    >>> c.add(0.02); c.add(0.03); c.converged(), round(c.median(), 3)
    (False, 0.025)
    >>> for r in (0.97, 1.02, 1.01): c.add(r)
    >>> c.converged()
    True
    """

    def __init__(self, window: int = 50, tolerance: float = 1.25):
        self.window, self.tolerance = window, tolerance
        self.ratios: List[float] = []

    def add(self, ratio: float) -> None:
        if math.isfinite(ratio) and ratio > 0:
            self.ratios = (self.ratios + [ratio])[-self.window:]

    def median(self) -> float:
        return float(np.median(self.ratios)) if self.ratios else float("nan")

    def converged(self) -> bool:
        m = self.median()
        return bool(self.ratios) and 1 / self.tolerance <= m <= self.tolerance


def _identity_errors(sources: List[torch.Tensor], target: torch.Tensor, photometric: PhotometricFn = photometric_error
                     ) -> torch.Tensor:
    return torch.cat([photometric(s, target) for s in sources], 1)


def reprojection_losses(disps: List[torch.Tensor], sources: List[torch.Tensor], transforms: List[torch.Tensor],
                         target: torch.Tensor, K: torch.Tensor, identity: Optional[torch.Tensor],
                         mask: Optional[torch.Tensor], cfg: LossConfig, photometric: PhotometricFn = photometric_error
                         ) -> Tuple[torch.Tensor, torch.Tensor]:
    """Per-pixel losses of ``n`` disparity maps of the target, every source warped by each, in one batched pass
    (one warp and one SSIM over n * S * B images instead of n * S small calls: the CPU's threads stay busy).

    Shapes: disps n x (B, 1, H, W); sources S x (B, C, H, W); transforms S x (B, 4, 4); target (B, C, H, W);
    K (B, 3, 3); identity (B, S, H, W) or None; mask (B, S_t, H, W) or None
    -> per_pixel (n, B, H, W), automask (n, B, H, W) bool.
    """
    n, b, n_src = len(disps), target.shape[0], len(sources)
    h, w = target.shape[-2:]
    _, depth = disp_to_depth(torch.cat(disps), cfg.min_depth, cfg.max_depth)               # (nB, 1, H, W)

    def per_disp(x: torch.Tensor) -> torch.Tensor:                                          # (B, ...) -> (nB, ...)
        return x.repeat(n, *([1] * (x.dim() - 1)))

    warped = warp_source_to_target(torch.cat([per_disp(src) for src in sources]), depth.repeat(n_src, 1, 1, 1),
                                   K.repeat(n * n_src, 1, 1), torch.cat([per_disp(T) for T in transforms]))
    errors = photometric(warped, target.repeat(n * n_src, 1, 1, 1))                         # (S nB, 1, H, W)
    reproj = errors.reshape(n_src, n * b, h, w).transpose(0, 1)                                # (nB, S, H, W)
    if mask is not None:
        # explainability weights the temporal sources only; the stereo source is rigid
        n_t = mask.shape[1]
        reproj = torch.cat([reproj[:, :n_t] * per_disp(mask), reproj[:, n_t:]], 1)
    per_pixel, automask = combine_reprojection(reproj, per_disp(identity) if identity is not None else None,
                                               per_pixel_min=cfg.min_reprojection, tie_break=cfg.tie_break)
    return per_pixel.reshape(n, b, h, w), automask.reshape(n, b, h, w)


def self_supervised_loss(depth_net: DepthNet, pose_net: Optional[PoseNet], batch: TripletBatch, cfg: LossConfig,
                         explain_net: Optional[ExplainabilityNet] = None, autocast: Optional[contextlib.AbstractContextManager] = None,
                         photometric: Optional[PhotometricFn] = None) -> LossOutput:
    """Monodepth2's loss of one batch.

    ``photometric`` replaces ``losses.photometric_error`` (the same function compiled: ``train.CompiledPhotometric``).
    """
    photometric = photometric or photometric_error
    autocast = autocast or contextlib.nullcontext()
    images, aug, K = batch.images, batch.aug, batch.K
    prev, target, nxt = images[:, 0], images[:, 1], images[:, 2]
    h, w = target.shape[-2:]
    sources: List[torch.Tensor] = []
    transforms: List[torch.Tensor] = []
    with autocast:
        if cfg.monocular and pose_net is not None and pose_net.shared:
            # the shared pose model (Monodepth2's "shared"): one encoder pass over the three frames; depth decodes
            # the target's maps, the pose decoder takes the last map of each pair's frames
            disps, poses = shared_depth_and_poses(depth_net, pose_net, aug[:, 0], aug[:, 1], aug[:, 2], cfg)
        else:
            disps = depth_net(aug[:, 1], cfg.scales)
        if cfg.monocular and not (pose_net is not None and pose_net.shared):
            assert pose_net is not None, "monocular training needs the pose network"
            with torch.autocast(aug.device.type, enabled=False) if cfg.pose_fp32 else contextlib.nullcontext():
                poses = predict_poses(pose_net, aug[:, 0], aug[:, 1], aug[:, 2], separate=cfg.pose_batch == "separate")
        mask = explain_net(aug.flatten(1, 2)) if explain_net is not None and cfg.monocular else None
    if cfg.monocular:
        sources += [prev, nxt]
        transforms += [poses[-1], poses[1]]
    if cfg.stereo:
        if batch.stereo is None or batch.T_stereo is None:
            raise ValueError("LossConfig.stereo needs batches with stereo and T_stereo (a sequence with a right camera)")
        sources.append(batch.stereo)
        transforms.append(batch.T_stereo)
    if not sources:
        raise ValueError("LossConfig has neither monocular nor stereo sources")
    mask = mask.float() if mask is not None else None
    identity_full = _identity_errors(sources, target, photometric) if cfg.automask else None
    disps_f = [disps[s].float() for s in cfg.scales]
    out = LossOutput(target.new_zeros(()))
    terms: Dict[str, float] = {}
    total = target.new_zeros(())
    for i, (s, (per_pixel, automask, tgt, m)) in enumerate(zip(cfg.scales, _per_scale_reprojection(
            disps_f, sources, transforms, target, K, identity_full, mask, cfg, photometric))):
        disp = disps_f[i]
        loss = per_pixel.mean()
        if m is not None:
            loss = loss + cfg.explainability * F.binary_cross_entropy(m, torch.ones_like(m))
        # smoothness compares the disparity with the image at the disparity's own resolution
        image_s = tgt if tgt.shape[-2:] == disp.shape[-2:] else F.interpolate(target, size=disp.shape[-2:], mode="area")
        loss = loss + smoothness_weight(s, cfg.smoothness) * smoothness_loss(disp, image_s)
        total = total + loss
        terms[f"loss/scale{s}"] = float(loss.detach())
        if s == 0:
            out.disp, out.automask = disp.detach(), automask.detach()
            terms["automask_fraction"] = float(automask.float().mean())
            terms["photometric"] = float(per_pixel.detach().mean())
    out.total = total / len(cfg.scales)
    if cfg.velocity > 0 and cfg.monocular and batch.travel is not None and batch.dt is not None:
        out.total = out.total + _velocity_term(poses, batch.travel, batch.dt, cfg, terms)
    if cfg.pose_prior > 0 and cfg.monocular and batch.prior is not None:
        out.total = out.total + _pose_prior_term(poses, batch.prior, cfg, terms)
    terms["loss"] = float(out.total.detach())
    terms.update(_verdict_evidence(identity_full, sources, target, poses if cfg.monocular else None))
    if mask is not None:
        terms["explainability_mean"] = float(mask.detach().mean())
    out.terms = terms
    return out


def _per_scale_reprojection(disps: List[torch.Tensor], sources: List[torch.Tensor], transforms: List[torch.Tensor],
                            target: torch.Tensor, K: torch.Tensor, identity_full: Optional[torch.Tensor],
                            mask: Optional[torch.Tensor], cfg: LossConfig, photometric: PhotometricFn
                            ) -> List[Tuple[torch.Tensor, torch.Tensor, torch.Tensor, Optional[torch.Tensor]]]:
    """Per scale: (per-pixel reprojection loss, automask, the target it was compared with, the mask at that size)."""
    h, w = target.shape[-2:]
    if cfg.full_res_multiscale:
        # Every scale is compared at the input size: one batched pass over all scales and sources.
        full = [F.interpolate(d, size=(h, w), mode="bilinear", align_corners=False) if d.shape[-2:] != (h, w) else d
                for d in disps]
        per_pixel_all, automask_all = reprojection_losses(full, sources, transforms, target, K, identity_full, mask,
                                                         cfg, photometric)
        return [(pp, am, target, mask) for pp, am in zip(per_pixel_all, automask_all)]
    out = []
    for disp in disps:
        if disp.shape[-2:] == (h, w):
            pp, am = reprojection_losses([disp], sources, transforms, target, K, identity_full, mask, cfg, photometric)
            out.append((pp[0], am[0], target, mask))
            continue
        # the original multi-scale: compare at the disparity's own resolution
        hs, ws = disp.shape[-2:]
        down = lambda x: F.interpolate(x, size=(hs, ws), mode="area")  # noqa: E731
        tgt, srcs = down(target), [down(x) for x in sources]
        Ks = K.clone()
        Ks[:, 0] *= ws / w
        Ks[:, 1] *= hs / h
        identity = _identity_errors(srcs, tgt, photometric) if cfg.automask else None
        m = down(mask) if mask is not None else None
        pp, am = reprojection_losses([disp], srcs, transforms, tgt, Ks, identity, m, cfg, photometric)
        out.append((pp[0], am[0], tgt, m))
    return out


def _velocity_term(poses: Dict[int, torch.Tensor], travel: torch.Tensor, dt: torch.Tensor, cfg: LossConfig,
                   terms: Dict[str, float]) -> torch.Tensor:
    """The weighted velocity-supervision loss; its figures go into ``terms``."""
    # |t| of T_cur_prev and T_next_cur: the distance travelled t-1 -> t and t -> t+1
    norms = torch.stack([poses[-1][:, :3, 3].norm(dim=1), poses[1][:, :3, 3].norm(dim=1)], 1)
    velocity, ratios, n_supervised = velocity_loss(norms, travel.float(), dt.float(), cfg.velocity_min_speed)
    terms["velocity"] = float(velocity.detach())
    terms["velocity_pairs"] = float(n_supervised)
    if n_supervised:
        # how metric the pose network is: 1.0 when its translation is in metres
        terms["translation_scale_ratio"] = float(ratios.median())
    return cfg.velocity * cfg.velocity_share * velocity


def pose_prior_loss(poses: torch.Tensor, prior: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """How far the pose network's transforms are from the two-view geometry's: rotation (squared Frobenius distance,
    about 2 theta^2 for a small angle theta) plus translation direction (1 - cos of the angle between them, about
    phi^2 / 2), over the pairs the geometry could say something about (the rest are NaN). The prior's translation
    has unit length; the network's length is left to the photometric loss (and velocity supervision).
    Returns (loss, angle between the directions in degrees per pair used, how many pairs).

    Shapes: poses, prior (N, 4, 4) -> (), (M,), ().

    >>> T = torch.eye(4).expand(3, 4, 4).clone(); T[:, 2, 3] = 2.0            # forward, 2 m
    >>> prior = T.clone(); prior[:, 2, 3] = 1.0; prior[2] = float("nan")      # forward; one pair unknown
    >>> loss, angles, n = pose_prior_loss(T, prior)
    >>> round(float(loss), 6), angles.tolist(), int(n)
    (0.0, [0.0, 0.0], 2)
    >>> sideways = T.clone(); sideways[:, :3, 3] = torch.tensor([2.0, 0.0, 0.0])
    >>> round(float(pose_prior_loss(sideways, prior)[0]), 3)                  # 90 degrees off: 1 - cos = 1
    1.0
    """
    valid = torch.isfinite(prior.flatten(1)).all(dim=1)
    n = valid.sum()
    if not bool(n):
        return poses.new_zeros(()), poses.new_zeros(0), n
    p, q = poses[valid].float(), prior[valid].float()
    rotation = (p[:, :3, :3] - q[:, :3, :3]).square().sum(dim=(1, 2))
    t = p[:, :3, 3]
    cos = (t * q[:, :3, 3]).sum(dim=1) / t.norm(dim=1).clamp_min(1e-6)
    angles = torch.rad2deg(torch.acos(cos.detach().clamp(-1.0, 1.0)))
    return (rotation + (1.0 - cos)).mean(), angles, n


def _pose_prior_term(poses: Dict[int, torch.Tensor], prior: torch.Tensor, cfg: LossConfig,
                     terms: Dict[str, float]) -> torch.Tensor:
    """The weighted two-view pose prior; its figures go into ``terms``."""
    loss, angles, n = pose_prior_loss(torch.cat([poses[-1], poses[1]]), torch.cat([prior[:, 0], prior[:, 1]]))
    terms["pose_prior"] = float(loss.detach())
    terms["pose_prior_pairs"] = float(n)
    if angles.numel():
        terms["pose_prior_direction_deg"] = float(angles.median())
    return cfg.pose_prior * cfg.pose_prior_share * loss


def prior_fade(step: int, steps: int, floor: float = 0.0) -> float:
    """The share of the pose prior in force at ``step`` (1-based): 1 at the start, falling linearly to ``floor`` at
    ``steps`` and staying there; with ``floor`` 0 the photometric loss decides alone after the fade.

    >>> [prior_fade(s, 4) for s in (1, 2, 4, 9)]
    [1.0, 0.75, 0.25, 0.0]
    >>> [prior_fade(s, 4, floor=0.2) for s in (1, 3, 5, 90)]
    [1.0, 0.6, 0.2, 0.2]
    """
    if steps <= 0:
        return floor
    return max(floor, 1.0 - (1.0 - floor) * (step - 1) / steps)


@torch.no_grad()
def _verdict_evidence(identity_full: Optional[torch.Tensor], sources: List[torch.Tensor], target: torch.Tensor,
                      poses: Optional[Dict[int, torch.Tensor]]) -> Dict[str, float]:
    """Evidence for the end-of-run verdict (training.verdict): the error of not moving at all, how much the frames'
    brightness changes, and where the pose network says the camera went (no gradients)."""
    terms: Dict[str, float] = {}
    if identity_full is not None:
        terms["identity_photometric"] = float(identity_full.float().min(dim=1).values.mean())
    terms["brightness_change"] = float(torch.stack([(s_.float().mean(dim=(1, 2, 3)) - target.float().mean(dim=(1, 2, 3))).abs()
                                                    for s_ in sources[:2]]).mean())
    if poses is not None:
        t = torch.cat([poses[-1][:, :3, 3], poses[1][:, :3, 3]]).float()
        share = t.abs() / t.abs().sum(dim=1, keepdim=True).clamp_min(1e-12)
        terms["translation_share_x"], terms["translation_share_y"], terms["translation_share_z"] = (
            float(v) for v in share.mean(0))
        terms["translation_norm"] = float(t.norm(dim=1).mean())
    return terms

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
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from ros2_monodepth.core.geometry import disp_to_depth, pose_params_to_matrix
from ros2_monodepth.core.networks import DepthNet, PoseNet

from .losses import combine_reprojection, photometric_error, smoothness_loss, smoothness_weight
from .warp import warp_source_to_target


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
        self.up = nn.Sequential(nn.Conv2d(4 * c, 2 * c, 3, 1, 1), nn.ReLU(inplace=True), nn.Conv2d(2 * c, frames - 1, 3, 1, 1))
        nn.init.zeros_(self.up[-1].weight)
        nn.init.constant_(self.up[-1].bias, 3.0)   # start near "everything explainable" (sigmoid(3) = 0.95)

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


def predict_poses(pose_net: PoseNet, prev: torch.Tensor, cur: torch.Tensor, nxt: torch.Tensor) -> Dict[int, torch.Tensor]:
    """T_source_target for sources t-1 and t+1; pairs go to the network in temporal order.

    Shapes: three (B, 3, H, W) -> {-1: (B, 4, 4), 1: (B, 4, 4)}.
    """
    # One call on both pairs (2B): half the kernel launches, and one forward per step under DDP.
    axis_angle, translation = pose_net(torch.cat([prev, cur]), torch.cat([cur, nxt]))
    aa_p, aa_n = axis_angle.float().chunk(2)
    t_p, t_n = translation.float().chunk(2)
    return {-1: pose_params_to_matrix(aa_p, t_p, invert=True),   # (prev, cur) gives T_cur_prev; invert
            1: pose_params_to_matrix(aa_n, t_n)}                 # (cur, next) gives T_next_cur


def _identity_errors(sources: List[torch.Tensor], target: torch.Tensor) -> torch.Tensor:
    return torch.cat([photometric_error(s, target) for s in sources], 1)


def self_supervised_loss(depth_net: DepthNet, pose_net: Optional[PoseNet], batch: Dict[str, torch.Tensor], cfg: LossConfig,
                         explain_net: Optional[ExplainabilityNet] = None, autocast: Optional[contextlib.AbstractContextManager] = None
                         ) -> LossOutput:
    """Monodepth2's loss of one batch (see ``TripletDataset`` for the batch layout)."""
    autocast = autocast or contextlib.nullcontext()
    images, aug, K = batch["images"], batch["aug"], batch["K"]
    prev, target, nxt = images[:, 0], images[:, 1], images[:, 2]
    b, _, h, w = target.shape
    sources: List[torch.Tensor] = []
    transforms: List[torch.Tensor] = []
    with autocast:
        disps = depth_net(aug[:, 1], cfg.scales)
        if cfg.monocular:
            assert pose_net is not None, "monocular training needs the pose network"
            poses = predict_poses(pose_net, aug[:, 0], aug[:, 1], aug[:, 2])
        mask = explain_net(aug.flatten(1, 2)) if explain_net is not None and cfg.monocular else None
    if cfg.monocular:
        sources += [prev, nxt]
        transforms += [poses[-1], poses[1]]
    if cfg.stereo:
        sources.append(batch["stereo"])
        transforms.append(batch["T_stereo"])
    if not sources:
        raise ValueError("LossConfig has neither monocular nor stereo sources")
    mask = mask.float() if mask is not None else None

    identity_full = _identity_errors(sources, target) if cfg.automask else None
    total = target.new_zeros(())
    terms: Dict[str, float] = {}
    out = LossOutput(total)
    for s in cfg.scales:
        disp = disps[s].float()
        if cfg.full_res_multiscale or s == 0:
            disp_w = F.interpolate(disp, size=(h, w), mode="bilinear", align_corners=False) if disp.shape[-2:] != (h, w) else disp
            tgt, srcs, Ks, identity, m = target, sources, K, identity_full, mask
        else:   # the original multi-scale: compare at the disparity's own resolution
            hs, ws = disp.shape[-2:]
            disp_w = disp
            down = lambda x: F.interpolate(x, size=(hs, ws), mode="area")  # noqa: E731
            tgt, srcs = down(target), [down(x) for x in sources]
            Ks = K.clone()
            Ks[:, 0] *= ws / w
            Ks[:, 1] *= hs / h
            identity = _identity_errors(srcs, tgt) if cfg.automask else None
            m = down(mask) if mask is not None else None
        _, depth = disp_to_depth(disp_w, cfg.min_depth, cfg.max_depth)
        reproj = torch.cat([photometric_error(warp_source_to_target(src, depth, Ks, T), tgt) for src, T in zip(srcs, transforms)], 1)
        if m is not None:
            # explainability weights the temporal sources only; the stereo source is rigid
            n_t = m.shape[1]
            reproj = torch.cat([reproj[:, :n_t] * m, reproj[:, n_t:]], 1)
        per_pixel, automask = combine_reprojection(reproj, identity, per_pixel_min=cfg.min_reprojection)
        loss = per_pixel.mean()
        if m is not None:
            loss = loss + cfg.explainability * F.binary_cross_entropy(m, torch.ones_like(m))
        # smoothness compares the disparity with the image at the disparity's own resolution
        image_s = tgt if tgt.shape[-2:] == disp.shape[-2:] else F.interpolate(target, size=disp.shape[-2:], mode="area")
        smooth = smoothness_loss(disp, image_s)
        loss = loss + smoothness_weight(s, cfg.smoothness) * smooth
        total = total + loss
        terms[f"loss/scale{s}"] = float(loss.detach())
        if s == 0:
            out.disp, out.automask = disp.detach(), automask.detach()
            terms["automask_fraction"] = float(automask.float().mean())
            terms["photometric"] = float(per_pixel.detach().mean())
    out.total = total / len(cfg.scales)
    terms["loss"] = float(out.total.detach())
    if mask is not None:
        terms["explainability_mean"] = float(mask.detach().mean())
    out.terms = terms
    return out

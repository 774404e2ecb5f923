"""View synthesis: sample a source frame at the pixels where the target's points land in it."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ros2_monodepth.core.geometry import backproject, project


def warp_source_to_target(source: torch.Tensor, target_depth: torch.Tensor, K: torch.Tensor, T_source_target: torch.Tensor
                          ) -> torch.Tensor:
    """Reconstruct the target view from ``source``.

    ``T_source_target`` carries points from the target camera into the source camera (for the pair fed to
    the pose network in temporal order, this is its non-inverted output when the source comes later).
    Shapes: source (B, C, H, W), target_depth (B, 1, H, W), K (B, 3, 3), T (B, 4, 4) -> (B, C, H, W).
    Pixels that project outside the source are filled by border replication (padding_mode='border').
    """
    b, _, h, w = target_depth.shape
    points = backproject(target_depth, torch.linalg.inv(K))
    uv = project(points, K, T_source_target)  # (B, 2, H*W)
    grid = uv.reshape(b, 2, h, w).permute(0, 2, 3, 1)
    # pixel coordinates -> [-1, 1] with align_corners=False (pixel centres at (i + 0.5) / size)
    scale = torch.tensor([2.0 / w, 2.0 / h], device=grid.device, dtype=grid.dtype)
    grid = (grid + 0.5) * scale - 1.0
    return F.grid_sample(source, grid, mode="bilinear", padding_mode="border", align_corners=False)

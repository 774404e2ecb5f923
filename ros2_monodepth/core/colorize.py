"""False-colour depth for people: near = bright/warm, far = dark (inverse depth, robust range).

The node colours every depth frame on its publisher thread, beside the pose network on a 2-core CPU, so this
is kept to about half a millisecond at 640x192 (it took 3.8 ms, 2 of them in a percentile over every pixel).
"""

from __future__ import annotations

import math

import cv2
import numpy as np

# The colour range is taken from a regular grid of about this many pixels: the 1st and 95th percentiles of a
# dense depth map hardly move between a few thousand pixels and all of them (a colour level at most, tested).
RANGE_SAMPLES = 4096


def inverse_depth_levels(depth: np.ndarray, low_pct: float = 1.0, high_pct: float = 95.0) -> tuple:
    """Depth (H, W) float -> ((H, W) uint8 levels of inverse depth, 0 at the ``low_pct`` percentile and 255 at
    ``high_pct``; (H, W) bool valid mask). Invalid pixels (NaN, inf, <= 0) get level 0."""
    depth = np.asarray(depth, np.float32)
    valid = np.isfinite(depth) & (depth > 0)
    if not valid.any():
        return np.zeros(depth.shape, np.uint8), valid
    inv = np.zeros(depth.shape, np.float32)
    np.divide(np.float32(1.0), depth, out=inv, where=valid)
    step = max(1, int(math.sqrt(depth.size / RANGE_SAMPLES)))
    sample = inv[::step, ::step][valid[::step, ::step]]
    if sample.size < 16:   # few valid pixels on the grid: take them all
        sample = inv[valid]
    lo, hi = np.percentile(sample, [low_pct, high_pct])
    levels = np.subtract(inv, np.float32(lo))
    levels *= np.float32(255.0 / max(hi - lo, 1e-9))
    np.clip(levels, 0.0, 255.0, out=levels)   # invalid pixels (inv 0, below lo > 0) clip to level 0
    return levels.astype(np.uint8), valid


def colorize_depth(depth: np.ndarray, colormap: int = cv2.COLORMAP_MAGMA, low_pct: float = 1.0,
                   high_pct: float = 95.0) -> np.ndarray:
    """Depth (H, W) float -> (H, W, 3) uint8 BGR; invalid (NaN, inf, <= 0) pixels are black.

    Colours follow inverse depth between two percentiles, as Monodepth2's figures do, so a few far or
    near outliers do not wash out the picture.
    """
    levels, valid = inverse_depth_levels(depth, low_pct, high_pct)
    out = cv2.applyColorMap(levels, colormap)
    if not valid.all():
        out[~valid] = 0
    return out

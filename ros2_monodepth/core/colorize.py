"""False-colour depth for people: near = bright/warm, far = dark (inverse depth, robust range)."""

from __future__ import annotations

import cv2
import numpy as np


def colorize_depth(depth: np.ndarray, colormap: int = cv2.COLORMAP_MAGMA, low_pct: float = 1.0,
                   high_pct: float = 95.0) -> np.ndarray:
    """Depth (H, W) float -> (H, W, 3) uint8 BGR; invalid (NaN, inf, <= 0) pixels are black.

    Colours follow inverse depth between two percentiles, as Monodepth2's figures do, so a few far or
    near outliers do not wash out the picture.
    """
    valid = np.isfinite(depth) & (depth > 0)
    out = np.zeros(depth.shape + (3,), np.uint8)
    if not valid.any():
        return out
    inv = np.zeros(depth.shape, np.float32)
    np.divide(1.0, depth, out=inv, where=valid)
    lo, hi = np.percentile(inv[valid], [low_pct, high_pct])
    scaled = np.clip((inv - lo) / max(hi - lo, 1e-9), 0.0, 1.0)
    out = cv2.applyColorMap((scaled * 255).astype(np.uint8), colormap)
    out[~valid] = 0
    return out

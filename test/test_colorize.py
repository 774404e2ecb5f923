"""False-colour depth: what a person sees in RViz (near bright, invalid black, outliers ignored), and that the
fast colour range (percentiles on a pixel grid) gives the levels the percentiles of every pixel give."""

from __future__ import annotations

import cv2
import numpy as np

from ros2_monodepth.core.colorize import colorize_depth, inverse_depth_levels
from ros2_monodepth.core.synthetic import SceneConfig, SyntheticSequence, TrajectoryConfig


def _brightness(bgr: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY).astype(np.float32)


def test_near_is_bright_far_is_dark_and_invalid_is_black():
    depth = np.tile(np.linspace(1.0, 50.0, 200, dtype=np.float32), (40, 1))   # near on the left
    depth[0, :4] = [np.nan, np.inf, 0.0, -3.0]
    out = colorize_depth(depth)
    assert out.shape == (40, 200, 3) and out.dtype == np.uint8
    assert (out[0, :4] == 0).all()
    row = _brightness(out)[20]
    assert row[5] > row[100] > row[195]
    assert (colorize_depth(np.full((8, 8), np.nan, np.float32)) == 0).all()


def test_a_few_outliers_do_not_wash_out_the_picture():
    # inverse depth evenly spread from 1/30 to 1/2 m^-1 (every colour level used), then 0.1 % of impossible near points
    depth = 1.0 / np.tile(np.linspace(1 / 30, 1 / 2, 320, dtype=np.float32), (96, 1))
    spiked = depth.copy()
    rows, cols = np.random.default_rng(0).integers(0, 96, 31), np.random.default_rng(1).integers(0, 320, 31)
    spiked[rows, cols] = 0.01
    plain, spikes = inverse_depth_levels(depth)[0], inverse_depth_levels(spiked)[0]
    keep = np.ones(depth.shape, bool)
    keep[rows, cols] = False
    assert np.abs(plain[keep].astype(int) - spikes[keep].astype(int)).max() <= 3
    assert (spikes[~keep] == 255).all()
    assert plain.max() == 255 and plain.min() == 0


def _levels_from_every_pixel(depth: np.ndarray) -> np.ndarray:
    valid = np.isfinite(depth) & (depth > 0)
    inv = np.where(valid, 1.0 / np.where(valid, depth, 1.0), 0.0)
    lo, hi = np.percentile(inv[valid], [1.0, 95.0])
    return (np.clip((inv - lo) / (hi - lo), 0.0, 1.0) * 255).astype(np.uint8)


def test_the_range_from_a_pixel_grid_matches_every_pixel_within_a_level():
    seq = SyntheticSequence(SceneConfig(seed=5, moving_object=True), TrajectoryConfig(num_frames=3), 640, 192)
    for i in range(3):
        depth = seq.frame(i)[2].astype(np.float32)
        fast, valid = inverse_depth_levels(depth)
        reference = _levels_from_every_pixel(depth)
        diff = np.abs(fast.astype(int) - reference.astype(int))[valid]
        assert diff.max() <= 2 and diff.mean() < 1.0

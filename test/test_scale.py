"""Metric scale without ROS: which mode ``auto`` picks, the odometry scale (``MotionScale``) on a stream with known
motion, noise, outliers, standing still and late odometry, and the pipeline applying it to depth and odometry."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ros2_monodepth.core.checkpoint import CheckpointMetadata
from ros2_monodepth.core.geometry import rpy_to_matrix
from ros2_monodepth.core.pipeline import CameraIntrinsics, FramePipeline, PipelineConfig
from ros2_monodepth.core.scale import MotionScale, choose_scale_mode

from test_pipeline import CAM_H, CAM_W, K_CAM, ScriptedBackend, _image, constant_depth  # noqa: F401

IDENTITY_Q = np.array([0.0, 0.0, 0.0, 1.0])


def test_auto_prefers_a_metric_checkpoint_then_stereo_then_odometry_then_camera_height_then_relative():
    everything = dict(checkpoint_metric=True, checkpoint_stereo=True, live_odometry="/odom", camera_height_from="TF")
    assert choose_scale_mode("auto", **everything).mode == "checkpoint"
    assert choose_scale_mode("auto", **{**everything, "checkpoint_metric": False}).mode == "stereo"
    assert choose_scale_mode("auto", live_odometry="/odom", camera_height_from="TF").mode == "odometry"
    assert choose_scale_mode("auto", camera_height_from="TF").mode == "camera_height"
    relative = choose_scale_mode("auto")
    assert relative.mode == "relative" and "--odometry-topic" in relative.reason
    assert choose_scale_mode("fixed", **everything).mode == "fixed"      # asked for: taken as it is


def _drive(scale: MotionScale, true_ratio: float, steps: int, rng, step_m=0.2, noise=0.05, outlier_every=0, t0=0.0,
           odom_lag=1):
    """Camera moving along x by ``step_m`` per frame at 10 Hz; the network's lengths are the true ones divided by
    ``true_ratio`` with ``noise``; odometry for frame k arrives ``odom_lag`` frames late. Returns the scales after
    each frame."""
    seen = []
    for k in range(steps):
        t = t0 + 0.1 * k
        if k >= odom_lag:
            j = k - odom_lag
            scale.add_odometry(t0 + 0.1 * j, np.array([step_m * j, 0.0, 0.0]), IDENTITY_Q)
        if k:
            predicted = step_m / true_ratio * (1 + noise * rng.standard_normal())
            if outlier_every and k % outlier_every == 0:
                predicted *= 8.0
            scale.add_prediction(t - 0.1, t, predicted)
        seen.append(scale.scale if scale.ready else None)
    return seen


def test_odometry_scale_converges_within_a_few_frames_and_ignores_outliers():
    rng = np.random.default_rng(0)
    scale = MotionScale(np.eye(4), window=30, min_motion=0.05, min_pairs=5)
    seen = _drive(scale, 3.7, 40, rng, outlier_every=7)
    first = next(k for k, s in enumerate(seen) if s is not None)
    # 5 pairs, the last of them covered by odometry one frame late: metric from frame 7 on
    assert first <= 7
    assert seen[first] == pytest.approx(3.7, rel=0.08)
    assert seen[-1] == pytest.approx(3.7, rel=0.03)
    assert scale.pairs_rejected >= 3        # the 8x outliers in the window are not averaged in


def test_standing_still_adds_no_pairs_and_a_replayed_clock_starts_again():
    scale = MotionScale(np.eye(4), min_motion=0.05, min_pairs=3)
    _drive(scale, 2.0, 10, np.random.default_rng(1), step_m=0.0)
    assert not scale.ready and scale.pairs_slow > 0
    _drive(scale, 2.0, 10, np.random.default_rng(1), noise=0.0, t0=1.0)
    assert scale.ready and scale.scale == pytest.approx(2.0, rel=1e-6)
    # the clock jumps back (a bag replayed): old odometry is dropped, new pairs are measured on the new time line
    before = scale.pairs_used
    _drive(scale, 2.0, 10, np.random.default_rng(1), noise=0.0, t0=-100.0)
    assert scale.pairs_used > before and scale.scale == pytest.approx(2.0, rel=1e-6)


def test_odometry_of_the_base_is_moved_onto_the_camera():
    """The base turns on the spot with the camera 0.5 m ahead of it: the camera travels, the base does not."""
    mount = np.eye(4)
    mount[:3, 3] = (0.5, 0.0, 1.0)
    scale = MotionScale(mount, min_motion=0.01, min_pairs=1)
    for k in range(3):
        yaw = 0.2 * k
        scale.add_odometry(0.1 * k, np.zeros(3), np.array([0.0, 0.0, math.sin(yaw / 2), math.cos(yaw / 2)]))
    scale.add_prediction(0.0, 0.1, 0.1)
    chord = 2 * 0.5 * math.sin(0.1)    # the camera's 0.5 m lever arm turned by 0.2 rad
    assert scale.scale == pytest.approx(chord / 0.1, rel=1e-6)


def _meta(**kw):
    return CheckpointMetadata(**kw)


def test_the_pipeline_applies_what_auto_resolves_to():
    metric = FramePipeline(ScriptedBackend(constant_depth(2.0)), PipelineConfig(odometry_topic="/odom"),
                           _meta(metric=True, scale_source="velocity supervision"))
    assert metric.scale.mode == "checkpoint" and metric.depth_is_metric and metric.scale.scale == 1.0
    stereo = FramePipeline(ScriptedBackend(constant_depth(2.0)), PipelineConfig(), _meta(use_stereo=True, stereo_scale=5.4))
    assert stereo.scale.mode == "stereo" and stereo.scale.scale == pytest.approx(5.4)
    relative = FramePipeline(ScriptedBackend(constant_depth(2.0)), PipelineConfig(), None)
    assert relative.scale.mode == "relative" and not relative.depth_is_metric
    # the camera's height from the robot's TF tree makes auto use the ground plane
    T = np.eye(4)
    T[:3, :3] = rpy_to_matrix(-math.pi / 2, 0.0, -math.pi / 2)
    T[2, 3] = 0.8
    relative.use_camera_mount(T, "/tf (base_link -> cam)")
    assert relative.scale.mode == "camera_height" and "0.80 m" in relative.scale.reason


def test_the_pipeline_scales_depth_and_odometry_by_the_robots_motion():
    """The network moves 0.05 units per frame and sees depth 2 units; the robot moves 0.2 m per frame: after a
    few frames depth is 8 m and the odometry step 0.2 m."""
    motion = np.eye(4)
    motion[2, 3] = 0.05      # forward along the optical axis, in network units
    cfg = PipelineConfig(odometry_topic="/odom", scale_min_motion=0.05)
    pipeline = FramePipeline(ScriptedBackend(constant_depth(2.0), motion=motion), cfg)
    assert pipeline.scale.mode == "odometry" and not pipeline.depth_is_metric
    info = CameraIntrinsics(K_CAM, CAM_W, CAM_H)
    positions = []
    for k in range(12):
        t = 10.0 + 0.1 * k
        pipeline.scale.motion.add_odometry(t, np.array([0.2 * k, 0.0, 0.0]), IDENTITY_Q)   # the base, along x
        depth, odom = pipeline.process(pipeline.prepare(_image(k), info, t))
        positions.append(odom.step.T_odom_base[:3, 3].copy())
    assert pipeline.depth_is_metric and pipeline.scale.scale == pytest.approx(4.0, rel=1e-6)
    assert float(np.nanmedian(depth.depth)) == pytest.approx(8.0, rel=1e-3)
    assert np.linalg.norm(positions[-1] - positions[-2]) == pytest.approx(0.2, rel=1e-3)


def test_odometry_that_is_not_a_pose_is_refused_naming_the_field():
    from ros2_monodepth.core.scale import OdometryError

    scale = MotionScale(np.eye(4))
    with pytest.raises(OdometryError) as err:
        scale.add_odometry(1.0, (float("nan"), 0.0, 0.0), IDENTITY_Q)
    assert err.value.field == "pose.pose.position"
    with pytest.raises(OdometryError, match="not a unit quaternion") as err:
        scale.add_odometry(1.0, (0.0, 0.0, 0.0), (0.0, 0.0, 0.0, 0.0))    # a default-constructed message
    assert err.value.field == "pose.pose.orientation"
    scale.add_odometry(1.0, (0.0, 0.0, 0.0), (0.0, 0.0, 0.0, 1.02))     # a little off unit length: normalised

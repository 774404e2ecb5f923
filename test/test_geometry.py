"""Geometry, odometry chaining and the camera-height scale, against values worked out independently."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from ros2_monodepth.core.geometry import (axis_angle_to_matrix, backproject, matrix_to_quaternion, matrix_to_rotvec,
                                          pose_params_to_matrix, project, rpy_to_matrix, scale_intrinsics, se3_inverse)
from ros2_monodepth.core.odometry import OdometryIntegrator
from ros2_monodepth.core.scale import ScaleEstimator
from ros2_monodepth.core.synthetic import SceneConfig, SyntheticSequence, TrajectoryConfig


def test_axis_angle_quarter_turn_about_z():
    R = axis_angle_to_matrix(torch.tensor([[0.0, 0.0, math.pi / 2]]))[0].numpy()
    np.testing.assert_allclose(R @ [1.0, 0, 0], [0, 1.0, 0], atol=1e-6)
    np.testing.assert_allclose(axis_angle_to_matrix(torch.zeros(1, 3))[0].numpy(), np.eye(3), atol=1e-7)


def test_pose_params_invert_is_the_inverse():
    aa, t = torch.tensor([[0.1, -0.2, 0.3]]), torch.tensor([[0.5, 0.1, -1.0]])
    T = pose_params_to_matrix(aa, t)[0].double().numpy()
    Ti = pose_params_to_matrix(aa, t, invert=True)[0].double().numpy()
    np.testing.assert_allclose(T @ Ti, np.eye(4), atol=1e-6)
    np.testing.assert_allclose(se3_inverse(T), Ti, atol=1e-6)


def test_backproject_then_project_returns_pixels():
    K = torch.tensor([[[50.0, 0, 31.5], [0, 50.0, 15.5], [0, 0, 1]]])
    depth = torch.rand(1, 1, 32, 64) * 10 + 1
    pts = backproject(depth, torch.linalg.inv(K))
    uv = project(pts, K, torch.eye(4)[None])
    v, u = torch.meshgrid(torch.arange(32.0), torch.arange(64.0), indexing="ij")
    np.testing.assert_allclose(uv[0, 0].numpy(), u.reshape(-1).numpy(), atol=1e-3)
    np.testing.assert_allclose(uv[0, 1].numpy(), v.reshape(-1).numpy(), atol=1e-3)


def test_scale_intrinsics_pixel_centres():
    K = np.array([[100.0, 0, 79.5], [0, 100.0, 59.5], [0, 0, 1]])  # centre of a 160x120 image
    K2 = scale_intrinsics(K, 0.5, 0.5)  # 80x60: centre at 39.5, 29.5
    assert K2[0, 0] == 50 and K2[1, 1] == 50 and K2[0, 2] == pytest.approx(39.5) and K2[1, 2] == pytest.approx(29.5)


def test_quaternion_and_rotvec():
    R = rpy_to_matrix(0.0, 0.0, math.pi / 2)
    np.testing.assert_allclose(matrix_to_quaternion(R), [0, 0, math.sin(math.pi / 4), math.cos(math.pi / 4)], atol=1e-12)
    np.testing.assert_allclose(matrix_to_rotvec(R), [0, 0, math.pi / 2], atol=1e-12)


def _optical_mount():
    T = np.eye(4)
    T[:3, :3] = rpy_to_matrix(-math.pi / 2, 0, -math.pi / 2)
    T[:3, 3] = [0.2, 0.0, 1.5]
    return T


def test_odometry_moves_base_forward_when_camera_moves_along_optical_z():
    odo = OdometryIntegrator(_optical_mount(), max_gap_s=1.0)
    step = odo.start(0.0, "first frame")
    np.testing.assert_allclose(step.T_odom_base, np.eye(4))
    forward = np.eye(4)
    forward[2, 3] = 0.5  # camera moved 0.5 network units along its optical axis
    for k in range(1, 5):
        assert odo.gap(0.1 * k) == ""
        step = odo.update(0.1 * k, forward, scale=2.0)
    np.testing.assert_allclose(step.T_odom_base[:3, 3], [4.0, 0.0, 0.0], atol=1e-9)  # 4 steps x 0.5 x 2.0 along base x
    np.testing.assert_allclose(step.linear, [10.0, 0, 0], atol=1e-9)  # 1 m per 0.1 s


def test_odometry_yaw_from_camera_rotation_about_its_y_axis():
    odo = OdometryIntegrator(_optical_mount())
    odo.start(0.0, "first frame")
    turn = np.eye(4)
    turn[:3, :3] = axis_angle_to_matrix(torch.tensor([[0.0, -0.1, 0.0]], dtype=torch.float64))[0].numpy()
    step = odo.update(0.1, turn, 1.0)
    # optical -y is base +z (up): rotating the camera by -0.1 rad about optical y turns the base left (+yaw)
    np.testing.assert_allclose(matrix_to_rotvec(step.T_odom_base[:3, :3]), [0, 0, 0.1], atol=1e-9)
    np.testing.assert_allclose(step.angular, [0, 0, 1.0], atol=1e-9)


def test_odometry_chain_restarts_on_gaps_and_at_the_origin_only_when_asked():
    odo = OdometryIntegrator(np.eye(4), max_gap_s=0.5)
    assert odo.gap(1.0) == "first frame"
    odo.start(1.0, "first frame")
    move = np.eye(4)
    move[0, 3] = 1.0
    odo.update(1.1, move, 1.0)
    assert "exceeds" in odo.gap(2.0)
    step = odo.start(2.0, "gap")
    assert step.T_odom_base[0, 3] == pytest.approx(1.0)  # pose kept over a gap
    step = odo.start(1.5, "time jumped back", reset=True)
    np.testing.assert_allclose(step.T_odom_base, np.eye(4))  # replayed bag (confirmed by the StampGate): the origin


def test_stamp_gate_drops_single_bad_stamps_and_believes_confirmed_jumps():
    from ros2_monodepth.core.odometry import StampGate

    gate = StampGate(jump_threshold=5.0, confirm_frames=3, max_lead=10.0)
    assert gate.check(100.0).restart == "first frame"
    assert gate.check(100.1).accept and gate.check(100.2).accept
    for bad, kind in ((0.0, "zero"), (100.2, "not after last"), (99.0, "not after last"), (50.0, "unconfirmed jump"),
                      (1e9, "unconfirmed jump")):
        decision = gate.check(bad)
        assert not decision.accept and decision.kind == kind, (bad, decision)
    assert gate.check(100.3).accept and gate.check(100.3 + 4.0).restart == ""   # a pause below the threshold: no jump
    assert gate.check(200.0, clock_now=150.0).kind == "ahead of clock"
    # a replayed bag: dropped until three frames in a row confirm it, then a restart at the origin
    decisions = [gate.check(t) for t in (1.0, 1.1, 1.2, 1.3)]
    assert [d.accept for d in decisions] == [False, False, True, True]
    assert decisions[2].reset and "back" in decisions[2].restart and decisions[3].restart == ""
    # a jump forward (the camera resumed after a long stop) restarts where the robot is
    decisions = [gate.check(t) for t in (500.0, 500.1, 500.2)]
    assert decisions[2].accept and not decisions[2].reset and "forward" in decisions[2].restart


@pytest.mark.parametrize("unknown_scale", [0.25, 3.7])
def test_camera_height_scale_recovers_metric_depth(unknown_scale):
    """Ground-truth depth divided by an unknown factor: the ground plane + camera height gives it back."""
    seq = SyntheticSequence(SceneConfig(seed=1), TrajectoryConfig(num_frames=3), 160, 120)
    _, _, depth, _, _ = seq.frame(1)
    depth = np.where(np.isfinite(depth) & (depth < 80), depth, np.nan).astype(np.float32) / unknown_scale
    from ros2_monodepth.core.pointcloud import RayGrid

    pts = RayGrid().points(depth, seq.K, 1)
    up_in_cam = rpy_to_matrix(-math.pi / 2, 0, -math.pi / 2).T @ [0, 0, 1.0]
    est = ScaleEstimator("camera_height", camera_height=1.5, expected_up=tuple(up_in_cam), smoothing=0.0)
    assert not est.ready
    scale = est.update(pts)
    assert est.ready
    assert scale == pytest.approx(unknown_scale, rel=0.03)


def test_fixed_and_stereo_scales():
    assert ScaleEstimator("fixed", factor=2.0).scale == 2.0
    assert ScaleEstimator("stereo", factor=1.0, stereo_scale=5.4).scale == 5.4
    assert ScaleEstimator("relative", factor=3.0).scale == 1.0
    with pytest.raises(ValueError):
        ScaleEstimator("metric")

"""The per-frame work without ROS (``core.pipeline``): intrinsics, resize, depth at output resolution and its K,
invalid pixels, metric scale, the cloud's points and colours, and the odometry chain. No rclpy: these run in a
plain Python environment; the node tests check the wiring around them."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest

from ros2_monodepth.core.backends.base import InferenceBackend, ModelSpec
from ros2_monodepth.core.geometry import rpy_to_matrix, scale_intrinsics, se3_inverse
from ros2_monodepth.core.pipeline import CameraIntrinsics, FrameError, FramePipeline, PipelineConfig, camera_intrinsics
from ros2_monodepth.core.pointcloud import unpack_rgb_float
from ros2_monodepth.core.synthetic import SceneConfig, SyntheticSequence, TrajectoryConfig

CAM_H, CAM_W = 120, 160
NET_H, NET_W = 64, 128
K_CAM = np.array([[100.0, 0.0, 79.5], [0.0, 100.0, 59.5], [0.0, 0.0, 1.0]])
# a 4:3 camera and a 2:1 network: the model contract's centre crop keeps rows 20..99 of the 160x120 frame
CROP = (20, 0, 80, 160)


def network_view(image):
    """What training feeds the network for a camera frame: the centre crop, area-resized (training/dataset.py)."""
    y0, x0, h, w = CROP
    return cv2.resize(image[y0:y0 + h, x0:x0 + w], (NET_W, NET_H), interpolation=cv2.INTER_AREA)


def K_network():
    K = K_CAM.copy()
    K[1, 2] -= CROP[0]
    return scale_intrinsics(K, NET_W / CROP[3], NET_H / CROP[2])


class ScriptedBackend(InferenceBackend):
    """A backend whose outputs the test chooses: ``depth_fn(image)`` and a fixed frame-to-frame motion. It takes
    images at ``input_size`` (like the exported-graph backends) or any size (None, like PyTorch)."""

    name = "scripted"

    def __init__(self, depth_fn, motion=None, input_size=None, order="rgb", with_pose=True):
        super().__init__(ModelSpec(channel_order=order, with_pose=with_pose, network_size=(NET_H, NET_W)))
        self.depth_fn = depth_fn
        self.motion = np.eye(4) if motion is None else motion
        self._input_size = input_size
        self.pose_calls = []

    @property
    def input_size(self):
        return self._input_size

    def depth(self, image):
        return self.depth_fn(image).astype(np.float32)

    def relative_pose(self, earlier, later):
        self.pose_calls.append((earlier.shape, later.shape))
        return self.motion.copy()


def constant_depth(value, shape=(NET_H, NET_W)):
    return lambda image: np.full(shape, value, np.float32)


def _image(seed=0):
    return np.random.default_rng(seed).integers(0, 256, (CAM_H, CAM_W, 3), dtype=np.uint8)


def test_intrinsics_come_from_camera_info_or_the_fallback_parameters():
    pipeline = FramePipeline(ScriptedBackend(constant_depth(2.0)), PipelineConfig())
    info = CameraIntrinsics(K_CAM, CAM_W, CAM_H)
    assert pipeline.intrinsics(info, CAM_W, CAM_H) is info
    with pytest.raises(FrameError, match="camera_info size differs") as err:
        pipeline.intrinsics(CameraIntrinsics(K_CAM, CAM_W * 2, CAM_H), CAM_W, CAM_H)
    assert err.value.field == "width/height"
    with pytest.raises(FrameError, match="intrinsics.fx is 0") as err:
        pipeline.intrinsics(None, CAM_W, CAM_H)
    assert err.value.field == "k"
    fallback = FramePipeline(ScriptedBackend(constant_depth(2.0)), PipelineConfig(intrinsics_fx=200.0)).intrinsics(None, CAM_W, CAM_H)
    np.testing.assert_allclose(fallback.K, [[200, 0, 79.5], [0, 200, 59.5], [0, 0, 1]])
    assert fallback.source == "parameters"


def test_prepare_feeds_the_network_what_training_fed_it():
    """The model contract's crop to the network's aspect and its resize filter, as the training dataset applies
    them, with the intrinsics of the cropped and resized image."""
    from ros2_monodepth_training.dataset import ResizePlan

    image = _image()
    info = CameraIntrinsics(K_CAM, CAM_W, CAM_H)
    fixed = FramePipeline(ScriptedBackend(constant_depth(2.0), input_size=(NET_H, NET_W)), PipelineConfig())
    frame = fixed.prepare(image, info, 1.0)
    training = ResizePlan.make((CAM_H, CAM_W), (NET_H, NET_W), K_CAM, "center", "area")
    assert training.crop == CROP and frame.plan.crop == CROP
    np.testing.assert_array_equal(frame.net_input, training.apply(image))
    np.testing.assert_array_equal(frame.net_input, network_view(image))
    np.testing.assert_allclose(frame.K_net, training.K)
    assert frame.image is image and frame.stamp == 1.0
    # a backend without a fixed input size gets the same pixels at its network size
    anysize = FramePipeline(ScriptedBackend(constant_depth(2.0)), PipelineConfig())
    np.testing.assert_array_equal(anysize.prepare(image, info, 1.0).net_input, network_view(image))
    with pytest.raises(FrameError, match="uint8"):
        anysize.prepare(image.astype(np.float32), info, 1.0)
    # a checkpoint trained without a crop (Monodepth2's own weights): the whole frame, squashed
    from ros2_monodepth.core.model_contract import CheckpointMetadata

    squash = FramePipeline(ScriptedBackend(constant_depth(2.0)), PipelineConfig(),
                           CheckpointMetadata(network_size=(NET_H, NET_W), crop="none"))
    np.testing.assert_array_equal(squash.prepare(image, info, 1.0).net_input,
                                  cv2.resize(image, (NET_W, NET_H), interpolation=cv2.INTER_AREA))


@pytest.mark.parametrize("resolution", ["network", "camera"])
def test_depth_at_output_resolution_with_its_intrinsics_scale_and_invalid_pixels(resolution):
    raw = np.full((NET_H, NET_W), 2.0, np.float32)
    raw[0, :5] = [np.nan, np.inf, 0.0, -1.0, 3.0]
    cfg = PipelineConfig(depth_resolution=resolution, scale_mode="fixed", scale_factor=1.5)
    pipeline = FramePipeline(ScriptedBackend(lambda image: raw), cfg)
    result = pipeline.depth(pipeline.prepare(_image(), CameraIntrinsics(K_CAM, CAM_W, CAM_H), 1.0))
    assert result.scale == 1.5 and result.scale_mode == "fixed"
    if resolution == "network":
        assert result.size == (NET_H, NET_W) and result.roi is None
        np.testing.assert_allclose(result.K, K_network())
        assert np.isnan(result.depth[0, :4]).all() and result.depth[0, 4] == pytest.approx(4.5)
        assert np.nanmax(result.depth[1:]) == np.nanmin(result.depth[1:]) == pytest.approx(3.0)
    else:
        # the camera's pixels: depth inside the region the network saw, NaN outside it, roi says which
        assert result.size == (CAM_H, CAM_W) and result.roi == CROP
        np.testing.assert_allclose(result.K, K_CAM)
        assert np.isnan(result.depth[:20]).all() and np.isnan(result.depth[100:]).all()
        assert np.nanmedian(result.depth[20:100]) == pytest.approx(3.0)
    # pixel-centre convention: cx' = (cx + 0.5) s - 0.5
    assert scale_intrinsics(K_CAM, 0.5, 0.5)[0, 2] == pytest.approx((79.5 + 0.5) * 0.5 - 0.5)


def test_points_back_project_the_depth_and_take_colours_from_the_frame_the_network_saw():
    image = _image(3)
    info = CameraIntrinsics(K_CAM, CAM_W, CAM_H)
    fixed = FramePipeline(ScriptedBackend(constant_depth(2.0), input_size=(NET_H, NET_W)), PipelineConfig())
    result = fixed.depth(fixed.prepare(image, info, 1.0))
    xyz, rgb = result.points(stride=3, with_rgb=True)
    assert xyz.shape == (math.ceil(NET_H / 3), math.ceil(NET_W / 3), 3)
    np.testing.assert_allclose(xyz[..., 2], 2.0)
    K = result.K   # x = (u - cx) / fx * z at the strided pixel centres
    np.testing.assert_allclose(xyz[0, :, 0], (np.arange(0, NET_W, 3) - K[0, 2]) / K[0, 0] * 2.0, rtol=1e-6)
    np.testing.assert_array_equal(unpack_rgb_float(rgb), network_view(image)[::3, ::3])
    # a backend that takes any size: the same network view
    anysize = FramePipeline(ScriptedBackend(constant_depth(2.0)), PipelineConfig())
    _, rgb = anysize.depth(anysize.prepare(image, info, 1.0)).points(stride=1, with_rgb=True)
    np.testing.assert_array_equal(unpack_rgb_float(rgb), network_view(image))
    # depth at camera resolution: the camera frame's own colours; a BGR backend gets them swapped back to RGB
    bgr = FramePipeline(ScriptedBackend(constant_depth(2.0, (CAM_H, CAM_W)), order="bgr"), PipelineConfig(depth_resolution="camera"))
    _, rgb = bgr.depth(bgr.prepare(image[..., ::-1].copy(), info, 1.0)).points(stride=2, with_rgb=True)
    np.testing.assert_array_equal(unpack_rgb_float(rgb), image[::2, ::2])
    assert fixed.depth(fixed.prepare(image, info, 2.0)).points(stride=2, with_rgb=False)[1] is None


def test_colorized_depth_is_bgr_at_the_depth_size():
    pipeline = FramePipeline(ScriptedBackend(lambda image: np.linspace(1, 10, NET_H * NET_W).reshape(NET_H, NET_W)),
                             PipelineConfig())
    result = pipeline.depth(pipeline.prepare(_image(), CameraIntrinsics(K_CAM, CAM_W, CAM_H), 1.0))
    colour = result.colorized()
    assert colour.shape == (NET_H, NET_W, 3) and colour.dtype == np.uint8 and colour.std() > 10


def _forward_motion(metres):
    T = np.eye(4)
    T[2, 3] = metres   # the optical frame moves along its z axis
    return T


def test_odometry_chains_the_scaled_motion_through_the_camera_mount():
    cfg = PipelineConfig(scale_mode="fixed", scale_factor=2.0)
    backend = ScriptedBackend(constant_depth(2.0), motion=_forward_motion(0.25))
    pipeline = FramePipeline(backend, cfg)
    info = CameraIntrinsics(K_CAM, CAM_W, CAM_H)
    results = []
    for i in range(4):
        frame = pipeline.prepare(_image(i), info, 10.0 + 0.1 * i)
        depth, odometry = pipeline.process(frame)
        results.append(odometry)
    assert results[0].restarted == "first frame" and not results[0].step.integrated
    assert all(r.restarted == "" and r.step.integrated for r in results[1:])
    assert len(backend.pose_calls) == 3
    # the default mount looks along base x: optical z forward is base x forward; 0.25 * scale 2 = 0.5 m a frame
    np.testing.assert_allclose(results[-1].step.T_odom_base[:3, 3], [1.5, 0.0, 0.0], atol=1e-9)
    np.testing.assert_allclose(results[-1].step.linear, [5.0, 0.0, 0.0], atol=1e-6)   # 0.5 m in 0.1 s
    # a tilted mount: the same optical motion is base motion T_base_cam T T_cam_base
    tilted = PipelineConfig(camera_mount_rpy=(-math.pi / 2, 0.3, -math.pi / 2))
    pipeline = FramePipeline(ScriptedBackend(constant_depth(2.0), motion=_forward_motion(1.0)), tilted)
    for i in range(2):
        result = pipeline.odometry(pipeline.prepare(_image(i), info, 1.0 + 0.1 * i))
    mount = tilted.camera_mount()
    np.testing.assert_allclose(result.step.T_odom_base, mount @ _forward_motion(1.0) @ se3_inverse(mount), atol=1e-9)
    assert mount[:3, :3] == pytest.approx(rpy_to_matrix(-math.pi / 2, 0.3, -math.pi / 2))


def test_odometry_restarts_on_a_long_gap_a_size_change_or_a_confirmed_jump_back_in_time():
    pipeline = FramePipeline(ScriptedBackend(constant_depth(2.0), motion=_forward_motion(0.1)),
                             PipelineConfig(max_frame_gap=1.0, time_jump_threshold=5.0, time_jump_confirm_frames=2))
    info = CameraIntrinsics(K_CAM, CAM_W, CAM_H)

    def step(t, image=None, intr=info):
        return pipeline.odometry(pipeline.prepare(_image() if image is None else image, intr, t))

    step(5.0)
    moved = step(5.1).step.T_odom_base[0, 3]
    assert moved == pytest.approx(0.1)
    gap = step(7.0)
    assert "gap" in gap.restarted and gap.step.T_odom_base[0, 3] == pytest.approx(moved)   # pose kept
    small = np.zeros((60, 80, 3), np.uint8)
    resized = step(7.1, small, CameraIntrinsics(K_CAM / 2 * [[1], [1], [2]], 80, 60))
    assert resized.restarted == "size change"
    step(7.2)
    # a bag replayed from its start: the first frame back in time is dropped, the second confirms the jump
    with pytest.raises(FrameError, match="jumps back"):
        step(1.0)
    back = step(1.1)
    assert "time jumped back" in back.restarted and back.warnings and "at the origin" in back.warnings[0]
    np.testing.assert_allclose(back.step.T_odom_base, np.eye(4))


@pytest.mark.parametrize("bad_stamp,expected", [(0.0, "not set"), (10.0, "not after the last"), (9.95, "not after the last"),
                                                (1e9, "jumps forward"), (-3.0, "not set")])
def test_one_bad_stamp_is_dropped_and_the_pose_kept(bad_stamp, expected):
    """REP 105: odom is continuous. A duplicated, zero, slightly earlier or far-future stamp never moves the pose."""
    pipeline = FramePipeline(ScriptedBackend(constant_depth(2.0), motion=_forward_motion(0.5)), PipelineConfig())
    info = CameraIntrinsics(K_CAM, CAM_W, CAM_H)
    for t in (9.8, 9.9, 10.0):
        before = pipeline.odometry(pipeline.prepare(_image(), info, t)).step.T_odom_base
    with pytest.raises(FrameError, match=expected) as err:
        pipeline.prepare(_image(), info, bad_stamp)
    assert err.value.field == "header.stamp" and err.value.kind.startswith("stamp ")
    after = pipeline.odometry(pipeline.prepare(_image(), info, 10.1))
    assert after.restarted == "" and after.step.integrated
    np.testing.assert_allclose(after.step.T_odom_base[:3, 3], before[:3, 3] + [0.5, 0, 0], atol=1e-9)


def test_a_stamp_far_ahead_of_the_clock_is_dropped():
    pipeline = FramePipeline(ScriptedBackend(constant_depth(2.0)), PipelineConfig(max_stamp_lead=10.0))
    info = CameraIntrinsics(K_CAM, CAM_W, CAM_H)
    pipeline.prepare(_image(), info, 100.0, clock_now=100.5)
    with pytest.raises(FrameError, match="ahead of the node's clock"):
        pipeline.prepare(_image(), info, 200.0, clock_now=100.6)
    assert pipeline.prepare(_image(), info, 100.7, clock_now=100.7).stamp == 100.7
    unchecked = FramePipeline(ScriptedBackend(constant_depth(2.0)), PipelineConfig(max_stamp_lead=0.0))
    assert unchecked.prepare(_image(), info, 5000.0, clock_now=1.0).stamp == 5000.0


def test_images_larger_than_the_limit_are_refused_before_decoding():
    pipeline = FramePipeline(ScriptedBackend(constant_depth(2.0)), PipelineConfig(max_image_pixels=100 * 100))
    with pytest.raises(FrameError, match="exceeds max_image_pixels") as err:
        pipeline.check_size(10000, 10000)
    assert err.value.field == "width/height" and err.value.kind == "image too large"
    pipeline.check_size(100, 100)


@pytest.mark.parametrize("k,expected", [
    ([100, 0, 79.5, 0, 100, 59.5, 0, 0, 0], "k\\[8\\] 1"),
    ([1e300, 0, 79.5, 0, 100, 59.5, 0, 0, 1], "at most"),
    ([100, 0, 79.5, 0, 100, 59.5, 0, 0, float("nan")], "finite"),
    ([100, 0, 79.5, 0, -100, 59.5, 0, 0, 1], "k\\[4\\]"),
    ([100, 0, 79.5], "9"),
])
def test_broken_camera_info_is_refused_naming_the_field(k, expected):
    with pytest.raises(FrameError, match=expected):
        camera_intrinsics(k, CAM_W, CAM_H)
    assert camera_intrinsics([100, 0, 79.5, 0, 100, 59.5, 0, 0, 1], CAM_W, CAM_H).K[2, 2] == 1


def test_odometry_is_off_without_a_pose_network_or_when_disabled():
    info = CameraIntrinsics(K_CAM, CAM_W, CAM_H)
    no_pose = FramePipeline(ScriptedBackend(constant_depth(2.0), with_pose=False), PipelineConfig())
    assert no_pose.odometry(no_pose.prepare(_image(), info, 1.0)) is None
    disabled = FramePipeline(ScriptedBackend(constant_depth(2.0)), PipelineConfig(publish_odometry=False))
    assert disabled.odometry(disabled.prepare(_image(), info, 1.0)) is None


def test_camera_height_scale_makes_depth_metric_from_the_ground_plane():
    seq = SyntheticSequence(SceneConfig(seed=2), TrajectoryConfig(num_frames=3), NET_W, NET_H)
    _, image, true_depth, _, _ = seq.frame(1)
    network_units = 0.37   # the network's arbitrary scale
    cfg = PipelineConfig(scale_mode="camera_height", camera_height=1.5, scale_smoothing=0.0)
    pipeline = FramePipeline(ScriptedBackend(lambda img: np.where(np.isfinite(true_depth), true_depth * network_units, 0.0)), cfg)
    result = pipeline.depth(pipeline.prepare(image, CameraIntrinsics(seq.K, NET_W, NET_H), 1.0))
    assert result.scale == pytest.approx(1 / network_units, rel=0.05)
    valid = np.isfinite(true_depth)
    assert float(np.nanmedian(result.depth[valid] / true_depth[valid])) == pytest.approx(1.0, rel=0.05)


def test_reconfigure_rebuilds_the_scale_and_the_chain_gap():
    pipeline = FramePipeline(ScriptedBackend(constant_depth(2.0)), PipelineConfig())
    assert pipeline.scale.scale == 1.0
    pipeline.reconfigure(PipelineConfig(scale_mode="fixed", scale_factor=3.0, max_frame_gap=5.0))
    assert pipeline.scale.scale == 3.0 and pipeline.odometry_chain.max_gap_s == 5.0


def test_create_runs_a_real_backend_end_to_end():
    cfg = PipelineConfig(network_size=(NET_H, NET_W), backend="torch", device="cpu", precision="fp32")
    pipeline, why = FramePipeline.create(cfg)
    assert "torch requested" in why
    seq = SyntheticSequence(SceneConfig(seed=1), TrajectoryConfig(num_frames=2), CAM_W, CAM_H)
    info = CameraIntrinsics(seq.K, CAM_W, CAM_H)
    outputs = [pipeline.process(pipeline.prepare(seq.frame(i)[1], info, 1.0 + 0.1 * i)) for i in range(2)]
    depth, odometry = outputs[-1]
    assert depth.size == (NET_H, NET_W) and np.isfinite(depth.depth).all() and (depth.depth > 0).all()
    assert odometry is not None and odometry.step.integrated and np.isfinite(odometry.step.T_odom_base).all()
    pipeline.close()


@pytest.mark.parametrize("backend", ["onnxruntime", "torch"])
def test_the_shared_pose_model_runs_no_encoder_for_the_pose_in_the_nodes_call_order(tmp_path, monkeypatch, backend):
    """A shared-pose checkpoint through ``FramePipeline.create`` as the node runs it (prepare, depth, odometry, frame
    after frame at a 4:3 camera): every frame gets its odometry, and every frame's pose finds both frames' features
    (none computed again)."""
    pytest.importorskip("onnxruntime")
    import torch

    from ros2_monodepth.core.checkpoint import CheckpointMetadata, save_checkpoint
    from ros2_monodepth.core.networks import DepthNet, PoseNet

    monkeypatch.setenv("ROS2_MONODEPTH_CACHE", str(tmp_path / "cache"))
    torch.manual_seed(5)
    depth_net = DepthNet(18).eval()
    save_checkpoint(tmp_path / "ck", depth_net, PoseNet(18, shared_encoder=depth_net.encoder).eval(),
                    CheckpointMetadata(network_size=(NET_H, NET_W)))
    pipeline, _ = FramePipeline.create(PipelineConfig(checkpoint_dir=str(tmp_path / "ck"), backend=backend,
                                                      precision="fp32", scale_mode="fixed", intrinsics_fx=100.0))
    seq = SyntheticSequence(SceneConfig(seed=3), TrajectoryConfig(num_frames=4, speed=10.0), CAM_W, CAM_H)
    inputs = []
    for i in range(4):
        frame = pipeline.prepare(seq.frame(i)[1], None, 1.0 + 0.1 * i)
        inputs.append(frame.net_input)
        _, odometry = pipeline.process(frame)
        assert odometry is not None and odometry.restarted == ("first frame" if i == 0 else "")
    assert pipeline.backend.features.misses == 0
    expected = pipeline.backend.relative_pose(inputs[2], inputs[3])    # features of both still held
    assert pipeline.backend.features.misses == 0
    assert float(np.linalg.norm(expected[:3, 3])) > 0

"""The real node in a subprocess, started with config/monodepth.yaml, fed generated frames over loopback DDS."""

from __future__ import annotations

import math
import time

import cv2
import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")

from nav_msgs.msg import Odometry  # noqa: E402
from rclpy.qos import QoSProfile, ReliabilityPolicy  # noqa: E402
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2  # noqa: E402
from std_msgs.msg import Header  # noqa: E402
from tf2_msgs.msg import TFMessage  # noqa: E402

from ros2_monodepth.core.synthetic import SceneConfig, SyntheticSequence, TrajectoryConfig  # noqa: E402
from ros2_monodepth.core.image_codec import image_to_numpy  # noqa: E402
from ros2_monodepth.ros.image_messages import fill_image_msg  # noqa: E402
from ros2_monodepth.ros.messages import camera_info_msg  # noqa: E402
from ros2_monodepth.ros.pointcloud2 import cloud_colors, cloud_to_numpy  # noqa: E402

from ros_harness import EVENT_CEILING, Collector, start_node, stamp_msg, stamp_of  # noqa: E402

pytestmark = pytest.mark.ros

CAM_W, CAM_H = 160, 120
NET_W, NET_H = 128, 64
STRIDE = 3
BASE_PARAMS = {"network_size": f"{NET_W}x{NET_H}", "points_stride": STRIDE, "diagnostics_period": 0.5,
               "warn_throttle": 0.0, "precision": "fp32", "backend": "torch"}


def network_K(K):
    """K of what the network sees of a CAM_W x CAM_H frame: the model contract's crop to NET_W:NET_H, resized."""
    from ros2_monodepth.core.model_contract import CropResize

    return CropResize.make((CAM_H, CAM_W), (NET_H, NET_W), "center").intrinsics(K)


@pytest.fixture(scope="module")
def frames():
    seq = SyntheticSequence(SceneConfig(seed=3), TrajectoryConfig(num_frames=8, fps=10.0, speed=2.0), CAM_W, CAM_H)
    return seq, [seq.frame(i) for i in range(len(seq))]


class Feeder:
    """Publishes camera frames + camera_info with chosen stamps on a namespace."""

    def __init__(self, node, ns: str, compressed: bool = False, frame_id: str = "test_cam_optical"):
        qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        self.node = node
        self.frame_id = frame_id
        self.pub_img = node.create_publisher(CompressedImage if compressed else Image,
                                             f"{ns}/image/compressed" if compressed else f"{ns}/image", qos)
        self.pub_info = node.create_publisher(CameraInfo, f"{ns}/camera_info", qos)

    def wait_for_subscriber(self, collector: Collector, timeout: float = 30.0) -> bool:
        return collector.spin_until(lambda: self.pub_img.get_subscription_count() > 0
                                    and self.pub_info.get_subscription_count() > 0, timeout)

    def send(self, image: np.ndarray, K: np.ndarray, t: float, encoding: str = "rgb8", info: CameraInfo | None = None,
             msg=None) -> None:
        header = Header(stamp=stamp_msg(t), frame_id=self.frame_id)
        self.pub_info.publish(info if info is not None else camera_info_msg(header, K, image.shape[1], image.shape[0]))
        if msg is None:
            msg = fill_image_msg(Image(header=header), image, encoding)
        msg.header = header
        self.pub_img.publish(msg)

    def close(self) -> None:
        self.node.destroy_publisher(self.pub_img)
        self.node.destroy_publisher(self.pub_info)


def _topics(ns: str):
    return {f"{ns}/depth/image": Image, f"{ns}/depth/camera_info": CameraInfo, f"{ns}/points": PointCloud2,
            f"{ns}/odom": Odometry, f"{ns}/depth/colorized": Image, f"{ns}/rgb/image": Image, f"{ns}/rgb/camera_info": CameraInfo,
            "/tf": TFMessage, "/tf_static": TFMessage}


def _start(tmp_path, ros_context, ns, params, compressed=False, name="node", frame_id="test_cam_optical"):
    proc = start_node(tmp_path, {**BASE_PARAMS, **params}, ns, name=name)
    collector = Collector(ros_context, _topics(ns), transient=("/tf_static",))
    feeder = Feeder(ros_context, ns, compressed, frame_id)
    assert proc.wait_for_log("listening on", EVENT_CEILING), proc.log()
    assert feeder.wait_for_subscriber(collector), "node never subscribed\n" + proc.log()
    # Matching is seen from our side first; give the node's readers time to match our writers too, or the
    # first frame can be lost (volatile durability keeps nothing for late readers).
    collector.spin_until(lambda: False, 1.0)
    return proc, collector, feeder


def _send_and_wait(collector, feeder, ns, image, K, t, timeout=EVENT_CEILING, **kw):
    feeder.send(image, K, t, **kw)
    return collector.spin_until(lambda: any(abs(stamp_of(m) - t) < 1e-6 for m in collector.messages[f"{ns}/depth/image"]),
                                timeout)


def test_node_publishes_all_outputs(tmp_path, ros_context, frames):
    seq, data = frames
    ns = "/t_all"
    proc, col, feed = _start(tmp_path, ros_context, ns, {"depth_resolution": "network"})
    try:
        stamps = []
        for i, (t, image, _, _, _) in enumerate(data):
            t = 100.0 + 0.1 * i
            assert _send_and_wait(col, feed, ns, image, seq.K, t), f"no depth for frame {i}\n" + proc.log()
            stamps.append(t)
        col.wait(lambda: len(col.messages[f"{ns}/odom"]) >= len(stamps) and len(col.messages[f"{ns}/points"]) >= len(stamps)
                 and any(abs(stamp_of(t) - stamps[-1]) < 1e-6 for msg in col.messages["/tf"] for t in msg.transforms),
                 "odom, points and /tf of every frame", proc.log)
        m = col.messages
        # depth: REP 118 32FC1 in metres, network resolution, the image's optical frame and stamp
        depth_msg = m[f"{ns}/depth/image"][-1]
        assert depth_msg.encoding == "32FC1"
        assert (depth_msg.width, depth_msg.height) == (NET_W, NET_H)
        assert depth_msg.header.frame_id == "test_cam_optical"
        assert abs(stamp_of(depth_msg) - stamps[-1]) < 1e-6
        depth = image_to_numpy(depth_msg)
        assert np.isfinite(depth).all() and (depth > 0).all()
        assert {round(stamp_of(x), 6) for x in m[f"{ns}/depth/image"]} == {round(s, 6) for s in stamps}
        # depth/camera_info matches the depth image (the K scaling itself: test_pipeline)
        info = [x for x in m[f"{ns}/depth/camera_info"] if abs(stamp_of(x) - stamps[-1]) < 1e-6][0]
        assert (info.width, info.height) == (NET_W, NET_H)
        assert info.header.frame_id == "test_cam_optical"
        np.testing.assert_allclose(np.array(info.k).reshape(3, 3), network_K(seq.K), rtol=1e-6)
        # points: organised, strided, z equal to the published depth, packed rgb present (colours: test_pipeline)
        cloud = [x for x in m[f"{ns}/points"] if abs(stamp_of(x) - stamps[-1]) < 1e-6][0]
        assert (cloud.height, cloud.width) == (math.ceil(NET_H / STRIDE), math.ceil(NET_W / STRIDE))
        assert [f.name for f in cloud.fields] == ["x", "y", "z", "rgb"]
        assert cloud.is_dense
        np.testing.assert_allclose(cloud_to_numpy(cloud)[..., 2], depth[::STRIDE, ::STRIDE], rtol=1e-6)
        assert cloud_colors(cloud).std() > 5
        # colourised depth for RViz
        col_msg = m[f"{ns}/depth/colorized"][-1]
        assert col_msg.encoding == "bgr8" and (col_msg.width, col_msg.height) == (NET_W, NET_H)
        # odometry: odom -> base_link, one per frame, stamps match, pose moves and stays finite
        odoms = m[f"{ns}/odom"]
        assert len(odoms) == len(stamps)
        assert odoms[-1].header.frame_id == "odom" and odoms[-1].child_frame_id == "base_link"
        positions = np.array([[o.pose.pose.position.x, o.pose.pose.position.y, o.pose.pose.position.z] for o in odoms])
        assert np.isfinite(positions).all()
        np.testing.assert_allclose(positions[0], 0.0, atol=1e-12)  # chain starts at the origin (REP 105)
        assert np.linalg.norm(positions[-1] - positions[0]) > 0, "odometry did not advance"
        assert np.linalg.norm(np.diff(positions, axis=0), axis=1)[1:].min() > 0
        # /tf carries the same odom -> base_link; /tf_static the camera mount
        tfs = [t for msg in m["/tf"] for t in msg.transforms if t.child_frame_id == "base_link"]
        assert len(tfs) >= len(stamps) - 1
        last_tf = [t for t in tfs if abs(stamp_of(t) - stamps[-1]) < 1e-6][0]
        assert last_tf.header.frame_id == "odom"
        assert last_tf.transform.translation.x == pytest.approx(positions[-1, 0])
        col.wait(lambda: any(t.child_frame_id == "test_cam_optical" for msg in m["/tf_static"] for t in msg.transforms),
                 "/tf_static base_link -> test_cam_optical", proc.log)
        mount = [t for msg in m["/tf_static"] for t in msg.transforms if t.child_frame_id == "test_cam_optical"][0]
        assert mount.header.frame_id == "base_link"
        assert mount.transform.translation.z == pytest.approx(1.5)
        assert proc.alive()
    finally:
        col.close()
        feed.close()
        assert proc.stop() in (0, -2), proc.log()


def test_camera_resolution_and_compressed_input(tmp_path, ros_context, frames):
    seq, data = frames
    ns = "/t_cmp"
    proc, col, feed = _start(tmp_path, ros_context, ns, {"depth_resolution": "camera", "image_transport": "compressed",
                                                        "points_rgb": False}, compressed=True)
    try:
        _, image, _, _, _ = data[0]
        ok, buf = cv2.imencode(".png", cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
        msg = CompressedImage(format="png")
        msg.data = buf.tobytes()
        assert _send_and_wait(col, feed, ns, image, seq.K, 5.0, msg=msg), proc.log()
        depth_msg = col.messages[f"{ns}/depth/image"][-1]
        assert (depth_msg.width, depth_msg.height) == (CAM_W, CAM_H)
        assert col.spin_until(lambda: len(col.messages[f"{ns}/points"]) > 0 and len(col.messages[f"{ns}/depth/camera_info"]) > 0,
                              60), "waiting for points and depth/camera_info\n" + proc.log()
        info = col.messages[f"{ns}/depth/camera_info"][-1]
        np.testing.assert_allclose(np.array(info.k).reshape(3, 3), seq.K, rtol=1e-9)
        # the network saw rows 20..99 of the 4:3 frame (its 2:1 centre crop): roi says so, depth is NaN outside
        assert (info.roi.y_offset, info.roi.x_offset, info.roi.height, info.roi.width) == (20, 0, 80, CAM_W)
        depth = image_to_numpy(depth_msg)
        assert np.isnan(depth[:20]).all() and np.isnan(depth[100:]).all() and np.isfinite(depth[20:100]).all()
        cloud = col.messages[f"{ns}/points"][-1]
        assert [f.name for f in cloud.fields] == ["x", "y", "z"]
        assert "the network sees 160x80 of the 160x120 camera image" in proc.log()
    finally:
        col.close()
        feed.close()
        proc.stop()


BAD_INPUTS = [
    # (description, mutate(image msg, info msg, stamp of the last good frame) -> (img, info), expected text in the warning)
    ("unsupported encoding", lambda img, info, t: (_with(img, encoding="yuv422"), info), "encoding='yuv422'"),
    ("zero size", lambda img, info, t: (_with(img, width=0, step=0, data=b""), info), "width=0"),
    ("step too small", lambda img, info, t: (_with(img, step=img.step - 3), info), "step="),
    ("data length", lambda img, info, t: (_with(img, data=bytes(img.data)[:-7]), info), "data="),
    ("huge size", lambda img, info, t: (_with(img, width=10000, height=10000, step=30000), info), "exceeds max_image_pixels"),
    ("NaN focal length", lambda img, info, t: (img, _with(info, k=[float("nan")] + list(info.k[1:]))), "non-finite"),
    ("zero focal length", lambda img, info, t: (img, _with(info, k=list(info.k[:4]) + [0.0] + list(info.k[5:]))), "k[4] (fy)=0.0"),
    ("absurd focal length", lambda img, info, t: (img, _with(info, k=[1e300] + list(info.k[1:]))), "k[0] (fx)=1e+300"),
    ("k[8] zero", lambda img, info, t: (img, _with(info, k=list(info.k[:8]) + [0.0])), "k[8] 1"),
    ("camera_info size", lambda img, info, t: (img, _with(info, width=info.width * 2)), "camera_info size differs"),
    ("zero stamp", lambda img, info, t: (_with(img, header=Header(stamp=stamp_msg(0.0), frame_id="test_cam_optical")), info),
     "not set"),
    ("duplicated stamp", lambda img, info, t: (_with(img, header=Header(stamp=stamp_msg(t), frame_id="test_cam_optical")), info),
     "not after the last"),
    ("stamp far ahead", lambda img, info, t: (_with(img, header=Header(stamp=stamp_msg(2.1e9), frame_id="test_cam_optical")), info),
     "ahead of the node's clock"),
]


def _with(msg, **fields):
    out = type(msg)()
    for name in msg.get_fields_and_field_types():
        setattr(out, name, getattr(msg, name))
    for k, v in fields.items():
        setattr(out, k, v)
    return out


def test_bad_input_is_reported_and_the_next_good_frame_published(tmp_path, ros_context, frames):
    from diagnostic_msgs.msg import DiagnosticArray

    seq, data = frames
    ns = "/t_bad"
    # No fallback intrinsics: frames without a valid camera_info must be dropped, not guessed. Odometry on: a bad
    # stamp must never move the pose.
    proc, col, feed = _start(tmp_path, ros_context, ns, {"publish_odometry": True, "input_timeout": 60.0, "max_frame_gap": 5.0})
    diag = Collector(ros_context, {"/diagnostics": DiagnosticArray})
    try:
        _, image, _, _, _ = data[1]
        t = 50.0
        assert _send_and_wait(col, feed, ns, image, seq.K, t), proc.log()
        t_last = t
        for i, (what, mutate, expected) in enumerate(BAD_INPUTS):
            header = Header(stamp=stamp_msg(t + 1 + i), frame_id="test_cam_optical")
            good_img = fill_image_msg(Image(header=header), image, "rgb8")
            good_info = camera_info_msg(header, seq.K, CAM_W, CAM_H)
            bad_img, bad_info = mutate(good_img, good_info, t_last)
            bad_stamp = stamp_of(bad_img)
            with_stamp = lambda topic="depth/image": [m for m in col.messages[f"{ns}/{topic}"]  # noqa: E731
                                                if abs(stamp_of(m) - bad_stamp) < 1e-6]
            n_before = len(with_stamp())     # a duplicated stamp is the last good frame's
            feed.pub_info.publish(bad_info)
            col.spin_until(lambda: False, 0.3)  # let camera_info arrive first
            feed.pub_img.publish(bad_img)
            assert proc.wait_for_log(expected, EVENT_CEILING), f"{what}: no warning containing {expected!r}\n" + proc.log()
            assert proc.alive(), f"{what}: node died\n" + proc.log()
            col.spin_until(lambda: False, 0.5)
            if bad_info is good_info:          # the image is at fault: the frame is dropped
                assert not with_stamp()[n_before:], f"{what}: a bad frame was published"
            else:                              # only its camera_info is: the frame keeps the last valid K
                assert all(np.allclose(np.array(m.k).reshape(3, 3), network_K(seq.K), atol=1)
                           for m in with_stamp("depth/camera_info")), f"{what}: published with the broken K"
            # the next good frame goes through
            t_last = t + 1 + i + 0.5
            assert _send_and_wait(col, feed, ns, image, seq.K, t_last), f"{what}: next good frame not published\n" + proc.log()
        log = proc.log()
        assert "/t_bad/image" in log and "frame dropped" in log and "Traceback" not in log
        # odometry never restarted: one chain from the first frame to the last, no jump to the origin
        assert "odometry chain restarted" not in log, log
        # /diagnostics says frames were refused, by reason
        assert diag.spin_until(lambda: any(_status(a, "input") and int(_status(a, "input")["frames refused"]) >= len(BAD_INPUTS) - 1
                                           for a in diag.messages["/diagnostics"]), 10), proc.log()
        values = [_status(a, "input") for a in diag.messages["/diagnostics"] if _status(a, "input")][-1]
        assert int(values["refused: stamp not after last"]) == 1 and int(values["refused: image too large"]) == 1
        assert int(values["refused: camera_info k"]) >= 2 and int(values["refused: stamp zero"]) == 1
    finally:
        diag.close()
        col.close()
        feed.close()
        proc.stop()


def _status(array, name):
    """The key-value pairs of status ``<node>: name`` in a DiagnosticArray, or None."""
    for status in array.status:
        if status.name.endswith(f": {name}"):
            return {kv.key: kv.value for kv in status.values}
    return None


def _level(array, name):
    for status in array.status:
        if status.name.endswith(f": {name}"):
            return status.level[0] if isinstance(status.level, bytes) else status.level
    return None


def test_diagnostics_warn_while_frames_are_refused_and_error_when_nothing_arrives(tmp_path, ros_context, frames):
    from diagnostic_msgs.msg import DiagnosticArray

    seq, data = frames
    ns = "/t_diag"
    proc, col, feed = _start(tmp_path, ros_context, ns, {"input_timeout": 2.0, "diagnostics_period": 0.25,
                                                         "expected_rate_min": 0.0})
    diag = Collector(ros_context, {"/diagnostics": DiagnosticArray})
    try:
        # this node's statuses only: their names carry its namespace (t_diag/monodepth: input)
        ours = lambda: [a for a in diag.messages["/diagnostics"] if _status(a, "input") is not None and  # noqa: E731
                        all(s.name.startswith("t_diag/monodepth: ") for s in a.status)]
        # nothing has arrived for more than input_timeout: input and outputs are ERROR
        diag.wait(lambda: any(_level(a, "input") == 2 and _level(a, "outputs") == 2 for a in ours()),
                  "input and outputs ERROR before any frame", proc.log)
        # refused frames (a wrong encoding) keep arriving: input WARN naming the reason, not OK. They are sent until
        # the WARN shows: a fixed burst can fall inside the backend's warm-up, and input_timeout after the burst the
        # input is rightly ERROR again (nothing arrives), so a slow warm-up would hide the WARN window.
        diag.messages["/diagnostics"].clear()
        _, image, _, _, _ = data[0]
        warned_now = lambda: any(_level(a, "input") == 1 for a in ours())  # noqa: E731
        deadline = time.monotonic() + EVENT_CEILING
        i = 0
        while not warned_now():
            assert time.monotonic() < deadline, f"waited {EVENT_CEILING:g} s for input WARN while frames are refused\n{proc.log()}"
            header = Header(stamp=stamp_msg(10.0 + 0.1 * i), frame_id="test_cam_optical")
            feed.pub_info.publish(camera_info_msg(header, seq.K, CAM_W, CAM_H))
            feed.pub_img.publish(_with(fill_image_msg(Image(header=header), image, "rgb8"), encoding="yuv422"))
            diag.spin_until(warned_now, 0.2)
            i += 1
        warned = [a for a in ours() if _level(a, "input") == 1]
        status = [s for s in warned[-1].status if s.name.endswith(": input")][0]
        assert "refused" in status.message and "bad encoding" in status.message
        assert all(_level(a, "outputs") != 0 for a in ours())      # nothing published: never OK
        # good frames: outputs OK; inference says the networks are untrained and depth relative (WARN, honest)
        good_from = 10.0 + 0.1 * i + 1.0   # after the last refused frame's stamp
        for j in range(3):
            assert _send_and_wait(col, feed, ns, image, seq.K, good_from + 0.1 * j), proc.log()
        diag.messages["/diagnostics"].clear()
        diag.wait(lambda: any(_level(a, "outputs") == 0 for a in ours()), "outputs OK after good frames", proc.log)
        inference = [_status(a, "inference") for a in ours()][-1]
        assert inference["depth is metric"] == "no" and "torch" in inference["backend"] and inference["network size"] == "128x64"
    finally:
        diag.close()
        col.close()
        feed.close()
        proc.stop()


def test_an_unrectified_camera_is_warned_about_once_and_shown_in_diagnostics(tmp_path, ros_context, frames):
    """camera_info of a fisheye (equidistant, non-zero D): the node deprojects with K alone, so it says so once,
    naming the topic, the model and the coefficients and pointing to image_proc; /diagnostics shows it."""
    from diagnostic_msgs.msg import DiagnosticArray

    seq, data = frames
    ns = "/t_rect"
    proc, col, feed = _start(tmp_path, ros_context, ns, {"diagnostics_period": 0.25})
    diag = Collector(ros_context, {"/diagnostics": DiagnosticArray})
    try:
        for i in range(3):
            header = Header(stamp=stamp_msg(40.0 + 0.1 * i), frame_id="test_cam_optical")
            info = camera_info_msg(header, seq.K, CAM_W, CAM_H, distortion_model="equidistant")
            info.d = [0.12, -0.03, 0.004, 0.0]
            assert _send_and_wait(col, feed, ns, data[i][1], seq.K, 40.0 + 0.1 * i, info=info), proc.log()
        expected = "/t_rect/camera_info: distortion_model 'equidistant' with D = [0.12, -0.03, 0.004, 0]"
        assert proc.wait_for_log(expected, EVENT_CEILING), proc.log()
        assert "image_proc" in proc.log() and proc.log().count(expected) == 1      # once, not per frame
        rectified = lambda: [_status(a, "input")["rectified"] for a in diag.messages["/diagnostics"]  # noqa: E731
                             if _status(a, "input") and "rectified" in _status(a, "input")]
        diag.wait(lambda: any(v.startswith("no: distortion_model 'equidistant'") for v in rectified()),
                  "input status value 'rectified: no ...'", proc.log)
    finally:
        diag.close()
        col.close()
        feed.close()
        proc.stop()


def test_parameters_validated_on_set_and_at_start(tmp_path, ros_context):
    from rcl_interfaces.msg import Parameter, ParameterType, ParameterValue
    from rcl_interfaces.srv import DescribeParameters, SetParameters

    ns = "/t_par"
    proc = start_node(tmp_path, {**BASE_PARAMS, "netwrok_width": 256}, ns, name="params")   # a typo at start
    try:
        assert proc.wait_for_log("listening on", EVENT_CEILING), proc.log()
        assert "ignored: 'netwrok_width' is not a parameter of this node" in proc.log()
        client = ros_context.create_client(SetParameters, f"{ns}/monodepth/set_parameters")
        assert client.wait_for_service(timeout_sec=EVENT_CEILING)

        def set_param(name, value):
            v = ParameterValue()
            if isinstance(value, str):
                v.type, v.string_value = ParameterType.PARAMETER_STRING, value
            elif isinstance(value, int):
                v.type, v.integer_value = ParameterType.PARAMETER_INTEGER, value
            else:
                v.type, v.double_value = ParameterType.PARAMETER_DOUBLE, value
            fut = client.call_async(SetParameters.Request(parameters=[Parameter(name=name, value=v)]))
            rclpy.spin_until_future_complete(ros_context, fut, timeout_sec=10)
            return fut.result().results[0]

        r = set_param("scale_mode", "metric")
        assert not r.successful and "not one of" in r.reason
        r = set_param("scale_mdoe", "fixed")          # a typo: refused, naming it (rclpy's own says "[]")
        assert not r.successful and r.reason.startswith("scale_mdoe: not a parameter of this node"), r.reason
        r = set_param("points_stride", 0)
        assert not r.successful
        r = set_param("network_size", "320x96")  # read-only: the model is built at start
        assert not r.successful
        r = set_param("scale_mode", "fixed")
        assert r.successful, r.reason
        r = set_param("scale_factor", 2.5)
        assert r.successful, r.reason
        describe = ros_context.create_client(DescribeParameters, f"{ns}/monodepth/describe_parameters")
        assert describe.wait_for_service(timeout_sec=10)
        fut = describe.call_async(DescribeParameters.Request(names=["points_stride", "scale_mode"]))
        rclpy.spin_until_future_complete(ros_context, fut, timeout_sec=10)
        d_stride, d_mode = fut.result().descriptors
        assert d_stride.description and d_stride.integer_range[0].from_value == 1
        assert "camera_height" in d_mode.additional_constraints
    finally:
        proc.stop()
    # a bad value from the command line stops the node with a message naming the parameter
    bad = start_node(tmp_path, {**BASE_PARAMS, "network_size": "100x64"}, "/t_par2", name="badparam")
    try:
        bad.proc.wait(90)
        assert bad.proc.returncode != 0
        assert "parameter 'network_size': '100x64': expected multiples of 32" in bad.log(), bad.log()
    finally:
        bad.stop()


def _depth_from_node(tmp_path, ros_context, ns, params, image, K, name):
    proc, col, feed = _start(tmp_path, ros_context, ns, {**params, "publish_odometry": True}, name=name)
    try:
        assert _send_and_wait(col, feed, ns, image, K, 7.0), proc.log()
        assert _send_and_wait(col, feed, ns, image, K, 7.1), proc.log()
        col.spin_until(lambda: len(col.messages[f"{ns}/odom"]) >= 2 and len(col.messages[f"{ns}/points"]) >= 2, EVENT_CEILING)
        return (image_to_numpy(col.messages[f"{ns}/depth/image"][-1]).copy(), proc.log(), col.messages[f"{ns}/odom"],
                col.messages[f"{ns}/points"][-1])
    finally:
        col.close()
        feed.close()
        proc.stop()


# Stated tolerance between backends on the node's output: both take the same cropped and resized uint8 frame;
# ONNX Runtime and PyTorch compute in their own order: a few 1e-3 relative at most.
NODE_BACKEND_REL_TOL = 1e-2


def test_node_on_onnxruntime_publishes_the_same_depth_as_torch(tmp_path, ros_context, frames, monkeypatch):
    pytest.importorskip("onnxruntime")
    monkeypatch.setenv("ROS2_MONODEPTH_CACHE", str(tmp_path / "cache"))
    seq, data = frames
    image = data[2][1]
    d_ort, log, odom, cloud = _depth_from_node(tmp_path, ros_context, "/t_ort", {"backend": "onnxruntime"}, image,
                                               seq.K, "ort")
    assert "onnxruntime" in log and "CPUExecutionProvider" in log
    assert f"backend warmed up on a blank {NET_W}x{NET_H} frame" in log   # static graph: warmed before any frame
    assert len(odom) >= 2
    # the graph takes what the network sees (the contract's centre crop, area-resized): the cloud is coloured from it
    from ros2_monodepth.core.model_contract import CropResize

    network_input = CropResize.make((CAM_H, CAM_W), (NET_H, NET_W), "center").apply(image)
    np.testing.assert_array_equal(cloud_colors(cloud), network_input[::STRIDE, ::STRIDE])
    d_torch, _, _, _ = _depth_from_node(tmp_path, ros_context, "/t_trc", {"backend": "torch"}, image, seq.K, "torch")
    assert d_ort.shape == d_torch.shape == (NET_H, NET_W)
    rel = np.abs(d_ort - d_torch) / d_torch
    assert float(np.median(rel)) < NODE_BACKEND_REL_TOL / 10 and float(rel.max()) < NODE_BACKEND_REL_TOL


def test_points_are_built_only_while_someone_subscribes(tmp_path, ros_context, frames):
    from diagnostic_msgs.msg import DiagnosticArray

    seq, data = frames
    ns = "/t_lazy"
    proc = start_node(tmp_path, {**BASE_PARAMS, "publish_odometry": False}, ns, name="lazy")
    depth_only = Collector(ros_context, {f"{ns}/depth/image": Image, "/diagnostics": DiagnosticArray})
    feed = Feeder(ros_context, ns)
    later = None
    try:
        assert proc.wait_for_log("listening on", EVENT_CEILING), proc.log()
        assert feed.wait_for_subscriber(depth_only), proc.log()
        depth_only.spin_until(lambda: False, 1.0)
        for i in range(3):
            assert _send_and_wait(depth_only, feed, ns, data[i][1], seq.K, 50.0 + 0.1 * i), proc.log()

        def stages():
            for arr in depth_only.messages["/diagnostics"]:
                outputs = _status(arr, "outputs")
                if outputs is not None and outputs.get("frames published") == "3":
                    return _status(arr, "inference")
            return None

        assert depth_only.spin_until(lambda: stages() is not None, EVENT_CEILING), proc.log()
        assert "stage publish mean (ms)" in stages() and "stage points mean (ms)" not in stages()
        # a viewer subscribes: from then on the cloud is built and published (the colorized image always is)
        later = Collector(ros_context, {f"{ns}/points": PointCloud2, f"{ns}/depth/colorized": Image})
        later.spin_until(lambda: False, 1.5)
        t = 60.0
        deadline = time.monotonic() + EVENT_CEILING
        for i in range(10_000):   # frames until the new subscriber is matched and served (discovery takes its time)
            feed.send(data[3][1], seq.K, t + 0.1 * i)
            if (later.spin_until(lambda: later.messages[f"{ns}/points"] and later.messages[f"{ns}/depth/colorized"], 2.0)
                    or time.monotonic() > deadline):
                break
        assert later.messages[f"{ns}/points"] and later.messages[f"{ns}/depth/colorized"], proc.log()
    finally:
        depth_only.close()
        if later is not None:
            later.close()
        feed.close()
        proc.stop()


def test_synthetic_camera_publishes_images_and_camera_info(tmp_path, ros_context):
    import os
    import subprocess
    import sys

    ns = "/t_syncam"
    qos = rclpy.qos.qos_profile_sensor_data
    got = {"image": [], "info": []}
    s1 = ros_context.create_subscription(Image, f"{ns}/image", lambda m: got["image"].append(m), qos)
    s2 = ros_context.create_subscription(CameraInfo, f"{ns}/camera_info", lambda m: got["info"].append(m), qos)
    proc = subprocess.Popen([sys.executable, "-m", "ros2_monodepth.ros.synthetic_camera", "--width", "64", "--height", "48",
                             "--frames", "3", "--rate", "10", "--ros-args", "-r", f"__ns:={ns}"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=dict(os.environ))
    try:
        col = Collector(ros_context, {})
        assert col.spin_until(lambda: len(got["image"]) >= 3 and len(got["info"]) >= 3, EVENT_CEILING), proc.poll()
        img = got["image"][-1]
        assert (img.width, img.height, img.encoding) == (64, 48, "rgb8")
        assert img.header.frame_id == "camera_optical_frame"
        info = got["info"][-1]
        assert (info.width, info.height) == (64, 48) and info.k[0] > 0
        assert image_to_numpy(img).std() > 5  # a rendered scene, not a blank frame
    finally:
        proc.terminate()
        proc.wait(10)
        ros_context.destroy_subscription(s1)
        ros_context.destroy_subscription(s2)


def test_a_replayed_bag_restarts_odometry_at_the_origin_once_the_jump_is_confirmed(tmp_path, ros_context, frames):
    seq, data = frames
    ns = "/t_jump"
    proc, col, feed = _start(tmp_path, ros_context, ns, {"time_jump_confirm_frames": 2, "max_frame_gap": 5.0})
    try:
        for i in range(4):
            assert _send_and_wait(col, feed, ns, data[i][1], seq.K, 100.0 + 0.1 * i), proc.log()
        col.spin_until(lambda: len(col.messages[f"{ns}/odom"]) >= 4, EVENT_CEILING)
        moved = col.messages[f"{ns}/odom"][-1].pose.pose.position
        assert abs(moved.x) + abs(moved.y) + abs(moved.z) > 0
        # the bag starts again: the first frame back in time is dropped (one bad stamp never resets the pose) ...
        feed.send(data[0][1], seq.K, 10.0)
        assert proc.wait_for_log("jumps back", EVENT_CEILING), proc.log()
        assert not [m for m in col.messages[f"{ns}/depth/image"] if abs(stamp_of(m) - 10.0) < 1e-6]
        # ... the second confirms the jump: odometry restarts at the origin, and says so
        assert _send_and_wait(col, feed, ns, data[1][1], seq.K, 10.1), proc.log()
        col.spin_until(lambda: any(abs(stamp_of(m) - 10.1) < 1e-6 for m in col.messages[f"{ns}/odom"]), EVENT_CEILING)
        restart = [m for m in col.messages[f"{ns}/odom"] if abs(stamp_of(m) - 10.1) < 1e-6][0].pose.pose.position
        assert (restart.x, restart.y, restart.z) == (0.0, 0.0, 0.0)
        assert "time jumped back" in proc.log() and "restarted at the origin" in proc.log()
    finally:
        col.close()
        feed.close()
        proc.stop()


def test_compressed_input_faults_are_refused_before_decoding(tmp_path, ros_context, frames):
    seq, data = frames
    ns = "/t_cbad"
    proc, col, feed = _start(tmp_path, ros_context, ns, {"image_transport": "compressed", "max_image_pixels": 160 * 120 * 2,
                                                        "max_frame_gap": 5.0}, compressed=True)
    try:
        image = data[0][1]
        ok, good = cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
        big = cv2.imencode(".png", np.zeros((600, 800, 3), np.uint8))[1]
        depth_png = cv2.imencode(".png", np.zeros((CAM_H, CAM_W), np.uint16))[1]
        cases = [(CompressedImage(format="16UC1; compressedDepth png", data=bytes(12) + depth_png.tobytes()), "compressedDepth"),
                 (CompressedImage(format="png", data=big.tobytes()), "exceeds max_image_pixels"),
                 (CompressedImage(format="jpeg", data=good.tobytes()[:200]), "could not be decoded"),
                 (CompressedImage(format="bmp", data=good.tobytes()), "only jpeg and png")]
        t = 30.0
        for msg, expected in cases:
            feed.send(image, seq.K, t, msg=msg)
            assert proc.wait_for_log(expected, EVENT_CEILING), f"{expected}\n" + proc.log()
            t += 0.5
            assert _send_and_wait(col, feed, ns, image, seq.K, t, msg=CompressedImage(format="jpeg", data=good.tobytes())), \
                proc.log()
            t += 0.5
        assert proc.alive() and "Traceback" not in proc.log()
    finally:
        col.close()
        feed.close()
        proc.stop()


def _static_transform(parent, child, xyz, rpy):
    from geometry_msgs.msg import TransformStamped

    from ros2_monodepth.core.geometry import matrix_to_quaternion, rpy_to_matrix

    t = TransformStamped()
    t.header.frame_id, t.child_frame_id = parent, child
    t.transform.translation.x, t.transform.translation.y, t.transform.translation.z = xyz
    q = matrix_to_quaternion(rpy_to_matrix(*rpy))
    t.transform.rotation.x, t.transform.rotation.y, t.transform.rotation.z, t.transform.rotation.w = (float(v) for v in q)
    return t


def test_the_robots_tf_tree_gives_the_camera_pose_and_no_second_parent_is_published(tmp_path, ros_context, frames):
    """The URDF (robot_state_publisher) already publishes base_link -> urdf_camera_link -> urdf_cam_optical: the node
    takes the camera's pose from it and publishes no mount of its own; a camera nobody places gets the fallback."""
    from rclpy.qos import DurabilityPolicy

    seq, data = frames
    static_qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
    urdf = ros_context.create_publisher(TFMessage, "/tf_static", static_qos)
    urdf.publish(TFMessage(transforms=[
        _static_transform("base_link", "urdf_camera_link", (0.3, 0.1, 0.8), (0.0, 0.2, math.pi / 2)),
        _static_transform("urdf_camera_link", "urdf_cam_optical", (0.0, 0.0, 0.0), (-math.pi / 2, 0.0, -math.pi / 2))]))
    ns = "/t_urdf"
    proc, col, feed = _start(tmp_path, ros_context, ns, {"camera_mount_wait": 1.0}, frame_id="urdf_cam_optical")
    try:
        for i in range(3):
            assert _send_and_wait(col, feed, ns, data[i][1], seq.K, 70.0 + 0.1 * i), proc.log()
        assert proc.wait_for_log("camera pose from the robot's TF tree", EVENT_CEILING), proc.log()
        assert "xyz [0.3, 0.1, 0.8]" in proc.log() and "camera_mount.* is not published" in proc.log()
        col.spin_until(lambda: False, 1.0)
        parents = {t.header.frame_id for msg in col.messages["/tf_static"] for t in msg.transforms
                   if t.child_frame_id == "urdf_cam_optical"}
        assert parents == {"urdf_camera_link"}, parents            # one parent: the URDF's
        # a camera frame nothing places: after camera_mount_wait the node publishes camera_mount.* for it
        feed.frame_id = "loose_cam_optical"
        placed = lambda: any(t.child_frame_id == "loose_cam_optical" and t.header.frame_id == "base_link"  # noqa: E731
                             for msg in col.messages["/tf_static"] for t in msg.transforms)
        for i in range(30):                       # a camera keeps sending: the decision comes after camera_mount_wait
            assert _send_and_wait(col, feed, ns, data[i % len(data)][1], seq.K, 71.0 + 0.1 * i), proc.log()
            if col.spin_until(placed, 0.2):
                break
        assert placed(), proc.log()
        # frame names are parameters; the registered colour frame is published while someone listens
        rgb = col.messages[f"{ns}/rgb/image"]
        assert rgb and rgb[-1].encoding == "rgb8" and (rgb[-1].width, rgb[-1].height) == (NET_W, NET_H)
        info = col.messages[f"{ns}/rgb/camera_info"][-1]
        assert (info.width, info.height) == (NET_W, NET_H)
    finally:
        ros_context.destroy_publisher(urdf)
        col.close()
        feed.close()
        proc.stop()


def test_the_camera_mount_is_published_when_frames_stop_before_the_wait_is_over(tmp_path, ros_context, frames):
    """A short bag: one frame, then nothing, while camera_mount_wait is still running. The decision is made on
    time, not at a next frame that never comes, so the camera still gets its place in the robot's TF tree; a
    camera_frame given as a parameter is placed even before any frame arrives."""
    seq, data = frames
    ns = "/t_mount"
    # the wait is longer than start-up and the one frame take, so the frame comes while the node still listens
    proc, col, feed = _start(tmp_path, ros_context, ns, {"camera_mount_wait": 12.0}, frame_id="short_bag_optical")
    placed = lambda frame: lambda: any(t.child_frame_id == frame and t.header.frame_id == "base_link"  # noqa: E731
                                       for msg in col.messages["/tf_static"] for t in msg.transforms)
    try:
        assert _send_and_wait(col, feed, ns, data[0][1], seq.K, 30.0), proc.log()
        assert col.spin_until(placed("short_bag_optical"), EVENT_CEILING), \
            "waiting for /tf_static base_link -> short_bag_optical after the only frame\n" + proc.log()
    finally:
        col.close()
        feed.close()
        proc.stop()
    proc = start_node(tmp_path, {**BASE_PARAMS, "camera_mount_wait": 0.5, "camera_frame": "named_optical"}, "/t_mount2",
                      name="named")
    col = Collector(ros_context, {"/tf_static": TFMessage}, transient=("/tf_static",))
    try:
        assert col.spin_until(placed("named_optical"), EVENT_CEILING), \
            "waiting for /tf_static base_link -> named_optical with no frame sent\n" + proc.log()
    finally:
        col.close()
        proc.stop()


def test_a_checkpoint_runs_at_the_size_it_was_trained_at(tmp_path, ros_context, frames):
    """Trained at 192x64 (its metadata says so): the node runs it there without being told, and says where the
    setting came from; a parameter still overrides it, with a warning."""
    import torch

    from ros2_monodepth.core.checkpoint import CheckpointMetadata, save_checkpoint
    from ros2_monodepth.core.networks import DepthNet, PoseNet

    torch.manual_seed(0)
    ck = save_checkpoint(tmp_path / "ck", DepthNet(18).eval(), PoseNet(18).eval(),
                         CheckpointMetadata(network_size=(64, 192), min_depth=0.5, max_depth=50.0, metric=True,
                                            scale_source="velocity supervision from /odom"))
    seq, data = frames
    ns = "/t_ckpt"
    proc, col, feed = _start(tmp_path, ros_context, ns, {"checkpoint_dir": str(ck), "network_size": ""})
    try:
        assert _send_and_wait(col, feed, ns, data[0][1], seq.K, 5.0), proc.log()
        depth = col.messages[f"{ns}/depth/image"][-1]
        assert (depth.width, depth.height) == (192, 64)
        assert "network 192x64 (checkpoint), depth range 0.5-50 (checkpoint)" in proc.log()
        assert np.nanmax(image_to_numpy(depth)) <= 50.0 + 1e-3
        # a metric checkpoint is published as it is under the default scale_mode auto
        assert "scale_mode auto -> checkpoint: metric (the checkpoint is metric (velocity supervision from /odom))" in proc.log()
    finally:
        col.close()
        feed.close()
        proc.stop()
    # the names of earlier versions (network_width / network_height) still work, with a warning naming the new one
    proc, col, feed = _start(tmp_path, ros_context, ns + "2", {"checkpoint_dir": str(ck), "network_size": "",
                                                              "network_width": 128, "network_height": 64},
                             name="override")
    try:
        assert _send_and_wait(col, feed, ns + "2", data[0][1], seq.K, 5.0), proc.log()
        assert col.messages[f"{ns}2/depth/image"][-1].width == 128
        assert "the checkpoint was trained at 192x64; running it at 128x64" in proc.log()
        assert "parameter 'network_width' was renamed to network_size ('WIDTHxHEIGHT', e.g. '320x96'); used as " \
               "network_size: '128x64'" in proc.log(), proc.log()
        assert "is not a parameter" not in proc.log()
    finally:
        col.close()
        feed.close()
        proc.stop()


@pytest.mark.parametrize("camera", [(160, 120), (224, 126)], ids=["4:3", "16:9"])
def test_the_node_publishes_the_depth_the_evaluation_scores(tmp_path, ros_context, camera):
    """A 2:1 checkpoint, a 4:3 or 16:9 camera with ground-truth depth: the node's published depth is the depth
    ``ros2-monodepth-eval`` computes for the same frames (same crop, resize, backend), and so is its abs_rel."""
    import torch

    from ros2_monodepth.core.checkpoint import CheckpointMetadata, save_checkpoint
    from ros2_monodepth.core.networks import DepthNet, PoseNet
    from ros2_monodepth_training.config import EvalConfig
    from ros2_monodepth_training.dataset import ResizePlan
    from ros2_monodepth_training.evaluate import GroundTruthFrame, evaluate_depth, evaluate_published, predict_as_node

    width, height = camera
    torch.manual_seed(4)
    ck = tmp_path / "ck"
    meta = CheckpointMetadata(network_size=(NET_H, NET_W), crop="center")
    save_checkpoint(ck, DepthNet(18).eval(), PoseNet(18).eval(), meta)
    seq = SyntheticSequence(SceneConfig(seed=5), TrajectoryConfig(num_frames=4, fps=10.0, speed=2.0), width, height)
    frames = []
    for i in range(len(seq)):
        t, image, depth, pose, _ = seq.frame(i)
        frames.append(GroundTruthFrame(int(round((20.0 + 0.1 * i) * 1e9)), image, depth, pose))
    ns = "/t_eval" + str(width)
    proc, col, feed = _start(tmp_path, ros_context, ns, {"checkpoint_dir": str(ck), "backend": "torch", "precision": "fp32",
                                                         "network_size": ""})
    try:
        for f in frames:
            assert _send_and_wait(col, feed, ns, f.rgb, seq.K, f.stamp_ns / 1e9), proc.log()
        published = {}
        for msg in col.messages[f"{ns}/depth/image"]:
            published[msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec] = image_to_numpy(msg).astype(np.float32)
    finally:
        col.close()
        feed.close()
        proc.stop()
    cfg = EvalConfig(bags=[], backend="torch", precision="fp32")
    plan, depths, _, _ = predict_as_node(str(ck), cfg, frames, seq.K, meta)
    training = ResizePlan.make((height, width), (NET_H, NET_W), seq.K, "center")
    assert plan.crop == training.crop and plan.crop != (0, 0, height, width)     # the network sees a crop
    for f, d in zip(frames, depths):
        np.testing.assert_allclose(published[f.stamp_ns], d, rtol=1e-5, err_msg="node and evaluation disagree")
    offline = evaluate_depth(frames, depths, plan, cfg.cap_min_depth, cfg.cap_max_depth)
    node = evaluate_published(frames, published, {}, plan, np.eye(4), cfg, metric=False)
    assert node["images"] == len(frames) and node["abs_rel"] == pytest.approx(offline["abs_rel"], rel=1e-5)


def test_odometry_scale_converges_to_the_robots_motion(tmp_path, ros_context):
    """Untrained networks (arbitrary scale) and the robot's wheel odometry on odometry_topic: scale_mode auto picks
    the odometry scale, /diagnostics says metric after a few frames of motion, and from then on the node's odometry
    travels as far as the robot did. The node's own odom output is refused as a source."""
    from diagnostic_msgs.msg import DiagnosticArray

    from ros2_monodepth.core.geometry import matrix_to_quaternion, rpy_to_matrix, se3_inverse

    seq = SyntheticSequence(SceneConfig(seed=5), TrajectoryConfig(num_frames=24, fps=10.0, speed=2.0), CAM_W, CAM_H)
    mount = np.eye(4)
    mount[:3, :3] = rpy_to_matrix(-math.pi / 2, 0.0, -math.pi / 2)
    mount[:3, 3] = (0.0, 0.0, 1.5)
    ns = "/t_oscale"
    proc, col, feed = _start(tmp_path, ros_context, ns, {"odometry_topic": "/robot/wheel_odom", "scale_min_motion": 0.05})
    diag = Collector(ros_context, {"/diagnostics": DiagnosticArray})
    pub_wheel = ros_context.create_publisher(Odometry, "/robot/wheel_odom", QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE))
    try:
        assert "scale_mode auto -> odometry" in proc.log(), proc.log()
        assert col.spin_until(lambda: pub_wheel.get_subscription_count() > 0, EVENT_CEILING), proc.log()
        broken = Odometry(header=Header(stamp=stamp_msg(199.0), frame_id="odom"), child_frame_id="base_link")
        broken.pose.pose.position.x = float("nan")
        pub_wheel.publish(broken)     # refused with topic, field and value; the node goes on
        assert proc.wait_for_log("/robot/wheel_odom: field pose.pose.position = [nan, 0.0, 0.0]: not finite", EVENT_CEILING), proc.log()
        base_positions, metric_at = [], None
        T0 = None
        for i in range(len(seq)):
            t, image, _, T_world_cam, _ = seq.frame(i)
            T_world_base = T_world_cam @ se3_inverse(mount)
            T0 = T_world_base if T0 is None else T0
            T_odom_base = se3_inverse(T0) @ T_world_base
            base_positions.append(T_odom_base[:3, 3])
            wheel = Odometry(header=Header(stamp=stamp_msg(200.0 + t - seq.frame(0)[0]), frame_id="odom"), child_frame_id="base_link")
            q = matrix_to_quaternion(T_odom_base[:3, :3])
            wheel.pose.pose.position.x, wheel.pose.pose.position.y, wheel.pose.pose.position.z = map(float, T_odom_base[:3, 3])
            wheel.pose.pose.orientation.x, wheel.pose.pose.orientation.y, wheel.pose.pose.orientation.z, wheel.pose.pose.orientation.w = map(float, q)
            pub_wheel.publish(wheel)
            assert _send_and_wait(col, feed, ns, image, seq.K, 200.0 + t - seq.frame(0)[0]), f"frame {i}\n" + proc.log()
            # the first diagnostics that count this frame as published say what the node knew after it (an event,
            # not a pause: a loaded machine's diagnostics timer may run late)
            counted = lambda: [a for a in diag.messages["/diagnostics"] if _status(a, "inference")  # noqa: E731
                               and int((_status(a, "outputs") or {}).get("frames published", "0")) >= i + 1]
            diag.wait(lambda: bool(counted()), f"diagnostics after frame {i}", proc.log)
            inference = [_status(counted()[0], "inference")]
            if metric_at is None and inference and inference[-1]["depth is metric"] == "yes":
                metric_at = i
                assert inference[-1]["scale mode"] == "odometry" and "/robot/wheel_odom" in inference[-1]["scale source"]
        # 5 frame pairs of 0.2 m make the scale; diagnostics come every 0.5 s, one frame later at most
        assert metric_at is not None and metric_at <= 8, (metric_at, proc.log())
        col.spin_until(lambda: len(col.messages[f"{ns}/odom"]) >= len(seq), EVENT_CEILING)
        odom = sorted(col.messages[f"{ns}/odom"], key=stamp_of)
        published = np.array([[o.pose.pose.position.x, o.pose.pose.position.y, o.pose.pose.position.z] for o in odom])
        truth = np.array(base_positions)
        later = slice(10, len(seq))
        node_path = np.linalg.norm(np.diff(published[later], axis=0), axis=1).sum()
        true_path = np.linalg.norm(np.diff(truth[later], axis=0), axis=1).sum()
        assert true_path > 2.0 and abs(node_path / true_path - 1.0) < 0.2, (node_path, true_path)
    finally:
        ros_context.destroy_publisher(pub_wheel)
        diag.close()
        col.close()
        feed.close()
        proc.stop()
    proc2, col2, feed2 = _start(tmp_path, ros_context, ns + "_self", {"odometry_topic": "odom"}, name="self_odom")
    try:
        assert proc2.wait_for_log("is this node's own odometry output", EVENT_CEILING), proc2.log()
    finally:
        col2.close()
        feed2.close()
        proc2.stop()

"""Reading camera frames from bags written with rosbags (both storage formats), with clear errors."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

pytest.importorskip("rosbags")
from rosbags.rosbag2 import StoragePlugin, Writer  # noqa: E402
from rosbags.typesys import Stores, get_typestore  # noqa: E402

from ros2_monodepth.core.bags import BagError, FrameStats, iter_frames, list_topics  # noqa: E402

STORE = get_typestore(Stores.ROS2_JAZZY)


def _image(t_ns: int, arr: np.ndarray, encoding: str = "rgb8"):
    Image = STORE.types["sensor_msgs/msg/Image"]
    Header = STORE.types["std_msgs/msg/Header"]
    Time = STORE.types["builtin_interfaces/msg/Time"]
    return Image(header=Header(stamp=Time(sec=t_ns // 10**9, nanosec=t_ns % 10**9), frame_id="cam"),
                 height=arr.shape[0], width=arr.shape[1], encoding=encoding, is_bigendian=0,
                 step=arr.shape[1] * 3, data=np.ascontiguousarray(arr).reshape(-1))


def _compressed(t_ns: int, arr: np.ndarray):
    Msg = STORE.types["sensor_msgs/msg/CompressedImage"]
    Header = STORE.types["std_msgs/msg/Header"]
    Time = STORE.types["builtin_interfaces/msg/Time"]
    ok, buf = cv2.imencode(".png", cv2.cvtColor(arr, cv2.COLOR_RGB2BGR))
    return Msg(header=Header(stamp=Time(sec=t_ns // 10**9, nanosec=t_ns % 10**9), frame_id="cam"), format="png",
               data=buf.reshape(-1))


@pytest.mark.parametrize("storage", [StoragePlugin.SQLITE3, StoragePlugin.MCAP])
def test_frames_round_trip_and_bad_frames_are_counted(tmp_path, storage):
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 255, (24, 32, 3), dtype=np.uint8) for _ in range(5)]
    bag = tmp_path / "bag"
    with Writer(bag, version=8, storage_plugin=storage) as w:
        raw = w.add_connection("/cam/image", "sensor_msgs/msg/Image", typestore=STORE)
        comp = w.add_connection("/cam/image/compressed", "sensor_msgs/msg/CompressedImage", typestore=STORE)
        for i, f in enumerate(frames):
            t = 10**9 + i * 10**8
            msg = _image(t, f) if i != 2 else _image(t, f, encoding="yuv422")  # one unreadable frame
            w.write(raw, t, STORE.serialize_cdr(msg, "sensor_msgs/msg/Image"))
            w.write(comp, t, STORE.serialize_cdr(_compressed(t, f), "sensor_msgs/msg/CompressedImage"))
    assert list_topics([bag])["/cam/image"] == ("sensor_msgs/msg/Image", 5)
    stats = FrameStats()
    got = list(iter_frames([bag], "/cam/image", stats=stats))
    assert [s for s, _ in got] == [10**9 + i * 10**8 for i in (0, 1, 3, 4)]
    np.testing.assert_array_equal(got[1][1], frames[1])
    assert stats.read == 4 and stats.skipped == 1 and "ImageFormatError (encoding)" in stats.reasons
    comp_frames = list(iter_frames([bag], "/cam/image/compressed", size=(12, 16)))
    assert len(comp_frames) == 5 and comp_frames[0][1].shape == (12, 16, 3)


def test_missing_topic_lists_what_the_bag_has(tmp_path):
    bag = tmp_path / "bag"
    with Writer(bag, version=8) as w:
        c = w.add_connection("/front/image_raw", "sensor_msgs/msg/Image", typestore=STORE)
        w.write(c, 1, STORE.serialize_cdr(_image(1, np.zeros((4, 4, 3), np.uint8)), "sensor_msgs/msg/Image"))
    with pytest.raises(BagError, match=r"'/camera/image' is not in .*the bag has: /front/image_raw \(sensor_msgs/msg/Image\)"):
        list(iter_frames([bag], "/camera/image"))


def test_empty_topic_is_an_error(tmp_path):
    bag = tmp_path / "bag"
    with Writer(bag, version=8) as w:
        w.add_connection("/cam/image", "sensor_msgs/msg/Image", typestore=STORE)
    with pytest.raises(BagError, match="no messages"):
        list(iter_frames([bag], "/cam/image"))

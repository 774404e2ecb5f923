"""Image and point-cloud conversions (the cv_bridge / sensor_msgs_py parts written here)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

pytest.importorskip("sensor_msgs")
from sensor_msgs.msg import CompressedImage, Image  # noqa: E402
from std_msgs.msg import Header  # noqa: E402

from ros2_monodepth.core.pointcloud import RayGrid, pack_rgb_float, write_ply  # noqa: E402
from ros2_monodepth.core.image_codec import ImageFormatError, decode_compressed, image_to_numpy, to_rgb8  # noqa: E402
from ros2_monodepth.ros.image_messages import fill_image_msg  # noqa: E402
from ros2_monodepth.ros.pointcloud2 import build_cloud, cloud_colors, cloud_to_numpy  # noqa: E402

RNG = np.random.default_rng(0)
CASES = {
    "rgb8": RNG.integers(0, 255, (5, 7, 3), dtype=np.uint8),
    "bgr8": RNG.integers(0, 255, (5, 7, 3), dtype=np.uint8),
    "rgba8": RNG.integers(0, 255, (5, 7, 4), dtype=np.uint8),
    "bgra8": RNG.integers(0, 255, (5, 7, 4), dtype=np.uint8),
    "mono8": RNG.integers(0, 255, (5, 7), dtype=np.uint8),
    "mono16": RNG.integers(0, 65535, (5, 7), dtype=np.uint16),
    "32FC1": RNG.random((5, 7), dtype=np.float32),
}


@pytest.mark.parametrize("encoding", sorted(CASES))
def test_round_trip(encoding):
    arr = CASES[encoding]
    msg = fill_image_msg(Image(), arr, encoding)
    assert msg.step == arr.shape[1] * arr.itemsize * (arr.shape[2] if arr.ndim == 3 else 1)
    np.testing.assert_array_equal(image_to_numpy(msg), arr)


@pytest.mark.parametrize("encoding", sorted(CASES))
def test_padded_rows(encoding):
    arr = CASES[encoding]
    row = arr.shape[1] * arr.itemsize * (arr.shape[2] if arr.ndim == 3 else 1)
    step = row + 5
    padded = np.full((arr.shape[0], step), 0xAB, np.uint8)
    padded[:, :row] = arr.reshape(arr.shape[0], -1).view(np.uint8)
    msg = Image(height=arr.shape[0], width=arr.shape[1], encoding=encoding, step=step, is_bigendian=0)
    msg.data = padded.tobytes()
    np.testing.assert_array_equal(image_to_numpy(msg), arr)


def test_big_endian_16_bit():
    arr = CASES["mono16"]
    msg = Image(height=5, width=7, encoding="mono16", step=14, is_bigendian=1)
    msg.data = arr.astype(">u2").tobytes()
    out = image_to_numpy(msg)
    np.testing.assert_array_equal(out, arr)
    assert out.dtype == np.dtype("=u2")


def test_to_rgb8_orders():
    rgb = CASES["rgb8"]
    np.testing.assert_array_equal(to_rgb8(rgb[:, :, ::-1], "bgr8", "rgb"), rgb)
    np.testing.assert_array_equal(to_rgb8(np.dstack([rgb, np.zeros((5, 7), np.uint8)]), "rgba8", "rgb"), rgb)
    bgra = np.dstack([rgb[:, :, ::-1], np.zeros((5, 7), np.uint8)])
    np.testing.assert_array_equal(to_rgb8(bgra, "bgra8", "rgb"), rgb)
    mono = CASES["mono8"]
    assert to_rgb8(mono, "mono8").shape == (5, 7, 3)
    np.testing.assert_array_equal(to_rgb8(mono, "mono8")[:, :, 1], mono)


@pytest.mark.parametrize("fields,expect", [
    (dict(encoding="yuv422"), "encoding"),
    (dict(width=0), "width"),
    (dict(step=3), "step"),
    (dict(data=b"\x00" * 10), "data"),
])
def test_errors_name_the_field(fields, expect):
    msg = fill_image_msg(Image(), CASES["rgb8"], "rgb8")
    for k, v in fields.items():
        setattr(msg, k, v)
    with pytest.raises(ImageFormatError) as err:
        image_to_numpy(msg, ("rgb8", "bgr8"))
    assert err.value.field == expect


def test_compressed_png_exact_and_jpeg_close():
    rgb = np.ascontiguousarray(np.kron(CASES["rgb8"], np.ones((4, 4, 1), np.uint8)))
    for ext, fmt, tol in ((".png", "png", 0), (".jpg", "rgb8; jpeg compressed bgr8", 20)):
        ok, buf = cv2.imencode(ext, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
        msg = CompressedImage(format=fmt)
        msg.data = buf.tobytes()
        out = decode_compressed(msg, "rgb")
        assert out.shape == rgb.shape
        assert np.abs(out.astype(int) - rgb).mean() <= tol  # jpeg of random blocks: a mean bound (a swapped channel order gives ~80)
    bad = CompressedImage(format="jpeg")
    bad.data = b"not an image"
    with pytest.raises(ImageFormatError):
        decode_compressed(bad)


def test_cloud_from_depth():
    K = np.array([[10.0, 0, 2.0], [0, 10.0, 1.0], [0, 0, 1]])
    depth = np.full((4, 6), 2.0, np.float32)
    depth[0, 0] = np.nan
    xyz = RayGrid().points(depth, K, 2)
    assert xyz.shape == (2, 3, 3)
    np.testing.assert_allclose(xyz[1, 2], [(4 - 2.0) / 10 * 2, (2 - 1.0) / 10 * 2, 2.0])
    rgb = np.zeros((2, 3, 3), np.uint8)
    rgb[..., 0] = 255
    cloud = build_cloud(Header(frame_id="cam"), xyz, pack_rgb_float(rgb))
    assert not cloud.is_dense and cloud.point_step == 16 and cloud.row_step == 48
    back = cloud_to_numpy(cloud)
    np.testing.assert_array_equal(np.isnan(back), np.isnan(xyz))
    raw = np.frombuffer(cloud.data, np.uint8).reshape(2, 3, 16)[..., 12:16].copy().view("<u4")[..., 0]
    assert (raw == 0xFF0000).all()
    np.testing.assert_array_equal(cloud_colors(cloud), rgb)
    dense = build_cloud(Header(), np.nan_to_num(xyz))
    assert dense.is_dense and dense.point_step == 12


def test_write_ply(tmp_path):
    pts = np.array([[0, 0, 1], [np.nan, 0, 0], [1, 2, 3]], np.float32)
    n = write_ply(str(tmp_path / "c.ply"), pts, np.full((3, 3), 7, np.uint8))
    data = (tmp_path / "c.ply").read_bytes()
    assert n == 2 and b"element vertex 2" in data
    assert len(data.split(b"end_header\n", 1)[1]) == 2 * 15

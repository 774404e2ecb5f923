"""The README's demo command, small: the node on a generated stream, everything it published saved."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("rclpy")
pytestmark = pytest.mark.ros


def test_demo_writes_bag_pictures_cloud_and_track(tmp_path):
    out = tmp_path / "demo"
    cmd = [sys.executable, "-m", "ros2_monodepth.tools.demo", "--out", str(out), "--no-train", "--frames", "6", "--rate", "4",
           "--width", "160", "--height", "120", "--param", "network_size:=128x64",
           "--param", "precision:=fp32"]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    for name in ("input.png", "depth.png", "depth.npy", "points.ply", "odometry.tum", "ground_truth.tum", "summary.png"):
        assert (out / name).is_file(), name
    import json

    metrics = json.loads((out / "evaluation" / "metrics.json").read_text())
    assert set(metrics) == {"node, published", "untrained"} and 0 < metrics["untrained"]["abs_rel"] < 5
    # the node's own depth and odometry, scored from what it published: all six frames
    published = metrics["node, published"]
    assert 0 < published["abs_rel"] < 5 and published["images"] == 6 and "ate_sim3_m" in published
    assert (out / "evaluation" / "untrained" / "trajectory.png").is_file() and (out / "test_bag" / "metadata.yaml").is_file()
    depth = np.load(out / "depth.npy")
    assert depth.shape == (64, 128) and np.isfinite(depth).all()
    track = np.loadtxt(out / "odometry.tum").reshape(-1, 8)
    assert len(track) == 6 and np.isfinite(track).all()
    from rosbags.highlevel import AnyReader

    with AnyReader([out / "outputs_bag"]) as reader:
        counts = {c.topic: c.msgcount for c in reader.connections}
        assert counts["/demo/depth/image"] == 6 and counts["/demo/odom"] == 6 and counts["/demo/points"] == 6
        conn = [c for c in reader.connections if c.topic == "/demo/depth/image"]
        _, _, raw = next(reader.messages(connections=conn))
        msg = reader.deserialize(raw, conn[0].msgtype)
        assert msg.encoding == "32FC1" and msg.width == 128

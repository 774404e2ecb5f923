"""The Fast DDS profile the launch file, bench and demo use: a shared-memory segment that holds a frame of the
node's output, read by the real Fast DDS of the rclpy wheels (its segment appears in /dev/shm)."""

from __future__ import annotations

import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from ros2_monodepth.ros.dds import FASTDDS_PROFILE_ENV, config_file
from ros2_monodepth.tools.ros_session import loopback_env, use_large_message_dds_profile

PROFILE = Path(__file__).resolve().parents[1] / "config" / "fastdds_large_messages.xml"
LOCALHOST_PROFILE = PROFILE.with_name("fastdds_large_messages_localhost.xml")
NS = "{http://www.eprosima.com/XMLSchemas/fastRTPS_Profiles}"
# one 640x192 frame of output: depth 32FC1, cloud (stride 1, xyzrgb float32), colorized bgr8
FRAME_OUTPUT_BYTES = 640 * 192 * (4 + 16 + 3)


def _segment_size(profile: Path = PROFILE) -> int:
    root = ET.parse(profile).getroot()
    (shm,) = [t for t in root.iter(f"{NS}transport_descriptor") if t.findtext(f"{NS}type") == "SHM"]
    return int(shm.findtext(f"{NS}segment_size"))


def test_profile_segment_holds_several_frames_of_output():
    assert _segment_size() >= 4 * FRAME_OUTPUT_BYTES
    root = ET.parse(PROFILE).getroot()
    participant = root.find(f"{NS}participant")
    assert participant.get("is_default_profile") == "true"
    used = [t.text for t in participant.iter(f"{NS}transport_id")]
    assert {"monodepth_shared_memory", "monodepth_udp"} == set(used)   # UDP stays for other machines


def _udp_whitelist(profile: Path) -> list:
    root = ET.parse(profile).getroot()
    (udp,) = [t for t in root.iter(f"{NS}transport_descriptor") if t.findtext(f"{NS}type") == "UDPv4"]
    return [a.text for a in udp.iter(f"{NS}address")]


def test_localhost_twin_differs_only_by_keeping_udp_on_loopback():
    assert _udp_whitelist(PROFILE) == []                      # other machines (RViz on a laptop) still reach the node
    assert _udp_whitelist(LOCALHOST_PROFILE) == ["127.0.0.1"]
    assert _segment_size(LOCALHOST_PROFILE) == _segment_size()


def test_commands_use_the_profile_unless_the_user_has_one(monkeypatch):
    monkeypatch.delenv(FASTDDS_PROFILE_ENV, raising=False)
    monkeypatch.setenv("ROS_LOCALHOST_ONLY", "1")
    assert use_large_message_dds_profile() == str(LOCALHOST_PROFILE)
    monkeypatch.delenv(FASTDDS_PROFILE_ENV)
    monkeypatch.delenv("ROS_LOCALHOST_ONLY")
    assert use_large_message_dds_profile() == config_file("fastdds_large_messages.xml") == str(PROFILE)
    assert os.environ[FASTDDS_PROFILE_ENV] == str(PROFILE)
    monkeypatch.setenv(FASTDDS_PROFILE_ENV, "/etc/my_profile.xml")
    assert use_large_message_dds_profile() == "/etc/my_profile.xml"


SEGMENT_PROBE = """
import os, rclpy
before = set(os.listdir('/dev/shm'))
rclpy.init()
node = rclpy.create_node('profile_probe')
new = [f for f in set(os.listdir('/dev/shm')) - before if f.startswith('fastrtps_') and not f.endswith('_el')]
print(max((os.path.getsize(os.path.join('/dev/shm', f)) for f in new), default=0))
node.destroy_node()
rclpy.shutdown()
"""


@pytest.mark.ros
@pytest.mark.skipif(not os.path.isdir("/dev/shm"), reason="no /dev/shm: Fast DDS shared memory is not used here")
def test_fast_dds_reads_the_profile_and_makes_the_large_segment():
    pytest.importorskip("rclpy")

    def largest_new_segment(profile: str | None) -> int:
        env = loopback_env({k: v for k, v in os.environ.items() if k != FASTDDS_PROFILE_ENV})
        env["RMW_IMPLEMENTATION"] = "rmw_fastrtps_cpp"
        if profile:
            env[FASTDDS_PROFILE_ENV] = profile
        out = subprocess.run([sys.executable, "-c", SEGMENT_PROBE], env=env, capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        return int(out.stdout.strip().splitlines()[-1])

    default = largest_new_segment(None)
    if default == 0:
        pytest.skip("Fast DDS made no shared-memory segment here")
    assert default < FRAME_OUTPUT_BYTES                       # why the profile exists: 512 KB by default
    assert largest_new_segment(str(PROFILE)) >= _segment_size()
    assert largest_new_segment(str(LOCALHOST_PROFILE)) >= _segment_size()   # Fast DDS parses the twin too

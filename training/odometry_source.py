"""The robot's own motion for velocity supervision: how far the camera moved between consecutive kept frames of each
training sequence, from the odometry recorded in the same bag.

Owns ``attach_travel``: for every usable sequence, the odometry source (a pose topic such as nav_msgs/Odometry on
/odom, or a /tf chain such as odom:base_link) is interpolated at the frames' stamps, moved onto the camera (the
mount given, else the bag's /tf_static from the odometry's child frame to the images' frame_id, else the odometry
is taken as the camera's own), and the distance between consecutive camera positions becomes ``sequence.travel``
(metres, NaN where the odometry does not cover a frame: those pairs are trained photometrically only).

The distance, not the displacement, is supervised (PackNet-SfM's velocity supervision, Guizilini et al., CVPR
2020): it needs no agreement between the odometry's axes and the camera's, only a clock and a metre.

    >>> import numpy as np
    >>> from ros2_monodepth_training.poses import travelled
    >>> float(travelled(np.array([[0, 0, 0], [0.1, 0, 0], [0.1, 0.2, 0]]), np.array([True, True, False]))[0])
    0.1
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Optional, Tuple

import numpy as np

from ros2_monodepth.core.bags import BagError, header_frame_id, open_bags

from .dataset import FrameIndex
from .poses import PoseTrack, RecordedTf, camera_poses_at, mount_from, read_pose_track, read_recorded_tf, travelled


@dataclass
class OdometrySource:
    """Where the robot's motion is in each bag: ``topic`` (any pose type) or ``tf_chain`` ('PARENT:CHILD')."""

    topic: str = ""
    tf_chain: str = ""
    camera_mount: Optional[Tuple[float, ...]] = None   # x y z roll pitch yaw of the camera in the odometry's child frame
    max_gap: float = 0.5                               # s between two odometry poses around a frame, at most

    @property
    def enabled(self) -> bool:
        return bool(self.topic or self.tf_chain)

    def describe(self) -> str:
        return self.topic or f"/tf {self.tf_chain}"


def attach_travel(index: FrameIndex, source: OdometrySource) -> Dict[str, str]:
    """Set ``travel`` and ``travel_source`` on every usable sequence of ``index``; returns a note per sequence (the
    source and camera mount used, or why it has none). A bag without the odometry is not an error: its
    sequences train photometrically only, and the note says so."""
    notes: Dict[str, str] = {}
    mount = mount_from(source.camera_mount)
    cache: Dict[str, Tuple[PoseTrack, RecordedTf]] = {}   # per bag: several cameras share it
    for seq in index.usable:
        if len(seq) < 2:
            continue
        try:
            if seq.bag not in cache:
                with open_bags([Path(seq.bag)]) as reader:
                    recorded = read_recorded_tf(reader)
                    cache[seq.bag] = (read_pose_track(reader, source.topic or None, source.tf_chain or None, recorded),
                                      recorded)
            track, recorded = cache[seq.bag]
        except BagError as exc:
            seq.travel = np.full(len(seq) - 1, np.nan)
            seq.travel_source = "none"
            notes[seq.name] = f"no odometry ({exc}); photometric loss only"
            continue
        how: Dict[str, str] = {}
        poses, valid = camera_poses_at(track, seq.stamps, header_frame_id(seq.raw[0]), recorded, mount,
                                       source.max_gap, how)
        seq.travel = travelled(poses[:, :3, 3], valid)
        seq.travel_source = track.source
        covered = float(np.isfinite(seq.travel).mean()) if len(seq.travel) else 0.0
        notes[seq.name] = f"{track.source} ({covered:.0%} of frame pairs), camera mount: {how['camera mount']}"
    return notes

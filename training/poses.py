"""Poses recorded in bags: what a robot's recording has for ground truth or for its own motion, read and interpolated.

Owns:
- ``read_pose_track``: a pose topic of any of the usual types (geometry_msgs PoseStamped, PoseWithCovarianceStamped,
  TransformStamped, nav_msgs/Odometry), or a chain of the bag's /tf and /tf_static (``PARENT:CHILD``, any number of
  links, moving or fixed), as a ``PoseTrack`` of T_parent_child over time;
- ``PoseTrack.at``: poses at other stamps (camera frames), positions linearly and rotations by slerp between the two
  nearest poses, refused where the nearest poses are more than ``max_gap`` apart (no coverage);
- ``RecordedTf``: the bag's transforms by link, for the chain above and for where the camera sits on the robot
  (the fixed links of /tf_static).

Used by the evaluation (ground truth) and by training's velocity supervision (the robot's odometry).

    >>> track = PoseTrack(np.array([0, 1_000_000_000]), np.stack([np.eye(4), np.eye(4)]), "world", "base", "test")
    >>> track.poses[1, 0, 3] = 2.0
    >>> float(track.at(np.array([500_000_000]), max_gap=2.0)[0][0, 0, 3])
    1.0
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from ros2_monodepth.core.bags import BagError, stamp_ns
from ros2_monodepth.core.geometry import quaternion_to_matrix

POSE_TYPES = ("geometry_msgs/msg/PoseStamped", "geometry_msgs/msg/PoseWithCovarianceStamped",
              "geometry_msgs/msg/TransformStamped", "nav_msgs/msg/Odometry")
TF_TYPE = "tf2_msgs/msg/TFMessage"


def _pose_to_matrix(position: Any, orientation: Any) -> np.ndarray:
    T = np.eye(4)
    T[:3, :3] = quaternion_to_matrix(np.array([orientation.x, orientation.y, orientation.z, orientation.w]))
    T[:3, 3] = [position.x, position.y, position.z]
    return T


def pose_of_message(msg: Any, msgtype: str) -> Tuple[np.ndarray, str, str]:
    """(T_parent_child, parent frame, child frame or '' when the message does not say) of one pose message."""
    if msgtype == "nav_msgs/msg/Odometry":
        return _pose_to_matrix(msg.pose.pose.position, msg.pose.pose.orientation), msg.header.frame_id, msg.child_frame_id
    if msgtype == "geometry_msgs/msg/PoseWithCovarianceStamped":
        return _pose_to_matrix(msg.pose.pose.position, msg.pose.pose.orientation), msg.header.frame_id, ""
    if msgtype == "geometry_msgs/msg/TransformStamped":
        return _pose_to_matrix(msg.transform.translation, msg.transform.rotation), msg.header.frame_id, msg.child_frame_id
    return _pose_to_matrix(msg.pose.position, msg.pose.orientation), msg.header.frame_id, ""


@dataclass
class PoseTrack:
    """T_parent_child over time: ``stamps`` (N,) int64 ns, increasing; ``poses`` (N, 4, 4)."""

    stamps: np.ndarray
    poses: np.ndarray
    parent: str
    child: str
    source: str

    def at(self, stamps_ns: np.ndarray, max_gap: float = 0.5) -> Tuple[np.ndarray, np.ndarray]:
        """(poses (M, 4, 4), valid (M,) bool) at ``stamps_ns``: interpolated between the two nearest poses when
        they are at most ``max_gap`` s apart and around the stamp (never extrapolated); identity where not valid."""
        from scipy.spatial.transform import Rotation

        q = np.asarray(stamps_ns, np.int64)
        out = np.tile(np.eye(4), (len(q), 1, 1))
        valid = np.zeros(len(q), bool)
        if len(self.stamps) == 0:
            return out, valid
        hi = np.searchsorted(self.stamps, q, side="left")
        exact = (hi < len(self.stamps)) & (self.stamps[np.minimum(hi, len(self.stamps) - 1)] == q)
        out[exact] = self.poses[hi[exact]]
        valid[exact] = True
        inner = ~exact & (hi > 0) & (hi < len(self.stamps))
        lo, hi_i = hi[inner] - 1, hi[inner]
        gap = (self.stamps[hi_i] - self.stamps[lo]) / 1e9
        ok = gap <= max_gap
        idx = np.flatnonzero(inner)[ok]
        lo, hi_i = lo[ok], hi_i[ok]
        if len(idx):
            w = ((q[idx] - self.stamps[lo]) / (self.stamps[hi_i] - self.stamps[lo]).astype(np.float64))[:, None]
            out[idx, :3, 3] = (1 - w) * self.poses[lo, :3, 3] + w * self.poses[hi_i, :3, 3]
            r0, r1 = Rotation.from_matrix(self.poses[lo, :3, :3]), Rotation.from_matrix(self.poses[hi_i, :3, :3])
            delta = (r0.inv() * r1).as_rotvec()        # slerp, pair by pair: r0 * exp(w log(r0^-1 r1))
            out[idx, :3, :3] = (r0 * Rotation.from_rotvec(delta * w)).as_matrix()
            valid[idx] = True
        return out, valid


@dataclass
class RecordedTf:
    """The bag's /tf and /tf_static by link: child -> (parent, stamps ns, T_parent_child (N, 4, 4), static)."""

    links: Dict[str, Tuple[str, np.ndarray, np.ndarray, bool]] = field(default_factory=dict)

    def chain(self, parent: str, child: str) -> List[str]:
        """Frames from ``child`` up to ``parent`` (inclusive), or BagError when ``parent`` is not above ``child``."""
        path = [child]
        while path[-1] != parent:
            link = self.links.get(path[-1])
            if link is None or link[0] in path:
                have = ", ".join(f"{p} -> {c}" for c, (p, _, _, _) in sorted(self.links.items())) or "none"
                raise BagError(f"no chain of transforms from '{parent}' to '{child}' in the bag's /tf and /tf_static "
                               f"(links: {have})")
            path.append(link[0])
        return path

    def fixed(self, parent: str, child: str) -> Optional[np.ndarray]:
        """T_parent_child when every link between them is static (a camera's mount), else None."""
        try:
            path = self.chain(parent, child)
        except BagError:
            return None
        T = np.eye(4)
        for frame in path[:-1][::-1]:
            _, _, poses, static = self.links[frame]
            if not static:
                return None
            T = T @ poses[-1]
        return T

    def track(self, parent: str, child: str) -> PoseTrack:
        """T_parent_child at the stamps of the chain's moving links (each moving link interpolated at them)."""
        path = self.chain(parent, child)
        moving = [f for f in path[:-1] if not self.links[f][3]]
        if not moving:
            raise BagError(f"every transform from '{parent}' to '{child}' is static: it does not move")
        stamps = max((self.links[f][1] for f in moving), key=len)
        poses = np.tile(np.eye(4), (len(stamps), 1, 1))
        valid = np.ones(len(stamps), bool)
        for frame in path[:-1][::-1]:
            link_parent, link_stamps, link_poses, static = self.links[frame]
            if static:
                poses = poses @ link_poses[-1]
            else:
                sub, ok = PoseTrack(link_stamps, link_poses, link_parent, frame, "tf").at(stamps, max_gap=1.0)
                poses, valid = poses @ sub, valid & ok
        return PoseTrack(stamps[valid], poses[valid], parent, child, f"/tf chain {parent} -> {child}")


def read_recorded_tf(reader: Any) -> RecordedTf:
    """Every transform of the bag's /tf and /tf_static topics (an open rosbags reader)."""
    conns = [c for c in reader.connections if c.topic in ("/tf", "/tf_static") and c.msgtype == TF_TYPE]
    raw: Dict[str, Tuple[str, List[int], List[np.ndarray], bool]] = {}
    if conns:
        for conn, _, data in reader.messages(connections=conns):
            msg = reader.deserialize(data, conn.msgtype)
            for t in msg.transforms:
                child, parent = t.child_frame_id.lstrip("/"), t.header.frame_id.lstrip("/")
                entry = raw.setdefault(child, (parent, [], [], conn.topic == "/tf_static"))
                entry[1].append(stamp_ns(t))
                entry[2].append(_pose_to_matrix(t.transform.translation, t.transform.rotation))
    tf = RecordedTf()
    for child, (parent, stamps, poses, static) in raw.items():
        order = np.argsort(np.asarray(stamps, np.int64), kind="stable")
        s = np.asarray(stamps, np.int64)[order]
        keep = np.concatenate([[True], np.diff(s) > 0]) if len(s) else np.zeros(0, bool)
        tf.links[child] = (parent, s[keep], np.stack(poses)[order][keep], static)
    return tf


def read_pose_track(reader: Any, topic: Optional[str] = None, tf_chain: Optional[str] = None,
                    recorded_tf: Optional[RecordedTf] = None) -> PoseTrack:
    """The pose track of ``topic`` (any of POSE_TYPES) or of the bag's TF chain ``tf_chain`` ('PARENT:CHILD')."""
    if tf_chain:
        parent, sep, child = tf_chain.partition(":")
        if not sep or not parent or not child:
            raise BagError(f"a TF chain is given as PARENT:CHILD (e.g. odom:base_link), got '{tf_chain}'")
        return (recorded_tf or read_recorded_tf(reader)).track(parent.lstrip("/"), child.lstrip("/"))
    conns = [c for c in reader.connections if c.topic == topic]
    if not conns:
        have = ", ".join(f"{c.topic} ({c.msgtype})" for c in reader.connections if c.msgtype in POSE_TYPES + (TF_TYPE,))
        raise BagError(f"pose topic '{topic}' is not in the bag (pose topics and TF it has: {have or 'none'})")
    if conns[0].msgtype not in POSE_TYPES:
        raise BagError(f"topic '{topic}' carries {conns[0].msgtype}; a pose topic is one of {', '.join(POSE_TYPES)}")
    stamps, poses, parent, child = [], [], "", ""
    for conn, _, data in reader.messages(connections=conns):
        msg = reader.deserialize(data, conn.msgtype)
        T, parent, child = pose_of_message(msg, conn.msgtype)
        stamps.append(stamp_ns(msg))
        poses.append(T)
    if not poses:
        raise BagError(f"pose topic '{topic}' has no messages")
    s = np.asarray(stamps, np.int64)
    order = np.argsort(s, kind="stable")
    s, P = s[order], np.stack(poses)[order]
    keep = np.concatenate([[True], np.diff(s) > 0])
    return PoseTrack(s[keep], P[keep], parent.lstrip("/"), child.lstrip("/"), f"{topic} ({conns[0].msgtype.split('/')[-1]})")


def camera_poses_at(track: PoseTrack, stamps_ns: np.ndarray, camera_frame_id: str, recorded: Optional[RecordedTf],
                    camera_mount: Optional[np.ndarray], max_gap: float, notes: Dict[str, str]) -> Tuple[np.ndarray, np.ndarray]:
    """(T_parent_camera (M, 4, 4), valid (M,)) at ``stamps_ns``: ``track`` interpolated and moved onto the camera with
    ``camera_mount`` (T_child_camera) when given, else the bag's /tf_static from the track's child frame to
    ``camera_frame_id``, else taken as the camera's own pose. ``notes['camera mount']`` says which."""
    mount = camera_mount
    if mount is not None:
        notes["camera mount"] = "given"
    elif recorded is not None and track.child and camera_frame_id:
        mount = recorded.fixed(track.child, camera_frame_id)
        if mount is not None:
            notes["camera mount"] = f"the bag's /tf_static {track.child} -> {camera_frame_id}"
    if mount is None:
        mount = np.eye(4)
        if not track.child:
            notes["camera mount"] = f"{track.source} names no child frame: the poses are taken as the camera's"
        else:
            notes["camera mount"] = (f"no fixed transform from '{track.child}' to '{camera_frame_id or '?'}' in the bag's "
                                     "/tf_static: the poses are taken as the camera's")
    poses, valid = track.at(np.asarray(stamps_ns, np.int64), max_gap)
    return poses @ mount, valid


def travelled(positions: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Metres between consecutive positions, NaN where either end is not valid. Shapes: (N, 3), (N,) -> (N - 1,)."""
    d = np.linalg.norm(np.diff(positions, axis=0), axis=1)
    d[~(valid[:-1] & valid[1:])] = np.nan
    return d


def mount_from(values: Optional[Sequence[float]]) -> Optional[np.ndarray]:
    """T from six numbers x y z roll pitch yaw (metres, radians), or None."""
    if values is None:
        return None
    from ros2_monodepth.core.geometry import rpy_to_matrix

    T = np.eye(4)
    T[:3, :3] = rpy_to_matrix(*values[3:6])
    T[:3, 3] = values[:3]
    return T

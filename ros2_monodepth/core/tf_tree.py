"""The transform tree heard on /tf_static and /tf, as parent links: enough to find where a camera sits on a robot
(the URDF through robot_state_publisher, or the camera driver, publishes it) without tf2_ros, which is not
installable outside a ROS install.

Owns: one link per child frame (a frame has one parent in a tf tree; the newest transform for it wins, as in tf2),
the chain between two frames through their common ancestor, and which frames another publisher gives a parent.
No ROS import: the node converts TFMessages into ``add`` calls. Transforms are taken as they are at lookup time
(the newest): right for the fixed joints of a camera mount, not for a moving one.

    >>> tree = TfTree()
    >>> tree.add("base_link", "camera_link", np.eye(4), static=True)
    >>> T = np.eye(4); T[2, 3] = 1.2
    >>> tree.add("camera_link", "camera_optical_frame", T, static=True)
    >>> float(tree.lookup("base_link", "camera_optical_frame")[2, 3])
    1.2
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence

import numpy as np

from .geometry import quaternion_to_matrix, se3_inverse


@dataclass
class Link:
    parent: str
    T_parent_child: np.ndarray
    static: bool


class TfTree:
    """Parent links by child frame (thread-safe: the subscription adds, the worker looks up)."""

    def __init__(self) -> None:
        self._links: Dict[str, Link] = {}
        self._lock = threading.Lock()

    def add(self, parent: str, child: str, T_parent_child: np.ndarray, static: bool) -> None:
        parent, child = parent.lstrip("/"), child.lstrip("/")
        if not parent or not child or parent == child:
            return
        with self._lock:
            self._links[child] = Link(parent, np.asarray(T_parent_child, np.float64), static)

    def add_pose(self, parent: str, child: str, xyz: Sequence[float], quaternion_xyzw: Sequence[float], static: bool) -> None:
        """``add`` from a TransformStamped's translation and rotation."""
        T = np.eye(4)
        T[:3, :3] = quaternion_to_matrix(np.asarray(quaternion_xyzw, np.float64))
        T[:3, 3] = xyz
        self.add(parent, child, T, static)

    def differs(self, child: str, parent: str, T_parent_child: np.ndarray, atol: float = 1e-6) -> bool:
        """True when what was heard for ``child`` is another parent or another transform than the one given."""
        link = self.link(child)
        return link is not None and (link.parent != parent.lstrip("/") or not np.allclose(link.T_parent_child,
                                                                                        T_parent_child, atol=atol))

    def parent(self, frame: str) -> Optional[str]:
        with self._lock:
            link = self._links.get(frame.lstrip("/"))
        return link.parent if link else None

    def link(self, frame: str) -> Optional[Link]:
        with self._lock:
            return self._links.get(frame.lstrip("/"))

    def _to_root(self, frame: str) -> List[str]:
        chain, seen = [frame], {frame}
        with self._lock:
            while chain[-1] in self._links:
                parent = self._links[chain[-1]].parent
                if parent in seen:          # a loop in what was heard: stop rather than spin
                    break
                chain.append(parent)
                seen.add(parent)
        return chain

    def _from_ancestor(self, ancestor: str, chain: List[str]) -> np.ndarray:
        """T_ancestor_frame for frame = chain[0], with ancestor in chain."""
        T = np.eye(4)
        with self._lock:
            for child in chain[: chain.index(ancestor)][::-1]:
                T = T @ self._links[child].T_parent_child
        return T

    def lookup(self, target: str, source: str) -> Optional[np.ndarray]:
        """T_target_source (points in ``source`` -> ``target``), or None when the two are not connected."""
        target, source = target.lstrip("/"), source.lstrip("/")
        up_target, up_source = self._to_root(target), self._to_root(source)
        common = next((f for f in up_source if f in up_target), None)
        if common is None:
            return None
        return se3_inverse(self._from_ancestor(common, up_target)) @ self._from_ancestor(common, up_source)

    def frames(self) -> List[str]:
        with self._lock:
            return sorted(set(self._links) | {link.parent for link in self._links.values()})

"""Synthetic scenes with exact depth and poses, rendered by vectorised ray casting (no GPU, no downloads).

A straight street seen by a forward-looking camera: textured ground (z = 0), two building facades, boxes
standing on the ground, optionally one box that moves with the camera (the case Monodepth2's auto-masking
exists for). World frame: x forward along the street, y left, z up (REP 103). Camera poses are
``T_world_cam`` of the optical frame (z forward, x right, y down).

Owns: the scene description, its renderer (image, z-depth, object mask) and camera trajectories.
Used by the demo stream, tests, and the training data generator.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional, Tuple

import numpy as np

# Optical frame axes in a forward-looking camera: z_opt = x_world, x_opt = -y_world, y_opt = -z_world.
R_WORLD_OPTICAL = np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])


def default_intrinsics(width: int, height: int, hfov_deg: float = 80.0) -> np.ndarray:
    """Pinhole K with the given horizontal field of view and square pixels. Shapes: -> (3, 3)."""
    fx = 0.5 * width / np.tan(np.radians(hfov_deg) / 2.0)
    return np.array([[fx, 0.0, (width - 1) / 2.0], [0.0, fx, (height - 1) / 2.0], [0.0, 0.0, 1.0]])


def _hash3(ix: np.ndarray, iy: np.ndarray, iz: np.ndarray, seed: int) -> np.ndarray:
    """Deterministic pseudo-random values in [0, 1) on an integer lattice (vectorised integer hash)."""
    h = (ix.astype(np.int64) * 73856093) ^ (iy.astype(np.int64) * 19349663) ^ (iz.astype(np.int64) * 83492791) ^ (seed * 2654435761)
    h = (h ^ (h >> 13)) * 1274126177
    h = h ^ (h >> 16)
    return (h & 0xFFFF).astype(np.float32) / 65536.0


def value_noise(p: np.ndarray, seed: int, octaves: int = 4, base_freq: float = 1.0) -> np.ndarray:
    """Fractal 3D value noise, trilinear between lattice values. Shapes: (N, 3) -> (N,) in [0, 1]."""
    total = np.zeros(len(p), np.float32)
    amp, norm, freq = 1.0, 0.0, base_freq
    for o in range(octaves):
        q = p * freq
        i = np.floor(q)
        f = (q - i).astype(np.float32)
        f = f * f * (3.0 - 2.0 * f)  # smoothstep: no lattice seams
        ix, iy, iz = i[:, 0].astype(np.int64), i[:, 1].astype(np.int64), i[:, 2].astype(np.int64)
        acc = np.zeros(len(p), np.float32)
        for dx in (0, 1):
            wx = f[:, 0] if dx else 1.0 - f[:, 0]
            for dy in (0, 1):
                wy = f[:, 1] if dy else 1.0 - f[:, 1]
                for dz in (0, 1):
                    wz = f[:, 2] if dz else 1.0 - f[:, 2]
                    acc += wx * wy * wz * _hash3(ix + dx, iy + dy, iz + dz, seed + 17 * o)
        total += amp * acc
        norm += amp
        amp *= 0.5
        freq *= 2.0
    return total / norm


@dataclass
class Box:
    """Axis-aligned box [lo, hi] in world (or, when ``follows_camera``, camera-relative world axes)."""

    lo: np.ndarray
    hi: np.ndarray
    color: np.ndarray
    follows_camera: bool = False


@dataclass
class SceneConfig:
    seed: int = 0
    street_half_width: float = 6.0
    facade_height: float = 12.0
    length: float = 200.0
    num_boxes: int = 24
    # A box that keeps its place relative to the camera (a car driving ahead at the same speed).
    moving_object: bool = False
    moving_object_offset: Tuple[float, float, float] = (7.0, 0.8, 0.0)  # ahead, left, on the ground
    moving_object_size: Tuple[float, float, float] = (2.0, 1.6, 1.5)


@dataclass
class Scene:
    config: SceneConfig
    boxes: List[Box] = field(default_factory=list)
    max_range: float = 120.0  # boxes farther ahead than this are not drawn

    @classmethod
    def generate(cls, config: SceneConfig) -> "Scene":
        rng = np.random.default_rng(config.seed)
        boxes = []
        w = config.street_half_width
        for _ in range(config.num_boxes):
            x = rng.uniform(4.0, config.length)
            side = rng.choice([-1.0, 1.0])
            y = side * rng.uniform(1.8, w - 0.5)
            sx, sy, sz = rng.uniform(0.5, 2.0), rng.uniform(0.5, 1.5), rng.uniform(0.5, 2.5)
            lo = np.array([x - sx / 2, y - sy / 2, 0.0])
            boxes.append(Box(lo, lo + [sx, sy, sz], rng.uniform(0.3, 1.0, 3)))
        if config.moving_object:
            ox, oy, _ = config.moving_object_offset
            sx, sy, sz = config.moving_object_size
            lo = np.array([ox - sx / 2, oy - sy / 2, 0.0])
            boxes.append(Box(lo, lo + [sx, sy, sz], np.array([0.9, 0.2, 0.15]), follows_camera=True))
        return cls(config, boxes)

    def render(self, T_world_cam: np.ndarray, K: np.ndarray, width: int, height: int
               ) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Ray-cast one view.

        Returns (image (H, W, 3) uint8 RGB, depth (H, W) float32 z-depth in metres with inf for sky,
        moving-object mask (H, W) bool).
        """
        cfg = self.config
        R, origin = T_world_cam[:3, :3], T_world_cam[:3, 3]
        v, u = np.mgrid[0:height, 0:width].astype(np.float64)
        rays_cam = np.stack([(u - K[0, 2]) / K[0, 0], (v - K[1, 2]) / K[1, 1], np.ones_like(u)], -1).reshape(-1, 3)
        d = rays_cam @ R.T  # ray directions in world for unit z-depth: t along d is z-depth directly
        n = len(d)
        t_best = np.full(n, np.inf)
        normal = np.zeros((n, 3))
        base = np.zeros((n, 3), np.float32)
        tex_scale = np.ones(n)
        obj = np.zeros(n, bool)

        def take(t: np.ndarray, nrm: np.ndarray, color: np.ndarray, scale: float) -> None:
            hit = (t > 1e-6) & (t < t_best)
            t_best[hit] = t[hit]
            normal[hit] = nrm
            base[hit] = color
            tex_scale[hit] = scale
            obj[hit] = False

        with np.errstate(divide="ignore", invalid="ignore"):
            inv_d = [1.0 / np.ascontiguousarray(d[:, k]) for k in range(3)]
            # ground z = 0 and the two facades y = +-w
            take(-origin[2] * inv_d[2], np.array([0.0, 0.0, 1.0]), np.array([0.55, 0.55, 0.5]), 1.5)
            for side in (1.0, -1.0):
                t = (side * cfg.street_half_width - origin[1]) * inv_d[1]
                z = origin[2] + t * d[:, 2]
                t = np.where(z < cfg.facade_height, t, np.inf)
                col = np.array([0.75, 0.6, 0.45]) if side > 0 else np.array([0.5, 0.6, 0.75])
                take(t, np.array([0.0, -side, 0.0]), col, 0.8)
            follow = np.array([origin[0], origin[1], 0.0])
            forward = R[:, 2]
            for box in self.boxes:
                lo, hi = (box.lo + follow, box.hi + follow) if box.follows_camera else (box.lo, box.hi)
                centre, radius = (lo + hi) / 2.0, np.linalg.norm(hi - lo) / 2.0
                ahead = (centre - origin) @ forward
                if ahead < -radius or ahead > self.max_range + radius:
                    continue  # behind the camera or too far to matter
                t_near = np.full(n, -np.inf)
                t_far = np.full(n, np.inf)
                near_axis = np.zeros(n, np.int8)
                for k in range(3):
                    a = (lo[k] - origin[k]) * inv_d[k]
                    b = (hi[k] - origin[k]) * inv_d[k]
                    tmin = np.minimum(a, b)
                    better = tmin > t_near
                    near_axis[better] = k
                    t_near = np.maximum(t_near, tmin)
                    t_far = np.minimum(t_far, np.maximum(a, b))
                ok = (t_far >= t_near) & (t_near > 1e-6) & (t_near < t_best)
                idx = np.flatnonzero(ok)
                if idx.size == 0:
                    continue
                ax = near_axis[idx]
                nrm = np.zeros((idx.size, 3))
                nrm[np.arange(idx.size), ax] = -np.sign(d[idx, ax])
                t_best[idx] = t_near[idx]
                normal[idx] = nrm
                base[idx] = box.color
                tex_scale[idx] = 3.0
                obj[idx] = box.follows_camera
        hit = np.isfinite(t_best)
        p = origin + d[hit] * t_best[hit, None]
        if self.boxes and any(b.follows_camera for b in self.boxes):
            # texture the moving object in its own frame so that it moves with the camera
            p = np.where(obj[hit, None], p - [origin[0], origin[1], 0.0], p)
        tex = value_noise(p * tex_scale[hit, None], cfg.seed, octaves=4)
        light = np.array([0.4, 0.3, 0.85])
        light /= np.linalg.norm(light)
        shade = 0.55 + 0.45 * np.abs(normal[hit] @ light)
        rgb = np.empty((n, 3), np.float32)
        rgb[hit] = base[hit] * (0.35 + 0.9 * tex[:, None]) * shade[:, None]
        sky_t = np.clip(-rays_cam[~hit, 1] * 0.5 + 0.5, 0, 1)[:, None]
        rgb[~hit] = np.array([0.55, 0.7, 0.95]) * (0.8 + 0.2 * sky_t)
        image = np.clip(rgb * 255.0, 0, 255).astype(np.uint8).reshape(height, width, 3)
        depth = t_best.astype(np.float32).reshape(height, width)
        return image, depth, obj.reshape(height, width)


def camera_pose(x: float, y: float = 0.0, height: float = 1.5, yaw: float = 0.0) -> np.ndarray:
    """T_world_cam of a forward-looking optical frame at (x, y, height) turned by ``yaw`` about z. (4, 4)."""
    c, s = np.cos(yaw), np.sin(yaw)
    Rz = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
    T = np.eye(4)
    T[:3, :3] = Rz @ R_WORLD_OPTICAL
    T[:3, 3] = [x, y, height]
    return T


@dataclass
class TrajectoryConfig:
    num_frames: int = 200
    fps: float = 10.0
    speed: float = 1.0                 # m/s along the street
    lateral_amplitude: float = 0.8     # m, slow weave
    yaw_amplitude: float = 0.06        # rad
    camera_height: float = 1.5
    # (first frame, last frame) stretches where the camera stands still
    still_segments: Tuple[Tuple[int, int], ...] = ()
    start_stamp: float = 0.0


def camera_trajectory(cfg: TrajectoryConfig) -> Tuple[np.ndarray, List[np.ndarray]]:
    """Stamps (N,) in seconds and camera poses (N x (4, 4)) along the street."""
    dt = 1.0 / cfg.fps
    still = np.zeros(cfg.num_frames, bool)
    for a, b in cfg.still_segments:
        still[a:b + 1] = True
    # distance travelled: advance only on moving frames
    steps = np.where(still, 0.0, cfg.speed * dt)
    steps[0] = 0.0
    x = np.cumsum(steps) + 2.0
    phase = x / 12.0
    poses = [camera_pose(xi, cfg.lateral_amplitude * np.sin(ph), cfg.camera_height, cfg.yaw_amplitude * np.cos(ph))
             for xi, ph in zip(x, phase)]
    stamps = cfg.start_stamp + dt * np.arange(cfg.num_frames)
    return stamps, poses


class SyntheticSequence:
    """A scene + trajectory + camera, rendered frame by frame.

    ``frame(i)`` -> (stamp, image RGB uint8, depth float32 (inf for sky), T_world_cam, moving-object mask).
    """

    def __init__(self, scene: SceneConfig | None = None, trajectory: TrajectoryConfig | None = None,
                 width: int = 640, height: int = 480, K: Optional[np.ndarray] = None):
        self.scene = Scene.generate(scene or SceneConfig())
        self.trajectory = trajectory or TrajectoryConfig()
        self.width, self.height = width, height
        self.K = default_intrinsics(width, height) if K is None else np.asarray(K, np.float64)
        self.stamps, self.poses = camera_trajectory(self.trajectory)

    def __len__(self) -> int:
        return len(self.stamps)

    def frame(self, i: int):
        image, depth, mask = self.scene.render(self.poses[i], self.K, self.width, self.height)
        return float(self.stamps[i]), image, depth, self.poses[i], mask

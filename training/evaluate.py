"""``ros2-monodepth-eval``: depth and odometry metrics of a checkpoint against ground truth in a bag.

Depth, as the Monodepth2 evaluation defines it: the prediction is resized to the ground truth's (cropped)
size, scaled per image by the median ratio (or one fixed scale), and both are capped to [min, max];
abs_rel, sq_rel, rmse, rmse_log and the delta < 1.25^k accuracies are averaged over images. Pixels of a
moving object (a ``moving_mask`` topic) also get their own abs_rel and mean predicted/true depth ratio,
the "hole" metric of the auto-masking ablation.

Odometry: frame-to-frame transforms from the pose network are chained into a trajectory and compared with
the ground-truth poses by ``evo`` (ATE after Sim(3) alignment, since monocular scale is arbitrary; RPE over
one frame), next to a constant-position baseline (the best constant: the mean true position).

Writes ``metrics.json``, ``trajectory.png`` and ``depth_examples.png`` to ``--out`` and prints a table.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import cv2
import numpy as np
import torch

from ros2_monodepth.core.bags import IMAGE_TYPES, BagError, decode_rgb, open_bags, require_topic, stamp_ns
from ros2_monodepth.core.checkpoint import CheckpointError, CheckpointMetadata, load_checkpoint
from ros2_monodepth.core.fileio import OutputError, writable_output_dir
from ros2_monodepth.core.geometry import disp_to_depth, se3_inverse
from ros2_monodepth.core.image_codec import image_to_numpy
from ros2_monodepth.core.networks import DepthNet, PoseNet

from .config import EvalConfig, parse_eval_args
from .dataset import ResizePlan
from .poses import camera_poses_at, mount_from, read_pose_track, read_recorded_tf

DEPTH_METRICS = ("abs_rel", "sq_rel", "rmse", "rmse_log", "a1", "a2", "a3")
DEFAULT_DEPTH_TOPIC = "/ground_truth/depth"
DEFAULT_POSE_TOPIC = "/ground_truth/pose"


def depth_errors(gt: np.ndarray, pred: np.ndarray) -> Dict[str, float]:
    """Monodepth2's seven numbers over matching valid pixels. Shapes: (N,), (N,) -> dict."""
    thresh = np.maximum(gt / pred, pred / gt)
    return {
        "abs_rel": float(np.mean(np.abs(gt - pred) / gt)),
        "sq_rel": float(np.mean((gt - pred) ** 2 / gt)),
        "rmse": float(np.sqrt(np.mean((gt - pred) ** 2))),
        "rmse_log": float(np.sqrt(np.mean((np.log(gt) - np.log(pred)) ** 2))),
        "a1": float(np.mean(thresh < 1.25)),
        "a2": float(np.mean(thresh < 1.25 ** 2)),
        "a3": float(np.mean(thresh < 1.25 ** 3)),
    }


@dataclass
class GroundTruthFrame:
    stamp_ns: int
    rgb: np.ndarray
    depth: Optional[np.ndarray] = None
    pose: Optional[np.ndarray] = None          # T_world_camera (4, 4)
    mask: Optional[np.ndarray] = None          # moving object, bool


def read_ground_truth(paths: Sequence[str | Path], topic: str, depth_topic: Optional[str], pose_topic: Optional[str],
                      mask_topic: Optional[str] = None, stride: int = 1, info_topic: Optional[str] = "/camera/camera_info",
                      pose_tf: Optional[str] = None, camera_mount: Optional[np.ndarray] = None, max_pose_gap: float = 0.5,
                      notes: Optional[Dict[str, str]] = None) -> Tuple[List[GroundTruthFrame], np.ndarray]:
    """Frames of ``topic`` with the ground truth stamped like them, and K from the first ``info_topic`` message
    (identity when ``info_topic`` is None).

    Depth and masks match frames by stamp. Poses come from ``pose_topic`` (PoseStamped, PoseWithCovarianceStamped,
    TransformStamped or nav_msgs/Odometry) or the bag's TF chain ``pose_tf`` ('PARENT:CHILD'), interpolated at the
    frames' stamps (``max_pose_gap`` s at most between two poses), and moved onto the camera: ``camera_mount``
    (T_child_camera) when given, else the bag's /tf_static between the pose's child frame and the images' frame,
    else taken as the camera's own. ``notes`` receives what was used."""
    notes = {} if notes is None else notes
    bag_paths = [Path(p) for p in paths]
    with open_bags(bag_paths) as reader:
        image_conns = require_topic(reader, topic, IMAGE_TYPES, bag_paths)
        gt_conns = [c for t, kind in ((depth_topic, ("sensor_msgs/msg/Image",)), (mask_topic, ("sensor_msgs/msg/Image",))) if t
                    for c in require_topic(reader, t, kind, bag_paths)]
        K = np.eye(3)
        if info_topic:
            info_conns = require_topic(reader, info_topic, ("sensor_msgs/msg/CameraInfo",), bag_paths)
            conn, _, raw = next(iter(reader.messages(connections=info_conns)))
            info: Any = reader.deserialize(raw, conn.msgtype)
            K = np.asarray(info.k, np.float64).reshape(3, 3)
        track, recorded = None, None
        if pose_topic or pose_tf:
            recorded = read_recorded_tf(reader)
            track = read_pose_track(reader, pose_topic or None, pose_tf or None, recorded)
        frames: Dict[int, GroundTruthFrame] = {}
        extra: Dict[str, Dict[int, np.ndarray]] = {"depth": {}, "mask": {}}
        camera_frame_id = ""
        for conn, _, raw in reader.messages(connections=image_conns + gt_conns):
            msg: Any = reader.deserialize(raw, conn.msgtype)
            stamp = stamp_ns(msg)
            if conn.topic == topic:
                frames[stamp] = GroundTruthFrame(stamp, decode_rgb(msg, conn.msgtype))
                camera_frame_id = camera_frame_id or msg.header.frame_id.lstrip("/")
            elif conn.topic == depth_topic:
                extra["depth"][stamp] = image_to_numpy(msg, ("32FC1", "16UC1")).astype(np.float32) * (1e-3 if msg.encoding == "16UC1" else 1.0)
            elif conn.topic == mask_topic:
                extra["mask"][stamp] = image_to_numpy(msg, ("mono8",)) > 0
    out = []
    for i, s in enumerate(sorted(frames)):
        if i % stride:
            continue
        f = frames[s]
        f.depth, f.mask = extra["depth"].get(s), extra["mask"].get(s)
        out.append(f)
    if not out:
        raise BagError(f"no frames on '{topic}'")
    if track is not None:
        poses, valid = camera_poses_at(track, np.array([f.stamp_ns for f in out], np.int64), camera_frame_id, recorded,
                                       camera_mount, max_pose_gap, notes)
        if camera_mount is not None:
            notes["camera mount"] = "--camera-mount"
        elif notes["camera mount"].startswith("none"):
            notes["camera mount"] += " (give --camera-mount X Y Z ROLL PITCH YAW when they are the robot's)"
        for f, T, ok in zip(out, poses, valid):
            f.pose = T if ok else None
        notes["poses"] = f"{track.source}, {int(valid.sum())} of {len(out)} frames covered"
    return out, K


@torch.no_grad()
def predict(depth_net: DepthNet, pose_net: Optional[PoseNet], frames: List[GroundTruthFrame], plan: ResizePlan,
            meta: CheckpointMetadata, batch: int = 16) -> Tuple[List[np.ndarray], List[np.ndarray]]:
    """(depth at network size per frame, T_b_a per consecutive pair)."""
    tensors = torch.stack([torch.from_numpy(np.require(plan.apply(f.rgb), requirements="W")).permute(2, 0, 1).float() / 255.0 for f in frames])
    depths: List[np.ndarray] = []
    for i in range(0, len(tensors), batch):
        disp = depth_net(tensors[i:i + batch], (0,))[0]
        depths += list(disp_to_depth(disp, meta.min_depth, meta.max_depth)[1][:, 0].numpy())
    rel: List[np.ndarray] = []
    if pose_net is not None:
        for i in range(0, len(tensors) - 1, batch):
            a = tensors[i:min(i + batch, len(tensors) - 1)]
            b = tensors[i + 1:i + 1 + len(a)]
            rel += list(pose_net.transform(a, b).numpy())
    return depths, rel


def evaluate_depth(frames: List[GroundTruthFrame], depths: List[np.ndarray], plan: ResizePlan, min_depth: float, max_depth: float,
                   fixed_scale: Optional[float] = None) -> Dict[str, object]:
    """Mean metrics (+ per-object metrics where masks exist) and the median scale ratios."""
    per_image, ratios, obj_abs, obj_ratio = [], [], [], []
    y0, x0, ch, cw = plan.crop
    for f, pred_small in zip(frames, depths):
        if f.depth is None:
            continue
        gt = f.depth[y0:y0 + ch, x0:x0 + cw]
        # resize disparity, not depth, as Monodepth2 does
        pred = 1.0 / cv2.resize(1.0 / pred_small, (cw, ch), interpolation=cv2.INTER_LINEAR)
        valid = np.isfinite(gt) & (gt > min_depth) & (gt < max_depth) & np.isfinite(pred) & (pred > 0)
        if not valid.any():
            continue
        ratio = fixed_scale if fixed_scale is not None else float(np.median(gt[valid]) / np.median(pred[valid]))
        ratios.append(ratio)
        pred = np.clip(pred * ratio, min_depth, max_depth)
        per_image.append(depth_errors(gt[valid], pred[valid]))
        if f.mask is not None:
            m = f.mask[y0:y0 + ch, x0:x0 + cw] & valid
            if m.sum() > 20:
                obj_abs.append(float(np.mean(np.abs(gt[m] - pred[m]) / gt[m])))
                obj_ratio.append(float(np.mean(pred[m] / gt[m])))
    if not per_image:
        raise BagError("no frame had usable ground-truth depth")
    out: Dict[str, object] = {k: float(np.mean([e[k] for e in per_image])) for k in DEPTH_METRICS}
    out["images"] = len(per_image)
    out["scale_median"] = float(np.median(ratios))
    out["scale_std_over_median"] = float(np.std(ratios) / np.median(ratios))
    if obj_abs:
        out["moving_object_abs_rel"] = float(np.mean(obj_abs))
        out["moving_object_depth_ratio"] = float(np.mean(obj_ratio))
    return out


def chain_trajectory(relative: List[np.ndarray]) -> List[np.ndarray]:
    """T_b_a per consecutive pair -> T_first_camera(t) for every frame (first = identity)."""
    poses = [np.eye(4)]
    for T_b_a in relative:
        poses.append(poses[-1] @ se3_inverse(T_b_a))
    return poses


def _plane_of_motion(positions: np.ndarray) -> Tuple[np.ndarray, Tuple[str, str]]:
    """The two principal axes of a track (its plane of motion: a car's ground plane, a drone's, whatever the frames'
    conventions, y down for a camera frame included), as a (3, 2) basis, and their names for the plot."""
    centred = positions - positions.mean(0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    basis = vt[:2].T
    return basis, ("first principal axis [m]", "second principal axis [m]")


def evaluate_odometry(frames: List[GroundTruthFrame], estimated: List[np.ndarray], plot: Optional[Path] = None) -> Dict[str, float]:
    """ATE and RPE (one frame) with evo after an SE(3) alignment (metres as they are: is the odometry metric?) and
    after a Sim(3) alignment (a scale fitted: is its shape right?), and the constant-position baseline ATE."""
    from evo.core import metrics
    from evo.core.trajectory import PoseTrajectory3D

    keep = [i for i, f in enumerate(frames) if f.pose is not None]
    if len(keep) < 3:
        raise BagError(f"fewer than 3 frames with a ground-truth pose ({len(keep)} of {len(frames)} covered)")
    stamps = np.array([frames[i].stamp_ns for i in keep], np.float64) / 1e9
    gt = PoseTrajectory3D(poses_se3=[frames[i].pose for i in keep], timestamps=stamps)
    out: Dict[str, float] = {}
    aligned = {}
    for name, scale_too in (("sim3", True), ("se3", False)):
        est = PoseTrajectory3D(poses_se3=[estimated[i].copy() for i in keep], timestamps=stamps)
        _, _, scale = est.align(gt, correct_scale=scale_too)
        ape = metrics.APE(metrics.PoseRelation.translation_part)
        ape.process_data((gt, est))
        rpe = metrics.RPE(metrics.PoseRelation.translation_part, delta=1, delta_unit=metrics.Unit.frames, all_pairs=False)
        rpe.process_data((gt, est))
        out[f"ate_{name}_m"] = float(ape.get_statistic(metrics.StatisticsType.rmse))
        out[f"rpe_{name}_m"] = float(rpe.get_statistic(metrics.StatisticsType.rmse))
        if scale_too:
            out["sim3_scale"] = float(scale)
        aligned[name] = est.positions_xyz
    positions = gt.positions_xyz
    baseline = float(np.sqrt(np.mean(np.sum((positions - positions.mean(0)) ** 2, 1))))
    out.update({"ate_rmse_m": out["ate_sim3_m"], "rpe_rmse_m": out["rpe_sim3_m"], "ate_constant_position_m": baseline,
                "path_length_m": float(gt.path_length), "poses": len(keep)})
    if plot is not None:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        basis, labels = _plane_of_motion(positions)
        origin = positions.mean(0)

        def project(p: np.ndarray) -> np.ndarray:
            return (p - origin) @ basis

        fig, ax = plt.subplots(figsize=(7, 4.5))
        g = project(positions)
        ax.plot(g[:, 0], g[:, 1], "k-", label="ground truth")
        e = project(aligned["sim3"])
        ax.plot(e[:, 0], e[:, 1], "r-", label=f"estimate, Sim(3)-aligned: ATE {out['ate_sim3_m']:.3f} m")
        e = project(aligned["se3"])
        ax.plot(e[:, 0], e[:, 1], "b--", lw=0.8, label=f"estimate, SE(3)-aligned (metric as is): ATE {out['ate_se3_m']:.3f} m")
        ax.plot(0, 0, "gx", label=f"constant position, ATE {baseline:.3f} m")
        ax.set_xlabel(labels[0])
        ax.set_ylabel(labels[1])
        ax.axis("equal")
        ax.legend(fontsize=8)
        ax.set_title("Odometry in its plane of motion")
        fig.tight_layout()
        fig.savefig(plot, dpi=110)
        plt.close(fig)
    return out


def depth_figure(path: Path, frames: List[GroundTruthFrame], depths: List[np.ndarray], plan: ResizePlan, picks: Sequence[int]) -> None:
    from ros2_monodepth.core.colorize import colorize_depth

    rows = []
    for i in picks:
        f = frames[i]
        rgb = plan.apply(f.rgb)
        h, w = rgb.shape[:2]
        pred = colorize_depth(depths[i])[..., ::-1]
        gt = np.zeros_like(rgb) if f.depth is None else colorize_depth(cv2.resize(
            f.depth[plan.crop[0]:plan.crop[0] + plan.crop[2], plan.crop[1]:plan.crop[1] + plan.crop[3]], (w, h),
            interpolation=cv2.INTER_NEAREST))[..., ::-1]
        rows.append(np.concatenate([rgb, gt, pred], 1))
    grid = np.concatenate(rows, 0)
    cv2.imwrite(str(path), cv2.cvtColor(grid, cv2.COLOR_RGB2BGR))


def print_table(results: Dict[str, Dict[str, Any]]) -> str:
    keys = list(DEPTH_METRICS) + [f"{k}_fixed_scale" for k in ("abs_rel", "rmse", "a1")] + [
        "scale_median", "moving_object_abs_rel", "moving_object_depth_ratio", "ate_sim3_m", "ate_se3_m", "rpe_sim3_m",
        "rpe_se3_m", "sim3_scale", "ate_constant_position_m"]
    names = list(results)
    width = max(12, *(len(n) for n in names))
    lines = [f"{'metric':<26}" + "".join(f"{n:>{width + 2}}" for n in names)]
    for k in keys:
        vals = [results[n].get(k) for n in names]
        if all(v is None for v in vals):
            continue
        lines.append(f"{k:<26}" + "".join(f"{v:>{width + 2}.4f}" if isinstance(v, float) else f"{'-':>{width + 2}}" for v in vals))
    for n in names:
        for what, note in (results[n].get("notes") or {}).items():
            lines.append(f"{what} ({n}): {note}")
    return "\n".join(lines)


def _topics_to_use(cfg: EvalConfig) -> Tuple[Optional[str], Optional[str], Optional[str], Dict[str, str]]:
    """(depth topic, pose topic, TF chain, notes): 'auto' (None) takes /ground_truth/depth and /ground_truth/pose when the
    bag has them; '' skips; what is asked for explicitly must be there."""
    from ros2_monodepth.core.bags import list_topics

    topics = list_topics(cfg.bags)
    notes: Dict[str, str] = {}
    depth = cfg.depth_topic
    if depth is None:
        depth = DEFAULT_DEPTH_TOPIC if DEFAULT_DEPTH_TOPIC in topics else ""
        if not depth:
            notes["depth"] = f"not evaluated: the bag has no {DEFAULT_DEPTH_TOPIC} (give --depth-topic)"
    pose, tf = cfg.pose_topic, cfg.pose_tf or None
    if tf:
        pose = ""
    elif pose is None:
        pose = DEFAULT_POSE_TOPIC if DEFAULT_POSE_TOPIC in topics else ""
        if not pose:
            notes["odometry"] = (f"not evaluated: the bag has no {DEFAULT_POSE_TOPIC} (give --pose-topic with a PoseStamped, "
                                 "Odometry or TransformStamped topic, or --pose-tf PARENT:CHILD)")
    if not depth and not pose and not tf:
        have = ", ".join(f"{t} ({kind})" for t, (kind, _) in sorted(topics.items()))
        raise BagError(f"nothing to evaluate against in {', '.join(cfg.bags)}: no ground-truth depth and no poses. Give "
                       f"--depth-topic, --pose-topic or --pose-tf; the bag has: {have}")
    return depth or None, pose or None, tf, notes


def predict_as_node(checkpoint: Optional[str], cfg: EvalConfig, frames: List[GroundTruthFrame], K: np.ndarray,
                    meta: CheckpointMetadata) -> Tuple[ResizePlan, List[np.ndarray], List[np.ndarray], str]:
    """What the node publishes for these frames: the frame pipeline (``core.pipeline``) on ``cfg.backend`` /
    ``cfg.precision`` with the checkpoint's contract (crop, resize filter, network size, depth range) and the
    node's scale (scale_mode auto without odometry: the checkpoint's metric scale, or none). Returns the network
    view's plan, depth at network size per frame, T_b_a per consecutive pair, and the backend's description."""
    from ros2_monodepth.core.pipeline import CameraIntrinsics, FramePipeline, PipelineConfig

    pcfg = PipelineConfig(checkpoint_dir=checkpoint or "", backend=cfg.backend, precision=cfg.precision,
                          network_size=cfg.network_size if cfg.network_size != (0, 0) or checkpoint
                          else meta.network_size,
                          depth_resolution="network", publish_odometry=True,
                          depth_output_scale=cfg.depth_output_scale)
    pipeline, why = FramePipeline.create(pcfg)
    try:
        H, W = frames[0].rgb.shape[:2]
        intrinsics = CameraIntrinsics(np.asarray(K, np.float64), W, H, "bag")
        bgr = pipeline.channel_order == "bgr"
        depths: List[np.ndarray] = []
        rel: List[np.ndarray] = []
        previous = None
        for f in frames:
            image = np.ascontiguousarray(f.rgb[..., ::-1]) if bgr else f.rgb
            frame = pipeline.prepare(image, intrinsics, f.stamp_ns / 1e9)
            depths.append(pipeline.depth(frame).depth)
            if previous is not None and pipeline.has_pose:
                rel.append(se3_inverse(pipeline.backend.relative_pose(previous.net_input, frame.net_input)))
            previous = frame
        rule = pipeline.input_plan((H, W))
        plan = ResizePlan(rule.crop, rule.out_size, rule.intrinsics(K), rule.interpolation)
        return plan, depths, rel, f"{pipeline.backend.describe()} ({why})"
    finally:
        pipeline.close()


def evaluate(checkpoint: Optional[str], cfg: EvalConfig, out: Optional[Path] = None) -> Dict[str, Any]:
    """All metrics for one checkpoint on ``cfg.bags`` (None: untrained networks from ``cfg.seed``), run as the node
    runs them (``predict_as_node``) or, with ``cfg.backend`` 'offline', eager PyTorch fp32 (``predict``)."""
    if checkpoint:
        depth_net, pose_net, meta = load_checkpoint(checkpoint)
    else:
        torch.manual_seed(cfg.seed)
        meta = CheckpointMetadata(network_size=cfg.network_size if cfg.network_size != (0, 0) else (96, 320),
                                  source="untrained")
        depth_net, pose_net = DepthNet(meta.num_layers).eval(), PoseNet(meta.num_layers).eval()
    depth_topic, pose_topic, pose_tf, notes = _topics_to_use(cfg)
    frames, K = read_ground_truth(cfg.bags, cfg.topic, depth_topic, pose_topic, cfg.mask_topic, cfg.stride,
                                  cfg.camera_info_topic, pose_tf, mount_from(cfg.camera_mount), cfg.max_pose_gap, notes)
    size = cfg.network_size if cfg.network_size != (0, 0) else meta.network_size
    if cfg.backend == "offline":
        plan = ResizePlan.make(frames[0].rgb.shape[:2], size, K, cfg.crop or meta.crop, meta.resize_filter)
        depths, rel = predict(depth_net, pose_net, frames, plan, meta)
        notes["networks"] = f"offline: eager PyTorch fp32, {cfg.crop or meta.crop} crop"
        if cfg.depth_output_scale:
            notes["depth_output_scale"] = "ignored with --backend offline (the full-resolution head is scored)"
    else:
        if cfg.crop and cfg.crop != meta.crop:
            notes["crop"] = f"--crop {cfg.crop} ignored: the node applies the checkpoint's ({meta.crop}); use --backend offline"
        plan, depths, rel, described = predict_as_node(checkpoint, cfg, frames, K, meta)
        if pose_net is None:
            rel = []
        notes["networks"] = (f"as the node runs them: {described}, {meta.crop} crop"
                             + (", depth from the half-resolution head (depth_output_scale 1)" if cfg.depth_output_scale else ""))
    result: Dict[str, Any] = {"checkpoint": checkpoint or "untrained", "size": list(size), "backend": cfg.backend}
    if isinstance(meta.extra.get("verdict"), dict):
        from .verdict import format_verdict

        # the training run's own verdict, written into the checkpoint when it ended
        result["training_verdict"] = meta.extra["verdict"]
        notes["training verdict"] = format_verdict(meta.extra["verdict"]).replace("\n", ";")
    if depth_topic:
        result.update(evaluate_depth(frames, depths, plan, cfg.cap_min_depth, cfg.cap_max_depth))
        # a metric checkpoint is also scored as it is (scale 1): what the node publishes under scale_mode auto
        fixed_scale = cfg.fixed_scale if cfg.fixed_scale is not None else (1.0 if meta.metric else None)
        if fixed_scale is not None:
            fixed = evaluate_depth(frames, depths, plan, cfg.cap_min_depth, cfg.cap_max_depth, fixed_scale)
            result.update({f"{k}_fixed_scale": v for k, v in fixed.items() if k in DEPTH_METRICS})
            result["fixed_scale"] = fixed_scale
            if cfg.fixed_scale is None:
                notes["fixed scale"] = f"1 (the checkpoint is metric: {meta.scale_source or 'its metadata says so'})"
    if pose_net is not None and rel and (pose_topic or pose_tf):
        result.update(evaluate_odometry(frames, chain_trajectory(rel), out / "trajectory.png" if out else None))
    result["notes"] = notes
    if out is not None:
        picks = [int(i) for i in np.linspace(0, len(frames) - 1, 4).round()]
        depth_figure(out / "depth_examples.png", frames, depths, plan, picks)
    return result


def evaluate_published(frames: List[GroundTruthFrame], depth_images: Dict[int, np.ndarray], odometry: Dict[int, np.ndarray],
                       plan: ResizePlan, T_base_cam: np.ndarray, cfg: EvalConfig, metric: bool,
                       out: Optional[Path] = None) -> Dict[str, Any]:
    """The same metrics on what a node published: ``depth_images`` (stamp ns -> depth/image in metres at network
    resolution, the region ``plan`` says) and ``odometry`` (stamp ns -> T_odom_base), against the ground truth of
    the frames with those stamps. Odometry is moved onto the camera with ``T_base_cam`` (the mount the node used)."""
    by_stamp = {f.stamp_ns: f for f in frames}
    result: Dict[str, Any] = {"checkpoint": "published by the node", "size": list(plan.out_size)}
    notes: Dict[str, str] = {}
    shown = [by_stamp[t] for t in sorted(depth_images) if t in by_stamp and by_stamp[t].depth is not None]
    if shown:
        depths = [depth_images[f.stamp_ns] for f in shown]
        result.update(evaluate_depth(shown, depths, plan, cfg.cap_min_depth, cfg.cap_max_depth))
        if metric or cfg.fixed_scale is not None:
            scale = cfg.fixed_scale if cfg.fixed_scale is not None else 1.0
            fixed = evaluate_depth(shown, depths, plan, cfg.cap_min_depth, cfg.cap_max_depth, scale)
            result.update({f"{k}_fixed_scale": v for k, v in fixed.items() if k in DEPTH_METRICS})
    notes["depth"] = f"{len(shown)} published depth images matched to ground truth of {len(frames)} frames"
    tracked = [by_stamp[t] for t in sorted(odometry) if t in by_stamp]
    if len(tracked) >= 3:
        estimated = [odometry[f.stamp_ns] @ T_base_cam for f in tracked]
        result.update(evaluate_odometry(tracked, estimated, out / "trajectory.png" if out else None))
    notes["odometry"] = f"{len(tracked)} published odometry messages matched to {len(frames)} frames"
    result["notes"] = notes
    return result


def output_names(checkpoints: Sequence[str]) -> List[str]:
    """A folder name per checkpoint that no other gets: the shortest tail of its path that is unique
    (runs/a/checkpoint and runs/b/checkpoint -> a_checkpoint, b_checkpoint).

    >>> output_names(["runs/a/checkpoint", "runs/b/checkpoint", "untrained"])
    ['a_checkpoint', 'b_checkpoint', 'untrained']
    """
    # absolute but not resolved: a run's checkpoint is a link to its newest version, and the run's name is wanted
    parts = [Path(os.path.abspath(c)).parts if c != "untrained" else ("untrained",) for c in checkpoints]
    for n in range(1, max(len(p) for p in parts) + 1):
        names = ["_".join(p[-n:]).strip("/_") or "root" for p in parts]
        if len(set(names)) == len(names):
            return names
    return [f"{i}_{name}" for i, name in enumerate(names)]


def main(argv: Optional[Sequence[str]] = None) -> int:
    cfg = parse_eval_args(argv)
    names = cfg.checkpoints or ["untrained"]
    folders = output_names(names)
    results: Dict[str, Dict[str, Any]] = {}
    try:
        # every output folder is checked before any evaluation runs
        outs = [writable_output_dir(Path(cfg.out) / (folder if len(names) > 1 else "")) if cfg.out else None
                for folder in folders]
        for name, out in zip(names, outs):
            results[name] = evaluate(None if name == "untrained" else name, cfg, out)
    except (BagError, CheckpointError, OutputError) as exc:
        print(f"ros2-monodepth-eval: error: {exc}", file=sys.stderr)
        return 2
    print(print_table(results))
    if cfg.out:
        (Path(cfg.out) / "metrics.json").write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

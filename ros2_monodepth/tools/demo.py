"""``ros2-monodepth-demo``: the whole loop on a fresh machine, with no data and no weights to download.

1. generates a training bag of a synthetic street (image, camera_info, the robot's wheel odometry on /odom with
   noise and 1 % drift, ground-truth depth and pose) and trains the depth and pose networks on it from scratch for
   ``--train-steps`` steps with velocity supervision from /odom, which makes them metric (both cached in
   ``~/.cache/ros2_monodepth/demo``: the next run starts at step 3);
2. generates a test bag of a different street (written to ``--out``);
3. starts monodepth_node with config/monodepth.yaml (scale_mode auto) and the trained checkpoint, plays the test
   bag's camera to it as recorded (loopback DDS only) and records every output;
4. evaluates the checkpoint and the untrained networks on the test bag against its ground truth.

Writes to ``--out``:

  test_bag/          the camera stream the node was given, with ground truth (mcap)
  outputs_bag/       the node's outputs as a ROS 2 bag (mcap), written with rosbags from the raw CDR
  input.png          the last camera frame
  depth.png          its depth, false colour (what depth/colorized shows in RViz)
  depth.npy          the 32FC1 depth in metres, NaN = invalid
  points.ply         the last point cloud (camera optical frame), coloured
  odometry.tum       the odometry track (TUM format: t x y z qx qy qz qw), and ground_truth.tum
  summary.png        input, depth, bird's-eye view of the cloud and the odometry track in one picture
  evaluation/        metrics.json (trained vs untrained), depth_examples.png and trajectory.png per model
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..cli_help import HelpFormatter
from .node_process import NodeProcess, wait_for_discovery
from .ros_session import force_loopback_env, params_file, use_large_message_dds_profile

# (height, width) of the demo's networks: 4:3, as its 256x192 camera, so the node sees the whole image as trained
DEMO_NETWORK = (96, 128)


def parse_args(argv: Optional[Sequence[str]]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="ros2-monodepth-demo", description=__doc__.split("\n\n")[0],
                                epilog=__doc__.split("\n\n", 1)[1], formatter_class=HelpFormatter)
    p.add_argument("--out", default="demo_output", help="output folder (default: %(default)s)")
    p.add_argument("--checkpoint", default="", help="use this checkpoint instead of training one")
    p.add_argument("--no-train", action="store_true", help="skip training: the node runs untrained networks")
    p.add_argument("--train-steps", type=int, default=600, help="training steps (default: %(default)s, about 4 min on 2 cores with bf16, 19 in fp32)")
    p.add_argument("--train-frames", type=int, default=400, help="frames in the training bag (default: %(default)s)")
    p.add_argument("--cache", default="", help="cache folder for the training bag and run (default: ~/.cache/ros2_monodepth/demo)")
    p.add_argument("--backend", default="auto", help="node backend parameter (default: %(default)s)")
    p.add_argument("--frames", type=int, default=100, help="test frames to publish (default: %(default)s)")
    p.add_argument("--rate", type=float, default=5.0, help="publish rate in Hz (default: %(default)s)")
    p.add_argument("--width", type=int, default=256, help="camera width (default: %(default)s; 4:3, as most robots' cameras)")
    p.add_argument("--height", type=int, default=192, help="camera height (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="scene seed of the training bag; the test bag uses seed + 1 (default: %(default)s)")
    p.add_argument("--param", action="append", default=[], metavar="NAME:=VALUE",
                   help="extra node parameter, repeatable (e.g. --param scale_mode:=camera_height)")
    return p.parse_args(argv)


def _trained_checkpoint(args: argparse.Namespace) -> str:
    """Generate the training bag and train on it, or reuse both from the cache. Returns the checkpoint folder."""
    import hashlib
    import json
    from dataclasses import asdict

    from ros2_monodepth_training.config import TrainConfig
    from ros2_monodepth_training.synth_bag import SynthConfig, write_synthetic_bag
    from ros2_monodepth_training.train import train_or_reuse

    from ..core.fileio import default_cache_dir

    cache = Path(args.cache) if args.cache else default_cache_dir() / "demo"
    synth = SynthConfig(Path(), frames=args.train_frames, width=args.width, height=args.height, seed=args.seed,
                        moving_object=True, still=((args.train_frames // 3, args.train_frames // 3 + 20),),
                        odometry=True, odom_noise=0.002, odom_drift=0.01)
    # the robot's wheel odometry (/odom in the bag) supervises the pose network's translation: a metric checkpoint.
    # epochs=20 is the run's length for the learning-rate schedule (x0.1 at 75 % of the 600 steps, as in the paper)
    # a 4:3 network (128x96) for the 4:3 camera: the node sees the whole image, as trained
    run_cfg = TrainConfig(bags=[], out="", network_size=DEMO_NETWORK, lr=2e-4, batch_size=8, epochs=20, workers=1,
                          checkpoint_every=100, seed=args.seed, odometry_topic="/odom")
    described = [{k: v for k, v in asdict(c).items() if k not in ("bags", "out")} for c in (synth, run_cfg)]
    key = hashlib.sha256(json.dumps([described, args.train_steps, 2], default=str).encode()).hexdigest()[:12]
    bag = cache / f"train_bag_{key}"
    if not (bag / "metadata.yaml").is_file():
        print(f"[demo] writing the training bag {bag}")
        write_synthetic_bag(replace(synth, out=bag), progress=True)
    print(f"[demo] training {args.train_steps} steps from scratch on {bag}, velocity-supervised by its /odom "
          f"(cached in {cache})")
    run = replace(run_cfg, bags=[str(bag)], out=str(cache / f"run_{key}"))
    return str(train_or_reuse(run, args.train_steps))


def _evaluate(out: Path, test_bag: Path, checkpoint: str, published_depth: Dict[int, np.ndarray],
              published_odometry: Dict[int, np.ndarray], T_base_cam: np.ndarray) -> None:
    """One table: what the node published (scored from its outputs), the evaluation run as the node runs the
    networks, the offline fp32 path training uses, and the untrained networks."""
    import json

    from ros2_monodepth_training.config import EvalConfig
    from ros2_monodepth_training.dataset import ResizePlan
    from ros2_monodepth_training.evaluate import evaluate, evaluate_published, print_table, read_ground_truth

    from ..core.checkpoint import read_metadata
    from ..core.model_contract import CheckpointMetadata

    cfg = EvalConfig(bags=[str(test_bag)], mask_topic="/ground_truth/moving_mask")
    results = {}
    frames, K = read_ground_truth([test_bag], cfg.topic, "/ground_truth/depth", "/ground_truth/pose", cfg.mask_topic)
    meta = read_metadata(checkpoint) if checkpoint else CheckpointMetadata(network_size=DEMO_NETWORK)
    # the region the node's depth covers: its network size (as published) and the checkpoint's crop
    size = next(iter(published_depth.values())).shape[:2] if published_depth else meta.network_size
    plan = ResizePlan.make(frames[0].rgb.shape[:2], size, K, meta.crop, meta.resize_filter)
    runs = [("node, published", None)]
    if checkpoint:
        runs += [("eval, node's backend", replace(cfg, backend="auto")), ("offline fp32", replace(cfg, backend="offline"))]
    runs.append(("untrained", replace(cfg, network_size=DEMO_NETWORK)))
    for label, run_cfg in runs:
        sub = out / "evaluation" / label.replace(", ", "_").replace("'", "").replace(" ", "_")
        sub.mkdir(parents=True, exist_ok=True)
        if run_cfg is None:
            results[label] = evaluate_published(frames, published_depth, published_odometry, plan, T_base_cam, cfg,
                                                meta.metric, sub)
        else:
            results[label] = evaluate(checkpoint if label != "untrained" else None, run_cfg, sub)
    (out / "evaluation" / "metrics.json").write_text(json.dumps(results, indent=2))
    print("[demo] evaluation on the test bag (depth capped 0.1-80 m, per-image median scaling and, for the metric "
          "checkpoint, as it is (_fixed_scale); ATE after Sim(3) and SE(3) alignment). 'node, published' scores the "
          "node's own depth/image and odom messages:")
    print(print_table(results))


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    force_loopback_env()
    use_large_message_dds_profile()
    from ros2_monodepth_training.evaluate import read_ground_truth
    from ros2_monodepth_training.synth_bag import SynthConfig, write_synthetic_bag

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    checkpoint = args.checkpoint or ("" if args.no_train else _trained_checkpoint(args))
    test_bag = write_synthetic_bag(SynthConfig(out / "test_bag", frames=args.frames, width=args.width, height=args.height,
                                               seed=args.seed + 1,  # 10 Hz stamps, 0.1 m per frame, as in training
                                               moving_object=True), progress=True)
    gt_frames, K = read_ground_truth([test_bag], "/camera/image_raw", None, "/ground_truth/pose")
    topics = _output_topics()
    log_path = out / "node.log"
    raw = _play_to_node(args, log_path, test_bag, K, checkpoint, topics)
    n_depth = len(raw[f"{NS}/depth/image"])
    print(f"[demo] received {n_depth} depth images, {len(raw[f'{NS}/points'])} clouds, {len(raw[f'{NS}/odom'])} odometry "
          f"messages for {len(gt_frames)} frames")
    if n_depth == 0:
        print(f"[demo] the node published nothing; its log:\n{log_path.read_text()}", file=sys.stderr)
        return 1
    _write_outputs_bag(out / "outputs_bag", topics, raw)
    T_base_cam = _camera_mount(args.param)
    published_depth, published_odometry = _save_files(out, raw, gt_frames, T_base_cam, untrained=not checkpoint)
    _evaluate(out, test_bag, checkpoint, published_depth, published_odometry, T_base_cam)
    print(f"[demo] wrote {', '.join(sorted(p.name for p in out.iterdir()))} to {out}/")
    return 0


NS = "/demo"


def _output_topics() -> Dict[str, type]:
    """The node's outputs the demo records: topic -> message type."""
    from nav_msgs.msg import Odometry
    from sensor_msgs.msg import CameraInfo, Image, PointCloud2

    return {f"{NS}/depth/image": Image, f"{NS}/depth/camera_info": CameraInfo, f"{NS}/points": PointCloud2,
            f"{NS}/odom": Odometry, f"{NS}/depth/colorized": Image}


def _play_to_node(args: argparse.Namespace, log_path: Path, test_bag: Path, K: np.ndarray, checkpoint: str,
                  topics: Dict[str, type]) -> Dict[str, List[tuple]]:
    """Start the node, play the test bag's camera to it as recorded once it is ready, and keep what it published:
    topic -> [(receive time ns, serialized message)]."""
    import rclpy
    from diagnostic_msgs.msg import DiagnosticArray
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from std_msgs.msg import Header
    from tqdm import tqdm

    from ..ros.health import DiagnosticsReading, read_status
    from ..ros.messages import camera_info_msg
    from .bag_player import BagPlayer

    params: Dict[str, object] = {"backend": args.backend, "input_qos": "reliable"}
    if checkpoint:
        # The checkpoint is metric (velocity supervision): scale_mode auto publishes it as it is. The network size and
        # depth range come from its metadata too; a --param given by the user comes later and wins.
        params.update(checkpoint_dir=checkpoint)
    print(f"[demo] starting monodepth_node (log: {log_path}), ROS_DOMAIN_ID={os.environ['ROS_DOMAIN_ID']}, discovery on localhost")
    node_proc = NodeProcess(log_path, params, namespace=NS, extra_params=list(args.param))
    rclpy.init()
    node = rclpy.create_node("monodepth_demo")
    qos = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE)
    raw: Dict[str, List[tuple]] = {t: [] for t in topics}

    def keep(topic: str) -> Callable[[bytes], None]:
        return lambda data: raw[topic].append((time.time_ns(), data))

    for topic, msg_type in topics.items():
        node.create_subscription(msg_type, topic, keep(topic), qos, raw=True)
    ready = DiagnosticsReading()     # the node's readiness: its inference status says the backend is warmed up

    def on_diagnostics(msg: DiagnosticArray) -> None:
        for s in msg.status:
            if s.name.startswith(NS.strip("/") + "/"):
                read_status(ready, s.name, ((kv.key, kv.value) for kv in s.values))

    node.create_subscription(DiagnosticArray, "/diagnostics", on_diagnostics, 10)
    # the test bag's camera messages are published as recorded (as `ros2 bag play` would)
    player = BagPlayer([test_bag], "/camera/image_raw", "/camera/camera_info")
    pub_img, pub_info = player.publishers(node, NS, qos)
    try:
        wait_for_discovery(node, [pub_img, pub_info], list(topics), node_proc)
        # Discovery is seen from this side first; let the node's readers match too before the first frame. As
        # with a camera driver that is already running, camera_info flows first: the node warms its backend up
        # at that size (tracing, allocation), so the first frames are neither delayed nor dropped.
        first_stamp = player.frame(0)[2]
        first = Header(stamp=rclpy.time.Time(nanoseconds=int(first_stamp)).to_msg(), frame_id="camera_optical_frame")
        settle, warm_deadline = time.time() + 1.0, time.time() + 60
        while time.time() < settle or (not ready.warmed_up and time.time() < warm_deadline):
            pub_info.publish(camera_info_msg(first, K, args.width, args.height))
            rclpy.spin_once(node, timeout_sec=0.1)
        period = 1.0 / args.rate
        t0 = time.time()
        for i in tqdm(range(len(player.frames)), desc="publishing", unit="frame"):
            image_bytes, info_bytes, _ = player.frame(i)
            if info_bytes is not None:
                pub_info.publish(info_bytes)
            pub_img.publish(image_bytes)
            while time.time() < t0 + (i + 1) * period:
                rclpy.spin_once(node, timeout_sec=0.01)
        end = time.time() + 10
        while time.time() < end and len(raw[f"{NS}/odom"]) < len(player.frames):
            rclpy.spin_once(node, timeout_sec=0.05)
    finally:
        node_proc.stop()
        node.destroy_node()
        rclpy.try_shutdown()
    return raw


def _write_outputs_bag(bag_dir: Path, topics: Dict[str, type], raw: Dict[str, List[tuple]]) -> None:
    """Everything the node published, as received, in an MCAP bag (``ros2 bag play`` / RViz)."""
    from rosbags.rosbag2 import StoragePlugin, Writer
    from rosbags.typesys import Stores, get_typestore

    if bag_dir.exists():
        shutil.rmtree(bag_dir)
    store = get_typestore(Stores.ROS2_JAZZY)
    with Writer(bag_dir, version=8, storage_plugin=StoragePlugin.MCAP) as writer:
        for topic, msg_type in topics.items():
            type_name = f"{msg_type.__module__.split('.')[0]}/msg/{msg_type.__name__}"
            conn = writer.add_connection(topic, type_name, typestore=store)
            for t_ns, data in raw[topic]:
                writer.write(conn, t_ns, data)


def _save_files(out: Path, raw: Dict[str, List[tuple]], gt_frames: List, T_base_cam: np.ndarray,
                untrained: bool) -> Tuple[Dict[int, np.ndarray], Dict[int, np.ndarray]]:
    """Pictures and files from the last frame (input, depth, cloud), the trajectories (TUM) and the summary
    figure; returns the published depth and odometry poses by stamp (ns) for the evaluation."""
    import cv2
    from nav_msgs.msg import Odometry
    from rclpy.serialization import deserialize_message
    from sensor_msgs.msg import Image, PointCloud2

    from ..core.geometry import matrix_to_quaternion, quaternion_to_matrix, se3_inverse
    from ..core.image_codec import image_to_numpy
    from ..core.pointcloud import write_ply
    from ..ros.pointcloud2 import cloud_colors, cloud_to_numpy

    stamps = np.array([f.stamp_ns for f in gt_frames], np.int64)
    last_depth = deserialize_message(raw[f"{NS}/depth/image"][-1][1], Image)
    np.save(out / "depth.npy", image_to_numpy(last_depth))
    stamp_last = last_depth.header.stamp.sec + 1e-9 * last_depth.header.stamp.nanosec
    idx = int(np.argmin(np.abs(stamps / 1e9 - stamp_last)))
    cv2.imwrite(str(out / "input.png"), cv2.cvtColor(gt_frames[idx].rgb, cv2.COLOR_RGB2BGR))
    colorized = image_to_numpy(deserialize_message(raw[f"{NS}/depth/colorized"][-1][1], Image))
    cv2.imwrite(str(out / "depth.png"), colorized)
    xyz = None
    if raw[f"{NS}/points"]:
        cloud = deserialize_message(raw[f"{NS}/points"][-1][1], PointCloud2)
        xyz = cloud_to_numpy(cloud)
        n = write_ply(str(out / "points.ply"), xyz, cloud_colors(cloud))
        print(f"[demo] points.ply: {n} points")
    odoms = [deserialize_message(d, Odometry) for _, d in raw[f"{NS}/odom"]]
    track = np.array([[o.header.stamp.sec + 1e-9 * o.header.stamp.nanosec, o.pose.pose.position.x, o.pose.pose.position.y,
                       o.pose.pose.position.z, o.pose.pose.orientation.x, o.pose.pose.orientation.y,
                       o.pose.pose.orientation.z, o.pose.pose.orientation.w] for o in odoms]).reshape(-1, 8)
    np.savetxt(out / "odometry.tum", track, fmt="%.9f")
    # ground truth of base_link in odom, with the camera mount the node was given
    T_w_b = [f.pose @ se3_inverse(T_base_cam) for f in gt_frames]
    gt = []
    for t, T in zip(stamps, T_w_b):
        rel = se3_inverse(T_w_b[0]) @ T
        gt.append([t / 1e9, *rel[:3, 3], *matrix_to_quaternion(rel[:3, :3])])
    np.savetxt(out / "ground_truth.tum", np.array(gt), fmt="%.9f")
    _summary_figure(out / "summary.png", gt_frames[idx].rgb, colorized, xyz, track, np.array(gt), untrained=untrained)
    published_depth = {}
    for _, data in raw[f"{NS}/depth/image"]:
        msg = deserialize_message(data, Image)
        published_depth[msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec] = image_to_numpy(msg).astype(np.float32)
    published_odometry = {}
    for o in odoms:
        T = np.eye(4)
        q = o.pose.pose.orientation
        T[:3, :3] = quaternion_to_matrix(np.array([q.x, q.y, q.z, q.w]))
        T[:3, 3] = [o.pose.pose.position.x, o.pose.pose.position.y, o.pose.pose.position.z]
        published_odometry[o.header.stamp.sec * 10**9 + o.header.stamp.nanosec] = T
    return published_depth, published_odometry


def _camera_mount(overrides: Sequence[str]) -> np.ndarray:
    """base -> optical frame as the node sees it: the params file, then any --param camera_mount.* override."""
    import yaml

    from ..core.geometry import rpy_to_matrix

    params = yaml.safe_load(Path(params_file()).read_text())["/**"]["ros__parameters"]["camera_mount"]
    for item in overrides:
        name, _, value = item.partition(":=")
        if name in ("camera_mount.xyz", "camera_mount.rpy"):
            params[name.split(".")[1]] = yaml.safe_load(value)
    T = np.eye(4)
    T[:3, :3] = rpy_to_matrix(*params["rpy"])
    T[:3, 3] = params["xyz"]
    return T


def _summary_figure(path: Path, image: np.ndarray, colorized_bgr: np.ndarray, xyz: Optional[np.ndarray],
                    track: np.ndarray, gt: np.ndarray, untrained: bool) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(2, 2, figsize=(12, 8))
    ax[0, 0].imshow(image)
    ax[0, 0].set_title("camera image")
    ax[0, 1].imshow(colorized_bgr[:, :, ::-1])
    ax[0, 1].set_title("depth (near = bright)" + ("  [untrained weights]" if untrained else ""))
    for a in ax[0]:
        a.axis("off")
    if xyz is not None:
        p = xyz.reshape(-1, 3)
        p = p[np.isfinite(p).all(axis=1)]
        ax[1, 0].scatter(p[:, 0], p[:, 2], s=0.5, c=p[:, 1], cmap="viridis_r")
        ax[1, 0].set_xlabel("x right (m)")
        ax[1, 0].set_ylabel("z forward (m)")
        ax[1, 0].set_title("point cloud, bird's-eye view (camera frame)")
        ax[1, 0].set_aspect("equal", adjustable="datalim")
    ax[1, 1].plot(gt[:, 1], gt[:, 2], "k--", label="ground truth")
    ax[1, 1].plot(track[:, 1], track[:, 2], "r.-", label="odometry (odom -> base_link)")
    ax[1, 1].set_xlabel("x (m)")
    ax[1, 1].set_ylabel("y (m)")
    ax[1, 1].set_title("trajectory")
    ax[1, 1].legend()
    ax[1, 1].set_aspect("equal", adjustable="datalim")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())

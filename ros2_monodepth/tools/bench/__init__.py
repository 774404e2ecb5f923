"""``ros2-monodepth-bench``: frame rate, latency and resource figures of the node, model-only timings, and the
training step.

Three modes, one table on stdout and one JSON file each (``--plot`` draws a picture too):

``model``  times depth + pose through each backend/precision on the same camera frames (no ROS), next to the
           plain fp32 eager PyTorch networks (NCHW, no autocast: the baseline the speed-ups are quoted against),
           and gives each configuration's depth abs_rel difference from fp32 on the sequence.
``node``   starts monodepth_node (or measures one already running with ``--attach``), publishes generated
           frames (or a bag's) at a fixed rate, or closed-loop at the highest rate it sustains (the next
           frame leaves when the previous frame's odometry arrives), and reports the sustained rate, latency
           from image stamp to depth / points / odom (min, mean, p50, p99, max), jitter (std of the output
           interval), dropped frames, the node process's CPU % and memory (start, end, max, slope), and the
           share of each stage from the node's /diagnostics.
``train``  the project's training step against a plain fp32 eager implementation of the same loss.
``pose``   how well the pose network learns with large motion (1 m a frame): variants of the training loop trained
           from scratch with several seeds on the same synthetic frames, RPE/ATE on a held-out bag, side by side.
``profile`` each ONNX Runtime graph the node runs (int8 by default), operator by operator: time, share, each
           convolution's GMAC/s against the fastest one's, the graph's floor and the largest gaps to it.
``soak``   the node for a long time (``--duration``, 10 minutes for the README) on frames whose size keeps changing,
           with bad inputs mixed in (``--bad-every``): memory every second, outputs per minute, refusals by reason,
           crashes.

Every process it starts uses loopback-only discovery and its own ROS_DOMAIN_ID.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Dict, Optional, Sequence, Tuple

import numpy as np

from ...cli_help import HelpFormatter, network_size_option
from ..ros_session import force_loopback_env, use_large_message_dds_profile
from .common import bag_frames, generated_frames, stats_ms
from .model import MODEL_CONFIGS, ModelBenchConfig, model_bench, print_model_table
from .node import NodeBenchConfig, node_bench, print_node_table
from .train import TrainBenchConfig, print_train_table, train_bench

__all__ = ["main", "stats_ms"]


def parse_args(argv: Optional[Sequence[str]]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="ros2-monodepth-bench", description=__doc__.split("\n\n")[0],
                                epilog=__doc__.split("\n\n", 1)[1], formatter_class=HelpFormatter)
    p.add_argument("mode", choices=("model", "node", "train", "soak", "pose", "profile"),
                   help="model-only timings, the whole node, training steps against a plain fp32 implementation, the "
                        "node under a long hostile stream, pose learning with large motion, or the graphs' operators")
    p.add_argument("--out", default="bench.json", help="JSON file to write (default: %(default)s)")
    p.add_argument("--plot", help="also draw the result into this PNG (model and node modes)")
    p.add_argument("--checkpoint", default="", help="checkpoint folder (default: untrained networks; the timing is the same)")
    p.add_argument("--bag", help="take camera frames from this bag instead of generating them; node mode plays it as "
                                 "recorded (encoding, stamps, camera_info, raw or compressed)")
    p.add_argument("--topic", default="/camera/image_raw", help="image topic in --bag (default: %(default)s)")
    p.add_argument("--camera-info-topic", default="/camera/camera_info", help="CameraInfo topic in --bag (default: %(default)s)")
    p.add_argument("--frames", type=int, default=None,
                   help="distinct frames, looped (default: 20; node mode with --bag: the whole recording)")
    p.add_argument("--width", type=int, default=640, help="camera width (default: %(default)s)")
    p.add_argument("--height", type=int, default=480, help="camera height (default: %(default)s)")
    p.add_argument("--network-size", type=network_size_option, metavar="WxH",
                   help="network input size, multiples of 32 (default: the checkpoint's; 640x192 for untrained networks, "
                        "320x96 in pose mode)")
    p.add_argument("--warmup", type=int, default=5, help="untimed runs first (default: %(default)s)")
    p.add_argument("--threads", type=int, default=0, help="model and train modes: torch threads (default: %(default)s, torch's)")
    p.add_argument("--repeats", type=int, default=30, help="timed frames per configuration / of the baseline (default: %(default)s)")
    p.add_argument("--depth-output-scale", type=int, choices=[0, 1], default=0,
                   help="model and profile modes: the disparity head the depth graph ends at, 0 full or 1 half "
                        "resolution (node mode: --param depth_output_scale:=1) (default: %(default)s)")
    m = p.add_argument_group("model mode")
    m.add_argument("--configs", nargs="+", default=list(MODEL_CONFIGS), metavar="BACKEND:PRECISION",
                   help="configurations to time next to the eager fp32 baseline; torch takes a third field "
                        "'eager' for the untraced path (default: %(default)s)")
    t = p.add_argument_group("train mode")
    t.add_argument("--batch-size", type=int, default=None, help="(default: 4 in train mode, 8 in pose mode)")
    t.add_argument("--compile-loss", choices=("auto", "on", "off"), default="auto",
                   help="as ros2-monodepth-train --compile-loss (default: %(default)s)")
    q = p.add_argument_group("pose mode")
    q.add_argument("--steps", type=int, default=480, help="training steps per run (default: %(default)s)")
    q.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="(default: %(default)s)")
    q.add_argument("--variant", action="append", metavar="NAME[=--opt,value,...]",
                   help="a variant of the training loop, repeatable: 'previous' and 'current' are built in, or training "
                        "options after '=' (default: previous and current)")
    q.add_argument("--speed", type=float, default=10.0, help="m/s at 10 Hz (default: %(default)s, 1 m a frame)")
    q.add_argument("--work-dir", default="pose_bench", help="bags and runs, reused when run again (default: %(default)s)")
    n = p.add_argument_group("node mode")
    n.add_argument("--no-baseline", dest="baseline", action="store_false",
                   help="skip timing the eager fp32 networks first (the speed-up ratio needs them)")
    n.add_argument("--rate", type=float, default=0.0, help="publish rate in Hz; 0 = closed loop, the highest sustained "
                                                          "rate (default: %(default)s; soak: 0 means 10 Hz)")
    n.add_argument("--bag-rate", type=float, default=0.0,
                   help="with --bag: play at the recorded pace times this factor (1 = real time); 0 = as --rate "
                        "(default: %(default)s)")
    n.add_argument("--bad-every", type=int, default=5, help="soak: one bad input in every N messages (default: %(default)s)")
    n.add_argument("--duration", type=float, default=30.0, help="seconds of measurement (default: %(default)s)")
    n.add_argument("--backend", default="auto", help="node backend parameter (default: %(default)s)")
    n.add_argument("--precision", default="auto",
                   help="node precision parameter; profile mode: int8 or fp32 graphs (default: %(default)s; int8 in "
                        "profile mode)")
    n.add_argument("--attach", action="store_true", help="measure a node already running in --namespace instead of starting one")
    n.add_argument("--attach-pid", type=int, default=0, help="with --attach: the node's PID for CPU/memory figures")
    n.add_argument("--namespace", default="/bench", help="node namespace (default: %(default)s)")
    n.add_argument("--param", action="append", default=[], metavar="NAME:=VALUE", help="extra node parameter, repeatable")
    n.add_argument("--node-log", default="bench_node.log", help="node output (default: %(default)s)")
    return p.parse_args(argv)


def _network_size(args: argparse.Namespace) -> Tuple[int, int]:
    """--network-size, else the checkpoint's training size, else Monodepth2's 640x192."""
    if args.network_size:
        return tuple(args.network_size)
    if args.checkpoint:
        from ...core.checkpoint import read_metadata

        return read_metadata(args.checkpoint).network_size
    return (192, 640)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    force_loopback_env()
    use_large_message_dds_profile()
    network_size = _network_size(args)
    if args.mode == "pose":
        from .pose import PoseBenchConfig, parse_variants, pose_bench, print_pose_table

        pose_cfg = PoseBenchConfig(Path(args.work_dir), args.steps, tuple(args.seeds), parse_variants(args.variant),
                                   args.frames or 60, args.speed, network_size=tuple(args.network_size or (96, 320)),
                                   batch_size=args.batch_size or 8, threads=args.threads)
        pose_res = pose_bench(pose_cfg)
        print(print_pose_table(pose_res))
        Path(args.out).write_text(json.dumps(pose_res, indent=2))
        print(f"[bench] wrote {args.out}")
        return 0
    if args.mode == "soak":
        from .soak import SoakConfig, print_soak_table, soak

        soaked = soak(SoakConfig(args.checkpoint, network_size, args.backend, args.precision, args.duration, args.rate or 10.0,
                              args.bad_every, args.namespace if args.namespace != "/bench" else "/soak", list(args.param),
                              args.node_log))
        print(print_soak_table(soaked))
        Path(args.out).write_text(json.dumps(soaked, indent=2))
        print(f"[bench] wrote {args.out}")
        return 0 if soaked["crashes"] == 0 else 1
    player = None
    K: Optional[np.ndarray]
    if args.bag and args.mode == "node":
        from ..bag_player import BagPlayer

        player = BagPlayer([args.bag], args.topic, args.camera_info_topic, max_frames=args.frames or 0)
        print(f"[bench] playing {len(player.frames)} frames of {args.topic} ({player.msgtype}, {player.encoding}) as recorded",
              flush=True)
        frames, K = player.decoded(args.repeats), None
    elif args.bag:
        frames, K = bag_frames(args.bag, args.topic, args.camera_info_topic, args.frames or 20)
    else:
        count = args.frames or 20
        print(f"[bench] rendering {count} frames at {args.width}x{args.height}", flush=True)
        frames, K = generated_frames(args.width, args.height, count)
    res: Dict[str, Any]
    if args.mode == "model":
        res = model_bench(ModelBenchConfig(args.checkpoint, network_size, args.warmup, args.repeats, args.threads,
                                           list(args.configs), args.depth_output_scale), frames)
        table = print_model_table(res)
    elif args.mode == "profile":
        from .profile import ProfileConfig, print_profile_table, profile_bench

        precision = args.precision if args.precision in ("int8", "fp32") else "int8"
        res = profile_bench(ProfileConfig(args.checkpoint, network_size, precision, args.warmup, args.repeats,
                                          depth_output_scale=args.depth_output_scale), frames)
        table = print_profile_table(res)
    elif args.mode == "train":
        assert K is not None, "train mode reads frames with their intrinsics"
        batch = args.batch_size or 4
        if len(frames) < batch + 2:
            raise SystemExit(f"train mode needs --frames >= --batch-size + 2 ({batch + 2})")
        res = train_bench(TrainBenchConfig(network_size, batch, args.warmup, args.repeats, args.threads,
                                           args.compile_loss), frames, K)
        table = print_train_table(res)
    else:
        res = node_bench(NodeBenchConfig(args.checkpoint, network_size, args.backend, args.precision, args.rate,
                                         args.duration, args.warmup, args.repeats, args.baseline, args.attach,
                                         args.attach_pid, args.namespace, list(args.param), args.node_log, args.bag_rate),
                         frames, K, player)
        table = print_node_table(res)
    print(table)
    Path(args.out).write_text(json.dumps(res, indent=2))
    print(f"[bench] wrote {args.out}")
    if args.plot and res["mode"] in ("model", "node"):
        from .plot import plot_result

        plot_result(res, args.plot)
        print(f"[bench] wrote {args.plot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

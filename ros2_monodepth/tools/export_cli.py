"""``ros2-monodepth-export CHECKPOINT_DIR``: write depth.onnx and pose.onnx for deployment.

The graphs take the camera's uint8 image (H, W, 3; rgb or bgr) at the size given and do the resize,
normalisation and disparity -> depth inside; outputs are depth (before any metric scale) at network or
camera resolution and the frame pair's relative pose as a 4x4 matrix. The result is checked against the
PyTorch model with onnxruntime and the maximum absolute error printed. With ``--int8`` the graphs are also
quantised for ONNX Runtime on the CPU (calibrated on bag frames), and the int8-vs-fp32 difference printed.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path
from typing import Any, Optional, Sequence, Tuple, Union

from ..cli_help import HelpFormatter, network_size_option, size_option


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="ros2-monodepth-export", description=__doc__.split("\n\n")[0],
                                formatter_class=HelpFormatter)
    p.add_argument("checkpoint_dir", help="Monodepth2-layout checkpoint folder")
    p.add_argument("--out", default=None, help="output folder (default: CHECKPOINT_DIR/onnx)")
    p.add_argument("--camera-size", type=size_option, default=None, metavar="WxH",
                   help="camera image size the graphs take (default: the network size)")
    p.add_argument("--network-size", type=network_size_option, default=None, metavar="WxH",
                   help="network input size, multiples of 32 (default: the checkpoint's)")
    p.add_argument("--channel-order", choices=["rgb", "bgr"], default="rgb", help="channel order of the input images")
    p.add_argument("--depth-resolution", choices=["network", "camera"], default="network")
    p.add_argument("--depth-output-scale", type=int, choices=[0, 1], default=0,
                   help="disparity head the depth graph ends at: 0 full resolution, 1 half resolution upsampled to the "
                        "same size (skips the decoder's last stage; the node's depth_output_scale must match to use "
                        "this export)")
    p.add_argument("--no-pose", action="store_true", help="export the depth graph only")
    p.add_argument("--int8", action="store_true",
                   help="also write int8 graphs calibrated on --calibration-bag frames: ONNX Runtime's for CPUs with "
                        "VNNI / AMX-INT8 (depth.int8.onnx, pose.int8.onnx; the node's precision 'auto' then uses them "
                        "on the CPU) and TensorRT's explicit Q/DQ graphs (depth.qdq.onnx, pose.qdq.onnx)")
    trt_group = p.add_argument_group("TensorRT (on the target machine, where TensorRT is installed)")
    trt_group.add_argument("--tensorrt", choices=["none", "fp32", "fp16", "int8"], default="none",
                           help="also build and cache TensorRT engines at this precision (int8 implies --int8)")
    trt_group.add_argument("--workspace-mb", type=int, default=1024,
                           help="builder workspace limit (not part of the engine cache key)")
    cal_group = p.add_argument_group("INT8 calibration (--int8, --tensorrt int8)")
    cal_group.add_argument("--calibration-bag", action="append", default=[], metavar="BAG",
                           help="bag(s) with camera frames from the robot's camera (repeatable)")
    cal_group.add_argument("--calibration-topic", default="/camera/image_raw", help="image topic in the calibration bags")
    cal_group.add_argument("--calibration-frames", type=int, default=200, help="frames used for INT8 calibration")
    args = p.parse_args(argv)
    if (args.tensorrt == "int8" or args.int8) and not args.calibration_bag:
        p.error("--int8 and --tensorrt int8 need --calibration-bag (frames from your camera)")
    if args.calibration_frames < 2:
        p.error(f"--calibration-frames must be at least 2, got {args.calibration_frames}")

    from ..core.checkpoint import CheckpointError, load_checkpoint
    from ..core.export import export_onnx, onnxruntime_parity, weights_fingerprint
    from ..core.fileio import OutputError, publish_files, temporary_dir, writable_output_dir

    out = Path(args.out) if args.out else Path(args.checkpoint_dir) / "onnx"
    try:
        depth_net, pose_net, meta = load_checkpoint(args.checkpoint_dir, load_pose=not args.no_pose)
        writable_output_dir(out, "--out" if args.out else "CHECKPOINT_DIR/onnx")
    except (CheckpointError, OutputError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    network_size = args.network_size or meta.network_size
    if network_size[0] % 32 or network_size[1] % 32:
        print(f"error: network size {network_size[1]}x{network_size[0]} must be multiples of 32", file=sys.stderr)
        return 2
    camera_size = args.camera_size or network_size
    if meta.crop != "none" and abs(camera_size[1] / camera_size[0] - network_size[1] / network_size[0]) > 1e-3:
        # the graph resizes the whole image: it would squash what training cropped (the node crops, then resizes)
        print(f"error: --camera-size {camera_size[1]}x{camera_size[0]} has another aspect ratio than the network "
              f"{network_size[1]}x{network_size[0]}, and this checkpoint was trained on a '{meta.crop}' crop "
              f"({args.checkpoint_dir}/metadata.json, field 'crop'): a graph cannot take that crop. Export at the "
              "network size (the default; the node crops and resizes the camera image itself)", file=sys.stderr)
        return 2
    calibration: Optional[Tuple[list, list, str]] = None
    if args.int8 or args.tensorrt == "int8":
        # the calibration frames first: a missing topic is found before any graph is written
        frames = _calibration_frames(args, camera_size, meta)
        if isinstance(frames, int):
            return frames
        calibration = frames
    print(f"exporting {meta.num_layers}-layer networks: camera {camera_size[1]}x{camera_size[0]} {args.channel_order} "
          f"-> network {network_size[1]}x{network_size[0]} -> depth at {args.depth_resolution} resolution")
    # everything is written into a temporary sibling and moved into --out at the end: a failure leaves nothing
    tmp = temporary_dir(out / "export")
    try:
        export_onnx(depth_net, pose_net, tmp, camera_size, network_size, meta.min_depth, meta.max_depth,
                    args.channel_order, args.depth_resolution == "camera", weights_fingerprint(args.checkpoint_dir),
                    depth_output_scale=args.depth_output_scale)
        errors = onnxruntime_parity(depth_net, pose_net, tmp)
        print("onnxruntime vs PyTorch: " + json.dumps(errors))
        if calibration is not None:
            status = _quantize(calibration, tmp)
            if status:
                return status
        written = publish_files(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"wrote {', '.join(str(out / name) for name in written)}")
    if args.tensorrt != "none":
        return _build_engines(args, out, network_size)
    return 0


def _calibration_frames(args: argparse.Namespace, camera_size: tuple, meta: Any) -> Union[int, Tuple[list, list, str]]:
    """Bag frames as the graphs take them (the checkpoint's crop and resize filter): every other one to calibrate,
    the ones in between to check; or the exit status after saying why there are not enough."""
    import itertools

    from ..core.bags import BagError, iter_frames, list_topics
    from ..core.model_contract import CropResize

    wanted = 2 * args.calibration_frames
    try:
        # spread over the whole recording, and never more than `wanted` frames in memory
        count = list_topics(args.calibration_bag).get(args.calibration_topic, ("", 0))[1]
        frames = [CropResize.make(f.shape[:2], camera_size, meta.crop, meta.resize_filter).apply(f)
                  for _, f in itertools.islice(iter_frames(args.calibration_bag, args.calibration_topic, None,
                                                           stride=max(1, count // wanted)), wanted)]
    except BagError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if len(frames) < 4:
        print(f"error: {len(frames)} frames on {args.calibration_topic} in {args.calibration_bag}: INT8 calibration "
              "needs at least 4", file=sys.stderr)
        return 2
    source = ", ".join(str(Path(b).name) for b in args.calibration_bag) + f" {args.calibration_topic}"
    return frames[0::2], frames[1::2], source


def _quantize(frames: Tuple[list, list, str], onnx_dir: Path) -> int:
    """Calibrate on every other bag frame, check int8 against fp32 on the frames in between."""
    from ..core.quantize import QuantizationError, int8_accuracy, quantize_export

    calibration, held_out, source = frames
    print(f"quantising to int8, calibrating on {len(calibration)} frames of {source}")
    try:
        quantize_export(onnx_dir, calibration, source)
        accuracy = int8_accuracy(onnx_dir, onnx_dir, held_out[:50])
    except QuantizationError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print("int8 vs fp32 on held-out frames: " + json.dumps(accuracy))
    return 0


def _build_engines(args: argparse.Namespace, onnx_dir: Path, network_size: tuple) -> int:
    """Build and cache the TensorRT engines of ``onnx_dir`` at ``args.tensorrt`` precision on this GPU (the node
    then finds them: the cache key does not include the workspace)."""
    import logging

    from ..core.artifacts import tensorrt_engines
    from ..core.backends.base import BackendError, ModelSpec
    from ..core.backends.trt_compat import load_tensorrt
    from ..core.hardware import cuda_available

    api, why = load_tensorrt()
    if api is None or not cuda_available():
        reason = why if api is None else "no CUDA device is visible to torch"
        print(f"error: cannot build TensorRT engines here ({reason}): the ONNX files are written; build the engines on "
              "the robot (this command with --tensorrt there, or the node with backend: tensorrt)", file=sys.stderr)
        return 3
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    spec = ModelSpec(checkpoint_dir=args.checkpoint_dir, network_size=network_size, device="cuda", precision=args.tensorrt,
                     with_pose=not args.no_pose, depth_output_scale=args.depth_output_scale)
    try:
        engines = tensorrt_engines(spec, api, args.workspace_mb << 20, onnx_dir)
    except BackendError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"TensorRT {args.tensorrt} engines ({engines.source}): {engines.depth}" + (f", {engines.pose}" if engines.pose else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""``ros2-monodepth-import DIR``: bring Monodepth2 weights that you downloaded into this project's checkpoint.

Reads encoder.pth, depth.pth and (when present) pose_encoder.pth, pose.pth with ``torch.load(...,
weights_only=True)`` only, checks every key and shape, reads height / width / use_stereo, and writes a
checkpoint folder with this project's metadata (the stereo scale for stereo-trained weights). Never
downloads anything.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Optional, Sequence
from ..cli_help import HelpFormatter
from ..core.model_contract import format_size

LICENCE_NOTICE = """\
NOTICE: the Monodepth2 weights published by Niantic, Inc. are licensed for NON-COMMERCIAL use only
(Monodepth2 licence, Copyright Niantic, Inc. 2019). Importing them does not change their licence: you are
responsible for using them under its terms. ros2_monodepth (Apache-2.0) ships no Monodepth2 code or weights.
"""


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="ros2-monodepth-import", description=__doc__.split("\n\n")[0],
                                epilog=__doc__.split("\n\n", 1)[1], formatter_class=HelpFormatter)
    p.add_argument("source", help="folder with the downloaded encoder.pth, depth.pth [, pose_encoder.pth, pose.pth]")
    p.add_argument("--out", required=True, help="checkpoint folder to write")
    p.add_argument("--stereo-scale", type=float, default=5.4,
                   help="metres per network unit of stereo-trained weights (default: %(default)s, KITTI)")
    p.add_argument("--min-depth", type=float, default=0.1, help="default: %(default)s")
    p.add_argument("--max-depth", type=float, default=100.0, help="default: %(default)s")
    args = p.parse_args(argv)
    print(LICENCE_NOTICE)

    from ..core.checkpoint import CheckpointError, load_checkpoint, save_checkpoint

    src = Path(args.source)
    if Path(args.out).resolve() == src.resolve():
        print("error: --out must differ from the source folder", file=sys.stderr)
        return 2
    try:
        depth_net, pose_net, meta = load_checkpoint(src)
    except CheckpointError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    meta.min_depth, meta.max_depth = args.min_depth, args.max_depth
    meta.stereo_scale = args.stereo_scale
    meta.source = f"monodepth2 import of {src.resolve()}"
    meta.extra["licence"] = "Monodepth2 weights: non-commercial use only (Niantic)"
    save_checkpoint(args.out, depth_net, pose_net, meta)
    kind = "stereo-trained (use scale_mode: stereo)" if meta.use_stereo else "monocular (relative scale)"
    print(f"imported ResNet-{meta.num_layers} {format_size(meta.network_size)} {kind}; pose network: "
          f"{'yes' if pose_net is not None else 'no (no odometry)'} -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Typed configuration of training and evaluation, and the command lines that build it.

Owns ``TrainConfig`` (``ros2-monodepth-train``) and ``EvalConfig`` (``ros2-monodepth-eval``): every option with its
default, the checks across options, and the argparse parsers that build a config once. Library functions take
these configs; the demo and the ablation build them directly.

    >>> cfg = parse_train_args(["bag", "--out", "runs/x", "--max-steps", "10"])
    >>> (cfg.bags, cfg.max_steps, cfg.batch_size)
    (['bag'], 10, 8)
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field, fields
from typing import Any, Dict, List, Optional, Sequence, Tuple

from ros2_monodepth.cli_help import HelpFormatter, network_size_option
from ros2_monodepth.core.model_contract import format_size, size_problem

from .pose_prior import PRIOR_MODES


def _gain_option(text: str) -> Optional[float]:
    """--pose-translation-gain: 'auto' (None) or a number (checked in ``TrainConfig.problems``)."""
    if text.strip().lower() == "auto":
        return None
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}': expected auto or a power of two such as 8") from None


@dataclass
class TrainConfig:
    bags: List[str]
    out: str
    # data: every (bag, image topic) is a sequence with its own camera
    topics: Tuple[str, ...] = ("/camera/image_raw",)
    camera_info_topics: Tuple[str, ...] = ()        # one per topic, in order; () = each topic's sibling camera_info
    intrinsics: Optional[Tuple[float, float, float, float]] = None
    right_topic: Optional[str] = None
    right_camera_info_topic: Optional[str] = None
    # network input (height, width); (0, 0): about AUTO_PIXELS pixels at the first sequence's camera aspect
    # (multiples of 32)
    network_size: Tuple[int, int] = (0, 0)
    crop: str = "center"
    stride: int = 1
    fps: float = 0.0
    static_threshold: float = 0.3
    val_fraction: float = 0.1
    val_range: Optional[Tuple[float, float]] = None
    workers: int = 2
    augment: bool = True
    # optimisation
    num_layers: int = 18
    batch_size: int = 8
    epochs: int = 20
    max_steps: int = 0
    max_minutes: float = 0.0
    # a stuck run (training.verdict) is restarted from a new initialisation: checked once at this step (0: never)
    stuck_check_steps: int = 100
    stuck_restarts: int = 2
    lr: float = 1e-4
    lr_schedule: str = "step"
    lr_step: int = 15
    lr_gamma: float = 0.1
    seed: int = 0
    init_resnet: Optional[str] = None
    init_checkpoint: Optional[str] = None
    resume: bool = False
    overwrite: bool = False
    precision: str = "auto"
    channels_last: bool = True
    compile_loss: str = "auto"
    device: str = "auto"
    threads: int = 0
    # loss
    scales: Tuple[int, ...] = (0, 1, 2, 3)
    min_reprojection: bool = True
    automask: bool = True
    full_res: bool = True
    smoothness: float = 1e-3
    explainability: float = 0.0
    stereo: bool = False
    monocular: bool = True
    min_depth: float = 0.1
    max_depth: float = 100.0
    # metric scale from the robot's own motion (velocity supervision)
    odometry_topic: str = ""
    odometry_tf: str = ""
    odometry_camera_mount: Optional[Tuple[float, float, float, float, float, float]] = None
    odometry_max_gap: float = 0.5
    velocity_weight: float = 0.05
    velocity_min_speed: float = 0.05
    velocity_warmup: int = 0
    # training-only multiplier of the pose network's translation (a power of two; None: from the odometry's median
    # distance a frame, ``pose_translation_gain``); folded into the weights when saved
    pose_translation_gain: Optional[float] = None
    # the pose network sees the network input shrunk by this factor (model contract pose_downscale): 1, 2 or 4
    pose_downscale: int = 1
    # 'separate' (Monodepth2's default: a second ResNet on the stacked pair) or 'shared' (a pose decoder on the depth
    # encoder's features of each frame: one encoder pass a frame in the node; model contract pose_model)
    pose_model: str = "separate"
    # a geometric start for the pose network (two-view geometry, fading out): training.pose_prior decides under auto
    pose_prior: str = "auto"
    pose_prior_weight: float = 1.0
    pose_prior_steps: int = 200
    pose_prior_floor: float = 0.0     # share of the weight kept after the fade (0: the photometric loss alone)
    # training-loop details that differ from Monodepth2's reference trainer (issue 18's ablations)
    tie_break: str = "fixed"
    pose_batch: str = "joint"
    pose_precision: str = "auto"
    resize_filter: str = "area"
    # output
    checkpoint_every: int = 200
    log_every: int = 20
    image_every: int = 200
    progress: bool = True

    def problems(self) -> List[str]:
        """What is wrong across options (empty when the configuration can run)."""
        out = []
        if self.network_size != (0, 0) and size_problem(tuple(self.network_size)):
            out.append(f"--network-size {format_size(self.network_size)}: {size_problem(tuple(self.network_size))}")
        if self.stereo and not (self.right_topic and self.right_camera_info_topic):
            out.append("--stereo needs --right-topic and --right-camera-info-topic")
        if not self.monocular and not self.stereo:
            out.append("--no-monocular needs --stereo")
        if self.camera_info_topics and len(self.camera_info_topics) != len(self.topics):
            out.append(f"{len(self.topics)} --topic but {len(self.camera_info_topics)} --camera-info-topic: give one per "
                       "image topic, in the same order, or none")
        if self.stereo and len(self.topics) != 1:
            out.append("--stereo needs exactly one (left) --topic")
        if self.init_resnet and self.init_checkpoint:
            out.append("give --init-resnet or --init-checkpoint, not both")
        if self.resume and self.overwrite:
            out.append("give --resume (continue the run in --out) or --overwrite (start again there), not both")
        if self.odometry_topic and self.odometry_tf:
            out.append("give --odometry-topic or --odometry-tf, not both")
        if self.odometry_tf and ":" not in self.odometry_tf:
            out.append(f"--odometry-tf is PARENT:CHILD (e.g. odom:base_link), got '{self.odometry_tf}'")
        if (self.odometry_topic or self.odometry_tf) and not self.monocular:
            out.append("velocity supervision scales the pose network: it needs monocular training")
        if self.pose_prior_weight < 0 or self.pose_prior_steps < 0:
            out.append("--pose-prior-weight and --pose-prior-steps must be >= 0")
        if not 0.0 <= self.pose_prior_floor <= 1.0:
            out.append(f"--pose-prior-floor is a share of --pose-prior-weight in [0, 1], got {self.pose_prior_floor:g}")
        if self.pose_prior not in PRIOR_MODES:
            out.append(f"--pose-prior is one of {', '.join(PRIOR_MODES)}, got '{self.pose_prior}'")
        if self.pose_prior == "on" and not self.monocular:
            out.append("--pose-prior on guides the pose network: it needs monocular training")
        if self.velocity_weight < 0 or self.velocity_min_speed < 0 or self.velocity_warmup < 0:
            out.append("--velocity-weight, --velocity-min-speed and --velocity-warmup must be >= 0")
        if self.pose_translation_gain is not None:
            from ros2_monodepth.core.networks import check_translation_gain
            try:
                check_translation_gain(self.pose_translation_gain)
            except ValueError as exc:
                out.append(f"--pose-translation-gain: {exc} (1, 2, 4, 8, ... or auto)")
        if self.pose_model not in ("separate", "shared"):
            out.append(f"--pose-model is separate or shared, got '{self.pose_model}'")
        if self.pose_model == "shared" and self.pose_downscale != 1:
            out.append("--pose-model shared reuses the depth encoder's features: --pose-downscale must be 1")
        if self.batch_size < 1 or self.epochs < 1:
            out.append("--batch-size and --epochs must be >= 1")
        return out

    def prior_mode(self) -> str:
        """The pose prior's mode as the dataset applies it: off without a weight or without monocular training."""
        return self.pose_prior if self.pose_prior_weight > 0 and self.monocular else "off"

    def loss_config(self, pose_prior_used: bool = False) -> Any:
        """The loss of these options; ``pose_prior_used``: the data decided to use the pose prior
        (``TripletDataset.prior_decision``)."""
        from .objective import LossConfig

        return LossConfig(scales=tuple(self.scales), min_reprojection=self.min_reprojection, automask=self.automask,
                          full_res_multiscale=self.full_res, smoothness=self.smoothness,
                          explainability=self.explainability, min_depth=self.min_depth, max_depth=self.max_depth,
                          monocular=self.monocular, stereo=self.stereo,
                          velocity=self.velocity_weight if self.odometry_source().enabled else 0.0,
                          velocity_min_speed=self.velocity_min_speed, tie_break=self.tie_break,
                          pose_batch=self.pose_batch, pose_fp32=self.pose_precision == "fp32",
                          pose_prior=self.pose_prior_weight if pose_prior_used and self.prior_mode() != "off" else 0.0)

    def odometry_source(self) -> Any:
        from .odometry_source import OdometrySource

        return OdometrySource(self.odometry_topic, self.odometry_tf, self.odometry_camera_mount, self.odometry_max_gap)

    def to_json(self) -> Dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


def train_parser() -> argparse.ArgumentParser:
    d = TrainConfig(bags=[], out="")
    p = argparse.ArgumentParser(prog="ros2-monodepth-train",
                                description="Self-supervised training of the depth and pose networks from ROS 2 bags.",
                                formatter_class=HelpFormatter)
    p.add_argument("bags", nargs="+", help="ROS 2 bag folders (.db3 or .mcap)")
    p.add_argument("--out", required=True, help="run folder: checkpoint/, tensorboard/, config.json (required)")
    g = p.add_argument_group("data")
    g.add_argument("--topic", dest="topics", action="append", metavar="TOPIC",
                   help="Image or CompressedImage topic; repeat for several cameras (each bag and topic is its own "
                        f"sequence) (default: {d.topics[0]})")
    g.add_argument("--camera-info-topic", dest="camera_info_topics", action="append", metavar="TOPIC",
                   help="CameraInfo topic of each --topic, in the same order (default: each image topic's sibling, as "
                        "image_transport pairs them: /cam/image_raw -> /cam/camera_info)")
    g.add_argument("--intrinsics", type=float, nargs=4, metavar=("FX", "FY", "CX", "CY"),
                   help="intrinsics at the bag's image size (instead of camera_info)")
    g.add_argument("--right-topic", help="stereo: right camera topic (rectified, same size)")
    g.add_argument("--right-camera-info-topic", help="stereo: right CameraInfo (baseline from P[3] = -fx * baseline)")
    g.add_argument("--network-size", type=network_size_option, metavar="WxH",
                   help="network input size, multiples of 32, e.g. 320x96 (default: about 320x96's pixel count at the "
                        "first camera's own aspect ratio, e.g. 192x160 for 640x480 and 224x128 for 1280x720)")
    _renamed_size_options(g)
    g.add_argument("--crop", choices=("center", "bottom", "top", "none"), default=d.crop,
                   help="crop to the training aspect ratio before resizing (none: squash)")
    g.add_argument("--stride", type=int, default=d.stride, help="use every N-th frame")
    g.add_argument("--fps", type=float, default=d.fps, help="use at most this many frames per second (0: all)")
    g.add_argument("--static-threshold", type=float, default=d.static_threshold,
                   help="skip frames whose thumbnail differs from the last kept one by less (grey levels; 0: keep all)")
    g.add_argument("--val-fraction", type=float, default=d.val_fraction,
                   help="last fraction of the recording's time used for validation")
    g.add_argument("--val-range", type=float, nargs=2, metavar=("START", "END"),
                   help="validation time range in seconds from the first frame (instead of --val-fraction)")
    g.add_argument("--workers", type=int, default=d.workers, help="DataLoader worker processes decoding frames")
    g.add_argument("--no-augment", dest="augment", action="store_false", help="no colour jitter or flip")
    t = p.add_argument_group("optimisation")
    t.add_argument("--num-layers", type=int, choices=(18, 34, 50), default=d.num_layers, help="ResNet depth of both encoders")
    t.add_argument("--pose-downscale", type=int, choices=(1, 2, 4), default=d.pose_downscale, metavar="K",
                   help="the pose network sees the network input shrunk K times in each direction (a KxK mean, part "
                        "of the network everywhere it runs): about 1/K^2 of its cost in the node, docs/performance.md "
                        "for what it costs in accuracy (1, 2 or 4)")
    t.add_argument("--pose-model", choices=("separate", "shared"), default=d.pose_model,
                   help="separate: the pose network has its own ResNet on the stacked pair (Monodepth2's default); "
                        "shared: a pose decoder on the depth encoder's features of each frame, so the node runs one "
                        "encoder a frame (docs/performance.md for its speed and accuracy)")
    t.add_argument("--batch-size", type=int, default=d.batch_size, help="per process")
    t.add_argument("--epochs", type=int, default=d.epochs, help="passes over the training triplets")
    t.add_argument("--max-steps", type=int, default=d.max_steps, help="stop after this many steps (0: no limit)")
    t.add_argument("--max-minutes", type=float, default=d.max_minutes,
                   help="stop (with a checkpoint) after this much time (0: no limit)")
    t.add_argument("--stuck-check-steps", type=int, default=d.stuck_check_steps,
                   help="at this step, check whether warping explains the frames better than not moving; a stuck run "
                        "restarts from a new initialisation (0: no check; single-process runs only)")
    t.add_argument("--stuck-restarts", type=int, default=d.stuck_restarts,
                   help="restarts of a stuck run at most, each with the next seed")
    t.add_argument("--lr", type=float, default=d.lr, help="Adam learning rate")
    t.add_argument("--lr-schedule", choices=("step", "cosine", "constant"), default=d.lr_schedule,
                   help="step: x gamma every --lr-step epochs (the paper: 0.1 after 15 of 20); cosine: to 0 over the run")
    t.add_argument("--lr-step", type=int, default=d.lr_step, help="epochs between learning-rate drops (step schedule)")
    t.add_argument("--lr-gamma", type=float, default=d.lr_gamma, help="learning-rate factor at each drop (step schedule)")
    t.add_argument("--seed", type=int, default=d.seed, help="seed of the initialisation and the sample order")
    t.add_argument("--init-resnet", metavar="imagenet|FILE",
                   help="start both encoders from ImageNet: 'imagenet' takes torchvision's published weights (downloaded "
                        "once into torch.hub's cache, hash checked; offline, the message says which file to place where), "
                        "or a torchvision-format ResNet .pth file. Recommended on real recordings: from scratch, depth can "
                        "come out inverted")
    t.add_argument("--init-checkpoint", help="checkpoint folder (this project's or Monodepth2's) to start from")
    t.add_argument("--resume", action="store_true", help="continue from <out>/checkpoint")
    t.add_argument("--overwrite", action="store_true",
                   help="start from scratch in an --out that holds another run's checkpoint (replaced at the first save)")
    t.add_argument("--precision", choices=("auto", "fp32", "bf16", "fp16"), default=d.precision,
                   help="autocast dtype for the networks (auto: bf16 on AMX/AVX512-bf16 CPUs and CUDA, else fp32)")
    t.add_argument("--no-channels-last", dest="channels_last", action="store_false", help="keep NCHW memory format")
    t.add_argument("--compile-loss", choices=("auto", "on", "off"), default=d.compile_loss,
                   help="torch.compile the photometric error, SSIM + L1 (auto: on the CPU when a C++ compiler "
                        "is found; about 20-40 s of compilation at the first step, then a faster step)")
    t.add_argument("--device", default=d.device, help="cpu, cuda, cuda:N or auto")
    t.add_argument("--threads", type=int, default=d.threads, help="torch intra-op threads per process (0: torch's default)")
    lo = p.add_argument_group("loss (Monodepth2 contributions can be switched off for ablations)")
    lo.add_argument("--scales", type=int, nargs="+", default=list(d.scales), help="decoder scales in the loss")
    lo.add_argument("--no-min-reprojection", dest="min_reprojection", action="store_false",
                    help="average over sources instead of the per-pixel minimum")
    lo.add_argument("--no-automask", dest="automask", action="store_false", help="no identity-reprojection auto-masking")
    lo.add_argument("--no-full-res", dest="full_res", action="store_false",
                    help="compute each scale's loss at its own resolution")
    lo.add_argument("--smoothness", type=float, default=d.smoothness, help="edge-aware smoothness weight (divided by 2**scale)")
    lo.add_argument("--explainability", type=float, default=d.explainability,
                    help="SfMLearner explainability mask regulariser weight (0: off)")
    lo.add_argument("--stereo", action="store_true", help="use the right camera as a source (needs --right-topic)")
    lo.add_argument("--no-monocular", dest="monocular", action="store_false",
                    help="stereo only: no temporal sources, no pose network")
    lo.add_argument("--min-depth", type=float, default=d.min_depth, help="depth of disparity 1")
    lo.add_argument("--max-depth", type=float, default=d.max_depth, help="depth of disparity 0")
    v = p.add_argument_group("metric scale from the robot's motion (velocity supervision, PackNet-SfM)")
    v.add_argument("--odometry-topic", default=d.odometry_topic, metavar="TOPIC",
                   help="the robot's odometry in each bag (nav_msgs/Odometry, PoseStamped, PoseWithCovarianceStamped or "
                        "TransformStamped, e.g. /odom): the distance travelled between frames supervises the pose "
                        "network's translation, which makes depth and odometry metric (default: off)")
    v.add_argument("--odometry-tf", default=d.odometry_tf, metavar="PARENT:CHILD",
                   help="the same from the bag's /tf chain, e.g. odom:base_link (default: off)")
    v.add_argument("--odometry-camera-mount", type=float, nargs=6, metavar=("X", "Y", "Z", "ROLL", "PITCH", "YAW"),
                   help="pose of the camera's optical frame in the odometry's child frame (default: the bag's "
                        "/tf_static between them, else the odometry is taken as the camera's)")
    v.add_argument("--odometry-max-gap", type=float, default=d.odometry_max_gap,
                   help="seconds between two odometry poses around a frame, at most (interpolated)")
    v.add_argument("--velocity-weight", type=float, default=d.velocity_weight,
                   help="weight of the velocity loss |t_pred| vs distance travelled")
    v.add_argument("--velocity-min-speed", type=float, default=d.velocity_min_speed,
                   help="m/s: slower frame pairs are not velocity-supervised (odometry noise dominates)")
    v.add_argument("--velocity-warmup", type=int, default=d.velocity_warmup, metavar="STEPS",
                   help="photometric-only steps before the velocity loss starts; it then ramps up linearly over as many "
                        "steps (0: full weight from the first step)")
    v.add_argument("--pose-translation-gain", type=_gain_option, default=d.pose_translation_gain, metavar="GAIN",
                   help="multiplies the pose network's translation while training (a power of two; saved checkpoints "
                        "have it folded into the weights): Monodepth2's translation starts near 1 cm and grows slowly, "
                        "so on fast robots velocity supervision would take many times the steps. auto: the odometry's "
                        "median distance a frame over 0.1 m, rounded to a power of two (1 without odometry or below "
                        "0.14 m a frame; default: auto)")
    g = p.add_argument_group("geometric start for the pose network (two-view geometry; docs/research.md)")
    g.add_argument("--pose-prior", choices=PRIOR_MODES, default=d.pose_prior,
                   help="pull the pose network, early on, towards the rotation and direction of travel that the "
                        "essential matrix of tracked corners gives for each training pair (computed once, cached in "
                        "--out): against runs that get stuck on large motion. auto: used where at least half of a "
                        "sample of the pairs have an estimate (enough motion between frames), else not; on: always; "
                        "off: never")
    g.add_argument("--pose-prior-weight", type=float, default=d.pose_prior_weight, metavar="W",
                   help="weight of the prior at its start (0: off)")
    g.add_argument("--pose-prior-steps", type=int, default=d.pose_prior_steps, metavar="STEPS",
                   help="the prior fades out linearly over these steps (to --pose-prior-floor)")
    g.add_argument("--pose-prior-floor", type=float, default=d.pose_prior_floor, metavar="SHARE",
                   help="share of --pose-prior-weight kept after the fade, for the whole run (0: the photometric loss "
                        "decides alone after the fade)")
    x = p.add_argument_group("training-loop details (the reference trainer's choice in brackets; for ablations)")
    x.add_argument("--tie-break", choices=("fixed", "noise"), default=d.tie_break,
                   help="identity vs reprojection ties: a fixed 1e-5 bias, or zero-mean noise of that size [noise]")
    x.add_argument("--pose-batch", choices=("joint", "separate"), default=d.pose_batch,
                   help="both frame pairs in one pose-network call, or one call per pair (batch-norm statistics per "
                        "pair) [separate]")
    x.add_argument("--pose-precision", choices=("auto", "fp32"), default=d.pose_precision,
                   help="the pose network under --precision's autocast, or always fp32 [fp32]")
    x.add_argument("--resize-filter", choices=("area", "linear", "lanczos"), default=d.resize_filter,
                   help="filter that resizes camera frames to the training size [lanczos]")
    o = p.add_argument_group("output")
    o.add_argument("--checkpoint-every", type=int, default=d.checkpoint_every,
                   help="steps between checkpoints (a kill loses at most this many)")
    o.add_argument("--log-every", type=int, default=d.log_every, help="steps between TensorBoard scalars")
    o.add_argument("--image-every", type=int, default=d.image_every, help="steps between TensorBoard depth images")
    o.add_argument("--no-progress", dest="progress", action="store_false", help="no tqdm bar (one log line per epoch)")
    return p


def _from_namespace(cls: Any, ns: argparse.Namespace) -> Any:
    values = {f.name: getattr(ns, f.name) for f in fields(cls) if hasattr(ns, f.name) and getattr(ns, f.name) is not None}
    for name, value in values.items():
        if isinstance(value, list) and name not in ("bags", "checkpoints"):
            values[name] = tuple(value)
    return cls(**values)


def _renamed_size_options(group: Any) -> None:
    """--height / --width of versions before 0.2, hidden: still read, with a note to use --network-size."""
    group.add_argument("--height", dest="renamed_height", type=int, help=argparse.SUPPRESS)
    group.add_argument("--width", dest="renamed_width", type=int, help=argparse.SUPPRESS)


def _apply_renamed_size(p: argparse.ArgumentParser, ns: argparse.Namespace) -> None:
    h, w = ns.renamed_height, ns.renamed_width
    if h is None and w is None:
        return
    if ns.network_size is not None:
        p.error("--height/--width were renamed to --network-size WxH: give only --network-size")
    if not h or not w:
        p.error("--height/--width were renamed to --network-size WxH (give both, or --network-size)")
    print(f"note: --height/--width were renamed; use --network-size {w}x{h}", file=sys.stderr)
    ns.network_size = (h, w)


def parse_train_args(argv: Optional[Sequence[str]] = None) -> TrainConfig:
    """``ros2-monodepth-train``'s command line -> TrainConfig (exits with the reason on a bad combination)."""
    p = train_parser()
    ns = p.parse_args(argv)
    _apply_renamed_size(p, ns)
    cfg: TrainConfig = _from_namespace(TrainConfig, ns)
    problems = cfg.problems()
    if problems:
        p.error("; ".join(problems))
    return cfg


@dataclass
class EvalConfig:
    bags: List[str]
    checkpoints: List[str] = field(default_factory=list)
    out: Optional[str] = None
    topic: str = "/camera/image_raw"
    camera_info_topic: str = "/camera/camera_info"
    depth_topic: Optional[str] = None            # None: /ground_truth/depth when the bag has it; '' skips depth
    pose_topic: Optional[str] = None             # None: /ground_truth/pose when the bag has it; '' skips odometry
    pose_tf: str = ""                            # PARENT:CHILD of the bag's /tf (instead of a pose topic)
    camera_mount: Optional[Tuple[float, float, float, float, float, float]] = None   # camera in the pose's child frame
    max_pose_gap: float = 0.5                    # s between two ground-truth poses around a frame, at most
    mask_topic: str = ""
    network_size: Tuple[int, int] = (0, 0)       # (height, width); (0, 0): the checkpoint's
    # how the networks run: 'auto' (the node's choice), a backend the node has, or 'offline' (eager PyTorch fp32)
    backend: str = "auto"
    precision: str = "auto"
    crop: str = ""                               # '' = the checkpoint's (its metadata); others: offline only
    depth_output_scale: int = 0                  # the node's depth_output_scale (not with backend 'offline')
    # the evaluation's depth cap (ground truth and prediction), not the networks' disparity-to-depth range
    cap_min_depth: float = 0.1
    cap_max_depth: float = 80.0
    fixed_scale: Optional[float] = None
    stride: int = 1
    seed: int = 0


def eval_parser() -> argparse.ArgumentParser:
    d = EvalConfig(bags=[])
    p = argparse.ArgumentParser(prog="ros2-monodepth-eval", formatter_class=HelpFormatter,
                                description="Depth metrics (Monodepth2's) and odometry ATE/RPE (evo) of a checkpoint "
                                            "against the ground-truth topics of a bag; table on stdout, metrics.json and "
                                            "plots in --out.")
    p.add_argument("bags", nargs="+", help="bag folders with the camera and ground-truth topics")
    p.add_argument("--checkpoint", dest="checkpoints", action="append", default=[],
                   help="checkpoint folder; repeat to compare; 'untrained' for random networks (--seed) (default: untrained)")
    p.add_argument("--out", help="folder for metrics.json and the PNGs, one subfolder per checkpoint named after the "
                                 "shortest unique tail of its path when several (default: none, the table only)")
    p.add_argument("--topic", default=d.topic, help="camera Image or CompressedImage topic")
    p.add_argument("--camera-info-topic", default=d.camera_info_topic, help="CameraInfo of --topic (for the crop's intrinsics)")
    p.add_argument("--depth-topic", default=d.depth_topic,
                   help="ground-truth depth, 32FC1 metres or 16UC1 millimetres (default: /ground_truth/depth when the bag "
                        "has it; '' skips depth)")
    p.add_argument("--pose-topic", default=d.pose_topic,
                   help="ground-truth poses: PoseStamped, PoseWithCovarianceStamped, TransformStamped or nav_msgs/Odometry "
                        "(motion capture, GNSS, a SLAM system) (default: /ground_truth/pose when the bag has it; '' skips)")
    p.add_argument("--pose-tf", default=d.pose_tf, metavar="PARENT:CHILD",
                   help="ground-truth poses from the bag's /tf chain instead, e.g. map:base_link")
    p.add_argument("--camera-mount", type=float, nargs=6, metavar=("X", "Y", "Z", "ROLL", "PITCH", "YAW"),
                   help="pose of the camera's optical frame in the ground-truth pose's frame (default: the bag's /tf_static "
                        "between them when it has it, else the poses are the camera's)")
    p.add_argument("--max-pose-gap", type=float, default=d.max_pose_gap,
                   help="seconds between the two ground-truth poses around a frame, at most (interpolated)")
    p.add_argument("--mask-topic", default=d.mask_topic, help="mono8 moving-object mask for the per-object metrics (default: none)")
    p.add_argument("--network-size", type=network_size_option, metavar="WxH",
                   help="network input size, multiples of 32 (default: the checkpoint's; 320x96 for untrained networks)")
    _renamed_size_options(p)
    p.add_argument("--backend", choices=("auto", "torch", "onnxruntime", "tensorrt", "offline"), default=d.backend,
                   help="run the networks as the node does, through its frame pipeline, on this backend ('auto': what "
                        "the node's backend auto picks here), or 'offline': eager PyTorch fp32 (the training-time "
                        "figures)")
    p.add_argument("--precision", choices=("auto", "fp32", "bf16", "fp16", "int8"), default=d.precision,
                   help="the node's precision parameter (not used with --backend offline)")
    p.add_argument("--depth-output-scale", type=int, choices=(0, 1), default=d.depth_output_scale,
                   help="the node's depth_output_scale: 1 scores the half-resolution disparity head, upsampled (not "
                        "used with --backend offline)")
    p.add_argument("--crop", choices=("", "center", "bottom", "top", "none"), default=d.crop,
                   help="--backend offline only: another crop than the checkpoint's ('' = the checkpoint's, as the "
                        "node applies it)")
    p.add_argument("--cap-min-depth", "--min-depth", dest="cap_min_depth", type=float, default=d.cap_min_depth,
                   help="ground truth and prediction capped below (metres)")
    p.add_argument("--cap-max-depth", "--max-depth", dest="cap_max_depth", type=float, default=d.cap_max_depth,
                   help="ground truth and prediction capped above (metres)")
    p.add_argument("--fixed-scale", type=float,
                   help="also score depth with this one scale for every image (1: as the network gives it), next to "
                        "per-image median scaling (default: 1 for a metric checkpoint, else median scaling only)")
    p.add_argument("--stride", type=int, default=d.stride, help="use every N-th frame")
    p.add_argument("--seed", type=int, default=d.seed, help="seed of the untrained networks")
    return p


def parse_eval_args(argv: Optional[Sequence[str]] = None) -> EvalConfig:
    """``ros2-monodepth-eval``'s command line -> EvalConfig."""
    p = eval_parser()
    ns = p.parse_args(argv)
    _apply_renamed_size(p, ns)
    cfg: EvalConfig = _from_namespace(EvalConfig, ns)
    if cfg.network_size != (0, 0) and size_problem(tuple(cfg.network_size)):
        p.error(f"--network-size {format_size(cfg.network_size)}: {size_problem(tuple(cfg.network_size))}")
    return cfg

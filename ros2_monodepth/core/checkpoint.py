"""Checkpoints in the published Monodepth2 layout, plus the project's metadata.

A checkpoint is a folder:
  encoder.pth       depth encoder state_dict (``encoder.*`` keys) + Monodepth2's plain entries height, width
                    (the network size) and use_stereo
  depth.pth         depth decoder state_dict (``decoder.{0..13}.*``)
  pose_encoder.pth  pose encoder state_dict (``encoder.conv1.weight`` is [64, 6, 7, 7])   [optional; not with
                    the shared pose model, whose decoder takes the depth encoder's features]
  pose.pth          pose decoder state_dict (``net.{0..3}.*``; ``net.1`` takes 512 channels when shared)  [optional]
  metadata.json     this project's model contract (``core.model_contract``): encoder depth, network size,
                    crop and resize filter, min/max depth, stereo scale, metric or not, provenance [optional]

Files are read with ``torch.load(..., weights_only=True)`` only, and every key and shape is checked
against the model before anything is loaded, so a wrong file is refused with a message naming what differs.
"""

from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Tuple

import torch
from torch import nn

from .fileio import atomic_torch_save, atomic_write_text
from .model_contract import (LEGACY_SIZE_KEYS, CheckpointError, CheckpointMetadata, ContractError, check_metadata,
                             metadata_from_json, metadata_to_json)
from .networks import DepthNet, PoseNet

ENCODER_FILE = "encoder.pth"
DEPTH_FILE = "depth.pth"
POSE_ENCODER_FILE = "pose_encoder.pth"
POSE_FILE = "pose.pth"
METADATA_FILE = "metadata.json"
# Plain (non-tensor) entries Monodepth2 stores next to the encoder weights: its file format's names.
ENCODER_EXTRA_KEYS = LEGACY_SIZE_KEYS + ("use_stereo",)


def read_state_file(path: Path) -> Dict[str, Any]:
    """Read a .pth file without unpickling arbitrary objects."""
    if not path.is_file():
        raise CheckpointError(f"{path}: file not found")
    try:
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle errors, truncated files, foreign objects
        raise CheckpointError(f"{path}: cannot be read as a weights-only state_dict ({exc})") from exc
    if not isinstance(state, Mapping):
        raise CheckpointError(f"{path}: expected a dict of tensors, found {type(state).__name__}")
    return dict(state)


def check_state_dict(module: nn.Module, state: Mapping[str, Any], source: str, ignore: Tuple[str, ...] = ()) -> None:
    """Raise CheckpointError naming every missing key, unexpected key and shape mismatch."""
    expected = module.state_dict()
    tensors = {k: v for k, v in state.items() if k not in ignore}
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    wrong = []
    for key in sorted(set(expected) & set(tensors)):
        value = tensors[key]
        if not isinstance(value, torch.Tensor):
            wrong.append(f"{key}: not a tensor ({type(value).__name__})")
        elif tuple(value.shape) != tuple(expected[key].shape):
            wrong.append(f"{key}: shape {list(value.shape)} in file, model expects {list(expected[key].shape)}")
    problems = []
    if missing:
        problems.append("missing keys: " + ", ".join(missing[:10]) + (" ..." if len(missing) > 10 else ""))
    if unexpected:
        problems.append("unexpected keys: " + ", ".join(unexpected[:10]) + (" ..." if len(unexpected) > 10 else ""))
    if wrong:
        problems.append("wrong shapes: " + "; ".join(wrong[:10]) + (" ..." if len(wrong) > 10 else ""))
    if problems:
        raise CheckpointError(f"{source}: " + " | ".join(problems))


def infer_num_layers(encoder_state: Mapping[str, Any]) -> int:
    """ResNet depth from an encoder state_dict's keys (bottlenecks have conv3; ResNet-34 has layer3.5)."""
    if "encoder.layer1.0.conv3.weight" in encoder_state:
        return 50
    if "encoder.layer3.5.conv1.weight" in encoder_state:
        return 34
    return 18


def save_checkpoint(directory: str | os.PathLike, depth_net: DepthNet, pose_net: Optional[PoseNet], meta: CheckpointMetadata) -> Path:
    """Write the Monodepth2-layout files (atomically, one by one) and metadata.json."""
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    encoder_state: Dict[str, Any] = {k: v.detach().cpu() for k, v in depth_net.encoder.state_dict().items()}
    encoder_state.update(zip(LEGACY_SIZE_KEYS, (int(v) for v in meta.network_size)), use_stereo=bool(meta.use_stereo))
    atomic_torch_save(encoder_state, out / ENCODER_FILE)
    atomic_torch_save({k: v.detach().cpu() for k, v in depth_net.decoder.state_dict().items()}, out / DEPTH_FILE)
    if pose_net is not None:
        if not pose_net.shared:
            atomic_torch_save({k: v.detach().cpu() for k, v in pose_net.encoder.state_dict().items()}, out / POSE_ENCODER_FILE)
        elif (out / POSE_ENCODER_FILE).is_file():
            (out / POSE_ENCODER_FILE).unlink()      # a separate model's file left from an earlier save would mislead
        # the training-only translation gain folded in: the file is the published layout and function
        atomic_torch_save({k: v.cpu() for k, v in pose_net.decoder.folded_state_dict().items()}, out / POSE_FILE)
    meta = replace(meta, num_layers=depth_net.encoder.num_layers, has_pose=pose_net is not None,
                   pose_model=pose_net.pose_model if pose_net is not None else meta.pose_model)
    check_metadata(meta, str(out / METADATA_FILE))
    atomic_write_text(json.dumps(metadata_to_json(meta), indent=2), out / METADATA_FILE)
    return out


def read_metadata(directory: str | os.PathLike) -> CheckpointMetadata:
    """metadata.json if present, else what Monodepth2's encoder.pth says (network size, use_stereo)."""
    d = Path(directory)
    meta_path = d / METADATA_FILE
    if meta_path.is_file():
        try:
            raw = json.loads(meta_path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise CheckpointError(f"{meta_path}: not valid JSON ({exc})") from exc
        if not isinstance(raw, dict):
            raise CheckpointError(f"{meta_path}: expected a JSON object, found {type(raw).__name__}")
        return metadata_from_json(raw, str(meta_path))
    enc = read_state_file(d / ENCODER_FILE)
    # Monodepth2's own files: KITTI frames were resized whole (1242x375 -> 640x192, no crop)
    meta = CheckpointMetadata(
        num_layers=infer_num_layers(enc),
        network_size=(_plain_int(enc, "height", 192, d / ENCODER_FILE), _plain_int(enc, "width", 640, d / ENCODER_FILE)),
        use_stereo=bool(enc.get("use_stereo", False)),
        has_pose=(d / POSE_FILE).is_file() and (d / POSE_ENCODER_FILE).is_file(),
        source="monodepth2",
        crop="none",
    )
    check_metadata(meta, str(d / ENCODER_FILE))
    return meta


def _plain_int(state: Mapping[str, Any], key: str, default: int, source: Path) -> int:
    value = state.get(key, default)
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ContractError(f"{source}: entry '{key}' is {value!r}, expected a whole number") from None


def verify_checkpoint(directory: str | os.PathLike, with_pose: bool = True) -> CheckpointMetadata:
    """The checkpoint's metadata, checked against itself and against its weights (the encoders' ResNet depth, the
    pose files) before any backend is built: ContractError / CheckpointError naming the file, the field, the value
    and what was expected. Reads the encoder files' keys, not the networks."""
    d = Path(directory)
    if not d.is_dir():
        raise CheckpointError(f"{d}: checkpoint folder not found")
    meta = read_metadata(d)
    source = str(d / METADATA_FILE) if (d / METADATA_FILE).is_file() else str(d / ENCODER_FILE)
    enc_layers = infer_num_layers(read_state_file(d / ENCODER_FILE))
    pose_files = (d / POSE_FILE).is_file() and (meta.pose_model == "shared" or (d / POSE_ENCODER_FILE).is_file())
    check_metadata(meta, source, encoder_layers=enc_layers, has_pose_files=pose_files if with_pose else None)
    return meta


def load_checkpoint(directory: str | os.PathLike, load_pose: bool = True) -> Tuple[DepthNet, Optional[PoseNet], CheckpointMetadata]:
    """Build the networks for a checkpoint folder and load their weights (strictly checked)."""
    d = Path(directory)
    if not d.is_dir():
        raise CheckpointError(f"{d}: checkpoint folder not found")
    enc_state = read_state_file(d / ENCODER_FILE)
    meta = read_metadata(d)
    num_layers = infer_num_layers(enc_state)
    check_metadata(meta, str(d / METADATA_FILE) if (d / METADATA_FILE).is_file() else str(d / ENCODER_FILE),
                   encoder_layers=num_layers)
    depth_net = DepthNet(num_layers)
    check_state_dict(depth_net.encoder, enc_state, str(d / ENCODER_FILE), ignore=ENCODER_EXTRA_KEYS)
    dec_state = read_state_file(d / DEPTH_FILE)
    check_state_dict(depth_net.decoder, dec_state, str(d / DEPTH_FILE))
    depth_net.encoder.load_state_dict({k: v for k, v in enc_state.items() if k not in ENCODER_EXTRA_KEYS})
    depth_net.decoder.load_state_dict(dec_state)
    pose_net: Optional[PoseNet] = None
    if load_pose and meta.pose_model == "shared" and (d / POSE_FILE).is_file():
        pose_net = PoseNet(num_layers, shared_encoder=depth_net.encoder)
        p_state = read_state_file(d / POSE_FILE)
        check_state_dict(pose_net.decoder, p_state, str(d / POSE_FILE))
        pose_net.decoder.load_state_dict(p_state)
    elif load_pose and meta.pose_model == "separate" and (d / POSE_ENCODER_FILE).is_file() and (d / POSE_FILE).is_file():
        pe_state = read_state_file(d / POSE_ENCODER_FILE)
        pose_net = PoseNet(infer_num_layers(pe_state), input_downscale=meta.pose_downscale)
        check_state_dict(pose_net.encoder, pe_state, str(d / POSE_ENCODER_FILE), ignore=ENCODER_EXTRA_KEYS)
        p_state = read_state_file(d / POSE_FILE)
        check_state_dict(pose_net.decoder, p_state, str(d / POSE_FILE))
        pose_net.encoder.load_state_dict({k: v for k, v in pe_state.items() if k not in ENCODER_EXTRA_KEYS})
        pose_net.decoder.load_state_dict(p_state)
    meta.has_pose = pose_net is not None
    return depth_net.eval(), (pose_net.eval() if pose_net is not None else None), meta

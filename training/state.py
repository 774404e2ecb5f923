"""Training checkpoints: the runtime's Monodepth2 layout plus what resuming needs, written atomically.

A training run's ``<out>/checkpoint`` is a valid runtime checkpoint (``encoder.pth``, ``depth.pth``,
``pose_encoder.pth``, ``pose.pth``, ``metadata.json``, see ``core/checkpoint.py``) with one more file,
``training_state.pt``: optimiser, LR schedule and grad-scaler state, the position in the data order (epoch,
samples done in it), the global step and the explainability network.

Crash safety: ``<out>/checkpoint`` is a symlink to a complete version ``<out>/checkpoint.vNNNNNNN``. A save writes
the next version into a temporary folder, renames it into place, and then replaces the link in one atomic
rename; the previous version is kept (a node may have resolved the old link) and older ones are removed. So the
path the user gave is a complete, loadable checkpoint at every instant of a save, and what a killed save left
(``checkpoint.*.tmp``) is removed at the next start. Everything is read back with ``torch.load(weights_only=True)``.

Also owns initialising the encoders from a torchvision-format ResNet file or a Monodepth2 checkpoint.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional

import torch
from torch import nn

from ros2_monodepth.core.checkpoint import (CheckpointError, CheckpointMetadata, load_checkpoint, read_state_file,
                                            save_checkpoint)
from ros2_monodepth.core.fileio import TMP_MARK, atomic_torch_save, clean_leftovers, publish_dir, temporary_dir
from ros2_monodepth.core.networks import DepthNet, PoseNet

STATE_FILE = "training_state.pt"


@dataclass
class Progress:
    epoch: int = 0
    done_in_epoch: int = 0     # samples (per rank) of this epoch already trained on
    step: int = 0              # optimiser steps since the start


VERSION_MARK = ".v"


def _versions(directory: Path) -> List[Path]:
    """The complete versions ``<name>.vNNNNNNN`` beside ``directory``, oldest first."""
    parent, name = directory.parent, directory.name
    if not parent.is_dir():
        return []
    found = [p for p in parent.iterdir() if p.is_dir() and not p.is_symlink() and p.name.startswith(name + VERSION_MARK)
             and p.name[len(name) + len(VERSION_MARK):].isdigit()]
    return sorted(found, key=lambda p: int(p.name[len(name) + len(VERSION_MARK):]))


def _point(directory: Path, version: Path) -> None:
    """Make ``directory`` a symlink to ``version`` in one atomic step (a new link renamed over the old one)."""
    link_tmp = directory.with_name(directory.name + ".link" + TMP_MARK)
    link_tmp.unlink(missing_ok=True)
    os.symlink(version.name, link_tmp)
    os.replace(link_tmp, directory)


def recover_checkpoint(directory: Path) -> Optional[str]:
    """Put the checkpoint at ``directory`` back into a consistent state after a kill, and remove what killed saves
    left (temporary folders of 100-300 MB). Returns what was done, or None when there was nothing to do."""
    directory = Path(directory)
    removed = clean_leftovers(directory.parent, directory.name)
    done = [f"removed {removed} unfinished save(s)"] if removed else []
    old = directory.with_name(directory.name + ".old")      # the two-rename scheme of earlier versions
    if not directory.exists() and not directory.is_symlink() and old.is_dir():
        os.replace(old, directory)
        done.append(f"restored {directory} from {old.name}")
    versions = _versions(directory)
    if not directory.exists() and versions:       # a dangling link, or none (killed while migrating a legacy folder)
        _point(directory, versions[-1])
        done.append(f"pointed {directory} at {versions[-1].name}")
    return "; ".join(done) or None


def save_training_checkpoint(directory: Path, depth_net: DepthNet, pose_net: Optional[PoseNet], meta: CheckpointMetadata,
                             optimizer: torch.optim.Optimizer, scheduler: Any, scaler: Optional[Any], progress: Progress,
                             explain_net: Optional[nn.Module] = None, config: Optional[Dict[str, Any]] = None) -> Path:
    """Write a complete new version beside ``directory`` and point ``directory`` (a symlink) at it atomically, so
    that ``directory`` is a complete, loadable checkpoint at every instant; keep the previous version (a reader may
    have resolved the old link) and remove older ones."""
    directory = Path(directory)
    recover_checkpoint(directory)
    tmp = temporary_dir(directory)
    try:
        save_checkpoint(tmp, depth_net, pose_net, meta)
        state: Dict[str, Any] = {
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "scaler": scaler.state_dict() if scaler is not None else {},
            "epoch": progress.epoch, "done_in_epoch": progress.done_in_epoch, "step": progress.step,
            "explain_net": explain_net.state_dict() if explain_net is not None else {},
            "config": config or {},
        }
        atomic_torch_save(state, tmp / STATE_FILE)
        versions = _versions(directory)
        number = int(versions[-1].name.rsplit(VERSION_MARK, 1)[1]) + 1 if versions else 1
        version = directory.with_name(f"{directory.name}{VERSION_MARK}{number:07d}")
        publish_dir(tmp, version)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if directory.exists() and not directory.is_symlink():
        # a checkpoint folder of an earlier version (or written by hand): it becomes version 0; a kill before the
        # link below leaves no folder at `directory`, which recover_checkpoint repairs on the next start
        legacy = directory.with_name(f"{directory.name}{VERSION_MARK}{0:07d}")
        if legacy.exists():
            shutil.rmtree(legacy)
        os.replace(directory, legacy)
    _point(directory, version)
    for stale in _versions(directory)[:-2]:       # the current one and the one before stay
        shutil.rmtree(stale, ignore_errors=True)
    return directory


def checkpoint_exists(directory: Path) -> bool:
    """True when a checkpoint (or what a kill left of one) is at ``directory``."""
    directory = Path(directory)
    return (directory.exists() or directory.is_symlink() or bool(_versions(directory))
            or directory.with_name(directory.name + ".old").exists())


def load_training_checkpoint(directory: Path, depth_net: DepthNet, pose_net: Optional[PoseNet], optimizer: torch.optim.Optimizer,
                             scheduler: Any, scaler: Optional[Any], explain_net: Optional[nn.Module] = None) -> Progress:
    """Load weights and training state into the given objects; returns where to continue."""
    directory = Path(directory)
    recover_checkpoint(directory)
    state_path = directory / STATE_FILE
    if not state_path.is_file():
        raise CheckpointError(f"{directory}: no {STATE_FILE}, so this is not a training checkpoint to resume")
    d, p, _ = load_checkpoint(directory, load_pose=pose_net is not None)
    depth_net.load_state_dict(d.state_dict())
    if pose_net is not None:
        if p is None:
            raise CheckpointError(f"{directory}: has no pose network to resume")
        try:
            pose_net.load_weights_of(p)   # the saved file has the gain folded in; this run's gain is taken back out
        except ValueError as exc:
            raise CheckpointError(f"{directory}: {exc}") from exc
    state = torch.load(state_path, map_location="cpu", weights_only=True)
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    if scaler is not None and state.get("scaler"):
        scaler.load_state_dict(state["scaler"])
    if explain_net is not None and state.get("explain_net"):
        explain_net.load_state_dict(state["explain_net"])
    return Progress(int(state["epoch"]), int(state["done_in_epoch"]), int(state["step"]))


# torchvision's published ImageNet weights (IMAGENET1K_V1, the ones the Monodepth2 paper starts from). The file names
# carry the first 8 hex digits of the file's SHA-256, which torch.hub checks.
IMAGENET_RESNET = {
    18: "https://download.pytorch.org/models/resnet18-f37072fd.pth",
    34: "https://download.pytorch.org/models/resnet34-b627a593.pth",
    50: "https://download.pytorch.org/models/resnet50-0676ba61.pth",
}


def imagenet_resnet_file(num_layers: int) -> Path:
    """The ImageNet ResNet weights file in torch.hub's cache (``$TORCH_HOME/hub/checkpoints``), downloaded once
    when the machine is online; its SHA-256 is checked against the prefix in its name either way. Offline and not
    cached: CheckpointError saying which file to place where."""
    import hashlib

    url = IMAGENET_RESNET[num_layers]
    name = url.rsplit("/", 1)[1]
    prefix = name.rsplit("-", 1)[1].split(".")[0]
    path = Path(torch.hub.get_dir()) / "checkpoints" / name
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            torch.hub.download_url_to_file(url, str(path), hash_prefix=prefix, progress=True)
        except Exception as exc:   # no network (URLError, socket errors), or a download that does not match its hash
            raise CheckpointError(
                f"ImageNet weights for ResNet-{num_layers} are not in torch.hub's cache and could not be downloaded "
                f"({type(exc).__name__}: {exc}). On a machine with internet, download {url} and copy it to {path} "
                "(torch.hub's cache, $TORCH_HOME/hub/checkpoints), or give --init-resnet PATH with the file") from exc
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    if not h.hexdigest().startswith(prefix):
        raise CheckpointError(f"{path}: its SHA-256 starts {h.hexdigest()[:8]}, not {prefix} as its name says (a damaged "
                              f"or different file): delete it and run again to download {url}")
    return path


def init_from_resnet(spec: str, depth_net: DepthNet, pose_net: Optional[PoseNet]) -> str:
    """``--init-resnet``: 'imagenet' (torchvision's ImageNet weights, ``imagenet_resnet_file``) or a file path."""
    if spec.lower() == "imagenet":
        path = imagenet_resnet_file(depth_net.encoder.num_layers)
        return init_from_resnet_file(path, depth_net, pose_net).replace("weights", "ImageNet weights", 1)
    return init_from_resnet_file(Path(spec), depth_net, pose_net)


def init_from_resnet_file(path: Path, depth_net: DepthNet, pose_net: Optional[PoseNet]) -> str:
    """Load a torchvision-format ResNet state_dict (e.g. ImageNet weights the user has) into both encoders.

    The pose encoder takes two stacked frames: its first convolution gets the RGB kernel repeated and halved,
    as in Monodepth2. Returns a one-line summary.
    """
    state = read_state_file(Path(path))
    state = {k: v for k, v in state.items() if isinstance(v, torch.Tensor)}
    target = depth_net.encoder.encoder
    want = target.state_dict()
    missing = [k for k in want if k not in state]
    wrong = [k for k in want if k in state and state[k].shape != want[k].shape]
    if missing or wrong:
        raise CheckpointError(f"{path}: not a torchvision ResNet-{depth_net.encoder.num_layers} state_dict "
                              f"(missing {missing[:3]}{'...' if len(missing) > 3 else ''}, wrong shape {wrong[:3]})")
    target.load_state_dict({k: state[k] for k in want})
    if pose_net is not None and not pose_net.shared:    # a shared pose model's encoder is the depth encoder
        pose_state = dict(state)
        conv1 = state["conv1.weight"]
        pose_state["conv1.weight"] = torch.cat([conv1] * pose_net.encoder.num_input_images, 1) / pose_net.encoder.num_input_images
        pose_net.encoder.encoder.load_state_dict({k: pose_state[k] for k in pose_net.encoder.encoder.state_dict()})
    return f"encoders initialised from torchvision-format ResNet weights {path}"


def init_from_checkpoint(path: Path, depth_net: DepthNet, pose_net: Optional[PoseNet]) -> str:
    """Start from a runtime/Monodepth2 checkpoint folder (all four networks where present)."""
    d, p, meta = load_checkpoint(path, load_pose=pose_net is not None)
    if d.encoder.num_layers != depth_net.encoder.num_layers:
        raise CheckpointError(f"{path}: ResNet-{d.encoder.num_layers} checkpoint, training ResNet-{depth_net.encoder.num_layers} "
                              f"(set --num-layers {d.encoder.num_layers})")
    depth_net.load_state_dict(d.state_dict())
    if pose_net is not None and p is not None:
        try:
            pose_net.load_weights_of(p)
        except ValueError as exc:
            raise CheckpointError(f"{path}: {exc}") from exc
    return f"networks initialised from checkpoint {path} ({meta.source})"

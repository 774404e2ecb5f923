"""Fault injection (the short version that runs in ``make test``; ``ros2-monodepth-bench soak`` is the long one):
kills at every instant of a checkpoint save, corrupted and foreign model files, runs that would overwrite
another's weights, malformed metadata and bags, and time jumps through the real node. Each test fails on the code
before these faults were handled (checked when they were written)."""

from __future__ import annotations

import json
import logging
import os
import shutil
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from ros2_monodepth.core.artifacts import create_backend, exported_graphs, graph_set
from ros2_monodepth.core.backends.base import ModelSpec
from ros2_monodepth.core.bags import BagError, iter_frames
from ros2_monodepth.core.checkpoint import CheckpointError, CheckpointMetadata, load_checkpoint, read_metadata, save_checkpoint
from ros2_monodepth.core.export import EXPORT_INFO, ExportInfo, export_onnx, weights_fingerprint
from ros2_monodepth.core.networks import DepthNet, PoseNet

NETWORK = (64, 128)

SAVE_AND_DIE = textwrap.dedent("""
    import os, sys, shutil, torch
    from pathlib import Path
    from ros2_monodepth.core.checkpoint import CheckpointMetadata
    from ros2_monodepth.core.networks import DepthNet, PoseNet
    from ros2_monodepth_training.state import Progress, save_training_checkpoint

    out, die_at = Path(sys.argv[1]), int(sys.argv[2])
    torch.manual_seed(0)
    depth, pose = DepthNet(18), PoseNet(18)
    opt = torch.optim.Adam(list(depth.parameters()) + list(pose.parameters()), lr=1e-4)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
    meta = CheckpointMetadata(network_size=(64, 128))
    if not (out / "checkpoint").exists():
        save_training_checkpoint(out / "checkpoint", depth, pose, meta, opt, sched, None, Progress(0, 0, 1))
    calls = {"n": 0}
    def dying(real):
        def wrapper(*args, **kwargs):
            calls["n"] += 1
            if calls["n"] == die_at:
                os._exit(9)          # as SIGKILL: no clean-up, no finally
            return real(*args, **kwargs)
        return wrapper
    # every rename, link, removal and mode change of the save is an instant a kill can hit
    os.replace, os.symlink, os.chmod, shutil.rmtree = (dying(os.replace), dying(os.symlink), dying(os.chmod),
                                                       dying(shutil.rmtree))
    save_training_checkpoint(out / "checkpoint", depth, pose, meta, opt, sched, None, Progress(0, 0, 2))
    print("SAVED", calls["n"])
""")


def test_a_kill_at_any_instant_of_a_save_leaves_a_complete_checkpoint_at_the_path(tmp_path):
    from ros2_monodepth_training.state import STATE_FILE, recover_checkpoint

    probe = subprocess.run([sys.executable, "-c", SAVE_AND_DIE, str(tmp_path / "probe"), "0"], capture_output=True,
                           text=True, timeout=300)
    assert probe.returncode == 0, probe.stderr
    instants = int(probe.stdout.split("SAVED")[1])
    assert instants > 10                       # temp files, renames, the link, the clean-up
    base = tmp_path / "base"                   # a first, complete checkpoint at step 1, copied for every kill
    subprocess.run([sys.executable, "-c", SAVE_AND_DIE, str(base), str(10**6)], check=True, capture_output=True, timeout=300)
    shutil.rmtree(base / "checkpoint.v0000002")
    (base / "checkpoint").unlink()
    os.symlink("checkpoint.v0000001", base / "checkpoint")
    for die_at in range(1, instants + 1):
        out = tmp_path / f"kill{die_at}"
        shutil.copytree(base, out, symlinks=True)
        killed = subprocess.run([sys.executable, "-c", SAVE_AND_DIE, str(out), str(die_at)], capture_output=True,
                                text=True, timeout=300)
        assert killed.returncode == 9, killed.stderr
        # at this instant, without any repair, the path the user gave is a complete checkpoint
        depth, pose, _ = load_checkpoint(out / "checkpoint")
        step = torch.load(out / "checkpoint" / STATE_FILE, weights_only=True)["step"]
        assert step in (1, 2) and pose is not None, die_at
        # the next start removes what the killed save left
        recover_checkpoint(out / "checkpoint")
        assert not [p.name for p in out.iterdir() if p.name.endswith(".tmp")], (die_at, list(out.iterdir()))


def test_checkpoint_files_get_the_users_umask_not_0600(tmp_path):
    old = os.umask(0o022)
    try:
        script = ("import torch; from ros2_monodepth.core.checkpoint import *; from ros2_monodepth.core.networks import *;"
                  f"save_checkpoint('{tmp_path / 'ck'}', DepthNet(18), PoseNet(18), CheckpointMetadata())")
        subprocess.run([sys.executable, "-c", script], check=True, timeout=300)
    finally:
        os.umask(old)
    for f in (tmp_path / "ck").iterdir():
        assert stat.S_IMODE(f.stat().st_mode) == 0o644, f   # readable by a node running as another user


def _ckpt(path: Path, seed: int = 0) -> Path:
    torch.manual_seed(seed)
    save_checkpoint(path, DepthNet(18).eval(), PoseNet(18).eval(), CheckpointMetadata(network_size=(64, 128)))
    return path


def test_a_truncated_cached_graph_is_exported_again_with_a_warning_not_a_crash(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("ROS2_MONODEPTH_CACHE", str(tmp_path / "cache"))
    spec = ModelSpec(network_size=NETWORK, device="cpu", precision="fp32", seed=5)
    first = graph_set(spec)
    first.depth.write_bytes(first.depth.read_bytes()[:1000])      # as an interrupted copy or a full disk leaves it
    with caplog.at_level(logging.WARNING):
        backend, why = create_backend("auto", spec)
    assert "cached export unusable" in caplog.text and "SHA-256" in caplog.text
    assert backend.name == "onnxruntime" and np.isfinite(backend.depth(np.zeros(NETWORK + (3,), np.uint8))).all()


def test_auto_falls_back_to_the_next_backend_when_graphs_cannot_be_rebuilt(tmp_path, monkeypatch):
    monkeypatch.setenv("ROS2_MONODEPTH_CACHE", str(tmp_path / "cache"))
    spec = ModelSpec(network_size=NETWORK, device="cpu", precision="fp32", seed=6)
    graph_set(spec).depth.write_bytes(b"garbage")
    import ros2_monodepth.core.export as export

    def broken(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(export, "export_onnx", broken)
    backend, why = create_backend("auto", spec)
    assert backend.name == "torch" and "onnxruntime" in why and "No space left on device" in why


def test_graphs_exported_from_other_weights_are_not_used_silently(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("ROS2_MONODEPTH_CACHE", str(tmp_path / "cache"))
    ck = _ckpt(tmp_path / "ck", seed=0)
    depth_net, pose_net, _ = load_checkpoint(ck)
    export_onnx(depth_net, pose_net, ck / "onnx", NETWORK, NETWORK, 0.1, 100.0, weights_sha256=weights_fingerprint(ck))
    spec = ModelSpec(checkpoint_dir=str(ck), network_size=NETWORK, device="cpu", precision="fp32")
    assert exported_graphs(spec) == ck / "onnx"                   # its own export, recorded for these weights
    _ckpt(ck, seed=1)                                             # trained on after the export
    with caplog.at_level(logging.WARNING):
        backend, _ = create_backend("onnxruntime", spec)
    assert "other weights" in caplog.text
    torch_backend, _ = create_backend("torch", spec)
    image = np.random.default_rng(0).integers(0, 256, NETWORK + (3,), dtype=np.uint8)
    d_ort, d_torch = backend.depth(image), torch_backend.depth(image)
    assert float(np.median(np.abs(d_ort - d_torch) / d_torch)) < 1e-3    # the new weights, not the stale graphs


def test_a_corrupted_export_json_or_int8_graph_is_named(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("ROS2_MONODEPTH_CACHE", str(tmp_path / "cache"))
    spec = ModelSpec(network_size=NETWORK, device="cpu", precision="int8", seed=7)
    graphs = graph_set(spec)
    graphs.depth.write_bytes(graphs.depth.read_bytes()[::2])
    with caplog.at_level(logging.WARNING):
        again = graph_set(spec)
    assert "cached int8 graphs unusable" in caplog.text and again.depth.is_file()
    (again.depth.parent / EXPORT_INFO).write_text("{ not json")
    with pytest.raises(ValueError, match="not readable as JSON"):
        ExportInfo.read(again.depth.parent)


def test_a_new_run_refuses_to_overwrite_another_runs_weights(tmp_path):
    from ros2_monodepth_training.synth_bag import SynthConfig, write_synthetic_bag

    bag = write_synthetic_bag(SynthConfig(tmp_path / "bag", frames=14, width=64, height=64), progress=False)
    common = [str(bag), "--out", str(tmp_path / "run"), "--network-size", "64x64", "--batch-size", "2",
              "--workers", "0", "--no-progress", "--precision", "fp32", "--max-steps", "2", "--compile-loss", "off"]
    cmd = [sys.executable, "-m", "ros2_monodepth_training.train"]
    first = subprocess.run(cmd + common, capture_output=True, text=True, timeout=600)
    assert first.returncode == 0, first.stderr
    before = (tmp_path / "run" / "checkpoint" / "encoder.pth").read_bytes()
    again = subprocess.run(cmd + common, capture_output=True, text=True, timeout=600)
    assert again.returncode == 2 and "--resume" in again.stderr and "--overwrite" in again.stderr
    assert (tmp_path / "run" / "checkpoint" / "encoder.pth").read_bytes() == before      # untouched
    over = subprocess.run(cmd + common + ["--overwrite", "--seed", "3"], capture_output=True, text=True, timeout=600)
    assert over.returncode == 0, over.stderr
    assert (tmp_path / "run" / "checkpoint" / "encoder.pth").read_bytes() != before


GOOD_META = {"num_layers": 18, "network_size": "128x64", "min_depth": 0.1, "max_depth": 100.0}
# metadata.json as versions before 0.2 wrote it: the network size as height and width
LEGACY_META = {"num_layers": 18, "height": 64, "width": 128, "min_depth": 0.1, "max_depth": 100.0}


@pytest.mark.parametrize("raw,expected", [([1, 2], "JSON object"),
                                          ({**GOOD_META, "network_size": "tall"}, "'network_size' is 'tall'"),
                                          ({**GOOD_META, "network_size": [64, 128]}, "'network_size' is \\[64, 128\\]"),
                                          ({**LEGACY_META, "height": "tall"}, "'height' is 'tall'"),
                                          ({**LEGACY_META, "width": 100}, "'width' is 100, expected a multiple of 32"),
                                          ({**GOOD_META, "min_depth": 10.0, "max_depth": 1.0}, "below max_depth"),
                                          ("{", "JSON"), ({"network_size": "128x64"}, "'num_layers' is missing"),
                                          ({**GOOD_META, "crop": "left"}, "'crop' is 'left', expected one of")])
def test_malformed_metadata_json_is_a_clear_error(tmp_path, raw, expected):
    (tmp_path / "metadata.json").write_text(raw if isinstance(raw, str) else json.dumps(raw))
    with pytest.raises(CheckpointError, match=expected):
        read_metadata(tmp_path)


def test_metadata_of_earlier_versions_reads_height_and_width_as_the_network_size(tmp_path):
    (tmp_path / "metadata.json").write_text(json.dumps(LEGACY_META))
    meta = read_metadata(tmp_path)
    assert meta.network_size == (64, 128) and "height" not in meta.extra and "width" not in meta.extra
    (tmp_path / "metadata.json").write_text(json.dumps(GOOD_META))
    assert read_metadata(tmp_path).network_size == (64, 128)


@pytest.mark.parametrize("damage", ["truncated", "no_metadata"])
def test_a_damaged_bag_is_a_clear_error_naming_it_and_the_repair(tmp_path, damage):
    from ros2_monodepth_training.synth_bag import SynthConfig, write_synthetic_bag

    bag = write_synthetic_bag(SynthConfig(tmp_path / "bag", frames=6, width=32, height=32), progress=False)
    if damage == "truncated":
        for f in bag.glob("*.mcap"):
            f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
    else:
        (bag / "metadata.yaml").unlink()
    with pytest.raises(BagError, match=str(bag)) as err:
        list(iter_frames([bag], "/camera/image_raw"))
    assert "mcap recover" in str(err.value) and "ros2 bag reindex" in str(err.value)


def test_training_on_a_damaged_bag_exits_with_the_reason_not_a_traceback(tmp_path):
    (tmp_path / "empty").mkdir()
    run = subprocess.run([sys.executable, "-m", "ros2_monodepth_training.train", str(tmp_path / "empty"), "--out",
                          str(tmp_path / "run")], capture_output=True, text=True, timeout=300)
    assert run.returncode == 2 and "cannot open" in run.stderr and "Traceback" not in run.stderr


# Issue 27: metadata that contradicts itself or its weights, and what each command says about it.
CONTRADICTIONS = {
    "size not a multiple of 32": ({"network_size": "333x96"}, "field 'network_size' is '333x96', expected multiples of 32"),
    "layers unlike the weights": ({"num_layers": 34}, "field 'num_layers' is 34, but encoder.pth holds a ResNet-18"),
    "missing field": ({"max_depth": None}, "field 'max_depth' is missing"),
    "malformed field": ({"min_depth": "near"}, "field 'min_depth' is 'near', expected a positive finite number"),
}


def _contradicting_checkpoint(tmp_path: Path, change: dict) -> Path:
    ck = tmp_path / "ck"
    save_checkpoint(ck, DepthNet(18).eval(), PoseNet(18).eval(), CheckpointMetadata(network_size=(64, 128)))
    raw = json.loads((ck / "metadata.json").read_text())
    for key, value in change.items():
        if value is None:
            raw.pop(key)
        else:
            raw[key] = value
    (ck / "metadata.json").write_text(json.dumps(raw))
    return ck


@pytest.mark.ros
@pytest.mark.parametrize("case", sorted(CONTRADICTIONS))
def test_the_node_refuses_a_checkpoint_that_contradicts_itself_at_start(tmp_path, case):
    """One message naming the file, the field, the value and what was expected; exit 1, no traceback, under
    backend auto too (no backend can run it)."""
    from ros2_monodepth.tools.node_process import NodeProcess

    change, expected = CONTRADICTIONS[case]
    ck = _contradicting_checkpoint(tmp_path, change)
    node = NodeProcess(tmp_path / "node.log", {"checkpoint_dir": str(ck), "backend": "auto"}, namespace="/t_meta")
    try:
        code = node.proc.wait(120)
    finally:
        node.stop()
    log = node.log()
    assert code == 1, log
    assert expected in log and str(ck / "metadata.json") in log, log
    assert "Traceback" not in log and "listening on" not in log, log


@pytest.mark.parametrize("case", ["size not a multiple of 32", "layers unlike the weights"])
def test_every_command_that_reads_checkpoints_refuses_the_contradiction(tmp_path, case):
    from ros2_monodepth_training.synth_bag import SynthConfig, write_synthetic_bag

    change, expected = CONTRADICTIONS[case]
    ck = _contradicting_checkpoint(tmp_path, change)
    bag = write_synthetic_bag(SynthConfig(tmp_path / "bag", frames=8, width=128, height=64), progress=False)
    py = [sys.executable, "-m"]
    commands = {
        "export": py + ["ros2_monodepth.tools.export_cli", str(ck), "--out", str(tmp_path / "onnx")],
        "import": py + ["ros2_monodepth.tools.import_cli", str(ck), "--out", str(tmp_path / "imported")],
        "eval": py + ["ros2_monodepth_training.evaluate", str(bag), "--checkpoint", str(ck)],
        "train --init-checkpoint": py + ["ros2_monodepth_training.train", str(bag), "--out", str(tmp_path / "run"),
                                         "--init-checkpoint", str(ck), "--network-size", "128x64", "--workers", "0",
                                         "--no-progress", "--max-steps", "1", "--batch-size", "2"],
    }
    for name, cmd in commands.items():
        run = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        assert run.returncode == 2, f"{name}: {run.returncode}\n{run.stdout[-2000:]}{run.stderr[-3000:]}"
        assert expected in run.stderr and "Traceback" not in run.stderr, f"{name}:\n{run.stderr[-3000:]}"
    assert not (tmp_path / "onnx").exists() and not (tmp_path / "imported").exists()


# Issue 28: output folders, a shared cache.
def test_every_command_checks_its_output_folder_before_any_work(tmp_path):
    """--out below a file (unwritable even for root): one line naming the path and the reason, exit 2, nothing
    done first, no traceback."""
    from ros2_monodepth_training.synth_bag import SynthConfig, write_synthetic_bag

    ck = _ckpt(tmp_path / "ck")
    bag = write_synthetic_bag(SynthConfig(tmp_path / "bag", frames=8, width=128, height=64), progress=False)
    (tmp_path / "a_file").write_text("not a folder")
    blocked = tmp_path / "a_file" / "out"
    py = [sys.executable, "-m"]
    commands = {
        "train": py + ["ros2_monodepth_training.train", str(bag), "--out", str(blocked), "--workers", "0", "--no-progress",
                       "--max-steps", "1"],
        "eval": py + ["ros2_monodepth_training.evaluate", str(bag), "--checkpoint", str(ck), "--out", str(blocked)],
        "export": py + ["ros2_monodepth.tools.export_cli", str(ck), "--out", str(blocked)],
    }
    for name, cmd in commands.items():
        run = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        assert run.returncode == 2, f"{name}: {run.returncode}\n{run.stdout[-2000:]}{run.stderr[-3000:]}"
        assert f"{blocked}: cannot write there" in run.stderr and "Traceback" not in run.stderr, f"{name}: {run.stderr}"
        assert "exporting" not in run.stdout and "[train] data" not in run.stdout, f"{name} worked first:\n{run.stdout}"


def test_export_with_int8_finds_a_missing_calibration_topic_before_writing_anything(tmp_path):
    from ros2_monodepth_training.synth_bag import SynthConfig, write_synthetic_bag

    ck = _ckpt(tmp_path / "ck")
    bag = write_synthetic_bag(SynthConfig(tmp_path / "bag", frames=8, width=128, height=64), progress=False)
    run = subprocess.run([sys.executable, "-m", "ros2_monodepth.tools.export_cli", str(ck), "--out", str(tmp_path / "onnx"),
                          "--int8", "--calibration-bag", str(bag), "--calibration-topic", "/no/such/topic"],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 2 and "/no/such/topic" in run.stderr and "Traceback" not in run.stderr, run.stderr
    assert not any((tmp_path / "onnx").iterdir()), list((tmp_path / "onnx").iterdir())   # no fp32 graphs left behind


def test_a_cache_other_users_can_write_is_not_used(tmp_path, monkeypatch, caplog):
    from ros2_monodepth.core.fileio import default_cache_dir

    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    own = tmp_path / "home_cache"
    monkeypatch.setenv("ROS2_MONODEPTH_CACHE", str(shared))
    monkeypatch.setenv("XDG_CACHE_HOME", str(own))
    with caplog.at_level(logging.WARNING):
        assert default_cache_dir() == own / "ros2_monodepth"
    assert f"cache {shared} is not used" in caplog.text and "writable by group and others" in caplog.text
    shared.chmod(0o755)
    assert default_cache_dir() == shared                     # once it is the user's alone, it is used


def test_a_cached_graph_swapped_for_another_weights_export_is_refused(tmp_path, monkeypatch, caplog):
    """Another writer replaces a cached export with one of other weights, export.json and hashes consistent: the
    graphs are bound to the weights that made them, so they are exported again from the checkpoint's own."""
    monkeypatch.setenv("ROS2_MONODEPTH_CACHE", str(tmp_path / "cache"))
    ck = _ckpt(tmp_path / "ck", seed=0)
    other = _ckpt(tmp_path / "other", seed=1)
    spec = ModelSpec(checkpoint_dir=str(ck), network_size=NETWORK, device="cpu", precision="fp32")
    cached = exported_graphs(spec)
    assert cached.parent.parent == tmp_path / "cache"
    shutil.rmtree(cached)
    depth_net, pose_net, _ = load_checkpoint(other)
    export_onnx(depth_net, pose_net, cached, NETWORK, NETWORK, 0.1, 100.0, weights_sha256=weights_fingerprint(other))
    with caplog.at_level(logging.WARNING):
        again = exported_graphs(spec)
    assert "other weights" in caplog.text
    assert ExportInfo.read(again).weights_sha256 == weights_fingerprint(ck)

"""Training from bags: the synthetic bag writer, the dataset rules, the loop (steps lower the loss, resume is
exact, DDP with two gloo processes), and the evaluation metrics."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from ros2_monodepth.core.checkpoint import load_checkpoint
from ros2_monodepth.core.bags import BagError, list_topics
from ros2_monodepth_training.dataset import (IndexOptions, ResizePlan, SampleOrder, TripletDataset, index_frames, make_triplets,
                                             split_by_time)
from ros2_monodepth_training.evaluate import chain_trajectory, depth_errors, evaluate_odometry, read_ground_truth
from ros2_monodepth_training.objective import LossConfig
from ros2_monodepth_training.synth_bag import (DEPTH_TOPIC, IMAGE_TOPIC, MASK_TOPIC, POSE_TOPIC, SynthConfig,
                                               write_synthetic_bag)
from ros2_monodepth_training.config import parse_train_args as parse_args
from ros2_monodepth_training.train import TrainingModel, train

TINY = ["--height", "64", "--width", "64", "--batch-size", "2", "--workers", "0", "--no-progress", "--precision", "fp32",
        "--num-layers", "18", "--log-every", "1", "--image-every", "2"]


@pytest.fixture(scope="module")
def street_bag(tmp_path_factory) -> Path:
    """40 frames at 128x64 with a box moving with the camera and a still stretch (frames 20..24)."""
    out = tmp_path_factory.mktemp("bags") / "street"
    return write_synthetic_bag(SynthConfig(out, frames=40, width=128, height=64, moving_object=True, still=((20, 24),)),
                               progress=False)


def test_synthetic_bag_has_ground_truth_and_is_deterministic(street_bag, tmp_path):
    topics = list_topics([street_bag])
    assert topics[IMAGE_TOPIC] == ("sensor_msgs/msg/Image", 40)
    assert topics[DEPTH_TOPIC] == ("sensor_msgs/msg/Image", 40)
    assert topics[POSE_TOPIC] == ("geometry_msgs/msg/PoseStamped", 40)
    assert topics[MASK_TOPIC][1] == 40
    frames, K = read_ground_truth([street_bag], IMAGE_TOPIC, DEPTH_TOPIC, POSE_TOPIC, MASK_TOPIC)
    assert K[0, 0] > 0 and K[0, 2] == pytest.approx(63.5)
    f = frames[5]
    assert f.depth.dtype == np.float32 and f.depth.shape == (64, 128) and np.isinf(f.depth).any() and (f.depth[np.isfinite(f.depth)] > 0).all()
    assert f.mask.any()
    # the camera moves 0.1 m per frame except in the still stretch, where frames are identical
    step = np.linalg.norm(frames[6].pose[:3, 3] - frames[5].pose[:3, 3])
    assert step == pytest.approx(0.1, rel=0.2)
    np.testing.assert_array_equal(frames[21].rgb, frames[22].rgb)
    again = write_synthetic_bag(SynthConfig(tmp_path / "again", frames=40, width=128, height=64, moving_object=True,
                                            still=((20, 24),)), progress=False)
    np.testing.assert_array_equal(read_ground_truth([again], IMAGE_TOPIC, None, None)[0][7].rgb, frames[7].rgb)


def test_index_skips_static_frames_and_triplets_never_cross_a_gap(street_bag, tmp_path):
    index = index_frames([street_bag], IndexOptions())
    assert index.considered == 40 and index.static_skipped == 5 and len(index.raw) == 35
    assert set(index.segments.tolist()) == {0}   # skipping still frames does not split the recording
    # a second recording 100 s later is its own segment
    later = write_synthetic_bag(SynthConfig(tmp_path / "later", frames=10, width=128, height=64, start_stamp=1_700_000_100.0),
                                progress=False)
    both = index_frames([street_bag, later], IndexOptions())
    assert set(both.segments.tolist()) == {0, 1}
    centres = make_triplets(both)
    for c in centres:
        assert both.segments[c - 1] == both.segments[c] == both.segments[c + 1]
    assert len(centres) == len(both.raw) - 4
    train_c, val_c = split_by_time(both, centres, val_fraction=0.2)
    t = (both.stamps - both.stamps[0]) / 1e9
    assert len(val_c) > 0 and t[train_c + 1].max() < t[val_c - 1].min()
    everything = index_frames([street_bag], IndexOptions(static_threshold=0.0, stride=2))
    assert len(everything.raw) == 20


def test_index_errors_name_the_problem(street_bag):
    with pytest.raises(BagError, match=r"'/nope' is not in .*the bag has: .*/camera/image_raw"):
        index_frames([street_bag], IndexOptions(topic="/nope"))
    with pytest.raises(BagError, match="carries geometry_msgs/msg/PoseStamped"):
        index_frames([street_bag], IndexOptions(topic=POSE_TOPIC))
    with pytest.raises(BagError, match="no such bag"):
        index_frames([street_bag.parent / "missing"], IndexOptions())


def test_resize_plan_crops_to_aspect_and_adjusts_intrinsics():
    K = np.array([[500.0, 0, 319.5], [0, 500.0, 239.5], [0, 0, 1]])
    plan = ResizePlan.make((480, 640), (192, 640), K, "center")
    assert plan.crop == (144, 0, 192, 640)
    np.testing.assert_allclose(plan.K, [[500, 0, 319.5], [0, 500, 95.5], [0, 0, 1]])
    plan = ResizePlan.make((480, 640), (96, 320), K, "bottom")
    assert plan.crop == (288, 0, 192, 640)
    np.testing.assert_allclose(plan.K[:2], [[250, 0, 159.5], [0, 250, (239.5 - 288 + 0.5) * 0.5 - 0.5]])
    # a point projects to the same place before and after
    X = np.array([0.3, 0.2, 2.0])
    u, v = (K @ X)[:2] / X[2]
    u2, v2 = (plan.K @ X)[:2] / X[2]
    assert u2 == pytest.approx((u + 0.5) * 0.5 - 0.5) and v2 == pytest.approx((v - 288 + 0.5) * 0.5 - 0.5)


def test_intrinsics_from_the_command_line_override_camera_info(street_bag):
    index = index_frames([street_bag], IndexOptions(camera_info_topic=None, intrinsics=(80.0, 81.0, 64.0, 32.0)))
    np.testing.assert_allclose(index.K, [[80, 0, 64], [0, 81, 32], [0, 0, 1]])


def test_sample_order_is_deterministic_resumable_and_sharded():
    full = list(SampleOrder(10, seed=3))
    s = SampleOrder(10, seed=3)
    s.set_position(0, 4)
    assert list(s) == full[4:]
    s.set_position(1)
    assert list(s) != full   # a new permutation each epoch
    r0, r1 = SampleOrder(10, 3, 0, 2), SampleOrder(10, 3, 1, 2)
    assert sorted(i for i, _ in list(r0) + list(r1)) == list(range(10))


def test_dataset_sample_layout_and_augmentation(street_bag):
    index = index_frames([street_bag], IndexOptions())
    ds = TripletDataset(index, make_triplets(index), (64, 64))
    s = ds[0]
    assert s["images"].shape == (3, 3, 64, 64) and s["images"].dtype == torch.float32
    assert torch.equal(s["images"], s["aug"])
    assert 0 <= float(s["images"].min()) and float(s["images"].max()) <= 1
    from ros2_monodepth_training.dataset import Augmentation
    ds_aug = TripletDataset(index, make_triplets(index), (64, 64), augmentation=Augmentation())
    seen_flip = seen_jitter = False
    for seed in range(12):
        a = ds_aug[(0, seed)]
        assert torch.equal(a, ds_aug[(0, seed)]) if isinstance(a, torch.Tensor) else torch.equal(a["aug"], ds_aug[(0, seed)]["aug"])
        if torch.allclose(a["images"], s["images"].flip(-1)):
            seen_flip = True
            assert float(a["K"][0, 2]) == pytest.approx(63 - float(s["K"][0, 2]))
        if not torch.equal(a["images"], a["aug"]):
            seen_jitter = True
    assert seen_flip and seen_jitter


def _batch(bag: Path, size=(64, 64), n=2):
    index = index_frames([bag], IndexOptions())
    ds = TripletDataset(index, make_triplets(index)[:n], size)
    return {k: torch.stack([ds[i][k] for i in range(n)]) for k in ("images", "aug", "K")}


@pytest.mark.parametrize("cfg", [LossConfig(), LossConfig(automask=False, min_reprojection=False, full_res_multiscale=False),
                                 LossConfig(explainability=0.2)], ids=["monodepth2", "all-off", "explainability"])
def test_a_few_optimiser_steps_on_one_batch_lower_the_loss(street_bag, cfg):
    torch.manual_seed(0)
    batch = _batch(street_bag)
    model = TrainingModel(18, cfg)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    losses = []
    for _ in range(8):
        out = model(batch)
        opt.zero_grad()
        out.total.backward()
        opt.step()
        losses.append(float(out.total.detach()))
    assert np.isfinite(losses).all()
    assert losses[-1] < 0.9 * losses[0], losses


def test_stereo_source_trains(tmp_path):
    bag = write_synthetic_bag(SynthConfig(tmp_path / "stereo", frames=8, width=128, height=64, stereo_baseline=0.3), progress=False)
    index = index_frames([bag], IndexOptions(right_topic="/camera/right/image_raw", right_camera_info_topic="/camera/right/camera_info"))
    assert index.baseline == pytest.approx(0.3)
    ds = TripletDataset(index, make_triplets(index), (64, 64))
    s = ds[0]
    assert s["stereo"].shape == (3, 64, 64) and float(s["T_stereo"][0, 3]) == pytest.approx(-0.3)
    batch = {k: torch.stack([ds[i][k] for i in range(2)]) for k in ("images", "aug", "K", "stereo", "T_stereo")}
    model = TrainingModel(18, LossConfig(stereo=True))
    out = model(batch)
    out.total.backward()
    assert np.isfinite(float(out.total.detach())) and model.depth.encoder.encoder.conv1.weight.grad is not None


def _params(ckpt: Path) -> dict:
    d, p, _ = load_checkpoint(ckpt)
    return {**{"d." + k: v for k, v in d.state_dict().items()}, **{"p." + k: v for k, v in p.state_dict().items()}}


def test_resumed_run_ends_with_the_same_parameters_as_an_uninterrupted_one(street_bag, tmp_path):
    common = [str(street_bag), *TINY, "--epochs", "3", "--checkpoint-every", "100"]
    train(parse_args(common + ["--out", str(tmp_path / "straight"), "--max-steps", "7"]))
    # interrupted after 3 steps (mid-epoch), then resumed to the same 7 steps
    train(parse_args(common + ["--out", str(tmp_path / "parts"), "--max-steps", "3"]))
    state = torch.load(tmp_path / "parts" / "checkpoint" / "training_state.pt", weights_only=True)
    assert state["step"] == 3 and state["epoch"] == 0 and state["done_in_epoch"] == 6
    summary = train(parse_args(common + ["--out", str(tmp_path / "parts"), "--max-steps", "7", "--resume"]))
    assert summary["steps"] == 7
    a, b = _params(tmp_path / "straight" / "checkpoint"), _params(tmp_path / "parts" / "checkpoint")
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=1e-6, msg=k)
    # and the run really moved away from its start
    fresh = TrainingModel(18, LossConfig())
    assert not torch.allclose(fresh.depth.decoder.state_dict()["decoder.13.conv.weight"], a["d.decoder.decoder.13.conv.weight"])
    assert (tmp_path / "straight" / "tensorboard").is_dir()
    assert json.loads((tmp_path / "straight" / "summary.json").read_text())["steps"] == 7


def test_torchrun_two_cpu_processes_gloo(street_bag, tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(29500 + os.getpid() % 1000),
           "-m", "ros2_monodepth_training.train", str(street_bag), "--out", str(tmp_path / "ddp"), *TINY, "--epochs", "1",
           "--max-steps", "2", "--threads", "1"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "2 process(es)" in r.stdout
    summary = json.loads((tmp_path / "ddp" / "summary.json").read_text())
    assert summary["steps"] == 2
    load_checkpoint(tmp_path / "ddp" / "checkpoint")


def test_depth_errors_by_hand():
    gt = np.array([1.0, 2.0, 4.0])
    pred = np.array([1.0, 2.4, 2.0])       # ratios 1, 1.2, 2
    e = depth_errors(gt, pred)
    assert e["abs_rel"] == pytest.approx((0 + 0.2 + 0.5) / 3)
    assert e["sq_rel"] == pytest.approx((0 + 0.16 / 2 + 4 / 4) / 3)
    assert e["rmse"] == pytest.approx(np.sqrt((0 + 0.16 + 4) / 3))
    assert e["rmse_log"] == pytest.approx(np.sqrt((0 + np.log(1.2) ** 2 + np.log(2) ** 2) / 3))
    assert e["a1"] == pytest.approx(2 / 3) and e["a2"] == pytest.approx(2 / 3) and e["a3"] == pytest.approx(2 / 3)
    assert depth_errors(gt, np.array([1.0, 2.0, 2.2]))["a3"] == 1.0     # 4 / 2.2 = 1.82 < 1.25 ** 3
    assert depth_errors(gt, gt)["abs_rel"] == 0.0


def test_odometry_metrics_with_true_relative_poses_beat_the_constant_baseline(street_bag):
    frames, _ = read_ground_truth([street_bag], IMAGE_TOPIC, None, POSE_TOPIC)
    # relative transforms from the ground truth itself, at half scale (monocular: Sim(3) alignment fixes it)
    rel = []
    for a, b in zip(frames[:-1], frames[1:]):
        T_b_a = np.linalg.inv(b.pose) @ a.pose
        T_b_a[:3, 3] *= 0.5
        rel.append(T_b_a)
    m = evaluate_odometry(frames, chain_trajectory(rel))
    assert m["ate_rmse_m"] < 1e-6 and m["sim3_scale"] == pytest.approx(2.0, rel=1e-6)
    assert m["ate_constant_position_m"] > 0.5
    noisy = [r @ np.diag([1, 1, 1, 1.0]) for r in rel]
    noisy[10] = noisy[10].copy()
    noisy[10][:3, 3] += [0.0, 0.0, 0.3]
    assert evaluate_odometry(frames, chain_trajectory(noisy))["ate_rmse_m"] > 0.01


@pytest.mark.parametrize("module", ["synth_bag", "train", "evaluate"])
def test_training_commands_have_help(module):
    r = subprocess.run([sys.executable, "-m", f"ros2_monodepth_training.{module}", "--help"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "usage:" in r.stdout


def test_compressed_frames_in_a_sqlite3_bag(tmp_path):
    bag = write_synthetic_bag(SynthConfig(tmp_path / "jpeg", frames=6, width=128, height=64, compressed=True, storage="sqlite3"),
                              progress=False)
    assert list((tmp_path / "jpeg").glob("*.db3"))
    index = index_frames([bag], IndexOptions(topic=IMAGE_TOPIC + "/compressed"))
    assert index.msgtype == "sensor_msgs/msg/CompressedImage" and len(index.raw) == 6
    s = TripletDataset(index, make_triplets(index), (64, 64))[0]
    assert s["images"].shape == (3, 3, 64, 64) and float(s["images"].std()) > 0.02


def test_encoders_initialise_from_a_torchvision_format_resnet_file(tmp_path):
    from ros2_monodepth.core.resnet import ResNet
    from ros2_monodepth_training.state import init_from_resnet_file

    torch.manual_seed(1)
    imagenet_like = ResNet(18).state_dict()          # torchvision's key layout: conv1.weight, layer1.0..., fc.*
    torch.save(imagenet_like, tmp_path / "resnet18.pth")
    model = TrainingModel(18, LossConfig())
    init_from_resnet_file(tmp_path / "resnet18.pth", model.depth, model.pose)
    torch.testing.assert_close(model.depth.encoder.encoder.layer3[1].conv2.weight, imagenet_like["layer3.1.conv2.weight"])
    pose_conv1 = model.pose.encoder.encoder.conv1.weight
    torch.testing.assert_close(pose_conv1[:, :3], imagenet_like["conv1.weight"] / 2)
    torch.testing.assert_close(pose_conv1[:, 3:], imagenet_like["conv1.weight"] / 2)
    torch.save({"conv1.weight": torch.zeros(1)}, tmp_path / "bad.pth")
    from ros2_monodepth.core.checkpoint import CheckpointError
    with pytest.raises(CheckpointError, match="not a torchvision ResNet-18"):
        init_from_resnet_file(tmp_path / "bad.pth", model.depth, model.pose)

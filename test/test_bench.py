"""ros2-monodepth-bench, small: model-only timings with accuracy against fp32, a short closed-loop node run, pose learning."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from ros2_monodepth.tools.bench import stats_ms

SMALL = ["--frames", "3", "--width", "160", "--height", "120", "--network-size", "128x64",
         "--warmup", "1"]


def test_stats_ms():
    s = stats_ms([0.001, 0.002, 0.003, 0.010])
    assert s["min"] == pytest.approx(1.0) and s["max"] == pytest.approx(10.0) and s["mean"] == pytest.approx(4.0)
    assert s["p50"] == pytest.approx(2.5)
    assert stats_ms([]) == {}


def test_model_mode_times_each_configuration_against_the_eager_baseline(tmp_path, monkeypatch):
    monkeypatch.setenv("ROS2_MONODEPTH_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "model.json"
    r = subprocess.run([sys.executable, "-m", "ros2_monodepth.tools.bench", "model", "--out", str(out), *SMALL, "--repeats", "3",
                        "--plot", str(tmp_path / "model.png"),
                        "--configs", "torch:fp32", "torch:bf16", "onnxruntime:fp32", "onnxruntime:int8", "nosuch:fp32"],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    res = json.loads(out.read_text())
    rows = res["rows"]
    assert rows["torch:fp32"]["abs_rel_vs_fp32"] < 1e-3   # the same fp32 model; the backend resizes on its own
    assert rows["onnxruntime:fp32"]["abs_rel_vs_fp32"] < 0.02     # its own uint8 resize differs slightly
    assert 0 < rows["torch:bf16"]["abs_rel_vs_fp32"] < 0.2
    assert "error" in rows["nosuch:fp32"]
    for name in ("torch:fp32", "torch:bf16", "onnxruntime:fp32"):
        assert rows[name]["per_frame_ms"]["p50"] > 0 and rows[name]["speedup_vs_baseline"] > 0
    assert "x baseline" in r.stdout
    assert (tmp_path / "model.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # the int8 row's floor: the graphs' MACs at the int8 peak timed in this run, and the median's ratio to it
    floor = res["int8_floor"]
    assert floor["peak_gmac_s"] > 0 and 0 < floor["floor_ms"]
    assert floor["ratio_to_floor"] == pytest.approx(rows["onnxruntime:int8"]["per_frame_ms"]["p50"] / floor["floor_ms"], rel=0.02)
    assert "int8 floor:" in r.stdout


def test_int8_floor_counts_a_graphs_macs_from_its_shapes_and_times_the_probe_convolution(tmp_path):
    from ros2_monodepth.tools.bench.int8_peak import graph_macs, measure_int8_peak, probe_conv_model

    path = tmp_path / "probe.onnx"
    path.write_bytes(probe_conv_model(16, 32, 12, 20))
    assert graph_macs(path) == 16 * 32 * 9 * 12 * 20
    peak = measure_int8_peak(repeats=2, warmup=1, shape=(16, 32, 12, 20))
    assert peak["ms"] > 0 and peak["gmac_s"] == pytest.approx(16 * 32 * 9 * 12 * 20 / (peak["ms"] * 1e6))


def test_profile_mode_times_each_operator_and_counts_each_convolutions_work(tmp_path, monkeypatch):
    """The int8 graphs profiled operator by operator: the stem convolution's MACs come from the graph's own weights
    (64 x 12 x 4 x 4 over a half-size output), the floor lies below the time, and the table names the gaps."""
    monkeypatch.setenv("ROS2_MONODEPTH_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "profile.json"
    r = subprocess.run([sys.executable, "-m", "ros2_monodepth.tools.bench", "profile", "--out", str(out), "--width", "160",
                        "--height", "120", "--network-size", "128x64", "--frames", "3", "--repeats", "3", "--warmup", "1"],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    res = json.loads(out.read_text())
    assert set(res["graphs"]) == {"depth", "pose"} and res["precision"] == "int8"
    for graph in res["graphs"].values():
        assert graph["runs"] == 3 and 0 < graph["floor_ms"] <= graph["kernel_ms"]
        assert graph["by_op"][0]["ms"] >= graph["by_op"][-1]["ms"]
        assert "QLinearConv" in {o["op"] for o in graph["by_op"]}
        assert sum(o["ms"] for o in graph["by_op"]) == pytest.approx(graph["kernel_ms"])
    stems = {name: [n for n in g["nodes"] if n["node"].startswith("/encoder/conv1/") and n["macs"] > 0]
             for name, g in res["graphs"].items()}
    # output 32 x 64 x 64 channels. The int8 stem runs as SpaceToDepth(2) + a 4 x 4 convolution on 4x the channels
    # (quantize.stem_space_to_depth), so each output costs 12 x 4 x 4 MACs (depth: one RGB frame) or 24 x 4 x 4
    # (pose: the pair), the 7 x 7 kernel's zeros included: the work the graph does
    assert [n["macs"] for n in stems["depth"]] == [32 * 64 * 64 * 12 * 4 * 4]
    assert [n["macs"] for n in stems["pose"]] == [32 * 64 * 64 * 24 * 4 * 4]
    assert "largest gaps to the floor" in r.stdout and "depth:" in r.stdout


@pytest.mark.ros
def test_node_mode_reports_rate_latency_drops_and_process_figures(tmp_path):
    out = tmp_path / "node.json"
    r = subprocess.run([sys.executable, "-m", "ros2_monodepth.tools.bench", "node", "--out", str(out), *SMALL,
                        "--duration", "4", "--repeats", "2", "--precision", "fp32", "--node-log", str(tmp_path / "node.log"),
                        "--plot", str(tmp_path / "node.png")],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    res = json.loads(out.read_text())
    assert res["frames_published"] >= 3
    for kind in ("depth", "points", "odom"):
        assert res[kind]["received"] >= 3
        lat = res[kind]["latency_ms"]
        assert 0 < lat["min"] <= lat["p50"] <= lat["max"] < 5000
    assert res["odom"]["dropped"] <= 1      # closed loop: one frame in flight
    assert res["process"]["rss_mb_max"] > 50 and res["process"]["samples"] >= 2
    assert {"depth_net", "pose_net"} <= set(res["stage_share"])
    assert abs(sum(res["stage_share"].values()) - 1) < 1e-6
    assert res["speedup_vs_baseline"] > 0 and res["baseline_eager_fp32_fps"] > 0
    # per frame: the odometry latency, or the output period where that is shorter (a loaded machine: the median
    # latency can exceed the mean period of a closed loop whose frames vary)
    per_frame_ms = min(res["odom"]["latency_ms"]["p50"], 1000.0 / res["odom"]["rate_hz"])
    assert res["ros_overhead_ms"] == pytest.approx(per_frame_ms - res["stage_ms"]["depth_net"] - res["stage_ms"]["pose_net"])
    assert "x the plain fp32 eager" in r.stdout
    assert "onnxruntime" in res["node_backend"] and "fp32" in res["node_backend"]   # auto on the CPU for fp32
    assert (tmp_path / "node.png").stat().st_size > 1000


def test_train_mode_compares_the_step_with_a_plain_fp32_implementation_on_the_same_batch(tmp_path):
    out = tmp_path / "train.json"
    r = subprocess.run([sys.executable, "-m", "ros2_monodepth.tools.bench", "train", "--out", str(out), "--frames", "4",
                        "--width", "128", "--height", "64", "--network-size", "64x64", "--batch-size", "2",
                        "--warmup", "1", "--repeats", "2"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    res = json.loads(out.read_text())
    # same weights, same batch: the objective and the plain implementation agree (bf16 networks where the CPU has it)
    assert res["loss_relative_difference"] < (0.05 if res["precision"] == "bfloat16" else 1e-5)
    for name in ("naive fp32 eager", "ros2_monodepth step"):
        assert res[name]["images_per_s"] > 0
    assert res["speedup"] > 0


def test_gpu_check_skips_with_its_reason_without_a_gpu_and_its_harness_runs_on_the_cpu(tmp_path):
    import torch

    out = tmp_path / "gpu.json"
    run = subprocess.run([sys.executable, "-m", "ros2_monodepth.tools.gpu_check", "--out", str(out)],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    if torch.cuda.is_available():
        pytest.skip("a GPU is here: scripts/gpu_check.sh runs the real check")
    assert "GPU check skipped: no CUDA device" in run.stdout and "no CUDA device" in json.loads(out.read_text())["skipped"]
    run = subprocess.run([sys.executable, "-m", "ros2_monodepth.tools.gpu_check", "--allow-cpu", "--network-size", "128x64",
                          "--frames", "3", "--repeats", "2", "--out", str(out)], capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout + run.stderr
    res = json.loads(out.read_text())
    rows = {r["name"]: r for r in res["rows"]}
    assert res["passed"] and len(rows) == 3 and all(r["status"] == "pass" for r in rows.values()), rows
    assert all(r["depth_mean_rel"] > 0 or "fp32" in r["name"] for r in rows.values())   # real comparisons, not zeros
    assert "depth mean" in run.stdout and "onnxruntime CPU int8" in run.stdout


@pytest.mark.ros
@pytest.mark.parametrize("encoding", ["mono8", "bgr8"])
def test_node_mode_plays_a_bag_as_recorded(tmp_path, encoding):
    """A grey (or bgr8) recording reaches the node in its own encoding and with its own stamps and camera_info,
    and --bag-rate follows the recorded pace (10 Hz here, played at half speed)."""
    from ros2_monodepth_training.synth_bag import SynthConfig, write_synthetic_bag

    bag = write_synthetic_bag(SynthConfig(tmp_path / "bag", frames=12, width=160, height=120, encoding=encoding,
                                          depth=False), progress=False)
    out = tmp_path / "node.json"
    r = subprocess.run([sys.executable, "-m", "ros2_monodepth.tools.bench", "node", "--out", str(out), "--bag", str(bag),
                        "--network-size", "128x64", "--warmup", "1", "--no-baseline",
                        "--duration", "3", "--bag-rate", "0.5", "--precision", "fp32",
                        "--node-log", str(tmp_path / "node.log")],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr + (tmp_path / "node.log").read_text()
    res = json.loads(out.read_text())
    assert res["bag"]["encoding"] == encoding and res["bag"]["frames"] == 12
    assert res["node_input_format"] == f"{encoding} 160x120"
    # latency is matched by stamp: outputs carry the recorded stamps (the recording loops with shifted stamps)
    assert res["odom"]["received"] >= 5 and res["odom"]["latency_ms"]["min"] > 0
    assert res["odom"]["received"] - res["odom"]["dropped"] >= 0
    assert 5 <= res["frames_published"] <= 3 * 10 * 0.5 * 1.3 + 2   # recorded pace x 0.5, not as fast as possible
    assert "recorded pace x 0.5" in r.stdout and "the node decoded " + encoding in r.stdout


def test_bag_player_keeps_recorded_bytes_and_moves_stamps_forward_when_it_loops(tmp_path):
    from ros2_monodepth.tools.bag_player import BagPlayer, header_stamp_ns
    from ros2_monodepth_training.synth_bag import SynthConfig, write_synthetic_bag

    bag = write_synthetic_bag(SynthConfig(tmp_path / "bag", frames=4, width=32, height=24, compressed=True, depth=False),
                              progress=False)
    player = BagPlayer([bag], "/camera/image_raw/compressed", "/camera/camera_info")
    assert player.compressed and player.encoding == "jpeg" and player.size == (24, 32)
    first, info, stamp = player.frame(0)
    assert first == player.frames[0].image and info is not None and header_stamp_ns(info) == stamp
    looped, looped_info, looped_stamp = player.frame(4)     # second pass: same pixels, stamps one recording later
    assert abs(looped_stamp - (stamp + 4 * 100_000_000)) < 1000 and header_stamp_ns(looped) == looped_stamp
    assert looped[12:] == first[12:] and looped_info is not None and header_stamp_ns(looped_info) == looped_stamp
    assert player.delay_s(1) == pytest.approx(0.1) and player.delay_s(4) == 0.0


def test_pose_bench_trains_each_variant_and_seed_and_scores_them_on_the_held_out_bag(tmp_path):
    """The pose benchmark, tiny (2 steps, 12 frames): every variant and seed trained on the same large-motion bag
    and scored on the other one; the table names them; a velocity variant finds the bags' /odom."""
    from ros2_monodepth.tools.bench.pose import PoseBenchConfig, pose_bench, print_pose_table

    cfg = PoseBenchConfig(out=tmp_path, steps=2, seeds=(0, 1), frames=12,
                          variants={"current": [], "velocity": ["--odometry-topic", "/odom"]})
    res = pose_bench(cfg)
    assert list(res["rows"]) == ["current", "velocity"] and res["speed_mps"] == 10.0
    for row in res["rows"].values():
        assert [r["seed"] for r in row["runs"]] == [0, 1]
        assert all(np.isfinite(r["rpe_m"]) and r["rpe_m"] > 0 and np.isfinite(r["ate_m"]) for r in row["runs"])
        assert row["rpe_mean"] == pytest.approx(np.mean([r["rpe_m"] for r in row["runs"]]))
    # each seed trained its own networks: different seeds, different poses
    current = res["rows"]["current"]["runs"]
    assert current[0]["rpe_m"] != current[1]["rpe_m"]
    summary = json.loads((tmp_path / "velocity_seed0" / "summary.json").read_text())
    assert summary["last"]["velocity_pairs"] > 0          # 1 m a frame, from the bag's /odom
    assert summary["data"]["translation_gain"] == 8.0       # auto: 1 m a frame against Monodepth2's 0.1 m
    for row in res["rows"].values():       # depth too, and whether the checkpoint claims metres (2 steps: never)
        assert all(0 < r["abs_rel"] < 10 for r in row["runs"]) and row["metric"] == 0
    for row in res["rows"].values():       # learned: from the held-out RPE against the untrained networks'
        assert row["learned"] == sum(r["rpe_m"] < 0.5 * res["untrained"]["rpe_m"] for r in row["runs"])
        assert 0.0 <= row["learned_ci95"][0] <= row["learned"] / 2 <= row["learned_ci95"][1] <= 1.0
        assert row["rpe_worst"] == max(r["rpe_m"] for r in row["runs"]) and row["minutes_per_run"] > 0
    table = print_pose_table(res)
    assert "velocity" in table and "untrained" in table and "95% CI" in table and "min/run" in table
    assert "abs_rel" in table and "metric" in table

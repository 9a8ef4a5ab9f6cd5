"""perception-models students: a robot's footage (a bag, no labels) in, one student per task out,
each exported with its card, by the same commands a user would run one by one; best.pt is chosen
on the synthetic held-out scenes only. Stand-in teachers (tiny ONNX graphs of the real families'
layouts) keep it quick; the students start from the shipped models, as the command does."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import yaml

from family_graphs import YOLO_META, family_graph, imported, yolo_head
from perception_models.cli import main
from perception_models.data.synth import SynthConfig, SyntheticSequence
from perception_models.data.writers import write_sequence
from perception_nodes.transforms import rotation_angle_deg

pytestmark = pytest.mark.train


def _teachers(tmp_path):
    det = family_graph(
        tmp_path / "det.onnx",
        {"images": [1, 3, 64, 64]},
        {"output0": yolo_head([[32, 40, 20, 30, 0.9, 0.0, 0.0], [12, 12, 8, 8, 0.0, 0.7, 0.0]])},
        YOLO_META,
    )
    protos = np.full((1, 1, 16, 16), 10.0, np.float32)
    seg = family_graph(
        tmp_path / "seg.onnx",
        {"images": [1, 3, 64, 64]},
        {"output0": yolo_head([[32, 40, 20, 30, 0.0, 0.9, 0.0, 1.0]], nm=1), "output1": protos},
        dict(YOLO_META, task="segment"),
    )
    logits = np.zeros((1, 65, 32, 40), np.float32)
    kp = family_graph(
        tmp_path / "kp.onnx",
        {"input": [1, 3, 256, 320]},
        {"keypoint_logits": logits, "descriptors": np.ones((1, 64, 32, 40), np.float32)},
    )
    return [imported(tmp_path, p) for p in (det, seg)] + [imported(tmp_path, kp, family="keypoints")]


def test_footage_in_students_out_with_cards(tmp_path):
    root = tmp_path / "data"
    for name, seed, bag in (("robot", 41, True), ("train", 42, False), ("val", 43, False)):
        seq = SyntheticSequence(SynthConfig(preset="driving", seed=seed, frames=4, width=160, height=120))
        write_sequence(seq, root / name, bag=bag, flow=False, workers=1, progress=False)
    det, seg, kp = _teachers(tmp_path)
    out = tmp_path / "students"
    cmap = tmp_path / "map.yaml"  # the stand-in teachers know person, car and chair only
    cmap.write_text("person: [person]\ncar: [car]\nchair: [chair]\n")
    argv = ["--detection-class-map", str(cmap), "--segmentation-class-map", str(cmap)]
    argv = ["students", *argv, "--bag", str(root / "robot" / "bag"), "--synthetic", str(root / "train"),
            "--val", str(root / "val"), "--detection-teacher", str(det), "--segmentation-teacher", str(seg),
            "--keypoint-teacher", str(kp), "--out", str(out), "--epochs", "1", "--time-budget-min", "0",
            "--device", "cpu"]  # fmt: skip
    assert main(argv) == 0
    made = json.loads((out / "students.json").read_text())["students"]
    assert sorted(made) == ["depth", "detection", "matching", "segmentation"]
    for task, m in made.items():
        card = yaml.safe_load(open(m["card"]))
        assert card["task"] == task and card["sha256"], task
        # every stage validated on --val (a stage without it logs NaN and never chooses a best.pt)
        vals = [json.loads(line) for line in open(out / task / "log.jsonl") if '"val"' in line]
        assert vals and all(math.isfinite(v["metric"]) for v in vals), (task, vals)
    det_card = yaml.safe_load(open(made["detection"]["card"]))
    assert det_card["distillation"]["pseudo_labels"] > 0 and "mAP" in det_card["metrics"]
    seg_card = yaml.safe_load(open(made["segmentation"]["card"]))
    assert seg_card["distillation"]["task"] == "segmentation" and "mIoU" in seg_card["metrics"]
    assert (out / "frames" / ".complete").is_file() and len(list((out / "frames").glob("*.png"))) == 4
    assert main(["students", "--val", "x", "--out", str(out)]) == 2  # no footage: a clear refusal


def test_depth_student_from_footage_with_poses_learns_the_triangulated_depth(tmp_path, capsys):
    root = tmp_path / "data"
    for name, seed, bag in (("robot", 44, True), ("val", 45, False)):
        seq = SyntheticSequence(SynthConfig(preset="driving", seed=seed, frames=6, width=320, height=240))
        write_sequence(seq, root / name, bag=bag, flow=False, workers=1, progress=False)
    out = tmp_path / "students"
    argv = ["students", "--tasks", "depth", "--bag", str(root / "robot" / "bag"), "--val", str(root / "val"),
            "--trajectory", str(root / "robot" / "trajectory_tum.txt"), "--reference-repeat", "2", "--out", str(out),
            "--epochs", "1", "--time-budget-min", "0", "--device", "cpu"]  # fmt: skip
    assert main(argv) == 0
    printed = capsys.readouterr().out
    seq_dir = out / "depth_reference"  # the bag's frames with their poses (matched by stamp), camera from the bag
    assert "6 of 6 images have a pose" in printed and len(list((seq_dir / "rgb").glob("*.png"))) == 6
    ref = json.loads((seq_dir / "depth" / "reference_depth.json").read_text())
    assert ref["frames_with_points"] >= 4 and ref["ground_prior"]["points_per_frame_median"] > 0
    import torch

    config = torch.load(out / "depth" / "last.pt", map_location="cpu", weights_only=False)["config"]
    assert config["data"].count(str(seq_dir)) == 2 and config["photometric"] == 0 and not config["bags"]
    assert config["supervised_per_image"] and config["zoom"] == 1.4  # the reference route's recipe
    card = yaml.safe_load(open(json.loads((out / "students.json").read_text())["students"]["depth"]["card"]))
    assert card["task"] == "depth" and card["sha256"]
    assert card["training"]["supervised_per_image"] and card["training"]["zoom"] == 1.4  # the card says the recipe
    # one pose per image of a folder, in order: a trajectory that does not say so is refused
    short = tmp_path / "short.txt"
    poses = [ln for ln in (root / "robot" / "trajectory_tum.txt").read_text().splitlines() if not ln.startswith("#")]
    short.write_text("\n".join(poses[:4]) + "\n")
    argv = ["students", "--tasks", "depth", "--images", str(root / "robot" / "rgb"), "--val", str(root / "val"),
            "--trajectory", str(short), "--camera-info", str(root / "robot" / "camera_info.yaml"),
            "--out", str(tmp_path / "s2"), "--epochs", "1", "--time-budget-min", "0"]  # fmt: skip
    assert main(argv) == 2
    assert "6 images but 4 poses" in capsys.readouterr().err


def test_odometry_is_cut_into_segments_at_failed_frames_and_resumes_at_them():
    """A failed frame has no pose after the last one but starts the next segment (the odometry
    matched the frame after it against it); the first frame's motion does not count; short
    segments are left out."""
    from perception_models.data.odometry_trajectory import chain_segments
    from perception_nodes.transforms import pose_from_xyzrpy

    start, step = pose_from_xyzrpy([0, 0, 1.5, 0, 0, 0]), pose_from_xyzrpy([0.0, 0.0, 1.0, 0.0, 0.0, 0.1])
    motions = [None, step, step, None, step, step, step, None, step]  # frames 3 and 7 failed
    segments = chain_segments(motions, start)
    assert [[i for i, _T in s] for s in segments] == [[0, 1, 2], [3, 4, 5, 6]]  # [7, 8] is too short
    assert np.allclose(segments[0][0][1], start) and np.allclose(segments[1][0][1], start)
    assert np.allclose(segments[1][3][1], start @ step @ step @ step)
    assert [len(s) for s in chain_segments(motions, start, min_frames=2)] == [3, 4, 2]
    assert chain_segments([], start) == [] and len(chain_segments([step], start, 1)) == 1


def test_depth_student_from_footage_without_poses_takes_them_from_its_own_odometry(tmp_path, capsys):
    """No pose source but the camera's mounting: ``--trajectory odometry`` runs the hybrid odometry
    (camera height, pitch, the segmenter's ground) over the bag's frames, writes the segments'
    trajectories, triangulates with their translations re-fitted, and trains on that."""
    from perception_models.data.readers.tum import read_tum_trajectory

    root = tmp_path / "data"
    for name, seed, bag in (("robot", 46, True), ("val", 45, False)):
        seq = SyntheticSequence(SynthConfig(preset="driving", seed=seed, frames=8, width=320, height=240))
        write_sequence(seq, root / name, bag=bag, flow=False, workers=1, progress=False)
    _t, truth = read_tum_trajectory(root / "robot" / "trajectory_tum.txt")
    height = float(truth[0][2, 3])
    pitch = math.degrees(math.asin(-truth[0][2, 2]))  # how far the optical axis points below the horizon
    out = tmp_path / "students"
    argv = ["students", "--tasks", "depth", "--bag", str(root / "robot" / "bag"), "--val", str(root / "val"),
            "--trajectory", "odometry", "--camera-height", f"{height:.4f}", "--camera-pitch", f"{pitch:.4f}",
            "--reference-repeat", "2", "--out", str(out), "--epochs", "1", "--time-budget-min", "0",
            "--device", "cpu"]  # fmt: skip
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "odometry over 8 frames: 1 segment(s) of [8] frames, 0 left out" in printed
    seg = out / "depth_reference_odometry" / "segment_00"
    _t, poses = read_tum_trajectory(seg / "trajectory_tum.txt")
    assert len(poses) == 8 and poses[0][2, 3] == pytest.approx(height, abs=1e-3)
    for i in range(1, 8):  # each step as the renderer drove it: the length from the ground, the turn from the images
        est, true = np.linalg.inv(poses[i - 1]) @ poses[i], np.linalg.inv(truth[i - 1]) @ truth[i]
        assert np.linalg.norm(est[:3, 3]) / np.linalg.norm(true[:3, 3]) == pytest.approx(1.0, abs=0.2)
        turn = rotation_angle_deg(est[:3, :3].T @ true[:3, :3])
        assert turn < 1.0
    ref = json.loads((seg / "depth" / "reference_depth.json").read_text())
    assert ref["settings"]["refine_translations"] and ref["frames_with_points"] >= 5
    summary = json.loads((out / "depth_reference_odometry" / "odometry.json").read_text())
    assert summary["segments"] == [8] and summary["camera_height_m"] == pytest.approx(height, abs=1e-3)
    import torch

    config = torch.load(out / "depth" / "last.pt", map_location="cpu", weights_only=False)["config"]
    assert config["data"].count(str(seg)) == 2 and config["photometric"] == 0
    # the scale comes from the camera's height: without it the command refuses
    argv = ["students", "--tasks", "depth", "--bag", str(root / "robot" / "bag"), "--val", str(root / "val"),
            "--trajectory", "odometry", "--out", str(tmp_path / "s2"), "--epochs", "1",
            "--time-budget-min", "0"]  # fmt: skip
    assert main(argv) == 2
    assert "--trajectory odometry needs --camera-height" in capsys.readouterr().err

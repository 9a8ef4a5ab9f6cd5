"""Teacher distillation (perception_models.distill) and the real-data readers/evaluations that go
with the pretrained families: uncertain (low-confidence) teacher boxes are ignored by the loss, not
taught as background; the class map is applied and checked; the teacher pass resumes; KITTI
odometry becomes a sequence folder; depth on real-image folders and HPatches pairs evaluate."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from family_graphs import YOLO_META, family_graph, imported, yolo_head
from perception_models.data.readers import DataFormatError


def test_uncertain_teacher_boxes_are_ignored_not_background():
    from perception_models.models.detection import Detector, DetectorConfig

    det = Detector(DetectorConfig(num_classes=2, input_size=(64, 64)))
    n = det.anchors.shape[0]
    logits = torch.full((1, n, 2), 4.0)  # the model says "class 0" everywhere
    deltas = torch.zeros((1, n, 4))
    none = {"boxes": torch.zeros((0, 4)), "labels": torch.zeros(0, dtype=torch.long)}
    background = det.loss(logits, deltas, [none])["classification"]
    assert background > 1.0  # no boxes: every anchor is a false positive
    unsure = dict(none, uncertain=torch.tensor([[-512.0, -512.0, 576.0, 576.0]]))  # over every anchor
    assert float(det.loss(logits, deltas, [unsure])["classification"]) == 0.0  # all under the teacher's doubt
    half = dict(none, uncertain=torch.tensor([[0.0, 0.0, 32.0, 64.0]]))
    partly = float(det.loss(logits, deltas, [half])["classification"])
    assert 0.0 < partly < float(background)
    # a real box inside an uncertain region is still learned from
    sure = {
        "boxes": torch.tensor([[8.0, 8.0, 24.0, 24.0]]),
        "labels": torch.tensor([1]),
        "uncertain": torch.tensor([[0.0, 0.0, 64.0, 64.0]]),
    }
    assert float(det.loss(logits, deltas, [sure])["classification"]) > 0.0


def test_class_map_is_checked_and_applied():
    from perception_models.distill import teacher_to_student

    m = teacher_to_student(
        {"person": ["person"], "car": ["car", "truck"]}, ["person", "car", "truck", "dog"], ["person", "car", "cone"]
    )
    assert m == {"person": "person", "car": "car", "truck": "car"}
    with pytest.raises(ValueError, match=r"student classes \['horse'\]"):
        teacher_to_student({"horse": ["dog"]}, ["dog"], ["person"])
    with pytest.raises(ValueError, match=r"teacher classes \['bus'\]"):
        teacher_to_student({"car": ["bus"]}, ["car"], ["car"])
    with pytest.raises(ValueError, match="mapped to both"):
        teacher_to_student({"car": ["truck"], "person": ["truck"]}, ["truck"], ["car", "person"])


def test_teacher_pass_labels_uncertain_boxes_and_resumes(tmp_path):
    from perception_models.distill import Frame, teacher_pass
    from perception_models.train.data import DetectionDataset

    head = yolo_head(
        [
            [32, 32, 20, 20, 0.9, 0.0, 0.0],  # person, sure -> a label
            [10, 10, 8, 8, 0.0, 0.3, 0.0],  # car, unsure -> uncertain region
            [50, 50, 8, 8, 0.0, 0.0, 0.8],  # chair: not in the class map -> dropped
        ]
    )
    path = family_graph(tmp_path / "t.onnx", {"images": [1, 3, 64, 64]}, {"output0": head}, YOLO_META)
    card = imported(tmp_path, path)
    frames = [Frame(f"f{i}", rgb=np.full((64, 64, 3), 40 * i, np.uint8)) for i in range(3)]
    out = tmp_path / "teacher"
    classes = ["person", "car", "cone"]
    ts = teacher_pass(card, iter(frames[:2]), {"person": ["person"], "car": ["car"]}, classes, out, 0.5, 0.2, 1, False)
    assert (ts.frames, ts.labels, ts.uncertain) == (2, 2, 2) and ts.per_class["person"] == 2
    ts = teacher_pass(card, iter(frames), {"person": ["person"], "car": ["car"]}, classes, out, 0.5, 0.2, 1, False)
    assert ts.frames == 3  # the first two came from the cache
    assert len((out / "teacher_cache.jsonl").read_text().splitlines()) == 3
    coco = json.loads((out / "annotations_coco.json").read_text())
    crowd = [a for a in coco["annotations"] if a["iscrowd"]]
    assert len(crowd) == 3 and all(coco["categories"][a["category_id"] - 1]["name"] == "car" for a in crowd)
    ds = DetectionDataset([out], (64, 64))
    _x, t = ds[0]
    assert t["labels"].tolist() == [0] and t["uncertain"].shape == (1, 4)
    np.testing.assert_allclose(t["boxes"][0].numpy(), [22, 22, 42, 42], atol=1e-4)


def test_segmentation_teacher_labels_its_sure_things_and_ignores_everything_else(tmp_path):
    """An instance teacher (YOLO-seg) for a segmentation student: pixels of a sure instance of a
    mapped class get the student's class, an unsure instance and the rest (sky, road: the teacher
    says nothing about them) are 255, which the loss ignores; the pass resumes."""
    from perception_models.distill import Frame, teacher_pass_segmentation
    from perception_models.train.data import SegmentationDataset

    protos = np.zeros((1, 2, 16, 16), np.float32)
    protos[0, 0, :, :8], protos[0, 0, :, 8:] = 10.0, -10.0  # prototype 0: the left half
    protos[0, 1] = 10.0  # prototype 1: everywhere
    head = yolo_head(
        [
            [32, 32, 40, 40, 0.9, 0.0, 0.0, 1.0, 0.0],  # person, sure: the left half of its box
            [48, 48, 16, 16, 0.0, 0.3, 0.0, 0.0, 1.0],  # car, unsure: taught nothing
        ],
        nm=2,
    )
    meta = dict(YOLO_META, task="segment")
    path = family_graph(tmp_path / "s.onnx", {"images": [1, 3, 64, 64]}, {"output0": head, "output1": protos}, meta)
    card = imported(tmp_path, path)
    student = ["sky", "ground", "wall", "clutter", "person", "car"]
    frames = [Frame(f"f{i}", rgb=np.full((64, 64, 3), 40 * i, np.uint8)) for i in range(2)]
    out = tmp_path / "seg_teacher"
    cmap = {"person": ["person"], "car": ["car"]}
    ts = teacher_pass_segmentation(card, iter(frames[:1]), cmap, student, out, 0.5, 0.2, 1, False)
    assert ts.frames == 1 and ts.per_class["person"] == 1 and ts.per_class["car"] == 0
    lab = cv2.imread(str(out / "labels" / "f0.png"), cv2.IMREAD_UNCHANGED)
    assert lab[32, 20] == student.index("person") and lab[32, 40] == 255  # right half of the box: not the mask
    assert lab[48, 48] == 255 and lab[2, 2] == 255  # the unsure car, and the background
    before = (out / "labels" / "f0.png").stat().st_mtime_ns
    ts = teacher_pass_segmentation(card, iter(frames), cmap, student, out, 0.5, 0.2, 1, False)
    assert ts.frames == 2 and (out / "labels" / "f0.png").stat().st_mtime_ns == before  # f0 from before
    _x, y = SegmentationDataset([out], (64, 64))[0]
    assert set(np.unique(y.numpy())) == {student.index("person"), 255}
    with pytest.raises(ValueError, match="needs a segmentation model"):  # a detector is no mask teacher
        det_path = family_graph(tmp_path / "d.onnx", {"images": [1, 3, 64, 64]}, {"output0": head[:, :7]}, YOLO_META)
        teacher_pass_segmentation(imported(tmp_path, det_path), iter(frames), cmap, student, out, progress=False)


def test_kitti_odometry_becomes_a_sequence_folder(tmp_path):
    from perception_models.data.readers.kitti import kitti_to_sequence
    from perception_models.data.readers.tum import read_tum_trajectory
    from perception_models.train.depth_data import load_synthetic_sequence

    root = tmp_path / "kitti"
    (root / "image_0").mkdir(parents=True)
    for i in range(4):
        cv2.imwrite(str(root / "image_0" / f"{i:06d}.png"), np.full((20, 60), 10 * i, np.uint8))
    (root / "calib.txt").write_text("P0: 50 0 30 0 0 50 10 0 0 0 1 0\nP1: 50 0 30 -20 0 50 10 0 0 0 1 0\n")
    (root / "poses.txt").write_text("\n".join(f"1 0 0 0 0 1 0 0 0 0 1 {i * 1.5}" for i in range(4)) + "\n")
    (root / "times.txt").write_text("\n".join(str(i * 0.1) for i in range(4)) + "\n")
    seq = load_synthetic_sequence(kitti_to_sequence(root, tmp_path / "seq", camera_height=1.65))
    np.testing.assert_allclose(seq.K, [[50, 0, 30], [0, 50, 10], [0, 0, 1]])
    times, poses = read_tum_trajectory(tmp_path / "seq" / "trajectory_tum.txt")
    np.testing.assert_allclose(poses[:, 2, 3], 1.65)  # the camera's height above the ground
    np.testing.assert_allclose(poses[3, :3, 3] - poses[0, :3, 3], [4.5, 0, 0], atol=1e-6)  # forward = x
    np.testing.assert_allclose(poses[0, :3, 2], [1, 0, 0], atol=1e-6)  # the optical axis looks along x
    assert len(seq.frames) == 4 and times[-1] == pytest.approx(0.3)
    # a later part of the drive (held out from a student trained on the earlier part)
    later = load_synthetic_sequence(kitti_to_sequence(root, tmp_path / "later", start=1))
    t_later, p_later = read_tum_trajectory(tmp_path / "later" / "trajectory_tum.txt")
    assert len(later.frames) == 3 and t_later[0] == pytest.approx(0.1)
    np.testing.assert_allclose(p_later[:, 2, 3], 1.65)  # the ground under its first frame is z = 0
    np.testing.assert_allclose(p_later[2, :3, 3] - p_later[0, :3, 3], [3.0, 0, 0], atol=1e-6)
    with pytest.raises(DataFormatError, match="start 2 leaves fewer than 3"):
        kitti_to_sequence(root, tmp_path / "short", start=2)


def test_depth_dir_evaluation_aligns_a_relative_model(tmp_path):
    from perception_models.evaluate import evaluate_depth_dir

    h, w = 24, 32
    depth = np.linspace(2.0, 10.0, h * w, dtype=np.float32).reshape(h, w)
    path = family_graph(tmp_path / "rel.onnx", {"image": [1, 3, h, w]}, {"depth": (2.0 / depth + 0.1)[None]})
    card = imported(tmp_path, path, family="relative-depth")
    root = tmp_path / "real"
    (root / "rgb").mkdir(parents=True)
    (root / "depth").mkdir()
    for i in range(2):
        cv2.imwrite(str(root / "rgb" / f"{i}.png"), np.zeros((h, w, 3), np.uint8))
        cv2.imwrite(str(root / "depth" / f"{i}.png"), (depth * 256).astype(np.uint16))  # KITTI: metres * 256
    r = evaluate_depth_dir(card, root, "kitti")
    assert r["images"] == 2 and r["scale_shift_aligned"]["abs_rel"] < 1e-3
    with pytest.raises(ValueError, match="must be one of"):
        evaluate_depth_dir(card, root, "sintel")


def test_hpatches_pairs_evaluate_with_the_keypoint_pipeline(tmp_path):
    from perception_models.evaluate import evaluate_matching

    logits = np.full((1, 65, 4, 4), -10.0, np.float32)
    logits[0, 64] = 5.0
    for r, c in ((0, 0), (1, 2), (2, 1), (3, 3), (2, 3)):
        logits[0, 27, r, c] = 20.0  # one keypoint per chosen cell
    desc = np.random.default_rng(0).normal(size=(1, 8, 4, 4)).astype(np.float32)
    path = family_graph(
        tmp_path / "kp.onnx", {"input": [1, 3, 32, 32]}, {"descriptors": desc, "keypoint_logits": logits}
    )
    card = imported(tmp_path, path)
    seq = tmp_path / "hp" / "i_test"
    seq.mkdir(parents=True)
    for k in range(1, 3):
        cv2.imwrite(str(seq / f"{k}.ppm"), np.zeros((32, 32, 3), np.uint8))
    (seq / "H_1_2").write_text("1 0 0\n0 1 0\n0 0 1\n")
    r = evaluate_matching(card, [], [], hpatches=tmp_path / "hp")
    assert r["pairs"]["homography"] == 1 and r["matches_per_pair"] == 5
    assert r["homography_mma"][1] == 1.0 and r["homography_accuracy"][1] == 1.0  # identity: all exact
    assert Path(r["hpatches"]).name == "hp"

"""Detection and segmentation pipelines (no ROS): model cards, letterbox mapping back to the input
image (exact), filtering, NaN rows, wrong models. Models are tiny ONNX graphs with known outputs."""

from __future__ import annotations

import numpy as np
import pytest

from perception_nodes.backends import BackendError, OnnxRuntimeBackend
from perception_nodes.model_card import ModelCardError, card_path, load_card
from perception_nodes.pipelines.detection import DetectionPipeline
from perception_nodes.pipelines.segmentation import SegmentationPipeline

from const_models import H, W, const_detector as _detector, const_model as _const_model, write_card as _card


def test_boxes_map_back_through_the_letterbox_exactly(tmp_path):
    # an 800x400 image fits 512x384 at scale 0.64: 512x256 with 64 px bands above and below
    path, card = _detector(tmp_path, [[100, 96, 200, 160], [0, 0, 512, 384], [0, 0, 0, 0]], [0.9, 0.8, 0.0], [1, 0, -1])
    pipe = DetectionPipeline(OnnxRuntimeBackend(path), card, score_threshold=0.5)
    det = pipe.run(np.zeros((400, 800, 3), np.uint8))
    np.testing.assert_allclose(det.boxes[0], [100 / 0.64, 32 / 0.64, 200 / 0.64, 96 / 0.64])
    np.testing.assert_allclose(det.boxes[1], [0, 0, 800, 400])  # the padded band maps outside: clipped
    assert det.class_names == ["car", "person"] and det.scores.tolist() == pytest.approx([0.9, 0.8])


def test_threshold_class_filter_max_and_nan_rows(tmp_path):
    boxes = [[10, 10, 20, 20], [30, 30, 40, 40], [np.nan, 1, 2, 3], [50, 50, 60, 60], [1, 1, 2, 2]]
    path, card = _detector(tmp_path, boxes, [0.9, 0.2, 0.95, 0.7, 0.6], [0, 1, 2, 2, 1])
    img = np.zeros((H, W, 3), np.uint8)
    det = DetectionPipeline(OnnxRuntimeBackend(path), card, score_threshold=0.5).run(img)
    assert det.class_names == ["person", "cone", "car"] and det.dropped_nonfinite == 1
    det = DetectionPipeline(OnnxRuntimeBackend(path), card, score_threshold=0.1, class_filter=["car"]).run(img)
    assert det.class_names == ["car", "car"]
    det = DetectionPipeline(OnnxRuntimeBackend(path), card, score_threshold=0.1, max_detections=2).run(img)
    assert det.scores.tolist() == pytest.approx([0.9, 0.7])
    with pytest.raises(ValueError, match="class_filter names \\['bus'\\]"):
        DetectionPipeline(OnnxRuntimeBackend(path), card, class_filter=["bus"])


def test_cards_refuse_wrong_task_stale_files_and_absence(tmp_path):
    path, _ = _detector(tmp_path, [[0, 0, 1, 1]], [0.5], [0])
    with pytest.raises(ModelCardError, match="is a detection model .* needs a segmentation model"):
        load_card(path, "segmentation")
    path.write_bytes(path.read_bytes() + b"\0")
    with pytest.raises(ModelCardError, match="sha256 differs"):
        load_card(path, "detection")
    with pytest.raises(ModelCardError, match="not found"):
        load_card(tmp_path / "other.onnx", "detection")
    card_path(path).write_text("task: detection\n")
    with pytest.raises(ModelCardError, match="malformed"):
        load_card(path)


def test_a_segmentation_model_is_not_a_detector(tmp_path):
    path = _const_model(tmp_path / "seg.onnx", {"labels": np.zeros((1, H, W), np.int32)})
    card = _card(path, "detection")  # a card claiming the wrong task: the outputs give it away
    with pytest.raises(BackendError, match="is it a detection model"):
        DetectionPipeline(OnnxRuntimeBackend(path), card)


def test_segmentation_labels_come_back_at_the_input_size(tmp_path):
    net = np.zeros((1, H, W), np.int32)
    net[0, :, W // 2 :] = 2  # right half: class 2
    net[0, :64] = 7  # the top padding band: out of range, and cut away anyway
    net[0, -64:] = 1
    path = _const_model(tmp_path / "seg.onnx", {"labels": net})
    card = _card(path, "segmentation", classes=["sky", "road", "car"], colors=[[0, 0, 0], [128, 64, 128], [0, 0, 142]])
    pipe = SegmentationPipeline(OnnxRuntimeBackend(path), card)
    seg = pipe.run(np.zeros((400, 800, 3), np.uint8))  # 64 px bands above and below in the network input
    assert seg.labels.shape == (400, 800) and seg.labels.dtype == np.uint8
    assert (seg.labels[:, :400] == 0).all() and (seg.labels[:, 400:] == 2).all()
    assert seg.invalid_pixels == 64 * W
    over = pipe.overlay(np.full((400, 800, 3), 200, np.uint8), seg.labels, 0.5)
    assert over[0, 799].tolist() == [100, 100, 171]


def test_ground_points_recover_where_objects_stand_for_a_pitched_camera():
    from perception_nodes.pipelines.detection import ground_points

    K = np.array([[520.0, 0, 320], [0, 520.0, 240], [0, 0, 1]])
    h, pitch = 1.4, 8.0
    c, s = np.cos(np.radians(pitch)), np.sin(np.radians(pitch))
    R_level_optical = np.array([[1.0, 0, 0], [0, c, s], [0, -s, c]])
    feet_level = np.array([[-2.0, h, 6.0], [0.5, h, 15.0], [3.0, h, 40.0]])  # on the ground, level frame
    feet = feet_level @ R_level_optical  # the camera's optical frame
    uv = feet @ K.T
    uv = uv[:, :2] / uv[:, 2:]
    boxes = np.stack([uv[:, 0] - 10, uv[:, 1] - 50, uv[:, 0] + 10, uv[:, 1]], axis=1)
    sky = np.array([[300, 10, 340, 50]])  # bottom edge above the horizon (8 deg above the centre): no ground
    pts, valid = ground_points(np.vstack([boxes, sky]), K, h, pitch, max_range=30.0)
    np.testing.assert_allclose(pts[:2], feet[:2], atol=1e-9)
    assert valid.tolist() == [True, True, False, False]  # 40 m is past max_range


def test_cards_with_unusable_values_or_no_checksum_are_refused(tmp_path):
    """`std: 0` gave an 'ok' node with 0 detections (every input inf); a card without sha256 was
    trusted without any check that it belongs to the file."""
    import yaml

    path, _ = _detector(tmp_path, [[0, 0, 1, 1]], [0.5], [0])
    good = yaml.safe_load(card_path(path).read_text())
    for change, text in (
        ({"input": {**good["input"], "std": [0.25, 0.0, 0.25]}}, "std .* must be finite and > 0"),
        ({"input": {**good["input"], "mean": [0.5, 0.5]}}, "need 1 or 3 values"),
        ({"input": {**good["input"], "height": 0}}, "must be positive"),
        ({"classes": []}, "needs its class names"),
        ({"classes": ["car", "car", "cone"]}, "class names repeat"),
        ({"colors": [[1, 2, 3]]}, "1 colours for 3 classes"),
    ):
        card_path(path).write_text(yaml.safe_dump({**good, **change}))
        with pytest.raises(ModelCardError, match=text):
            load_card(path, "detection")
    card_path(path).write_text(yaml.safe_dump({k: v for k, v in good.items() if k != "sha256"}))
    with pytest.raises(ModelCardError, match="has no sha256.*allow_unverified_model"):
        load_card(path, "detection")
    assert load_card(path, "detection", allow_unverified=True).sha256 == ""

"""Third-party model families (perception_nodes.families) and their import (perception-models card):
small ONNX graphs (tests/family_graphs.py) with each family's exact input/output names, shapes and metadata and
known outputs; decode checked against values worked out by hand. With ../shared present, the real
YOLOv8n against an independent reference decode written from the output definition."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from perception_nodes.backends import OnnxRuntimeBackend
from perception_nodes.model_card import ModelCardError, load_card, model_files
from perception_nodes.model_import import ModelImportError, build_card

from family_graphs import YOLO_META, family_graph, imported, yolo_head

SHARED = Path(__file__).resolve().parents[3] / "shared"


# ------------------------------------------------------------------------------------- YOLO detect
def test_yolo_detect_card_and_decode_through_letterbox(tmp_path):
    from perception_nodes.pipelines.detection import DetectionPipeline

    head = yolo_head(
        [
            [32, 32, 20, 10, 0.9, 0.0, 0.0],  # person
            [33, 32, 20, 10, 0.8, 0.0, 0.0],  # the same person again: NMS drops it
            [33, 32, 20, 10, 0.0, 0.7, 0.0],  # a car on the same spot: another class, kept
            [10, 50, 4, 4, 0.0, 0.0, 0.1],  # below the threshold
        ]
    )
    path = family_graph(tmp_path / "y8.onnx", {"images": [1, 3, 64, 64]}, {"output0": head}, YOLO_META)
    card_file = imported(tmp_path, path)
    card = load_card(card_file, "detection")
    assert (card.family, card.classes, card.input_height, card.resize) == (
        "yolo-detect",
        ["person", "car", "chair"],
        64,
        "letterbox",
    )
    assert card.model_file == path.resolve() and model_files(card_file)[0] == path.resolve()
    pipe = DetectionPipeline(OnnxRuntimeBackend(model_files(card_file)[0]), card, score_threshold=0.25)
    det = pipe.run(np.zeros((96, 128, 3), np.uint8))  # letterbox: scale 0.5, 8 px of padding above and below
    assert det.class_names == ["person", "car"]
    np.testing.assert_allclose(det.scores, [0.9, 0.7], atol=1e-6)
    # person: net x 22..42, y 27..37 -> image x (22-0)/0.5 .. , y (27-8)/0.5 ..
    np.testing.assert_allclose(det.boxes[0], [44, 38, 84, 58], atol=1e-4)
    np.testing.assert_allclose(det.boxes[1], [46, 38, 86, 58], atol=1e-4)


def test_yolo_preprocess_is_rgb_over_255_letterboxed_centre(tmp_path):
    from perception_nodes.pipelines.detection import DetectionPipeline

    path = family_graph(
        tmp_path / "y8.onnx", {"images": [1, 3, 64, 64]}, {"output0": yolo_head([[1, 1, 1, 1]])}, YOLO_META
    )
    card = load_card(imported(tmp_path, path), "detection")
    pipe = DetectionPipeline(OnnxRuntimeBackend(path), card)
    rgb = np.zeros((32, 64, 3), np.uint8)
    rgb[..., 0] = 255  # red
    feeds, lb = pipe.preprocess(rgb)
    x = feeds["images"]
    assert (lb.pad_x, lb.pad_y) == (0.0, 16.0)
    np.testing.assert_allclose(x[0, :, 32, 32], [1.0, 0.0, 0.0])
    np.testing.assert_allclose(x[0, :, 2, 32], [114 / 255] * 3, atol=1e-6)  # grey padding above


def test_yolo_end2end_layout_skips_nms(tmp_path):
    from perception_nodes.pipelines.detection import DetectionPipeline

    rows = np.array([[[10, 10, 30, 30, 0.9, 1], [11, 10, 31, 30, 0.8, 1], [0, 0, 0, 0, 0, 0]]], np.float32)
    meta = dict(YOLO_META, end2end="True")
    path = family_graph(tmp_path / "e2e.onnx", {"images": [1, 3, 64, 64]}, {"output0": rows}, meta)
    card = load_card(imported(tmp_path, path), "detection")
    assert card.decode["layout"] == "end2end"
    det = DetectionPipeline(OnnxRuntimeBackend(path), card).run(np.zeros((64, 64, 3), np.uint8))
    assert det.class_names == ["car", "car"]  # the graph's NMS decided; nothing is dropped again


# ---------------------------------------------------------------------------------- YOLO segment
def test_yolo_segment_masks_cut_to_boxes_and_instance_ids(tmp_path):
    from perception_nodes.pipelines.segmentation import SegmentationPipeline

    protos = np.zeros((1, 2, 16, 16), np.float32)
    protos[0, 0, :, :8] = 10.0  # prototype 0: the left half of the network input
    protos[0, 0, :, 8:] = -10.0
    protos[0, 1] = 10.0  # prototype 1: everywhere
    head = yolo_head(
        [
            [32, 32, 40, 40, 0.9, 0.0, 0.0, 1.0, 0.0],  # person, mask = left half, cut to its box
            [48, 48, 16, 16, 0.0, 0.8, 0.0, 0.0, 1.0],  # car, mask = its whole box
        ],
        nm=2,
    )
    meta = dict(YOLO_META, task="segment")
    path = family_graph(tmp_path / "seg.onnx", {"images": [1, 3, 64, 64]}, {"output0": head, "output1": protos}, meta)
    card = load_card(imported(tmp_path, path), "segmentation")
    assert card.family == "yolo-segment" and card.decode["prototypes"] == "output1"
    assert load_card(model_files(tmp_path / "cards" / "seg.card.yaml")[1], "detection").family == "yolo-segment"
    pipe = SegmentationPipeline(OnnxRuntimeBackend(path), card, score_threshold=0.25)
    seg = pipe.run(np.zeros((64, 64, 3), np.uint8))
    assert pipe.label_names[:3] == ["background", "person", "car"]
    assert seg.detections.class_names == ["person", "car"]
    person = np.zeros((64, 64), bool)
    person[12:52, 12:32] = True  # box x 12..52, y 12..52 and the left half (x < 32)
    car = np.zeros((64, 64), bool)
    car[40:56, 40:56] = True
    expect_inst = np.where(person, 1, 0)
    expect_inst[car] = 2  # car painted over the person? no: the better-scored person wins where both are
    expect_inst[person & car] = 1
    np.testing.assert_array_equal(seg.instances, expect_inst)
    np.testing.assert_array_equal(seg.labels, np.where(expect_inst == 1, 1, np.where(expect_inst == 2, 2, 0)))
    assert seg.instances.dtype == np.uint16 and seg.labels.dtype == np.uint8
    over = pipe.overlay(np.full((64, 64, 3), 77, np.uint8), seg.labels)
    assert (over[0, 0] == 77).all()  # no instance: the image shows through


# ------------------------------------------------------------------------------------------ YOLOX
def test_yolox_grid_decode_bgr_and_top_left_canvas(tmp_path):
    from perception_nodes.pipelines.detection import DetectionPipeline

    n = 8 * 8 + 4 * 4 + 2 * 2
    head = np.zeros((1, n, 7), np.float32)
    head[0, :, 2:4] = -5.0
    r = 2 * 8 + 3  # stride 8, cell x 3, y 2
    head[0, r] = [0.5, 0.5, math.log(2.0), math.log(4.0), 0.9, 0.1, 0.8]
    r2 = 64 + 1 * 4 + 1  # stride 16, cell (1, 1)
    head[0, r2] = [0.0, 0.0, 0.0, 0.0, 0.5, 0.6, 0.0]
    path = family_graph(tmp_path / "yolox.onnx", {"images": [1, 3, 64, 64]}, {"output": head})
    classes = tmp_path / "names.txt"
    classes.write_text("person\ncar\n")
    card = load_card(imported(tmp_path, path, classes=["person", "car"]), "detection")
    assert (card.family, card.channel_order, card.pad_anchor) == ("yolox", "BGR", "top_left")
    pipe = DetectionPipeline(OnnxRuntimeBackend(path), card, score_threshold=0.2)
    rgb = np.zeros((32, 64, 3), np.uint8)
    rgb[..., 0] = 200  # red
    feeds, lb = pipe.preprocess(rgb)
    assert (lb.pad_x, lb.pad_y) == (0.0, 0.0)
    np.testing.assert_allclose(feeds["images"][0, :, 10, 10], [0, 0, 200], atol=1e-3)  # BGR, 0-255
    np.testing.assert_allclose(feeds["images"][0, :, 40, 10], [114] * 3, atol=1e-3)  # canvas below the image
    det = pipe.run(rgb)
    assert det.class_names == ["car", "person"]
    np.testing.assert_allclose(det.scores, [0.72, 0.30], atol=1e-5)
    # centre ((3 + .5) * 8, (2 + .5) * 8) = (28, 20), size 2 * 8 x 4 * 8 = 16 x 32; clipped to the 32 px high image
    np.testing.assert_allclose(det.boxes[0], [20, 4, 36, 32], atol=1e-4)
    np.testing.assert_allclose(det.boxes[1], [8, 8, 24, 24], atol=1e-4)  # centre (16, 16), 16 x 16


# ---------------------------------------------------------------------------------- relative depth
def test_relative_depth_scale_and_shift_recover_metric_ground(tmp_path):
    from perception_nodes.families.relative_depth import RelativeDepthScaler, ground_inverse_depth
    from perception_nodes.pipelines.depth import DepthPipeline

    h, w = 48, 64
    K = np.array([[40.0, 0, 31.5], [0, 40.0, 23.5], [0, 0, 1]])
    down = np.array([0.0, 1.0, 0.0])  # level camera: the ground's normal is the optical y
    inv = np.nan_to_num(ground_inverse_depth(K, (h, w), 1.5, down), nan=0.0)  # sky: inverse depth 0
    inv[30:34, 20:30] = 1 / 2.0  # a box 2 m away standing on the ground
    relative = (3.0 * inv + 0.2).astype(np.float32)  # what Depth Anything might give: affine in inverse depth
    path = family_graph(tmp_path / "da.onnx", {"image": [1, 3, h, w]}, {"predicted_depth": relative[None]})
    card = load_card(imported(tmp_path, path, family="relative-depth"), "depth")
    assert card.family == "relative-depth" and card.resize == "stretch"
    pipe = DepthPipeline(OnnxRuntimeBackend(path), card)
    res = pipe.run(np.zeros((h * 2, w * 2, 3), np.uint8))
    assert np.isnan(res.depth).all() and res.relative.shape == (h * 2, w * 2)  # nothing metric by itself
    scaler = RelativeDepthScaler("camera_height", 1.5, down, min_depth=0.1, max_depth=200)
    K2 = K.copy()
    K2[:2] *= 2
    K2[:2, 2] += 0.5
    fit = scaler.from_ground(res.relative, K2, stride=2)
    assert fit is not None and abs(fit.scale - 1 / 3.0) < 1e-3 and abs(fit.shift + 0.2 / 3.0) < 1e-3
    depth = fit.to_depth(res.relative, 0.1, 200)
    assert abs(depth[65, 50] - 2.0) < 0.02  # the box
    truth = 1.5 / ((np.arange(h * 2) - K2[1, 2]) / K2[1, 1])
    np.testing.assert_allclose(depth[80:, 100], truth[80:], rtol=2e-2)  # the ground below the box's rows
    assert not RelativeDepthScaler("model").available


def test_relative_depth_fit_from_a_metric_reference_ignores_outliers():
    from perception_nodes.families.relative_depth import RelativeDepthScaler

    rng = np.random.default_rng(0)
    depth = rng.uniform(1, 20, (60, 80)).astype(np.float32)
    relative = (0.5 / depth + 0.05).astype(np.float32)
    reference = depth.copy()
    reference[:5] = 100.0  # a bad strip of the reference: trimmed away
    fit = RelativeDepthScaler("depth_topic").from_reference(relative, reference, stride=1)
    assert fit is not None
    np.testing.assert_allclose(fit.to_depth(relative, 0.1, 200)[10:], depth[10:], rtol=1e-3)


# --------------------------------------------------------------------------------------- keypoints
def test_superpoint_style_heads_keypoints_in_input_pixels(tmp_path):
    from perception_nodes.pipelines.matching import MatchingPipeline

    logits = np.full((1, 65, 4, 4), -10.0, np.float32)
    logits[0, 64] = 5.0  # dustbin: no keypoint
    logits[0, 3 * 8 + 5, 1, 2] = 20.0  # cell row 1, column 2; in-cell row 3, column 5 -> (x 21, y 11)
    desc = np.zeros((1, 8, 4, 4), np.float32)
    desc[0, 0] = 1.0
    desc[0, 1] = 2.0
    rel = np.ones((1, 1, 4, 4), np.float32)
    path = family_graph(
        tmp_path / "xfeat.onnx",
        {"input": [1, 3, 32, 32]},
        {"descriptors": desc, "keypoint_logits": logits, "reliability": rel},
    )
    card = load_card(imported(tmp_path, path), "matching")
    assert card.family == "keypoints" and card.decode["logits"] == "keypoint_logits"
    assert card.decode["reliability"] == "reliability"
    f = MatchingPipeline(OnnxRuntimeBackend(path), card).run(np.zeros((64, 64, 3), np.uint8))
    assert len(f.keypoints) == 1 and f.image_size == (64, 64)
    np.testing.assert_allclose(f.keypoints[0], [(21 + 0.5) * 2 - 0.5, (11 + 0.5) * 2 - 0.5])
    np.testing.assert_allclose(f.descriptors[0][:2], np.array([1, 2]) / math.sqrt(5), atol=1e-6)
    assert f.scores[0] > 0.99


def test_lightglue_matcher_normalises_keypoints_and_filters_pairs(tmp_path):
    from perception_nodes.families.lightglue import LightGlueMatcher, normalise_keypoints
    from perception_nodes.pipelines.matching import Features, SequentialMatcher

    n = 3
    outputs = {"matches": np.array([[0, 2], [1, 1], [5, 0]], np.int64), "scores": np.array([0.9, 0.2, 0.8], np.float32)}
    path = family_graph(
        tmp_path / "glue.onnx",
        {"kpts0": [1, n, 2], "kpts1": [1, n, 2], "desc0": [1, n, 4], "desc1": [1, n, 4]},
        outputs,
    )
    card_file = imported(tmp_path, path)
    card = load_card(card_file, "matcher")
    assert card.family == "lightglue"
    glue = LightGlueMatcher(OnnxRuntimeBackend(path), card)
    kp = np.array([[0, 0], [320, 240], [640, 480]], np.float32)
    np.testing.assert_allclose(normalise_keypoints(kp, (480, 640)), [[-1, -0.75], [0, 0], [1, 0.75]])
    f = Features(kp, np.ones(n, np.float32), np.eye(n, 4, dtype=np.float32), (480, 640))
    pairs, scores = glue(f, f)
    np.testing.assert_array_equal(pairs, [[0, 2], [1, 1]])  # index 5 is out of range: dropped
    result = SequentialMatcher(geometry="none", match_fn=glue).match(f, f)
    np.testing.assert_array_equal(result.pairs, [[0, 2], [1, 1]])
    with pytest.raises(ModelCardError, match="needs a matching model"):
        load_card(card_file, "matching")


# -------------------------------------------------------------------------------------- refusals
def test_refusals_name_what_was_not_understood(tmp_path):
    odd = family_graph(tmp_path / "odd.onnx", {"images": [1, 3, 64, 64]}, {"out": np.zeros((1, 7, 7, 7), np.float32)})
    with pytest.raises(ModelImportError, match=r"'out' \[1, 7, 7, 7\].*give --family"):
        build_card(odd)
    y8 = family_graph(tmp_path / "y8.onnx", {"images": [1, 3, 64, 64]}, {"output0": yolo_head([[1, 1, 1, 1]] * 9)})
    with pytest.raises(ModelImportError, match="'output0'.*has 7 rows; a YOLOX head at 64x64"):
        build_card(y8, family="yolox", classes=["a", "b", "c"])
    with pytest.raises(ModelImportError, match="3 classes and the graph has no 'names' metadata: give --classes"):
        build_card(y8)
    with pytest.raises(ModelImportError, match="3 classes but 2 names"):
        build_card(y8, classes=["a", "b"])
    with pytest.raises(ModelImportError, match="2 output.*rank \\[3, 4\\]"):
        build_card(y8, family="yolo-segment")
    pose = family_graph(
        tmp_path / "pose.onnx", {"images": [1, 3, 64, 64]}, {"output0": yolo_head([[1]])}, {"task": "pose"}
    )
    with pytest.raises(ModelImportError, match="'pose' model"):
        build_card(pose)
    two = family_graph(
        tmp_path / "two.onnx",
        {"image0": [1, 3, 32, 32], "image1": [1, 3, 32, 32]},
        {"matches": np.zeros((1, 4), np.int64)},
    )
    with pytest.raises(ModelImportError, match="two-image pipeline"):
        build_card(two)
    dyn = family_graph(tmp_path / "dyn.onnx", {"images": [1, 3, "h", "w"]}, {"output0": yolo_head([[1]] * 9)})
    with pytest.raises(ModelImportError, match="dynamic size.*--input-size H W"):
        build_card(dyn, classes=["a", "b", "c"])


def test_card_command_writes_a_card_the_nodes_read(tmp_path, capsys):
    from perception_models.cli import main

    path = family_graph(
        tmp_path / "y8.onnx", {"images": [1, 3, 64, 64]}, {"output0": yolo_head([[1, 1, 1, 1]])}, YOLO_META
    )
    assert main(["card", "--onnx", str(path), "--out", str(tmp_path / "elsewhere" / "y8.card.yaml")]) == 0
    assert "yolo-detect (detection)" in capsys.readouterr().out
    assert load_card(tmp_path / "elsewhere" / "y8.card.yaml", "detection").model_file == path.resolve()
    assert main(["card", "--onnx", str(path), "--family", "yolox"]) == 2
    assert "YOLOX head" in capsys.readouterr().err


# ------------------------------------------------------------------------------------ real weights
def _reference_yolo(model: Path, rgb: np.ndarray, conf: float = 0.25, iou: float = 0.7) -> np.ndarray:
    """Written from the YOLOv8 output definition alone (ultralytics' letterbox + [1, 84, N] cx cy w h
    + class scores + greedy NMS per class), sharing no code with the pipeline."""
    import cv2
    import onnxruntime as ort

    h, w = rgb.shape[:2]
    r = min(640 / h, 640 / w)
    nw, nh = int(round(w * r)), int(round(h * r))
    dw, dh = (640 - nw) / 2, (640 - nh) / 2
    top, left = int(round(dh - 0.1)), int(round(dw - 0.1))
    canvas = np.full((640, 640, 3), 114, np.uint8)
    canvas[top : top + nh, left : left + nw] = cv2.resize(rgb, (nw, nh), interpolation=cv2.INTER_LINEAR)
    x = canvas.transpose(2, 0, 1)[None].astype(np.float32) / 255.0
    out = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"]).run(None, {"images": x})[0][0]
    found = []
    for j in range(out.shape[1]):
        c = int(np.argmax(out[4:, j]))
        s = float(out[4 + c, j])
        if s >= conf:
            cx, cy, bw, bh = (float(v) for v in out[:4, j])
            found.append((s, c, [cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2]))
    found.sort(key=lambda t: -t[0])
    kept: list = []
    for s, c, b in found:
        if all(k[1] != c or _iou(b, k[2]) <= iou for k in kept):
            kept.append((s, c, b))
    boxes = np.array([b for _s, _c, b in kept], np.float64).reshape(-1, 4)
    boxes[:, [0, 2]] = ((boxes[:, [0, 2]] - left) * w / nw).clip(0, w)
    boxes[:, [1, 3]] = ((boxes[:, [1, 3]] - top) * h / nh).clip(0, h)
    return boxes


def _iou(a, b) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def test_real_yolov8n_matches_an_independent_reference_decode(tmp_path):
    model = SHARED / "models" / "yolov8_det" / "derived" / "yolov8n_fp32_dequantized_640.onnx"
    images = sorted((SHARED / "data" / "voc_det100" / "images").glob("*.jpg"))[:4]
    if not model.is_file() or not images:
        pytest.skip(f"../shared not here ({model} / voc_det100 images): the real-weights check needs them")
    from perception_models.data.readers.common import read_rgb
    from perception_nodes.pipelines.detection import DetectionPipeline

    card = load_card(imported(tmp_path, model), "detection")
    pipe = DetectionPipeline(OnnxRuntimeBackend(model, threads=2), card, score_threshold=0.25, max_detections=300)
    total = 0
    for path in images:
        rgb = read_rgb(path)
        det, ref = pipe.run(rgb), _reference_yolo(model, rgb)
        assert det.boxes.shape == ref.shape, path.name
        if len(ref):
            assert np.abs(det.boxes - ref).max() <= 0.5, path.name
        total += len(ref)
    assert total > 0


# ------------------------------------------------------------------------------- through the nodes
def test_yolo_seg_card_feeds_segmentation_node_labels_instances_and_detections(tmp_path, rclpy_context):
    from sensor_msgs.msg import Image
    from vision_msgs.msg import Detection2DArray, LabelInfo

    from perception_nodes.detection_conversion import label_map, read_detections
    from perception_nodes.qos import latched_qos

    from perception_nodes.image_conversion import image_to_numpy, numpy_to_image
    from perception_nodes.launcher import StackProcesses
    from rosgraph import Probe, node_profile

    protos = np.full((1, 2, 16, 16), 10.0, np.float32)
    head = yolo_head([[32, 32, 32, 32, 0.0, 0.9, 0.0, 1.0, 0.0]], nm=2)  # a car in the middle
    meta = dict(YOLO_META, task="segment")
    path = family_graph(tmp_path / "seg.onnx", {"images": [1, 3, 64, 64]}, {"output0": head, "output1": protos}, meta)
    card = imported(tmp_path, path)  # the node gets the card, which names the ONNX file
    prof = node_profile("seg", "segmentation_node", card)
    with StackProcesses(prof, tmp_path / "logs") as stack:
        probe = Probe(rclpy_context)
        labels = probe.collect(Image, "/seg/labels")
        instances = probe.collect(Image, "/seg/instances")
        dets = probe.collect(Detection2DArray, "/seg/detections")
        pub = probe.publisher(Image, "/seg/in")
        assert pub is not None, stack.log_text("seg")
        assert probe.wait_for_publisher("/seg/instances"), stack.log_text("seg")
        msg = numpy_to_image(np.zeros((128, 128, 3), np.uint8), "rgb8")
        msg.header.frame_id, msg.header.stamp.sec = "camera_optical_frame", 7
        pub.publish(msg)
        assert probe.spin_until(lambda: labels and instances and dets, 30), stack.log_text("seg")
        inst, lab = image_to_numpy(instances[0]), image_to_numpy(labels[0])
        assert instances[0].encoding == "mono16" and inst.shape == (128, 128)
        assert (inst[32:96, 32:96] == 1).all() and inst.sum() == 64 * 64  # the car's box, at input size
        assert (lab[32:96, 32:96] == 2).all()  # class car (index 1) + 1
        classes = ["person", "car", "chair"]  # YOLO_META names
        (d,) = read_detections(dets[0], classes)
        assert d.class_name == "car" and abs((d.x0 + d.x1) / 2 - 64) < 1e-3
        assert dets[0].detections[0].id == "1", "the detection's instance value in ~/instances"
        infos = probe.collect(LabelInfo, "/seg/label_info", latched_qos())
        assert probe.spin_until(lambda: infos, 10), "LabelInfo is latched"
        assert label_map(infos[0]) == dict(enumerate(["background", *classes])), "what ~/labels ids mean"
        assert dets[0].header.stamp.sec == 7 and instances[0].header.stamp.sec == 7
        probe.close()


def test_relative_depth_without_a_metric_source_publishes_only_the_picture(tmp_path, rclpy_context):
    from diagnostic_msgs.msg import DiagnosticArray
    from sensor_msgs.msg import Image

    from perception_nodes.image_conversion import numpy_to_image
    from perception_nodes.launcher import StackProcesses
    from rosgraph import Probe, node_profile

    rel = np.linspace(0, 1, 32 * 48, dtype=np.float32).reshape(1, 32, 48)
    path = family_graph(tmp_path / "da.onnx", {"image": [1, 3, 32, 48]}, {"depth": rel})
    card = imported(tmp_path, path, family="relative-depth")
    prof = node_profile("depth", "depth_node", card, scale_source="model")
    with StackProcesses(prof, tmp_path / "logs") as stack:
        probe = Probe(rclpy_context)
        depth = probe.collect(Image, "/depth/depth")
        colored = probe.collect(Image, "/depth/depth_colored")
        diags = probe.collect(DiagnosticArray, "/diagnostics")
        pub = probe.publisher(Image, "/depth/in")
        assert pub is not None, stack.log_text("depth")
        assert probe.wait_for_publisher("/depth/depth_colored"), stack.log_text("depth")
        for sec in (1, 2):
            msg = numpy_to_image(np.zeros((64, 96, 3), np.uint8), "rgb8")
            msg.header.stamp.sec = sec
            pub.publish(msg)
        assert probe.spin_until(lambda: colored, 30), stack.log_text("depth")

        def said() -> bool:
            return any("no metric source" in v.value for a in diags for s in a.status for v in s.values)

        assert probe.spin_until(said, 10), stack.log_text("depth")
        assert not depth  # nothing metric without a source
        assert "no metric source" in stack.log_text("depth")
        probe.close()

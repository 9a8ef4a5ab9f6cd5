"""perception eval's scoring of a recording: outputs matched to the bag's ground truth by stamp,
metrics through the models package, latency from the recorder's receive times."""

from __future__ import annotations

from types import SimpleNamespace as D

import numpy as np
import pytest

from perception_nodes.bag_io import BagWriter
from perception_nodes.tools.evaluation import END_TO_END, evaluate_recording, latency

MS = 1_000_000


def _det(w: BagWriter, header, boxes, names=("car",)):
    """vision_msgs/Detection2DArray (rosbags types) of (name, score, cx, cy, w, h) boxes."""
    from perception_models.data.writers import vision_detection

    T = w.store.types
    nan = (float("nan"),) * 3
    dets = [
        vision_detection(
            T,
            header,
            D(x0=cx - sx / 2, y0=cy - sy / 2, x1=cx + sx / 2 - 1, y1=cy + sy / 2 - 1, instance=0),
            names.index(n),
            nan,
        )
        for n, score, cx, cy, sx, sy in boxes
    ]
    for d, (_n, score, *_rest) in zip(dets, boxes):
        d.results[0].hypothesis.score = score
    return T["vision_msgs/msg/Detection2DArray"](header=header, detections=dets)


def test_evaluate_recording_scores_outputs_against_ground_truth_and_times_them(tmp_path):
    stamps = [1_000_000_000, 1_100_000_000, 1_200_000_000]
    truth = np.full((4, 6), 10.0, np.float32)
    with BagWriter(tmp_path / "gt") as w:
        for s in stamps:
            h = w.header(s, "camera_optical_frame")
            w.write("/camera/image_raw", w.image(h, np.zeros((4, 6, 3), np.uint8), "rgb8"), s)
            w.write("/ground_truth/depth", w.image(h, truth, "32FC1"), s)
            w.write(
                "/ground_truth/detections", _det(w, h, [("car", 1.0, 30, 40, 20, 20), ("car", 1.0, 80, 40, 4, 4)]), s
            )
            if s == stamps[0]:  # what the ground truth's class ids mean
                classes = [w.store.types["vision_msgs/msg/VisionClass"](class_id=0, class_name="car")]
                info = w.store.types["vision_msgs/msg/LabelInfo"](header=h, class_map=classes, threshold=0.0)
                w.write("/ground_truth/label_info", info, s)
    with BagWriter(tmp_path / "rec") as w:
        for i, s in enumerate(stamps):
            h = w.header(s, "camera_optical_frame")
            t0 = 5_000 * MS + i * 100 * MS  # the recorder's clock
            # frame 1 reaches the recorder after its depth result (a big message, a busy recorder):
            # still timed, from its own receive time
            w.write(
                "/camera/image_raw", w.image(h, np.zeros((4, 6, 3), np.uint8), "rgb8"), t0 + (40 * MS if i == 1 else 0)
            )
            # depth 10 % too far on frame 0, exact after; the detector finds the big car (the
            # 4 px one is below the 16 px minimum height: ignored, not a miss)
            w.write("/n/depth", w.image(h, truth * (1.1 if i == 0 else 1.0), "32FC1"), t0 + 30 * MS)
            w.write("/n/detections", _det(w, h, [("car", 0.9, 30, 40, 20, 20)]), t0 + (50 + 10 * i) * MS)
    series: dict = {}
    r = evaluate_recording(
        tmp_path / "gt",
        tmp_path / "rec",
        {"depth": "/n/depth", "detections": "/n/detections"},
        series=series,
        detection_names=["car"],
    )
    d = r["metrics"]["depth"]
    assert d["images"] == 3 and abs(d["absolute"]["abs_rel"] - 0.1 / 3) < 1e-6 and d["median_scaled"]["abs_rel"] < 1e-6
    assert r["metrics"]["detection"]["mAP"] == 1.0
    lat = r["latency"]
    assert lat["/n/depth"]["results"] == 3 and sorted(np.round(series["latency"]["/n/depth"]["latency_ms"], 6)) == [
        -10.0,
        30.0,
        30.0,
    ]
    assert abs(lat["/n/detections"]["median_ms"] - 50.0) < 1e-6 and abs(lat["/n/detections"]["p99_ms"] - 69.6) < 1e-6
    assert abs(lat["/n/depth"]["fps"] - 10.0) < 1e-6
    # end to end: until the last output of each frame (the detections here)
    assert lat[END_TO_END]["results"] == 3 and abs(lat[END_TO_END]["median_ms"] - 50.0) < 1e-6
    # with the player's publish times (what `perception eval` passes) latency starts there instead
    published = {s: 5_000 * MS + i * 100 * MS - 5 * MS for i, s in enumerate(stamps)}
    lat = latency(tmp_path / "rec", "/camera/image_raw", ["/n/depth"], frame_published=published)
    assert abs(lat["/n/depth"]["median_ms"] - 35.0) < 1e-6 and lat["/n/depth"]["untimed"] == 0
    # an output without a matching input frame is not timed
    assert latency(tmp_path / "rec", "/camera/image_raw", ["/nothing"]) == {}


def test_ground_position_error_matches_same_class_boxes_and_measures_distance_along_the_ground():
    from perception_models.metrics import box_iou
    from perception_nodes.detection_conversion import Box
    from perception_nodes.tools.evaluation import _ground_position_errors

    def det(name, cx, x, z, valid=True):
        return Box(cx - 10.0, 30.0, cx + 10.0, 70.0, name, 1.0, (x, 1.5, z) if valid else None)

    gt = [det("person", 100, 0.0, 10.0), det("car", 300, 3.0, 4.0)]
    est = [
        det("person", 102, 0.0, 11.0),  # 10 % too far
        det("cone", 300, 3.0, 8.0),  # same place, other class: not matched
        det("car", 301, 0.0, 4.5),  # 5 m away along the ground in truth (3-4-5), 4.5 m estimated
        det("person", 500, 0.0, 1.0),
    ]  # nothing there
    r = _ground_position_errors([(gt, est), (gt, [det("car", 300, 3.0, 4.0, valid=False)])], box_iou)
    assert r["pairs"] == 2
    assert abs(r["median_relative_error"] - 0.1) < 1e-9 and abs(r["median_distance_error_m"] - 0.75) < 1e-9
    assert r["within_10_percent"] == 1.0
    assert _ground_position_errors([(gt, [])], box_iou) == {}


def test_perception_models_evaluate_scores_a_detector_on_coco_annotated_real_images(tmp_path):
    """`perception-models evaluate --coco ANN --images DIR` (the real-image path, e.g. VOC-100):
    the dataset's classes are matched to the card's by name, the others left out and listed."""
    import json

    import cv2

    from perception_models.cli import main
    from const_models import const_detector as _detector

    model, _card = _detector(tmp_path, [[100, 96, 200, 160]], [0.9], [1])  # one "car" at score 0.9
    images = tmp_path / "images"
    images.mkdir()
    for name in ("a.jpg", "b.jpg"):
        cv2.imwrite(str(images / name), np.zeros((384, 512, 3), np.uint8))  # the network's size: no letterbox
    ann = {
        "images": [
            {"id": 1, "file_name": "a.jpg", "width": 512, "height": 384},
            {"id": 2, "file_name": "b.jpg", "width": 512, "height": 384},
        ],
        "categories": [{"id": 7, "name": "car"}, {"id": 9, "name": "dog"}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 7, "bbox": [100, 96, 100, 64], "area": 6400, "iscrowd": 0},
            {"id": 2, "image_id": 1, "category_id": 9, "bbox": [300, 200, 50, 50], "area": 2500, "iscrowd": 0},
            {"id": 3, "image_id": 2, "category_id": 7, "bbox": [10, 10, 60, 60], "area": 3600, "iscrowd": 0},
        ],
    }
    (tmp_path / "ann.json").write_text(json.dumps(ann))
    out = tmp_path / "result.json"
    rc = main(
        [
            "evaluate",
            "--task",
            "detection",
            "--model",
            str(model),
            "--coco",
            str(tmp_path / "ann.json"),
            "--images",
            str(images),
            "--json",
            str(out),
        ]
    )
    assert rc == 0
    r = json.loads(out.read_text())
    assert r["class_mapping"] == {
        "matched": ["car"],
        "ignored_dataset_classes": ["dog"],
        "model_classes_without_data": ["cone", "person"],
    }
    # image a: the car is found exactly; image b: its car is missed and a false car is reported
    assert r["per_class"]["car"]["ground_truth"] == 2 and r["per_class"]["person"] is None
    assert r["per_class"]["car"]["AP50"] == pytest.approx(0.5, abs=0.01)
    assert r["mAP50"] == r["per_class"]["car"]["AP50"]

"""Training end to end on a tiny synthetic set: datasets follow the nodes' letterbox, the trainer
logs, validates, checkpoints, resumes, and gives the same losses for the same seed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from perception_models.data.synth import SynthConfig, SyntheticSequence
from perception_models.data.writers import write_sequence
from perception_models.train.data import MEAN, STD, Augment, DetectionDataset, SegmentationDataset
from perception_models.train.trainer import TrainConfig, load_checkpoint, plot_log, train

IN = (96, 128)


@pytest.fixture(scope="module")
def sets(tmp_path_factory):
    root = tmp_path_factory.mktemp("sets")
    out = []
    for name, preset, seed in (("train", "driving", 21), ("val", "driving", 22)):
        seq = SyntheticSequence(SynthConfig(preset=preset, seed=seed, frames=4, width=160, height=120))
        write_sequence(seq, root / name, flow=False, workers=1, progress=False)
        out.append(root / name)
    return out


def test_detection_dataset_letterboxes_boxes_like_the_nodes(sets):
    ds = DetectionDataset([sets[0]], IN)
    img, tgt = ds[0]
    assert img.shape == (3, *IN)
    s = ds.samples[0]
    # 160x120 -> 128x96 is a uniform 0.8 scale, no padding
    kept = [b for b in s.boxes if (b[2] - b[0]) * 0.8 >= 2 and (b[3] - b[1]) * 0.8 >= 2]
    np.testing.assert_allclose(tgt["boxes"].numpy(), np.array(kept).reshape(-1, 4) * 0.8, atol=1e-4)
    # pixels are normalised with the card's mean/std
    raw = s.read_rgb()
    assert torch.allclose(img[:, 0, 0], torch.from_numpy((raw[0, 0] / 255.0 - MEAN) / STD).float(), atol=0.05)


def test_augmented_flip_moves_boxes_with_the_image(sets):
    ds = DetectionDataset([sets[0]], (120, 160), augment=Augment(p_flip=1.0, p_zoom=0.0, brightness=0, contrast=0, saturation=0))
    plain = DetectionDataset([sets[0]], (120, 160))
    (img_f, t_f), (img_p, t_p) = ds[1], plain[1]
    assert torch.allclose(img_f, img_p.flip(-1), atol=1e-6)
    flipped = t_p["boxes"].clone()
    flipped[:, [0, 2]] = 160 - t_p["boxes"][:, [2, 0]]
    assert torch.allclose(t_f["boxes"], flipped)


def test_segmentation_dataset_pads_with_ignore(sets):
    ds = SegmentationDataset([sets[0]], (128, 128))  # 160x120 -> 128x96 + 16 px bands
    img, lab = ds[0]
    assert lab.shape == (128, 128) and (lab[:16] == 255).all() and (lab[-16:] == 255).all()
    assert (lab[16:-16] < 10).all()


def _cfg(task, sets, out, **kw):
    base = dict(task=task, data=[str(sets[0])], val=[str(sets[1])], out=str(out), epochs=2, batch_size=2,
                lr=1e-3, warmup_steps=2, input_size=IN, log_every=1)
    return TrainConfig(**{**base, **kw})


def test_detection_training_logs_checkpoints_and_resumes(sets, tmp_path):
    res = train(_cfg("detection", sets, tmp_path / "a", epochs=1), progress=False)
    assert set(res["metrics"]) >= {"mAP", "mAP50", "per_class"} and 0.0 <= res["metric"] <= 1.0
    assert (tmp_path / "a" / "last.pt").is_file() and (tmp_path / "a" / "best.pt").is_file()
    cfg2 = _cfg("detection", sets, tmp_path / "a", epochs=2)
    train(cfg2, resume=True, progress=False)
    rows = [json.loads(l) for l in (tmp_path / "a" / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows if r["kind"] == "val"] == [0, 1]
    steps = [r["step"] for r in rows if r["kind"] == "train"]
    assert steps == sorted(steps) and len(set(steps)) == len(steps)
    # the same two epochs without the interruption give the same losses
    train(_cfg("detection", sets, tmp_path / "b", epochs=2), progress=False)
    rows_b = [json.loads(l) for l in (tmp_path / "b" / "log.jsonl").read_text().splitlines()]
    la = [r["total"] for r in rows if r["kind"] == "train"]
    lb = [r["total"] for r in rows_b if r["kind"] == "train"]
    np.testing.assert_allclose(la, lb, rtol=1e-5)
    model, cfg, metrics = load_checkpoint(tmp_path / "a" / "last.pt")
    assert cfg.class_names == ["person", "car", "cone", "box", "barrel", "chair"] and "mAP" in metrics
    assert plot_log(tmp_path / "a").is_file()


def test_segmentation_training_and_cli(sets, tmp_path):
    proc = subprocess.run([sys.executable, "-m", "perception_models.cli", "train", "--task", "segmentation", "--data",
                           str(sets[0]), "--val", str(sets[1]), "--out", str(tmp_path / "seg"), "--epochs", "1",
                           "--batch-size", "2", "--input-size", *map(str, IN)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    val = [json.loads(l) for l in (tmp_path / "seg" / "log.jsonl").read_text().splitlines() if '"val"' in l][0]
    assert 0.0 <= val["mIoU"] <= 1.0 and len(val["per_class_iou"]) == 10
    bad = subprocess.run([sys.executable, "-m", "perception_models.cli", "train", "--task", "segmentation", "--data",
                          str(tmp_path / "nothing"), "--val", str(sets[1]), "--out", str(tmp_path / "x")],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "no image/label pairs" in bad.stderr


def test_camvid_layout_when_present():
    from perception_models.data.readers.labels import CAMVID_LUT

    root = (Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "camvid").resolve()
    if not root.is_dir():
        pytest.skip(f"{root} not present (real data lives in ../shared/data on dev machines only)")
    train_set = SegmentationDataset([root], (360, 480), image_dir="train", label_dir="trainannot", lut=CAMVID_LUT)
    val_set = SegmentationDataset([root], (360, 480), image_dir="val", label_dir="valannot", lut=CAMVID_LUT)
    assert (len(train_set), len(val_set)) == (367, 101)
    img, lab = val_set[0]
    values = set(torch.unique(lab).tolist())
    assert img.shape == (3, 360, 480) and values <= set(range(11)) | {255} and len(values) > 5


def test_export_writes_a_checked_model_with_its_card_and_the_node_pipeline_evaluates_it(sets, tmp_path):
    from perception_models.evaluate import evaluate_detection, evaluate_segmentation
    from perception_models.export import export_model, trt_report
    from perception_nodes.model_card import load_card

    for task in ("detection", "segmentation"):
        run = tmp_path / task
        train(_cfg(task, sets, run, epochs=1), progress=False)
        onnx_path = tmp_path / f"{task}.onnx"
        card = export_model(task, run / "best.pt", onnx_path, [str(sets[1])], eval_limit=2, reproduce=False)
        loaded = load_card(onnx_path, task)  # sha256 matches, task right
        assert loaded.input_height == IN[0] and loaded.input_width == IN[1] and loaded.mean == pytest.approx(list(MEAN))
        report = trt_report(onnx_path)
        assert not report["trt_unfriendly"] and not report["dynamic_io"] and not report["int64_outputs"]
        assert card["export"]["onnxruntime_vs_torch"] and not list(tmp_path.glob("*.onnx.data"))
        if task == "detection":
            assert loaded.classes == ["person", "car", "cone", "box", "barrel", "chair"]
            again = evaluate_detection(onnx_path, [sets[1]], limit=2)
            assert again["mAP"] == pytest.approx(card["metrics"]["mAP"]) and "ignored" in again["protocol"]
        else:
            assert len(loaded.colors) == 10
            again = evaluate_segmentation(onnx_path, [sets[1]], limit=2)
            assert again["mIoU"] == pytest.approx(card["metrics"]["mIoU"]) and again["images"] == 2


def test_median_frequency_weights_favour_rare_classes(sets):
    from perception_models.train.trainer import median_frequency_weights

    ds = SegmentationDataset([sets[0]], IN)
    w = median_frequency_weights(ds, 10)
    assert w.shape == (10,) and torch.isfinite(w).all() and (w >= 0).all()
    # ground covers far more of each image it appears in than any object does
    present = [c for c in range(4, 10) if w[c] > 0]
    assert present and all(w[c] > w[1] for c in present)

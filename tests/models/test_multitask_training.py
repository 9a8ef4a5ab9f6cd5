"""Joint training of the multi-task network in the one loop: one augmentation for every task,
the keypoint head distilled from a teacher, fixed or learned (uncertainty) task weights."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from perception_models.data.synth import SynthConfig, SyntheticSequence
from perception_models.data.writers import write_sequence
from perception_models.train.data import Augment
from perception_models.train.multitask_task import (
    MultiTaskFrames,
    MultiTaskTrainConfig,
    keypoint_distillation,
    train_multitask,
)

pytestmark = pytest.mark.train
ROOT = Path(__file__).resolve().parents[2]
IN = (96, 128)


@pytest.fixture(scope="module")
def sets(tmp_path_factory):
    root = tmp_path_factory.mktemp("mt")
    out = []
    for name, seed in (("train", 31), ("val", 32)):
        seq = SyntheticSequence(SynthConfig(preset="driving", seed=seed, frames=3, width=160, height=120))
        write_sequence(seq, root / name, flow=False, workers=1, progress=False)
        out.append(root / name)
    return out


def test_every_task_sees_the_same_augmented_frame(sets):
    frames = MultiTaskFrames([sets[0]], IN, Augment(p_flip=1.0, p_zoom=0.0), seed=5)
    frames.set_epoch(2)
    for i in range(len(frames)):
        image, t = frames[i]
        seg_image, labels = frames.seg[i]
        assert torch.equal(image, seg_image), "detection and segmentation drew the same crop, flip and colour"
        depth = t["depth"][0]
        # padding rows of the letterbox (160x120 -> 128x96: none) and ignored labels agree with depth
        assert depth.shape == labels.shape and torch.isfinite(depth[labels != 255]).float().mean() > 0.5
    # at the frames' own size (no resampling) a flip is exact: depth and labels flipped with the image
    frames = MultiTaskFrames([sets[0]], (120, 160), Augment(p_flip=1.0, p_zoom=0.0), seed=5)
    plain = MultiTaskFrames([sets[0]], (120, 160), None, seed=5)
    assert torch.equal(plain[0][1]["depth"].nan_to_num(-1).flip(-1), frames[0][1]["depth"].nan_to_num(-1))
    assert torch.equal(plain[0][1]["labels"].flip(-1), frames[0][1]["labels"])
    # the focal length in network pixels (the depth's canonical-camera factor): the letterbox's scale
    k = yaml.safe_load((sets[0] / "camera_info.yaml").read_text())["camera_matrix"]["data"]
    small = MultiTaskFrames([sets[0]], IN, None, seed=5)
    assert small[0][1]["focal"] == pytest.approx(np.sqrt(k[0] * k[4]) * 128 / 160)


def test_keypoint_distillation_is_zero_for_the_teacher_itself_and_positive_otherwise():
    torch.manual_seed(0)
    logits = torch.randn(2, 65, 4, 5)
    desc = torch.nn.functional.normalize(torch.randn(2, 8, 4, 5), dim=1)
    same = keypoint_distillation((logits, desc), (logits, desc))
    entropy = -(torch.softmax(logits, 1) * torch.log_softmax(logits, 1)).sum(1).mean()
    assert torch.allclose(same, entropy, atol=1e-5), "cross-entropy to itself is its entropy; descriptors agree"
    other = keypoint_distillation((torch.randn(2, 65, 4, 5), -desc), (logits, desc))
    assert other > same + 1.0


@pytest.mark.parametrize("weighting", ["uncertainty", "fixed"])
def test_joint_training_logs_every_task_validates_and_resumes(sets, tmp_path, weighting):
    cfg = MultiTaskTrainConfig(
        data=[str(sets[0])],
        val=[str(sets[1])],
        out=str(tmp_path / weighting),
        epochs=1,
        batch_size=2,
        input_size=IN,
        weighting=weighting,
        teacher=str(ROOT / "models" / "matching.onnx"),
        log_every=1,
        warmup_steps=2,
    )
    r = train_multitask(cfg, progress=False)
    m = r["metrics"]
    assert {"mAP", "mIoU", "abs_rel", "metric"} <= set(m) and 0 <= m["metric"] <= 1
    rows = [json.loads(x) for x in (tmp_path / weighting / "log.jsonl").read_text().splitlines()]
    train_rows = [x for x in rows if x["kind"] == "train"]
    assert train_rows and all({"detection", "segmentation", "depth", "keypoints"} <= set(x) for x in train_rows)
    ck = torch.load(tmp_path / weighting / "last.pt", map_location="cpu", weights_only=True)
    assert ("weighting" in ck) == (weighting == "uncertainty")
    if weighting == "uncertainty":
        assert set(m["log_vars"]) == {"detection", "segmentation", "depth", "keypoints"}
        assert any(v != 0.0 for v in m["log_vars"].values()), "the task weights learned"
    cfg.epochs = 2
    assert train_multitask(cfg, resume=True, progress=False)["epoch"] == 1
    if weighting == "fixed":  # the export of a trained checkpoint (a test of its own would train again)
        _export_and_serve(tmp_path / weighting / "last.pt", sets[1], tmp_path)


def _export_and_serve(checkpoint, held_out, tmp_path):
    """The checkpoint -> one ONNX with one card (a section per task, each with its metrics) that
    the node's MultiTaskPipeline runs and the evaluation scores as four single-task models."""

    from perception_models.evaluate import evaluate_detection
    from perception_models.export import export
    from perception_nodes.backends import OnnxRuntimeBackend
    from perception_nodes.model_card import load_card
    from perception_nodes.pipelines.multitask import MultiTaskPipeline

    out = tmp_path / "multitask.onnx"
    card = export("multitask", checkpoint, out, eval_data=[str(held_out)])
    assert card["task"] == "multitask" and set(card["tasks"]) == {"detection", "segmentation", "depth", "matching"}
    assert card["tasks"]["detection"]["classes"] == ["person", "car", "cone", "box", "barrel", "chair"]
    assert card["tasks"]["depth"]["canonical_focal"] == 305.0
    for task, key in (("detection", "mAP"), ("segmentation", "mIoU"), ("depth", "absolute"), ("matching", "pose_auc")):
        assert key in card["tasks"][task]["metrics"], task
    assert set(card["reproduction"]) >= {"mAP", "mIoU", "abs_rel"}
    assert yaml.safe_load(out.with_name("multitask.card.yaml").read_text())["sha256"] == card["sha256"]
    pipe = MultiTaskPipeline(OnnxRuntimeBackend(out, threads=1), load_card(out))
    r = pipe.run(np.zeros((120, 160, 3), np.uint8), K=np.diag([100.0, 100.0, 1.0]))
    assert r.segmentation.labels.shape == (120, 160) and r.depth.depth.shape == (120, 160)
    assert r.depth.focal_factor == pytest.approx(100.0 * 0.8 / 305.0)
    again = evaluate_detection(out, [str(held_out)])
    assert again["mAP"] == pytest.approx(card["tasks"]["detection"]["metrics"]["mAP"])


def test_training_can_start_from_the_shipped_single_task_models(sets):
    """--adopt-shipped: the shipped detector's backbone and head (and the segmenter's and depth
    model's heads) go into the network; after BatchNorm calibration the detection branch still
    computes the shipped detector's function."""
    from perception_models.models.detection import Detector, DetectorConfig
    from perception_models.onnx_weights import load_onnx_weights
    from perception_models.train.multitask_task import MultiTaskTask

    models = ROOT / "models"
    cfg = MultiTaskTrainConfig(
        data=[str(sets[0])],
        input_size=IN,
        attention=False,
        teacher="",
        batch_size=2,
        adopt_detection=str(models / "detection.onnx"),
        adopt_segmentation=str(models / "segmentation.onnx"),
        adopt_depth=str(models / "depth.onnx"),
    )
    task = MultiTaskTask(cfg)
    task.build(torch.device("cpu"), 1)  # rank 1: quiet
    det = Detector(DetectorConfig(num_classes=6, input_size=IN))
    load_onnx_weights(det, models / "detection.onnx")
    x = torch.randn(1, 3, *IN)
    task.net.eval()
    det.eval()
    with torch.no_grad():
        for a, b in zip(task.net(x)["detection"], det(x)):
            torch.testing.assert_close(a, b, atol=1e-3, rtol=1e-3)


def test_training_can_continue_from_the_exported_multitask_model(sets):
    """--init models/multitask.onnx (its checkpoint is gone): every exported convolution comes back,
    and after BatchNorm calibration the network computes the exported graph's outputs."""
    import onnxruntime as ort

    from perception_models.models.multitask import MultiTaskExport
    from perception_models.train.multitask_task import MultiTaskTask

    shipped = ROOT / "models" / "multitask.onnx"
    cfg = MultiTaskTrainConfig(
        data=[str(sets[0])],
        input_size=(384, 512),
        teacher=str(ROOT / "models" / "matching.onnx"),
        batch_size=2,
        init=str(shipped),
    )
    task = MultiTaskTask(cfg)
    task.build(torch.device("cpu"), 1)
    line = task.initialise(torch.device("cpu"), 1)
    # the coarser depth heads are not exported: the line names them
    assert "initialised from" in line and "depth_decoder.heads.3" in line, line
    x = torch.from_numpy(np.random.default_rng(0).normal(0, 1, (1, 3, 384, 512)).astype(np.float32))
    with torch.no_grad():
        ours = MultiTaskExport(task.net.eval()).eval()(x)
        names = MultiTaskExport(task.net).output_names()
    sess = ort.InferenceSession(str(shipped), providers=["CPUExecutionProvider"])
    theirs = dict(zip(names, sess.run(names, {sess.get_inputs()[0].name: x.numpy()})))
    got = dict(zip(names, (t.numpy() for t in ours)))
    assert (got["seg_labels"] == theirs["seg_labels"]).mean() > 0.999
    np.testing.assert_allclose(got["depth"], theirs["depth"], rtol=1e-3)
    np.testing.assert_allclose(np.sort(got["scores"]), np.sort(theirs["scores"]), atol=1e-4)
    np.testing.assert_allclose(got["descriptors"], theirs["descriptors"], atol=1e-4)


def _from_shipped(sets, out, **kw) -> dict:
    """Config fields of a short run from the shipped multi-task model on the fixture's sets."""
    return dict(
        data=[str(sets[0])],
        val=[str(sets[1])],
        out=str(out),
        input_size=IN,
        teacher=str(ROOT / "models" / "matching.onnx"),
        batch_size=2,
        epochs=1,
        init=str(ROOT / "models" / "multitask.onnx"),
        **kw,
    )


def test_light_heads_start_from_the_full_model_train_and_come_back_from_the_checkpoint(sets, tmp_path):
    """--head-rank 2 --init models/multitask.onnx: the shipped full heads become SVD-started,
    refitted separable pairs that still compute nearly what the full network does; the trained
    checkpoint rebuilds the light network; --init refuses heads of another rank."""
    from perception_models.models.multitask import MultiTaskConfig, MultiTaskNet
    from perception_models.models.separable import SeparableConv
    from perception_models.onnx_weights import load_onnx_weights
    from perception_models.train.multitask_task import MultiTaskTask, load_multitask_checkpoint

    shipped = ROOT / "models" / "multitask.onnx"
    cfg = MultiTaskTrainConfig(**_from_shipped(sets, tmp_path / "light", max_steps_per_epoch=1, head_rank=2))
    task = MultiTaskTask(cfg)
    task.build(torch.device("cpu"), 1)
    line = task.initialise(torch.device("cpu"), 1)
    assert "light heads: 23 convolutions as rank-2" in line, line
    before, after = (float(v) for v in line.split("mean relative error of a layer's output ")[1][:14].split(" -> "))
    assert after < before, line
    full = MultiTaskNet(MultiTaskConfig(input_size=IN, canonical_focal=305.0))
    load_onnx_weights(full, shipped, strict=False)
    x = MultiTaskFrames([sets[1]], IN, None, 0)[0][0][None]
    with torch.no_grad():
        a, b = task.net.eval()(x), full.eval()(x)
    agree = (a["segmentation"].argmax(1) == b["segmentation"].argmax(1)).float().mean()
    assert agree > 0.7, float(agree)  # a 96x128 input: far from the size the heads learned
    da, db = a["depth"][min(a["depth"])], b["depth"][min(b["depth"])]
    assert float((da - db).norm() / db.norm()) < 0.2

    train_multitask(cfg, progress=False)
    net, saved, _ = load_multitask_checkpoint(tmp_path / "light" / "last.pt")
    assert saved.head_rank == 2 and net.cfg.head_rank == 2
    assert sum(isinstance(m, SeparableConv) for m in net.modules()) == 23
    other = MultiTaskTask(MultiTaskTrainConfig(**{**cfg.__dict__, "init": str(tmp_path / "light" / "last.pt")}))
    other.cfg.head_rank = 3
    other.build(torch.device("cpu"), 1)
    with pytest.raises(ValueError, match=r"heads of rank 2 \(detection 2\), this run has 3 \(detection 3\)"):
        other.initialise(torch.device("cpu"), 1)


def test_keep_terms_hold_every_head_to_the_full_network(sets, tmp_path):
    """--keep W: the terms vanish for the network the keeper is (its own function kept), are positive for
    light heads derived from it, and teach only the student (the keeper stays frozen); a short run logs
    the keep term; --keep without a model to keep is refused."""
    from perception_models.train.multitask_task import MultiTaskTask

    base = _from_shipped(sets, tmp_path / "keep", max_steps_per_epoch=2, log_every=1, keep=1.0)
    x = torch.stack([MultiTaskFrames([sets[1]], IN, None, 0)[i][0] for i in range(2)])
    terms = {}
    for rank in (0, 2):
        task = MultiTaskTask(MultiTaskTrainConfig(**base, head_rank=rank))
        task.build(torch.device("cpu"), 1)
        task.initialise(torch.device("cpu"), 1)
        assert not any(p.requires_grad for p in task.keeper.parameters())
        task.net.eval()
        live = task.keep_terms(task.net(x), x)
        terms[rank] = {k: v.detach() for k, v in live.items()}
        if rank == 2:
            sum(live.values()).backward()
            assert all(p.grad is None for p in task.keeper.parameters()), "the keeper is not trained"
            grads = [p.grad for n, p in task.net.named_parameters() if ".pointwise." in n]
            assert grads and all(g is not None for g in grads), "every light layer learns from the term"
    kept = task.keeper(x)["keypoints"]
    entropy = keypoint_distillation(kept, kept)  # the keypoint term's floor: the keeper's own entropy
    assert set(terms[0]) == {"detection", "segmentation", "depth", "keypoints"}
    for name in ("detection", "segmentation", "depth"):
        assert float(terms[0][name]) < 1e-5, (name, float(terms[0][name]))
        assert float(terms[2][name]) > 10 * max(float(terms[0][name]), 1e-6), name
    assert float(terms[0]["keypoints"]) == pytest.approx(float(entropy), abs=1e-4)
    assert float(terms[2]["keypoints"]) > float(entropy)

    train_multitask(MultiTaskTrainConfig(**base, head_rank=2, weighting="fixed"), progress=False)
    rows = [json.loads(r) for r in (tmp_path / "keep" / "log.jsonl").read_text().splitlines()]
    keep = [r["keep"] for r in rows if r["kind"] == "train"]
    assert keep and all(k > 0 for k in keep), keep
    with pytest.raises(ValueError, match="--keep needs --keep-from or --init"):
        MultiTaskTask(MultiTaskTrainConfig(**{**base, "init": ""})).check()


def test_single_task_teachers_teach_their_heads(sets, tmp_path, capsys):
    """--task-teacher detection=... segmentation=...: each frozen single-task model teaches its head of
    the multi-task network on the same frames. A head that computes its teacher's function has nothing
    to learn (detection adopted from the detector it is taught by: term ~0); one that reads another
    backbone's features does (segmentation: positive), and only the student learns; a short run logs the
    term; a task no single-task model teaches, a missing model and a malformed item are refused."""
    from perception_models.cli import main
    from perception_models.train.multitask_task import MultiTaskTask

    models = ROOT / "models"
    teachers = {"detection": str(models / "detection.onnx"), "segmentation": str(models / "segmentation.onnx")}
    base = dict(data=[str(sets[0])], val=[str(sets[1])], out=str(tmp_path / "taught"), input_size=IN,
                attention=False, teacher="", batch_size=2, epochs=1, max_steps_per_epoch=2, log_every=1,
                task_teachers=teachers)  # fmt: skip
    task = MultiTaskTask(MultiTaskTrainConfig(**base, adopt_detection=teachers["detection"]))
    task.check()
    task.build(torch.device("cpu"), 1)
    assert all(not p.requires_grad for t in task.task_teachers.values() for p in t.parameters())
    x = torch.stack([MultiTaskFrames([sets[1]], IN, None, 0)[i][0] for i in range(2)])
    task.net.eval()
    terms = task.teacher_terms(task.net(x), x)
    got = {k: float(v.detach()) for k, v in terms.items()}
    assert set(got) == {"detection", "segmentation"}
    assert got["detection"] < 1e-4, got  # its own teacher's function
    assert got["segmentation"] > 1e-2, got  # another backbone's features
    terms["segmentation"].backward()
    assert all(p.grad is None for t in task.task_teachers.values() for p in t.parameters()), "teachers stay frozen"
    assert all(p.grad is not None for p in task.net.seg_head.parameters()), "the taught head learns"

    train_multitask(MultiTaskTrainConfig(**base), progress=False)
    rows = [json.loads(r) for r in (tmp_path / "taught" / "log.jsonl").read_text().splitlines()]
    taught = [r["taught"] for r in rows if r["kind"] == "train"]
    assert taught and all(t > 0 for t in taught), taught
    config = torch.load(tmp_path / "taught" / "last.pt", map_location="cpu", weights_only=False)["config"]
    assert config["task_teachers"] == teachers  # what the exported card's training block names
    with pytest.raises(ValueError, match="a single-task teacher teaches one of"):
        MultiTaskTask(MultiTaskTrainConfig(**{**base, "task_teachers": {"depth": teachers["detection"]}})).check()
    with pytest.raises(ValueError, match="no such model"):
        MultiTaskTask(
            MultiTaskTrainConfig(**{**base, "task_teachers": {"detection": str(tmp_path / "x.onnx")}})
        ).check()
    argv = ["train", "--task", "multitask", "--data", str(sets[0]), "--out", str(tmp_path / "bad")]
    assert main([*argv, "--task-teacher", "models/detection.onnx"]) == 2
    assert "expected TASK=MODEL" in capsys.readouterr().err
    assert main([*argv, "--task-teacher", "detection=a.onnx", "--task-teacher", "detection=b.onnx"]) == 2
    assert "detection is given twice" in capsys.readouterr().err

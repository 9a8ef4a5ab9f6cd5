"""Export a trained checkpoint to ONNX with its model card, and check the result.

    perception-models export --task detection --checkpoint runs/det/best.pt --out models/detection.onnx \\
        --eval data/synth/driving_0900 data/synth/indoor_0950

Checks (all recorded in the card): ``onnx.checker``; ONNX Runtime against torch on the same
inputs (tolerances below); static input/output shapes; no operators TensorRT handles badly or
not at all; then the node pipeline's metric on the evaluation sets. The TensorRT engine itself is
built from this ONNX by the nodes' backend (``perception build-engine``).
"""

from __future__ import annotations

import datetime
import hashlib
import json
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from .train.data import MEAN, STD
from .train.image_task import load_checkpoint

# ONNX Runtime vs torch (float32 CPU): differences come from kernel summation order only
TOLERANCE = {"scores": 1e-4, "boxes_px": 0.05, "seg_confidence": 1e-3, "seg_label_agreement": 0.999}
# operators TensorRT does not support, or only through plugins / slow paths
TRT_UNFRIENDLY = {
    "Loop",
    "If",
    "Scan",
    "NonZero",
    "Unique",
    "SequenceConstruct",
    "SequenceAt",
    "SequenceInsert",
    "ConcatFromSequence",
    "SplitToSequence",
    "StringNormalizer",
    "RandomNormal",
    "RandomUniform",
    "Multinomial",
    "NonMaxSuppression",
}


class ExportError(RuntimeError):
    pass


def trt_report(path: Path) -> dict[str, Any]:
    import onnx

    model = onnx.load(str(path))
    ops = sorted({n.op_type for n in model.graph.node})
    bad = sorted(set(ops) & TRT_UNFRIENDLY)

    def dims(v):
        return [d.dim_value if d.HasField("dim_value") else -1 for d in v.type.tensor_type.shape.dim]

    io = {v.name: dims(v) for v in list(model.graph.input) + list(model.graph.output)}
    dynamic = [k for k, d in io.items() if any(x <= 0 for x in d)]
    int64_outputs = [o.name for o in model.graph.output if o.type.tensor_type.elem_type == onnx.TensorProto.INT64]
    return {
        "operators": ops,
        "trt_unfriendly": bad,
        "dynamic_io": dynamic,
        "io_shapes": io,
        "int64_outputs": int64_outputs,
        "opset": max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")),
    }


def _git_commit() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            cwd=Path(__file__).parent,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def _export_onnx(
    module: torch.nn.Module,
    inputs: tuple[torch.Tensor, ...],
    out: Path,
    input_names: list[str],
    output_names: list[str],
) -> dict[str, Any]:
    import onnx

    out.parent.mkdir(parents=True, exist_ok=True)
    torch.onnx.export(module, inputs, str(out), input_names=input_names, output_names=output_names, dynamo=True)
    # the dynamo exporter may keep weights in a side file; fold them into the one .onnx we ship
    proto = onnx.load(str(out), load_external_data=True)
    onnx.save(proto, str(out), save_as_external_data=False)
    for extra in out.parent.glob(out.name + ".data"):
        extra.unlink()
    onnx.checker.check_model(str(out))
    report = trt_report(out)
    if report["trt_unfriendly"] or report["dynamic_io"]:
        raise ExportError(
            f"{out}: not TensorRT-ready: operators {report['trt_unfriendly']}, dynamic {report['dynamic_io']}"
        )
    return report


def card_input(h: int, w: int, resize: str, name: str = "image", **extra: Any) -> dict[str, Any]:
    """The card's ``input`` block: what the node's preprocessing must do to a camera image."""
    return {
        "name": name,
        "height": h,
        "width": w,
        "layout": "NCHW RGB float32",
        "mean": [float(v) for v in MEAN],
        "std": [float(v) for v in STD],
        "scale": "1/255 before mean/std",
        "resize": resize,
        **extra,
    }


def file_facts(path: Path) -> dict[str, Any]:
    """sha256 (the node refuses a card that is not its model's) and size of an exported file."""
    return {"sha256": hashlib.sha256(path.read_bytes()).hexdigest(), "size_bytes": path.stat().st_size}


def export_record(report: dict[str, Any], diffs: dict[str, float], tolerance: dict[str, float]) -> dict[str, Any]:
    """The card's ``export`` block: when, from which commit, opset, operators, ONNX Runtime vs torch."""
    return {
        "date": datetime.date.today().isoformat(),
        "git_commit": _git_commit(),
        "opset": report["opset"],
        "onnxruntime_vs_torch": diffs,
        "tolerance": tolerance,
        "operators": report["operators"],
    }


def write_card(out: Path, card: dict[str, Any]) -> None:
    from perception_nodes.model_card import card_path

    card_path(out).write_text(yaml.safe_dump(card, sort_keys=False))


def reproduction_record(measured: dict[str, Any], note: str = "") -> dict[str, Any]:
    """The card's ``reproduction`` block: the metric on the fixed re-rendered scenes
    (``evaluate.reproduction_sets``) that ``tests/models/test_shipped_models.py`` checks again."""
    from .evaluate import REPRODUCTION

    return {
        "sets": list(REPRODUCTION),
        "note": "perception_models.evaluate.reproduction_sets" + (f": {note}" if note else ""),
        **measured,
    }


def export(task: str, checkpoint: Path | str, out: Path | str, **options: Any) -> dict[str, Any]:
    """The one entry point: the task registry (``perception_nodes.tasks``) names each task's
    exporter; ``options`` are the ones that exporter takes (eval_data, eval_limit, pose_out,
    calibrate, eval_photos). Returns the card."""
    import inspect

    from perception_nodes.tasks import TRAINABLE, task as registry

    if task not in TRAINABLE:
        raise ExportError(f"task '{task}' has no exporter of its own; one of {TRAINABLE}")
    fn = globals()[registry(task).exporter]
    accepted = inspect.signature(fn).parameters
    unknown = sorted(k for k, v in options.items() if k not in accepted and v not in (None, [], 0))
    if unknown:
        raise ExportError(f"--task {task} does not take {', '.join('--' + k.replace('_', '-') for k in unknown)}")
    kwargs = {k: v for k, v in options.items() if k in accepted}
    return fn(task, checkpoint, out, **kwargs) if "task" in accepted else fn(checkpoint, out, **kwargs)


def export_model(
    task: str,
    checkpoint: Path | str,
    out: Path | str,
    eval_data: list[str] | None = None,
    eval_limit: int = 0,
    extra_card: dict | None = None,
    reproduce: bool = True,
) -> dict[str, Any]:
    """Detector or segmenter -> ``out`` (.onnx) and ``out``'s card; return the card."""
    from .models.detection import DetectorWithPostprocess
    from .models.segmentation import SegmenterWithPostprocess

    model, cfg, train_metrics = load_checkpoint(checkpoint)
    if cfg.task != task:
        raise ExportError(f"{checkpoint} is a {cfg.task} checkpoint, not {task}")
    h, w = cfg.input_size
    wrapper = (DetectorWithPostprocess(model) if task == "detection" else SegmenterWithPostprocess(model)).eval()
    names = ["boxes", "scores", "labels"] if task == "detection" else ["labels", "confidence"]
    out = Path(out)
    report = _export_onnx(wrapper, (torch.zeros(1, 3, h, w),), out, ["image"], names)
    diffs = _compare(task, wrapper, out, h, w, eval_data)

    from .data.synth.scene import PALETTE

    card: dict[str, Any] = {
        "task": task,
        "classes": list(cfg.class_names),
        "input": card_input(h, w, "letterbox", pad_value=114),
        "outputs": (
            {
                "boxes": "(1, 100, 4) float32 x0 y0 x1 y1 in network-input pixels",
                "scores": "(1, 100) float32, 0 for empty rows",
                "labels": "(1, 100) int32 class index, -1 for empty rows",
            }
            if task == "detection"
            else {
                "labels": f"(1, {h}, {w}) int32 class index",
                "confidence": f"(1, {h}, {w}) float32 softmax probability",
            }
        ),
        **file_facts(out),
        "training": {
            "data": cfg.data,
            "val": cfg.val,
            "epochs": cfg.epochs,
            "batch_size": cfg.batch_size,
            "lr": cfg.lr,
            "input_size": [h, w],
            "seed": cfg.seed,
            "loss": cfg.loss if task == "detection" else "pixel cross-entropy",
            "camvid": cfg.camvid,
            "checkpoint": str(checkpoint),
            "init": cfg.init,
            "architecture": cfg.architecture if task == "detection" else "segmenter",
            "backbone_blocks": list(cfg.backbone_blocks or type(model.backbone).default_conf["blocks"]),
            "validation_metric_at_checkpoint": float(train_metrics.get("metric", float("nan"))),
        },
        "export": export_record(report, diffs, TOLERANCE),
    }
    if cfg.real_labels:  # real labelled frames: their licence travels with the weights
        card["training"]["real_labels"] = {
            "roots": list(cfg.real_labels),
            "class_map": cfg.real_class_map,
            "repeat": cfg.real_repeat,
        }
    if cfg.keep > 0:  # learning without forgetting (losses.pixel/detection_distillation)
        card["training"]["keep"] = {"weight": cfg.keep, "model": cfg.keep_from or cfg.init}
    if task == "segmentation" and not cfg.camvid:
        card["colors"] = PALETTE[: len(cfg.class_names)].tolist()
    distilled = Path(checkpoint).parent / "distillation.json"
    if distilled.is_file():  # perception-models distill: the teacher, the footage, the pseudo-labels
        card["distillation"] = json.loads(distilled.read_text())
    card.update(extra_card or {})
    write_card(out, card)  # the pipelines below read it

    from .evaluate import REPRODUCTION_TOLERANCE, evaluate_detection, evaluate_segmentation, reproduction_sets

    def measure(data: list, limit: int = 0) -> dict:
        m = evaluate_detection(out, data, limit) if task == "detection" else evaluate_segmentation(out, data, limit)
        return json.loads(json.dumps(m))

    if eval_data:
        card["metrics"] = {
            "eval_data": [str(d) for d in eval_data],
            "eval_limit": eval_limit,
            **measure(eval_data, eval_limit),
        }
    if reproduce and not cfg.camvid:
        rep = measure(reproduction_sets())
        key = "mAP" if task == "detection" else "mIoU"
        extra = {"mAP50": rep["mAP50"]} if task == "detection" else {}
        card["reproduction"] = reproduction_record({key: rep[key], **extra, "tolerance": REPRODUCTION_TOLERANCE})
    write_card(out, card)
    return card


def _compare(
    task: str, wrapper: torch.nn.Module, path: Path, h: int, w: int, eval_data: list[str] | None
) -> dict[str, float]:
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    inputs = [rng.normal(0, 1, (1, 3, h, w)).astype(np.float32) for _ in range(2)]
    if eval_data:
        from perception_nodes.pipelines.preprocess import fit_image, to_nchw

        from .data.readers.common import read_rgb

        for img in sorted((Path(eval_data[0]) / "rgb").glob("*.png"))[:2]:
            net, _ = fit_image(read_rgb(img), w, h, "letterbox")
            inputs.append(to_nchw(net, MEAN, STD))
    worst: dict[str, float] = {}
    with torch.no_grad():
        for x in inputs:
            ref = [t.numpy() for t in wrapper(torch.from_numpy(x))]
            got = sess.run(None, {"image": x})
            if task == "detection":
                rb, rs, rl = ref
                gb, gs, gl = got
                d = {
                    "scores": float(np.abs(gs - rs).max()),
                    "boxes_px": _box_gap(rb, rs, rl, gb, gs, gl),
                    "label_mismatch": float((gl != rl)[rs > 0.05].mean()) if (rs > 0.05).any() else 0.0,
                }
                ok = d["scores"] <= TOLERANCE["scores"] and d["boxes_px"] <= TOLERANCE["boxes_px"]
            else:
                d = {
                    "seg_confidence": float(np.abs(got[1] - ref[1]).max()),
                    "seg_label_agreement": float((got[0] == ref[0]).mean()),
                }
                ok = (
                    d["seg_confidence"] <= TOLERANCE["seg_confidence"]
                    and d["seg_label_agreement"] >= TOLERANCE["seg_label_agreement"]
                )
            if not ok:
                raise ExportError(
                    f"{path}: ONNX Runtime differs from torch beyond tolerance: {d} (tolerance {TOLERANCE})"
                )
            for k, v in d.items():
                worst[k] = min(worst.get(k, 1.0), v) if k == "seg_label_agreement" else max(worst.get(k, 0.0), v)
    return worst


def _box_gap(rb: np.ndarray, rs: np.ndarray, rl: np.ndarray, gb: np.ndarray, gs: np.ndarray, gl: np.ndarray) -> float:
    """Worst box difference (px) between torch and ONNX Runtime detections, insensitive to the
    order of tied scores: an untrained or saturated head gives many boxes the same score and the
    two runtimes may rank them differently, so each reference box is matched to the closest
    box of the same label among those with the same score (within the score tolerance). When the
    output is full, the boxes tied with the last kept score are left out: which of them made the
    cut is a tie-break, not a difference."""
    rb, rs, rl = rb.reshape(-1, 4), rs.reshape(-1), rl.reshape(-1)
    gb, gs, gl = gb.reshape(-1, 4), gs.reshape(-1), gl.reshape(-1)
    keep = rs > 0.05
    if keep.all():
        keep &= rs > rs.min() + TOLERANCE["scores"]
    worst = 0.0
    for box, score, label in zip(rb[keep], rs[keep], rl[keep], strict=True):
        peers = (np.abs(gs - score) <= TOLERANCE["scores"]) & (gl == label)
        gap = float(np.abs(gb[peers] - box).max(axis=1).min()) if peers.any() else float("inf")
        worst = max(worst, gap)
    return worst


DEPTH_TOLERANCE = {"depth_rel": 1e-3, "pose_abs": 1e-4}


def calibrate_depth_scale(
    depth_net: Any, input_size: tuple[int, int], folders: list[str], every: int = 4
) -> dict[str, Any]:
    """Median over frames of median(ground truth / prediction): the factor that makes a depth
    network trained with a scale-invariant loss metric on average. Use *training* sequences."""
    from .data.readers.depth import read_nyu_depth
    from .train.depth_data import frame_tensor, input_K, load_synthetic_sequence
    from .train.depth_task import _norm

    ratios = []
    for f in folders:
        seq = load_synthetic_sequence(Path(f))
        K_in = torch.as_tensor(input_K(seq, input_size), dtype=torch.float32)[None]
        for t in range(0, len(seq.frames), every):
            with torch.no_grad():
                depth = depth_net.depth(_norm(frame_tensor(seq, t, input_size)), K_in)
                pred = torch.nn.functional.interpolate(depth, size=seq.size, mode="bilinear", align_corners=False)[
                    0, 0
                ].numpy()
            gt = read_nyu_depth(seq.depth[t])
            ok = np.isfinite(gt) & (gt > depth_net.cfg.min_depth) & (gt < 60.0) & (pred > 0)
            if ok.any():
                ratios.append(float(np.median(gt[ok] / pred[ok])))
    if not ratios:
        raise ExportError(f"scale calibration: no frames with ground-truth depth in {folders}")
    return {
        "scale": float(np.median(ratios)),
        "frames": len(ratios),
        "spread": float(np.std(ratios)),
        "data": [str(f) for f in folders],
    }


def export_depth(
    checkpoint: Path | str,
    out: Path | str,
    pose_out: Path | str | None = None,
    eval_data: list[str] | None = None,
    eval_limit: int = 0,
    calibrate: list[str] | None = None,
) -> dict[str, Any]:
    """Depth network -> ``out`` (image -> depth in metres) and the pose network -> ``pose_out``
    ((previous, current) -> T_previous_current), each with its card; returns the depth card.
    ``calibrate``: training sequences to fit the metric scale factor on (see
    :func:`calibrate_depth_scale`); the factor multiplies depth and the pose translation alike."""
    import onnxruntime as ort

    from .models.depth import DepthExport, PoseExport
    from .train.depth_task import load_depth_checkpoint

    depth_net, pose_net, cfg, train_metrics = load_depth_checkpoint(checkpoint)
    h, w = cfg.input_size
    calibration = None
    if calibrate:
        calibration = calibrate_depth_scale(depth_net, (h, w), calibrate)
        depth_net.cfg.scale = calibration["scale"]
    supervised = cfg.supervised > 0 and bool(cfg.data)
    out = Path(out)
    pose_out = Path(pose_out) if pose_out else out.with_name("pose.onnx")
    depth_wrap, pose_wrap = DepthExport(depth_net).eval(), PoseExport(pose_net, depth_net.cfg.scale).eval()
    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.normal(0, 1, (1, 3, h, w)).astype(np.float32))
    y = torch.from_numpy(rng.normal(0, 1, (1, 3, h, w)).astype(np.float32))
    depth_report = _export_onnx(depth_wrap, (x,), out, ["image"], ["depth"])
    pose_report = _export_onnx(pose_wrap, (x, y), pose_out, ["previous", "current"], ["T_previous_current"])
    with torch.no_grad():
        d_ref, p_ref = depth_wrap(x).numpy(), pose_wrap(x, y).numpy()
    d = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"]).run(None, {"image": x.numpy()})[0]
    p = ort.InferenceSession(str(pose_out), providers=["CPUExecutionProvider"]).run(
        None, {"previous": x.numpy(), "current": y.numpy()}
    )[0]
    diffs = {"depth_rel": float(np.max(np.abs(d - d_ref) / d_ref)), "pose_abs": float(np.max(np.abs(p - p_ref)))}
    if diffs["depth_rel"] > DEPTH_TOLERANCE["depth_rel"] or diffs["pose_abs"] > DEPTH_TOLERANCE["pose_abs"]:
        raise ExportError(f"ONNX Runtime differs from torch beyond tolerance: {diffs} (tolerance {DEPTH_TOLERANCE})")
    training = {
        "data": cfg.data,
        "bags": cfg.bags,
        "val": cfg.val,
        "epochs": cfg.epochs,
        "batch_size": cfg.batch_size,
        "lr": cfg.lr,
        "input_size": [h, w],
        "seed": cfg.seed,
        "supervised_weight": cfg.supervised,
        "photometric_weight": cfg.photometric,
        "smoothness_weight": cfg.smoothness,
        "supervised_per_image": cfg.supervised_per_image,
        "zoom": cfg.zoom,  # > 1: half the triplets cut to 1/z of the frame (--depth-zoom)
        "checkpoint": str(checkpoint),
        "init": cfg.init,
        "validation_at_checkpoint": {
            k: train_metrics.get(k)
            for k in ("abs_rel", "abs_rel_median_scaled", "a1", "ate_se3_percent", "ate_sim3_percent")
        },
    }
    depth_card: dict[str, Any] = {
        "task": "depth",
        "classes": [],
        "input": card_input(h, w, "stretch"),
        "outputs": {"depth": f"(1, 1, {h}, {w}) float32 metres (camera optical frame z)"},
        "depth": {
            "min": cfg.min_depth,
            "max": cfg.max_depth,
            "scale_source": "supervised" if supervised else "self-supervised",
            "scale": depth_net.cfg.scale,
            "scale_calibration": calibration,
            "pose_model": pose_out.name,
            "canonical_focal": cfg.canonical_focal,
        },
        **file_facts(out),
        "training": training,
        "export": export_record(depth_report, diffs, DEPTH_TOLERANCE),
    }
    pose_card: dict[str, Any] = {
        "task": "pose",
        "classes": [],
        "input": card_input(h, w, "stretch", name="current"),
        "inputs": ["previous", "current"],
        "outputs": {
            "T_previous_current": "(1, 4, 4) float32: the current camera's pose in the previous camera's optical frame"
        },
        "pose": {"translation_units": "metres" if supervised else "depth model units", "depth_model": out.name},
        **file_facts(pose_out),
        "training": training,
        "export": export_record(pose_report, diffs, DEPTH_TOLERANCE),
    }
    write_card(out, depth_card)
    write_card(pose_out, pose_card)
    from .evaluate import evaluate_depth, reproduction_sets

    rep = evaluate_depth(out, reproduction_sets(), pose_out, estimators=("pnp",))
    depth_card["reproduction"] = reproduction_record(
        {
            "abs_rel": rep["depth"]["absolute"]["abs_rel"],
            "a1": rep["depth"]["absolute"]["a1"],
            "pnp_ate_se3_percent": rep["odometry"]["pnp"]["ate_se3_percent"],
            "tolerance": {"abs_rel": 0.005, "a1": 0.01, "pnp_ate_se3_percent": 0.5},
        }
    )
    write_card(out, depth_card)
    if eval_data:
        m = json.loads(json.dumps(evaluate_depth(out, eval_data, pose_out, limit=eval_limit)))
        depth_card["metrics"] = {"eval_data": [str(d) for d in eval_data], "eval_limit": eval_limit, **m["depth"]}
        pose_card["metrics"] = {
            "eval_data": [str(d) for d in eval_data],
            "eval_limit": eval_limit,
            "odometry": m["odometry"],
        }
        write_card(out, depth_card)
        write_card(pose_out, pose_card)
    return depth_card


MATCHING_TOLERANCE = {"keypoints_px": 0.05, "descriptors": 1e-3, "keypoint_agreement": 0.99}


def export_matching(
    checkpoint: Path | str,
    out: Path | str,
    eval_photos: list[str] | None = None,
    eval_data: list[str] | None = None,
    pairs: int = 40,
    reproduce: bool = True,
) -> dict[str, Any]:
    """Keypoint network -> ``out`` (image -> keypoints, scores, descriptors; top-k fixed) + card."""
    import onnxruntime as ort

    from .models.matching import KeypointExport
    from .train.matching_task import load_matching_checkpoint

    net, cfg, train_metrics = load_matching_checkpoint(checkpoint)
    h, w = cfg.input_size
    wrap = KeypointExport(net).eval()
    out = Path(out)
    rng = np.random.default_rng(0)
    examples = [torch.from_numpy(rng.normal(0, 1, (1, 3, h, w)).astype(np.float32))]
    report = _export_onnx(wrap, (examples[0],), out, ["image"], ["keypoints", "scores", "descriptors"])
    from .train.matching_data import normalise
    from .train.matching_task import image_files

    photos = image_files(eval_photos) if eval_photos else []
    for p in photos[:2]:
        from .data.readers.common import read_rgb
        from .train.matching_data import _fit

        examples.append(normalise(_fit(read_rgb(p), (h, w), None))[None])
    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    worst = {"keypoints_px": 0.0, "descriptors": 0.0, "keypoint_agreement": 1.0}
    for x in examples:
        with torch.no_grad():
            rk, rs, rd = (t[0].numpy() for t in wrap(x))
        gk, gs, gd = (a[0] for a in sess.run(None, {"image": x.numpy()}))
        # the same keypoints may come in another order where scores tie: compare as sets
        keep = gs > 0
        d = (
            np.linalg.norm(gk[keep][:, None] - rk[rs > 0][None], axis=2)
            if keep.any() and (rs > 0).any()
            else np.zeros((0, 0))
        )
        if d.size:
            j = d.argmin(1)
            close = d[np.arange(len(j)), j] <= MATCHING_TOLERANCE["keypoints_px"]
            worst["keypoint_agreement"] = min(worst["keypoint_agreement"], float(close.mean()))
            worst["keypoints_px"] = max(worst["keypoints_px"], float(np.median(d[np.arange(len(j)), j])))
            worst["descriptors"] = max(
                worst["descriptors"],
                float(np.abs(gd[keep][close] - rd[rs > 0][j[close]]).max()) if close.any() else 0.0,
            )
    if (
        worst["keypoint_agreement"] < MATCHING_TOLERANCE["keypoint_agreement"]
        or worst["descriptors"] > MATCHING_TOLERANCE["descriptors"]
    ):
        raise ExportError(
            f"{out}: ONNX Runtime differs from torch beyond tolerance: {worst} (tolerance {MATCHING_TOLERANCE})"
        )
    card: dict[str, Any] = {
        "task": "matching",
        "classes": [],
        "input": card_input(h, w, "stretch"),
        "outputs": {
            "keypoints": f"(1, {net.cfg.top_k}, 2) float32 x, y network-input pixels (sub-pixel)",
            "scores": f"(1, {net.cfg.top_k}) float32, 0 for empty slots",
            "descriptors": f"(1, {net.cfg.top_k}, {net.cfg.descriptor_dim}) float32 unit length",
        },
        "matching": {
            "top_k": net.cfg.top_k,
            "nms_radius": net.cfg.nms_radius,
            "descriptor_dim": net.cfg.descriptor_dim,
            "matcher": "mutual nearest neighbour + ratio 0.9 (perception_nodes.pipelines.matching)",
        },
        **file_facts(out),
        "training": {
            "photos": cfg.photos,
            "data": cfg.data,
            "epochs": cfg.epochs,
            "batch_size": cfg.batch_size,
            "lr": cfg.lr,
            "input_size": [h, w],
            "descriptor_loss": cfg.descriptor_loss,
            "mining": cfg.mining,
            "seed": cfg.seed,
            "checkpoint": str(checkpoint),
            "validation_metric_at_checkpoint": float(train_metrics.get("metric", float("nan"))),
        },
        "export": export_record(report, worst, MATCHING_TOLERANCE),
    }
    write_card(out, card)  # the pipeline below reads it
    from .evaluate import evaluate_matching, reproduction_sets

    if reproduce:
        sets = reproduction_sets()
        rep = evaluate_matching(out, [str(Path(d) / "rgb") for d in sets], [str(d) for d in sets], pairs=12)
        card["reproduction"] = reproduction_record(
            {"homography_mma3": rep["homography_mma"][3], "pose_auc10": rep["pose_auc"][10], "tolerance": 0.02},
            "homographic pairs of their frames + their pose pairs",
        )
    write_card(out, card)
    if photos or eval_data:
        card["metrics"] = json.loads(json.dumps(evaluate_matching(out, eval_photos or [], eval_data or [], pairs)))
        write_card(out, card)
    return card


MULTITASK_TOLERANCE = {"scores": 1e-3, "seg_label_agreement": 0.999, "depth_rel": 1e-3, "keypoint_agreement": 0.98}


def _compare_multitask(wrap: torch.nn.Module, out: Path, examples: list[torch.Tensor]) -> dict[str, float]:
    """ONNX Runtime against torch on ``examples``: detection scores, segmentation labels, depth and
    the keypoints (as sets: ties may order them differently)."""
    import onnxruntime as ort

    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    worst = {"scores": 0.0, "seg_label_agreement": 1.0, "depth_rel": 0.0, "keypoint_agreement": 1.0}
    for x in examples:
        with torch.no_grad():
            ref = dict(zip(wrap.output_names(), (t.numpy() for t in wrap(x))))
        got = dict(zip(names, sess.run(None, {"image": x.numpy()})))
        if "scores" in ref:
            worst["scores"] = max(worst["scores"], float(np.abs(got["scores"] - ref["scores"]).max()))
        if "seg_labels" in ref:
            agree = float((got["seg_labels"] == ref["seg_labels"]).mean())
            worst["seg_label_agreement"] = min(worst["seg_label_agreement"], agree)
        if "depth" in ref:
            rel = float(np.median(np.abs(got["depth"] - ref["depth"]) / ref["depth"]))
            worst["depth_rel"] = max(worst["depth_rel"], rel)
        if "keypoints" in ref:
            gk, rk = (
                got["keypoints"][0][got["keypoint_scores"][0] > 0],
                ref["keypoints"][0][ref["keypoint_scores"][0] > 0],
            )
            if len(gk) and len(rk):
                d = np.linalg.norm(gk[:, None] - rk[None], axis=2).min(axis=1)
                worst["keypoint_agreement"] = min(worst["keypoint_agreement"], float((d <= 0.05).mean()))
    bad = [
        k
        for k, v in worst.items()
        if (v < MULTITASK_TOLERANCE[k] if k.endswith("agreement") else v > MULTITASK_TOLERANCE[k])
    ]
    if bad:
        raise ExportError(f"{out}: ONNX Runtime differs from torch beyond tolerance in {bad}: {worst}")
    return worst


def export_multitask(
    checkpoint: Path | str,
    out: Path | str,
    eval_data: list[str] | None = None,
    eval_limit: int = 0,
    reproduce: bool = True,
) -> dict[str, Any]:
    """Multi-task network -> one ``out`` (.onnx: every task's outputs, ``MultiTaskExport``) and one
    card with a section per task (its classes, settings, which outputs are its own, its metrics):
    multitask_node serves them all from one inference, and ``perception-models evaluate`` scores
    each task as it scores a single-task model."""
    from .data.synth.scene import PALETTE
    from .models.multitask import MultiTaskExport
    from .train.multitask_task import load_multitask_checkpoint

    net, cfg, train_metrics = load_multitask_checkpoint(checkpoint)
    h, w = cfg.input_size
    wrap = MultiTaskExport(net).eval()
    out = Path(out)
    rng = np.random.default_rng(0)
    examples = [torch.from_numpy(rng.normal(0, 1, (1, 3, h, w)).astype(np.float32))]
    report = _export_onnx(wrap, (examples[0],), out, ["image"], wrap.output_names())
    if eval_data:
        from perception_nodes.pipelines.preprocess import fit_image, to_nchw

        from .data.readers.common import read_rgb

        for img in sorted((Path(eval_data[0]) / "rgb").glob("*.png"))[:2]:
            examples.append(torch.from_numpy(to_nchw(fit_image(read_rgb(img), w, h, "letterbox")[0], MEAN, STD)))
    diffs = _compare_multitask(wrap, out, examples)
    mc = net.cfg
    sections: dict[str, Any] = {}
    if "detection" in mc.tasks:
        sections["detection"] = {
            "classes": list(mc.detection_classes),
            "outputs": {"boxes": "boxes", "scores": "scores", "labels": "labels"},
        }
    if "segmentation" in mc.tasks:
        sections["segmentation"] = {
            "classes": list(mc.segmentation_classes),
            "colors": PALETTE[: len(mc.segmentation_classes)].tolist(),
            "outputs": {"labels": "seg_labels", "confidence": "seg_confidence"},
        }
    if "depth" in mc.tasks:
        sections["depth"] = {
            "outputs": {"depth": "depth"},
            "min": mc.min_depth,
            "max": mc.max_depth,
            "scale_source": "supervised",
            "canonical_focal": mc.canonical_focal,
        }
    if "keypoints" in mc.tasks:
        m = mc.matcher()
        sections["matching"] = {
            "outputs": {"keypoints": "keypoints", "scores": "keypoint_scores", "descriptors": "descriptors"},
            "top_k": m.top_k,
            "nms_radius": m.nms_radius,
            "descriptor_dim": m.descriptor_dim,
            "matcher": "mutual nearest neighbour + ratio 0.9 (perception_nodes.pipelines.matching)",
        }
    card: dict[str, Any] = {
        "task": "multitask",
        "intended_use": (
            "Detection, semantic labels, metric depth (+ odometry in the node) and keypoints from one inference, "
            "for the project's synthetic driving and indoor scenes: multitask_node serves all four at the cost "
            "of one network. A development baseline for the shared-backbone design, not for real cameras."
        ),
        "limitations": [
            "trained on synthetic renders only (as the single-task models it started from); blind on real images",
            "short CPU training: each task's metric against its single-task model is in metrics and "
            "docs/model-history.md",
            "depth is for a canonical camera (depth.canonical_focal): without CameraInfo it is not this camera's",
        ],
        "classes": [],
        "tasks": sections,
        "input": card_input(h, w, "letterbox", pad_value=114),
        "outputs": {
            "boxes": "(1, 100, 4) float32 x0 y0 x1 y1 in network-input pixels",
            "scores": "(1, 100) float32, 0 for empty rows",
            "labels": "(1, 100) int32 detection class index, -1 for empty rows",
            "seg_labels": f"(1, {h}, {w}) int32 segmentation class index",
            "seg_confidence": f"(1, {h}, {w}) float32 softmax probability",
            "depth": f"(1, 1, {h}, {w}) float32 metres for the canonical camera",
            "keypoints": f"(1, {mc.top_k}, 2) float32 x, y network-input pixels",
            "keypoint_scores": f"(1, {mc.top_k}) float32, 0 for empty slots",
            "descriptors": f"(1, {mc.top_k}, {mc.descriptor_dim}) float32 unit length",
        },
        **file_facts(out),
        "training": {
            "data": cfg.data,
            "val": cfg.val,
            "epochs": cfg.epochs,
            "batch_size": cfg.batch_size,
            "lr": cfg.lr,
            "input_size": [h, w],
            "attention": cfg.attention,
            "head_rank": cfg.head_rank,  # > 0: light heads (rank-r separable 3x3s, models/separable.py)
            "detection_rank": cfg.detection_rank or cfg.head_rank,  # the detection neck and head's
            "init": cfg.init,
            "weighting": cfg.weighting,
            "teacher": cfg.teacher,
            # single-task teachers (--task-teacher): what each taught head learned from, and how much
            "task_teachers": {"models": dict(cfg.task_teachers), "weight": cfg.task_teacher_weight},
            "adopted": {
                "detection": cfg.adopt_detection,
                "segmentation": cfg.adopt_segmentation,
                "depth": cfg.adopt_depth,
            },  # fmt: skip
            "ema": cfg.ema,
            "seed": cfg.seed,
            "checkpoint": str(checkpoint),
            "validation_at_checkpoint": {k: train_metrics.get(k) for k in ("mAP", "mIoU", "abs_rel", "log_vars")},
        },
        "export": export_record(report, diffs, MULTITASK_TOLERANCE),
    }
    write_card(out, card)  # the evaluation below reads it
    from .evaluate import evaluate_multitask

    measures = evaluate_multitask(out, eval_data, eval_limit) if eval_data else {}
    for task, m in measures.items():
        card["tasks"][task]["metrics"] = {"eval_data": [str(d) for d in eval_data or []], **m}
    if reproduce:
        from .evaluate import REPRODUCTION_TOLERANCE, reproduction_sets

        rep = evaluate_multitask(out, [str(d) for d in reproduction_sets()], 0, matching=False)
        card["reproduction"] = reproduction_record(
            {
                "mAP": rep["detection"]["mAP"],
                "mIoU": rep["segmentation"]["mIoU"],
                "abs_rel": rep["depth"]["absolute"]["abs_rel"],
                "tolerance": {"mAP": REPRODUCTION_TOLERANCE, "mIoU": REPRODUCTION_TOLERANCE, "abs_rel": 0.005},
            }
        )
    write_card(out, card)
    return card

"""``perception-models``: data generation and conversion, training, export, evaluation.

perception-models data synth --preset driving --sequences 2 --frames 300 --out data/synth [--bag]
perception-models data bag-from-images --images DIR_OR_VIDEO --out BAG [--fps 10] [--camera-info YAML]
perception-models data preview DIR [--frame N] [--out preview.png]
perception-models train --task {detection,segmentation} --data DIR... --val DIR... --out RUN [--resume]
perception-models train --task depth [--data DIR...] [--bag BAG... --topic T] --val DIR... --out RUN
perception-models train --task matching --photos DIR... [--data DIR...] --val-photos DIR --val DIR... --out RUN
perception-models plot RUN
perception-models export --task T --checkpoint RUN/best.pt --out models/x.onnx [--eval DIR...]
perception-models evaluate --task T --model models/x.onnx --data DIR...
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any
from pathlib import Path

from perception_nodes.tasks import TRAINABLE

from perception_models import __version__


def _add_architecture(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--architecture",
        choices=["retinanet", "anchor_free"],
        default="retinanet",
        help="detection: retinanet (anchors, the shipped detector) or anchor_free (the depthwise CSP student "
        "with a decoupled FCOS head, models/anchor_free.py: YOLOX-Nano's speed class)",
    )


def _cmd_synth(args: argparse.Namespace) -> int:
    from .data.synth import SynthConfig, SyntheticSequence
    from .data.writers import write_sequence

    photo_dir = args.photos
    if photo_dir is None:
        from perception_nodes.workspace import workspace_root

        default = (workspace_root() / ".." / "shared" / "data" / "camvid").resolve()
        photo_dir = str(default) if default.is_dir() else None
    out = Path(args.out)
    for s in range(args.sequences):
        seed = args.seed + s
        cfg = SynthConfig(
            preset=args.preset,
            seed=seed,
            frames=args.frames,
            width=args.width,
            height=args.height,
            fps=args.fps,
            hfov_deg=args.hfov,
            randomization=args.randomization,
            photo_dir=photo_dir,
        )
        target = out / f"{args.preset}_{seed:04d}"
        if target.exists() and any(target.iterdir()):
            print(
                f"perception-models data synth: {target} exists and is not empty; choose another --out or remove it",
                file=sys.stderr,
            )
            return 2
        summary = write_sequence(
            SyntheticSequence(cfg),
            target,
            dataset=not args.bag_only,
            bag=args.bag or args.bag_only,
            depth_format=args.depth,
            flow=not args.no_flow,
            workers=args.workers,
        )
        print(
            f"{target}: {summary['frames']} frames"
            + (f", {summary.get('annotations', 0)} boxes" if not args.bag_only else "")
            + (f", bag {summary['bag']}" if "bag" in summary else "")
        )
    return 0


def _cmd_kitti(args: argparse.Namespace) -> int:
    from .data.readers import DataFormatError
    from .data.readers.kitti import kitti_to_sequence

    if args.ground_prior and not args.reference_depth:
        print("perception-models data kitti-odometry: --ground-prior needs --reference-depth", file=sys.stderr)
        return 2
    try:
        out = kitti_to_sequence(args.root, args.out, args.camera_height, args.limit, args.start)
    except DataFormatError as exc:
        print(f"perception-models data kitti-odometry: {exc}", file=sys.stderr)
        return 2
    print(f"{out}: {len(list((out / 'rgb').glob('*.png')))} frames, camera {args.camera_height} m above the ground")
    if args.reference_depth:
        return _reference_depth(out, height=args.camera_height, **_ground_prior_settings(args))
    return 0


def _ground_prior_settings(args: argparse.Namespace) -> dict[str, Any]:
    if not args.ground_prior:
        return {}
    return {
        "ground_segmenter": args.ground_prior,
        "ground_max_depth": args.ground_max_depth,
        "ground_stride": args.ground_stride,
    }


def _add_ground_prior(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--ground-prior",
        metavar="SEGMENTER",
        help="training targets: add the segmented ground's pixels (the model's 'ground' class, e.g. "
        "models/segmentation.onnx) at their depth on the plane --camera-height below the camera; "
        "never evaluate against such maps",
    )
    p.add_argument("--ground-max-depth", type=float, default=20.0, help="farthest ground pixel added (m)")
    p.add_argument("--ground-stride", type=int, default=16, help="one ground pixel in this many, each way")


def _reference_depth(root: Path, out: Path | None = None, height: float | None = None, **settings: Any) -> int:
    """``data reference-depth`` (``settings``: window, max_reproj_px, min_parallax_deg and the ground
    prior's; their defaults are write_sequence_reference's)."""
    from .data.readers import DataFormatError
    from .data.reference_depth import write_sequence_reference

    try:
        s = write_sequence_reference(root, out, camera_height=height, **settings)
    except (DataFormatError, OSError, ValueError) as exc:
        print(f"perception-models data reference-depth: {exc}", file=sys.stderr)
        return 2
    g = s.get("ground_check")
    print(
        f"{out or Path(root) / 'depth'}: reference depth for {s['frames_with_points']}/{s['frames']} frames, "
        f"median {s['points_per_frame_median']:.0f} points per frame"
        + (
            f"; level plane under the camera {g['measured_median_m']:.2f} m (mounting {g['camera_height_m']:.2f} m)"
            if g
            else ""
        )
    )
    gp = s.get("ground_prior")
    if gp:
        agree = gp["reference_over_plane_median"]
        print(
            f"  + ground prior ({gp['segmenter']}): median {gp['points_per_frame_median']:.0f} ground pixels per "
            f"frame up to {gp['max_depth_m']:g} m"
            + (f"; triangulated points on the segmented ground / plane depth: median {agree:.3f}" if agree else "")
        )
    return 0


def _cmd_reference_depth(args: argparse.Namespace) -> int:
    return _reference_depth(
        Path(args.sequence),
        Path(args.out) if args.out else None,
        args.camera_height,
        window=args.window,
        max_reproj_px=args.max_reproj_px,
        min_parallax_deg=args.min_parallax_deg,
        refine_translations=args.refine_translations,
        **_ground_prior_settings(args),
    )


def _cmd_bag_from_images(args: argparse.Namespace) -> int:
    from .data.bag_from_images import bag_from_images

    try:
        n = bag_from_images(
            Path(args.images),
            Path(args.out),
            fps=args.fps,
            topic=args.topic,
            frame_id=args.frame_id,
            camera_info=Path(args.camera_info) if args.camera_info else None,
            encoding=args.encoding,
            max_frames=args.max_frames,
        )
    except (ValueError, FileNotFoundError, FileExistsError) as exc:
        print(f"perception-models data bag-from-images: {exc}", file=sys.stderr)
        return 2
    print(f"{args.out}: {n} frames on {args.topic}")
    return 0


def _cmd_preview(args: argparse.Namespace) -> int:
    import cv2

    from .data.preview import preview_frame

    try:
        img = preview_frame(Path(args.dataset), args.frame)
    except (FileNotFoundError, ValueError) as exc:
        print(f"perception-models data preview: {exc}", file=sys.stderr)
        return 2
    cv2.imwrite(args.out, cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
    print(f"{args.out}: image + boxes | depth / labels | flow to the next frame")
    return 0


def _run_training(train_fn: Any, cfg: Any, args: argparse.Namespace, metric: str = "metric") -> int:
    from .data.readers import DataFormatError

    try:
        result = train_fn(cfg, resume=args.resume)
    except (DataFormatError, FileNotFoundError, ValueError) as exc:
        print(f"perception-models train: {exc}", file=sys.stderr)
        return 2
    print(f"{args.out}: best validation {metric} {result.get('best', float('nan')):.4f}")
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    if args.task == "depth":
        return _train_depth(args)
    if args.task == "multitask":
        return _train_multitask(args)
    if args.task == "matching":
        return _train_matching(args)
    from .train.image_task import TrainConfig, train

    if not (args.data or args.real_labels) or not args.val:
        print(f"perception-models train: --task {args.task} needs --data (or --real-labels) and --val", file=sys.stderr)
        return 2
    cfg = TrainConfig(
        task=args.task,
        data=args.data or [],
        val=args.val,
        out=args.out,
        epochs=args.epochs,
        batch_size=args.batch_size or 8,
        lr=args.lr or 2e-3,
        input_size=tuple(args.input_size or (384, 512)),  # type: ignore[arg-type]
        loss=args.loss,
        seed=args.seed,
        workers=args.workers,
        camvid=args.camvid,
        max_steps_per_epoch=args.max_steps_per_epoch,
        augment=not args.no_augment,
        class_weights=args.class_weights,
        init=args.init or "",
        device=args.device,
        time_budget_min=args.time_budget_min,
        cache_images=args.cache_images,
        ema=args.ema,
        backbone_blocks=tuple(args.backbone_blocks or ()),
        architecture=args.architecture,
        real_labels=list(args.real_labels or []),
        real_class_map=args.real_class_map or "",
        real_repeat=args.real_repeat,
        object_zoom=args.object_zoom,
        keep=args.keep,
        keep_from=args.keep_from or "",
    )
    return _run_training(train, cfg, args)


def _train_multitask(args: argparse.Namespace) -> int:
    from perception_nodes.workspace import resolve_path

    from .train.multitask_task import MultiTaskTrainConfig, train_multitask

    try:
        task_teachers = _task_teachers(args.task_teacher or [])
    except ValueError as exc:
        print(f"perception-models train: {exc}", file=sys.stderr)
        return 2
    cfg = MultiTaskTrainConfig(
        data=args.data or [],
        val=args.val or [],
        out=args.out,
        epochs=args.epochs,
        batch_size=args.batch_size or 8,
        lr=args.lr or 2e-3,
        input_size=tuple(args.input_size or (384, 512)),  # type: ignore[arg-type]
        attention=not args.no_attention,
        head_rank=args.head_rank,
        detection_rank=args.detection_rank,
        weighting=args.weighting,
        adopt_detection=str(resolve_path("models/detection.onnx")) if args.adopt_shipped else "",
        adopt_segmentation=str(resolve_path("models/segmentation.onnx")) if args.adopt_shipped else "",
        adopt_depth=str(resolve_path("models/depth.onnx")) if args.adopt_shipped else "",
        teacher=str(resolve_path(args.teacher if args.teacher is not None else "models/matching.onnx"))
        if args.teacher != ""
        else "",
        seed=args.seed,
        workers=args.workers,
        max_steps_per_epoch=args.max_steps_per_epoch,
        augment=not args.no_augment,
        init=args.init or "",
        device=args.device,
        time_budget_min=args.time_budget_min,
        ema=args.ema,
        keep=args.keep,
        keep_from=args.keep_from or "",
        task_teachers=task_teachers,
        task_teacher_weight=args.task_teacher_weight,
        # 0 on the command line: the multi-task default (305 px at 384x512, the shipped depth model's)
        **({"canonical_focal": args.canonical_focal} if args.canonical_focal > 0 else {}),
    )
    return _run_training(train_multitask, cfg, args)


def _task_teachers(items: list[str]) -> dict[str, str]:
    """``TASK=MODEL`` items of --task-teacher -> {task: resolved model path}."""
    from perception_nodes.workspace import resolve_path

    out: dict[str, str] = {}
    for item in items:
        task, sep, path = item.partition("=")
        if not sep or not task or not path:
            raise ValueError(f"--task-teacher {item}: expected TASK=MODEL, e.g. detection=models/detection.onnx")
        if task in out:
            raise ValueError(f"--task-teacher: {task} is given twice")
        out[task] = str(resolve_path(path))
    return out


def _train_matching(args: argparse.Namespace) -> int:
    from .train.matching_task import MatchTrainConfig, train_matching

    cfg = MatchTrainConfig(
        photos=args.photos or [],
        data=args.data or [],
        val_photos=args.val_photos or [],
        val=args.val or [],
        out=args.out,
        epochs=args.epochs,
        batch_size=args.batch_size or 8,
        lr=args.lr or 1e-3,
        input_size=tuple(args.input_size or (240, 320)),  # type: ignore[arg-type]
        descriptor_loss=args.descriptor_loss,
        mining=args.mining,
        seed=args.seed,
        workers=args.workers,
        max_steps_per_epoch=args.max_steps_per_epoch,
        init=args.init or "",
        device=args.device,
        time_budget_min=args.time_budget_min,
        ema=args.ema,
        teacher=args.teacher or "",
    )
    return _run_training(train_matching, cfg, args)


def _train_depth(args: argparse.Namespace) -> int:
    from .train.depth_task import DepthTrainConfig, train_depth

    cfg = DepthTrainConfig(
        data=args.data or [],
        bags=args.bag or [],
        topic=args.topic,
        camera_info=args.camera_info or "",
        val=args.val or [],
        out=args.out,
        epochs=args.epochs,
        batch_size=args.batch_size or 6,
        lr=args.lr or 5e-4,
        input_size=tuple(args.input_size or (192, 256)),  # type: ignore[arg-type]
        supervised=args.supervised,
        supervised_per_image=args.supervised_per_image,
        photometric=args.photometric,
        canonical_focal=args.canonical_focal,
        seed=args.seed,
        workers=args.workers,
        max_steps_per_epoch=args.max_steps_per_epoch,
        augment=not args.no_augment,
        zoom=args.depth_zoom,
        frame_stride=args.frame_stride,
        scales=tuple(args.scales),
        init=args.init or "",
        device=args.device,
        time_budget_min=args.time_budget_min,
        cache_images=args.cache_images,
        ema=args.ema,
        relative_teacher=str(args.relative_teacher or ""),
        relative_weight=args.relative_weight,
        real_repeat=args.real_repeat,
    )
    return _run_training(train_depth, cfg, args, cfg.metric_name)


def _cmd_plot(args: argparse.Namespace) -> int:
    from .train.trainer import plot_log

    print(plot_log(args.run, args.out))
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from .export import ExportError, export

    try:
        card = export(
            args.task,
            args.checkpoint,
            args.out,
            eval_data=args.eval,
            eval_limit=args.eval_limit,
            pose_out=args.pose_out,
            calibrate=args.calibrate,
            eval_photos=args.eval_photos,
        )
    except (ExportError, FileNotFoundError, ValueError) as exc:
        print(f"perception-models export: {exc}", file=sys.stderr)
        return 2
    m = card.get("metrics", {})
    if card["task"] == "multitask":
        m = {k: v for s in card["tasks"].values() for k, v in (s.get("metrics") or {}).items()}
    print(
        f"{args.out}: {card['size_bytes'] / 1e6:.1f} MB, ORT vs torch {card['export']['onnxruntime_vs_torch']}"
        + (f", mAP {m['mAP']:.4f} mAP50 {m['mAP50']:.4f}" if "mAP" in m else "")
        + (f", mIoU {m['mIoU']:.4f}" if "mIoU" in m else "")
        + (
            f", AbsRel {m['absolute']['abs_rel']:.4f} (median-scaled {m['median_scaled']['abs_rel']:.4f})"
            if "absolute" in m
            else ""
        )
    )
    return 0


DETECTOR_CLASSES = ["person", "car", "cone", "box", "barrel", "chair"]
SEGMENTER_CLASSES = ["sky", "ground", "wall", "clutter", "person", "car", "cone", "box", "barrel", "chair"]


def _cmd_distill(args: argparse.Namespace) -> int:
    import json

    from .distill import distillation_record, frames_from, read_student_map, teacher_pass, teacher_pass_segmentation
    from .train.image_task import TrainConfig, train

    if not args.images and not args.bag:
        print("perception-models distill: give the footage: --images DIR... and/or --bag BAG...", file=sys.stderr)
        return 2
    if not args.teacher_only and not args.val:
        print("perception-models distill: --val (synthetic held-out sets) chooses best.pt", file=sys.stderr)
        return 2
    segmentation = args.task == "segmentation"
    student = list(args.student_classes) if args.student_classes else (SEGMENTER_CLASSES if segmentation else
                                                                       DETECTOR_CLASSES)  # fmt: skip
    class_map = read_student_map(args.class_map)
    print(f"class map (student <- teacher): {class_map}", file=sys.stderr)
    out = Path(args.out)
    sources = [*(args.images or []), *(args.bag or [])]
    total = None
    try:
        total = sum(1 for _ in frames_from(args.images or [], [], args.topic, args.every)) if not args.bag else None
        ts = (teacher_pass_segmentation if segmentation else teacher_pass)(
            args.teacher,
            frames_from(args.images or [], args.bag or [], args.topic, args.every),
            class_map,
            student,
            out / "teacher",
            args.high,
            args.low,
            total=total,
        )
    except ValueError as exc:
        print(f"perception-models distill: {exc}", file=sys.stderr)
        return 2
    record = distillation_record(
        args.teacher, sources, ts, class_map, thresholds={"label": args.high, "uncertain": args.low}, task=args.task
    )
    out.mkdir(parents=True, exist_ok=True)
    (out / "distillation.json").write_text(json.dumps(record, indent=2))
    print(
        f"teacher set {ts.folder}: {ts.frames} frames, "
        + (
            f"frames per labelled class {ts.per_class} (other pixels ignored by the loss)"
            if segmentation
            else f"{ts.labels} pseudo-labels {ts.per_class}, {ts.uncertain} uncertain boxes (ignored by the loss)"
        )
    )
    if args.teacher_only:
        return 0
    cfg = TrainConfig(
        task=args.task,
        data=[str(ts.folder)] * args.real_repeat + list(args.synthetic or []),
        val=args.val,
        out=args.out,
        epochs=args.epochs,
        batch_size=args.batch_size or 16,
        lr=args.lr or 2e-3,
        input_size=tuple(args.input_size or (384, 512)),  # type: ignore[arg-type]
        seed=args.seed,
        workers=args.workers,
        init=args.init or "",
        device=args.device,
        time_budget_min=args.time_budget_min,
        cache_images=args.cache_images,
        ema=args.ema,
        architecture=args.architecture,
        object_zoom=args.object_zoom,
        keep=args.keep,
        keep_roots=list(args.synthetic or []),
        keep_from=args.keep_from or "",
    )
    return _run_training(train, cfg, args)


def _cmd_card(args: argparse.Namespace) -> int:
    from perception_nodes.model_card import load_card
    from perception_nodes.model_import import ModelImportError, build_card, read_classes, write_card

    try:
        classes = read_classes(args.classes) if args.classes else None
        card = build_card(args.onnx, args.family, classes, tuple(args.input_size) if args.input_size else None)
        out = write_card(card, args.onnx, args.out)
        load_card(out, card["task"])  # what the nodes will do with it
    except (ModelImportError, OSError) as exc:
        print(f"perception-models card: {exc}", file=sys.stderr)
        return 2
    n = len(card.get("classes") or [])
    inp = card["input"]
    print(
        f"{out}: {card['family']} ({card['task']}), input '{inp['name']}' {inp['height']}x{inp['width']} "
        f"{inp.get('channel_order', 'RGB')} {inp.get('resize', '')}" + (f", {n} classes" if n else "")
    )
    return 0


def _print_odometry(result: dict[str, Any]) -> None:
    d = result["depth"]
    print(
        f"depth: AbsRel {d['absolute']['abs_rel']:.3f} (median-scaled {d['median_scaled']['abs_rel']:.3f}) over "
        f"{d['images']} images with ground truth; scale source {result['scale_source']}; hybrid's ground: "
        f"{result['ground']}",
        file=sys.stderr,
    )
    print(
        f"{'estimator':12s} {'ATE SE3 %':>10s} {'ATE Sim3 %':>11s} {'RPE rot deg':>12s} {'skipped':>8s} "
        f"{'refitted':>9s}",
        file=sys.stderr,
    )
    for e, r in result["odometry"].items():
        print(
            f"{e:12s} {r['ate_se3_percent']:10.2f} {r['ate_sim3_percent']:11.2f} {r['rpe_rot_deg']:12.3f} "
            f"{r['skipped_frames']:8d} {r.get('refitted_frames', '-'):>9}",
            file=sys.stderr,
        )


def _missing_model(path: str | None) -> str:
    """Why ``path`` (an .onnx with its card, or a card naming its .onnx) cannot be evaluated ('' = it can)."""
    if not path:
        return ""
    from perception_nodes.model_card import ModelCardError, model_files

    p = Path(path)
    if not p.exists():
        return "no such file"
    try:
        onnx = model_files(p)[0]
    except (ModelCardError, OSError, ValueError) as exc:
        return str(exc)
    return "" if Path(onnx).is_file() else f"the model file {onnx} does not exist"


def _cmd_evaluate(args: argparse.Namespace) -> int:
    import json

    from .evaluate import evaluate_depth, evaluate_detection, evaluate_matching, evaluate_segmentation

    for option, value in (("--model", args.model), ("--pose-model", args.pose_model),
                          ("--matcher-model", args.matcher_model), ("--glue-model", args.glue_model)):  # fmt: skip
        missing = _missing_model(value)
        if missing:
            print(f"perception-models evaluate: {option} {value}: {missing}", file=sys.stderr)
            return 2
    if args.coco:
        if args.task != "detection" or not args.images:
            print("perception-models evaluate: --coco is for --task detection and needs --images DIR", file=sys.stderr)
            return 2
        from .evaluate import evaluate_detection_coco

        result = evaluate_detection_coco(args.model, args.coco, args.images, args.limit)
        m = result["class_mapping"]
        print(
            f"classes matched by name: {m['matched']}; dataset classes left out: "
            f"{len(m['ignored_dataset_classes'])}; model classes without data: {m['model_classes_without_data']}",
            file=sys.stderr,
        )
        print(json.dumps(result, indent=2))
        if args.json:
            Path(args.json).write_text(json.dumps(result, indent=2))
        return 0
    if isinstance(args.camvid, str):
        if args.task != "segmentation" or not args.class_map:
            print(
                "perception-models evaluate: --camvid ROOT is for --task segmentation with --class-map FILE",
                file=sys.stderr,
            )
            return 2
        from .evaluate import evaluate_segmentation_mapped, read_class_map

        result = evaluate_segmentation_mapped(
            args.model, args.camvid, read_class_map(args.class_map), args.split, limit=args.limit
        )
        print(f"{'class':<14} IoU", file=sys.stderr)
        for k, v in result["per_class"].items():
            print(f"{k:<14} {'-' if v is None else f'{v:.3f}'}", file=sys.stderr)
        print(f"{'mean':<14} {result['mIoU']:.3f}  ({result['images']} images)", file=sys.stderr)
        print(json.dumps(result, indent=2))
        if args.json:
            Path(args.json).write_text(json.dumps(result, indent=2))
        return 0
    if args.depth_dir:
        if args.task != "depth":
            print("perception-models evaluate: --depth-dir is for --task depth", file=sys.stderr)
            return 2
        from .evaluate import evaluate_depth_dir

        result = evaluate_depth_dir(args.model, args.depth_dir, args.depth_format, args.limit)
        print(json.dumps(result, indent=2))
        if args.json:
            Path(args.json).write_text(json.dumps(result, indent=2))
        return 0
    if not args.data and not (args.task == "matching" and (args.photos or args.hpatches)):
        print(
            "perception-models evaluate: --data is required" + (" (or --photos)" if args.task == "matching" else ""),
            file=sys.stderr,
        )
        return 2
    if args.task == "multitask":  # every task of the one network, each as its single-task model is scored
        from .evaluate import evaluate_multitask

        result = evaluate_multitask(args.model, args.data, args.limit)
        d, g, z = result["detection"], result["segmentation"], result["depth"]
        print(
            f"detection mAP {d['mAP']:.3f} mAP50 {d['mAP50']:.3f}; segmentation mIoU {g['mIoU']:.3f}; depth AbsRel "
            f"{z['absolute']['abs_rel']:.3f} (median-scaled {z['median_scaled']['abs_rel']:.3f}); PnP ATE "
            f"{z['odometry']['pnp']['ate_se3_percent']:.1f} %; pose AUC@10 {result['matching']['pose_auc']['10']:.3f}",
            file=sys.stderr,
        )
    elif args.task == "matching":
        result = evaluate_matching(
            args.model, args.photos or [], args.data, hpatches=args.hpatches, glue_model=args.glue_model
        )
    elif args.task == "depth":
        result = evaluate_depth(
            args.model,
            args.data,
            args.pose_model,
            tuple(args.estimators),
            args.limit,
            matcher_model=args.matcher_model,
            scale_source=args.scale_source,
            glue_model=args.glue_model,
            ground_segmenter=args.ground_segmenter,
            ground_corridor=args.ground_corridor,
            rotation_jump_deg=args.rotation_jump,
        )
        _print_odometry(result)
    elif args.task == "detection":
        result = evaluate_detection(args.model, args.data, args.limit)
    else:
        lut = None
        kw = {}
        if args.camvid:
            from .data.readers.labels import CAMVID_LUT

            lut, kw = CAMVID_LUT, {"image_dir": "val", "label_dir": "valannot"}
        result = evaluate_segmentation(args.model, args.data, args.limit, lut=lut, **kw)
    print(json.dumps(result, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return 0


def _add_keep_arguments(p: argparse.ArgumentParser, keep_help: str) -> None:
    """--keep and --keep-from, shared by train (segmentation) and distill (detection)."""
    p.add_argument("--keep", type=float, default=0.0, metavar="W", help=keep_help)
    p.add_argument(
        "--keep-from",
        metavar="MODEL",
        help="the model whose outputs --keep keeps (default: the --init one), e.g. models/detection.onnx "
        "while --init continues an earlier student",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="perception-models", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--version", action="version", version=__version__)
    sub = parser.add_subparsers(dest="command")
    data = sub.add_parser("data", help="synthetic data, conversions").add_subparsers(dest="data_command", required=True)

    p = data.add_parser("synth", help="render synthetic sequences with ground truth for every task")
    p.add_argument(
        "--preset",
        choices=["driving", "indoor"],
        default="driving",
        help="scene family: driving (road, cars, people, cones) or indoor (rooms, boxes, chairs, people)",
    )
    p.add_argument("--sequences", type=int, default=1, help="how many sequences (one folder each)")
    p.add_argument("--frames", type=int, default=100, help="frames per sequence")
    p.add_argument("--seed", type=int, default=0, help="seed of the first sequence (+1 per sequence)")
    p.add_argument("--out", required=True, help="output folder (one sub-folder per sequence)")
    p.add_argument("--bag", action="store_true", help="also write a rosbag2 MCAP per sequence (<seq>/bag)")
    p.add_argument("--bag-only", action="store_true", help="write only the bag")
    p.add_argument("--width", type=int, default=640, help="image width in pixels")
    p.add_argument("--height", type=int, default=480, help="image height in pixels")
    p.add_argument("--fps", type=float, default=10.0, help="frame rate of the camera motion and the bag")
    p.add_argument("--hfov", type=float, default=0.0, help="horizontal FOV in degrees (0: random 60-100)")
    p.add_argument("--randomization", type=float, default=1.0, help="camera effects strength, 0 = clean")
    p.add_argument("--depth", choices=["png", "npy"], default="png", help="uint16 mm PNG or float32 npy")
    p.add_argument("--no-flow", action="store_true", help="skip flow/occlusion to the next frame")
    p.add_argument("--photos", help="folder of real photos for textures (default: ../shared/data/camvid if present)")
    p.add_argument("--workers", type=int, default=max(1, min(4, os.cpu_count() or 1)), help="rendering processes")
    p.set_defaults(func=_cmd_synth)

    p = data.add_parser(
        "kitti-odometry", help="a sequence folder (rgb/, camera_info.yaml, trajectory) from KITTI odometry"
    )
    p.add_argument("--root", required=True, help="KITTI odometry folder (image_0/ or image_l/, poses.txt, calib.txt)")
    p.add_argument("--out", required=True, help="the sequence folder to write")
    p.add_argument("--camera-height", type=float, default=1.65, help="metres above the ground (KITTI's car: 1.65)")
    p.add_argument("--limit", type=int, default=0, help="at most this many frames (0 = all)")
    p.add_argument("--start", type=int, default=0, help="the first frame taken (e.g. a later, held-out part)")
    p.add_argument(
        "--reference-depth",
        action="store_true",
        help="also triangulate sparse reference depth from the ground-truth poses (data reference-depth)",
    )
    _add_ground_prior(p)
    p.set_defaults(func=_cmd_kitti)

    p = data.add_parser(
        "reference-depth",
        help="sparse depth triangulated from a sequence's known poses, to measure depth on real frames",
        description="Corners tracked through the neighbouring frames and triangulated from the sequence's "
        "trajectory_tum.txt (the neighbours' rotations re-fitted to the images, the translations keeping the "
        "metric scale); written as millimetre PNGs that evaluate --task depth reads. See "
        "perception_models/data/reference_depth.py for what it cannot see.",
    )
    p.add_argument("--sequence", required=True, help="sequence folder: rgb/, camera_info.yaml, trajectory_tum.txt")
    p.add_argument("--out", help="folder for the depth PNGs (default <sequence>/depth)")
    p.add_argument("--window", type=int, default=4, help="frames tracked each way")
    p.add_argument("--max-reproj-px", type=float, default=0.7, help="worst reprojection error a point may have")
    p.add_argument("--min-parallax-deg", type=float, default=3.0, help="widest ray angle a point needs")
    p.add_argument(
        "--refine-translations",
        action="store_true",
        help="re-fit the translations too, only the sum of their lengths kept (poses from visual odometry, whose "
        "steps are a few degrees and a few percent off each; students --trajectory odometry sets it)",
    )
    p.add_argument(
        "--camera-height",
        type=float,
        help="metres, for the ground check and --ground-prior (default: the first pose's height)",
    )
    _add_ground_prior(p)
    p.set_defaults(func=_cmd_reference_depth)

    p = data.add_parser("bag-from-images", help="a rosbag2 MCAP from an image folder or a video")
    p.add_argument("--images", required=True, help="folder of images (sorted by name) or a video file")
    p.add_argument("--out", required=True, help="the bag to write (a rosbag2 folder with one MCAP file)")
    p.add_argument("--fps", type=float, default=10.0, help="frame rate the stamps are spaced at")
    p.add_argument("--topic", default="/camera/image_raw", help="image topic")
    p.add_argument(
        "--frame-id", default="camera_optical_frame", help="header.frame_id of the images (REP-103 optical frame)"
    )
    p.add_argument("--camera-info", help="ROS camera_info YAML; published on <topic dir>/camera_info")
    p.add_argument(
        "--encoding", choices=["rgb8", "bgr8", "mono8"], default="rgb8", help="encoding of the published images"
    )
    p.add_argument("--max-frames", type=int, default=0, help="at most this many frames (0 = all)")
    p.set_defaults(func=_cmd_bag_from_images)

    p = sub.add_parser("train", help="train a detector, a segmenter, depth + pose, keypoints, or all in one network")
    p.add_argument(
        "--task",
        choices=TRAINABLE,
        required=True,
        help="what to train (the task registry: perception_nodes/tasks.py; multitask: one network for "
        "detection, segmentation, depth and keypoints, train/multitask_task.py)",
    )
    p.add_argument(
        "--weighting",
        choices=["uncertainty", "fixed"],
        default="uncertainty",
        help="multitask: learned per-task uncertainty weights (Kendall et al.) or fixed equal weights",
    )
    p.add_argument("--no-attention", action="store_true", help="multitask: without per-task attention (the ablation)")
    p.add_argument(
        "--task-teacher",
        action="append",
        metavar="TASK=MODEL",
        help="multitask: a single-task model whose outputs that task's head also learns (repeatable; detection "
        "or segmentation), e.g. --task-teacher detection=models/detection.onnx",
    )
    p.add_argument(
        "--task-teacher-weight",
        type=float,
        default=1.0,
        metavar="W",
        help="multitask: weight of --task-teacher's terms",
    )
    p.add_argument(
        "--head-rank",
        type=int,
        default=0,
        metavar="R",
        help="multitask: light heads, each 3x3 convolution of the heads as R depthwise filters per channel + a 1x1 "
        "(SVD-initialised from --init; 2 costs 2.1x less than the full heads); 0 = full heads",
    )
    p.add_argument(
        "--detection-rank",
        type=int,
        default=0,
        metavar="R",
        help="multitask with --head-rank: the detection neck and head's own rank (0 = --head-rank); 3 with "
        "--head-rank 2 keeps most of the full detector right after the SVD start",
    )
    p.add_argument(
        "--adopt-shipped",
        action="store_true",
        help="multitask: start from models/detection.onnx (backbone, detection), segmentation.onnx and depth.onnx "
        "(their heads)",
    )
    p.add_argument(
        "--teacher",
        help="multitask: keypoint network whose heatmap and descriptors the keypoint head learns (default "
        "models/matching.onnx; '' = no keypoints); matching: a raw-layout keypoint model's card (XFeat, "
        "SuperPoint) whose cell logits and descriptors the student also learns on every training image",
    )
    p.add_argument("--data", nargs="+", help="training sets (synthetic folders, or CamVid root with --camvid)")
    p.add_argument("--photos", nargs="+", help="matching: folders of real photos for homographic pairs")
    p.add_argument("--val-photos", nargs="+", help="matching: held-out photos for homographic validation pairs")
    p.add_argument("--descriptor-loss", choices=["triplet", "contrastive"], default="triplet", help="matching")
    p.add_argument("--mining", choices=["hard", "spatial"], default="hard", help="matching: negative mining")
    p.add_argument("--val", nargs="+", help="validation sets (other seeds)")
    p.add_argument("--out", required=True, help="run folder: log.jsonl, last.pt, best.pt")
    p.add_argument("--epochs", type=int, default=20, help="epochs (an upper bound with --time-budget-min)")
    p.add_argument("--batch-size", type=int, default=0, help="0: 8 (detection, segmentation), 6 (depth)")
    p.add_argument("--lr", type=float, default=0.0, help="0: 2e-3 (detection, segmentation), 5e-4 (depth)")
    p.add_argument("--input-size", type=int, nargs=2, metavar=("H", "W"), help="default 384 512; depth 192 256")
    p.add_argument("--bag", nargs="+", help="depth: rosbag2 recordings to learn from without labels (self-supervised)")
    p.add_argument("--topic", default="/camera/image_raw", help="depth: the bags' camera topic")
    p.add_argument("--camera-info", help="depth: ROS camera_info YAML when the bag has no CameraInfo")
    p.add_argument(
        "--supervised",
        type=float,
        default=1.0,
        help="depth: weight of the supervised loss where ground truth exists (0: self-supervised only)",
    )
    p.add_argument(
        "--supervised-per-image",
        action="store_true",
        help="depth: average the supervised loss over images instead of pooling it over pixels, so that a frame "
        "with a sparse reference (triangulated, lidar) counts as much as a dense render",
    )
    p.add_argument(
        "--photometric",
        type=float,
        default=1.0,
        help="depth: weight of the photometric reprojection loss (0: supervised only; the pose network is then "
        "not trained)",
    )
    p.add_argument(
        "--canonical-focal",
        type=float,
        default=0.0,
        help="depth, multitask: predict depth for a canonical camera of this focal length (pixels at the input size; "
        "e.g. 152 = 80 degrees across 256 px) and convert with each camera's intrinsics, so that metric "
        "depth holds across lenses (Metric3D); 0: off",
    )
    p.add_argument("--frame-stride", type=int, default=1, help="depth: frames between the target and its sources")
    p.add_argument(
        "--relative-teacher",
        help="depth: a relative-depth model (its card, family relative-depth: Depth Anything, MiDaS ...) whose "
        "inverse depth the student also learns, up to scale and shift (cached once under <out>/relative_teacher)",
    )
    p.add_argument(
        "--relative-weight", type=float, default=0.5, help="depth: weight of that scale-and-shift-invariant loss"
    )
    p.add_argument(
        "--scales",
        type=int,
        nargs="+",
        default=[0, 1, 2, 3],
        choices=[0, 1, 2, 3],
        help="depth: decoder scales the photometric loss uses (Monodepth2: all four; 0 alone is ~2x cheaper)",
    )
    p.add_argument("--loss", choices=["focal", "ohem"], default="focal", help="detector classification loss")
    p.add_argument(
        "--seed", type=int, default=0, help="seed of weights, sampling and augmentation (same seed, same losses)"
    )
    p.add_argument("--workers", type=int, default=0, help="data loader processes")
    p.add_argument(
        "--max-steps-per-epoch", type=int, default=0, help="at most this many steps per epoch (0 = the whole set)"
    )
    p.add_argument(
        "--camvid", action="store_true", help="--data/--val are CamVid roots (train/, trainannot/, val/, valannot/)"
    )
    p.add_argument("--no-augment", action="store_true", help="no flips, zooms or colour changes")
    p.add_argument(
        "--real-labels",
        nargs="+",
        metavar="ROOT",
        help="segmentation: real labelled frames in CamVid layout (train/, trainannot/) next to --data; "
        "never the sets you evaluate on (camvid/val)",
    )
    p.add_argument(
        "--real-class-map",
        metavar="FILE",
        help="segmentation: CamVid class -> model class (config/class_maps/camvid_to_ours.yaml); unmapped "
        "classes are ignored, not background",
    )
    p.add_argument(
        "--real-repeat",
        type=int,
        default=1,
        help="segmentation: times the real frames repeat per epoch; depth: times each --bag's triplets do",
    )
    _add_keep_arguments(
        p,
        "segmentation with --real-labels: learning without forgetting, weight of a distillation term that "
        "keeps the --init model's predictions on the synthetic --data frames (0: off); multitask: terms that "
        "hold every head's outputs to the --keep-from (or --init) multi-task model's, e.g. light heads "
        "(--head-rank) distilled from the full network",
    )
    p.add_argument(
        "--object-zoom",
        type=float,
        default=0.0,
        help="detection: probability of a zoom on one labelled object (sizes 0.15-0.6 of the crop; 0: off)",
    )
    p.add_argument(
        "--depth-zoom",
        type=float,
        default=1.0,
        metavar="Z",
        help="depth: half the triplets cut to 1/z of the frame (z uniform in [1, Z], a random place) and "
        "scaled back up, K with them (a longer lens from the same place; 1: off)",
    )
    p.add_argument(
        "--class-weights",
        choices=["none", "median_frequency"],
        default="none",
        help="segmentation: weight rare classes (SegNet's median frequency balancing)",
    )
    p.add_argument("--resume", action="store_true", help="continue from <out>/last.pt")
    p.add_argument(
        "--init",
        help="start from this checkpoint's weights with a fresh optimizer and schedule (fine-tuning); "
        "detection/segmentation/depth also take an exported .onnx (e.g. the shipped models/segmentation.onnx)",
    )
    p.add_argument("--device", default="auto", help="auto (a GPU when CUDA works, else the CPU), cpu, cuda or cuda:N")
    p.add_argument(
        "--cache-images",
        action="store_true",
        help="decode every training image once up front, shared by the data loader's workers (detection/"
        "segmentation: ~0.9 MB per 640x480 frame; depth: frames and ground truth at the network size); "
        "a GPU run is otherwise bound by PNG decoding",
    )
    p.add_argument(
        "--time-budget-min",
        type=float,
        default=0.0,
        help="fit the number of steps (and the cosine schedule) to this many minutes from the rate of the "
        "first steps; --epochs is then an upper bound",
    )
    p.add_argument(
        "--ema",
        type=float,
        default=0.0,
        help="validate, keep and export a moving average of the weights with this "
        "decay per step instead of the last step's weights (e.g. 0.999: after n steps it spans the "
        "last ~n/9, at most 1000)",
    )
    p.add_argument(
        "--backbone-blocks",
        type=int,
        nargs=4,
        metavar="N",
        help="detection/segmentation: residual blocks in each of the backbone's four stages (default "
        "1 2 2 2); with --init from a model with fewer, the added blocks start as identities",
    )
    _add_architecture(p)
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser(
        "train-gpu",
        add_help=False,
        help="one GPU: render scenes on every core, then fine-tune detector, segmenter and depth within a "
        "budget (train/gpu_run.py; `perception-models train-gpu --help`)",
    )
    p.add_argument(
        "rest", nargs=argparse.REMAINDER, help="options of train/gpu_run.py (perception-models train-gpu --help)"
    )  # main() hands everything after the name to gpu_run

    p = sub.add_parser("export", help="ONNX + model card from a checkpoint, checked against torch and for TensorRT")
    p.add_argument("--task", choices=TRAINABLE, required=True, help="what the checkpoint is")
    p.add_argument("--eval-photos", nargs="+", help="matching: held-out photos for homographic pairs")
    p.add_argument("--pose-out", help="depth: where the pose network goes (default: pose.onnx next to --out)")
    p.add_argument("--calibrate", nargs="+", help="depth: training sequences to fit the metric scale factor on")
    p.add_argument("--checkpoint", required=True, help="best.pt or last.pt of a training run")
    p.add_argument("--out", required=True, help="path of the .onnx; the card is written next to it")
    p.add_argument("--eval", nargs="*", default=None, help="held-out sets to measure the card's metrics on")
    p.add_argument("--eval-limit", type=int, default=0, help="at most this many images (0 = all)")
    p.set_defaults(func=_cmd_export)

    p = sub.add_parser(
        "distill",
        help="train a small student on real footage labelled by a pretrained teacher (+ synthetic ground truth)",
    )
    p.add_argument(
        "--task",
        choices=["detection", "segmentation"],
        default="detection",
        help="the student's task: detection (a detection teacher's boxes) or segmentation (an instance teacher's "
        "masks, YOLO-seg: its things labelled, every other pixel ignored)",
    )
    p.add_argument("--teacher", required=True, metavar="CARD", help="the teacher's model card (perception-models card)")
    p.add_argument("--images", nargs="+", help="folders of real frames (unlabelled)")
    p.add_argument("--bag", nargs="+", help="rosbag2 recordings of the robot's camera (unlabelled)")
    p.add_argument("--topic", default="/camera/image_raw", help="the bags' image topic")
    p.add_argument("--every", type=int, default=1, help="use every N-th frame")
    p.add_argument("--class-map", required=True, help="YAML: student class -> teacher class(es)")
    p.add_argument(
        "--student-classes",
        nargs="+",
        help="the student's classes, in order (default: the shipped detector's or segmenter's)",
    )
    p.add_argument("--high", type=float, default=0.5, help="teacher score from which a box is a label")
    p.add_argument("--low", type=float, default=0.2, help="teacher score from which a box is uncertain (ignored)")
    p.add_argument("--synthetic", nargs="+", help="synthetic training sets (ground truth) to learn from as well")
    p.add_argument("--val", nargs="+", help="synthetic held-out sets that choose best.pt")
    p.add_argument("--real-repeat", type=int, default=3, help="times the teacher set is repeated per epoch")
    p.add_argument(
        "--object-zoom",
        type=float,
        default=0.5,
        help="detection: probability of a zoom on one labelled object (sizes 0.15-0.6 of the crop), so that "
        "objects the footage shows far away are also learnt up close (0: off)",
    )
    _add_keep_arguments(
        p,
        "detection with --init: learning without forgetting, weight of a term that keeps the --init "
        "model's outputs on the --synthetic frames while the teacher's labels teach the real ones (0: off)",
    )
    p.add_argument("--teacher-only", action="store_true", help="stop after the teacher pass (e.g. train on a GPU)")
    p.add_argument("--out", required=True, help="run folder: teacher/, distillation.json, log.jsonl, best.pt")
    p.add_argument("--epochs", type=int, default=20, help="epochs (an upper bound with --time-budget-min)")
    p.add_argument("--batch-size", type=int, default=0, help="0: the task's default")
    p.add_argument("--lr", type=float, default=0.0, help="0: the task's default")
    p.add_argument(
        "--input-size", type=int, nargs=2, metavar=("H", "W"), help="the student's input size (default: the trainer's)"
    )
    p.add_argument("--init", help="start from this model (e.g. models/detection.onnx)")
    p.add_argument("--device", default="auto", help="auto (a GPU when CUDA works), cpu, cuda or cuda:N")
    p.add_argument(
        "--time-budget-min", type=float, default=0.0, help="fit the steps to this many minutes (0: --epochs)"
    )
    p.add_argument("--workers", type=int, default=0, help="data loader processes")
    p.add_argument("--seed", type=int, default=0, help="seed of the student's training")
    p.add_argument(
        "--cache-images", action="store_true", help="decode the training images once, shared by the loader's workers"
    )
    p.add_argument("--ema", type=float, default=0.0, help="decay of the weights' moving average (0: off)")
    _add_architecture(p)
    p.add_argument("--resume", action="store_true", help="continue from <out>/last.pt")
    p.set_defaults(func=_cmd_distill)

    p = sub.add_parser("card", help="the model card of a third-party ONNX model (YOLO, YOLOX, XFeat, LightGlue ...)")
    p.add_argument("--onnx", required=True, metavar="MODEL.onnx", help="the third-party ONNX model")
    p.add_argument(
        "--family",
        default="auto",
        choices=["auto", "yolo-detect", "yolo-segment", "yolox", "relative-depth", "keypoints", "lightglue"],
        help="its family (auto: recognised from its metadata and inputs/outputs)",
    )
    p.add_argument("--classes", metavar="FILE", help="class names, one per line (when the graph has none)")
    p.add_argument("--input-size", type=int, nargs=2, metavar=("H", "W"), help="for graphs with a dynamic input")
    p.add_argument("--out", metavar="CARD", help="where the card goes (default: next to the ONNX file)")
    p.set_defaults(func=_cmd_card)

    p = sub.add_parser("evaluate", help="metrics of an exported ONNX model through the node pipeline")
    p.add_argument("--task", choices=TRAINABLE, required=True, help="what the model does")
    p.add_argument(
        "--model", required=True, help="the exported .onnx (its card next to it) or a card that names its ONNX file"
    )
    p.add_argument("--photos", nargs="+", help="matching: held-out photos for homographic pairs")
    p.add_argument("--pose-model", help="depth: the pose network for the posenet odometry estimator")
    p.add_argument("--matcher-model", help="depth: the keypoint model for the pnp_learned odometry estimator")
    p.add_argument(
        "--glue-model", help="matching, and depth's pnp_learned: a LightGlue-style matcher card (default: mutual NN)"
    )
    p.add_argument(
        "--scale-source",
        choices=["model", "camera_height"],
        default="model",
        help="depth: metric scale from the network, or from the camera's height (the first ground-truth pose)",
    )
    p.add_argument(
        "--ground-segmenter",
        help="depth: a segmentation or multi-task model whose 'ground' pixels the hybrid estimator aligns "
        "(the nodes' ground_from_labels) instead of the depth map's plane; a multi-task --model can name itself",
    )
    p.add_argument(
        "--ground-corridor",
        type=float,
        default=2.0,
        help="depth: the hybrid aligns the ground within this many metres of the camera's axis (0: all of it; "
        "the nodes' ground_corridor)",
    )
    p.add_argument(
        "--rotation-jump",
        type=float,
        default=2.0,
        help="depth: the hybrid resolves the essential matrix's forward-motion ambiguity towards the smoother "
        "motion where its rotation jumps by more than this many degrees from the last frame's (0: off; the "
        "nodes' rotation_jump)",
    )
    p.add_argument(
        "--estimators",
        nargs="+",
        default=["posenet", "pnp", "pnp_learned", "essential"],
        choices=["posenet", "pnp", "pnp_learned", "essential", "hybrid"],
        help="depth: odometry estimators to run on the sequences (essential = the OpenCV baseline)",
    )
    p.add_argument(
        "--data", nargs="+", default=[], help="evaluation sets (matching: synthetic sequences for pose pairs)"
    )
    p.add_argument("--limit", type=int, default=0, help="at most this many images or frames (0 = all)")
    p.add_argument(
        "--camvid",
        nargs="?",
        const=True,
        metavar="ROOT",
        help="segmentation on CamVid: --camvid ROOT --split val --class-map FILE (bare --camvid: --data is the root, "
        "labels are the model's own ids)",
    )
    p.add_argument(
        "--depth-dir", metavar="DIR", help="depth on real images: DIR/rgb/*, DIR/depth/*.png (+ camera_info.yaml)"
    )
    p.add_argument("--depth-format", choices=["kitti", "nyu", "tum"], default="kitti", help="with --depth-dir")
    p.add_argument(
        "--hpatches", metavar="DIR", help="matching on HPatches sequences (image 1 vs 2..6, their homographies)"
    )
    p.add_argument("--split", default="val", choices=["train", "val", "test"], help="with --camvid ROOT")
    p.add_argument("--class-map", metavar="FILE", help="with --camvid ROOT: dataset class -> model class(es), YAML")
    p.add_argument(
        "--coco",
        metavar="ANN.json",
        help="detection on real images: a COCO annotation file (classes "
        "matched to the model's by name, the others left out; the mapping is printed)",
    )
    p.add_argument("--images", metavar="DIR", help="with --coco: the folder its file_name entries are in")
    p.add_argument("--json", metavar="OUT", help="also write the result to this file")
    p.set_defaults(func=_cmd_evaluate)

    from .students import add_parser as add_students

    add_students(sub, main)  # its stages are this CLI's commands
    p = sub.add_parser("plot", help="training curves of a run folder (PNG)")
    p.add_argument("run", help="a training run folder (its log.jsonl)")
    p.add_argument("--out", help="the PNG to write (default: RUN/curves.png)")
    p.set_defaults(func=_cmd_plot)

    p = data.add_parser("preview", help="picture of one frame of a training set (boxes, depth, labels, flow)")
    p.add_argument("dataset", help="a sequence folder written by `data synth`")
    p.add_argument("--frame", type=int, default=0, help="which frame")
    p.add_argument("--out", default="preview.png", help="the PNG to write")
    p.set_defaults(func=_cmd_preview)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["train-gpu"]:  # its own parser (argparse's REMAINDER does not pass on a leading --help)
        from .train.gpu_run import main as gpu_main

        return gpu_main(argv[1:])
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    return int(args.func(args) or 0)


if __name__ == "__main__":
    raise SystemExit(main())

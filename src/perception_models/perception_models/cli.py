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

from perception_models import __version__


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
    if args.task == "matching":
        return _train_matching(args)
    from .train.trainer import TrainConfig, train

    if not args.data or not args.val:
        print(f"perception-models train: --task {args.task} needs --data and --val", file=sys.stderr)
        return 2
    cfg = TrainConfig(
        task=args.task,
        data=args.data,
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
    )
    return _run_training(train, cfg, args)


def _train_matching(args: argparse.Namespace) -> int:
    from .train.matching_trainer import MatchTrainConfig, train_matching

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
    )
    return _run_training(train_matching, cfg, args)


def _train_depth(args: argparse.Namespace) -> int:
    from .train.depth_trainer import DepthTrainConfig, train_depth

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
        photometric=args.photometric,
        canonical_focal=args.canonical_focal,
        seed=args.seed,
        workers=args.workers,
        max_steps_per_epoch=args.max_steps_per_epoch,
        augment=not args.no_augment,
        frame_stride=args.frame_stride,
        scales=tuple(args.scales),
        init=args.init or "",
        device=args.device,
        time_budget_min=args.time_budget_min,
        cache_images=args.cache_images,
    )
    return _run_training(train_depth, cfg, args, cfg.metric_name)


def _cmd_plot(args: argparse.Namespace) -> int:
    from .train.trainer import plot_log

    print(plot_log(args.run, args.out))
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from .export import ExportError, export_depth, export_matching, export_model

    try:
        if args.task == "depth":
            card = export_depth(args.checkpoint, args.out, args.pose_out, args.eval, args.eval_limit, args.calibrate)
        elif args.task == "matching":
            card = export_matching(args.checkpoint, args.out, args.eval_photos, args.eval)
        else:
            card = export_model(args.task, args.checkpoint, args.out, args.eval, args.eval_limit)
    except (ExportError, FileNotFoundError, ValueError) as exc:
        print(f"perception-models export: {exc}", file=sys.stderr)
        return 2
    m = card.get("metrics", {})
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


def _cmd_evaluate(args: argparse.Namespace) -> int:
    import json

    from .evaluate import evaluate_depth, evaluate_detection, evaluate_matching, evaluate_segmentation

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
    if not args.data and not (args.task == "matching" and args.photos):
        print(
            "perception-models evaluate: --data is required" + (" (or --photos)" if args.task == "matching" else ""),
            file=sys.stderr,
        )
        return 2
    if args.task == "matching":
        result = evaluate_matching(args.model, args.photos or [], args.data)
    elif args.task == "depth":
        result = evaluate_depth(
            args.model, args.data, args.pose_model, tuple(args.estimators), args.limit, matcher_model=args.matcher_model
        )
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
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="perception-models", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--version", action="version", version=__version__)
    sub = parser.add_subparsers(dest="command")
    data = sub.add_parser("data", help="synthetic data, conversions").add_subparsers(dest="data_command", required=True)

    p = data.add_parser("synth", help="render synthetic sequences with ground truth for every task")
    p.add_argument("--preset", choices=["driving", "indoor"], default="driving")
    p.add_argument("--sequences", type=int, default=1)
    p.add_argument("--frames", type=int, default=100)
    p.add_argument("--seed", type=int, default=0, help="seed of the first sequence (+1 per sequence)")
    p.add_argument("--out", required=True)
    p.add_argument("--bag", action="store_true", help="also write a rosbag2 MCAP per sequence (<seq>/bag)")
    p.add_argument("--bag-only", action="store_true", help="write only the bag")
    p.add_argument("--width", type=int, default=640)
    p.add_argument("--height", type=int, default=480)
    p.add_argument("--fps", type=float, default=10.0)
    p.add_argument("--hfov", type=float, default=0.0, help="horizontal FOV in degrees (0: random 60-100)")
    p.add_argument("--randomization", type=float, default=1.0, help="camera effects strength, 0 = clean")
    p.add_argument("--depth", choices=["png", "npy"], default="png", help="uint16 mm PNG or float32 npy")
    p.add_argument("--no-flow", action="store_true", help="skip flow/occlusion to the next frame")
    p.add_argument("--photos", help="folder of real photos for textures (default: ../shared/data/camvid if present)")
    p.add_argument("--workers", type=int, default=max(1, min(4, os.cpu_count() or 1)))
    p.set_defaults(func=_cmd_synth)

    p = data.add_parser("bag-from-images", help="a rosbag2 MCAP from an image folder or a video")
    p.add_argument("--images", required=True, help="folder of images (sorted by name) or a video file")
    p.add_argument("--out", required=True)
    p.add_argument("--fps", type=float, default=10.0)
    p.add_argument("--topic", default="/camera/image_raw")
    p.add_argument("--frame-id", default="camera_optical_frame")
    p.add_argument("--camera-info", help="ROS camera_info YAML; published on <topic dir>/camera_info")
    p.add_argument("--encoding", choices=["rgb8", "bgr8", "mono8"], default="rgb8")
    p.add_argument("--max-frames", type=int, default=0)
    p.set_defaults(func=_cmd_bag_from_images)

    p = sub.add_parser("train", help="train a detector, a segmenter, or depth + pose networks")
    p.add_argument("--task", choices=["detection", "segmentation", "depth", "matching"], required=True)
    p.add_argument("--data", nargs="+", help="training sets (synthetic folders, or CamVid root with --camvid)")
    p.add_argument("--photos", nargs="+", help="matching: folders of real photos for homographic pairs")
    p.add_argument("--val-photos", nargs="+", help="matching: held-out photos for homographic validation pairs")
    p.add_argument("--descriptor-loss", choices=["triplet", "contrastive"], default="triplet", help="matching")
    p.add_argument("--mining", choices=["hard", "spatial"], default="hard", help="matching: negative mining")
    p.add_argument("--val", nargs="+", help="validation sets (other seeds)")
    p.add_argument("--out", required=True, help="run folder: log.jsonl, last.pt, best.pt")
    p.add_argument("--epochs", type=int, default=20)
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
        help="depth: predict depth for a canonical camera of this focal length (pixels at the input size; "
        "e.g. 152 = 80 degrees across 256 px) and convert with each camera's intrinsics, so that metric "
        "depth holds across lenses (Metric3D); 0: off",
    )
    p.add_argument("--frame-stride", type=int, default=1, help="depth: frames between the target and its sources")
    p.add_argument(
        "--scales",
        type=int,
        nargs="+",
        default=[0, 1, 2, 3],
        choices=[0, 1, 2, 3],
        help="depth: decoder scales the photometric loss uses (Monodepth2: all four; 0 alone is ~2x cheaper)",
    )
    p.add_argument("--loss", choices=["focal", "ohem"], default="focal", help="detector classification loss")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=0, help="data loader processes")
    p.add_argument("--max-steps-per-epoch", type=int, default=0)
    p.add_argument(
        "--camvid", action="store_true", help="--data/--val are CamVid roots (train/, trainannot/, val/, valannot/)"
    )
    p.add_argument("--no-augment", action="store_true")
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
        "detection/segmentation/depth also take an exported .onnx (e.g. the shipped models/segmenter.onnx)",
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
        help="detection/segmentation/depth: fit the number of steps (and the cosine schedule) to this many "
        "minutes from the rate of the first steps; --epochs is then an upper bound",
    )
    p.add_argument(
        "--ema",
        type=float,
        default=0.0,
        help="detection/segmentation: validate, keep and export a moving average of the weights with this "
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
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser(
        "train-gpu",
        add_help=False,
        help="one GPU: render scenes on every core, then fine-tune detector, segmenter and depth within a "
        "budget (train/gpu_run.py; `perception-models train-gpu --help`)",
    )
    p.add_argument("rest", nargs=argparse.REMAINDER)  # main() hands everything after the name to gpu_run

    p = sub.add_parser("export", help="ONNX + model card from a checkpoint, checked against torch and for TensorRT")
    p.add_argument("--task", choices=["detection", "segmentation", "depth", "matching"], required=True)
    p.add_argument("--eval-photos", nargs="+", help="matching: held-out photos for homographic pairs")
    p.add_argument("--pose-out", help="depth: where the pose network goes (default: pose.onnx next to --out)")
    p.add_argument("--calibrate", nargs="+", help="depth: training sequences to fit the metric scale factor on")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--out", required=True, help="path of the .onnx; the card is written next to it")
    p.add_argument("--eval", nargs="*", default=None, help="held-out sets to measure the card's metrics on")
    p.add_argument("--eval-limit", type=int, default=0, help="at most this many images (0 = all)")
    p.set_defaults(func=_cmd_export)

    p = sub.add_parser("evaluate", help="metrics of an exported ONNX model through the node pipeline")
    p.add_argument("--task", choices=["detection", "segmentation", "depth", "matching"], required=True)
    p.add_argument("--model", required=True)
    p.add_argument("--photos", nargs="+", help="matching: held-out photos for homographic pairs")
    p.add_argument("--pose-model", help="depth: the pose network for the posenet odometry estimator")
    p.add_argument("--matcher-model", help="depth: the keypoint model for the pnp_learned odometry estimator")
    p.add_argument(
        "--estimators",
        nargs="+",
        default=["posenet", "pnp", "pnp_learned", "essential"],
        choices=["posenet", "pnp", "pnp_learned", "essential"],
        help="depth: odometry estimators to run on the sequences (essential = the OpenCV baseline)",
    )
    p.add_argument(
        "--data", nargs="+", default=[], help="evaluation sets (matching: synthetic sequences for pose pairs)"
    )
    p.add_argument("--limit", type=int, default=0)
    p.add_argument("--camvid", action="store_true", help="data is a CamVid root: evaluate on val/ + valannot/")
    p.add_argument(
        "--coco",
        metavar="ANN.json",
        help="detection on real images: a COCO annotation file (classes "
        "matched to the model's by name, the others left out; the mapping is printed)",
    )
    p.add_argument("--images", metavar="DIR", help="with --coco: the folder its file_name entries are in")
    p.add_argument("--json", metavar="OUT", help="also write the result to this file")
    p.set_defaults(func=_cmd_evaluate)

    p = sub.add_parser("plot", help="training curves of a run folder (PNG)")
    p.add_argument("run")
    p.add_argument("--out")
    p.set_defaults(func=_cmd_plot)

    p = data.add_parser("preview", help="picture of one frame of a training set (boxes, depth, labels, flow)")
    p.add_argument("dataset")
    p.add_argument("--frame", type=int, default=0)
    p.add_argument("--out", default="preview.png")
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

"""Real footage in, students out: one command that turns a robot's camera footage (a bag or image
folders, no labels) into small students for the chosen tasks, each exported with its card.

    perception-models students --bag robot.mcap --tasks detection segmentation depth matching \\
        --synthetic data/synth/* --val data/synth_val/* --out runs/students --time-budget-min 30

One stage per task, each the command a user would run by hand (so each can also be rerun alone):

- detection:    ``distill --task detection`` (teacher boxes, ``--detection-teacher``, class map
  config/class_maps/coco_to_detector.yaml) from the shipped detector, then ``export``;
- segmentation: ``distill --task segmentation`` (teacher instance masks, ``--segmentation-teacher``,
  config/class_maps/coco_to_segmenter.yaml; other pixels ignored) from the shipped segmenter, then ``export``;
- depth:        ``train --task depth`` self-supervised on the footage (photometric reprojection; a
  bag, or the image folders made into one with ``--camera-info``) next to the metric synthetic
  supervision, with ``--relative-depth-teacher`` when there is one, from the shipped depth + pose
  models, then ``export``. With ``--trajectory`` (the camera's poses: RTK, motion capture, a
  lidar-SLAM map) it learns from the footage's own metric depth instead: ``data reference-depth``
  triangulates the tracked corners from the poses and adds the segmented ground on the plane under
  the camera (``--ground-prior``), and the student is supervised by that beside the renders, no
  photometric term, each image's error weighed once (``--supervised-per-image``) and half the
  triplets zoomed (``--depth-zoom``) (on KITTI the recipe that beat the shipped model on held-out
  frames: docs/model-history.md, "Depth on real frames" and the sittings after it).
  ``--trajectory odometry``: footage with no pose source but a known mounting (``--camera-height``,
  ``--camera-pitch``) takes its poses from the nodes' hybrid odometry (data/odometry_trajectory.py),
  cut into segments where a frame fails, and the triangulation re-fits their translations
  (``--refine-translations``);
- matching:     ``train --task matching`` on homographic pairs of the footage's frames (and the
  synthetic pairs), distilling ``--keypoint-teacher`` (XFeat) when given, from the shipped
  keypoint model, then ``export``.

Every stage chooses ``best.pt`` on the synthetic ``--val`` scenes only: the real evaluation sets
(VOC-100, CamVid val) are never seen; measure the students on them afterwards with
``perception-models evaluate``. ``<out>/students.json`` lists what each stage made.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

STAGES = ("detection", "segmentation", "depth", "matching")


def _run(main: Callable[[list[str]], int], argv: list[str]) -> None:
    import time

    print("\n$ perception-models " + " ".join(argv), flush=True)
    start = time.monotonic()
    code = main(argv)
    if code:
        raise RuntimeError(f"perception-models {' '.join(argv[:3])} ... failed (exit {code})")
    print(f"(perception-models {' '.join(argv[:3])} ...: {time.monotonic() - start:.0f} s)", flush=True)


def footage_frames(args: argparse.Namespace, out: Path) -> Path:
    """The footage's frames as one image folder (``<out>/frames``; matching's photos), once."""
    import cv2

    from .distill import frames_from

    folder = out / "frames"
    if (folder / ".complete").is_file():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    for f in frames_from(args.images or [], args.bag or [], args.topic, args.every):
        rgb = f.image()
        cv2.imwrite(str(folder / f"{f.name}.png"), rgb[:, :, ::-1] if rgb.ndim == 3 else rgb)
    (folder / ".complete").write_text("")
    return folder


def reference_sequence(args: argparse.Namespace, out: Path) -> Path:
    """The footage with its poses as a sequence folder (``<out>/depth_reference``: ``rgb/``,
    ``camera_info.yaml``, ``trajectory_tum.txt``), what ``data reference-depth`` triangulates, once.
    ``args.trajectory`` (TUM: time, position, quaternion of the camera's optical frame in a z-up world,
    metres) holds one pose per frame of an image folder, in order, or poses matched to a bag's image
    stamps (within 20 ms; images without one are left out). K from ``--camera-info`` or the bag."""
    import cv2
    import yaml

    from perception_nodes.image_conversion import list_images

    from .data.camera_info import camera_info_dict
    from .data.readers.common import read_rgb
    from .data.readers.tum import read_tum_trajectory, tum_line
    from .train.depth_data import read_camera_matrix

    folder = out / "depth_reference"
    if (folder / ".complete").is_file():
        return folder
    if len(args.images or []) + len(args.bag or []) != 1:
        raise ValueError("--trajectory describes one recording: give one --images folder or one --bag")
    times, poses = read_tum_trajectory(args.trajectory)
    K = read_camera_matrix(Path(args.camera_info))[0] if args.camera_info else None
    if args.images:
        root = Path(args.images[0])
        files = list_images(root)
        if len(files) != len(poses):
            raise ValueError(f"{root}: {len(files)} images but {len(poses)} poses in {args.trajectory} (one per image)")
        frames = ((read_rgb(f), poses[i], times[i], None) for i, f in enumerate(files))
        if K is None:
            raise ValueError("--trajectory with --images needs --camera-info (a ROS camera_info YAML)")
    else:
        from .data.readers.rosbag import read_images

        order, counts = np.argsort(times), [0, 0]
        frames = _with_poses(read_images(args.bag[0], args.topic), times[order], poses[order], counts)
    (folder / "rgb").mkdir(parents=True, exist_ok=True)
    lines = []
    for n, (rgb, T, t, K_bag) in enumerate(frames):
        K = K if K is not None else K_bag
        cv2.imwrite(str(folder / "rgb" / f"{n:06d}.png"), rgb[:, :, ::-1])
        lines.append(tum_line(t, T))
        h, w = rgb.shape[:2]
    if args.bag:
        print(f"{counts[1]} of {counts[0]} images have a pose", flush=True)
        if counts[1] < 3:
            raise ValueError(f"{args.bag[0]} {args.topic}: {counts[1]} images have a pose within 20 ms")
        if K is None:
            raise ValueError(f"{args.bag[0]} has no CameraInfo: give --camera-info")
    (folder / "camera_info.yaml").write_text(yaml.safe_dump(camera_info_dict(K, w, h, "footage"), sort_keys=False))
    (folder / "trajectory_tum.txt").write_text("\n".join(lines) + "\n")
    (folder / ".complete").write_text("")
    return folder


def odometry_reference_sequences(args: argparse.Namespace, out: Path) -> list[Path]:
    """``--trajectory odometry``: the footage's poses from its own frames (the nodes' hybrid
    odometry with the camera's ``--camera-height`` and ``--camera-pitch``, the ground from
    ``--ground-segmenter``; :mod:`.data.odometry_trajectory`), one sequence folder per segment
    between failed frames (``<out>/depth_reference_odometry/segment_NN``, each what
    :func:`reference_sequence` writes), once; ``odometry.json`` says what was left out."""
    import cv2
    import yaml

    from perception_nodes.image_conversion import list_images
    from perception_nodes.workspace import resolve_path

    from .data.camera_info import camera_info_dict
    from .data.odometry_trajectory import odometry_segments
    from .data.readers.common import read_rgb
    from .data.readers.tum import tum_line
    from .train.depth_data import read_camera_matrix

    root = out / "depth_reference_odometry"
    if (root / ".complete").is_file():
        return sorted(p for p in root.glob("segment_*") if p.is_dir())
    if len(args.images or []) + len(args.bag or []) != 1:
        raise ValueError("--trajectory odometry follows one recording: give one --images folder or one --bag")
    if not args.camera_height or args.camera_height <= 0:
        raise ValueError("--trajectory odometry needs --camera-height (metres above the ground): it gives the scale")
    K = read_camera_matrix(Path(args.camera_info))[0] if args.camera_info else None
    if args.images:
        if K is None:
            raise ValueError("--trajectory odometry with --images needs --camera-info (a ROS camera_info YAML)")
        files = list_images(Path(args.images[0]))
        source = ((read_rgb(f), i * 0.1) for i, f in enumerate(files))  # times: frame order at 10 Hz
    else:
        from .data.readers.rosbag import read_images

        images = iter(read_images(args.bag[0], args.topic))
        first = next(images, None)
        if first is None:
            raise ValueError(f"{args.bag[0]} {args.topic}: no images")
        K = K if K is not None else first.K
        if K is None:
            raise ValueError(f"{args.bag[0]} has no CameraInfo: give --camera-info")
        source = ((im.rgb, im.stamp_ns * 1e-9) for im in (first, *images))
    frames_dir = root / "frames"
    frames_dir.mkdir(parents=True, exist_ok=True)
    times: list[float] = []
    size: list[int] = []

    def written():  # each frame to disk as the odometry passes over it (a long bag never sits in memory)
        for n, (rgb, t) in enumerate(source):
            cv2.imwrite(str(frames_dir / f"{n:06d}.png"), rgb[:, :, ::-1])
            times.append(t)
            size[:] = [rgb.shape[1], rgb.shape[0]]
            yield rgb

    segments, summary = odometry_segments(
        written(),
        np.asarray(K, np.float64).reshape(3, 3),
        args.camera_height,
        resolve_path("models/depth.onnx"),
        resolve_path(args.ground_segmenter) if args.ground_segmenter else None,
        pitch_deg=args.camera_pitch,
    )
    if not times:
        raise ValueError(f"{(args.images or args.bag)[0]}: no frames")
    folders = []
    info = yaml.safe_dump(camera_info_dict(np.asarray(K).reshape(3, 3), size[0], size[1], "footage"), sort_keys=False)
    for k, seg in enumerate(segments):
        folder = root / f"segment_{k:02d}"
        (folder / "rgb").mkdir(parents=True, exist_ok=True)
        for j, (i, _T) in enumerate(seg):
            target = folder / "rgb" / f"{j:06d}.png"
            target.unlink(missing_ok=True)
            target.hardlink_to(frames_dir / f"{i:06d}.png")
        (folder / "camera_info.yaml").write_text(info)
        (folder / "trajectory_tum.txt").write_text("\n".join(tum_line(times[i], T) for i, T in seg) + "\n")
        folders.append(folder)
    (root / "odometry.json").write_text(json.dumps(summary, indent=1))
    print(
        f"odometry over {summary['frames']} frames: {len(folders)} segment(s) of {summary['segments']} frames, "
        f"{summary['frames_left_out']} left out, {summary['refitted']} refitted; failed: {summary['failed'] or 'none'}",
        flush=True,
    )
    if not folders:
        raise ValueError(f"odometry placed no 3 consecutive frames of the footage: {summary['failed']}")
    (root / ".complete").write_text("")
    return folders


def _with_poses(
    images: Iterator[Any], times: np.ndarray, poses: np.ndarray, counts: list[int], max_dt: float = 0.02
) -> Iterator[tuple[np.ndarray, np.ndarray, float, np.ndarray | None]]:
    """A bag's images (streamed: a long bag never sits in memory) with the pose nearest in time
    (``times`` sorted), within ``max_dt`` s and each pose used once: (rgb, T, time, K); ``counts``
    becomes [images, matched]."""
    used: set[int] = set()
    for im in images:
        counts[0] += 1
        t = im.stamp_ns * 1e-9
        j = int(np.searchsorted(times, t))
        k = min((k for k in (j - 1, j) if 0 <= k < len(times)), key=lambda k: abs(times[k] - t))
        if abs(times[k] - t) <= max_dt and k not in used:
            used.add(k)
            counts[1] += 1
            yield im.rgb, poses[k], float(times[k]), im.K


def run_students(args: argparse.Namespace, main: Callable[[list[str]], int]) -> int:
    """The stages for ``args.tasks``, each run through ``main`` (perception_models.cli.main)."""
    from perception_nodes.workspace import resolve_path

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    footage = [*(["--images", *args.images] if args.images else []), *(["--bag", *args.bag] if args.bag else [])]
    common = ["--time-budget-min", str(args.time_budget_min), "--epochs", str(args.epochs), "--device", args.device]
    val = ["--val", *args.val]
    synthetic = args.synthetic or []
    made: dict[str, Any] = {}
    for task in args.tasks:
        run = out / task
        model = run / f"{task}.onnx"
        if task in ("detection", "segmentation"):
            teacher = args.detection_teacher if task == "detection" else args.segmentation_teacher
            if not teacher:
                raise ValueError(f"--tasks {task} needs --{task}-teacher CARD (perception-models card)")
            cmap = args.detection_class_map if task == "detection" else args.segmentation_class_map
            _run(main, ["distill", "--task", task, "--teacher", teacher, *footage, "--topic", args.topic,
                  "--every", str(args.every), "--class-map", str(resolve_path(cmap)),
                  *(["--synthetic", *synthetic] if synthetic else []), *val,
                  "--init", str(resolve_path(f"models/{task}.onnx")), "--out", str(run), *common])  # fmt: skip
        elif task == "depth" and args.trajectory:
            seqs = (
                odometry_reference_sequences(args, out)
                if args.trajectory == "odometry"
                else [reference_sequence(args, out)]
            )
            for seq in seqs:
                if not (seq / "depth" / "reference_depth.json").is_file():
                    ground = (
                        ["--ground-prior", str(resolve_path(args.ground_segmenter))] if args.ground_segmenter else []
                    )
                    _run(main, ["data", "reference-depth", "--sequence", str(seq), *ground,
                          *(["--camera-height", str(args.camera_height)] if args.camera_height else []),
                          *(["--refine-translations"] if args.trajectory == "odometry" else [])])  # fmt: skip
            _run(main, ["train", "--task", "depth", "--data", *synthetic,
                  *[str(seq) for seq in seqs] * args.reference_repeat,
                  "--supervised", "1", "--supervised-per-image", "--photometric", "0", "--scales", "0",
                  "--depth-zoom", str(args.depth_zoom), "--lr", "2e-4", "--ema", "0.998",
                  "--cache-images", "--init", str(resolve_path("models/depth.onnx")), *val, "--out", str(run),
                  *common])  # fmt: skip
        elif task == "depth":
            bags = list(args.bag or [])
            if args.images:  # image folders become a bag (frames in order, the camera's intrinsics)
                if not args.camera_info:
                    raise ValueError("--tasks depth from --images needs --camera-info (a ROS camera_info YAML)")
                for i, folder in enumerate(args.images):
                    bag = out / f"footage_{i}.bag"
                    if not bag.exists():
                        _run(main, ["data", "bag-from-images", "--images", folder, "--out", str(bag),
                              "--camera-info", args.camera_info, "--topic", args.topic])  # fmt: skip
                    bags.append(str(bag))
            _run(main, ["train", "--task", "depth", *(["--data", *synthetic] if synthetic else []), "--bag", *bags,
                  "--topic", args.topic, *(["--camera-info", args.camera_info] if args.camera_info else []),
                  *(["--relative-teacher", args.relative_depth_teacher] if args.relative_depth_teacher else []),
                  "--init", str(resolve_path("models/depth.onnx")), *val, "--out", str(run), *common])  # fmt: skip
        elif task == "matching":
            photos = footage_frames(args, out)
            _run(main, ["train", "--task", "matching", "--photos", str(photos),
                  *(["--data", *synthetic] if synthetic else []),
                  *(["--teacher", args.keypoint_teacher] if args.keypoint_teacher else []),
                  "--init", str(resolve_path("models/matching.onnx")), *val, "--out", str(run), *common])  # fmt: skip
        else:
            raise ValueError(f"unknown task '{task}': one of {STAGES}")
        checkpoint = run / "best.pt"
        _run(
            main, ["export", "--task", task, "--checkpoint", str(checkpoint), "--out", str(model), "--eval", *args.val]
        )
        made[task] = {"model": str(model), "card": str(model.with_name(f"{task}.card.yaml")), "run": str(run)}
        (out / "students.json").write_text(json.dumps({"footage": footage, "students": made}, indent=2))
    print(f"\nstudents in {out}: " + ", ".join(f"{t} -> {m['model']}" for t, m in made.items()))
    return 0


def add_parser(sub: Any, main: Callable[[list[str]], int]) -> None:
    """The ``students`` sub-command; its stages run through ``main``, the CLI's own entry point."""
    p = sub.add_parser(
        "students",
        help="a robot's footage (bag or images, no labels) -> distilled / self-supervised students with cards",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--images", nargs="+", help="folders of the camera's frames")
    p.add_argument("--bag", nargs="+", help="rosbag2 recordings of the camera")
    p.add_argument("--topic", default="/camera/image_raw", help="the bags' image topic")
    p.add_argument("--every", type=int, default=1, help="use every N-th frame (teacher passes, matching photos)")
    p.add_argument("--camera-info", help="ROS camera_info YAML (depth from image folders or bags without CameraInfo)")
    p.add_argument("--tasks", nargs="+", choices=STAGES, default=list(STAGES), help="which students to make")
    p.add_argument("--detection-teacher", metavar="CARD", help="a detection teacher's card (YOLOv8n, YOLOX ...)")
    p.add_argument("--segmentation-teacher", metavar="CARD", help="an instance teacher's card (YOLOv8n-seg)")
    p.add_argument("--keypoint-teacher", metavar="CARD", help="a raw keypoint model's card (XFeat) for matching")
    p.add_argument("--relative-depth-teacher", metavar="CARD", help="a relative-depth model's card (Depth Anything)")
    p.add_argument(
        "--trajectory",
        metavar="TUM",
        help="depth: the camera's poses (TUM: time x y z qx qy qz qw of its optical frame in a z-up world, metres; "
        "one per image of --images, or matched to the --bag's stamps): train on depth triangulated from them; "
        "'odometry': the poses from the footage itself (the hybrid odometry; needs --camera-height)",
    )
    p.add_argument(
        "--camera-pitch", type=float, default=0.0, help="with --trajectory odometry: degrees the camera looks down"
    )
    p.add_argument(
        "--camera-height",
        type=float,
        help="with --trajectory: metres above the ground (default: the first pose's z; required with odometry)",
    )
    p.add_argument(
        "--ground-segmenter",
        default="models/segmentation.onnx",
        help="with --trajectory: the model whose 'ground' class is filled on the plane under the camera ('' = none)",
    )
    p.add_argument("--reference-repeat", type=int, default=8, help="with --trajectory: times the footage repeats")
    p.add_argument(
        "--depth-zoom",
        type=float,
        default=1.4,
        help="with --trajectory: train --depth-zoom (half the triplets cut to 1/z of the frame, z up to this; "
        "1: off); on KITTI, at the same step count, held-out median-scaled AbsRel 0.150 -> 0.131 (model history)",
    )
    p.add_argument(
        "--detection-class-map",
        default="config/class_maps/coco_to_detector.yaml",
        help="YAML: detector class -> teacher class(es)",
    )
    p.add_argument(
        "--segmentation-class-map",
        default="config/class_maps/coco_to_segmenter.yaml",
        help="YAML: segmenter class -> teacher class(es); the segmenter's other classes are ignored in teacher labels",
    )
    p.add_argument(
        "--synthetic", nargs="+", help="synthetic training sets (their ground truth keeps the students honest)"
    )
    p.add_argument("--val", nargs="+", required=True, help="synthetic held-out sets: choose best.pt, fill the cards")
    p.add_argument("--out", required=True, help="run folder: one sub-folder per task, students.json")
    p.add_argument("--time-budget-min", type=float, default=30.0, help="minutes of training per task")
    p.add_argument("--epochs", type=int, default=20, help="epochs per task (an upper bound with the budget)")
    p.add_argument("--device", default="auto", help="auto (a GPU when CUDA works), cpu, cuda or cuda:N")
    p.set_defaults(func=lambda args: _cmd_students(args, main))


def _cmd_students(args: argparse.Namespace, main: Callable[[list[str]], int]) -> int:
    if not args.images and not args.bag:
        print("perception-models students: give the footage: --images DIR... and/or --bag BAG...", file=sys.stderr)
        return 2
    try:
        return run_students(args, main)
    except (ValueError, RuntimeError, FileNotFoundError) as exc:
        print(f"perception-models students: {exc}", file=sys.stderr)
        return 2

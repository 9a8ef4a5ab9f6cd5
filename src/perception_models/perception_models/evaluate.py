"""Evaluate an exported ONNX model the way the nodes run it: ONNX Runtime through the node's own
pipeline (letterbox, postprocess, mapping back to the input image), against ground truth in the
input image's pixels.

Detection protocol: COCO AP over the thing classes; ground-truth boxes smaller than
``min_height`` pixels (visible height in the input image; KITTI uses a minimum height the same
way) or with fewer than ``min_pixels`` visible pixels are *ignored* (COCO crowd semantics:
detecting them is neither rewarded nor punished).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from itertools import chain, islice
from pathlib import Path
from typing import Any

import numpy as np

from perception_nodes.tools.protocol import MIN_HEIGHT, MIN_PIXELS, ignored_ground_truth

from .data.readers.coco import load_coco
from .data.readers.common import read_rgb
from .data.readers.labels import read_label_png
from .metrics import ConfusionMatrix, DetectionEvaluator
from .node_pipelines import ground_segmenter as _ground_segmenter
from .node_pipelines import node_pipeline


def detection_frames(
    pipe: Any,
    classes: list[str],
    root: Path | str,
    min_height: float = MIN_HEIGHT,
    min_pixels: int = MIN_PIXELS,
    image_root: Path | str | None = None,
) -> Iterator[tuple]:
    """Per frame of a sequence folder (or a COCO file, its images under ``image_root``), lazily:
    ``DetectionEvaluator.add``'s arguments (ground truth of the ``classes``, matched by name, the
    pipeline's detections, the ignored boxes). Ground truth of other classes is left out."""
    root = Path(root)
    index = {n: i for i, n in enumerate(classes)}
    for s in load_coco(root / "annotations_coco.json" if root.is_dir() else root, image_root)[0]:
        keep = [k for k, name in enumerate(s.labels) if name in index]
        gt = s.boxes[keep]
        small = ignored_ground_truth(gt, s.areas[keep] if s.areas is not None else None, min_height, min_pixels)
        det = pipe.run(read_rgb(s.image_path))
        yield (gt, [index[s.labels[k]] for k in keep], det.boxes, det.scores, det.class_ids, small | s.difficult[keep])


def segmentation_frames(
    pipe: Any, root: Path | str, image_dir: str = "rgb", label_dir: str = "labels", lut: np.ndarray | None = None
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Per labelled frame of a folder, lazily: (ground-truth class ids, the pipeline's class ids)."""
    for img in sorted((Path(root) / image_dir).glob("*.png")):
        lab = Path(root) / label_dir / img.name
        if lab.is_file():
            yield read_label_png(lab, lut), pipe.run(read_rgb(img)).labels


def evaluate_detection(
    model: Path | str,
    data: list[Path | str],
    limit: int = 0,
    score_threshold: float = 0.05,
    min_height: float = MIN_HEIGHT,
    min_pixels: int = MIN_PIXELS,
) -> dict[str, Any]:
    pipe, card = node_pipeline(Path(model), "detection", score_threshold=score_threshold)
    ev = DetectionEvaluator(card.num_classes, card.classes)
    frames = chain.from_iterable(detection_frames(pipe, card.classes, r, min_height, min_pixels) for r in data)
    for frame in islice(frames, limit or None):
        ev.add(*frame)
    out = ev.summary()
    out["protocol"] = (
        f"COCO AP, ONNX Runtime through DetectionPipeline; ground truth lower than {min_height:g} px "
        f"or under {min_pixels} visible pixels ignored"
    )
    return out


def evaluate_detection_coco(
    model: Path | str, annotations: Path | str, images: Path | str, limit: int = 0, score_threshold: float = 0.05
) -> dict[str, Any]:
    """A detection model on real images with COCO annotations (e.g. ../shared/data/voc_det100):
    the dataset's classes are matched to the card's by name; the others are left out of both the
    ground truth and the score (the mapping is in the result). mAP averages the classes that have
    ground truth (DetectionEvaluator: a class without any has no AP)."""
    _samples, names = load_coco(annotations, images)
    pipe, card = node_pipeline(Path(model), "detection", score_threshold=score_threshold)
    ev = DetectionEvaluator(card.num_classes, card.classes)
    frames = detection_frames(pipe, card.classes, annotations, MIN_HEIGHT, MIN_PIXELS, images)
    for frame in islice(frames, limit or None):
        ev.add(*frame)
    out = ev.summary()
    shared = [c for c in card.classes if c in names]
    out["class_mapping"] = {
        "matched": shared,
        "ignored_dataset_classes": sorted(set(names) - set(shared)),
        "model_classes_without_data": sorted(set(card.classes) - set(shared)),
    }
    out["protocol"] = (
        f"COCO AP on real images ({images}), ONNX Runtime through DetectionPipeline, the model's classes matched to "
        f"the dataset's by name; ground truth lower than {MIN_HEIGHT:g} px or under {MIN_PIXELS} pixels ignored"
    )
    return out


def evaluate_segmentation(
    model: Path | str,
    data: list[Path | str],
    limit: int = 0,
    image_dir: str = "rgb",
    label_dir: str = "labels",
    lut: np.ndarray | None = None,
) -> dict[str, Any]:
    pipe, card = node_pipeline(Path(model), "segmentation")
    cm = ConfusionMatrix(card.num_classes, card.classes)
    n = 0
    frames = chain.from_iterable(segmentation_frames(pipe, r, image_dir, label_dir, lut) for r in data)
    for target, prediction in islice(frames, limit or None):
        cm.add(target, prediction)
        n += 1
    out = cm.summary()
    out["protocol"] = "mIoU at the input image's resolution, ONNX Runtime through SegmentationPipeline"
    out["images"] = n
    return out


def read_class_map(path: Path | str) -> dict[str, list[str]]:
    """A class-map YAML: ``dataset class: model class`` (or a list of model classes)."""
    import yaml

    d = yaml.safe_load(Path(path).read_text()) or {}
    if not isinstance(d, dict):
        raise ValueError(f"{path}: a class map is a mapping 'dataset class: model class(es)'")
    return {str(k): [str(v)] if isinstance(v, str) else [str(x) for x in v] for k, v in d.items()}


def evaluate_segmentation_mapped(
    model: Path | str,
    root: Path | str,
    class_map: dict[str, list[str]],
    split: str = "val",
    dataset_classes: tuple[str, ...] | None = None,
    limit: int = 0,
) -> dict[str, Any]:
    """IoU on a labelled real data set (CamVid layout: ``<split>/`` images, ``<split>annot/`` class-id
    PNGs) of the dataset classes ``class_map`` names, each against the model classes mapped to it.
    Other dataset classes are ignored for a semantic model; for an instance model (YOLO-seg, whose
    label 0 means "none of my classes") they are its background, so a mask on the road is a false
    positive. The dataset's void label (CamVid 11) is always ignored."""
    from .data.readers.labels import CAMVID11, IGNORE

    names = list(dataset_classes or CAMVID11)
    pipe, card = node_pipeline(Path(model), "segmentation")
    model_names = pipe.label_names
    unknown = sorted({m for ms in class_map.values() for m in ms} - set(model_names))
    if unknown:
        raise ValueError(f"class map names model classes {unknown} the model does not have ({model_names[:12]}...)")
    missing = sorted(set(class_map) - set(names))
    if missing:
        raise ValueError(f"class map names dataset classes {missing}; the dataset's are {names}")
    # dataset classes mapped to the same model classes are one class here (road + pavement -> ground)
    groups: dict[tuple[str, ...], list[str]] = {}
    for d, ms in class_map.items():
        groups.setdefault(tuple(sorted(set(ms))), []).append(d)
    used: dict[str, tuple[str, ...]] = {}
    for ms in groups:
        for m in ms:
            if m in used:
                raise ValueError(f"model class '{m}' is mapped from {groups[used[m]]} and {groups[ms]}: merge them")
            used[m] = ms
    keys = ["+".join(ds) for ds in groups.values()]
    group_of = {d: k for k, ds in enumerate(groups.values()) for d in ds}
    other = len(keys)  # "anything else"
    instance = pipe.detector is not None
    gt_lut = np.full(256, IGNORE, np.uint8)
    for i, n in enumerate(names):
        gt_lut[i] = group_of[n] if n in group_of else (other if instance else IGNORE)
    pred_lut = np.full(256, other, np.uint8)
    for k, ms in enumerate(groups):
        for m in ms:
            pred_lut[model_names.index(m)] = k
    cm = ConfusionMatrix(len(keys) + 1, keys + ["other"])
    images = sorted(Path(root, split).glob("*.png"))
    n = 0
    for img in images[: limit or None]:
        lab = Path(root, split + "annot", img.name)
        if not lab.is_file():
            continue
        cm.add(read_label_png(lab, gt_lut), pred_lut[pipe.run(read_rgb(img)).labels])
        n += 1
    iou = cm.iou()[: len(keys)]
    return {
        "mIoU": float(np.nanmean(iou)) if n else float("nan"),
        "per_class": {k: (None if np.isnan(v) else float(v)) for k, v in zip(keys, iou)},
        "pixel_accuracy": cm.summary()["pixel_accuracy"],
        "class_map": class_map,
        "images": n,
        "protocol": f"IoU on {root}/{split} through SegmentationPipeline; dataset classes outside the map "
        + ("are the model's background" if instance else "ignored"),
    }


# A small set anyone can regenerate bit for bit (no photo textures, fixed seeds): the shipped
# models' cards record their metric on it, and a test checks they still reproduce it.
REPRODUCTION = ({"preset": "driving", "seed": 900, "frames": 12}, {"preset": "indoor", "seed": 950, "frames": 12})
REPRODUCTION_TOLERANCE = 0.01


REPRODUCTION_CACHE = "~/.cache/perception/reproduction"


def _renderer_key() -> str:
    """What the reproduction frames depend on: the renderer's and the writer's source, the sets'
    specs, numpy's and OpenCV's versions. A cached copy under another key is never used."""
    import hashlib

    import cv2

    from .data import synth, writers

    h = hashlib.sha256(json.dumps([REPRODUCTION, np.__version__, cv2.__version__]).encode())
    for f in [*sorted(Path(synth.__file__).parent.glob("*.py")), Path(writers.__file__)]:
        h.update(f.name.encode() + f.read_bytes())
    return h.hexdigest()[:16]


def _digest(folder: Path) -> dict[str, str]:
    import hashlib

    return {
        str(f.relative_to(folder)): hashlib.sha256(f.read_bytes()).hexdigest()
        for f in sorted(folder.rglob("*"))
        if f.is_file() and f.name != "files.sha256.json"
    }


def reproduction_sets(root: Path | str | None = None) -> list[Path]:
    """The reproduction sets' folders, written under ``root`` when not there yet. Without ``root``
    they are rendered once per machine into :data:`REPRODUCTION_CACHE` (keyed by
    :func:`_renderer_key`, every file's sha256 checked on each use, rendered again when one
    differs): every export measures its card's reproduction metric on them, and rendering them
    (about 8 s) each time was most of a small model's export."""
    import os
    import shutil
    import tempfile

    from .data.synth import SynthConfig, SyntheticSequence
    from .data.writers import write_sequence

    def render(into: Path) -> list[Path]:
        out = []
        for spec in REPRODUCTION:
            folder = into / f"{spec['preset']}_{spec['seed']:04d}"
            if not (folder / "manifest.json").is_file():
                write_sequence(SyntheticSequence(SynthConfig(**spec)), folder, flow=False, workers=1, progress=False)
            out.append(folder)
        return out

    if root is not None:
        return render(Path(root))
    cache = Path(os.path.expanduser(REPRODUCTION_CACHE)) / _renderer_key()
    if cache.is_dir():
        try:
            if json.loads((cache / "files.sha256.json").read_text()) == _digest(cache):
                return render(cache)  # every folder there: nothing rendered
        except (OSError, ValueError):  # no record of what was written
            pass
        shutil.rmtree(cache, ignore_errors=True)  # not what was written: rendered again below
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=cache.name + ".", dir=cache.parent))
    render(tmp)
    (tmp / "files.sha256.json").write_text(json.dumps(_digest(tmp)))
    try:
        tmp.rename(cache)  # atomic: a concurrent export sees the whole set or none
    except OSError:  # another process got there first: use its copy
        shutil.rmtree(tmp, ignore_errors=True)
    return render(cache)


def _warn_plane_filled(depth_dir: Path) -> None:
    """Say so when a depth folder's ground truth was partly filled from a ground plane
    (``data reference-depth --ground-prior``): training targets, not a reference."""
    import sys

    info = depth_dir / "reference_depth.json"
    if info.is_file() and json.loads(info.read_text()).get("ground_prior"):
        print(
            f"warning: {depth_dir} holds ground pixels filled from a plane (reference-depth --ground-prior): "
            "training targets; these errors partly measure the plane, not a reference",
            file=sys.stderr,
        )


def evaluate_depth(
    depth_model: Path | str,
    data: list[Path | str],
    pose_model: Path | str | None = None,
    estimators: tuple[str, ...] = ("posenet", "pnp", "essential"),
    limit: int = 0,
    max_depth: float = 60.0,
    threads: int = 2,
    progress: bool = False,
    matcher_model: Path | str | None = None,
    scale_source: str = "model",
    glue_model: Path | str | None = None,
    ground_segmenter: Path | str | None = None,
    ground_corridor: float = 2.0,
    rotation_jump_deg: float = 2.0,
) -> dict[str, Any]:
    """Depth errors (absolute and median-scaled) of the exported depth model run through the node's
    DepthPipeline, and the trajectory of each odometry estimator (the node's own classes) against
    the sequences' ground truth: ATE with SE(3) alignment (metric) and Sim(3) (up to scale), RPE.
    ``scale_source``: ``model`` (the network's own scale) or ``camera_height`` (the node's
    ground-plane scale, the camera's height being the first ground-truth pose's height above the
    ground and its normal that of the ground in the first frame, as a robot knows its camera's
    mounting); depth and odometry both use it (the hybrid estimator by aligning the ground of
    consecutive frames, GroundScale). ``ground_segmenter``: a segmentation (or multi-task) model
    whose ``ground`` pixels are the hybrid's ground instead of the depth map's plane, as the nodes
    do when given labels (``ground_from_labels``); ``ground_corridor``: the half-width of the ground
    it aligns (the nodes' ``ground_corridor``, GroundScale's ``corridor``); ``rotation_jump_deg``: the
    hybrid's (the nodes' ``rotation_jump``, 0: off), see ``odometry.ambiguity``."""
    from perception_nodes.backends import OnnxRuntimeBackend
    from perception_nodes.model_card import load_card
    from perception_nodes.pipelines.metric_scale import ScaleEstimator
    from perception_nodes.pipelines.odometry import OdometryTracker, make_estimator
    from perception_nodes.transforms import ground_normal_in_optical

    from .data.readers.depth import read_nyu_depth
    from .data.readers.tum import read_tum_trajectory
    from .metrics.depth import DepthEvaluator
    from .metrics.odometry import trajectory_errors
    from .train.depth_data import load_synthetic_sequence

    pipe, _card = node_pipeline(Path(depth_model), "depth", threads)
    segment = None  # the labels serve only the hybrid's ground scale, which needs the camera's height
    if ground_segmenter is not None and "hybrid" in estimators and scale_source == "camera_height":
        segment = _ground_segmenter(ground_segmenter, "the hybrid's ground", threads)
    pose_backend = None
    if pose_model is not None and "posenet" in estimators:
        pose_backend = OnnxRuntimeBackend(Path(pose_model), threads=threads)
        pose_card = load_card(pose_model, "pose")
    matcher_pipe = glue = None
    if matcher_model is not None and "pnp_learned" in estimators:
        from perception_nodes.model_card import model_files
        from perception_nodes.pipelines.matching import MatchingPipeline

        matcher_pipe = MatchingPipeline(
            OnnxRuntimeBackend(model_files(matcher_model)[0], threads=threads), load_card(matcher_model, "matching")
        )
        if glue_model is not None:  # a LightGlue-style matcher instead of mutual NN
            from perception_nodes.families.lightglue import LightGlueMatcher

            glue = LightGlueMatcher(
                OnnxRuntimeBackend(model_files(glue_model)[0], threads=threads), load_card(glue_model, "matcher")
            )
    ests = [
        e
        for e in estimators
        if (e != "posenet" or pose_backend is not None) and (e != "pnp_learned" or matcher_pipe is not None)
    ]
    ev = DepthEvaluator(pipe.min_depth, max_depth)
    per_est: dict[str, list[dict]] = {e: [] for e in ests}
    skipped: dict[str, int] = {e: 0 for e in ests}
    refitted: dict[str, int] = {e: 0 for e in ests}  # frames whose forward-motion ambiguity the hybrid resolved
    for root in data:
        _warn_plane_filled(Path(root) / "depth")
        seq = load_synthetic_sequence(Path(root))
        n = len(seq.frames) if not limit else min(limit, len(seq.frames))
        traj_file = Path(root) / "trajectory_tum.txt"
        times = None
        if traj_file.is_file():
            times, gt_poses = read_tum_trajectory(traj_file)
        scale, height, normal = None, 0.0, None
        if scale_source == "camera_height":
            if times is None:
                raise ValueError(
                    f"{root}: scale_source camera_height needs the ground truth trajectory (the camera's height)"
                )
            # the camera's mounting: its height and the ground's normal (world z up) in its frame
            height, normal = float(gt_poses[0][2, 3]), ground_normal_in_optical(gt_poses[0])
            scale = ScaleEstimator("camera_height", height)
        elif scale_source != "model":
            raise ValueError(f"scale_source '{scale_source}' must be model or camera_height")
        runners = {
            e: make_estimator(
                e,
                pose=(pose_backend, pose_card) if pose_backend is not None else None,
                matcher=matcher_pipe,
                camera_height=height,
                ground_normal=normal,
                match_fn=glue,
                ground_corridor=ground_corridor,
                rotation_jump_deg=rotation_jump_deg,
            )
            for e in ests
        }
        trackers = {e: OdometryTracker(max_gap_s=10.0, T_odom_camera0=np.eye(4)) for e in ests}
        stamps = [int(round(i * 1e8)) for i in range(n)] if times is None else [int(round(t * 1e9)) for t in times[:n]]
        for i in range(n):
            rgb = read_rgb(seq.frames[i])
            depth = pipe.run(rgb, K=seq.K).depth
            ground = segment(rgb) if segment is not None else None
            plane = None
            if scale is not None:
                depth, plane = scale.metric(depth, seq.K)
            if seq.depth:
                ev.add(read_nyu_depth(seq.depth[i]), depth)
            for e in ests:
                r = runners[e]
                m = (
                    r.estimate(rgb)
                    if e == "posenet"
                    else r.estimate(rgb, depth, seq.K, ground_plane=plane, ground_mask=ground)
                )
                st = trackers[e].update(stamps[i], m)
                skipped[e] += int(not st.ok and i > 0)
                refitted[e] += int(bool(getattr(r, "resolved", "")))
        if times is not None and n >= 3:
            gt = np.linalg.inv(gt_poses[0]) @ gt_poses[:n]
            for e in ests:
                est = np.stack([T for _s, T in trackers[e].state.path])
                row: dict[str, Any] = {"sequence": Path(root).name}
                try:
                    for align in ("se3", "sim3"):
                        r = trajectory_errors(times[:n], est, gt, align=align)
                        row[f"ate_{align}_m"] = r["ate_rmse_m"]
                        row[f"ate_{align}_percent"] = r["ate_percent_of_path"]
                        row[f"rpe_{align}_trans_m"] = r["rpe_trans_rmse_m"]
                    row["rpe_rot_deg"] = r["rpe_rot_rmse_deg"]
                    row["path_length_m"] = r["path_length_m"]
                    row["sim3_scale"] = r["scale"]
                except ValueError as exc:  # a degenerate estimate: counted as failed, not averaged
                    row["failed"] = str(exc)
                per_est[e].append(row)
    out: dict[str, Any] = {
        "depth": ev.summary(),
        "scale_source": scale_source,
        "ground": "none (no camera height: no ground scale)"
        if scale_source != "camera_height"
        else ("depth plane" if segment is None else f"segmenter {ground_segmenter}")
        + (f" within {ground_corridor:g} m of the camera's axis" if ground_corridor > 0 else ""),
        "odometry": {},
    }
    for e, rows in per_est.items():
        good = [r for r in rows if "failed" not in r]
        if rows:
            agg = {
                k: float(np.mean([r[k] for r in good])) if good else float("nan")
                for k in (
                    "ate_se3_m",
                    "ate_se3_percent",
                    "rpe_se3_trans_m",
                    "ate_sim3_m",
                    "ate_sim3_percent",
                    "rpe_sim3_trans_m",
                    "rpe_rot_deg",
                    "path_length_m",
                    "sim3_scale",
                )
            }
            out["odometry"][e] = {
                **agg,
                "skipped_frames": skipped[e],
                **({"refitted_frames": refitted[e]} if e == "hybrid" else {}),
                "failed_sequences": len(rows) - len(good),
                "sequences": rows,
            }
    return out


def evaluate_matching(
    model: Path | str,
    photos: list[str],
    data: list[str],
    pairs: int = 40,
    input_size: tuple[int, int] | None = None,
    hpatches: Path | str | None = None,
    glue_model: Path | str | None = None,
) -> dict[str, Any]:
    """The exported keypoint model through the node's MatchingPipeline on held-out homographic pairs
    (``photos``), real HPatches pairs (``hpatches``: each sequence's image 1 against 2..6 with the
    dataset's homographies) and synthetic pose pairs (``data``), with the same estimators as
    SIFT/ORB; matched by mutual NN, or by a LightGlue-style ``glue_model``."""
    from perception_nodes.backends import OnnxRuntimeBackend
    from perception_nodes.model_card import load_card, model_files

    from .matching_eval import evaluate_method, homography_eval_pairs, network_method, pose_eval_pairs
    from .train.matching_task import image_files

    pipe, card = node_pipeline(Path(model), "matching")
    glue = None
    if glue_model is not None:
        from perception_nodes.families.lightglue import LightGlueMatcher

        glue = LightGlueMatcher(
            OnnxRuntimeBackend(model_files(glue_model)[0], threads=2), load_card(glue_model, "matcher")
        )
    size = input_size or (card.input_height, card.input_width)
    hp = homography_eval_pairs(image_files(photos), pairs, size) if photos else []
    if hpatches is not None:
        from .data.readers.hpatches import load_hpatches

        hp += [{"a": read_rgb(p.image0), "b": read_rgb(p.image1), "H": p.H_0_1} for p in load_hpatches(hpatches)]
    pp = pose_eval_pairs([Path(d) for d in data], max(1, pairs // max(1, len(data))), size) if data else []
    return {
        "pair_size": list(size),
        "photos": [str(p) for p in photos],
        "hpatches": str(hpatches) if hpatches else None,
        "matcher": "mutual NN" if glue is None else f"LightGlue-style ({glue_model})",
        "data": [str(d) for d in data],
        **evaluate_method(network_method(pipe.run, match_fn=glue), hp, pp),
    }


DEPTH_FORMATS = ("kitti", "nyu", "tum")


def evaluate_depth_dir(
    model: Path | str, root: Path | str, depth_format: str, limit: int = 0, max_depth: float = 80.0
) -> dict[str, Any]:
    """Depth of real images with ground truth: ``root/rgb/*`` and ``root/depth/<same name>.png``
    (``depth_format``: kitti = uint16 / 256 m, nyu = millimetres, tum = / 5000 m; 0 = none), optional
    ``root/camera_info.yaml`` (for a canonical-camera model). A metric model gets absolute and
    median-scaled errors; a relative-depth model (up to scale and shift) is aligned to each image's
    ground truth by least squares in inverse depth first (the MiDaS protocol: what it gets right
    *given* a perfect metric source), reported as ``scale_shift_aligned``."""
    from perception_nodes.families.relative_depth import fit_scale_shift

    from .data.readers.depth import read_kitti_depth, read_nyu_depth, read_tum_depth
    from .metrics.depth import DepthEvaluator

    if depth_format not in DEPTH_FORMATS:
        raise ValueError(f"--depth-format '{depth_format}' must be one of {DEPTH_FORMATS}")
    reader = {"kitti": read_kitti_depth, "nyu": read_nyu_depth, "tum": read_tum_depth}[depth_format]
    root = Path(root)
    _warn_plane_filled(root / "depth")
    K = None
    if (root / "camera_info.yaml").is_file():
        from .train.depth_data import read_camera_matrix

        K = read_camera_matrix(root / "camera_info.yaml")[0]
    pipe, _card = node_pipeline(Path(model), "depth")
    ev = DepthEvaluator(0.1, max_depth)
    images = sorted(p for p in (root / "rgb").iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg"))
    n = 0
    for img in images[: limit or None]:
        gt_file = root / "depth" / (img.stem + ".png")
        if not gt_file.is_file():
            continue
        gt = reader(gt_file)
        res = pipe.run(read_rgb(img), K=K)
        pred = res.depth
        if res.relative is not None:
            ok = np.isfinite(gt) & (gt > 0)
            fit = fit_scale_shift(res.relative[ok], 1.0 / gt[ok], keep=1.0, rounds=0, min_pixels=10)
            pred = fit.to_depth(res.relative, 0.1, max_depth) if fit else np.full_like(gt, np.nan)
        ev.add(gt, pred)
        n += 1
    out = ev.summary()
    if pipe.relative:
        out = {"scale_shift_aligned": out["absolute"], "images": out["images"], "depth_range": out["depth_range"]}
    out["protocol"] = f"{root} ({depth_format} depth PNGs) through DepthPipeline" + (
        "; relative model aligned per image (scale + shift in inverse depth)" if pipe.relative else ""
    )
    return out


def evaluate_multitask(
    model: Path | str, data: list[str] | None, limit: int = 0, matching: bool = True
) -> dict[str, Any]:
    """Each task of a multi-task model scored as its single-task model is (perception-models
    evaluate): detection mAP, segmentation mIoU, depth errors + PnP odometry, keypoint matching."""
    data = [str(d) for d in data or []]
    out: dict[str, Any] = {
        "detection": evaluate_detection(model, data, limit),
        "segmentation": evaluate_segmentation(model, data, limit),
    }
    depth = evaluate_depth(model, data, estimators=("pnp",), limit=limit)
    out["depth"] = {**depth["depth"], "odometry": depth["odometry"]}
    if matching:
        out["matching"] = evaluate_matching(model, [str(Path(d) / "rgb") for d in data], data, pairs=40)
    return json.loads(json.dumps(out))

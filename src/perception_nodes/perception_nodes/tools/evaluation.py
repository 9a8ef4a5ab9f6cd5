"""Accuracy and latency of a replayed stack from its recording (``perception eval``).

Outputs are matched to the bag's ground-truth topics by header stamp and scored with the models
package's metric code (numpy only; imported when installed): detection COCO AP (ground truth lower
than 16 px ignored, as in ``perception_models.evaluate``), segmentation mIoU + confusion matrix,
depth AbsRel/δ (cap 60 m), odometry ATE/RPE through evo (SE(3)), matching inliers and relative
pose error. Latency per result topic: the recorder's receive time of the output minus the
player's publish time of the input frame with the same stamp (both the system clock of one
machine; without the player's times, the recorder's receive time of the input), median / p95 /
p99, and the output rate.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from ..detection_conversion import Box, label_map, read_detections, xyxy
from ..sync import stamp_to_ns
from .protocol import MIN_HEIGHT

GT = {
    "detections": "/ground_truth/detections",
    "labels": "/ground_truth/labels",
    "depth": "/ground_truth/depth",
    "odometry": "/ground_truth/odometry",
}
GT_LABEL_INFO = "/ground_truth/label_info"  # what the ground truth's class ids mean
END_TO_END = "end to end (all outputs)"
DEPTH_SAMPLES = 2  # depth maps the report shows against ground truth


def _by_stamp(path: Path, topic: str, stores: dict[Path, Any]) -> dict[int, tuple[int, Any]]:
    """``topic``'s messages by stamp, read with ``path``'s own typestore (made once into ``stores``:
    a bag keeps the message definitions it was written with)."""
    from ..bag_io import read_messages, typestore

    if path not in stores:
        stores[path] = typestore(path)
    store = stores[path]
    out = {}
    for _t, msgtype, log_ns, raw in read_messages(path, [topic]):
        msg = store.deserialize_cdr(raw, msgtype)
        out[stamp_to_ns(msg.header.stamp)] = (int(log_ns), msg)
    return out


def _received(recording: Path, topics: list[str]) -> Any:
    """(topic, header stamp, receive time ns) of a recording's messages: the receive times the
    recorder kept beside the MCAP (its log times are then bag time), else the log times."""
    from ..bag_io import header_stamp_ns, read_messages, receive_times

    kept = receive_times(recording)
    seen: dict[tuple[str, int], int] = defaultdict(int)
    for topic, _m, log_ns, raw in read_messages(recording, topics):
        s = header_stamp_ns(raw)
        if kept is None:
            yield topic, s, int(log_ns)
            continue
        k = seen[(topic, s)]
        seen[(topic, s)] += 1
        arrivals = kept.get((topic, s), [])
        if k < len(arrivals):  # a message the recorder logged (a cut receive log: the rest untimed)
            yield topic, s, arrivals[k]


def latency(
    recording: Path,
    frame_topic: str,
    result_topics: list[str],
    series: dict[str, Any] | None = None,
    frame_published: dict[int, int] | None = None,
) -> dict[str, Any]:
    """Per topic: median / p95 / p99 latency, results, untimed results and rate; with several
    topics also END_TO_END: per input frame, until the last of its results arrived (frames that got
    all of them). Latency runs from ``frame_published`` (input stamp -> the player's wall time of
    publishing it) when given, else from the recorder's receive time of the input frame, to the
    recorder's receive time of the output. ``series`` (when given) gets each timeline: receive
    time (s from the first frame) and latency (ms)."""
    from ..bag_io import bag_info

    present = bag_info(recording).topics
    result_topics = [t for t in result_topics if t in present]  # a node that published nothing has no latency
    frame_time: dict[int, int] = dict(frame_published or {})
    if not frame_time:  # a first pass: a big frame can reach the recorder after a small result of it
        for _t, s, t_ns in _received(recording, [frame_topic]):
            frame_time.setdefault(s, t_ns)
    times: dict[str, list[float]] = defaultdict(list)
    logs: dict[str, list[int]] = defaultdict(list)
    last: dict[int, dict[str, int]] = defaultdict(dict)  # input stamp -> topic -> first receive time
    untimed: dict[str, int] = defaultdict(int)
    for topic, s, log_ns in _received(recording, result_topics):
        if s in frame_time:
            times[topic].append((int(log_ns) - frame_time[s]) * 1e-6)
            logs[topic].append(int(log_ns))
            last[s].setdefault(topic, int(log_ns))
        else:  # an output whose input frame neither the player nor the recorder reported
            untimed[topic] += 1
    if len(result_topics) > 1:
        done = sorted((max(v.values()), s) for s, v in last.items() if len(v) == len(result_topics))
        times[END_TO_END] = [(t - frame_time[s]) * 1e-6 for t, s in done]
        logs[END_TO_END] = [t for t, _s in done]
        result_topics = [*result_topics, END_TO_END]
    out = {}
    t0 = min(frame_time.values(), default=0)
    for topic in result_topics:
        t = np.array(times.get(topic, []))
        if t.size:
            span = (max(logs[topic]) - min(logs[topic])) * 1e-9
            out[topic] = {
                "median_ms": float(np.median(t)),
                "p95_ms": float(np.percentile(t, 95)),
                "p99_ms": float(np.percentile(t, 99)),
                "results": int(t.size),
                "untimed": untimed[topic],
                "fps": float((t.size - 1) / span) if span > 0 else float("nan"),
            }
            if series is not None:
                series.setdefault("latency", {})[topic] = {
                    "t_s": [round((x - t0) * 1e-9, 4) for x in logs[topic]],
                    "latency_ms": t.round(3).tolist(),
                }
    return out


def odometry_pose(m: Any) -> np.ndarray:
    """nav_msgs/Odometry -> 4x4 pose of its child frame in its parent frame."""
    from ..transforms import quaternion_to_matrix

    p, q = m.pose.pose.position, m.pose.pose.orientation
    T = np.eye(4)
    T[:3, :3] = quaternion_to_matrix(np.array([q.x, q.y, q.z, q.w]))
    T[:3, 3] = (p.x, p.y, p.z)
    return T


def _ground_position_errors(
    frames: list[tuple[list[Box], list[Box]]], box_iou: Any, min_iou: float = 0.5
) -> dict[str, Any]:
    """Where detections stand (detection_node with CameraInfo + camera_height) against the ground
    truth's (the rendered depth at the box's bottom centre): each published detection is matched to
    the same-class ground-truth box of highest IoU (>= ``min_iou``, greedily), then the error of the
    distance along the ground, sqrt(x² + z²)."""
    abs_err, rel_err = [], []
    for gts, dets in frames:
        dets = [d for d in dets if d.ground is not None]
        gts = [g for g in gts if g.ground is not None]
        if not dets or not gts:
            continue
        iou = box_iou(xyxy(dets), xyxy(gts))
        iou[np.array([[d.class_name != g.class_name for g in gts] for d in dets])] = 0.0
        while iou.size and iou.max() >= min_iou:
            i, j = np.unravel_index(int(np.argmax(iou)), iou.shape)
            d, g = dets[i].ground, gts[j].ground
            assert d is not None and g is not None
            est, ref = np.hypot(d[0], d[2]), np.hypot(g[0], g[2])
            abs_err.append(abs(est - ref))
            rel_err.append(abs(est - ref) / ref)
            iou[i, :] = 0.0
            iou[:, j] = 0.0
    if not rel_err:
        return {}
    rel = np.array(rel_err)
    return {
        "pairs": len(rel),
        "median_distance_error_m": float(np.median(abs_err)),
        "median_relative_error": float(np.median(rel)),
        "within_10_percent": float(np.mean(rel <= 0.1)),
        "protocol": "published detections with a ground position, matched to ground truth "
        f"(same class, IoU >= {min_iou}); error of the distance along the ground",
    }


def _matching_geometry_errors(rows: list[Any], gt: dict[int, tuple[int, Any]]) -> dict[str, Any]:
    """Relative pose from the matches ("essential": the current camera in the reference camera's
    optical frame, unit translation) against the ground-truth body poses of both stamps: rotation
    and translation-direction errors, and the pose AUC of max(both) (SuperGlue's protocol)."""
    from perception_models.metrics.matching import pose_auc, relative_pose_error

    from ..transforms import T_BODY_OPTICAL

    err_R, err_t, worst = [], [], []
    for m in rows:
        ref, cur = stamp_to_ns(m.reference_stamp), stamp_to_ns(m.header.stamp)
        if m.model != "essential" or ref not in gt or cur not in gt:
            continue
        T_rel = np.linalg.inv(odometry_pose(gt[ref][1]) @ T_BODY_OPTICAL) @ odometry_pose(gt[cur][1]) @ T_BODY_OPTICAL
        if np.linalg.norm(T_rel[:3, 3]) < 0.05:  # no baseline: the direction is undefined
            continue
        eR, et = relative_pose_error(
            np.asarray(m.rotation).reshape(3, 3), np.asarray(m.translation), T_rel[:3, :3], T_rel[:3, 3]
        )
        err_R.append(eR)
        err_t.append(et)
        worst.append(max(eR, et))
    if not worst:
        return {}
    return {
        "pairs": len(worst),
        "rotation_error_deg_median": float(np.median(err_R)),
        "translation_direction_error_deg_median": float(np.median(err_t)),
        "pose_auc": {f"@{k}deg": v for k, v in pose_auc(worst).items()},
        "protocol": "essential-matrix pose of each match set vs the ground-truth relative pose of its two stamps",
    }


def _image(msg: Any) -> np.ndarray:
    from ..image_conversion import image_to_numpy

    return np.asarray(image_to_numpy(msg))


def evaluate_recording(
    bag: Path,
    recording: Path,
    outputs: dict[str, str],
    frame_topic: str = "/camera/image_raw",
    timed: list[str] | None = None,
    series: dict[str, Any] | None = None,
    frame_published: dict[int, int] | None = None,
    label_names: list[str] | None = None,
    detection_names: list[str] | None = None,
) -> dict[str, Any]:
    """``outputs``: task -> recorded topic ("detections", "labels", "depth", "odometry", "matches");
    ``label_names``: what a third-party segmenter's label ids mean (ids matched to the ground truth's
    classes by name; IoU only for the classes both have); ``detection_names``: the detector's class
    names (its card), which its vision_msgs class ids index.
    Tasks whose ground truth is not in the bag get no metrics; latency for ``timed`` (default: the
    outputs' topics) either way. ``series`` (when given) gets what the HTML report plots: latency
    timelines, PR curves, per-frame depth error, aligned trajectories, matches per frame."""
    from ..bag_io import bag_info

    stores: dict[Path, Any] = {}  # a typestore per bag
    gt_topics = bag_info(bag).topics
    series = {} if series is None else series
    report: dict[str, Any] = {
        "latency": latency(recording, frame_topic, timed or list(outputs.values()), series, frame_published),
        "metrics": {},
    }
    try:
        from perception_models import metrics as pm
        from perception_models.metrics.odometry import trajectory_errors
    except ImportError:
        report["metrics_skipped"] = "perception_models is not installed: latency only"
        return report
    for task, topic in outputs.items():
        gt_topic = GT.get(task)
        if task == "matches":
            by_stamp = _by_stamp(recording, topic, stores)
            rows = [by_stamp[s][1] for s in sorted(by_stamp)]
            with_ref = [m for m in rows if len(m.current_index)]
            series["matching"] = {
                "stamps": sorted(by_stamp),
                "matches": [len(m.current_index) for m in rows],
                "inliers": [int(m.inlier_count) for m in rows],
            }
            report["metrics"]["matching"] = {
                "frames": len(rows),
                "matches_per_frame": float(np.mean([len(m.current_index) for m in rows])) if rows else 0.0,
                "inlier_ratio": float(np.mean([m.inlier_count / len(m.current_index) for m in with_ref]))
                if with_ref
                else 0.0,
            }
            if GT["odometry"] in gt_topics:
                geometry = _matching_geometry_errors(rows, _by_stamp(bag, GT["odometry"], stores))
                if geometry:
                    report["metrics"]["matching"]["geometry"] = geometry
            continue
        if gt_topic is None or gt_topic not in gt_topics:
            if task == "odometry":  # no ground truth: the report still shows where the camera went
                est = _by_stamp(recording, topic, stores)
                series["trajectory"] = {"estimate": [odometry_pose(est[s][1])[:3, 3].tolist() for s in sorted(est)]}
            continue
        est, gt = _by_stamp(recording, topic, stores), _by_stamp(bag, gt_topic, stores)
        stamps = sorted(set(est) & set(gt))
        if task == "detections":
            gt_names: dict[int, str] = {}
            if GT_LABEL_INFO in gt_topics:
                gt_names = label_map(next(iter(_by_stamp(bag, GT_LABEL_INFO, stores).values()))[1])
            pairs = [(read_detections(gt[s][1], gt_names), read_detections(est[s][1], detection_names)) for s in stamps]
            names = sorted({b.class_name for g, _d in pairs for b in g})
            index = {n: i for i, n in enumerate(names)}
            ev = pm.DetectionEvaluator(len(names), names)
            for g, d in pairs:
                d = [x for x in d if x.class_name in index]
                gb = xyxy(g)
                ev.add(
                    gb,
                    [index[x.class_name] for x in g],
                    xyxy(d),
                    [x.score for x in d],
                    [index[x.class_name] for x in d],
                    gt_crowd=(gb[:, 3] - gb[:, 1]) < MIN_HEIGHT,
                )
            r = ev.summary()
            ground = _ground_position_errors(pairs, pm.box_iou)
            if ground:
                r["ground_position"] = ground
            series["pr_curves"] = ev.pr_curves(0.5)
            r["protocol"] = (
                "COCO AP on the node's published detections (its score threshold applies); ground truth < "
                f"{MIN_HEIGHT:g} px ignored"
            )
            report["metrics"]["detection"] = r
        elif task == "labels":
            from perception_models.data.synth.scene import CLASSES

            lut, shared = None, None
            if label_names is not None:
                # ids by name; every other predicted id is "other" (an extra column, never right)
                lut = np.full(max(256, len(label_names)), len(CLASSES), np.int64)
                for i, n in enumerate(label_names):
                    if n in CLASSES:
                        lut[i] = CLASSES.index(n)
                shared = [n for n in CLASSES if n in label_names]
            names = list(CLASSES) + (["other"] if lut is not None else [])
            cm = pm.ConfusionMatrix(len(names), names)
            for s in stamps:
                pred = _image(est[s][1])
                cm.add(_image(gt[s][1]), lut[pred] if lut is not None else pred)
            r = cm.summary()
            if shared is not None:
                iou = cm.iou()
                r["per_class_iou"] = {n: float(iou[CLASSES.index(n)]) for n in shared}
                r["mIoU"] = float(np.nanmean([iou[CLASSES.index(n)] for n in shared])) if shared else float("nan")
                rows = [CLASSES.index(n) for n in shared]
                gt_px = cm.matrix[rows].sum()
                r["pixel_accuracy"] = float(cm.matrix[rows, rows].sum() / gt_px) if gt_px else float("nan")
                r["protocol"] = f"a third-party model's classes matched by name; IoU over the shared ones: {shared}"
            r["images"] = len(stamps)
            r["confusion_matrix"] = cm.matrix.tolist()
            report["metrics"]["segmentation"] = r
        elif task == "depth":
            ev = pm.DepthEvaluator(0.1, 60.0)
            samples = set(
                stamps[i] for i in np.unique(np.linspace(0, len(stamps) - 1, DEPTH_SAMPLES).round().astype(int))
            )
            per_frame, maps = [], []
            for s in stamps:
                g, e = _image(gt[s][1]).astype(np.float64), _image(est[s][1]).astype(np.float64)
                errors = ev.add(g, e)
                per_frame.append(errors["abs_rel"] if errors else float("nan"))
                if s in samples:
                    maps.append((s, e.astype(np.float32), g.astype(np.float32)))
            report["metrics"]["depth"] = ev.summary()
            series["depth"] = {"stamps": stamps, "abs_rel": per_frame, "maps": maps}
        elif task == "odometry" and len(stamps) >= 3:
            from ..transforms import T_BODY_OPTICAL

            # the ground truth is the body's pose: compare the camera's optical frame when the
            # estimate is of another child frame than the ground truth's (the camera's own frame)
            optical = est[stamps[0]][1].child_frame_id != gt[stamps[0]][1].child_frame_id
            E = np.stack([odometry_pose(est[s][1]) for s in stamps])
            G = np.stack([odometry_pose(gt[s][1]) @ (T_BODY_OPTICAL if optical else np.eye(4)) for s in stamps])
            try:
                r = trajectory_errors(np.array(stamps) * 1e-9, E, G, align="se3", positions=True)
                series["trajectory"] = r.pop("positions")
                report["metrics"]["odometry"] = r
            except ValueError as exc:
                report["metrics"]["odometry"] = {"failed": str(exc)}
    return report

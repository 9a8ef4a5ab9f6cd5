"""``perception``: start a stack profile, replay bags through it, build engines, run the demo.

perception run --profile P [--set node.param=value ...] [--restart N] [--interface ADDR] [--keystore DIR]
perception replay --bag B --profile P [--mode lockstep|realtime|fast] [--rate R] --out DIR
perception eval --bag B --profile P [--mode lockstep|realtime] [--rate R] [--throughput] --out DIR
perception build-engine --onnx M.onnx [--precision fp16|fp32|int8] [--calib-images DIR | --calib-bag B --calib-topic T]
perception start PROFILE [--camera /dev/videoN] [--allow-cpu] [--build-only|--check]
perception bag-info B
perception security keystore --profile P --keystore DIR
perception demo [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from ..bag_io import BagError
from ..exit_codes import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_FRAMES_LOST, EXIT_FRAMES_REJECTED, EXIT_OK
from ..profile import ProfileError, load_profile, parse_set
from ..tasks import EVAL_OUTPUTS
from ..workspace import resolve_path, workspace_root
from .replay import GROUND_TRUTH_PREFIX, ReplayInputError, frame_publish_times, replay


def perception_argv(*args: str) -> list[str]:
    """``perception ARGS`` as a command line for this interpreter (tests, benchmarks and probes
    start the CLI as a process, as a user would)."""
    return [sys.executable, "-m", "perception_nodes.tools.cli", *args]


def replay_argv(bag: Path | str, out: Path | str, profile: str = "generic_replay", *sets: str) -> list[str]:
    """``perception replay --bag BAG --profile PROFILE --out OUT --set S ...``."""
    return perception_argv(
        "replay", "--bag", str(bag), "--profile", profile, "--out", str(out), *(a for s in sets for a in ("--set", s))
    )


def _cmd_run(args: argparse.Namespace) -> int:
    from ..launcher import run_until_stopped

    return run_until_stopped(
        load_profile(args.profile, parse_set(args.set)),
        args.log_dir,
        restart=args.restart,
        summary_path=args.summary,
        interfaces=args.interface or None,
        keystore=args.keystore,
    )


def _cmd_security(args: argparse.Namespace) -> int:
    from ..security import SecurityError, create_keystore

    try:
        enclaves = create_keystore(args.keystore, load_profile(args.profile))
    except SecurityError as exc:
        print(f"perception security: {exc}", file=sys.stderr)
        return EXIT_FAILED
    print(f"keystore {args.keystore}: enclaves {enclaves}")
    print(
        f"start the stack with DDS security enforced: perception run --profile {args.profile} --keystore "
        f"{args.keystore}"
    )
    return EXIT_OK


def _cmd_replay(args: argparse.Namespace) -> int:
    summary = replay(
        resolve_path(args.bag),
        args.profile,
        Path(args.out),
        args.mode,
        args.rate,
        parse_set(args.set),
        args.frame_topic,
        timeout=args.timeout,
    )
    return int(summary["exit_code"])


def _cmd_build_engine(args: argparse.Namespace) -> int:
    import logging

    from ..backends.tensorrt_backend import TensorRTBackend
    from ..backends.base import BackendError

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    shapes = {}
    for item in args.input_shape:
        name, _, dims = item.partition("=")
        shapes[name] = tuple(int(d) for d in dims.split(","))
    batches = None
    if args.precision == "int8" and (args.calib_images or args.calib_bag):
        from ..backends.calibration import calibration_batches

        batches = calibration_batches(
            Path(args.onnx),
            shapes,
            images=args.calib_images,
            bag=args.calib_bag,
            topic=args.calib_topic,
            count=args.calib_count,
        )
    try:
        backend = TensorRTBackend(
            args.onnx,
            cache_dir=args.cache_dir,
            precision=args.precision,
            input_shapes=shapes or None,
            calibration_batches=batches,
            calibration_cache=args.calib_cache,
            calibration_algorithm=args.calib_algorithm,
            progress=True,
            log_fn=print,
        )
    except BackendError as exc:
        print(f"perception build-engine: {exc}", file=sys.stderr)
        return 2
    print(f"engine ready: {backend.engine_path}")
    print(f"warm-up inference: {backend.warmup(5):.2f} ms")
    backend.close()
    return 0


def _cmd_start(args: argparse.Namespace) -> int:
    from ..deploy import start_main

    return start_main(args)


def _cmd_bag_info(args: argparse.Namespace) -> int:
    from ..bag_io import BagError, bag_info

    try:
        info = bag_info(resolve_path(args.bag))
    except BagError as exc:
        print(f"perception bag-info: {exc}", file=sys.stderr)
        return 2
    print(f"{info.path}: {info.duration_s:.2f} s")
    if info.note:
        print(f"  {info.note}")
    for topic, (msgtype, count) in sorted(info.topics.items()):
        print(f"  {topic:40s} {msgtype:40s} {count}")
    return 0


def _synthetic_demo_bag(bag: Path, frames: int) -> bool:
    """A driving bag with ground truth from perception_models' renderer (numpy only); False when
    perception_models is not installed (e.g. a Jetson image with the nodes only)."""
    try:
        from perception_models.data.synth import SynthConfig, SyntheticSequence
        from perception_models.data.writers import write_sequence
    except ImportError:
        return False
    print(f"generating {bag} ({frames} frames of a held-out synthetic driving scene, seed 901)")
    tmp = bag.parent / (bag.name + ".tmp")
    write_sequence(
        SyntheticSequence(SynthConfig(preset="driving", seed=901, frames=frames)),
        tmp,
        dataset=False,
        bag=True,
        workers=2,
    )
    (tmp / "bag").rename(bag)
    tmp.rmdir()
    return True


def _cmd_demo(args: argparse.Namespace) -> int:
    from .demo_assets import make_demo_bag, make_demo_model

    cache = resolve_path(args.cache)
    models = workspace_root() / "models"
    tasks = (
        (models / "detection.onnx").is_file() and (models / "segmentation.onnx").is_file() or bool(args.profile)
    ) and not args.generic
    if tasks:
        # the shipped detector and segmenter on a synthetic driving scene they have not seen
        bag = Path(args.bag) if args.bag else cache / f"synthetic_bag_{args.frames}"
        if not args.bag and not bag.exists() and not _synthetic_demo_bag(bag, args.frames):
            tasks = False
    if tasks:
        mount = camera_mount_from_ground_truth(bag)
        if mount:
            print(
                f"  camera {mount['camera_height']:.2f} m above the ground, pitch "
                f"{mount['camera_pitch_deg']:.1f}° (the scene's "
                "ground truth at its first frame, as a robot knows its camera mount): detector ground positions on, "
                "depth + odometry scale from the camera height"
            )
        profile = args.profile or "synthetic_replay"
        nodes = {n.name for n in load_profile(profile).nodes}
        wanted = {
            "detector": {"use_camera_info": True, **mount},
            "odometry": {"scale_source": "camera_height", **mount},
        }
        summary = replay(
            bag,
            profile,
            Path(args.out),
            "lockstep",
            skip_missing_models=True,
            overrides={k: v for k, v in wanted.items() if k in nodes} if mount else None,
        )
    else:
        model = cache / "demo_model.onnx"
        bag = Path(args.bag) if args.bag else cache / f"demo_bag_{args.frames}"
        if not model.exists():
            make_demo_model(model)
        if not args.bag and not bag.exists():
            print(f"generating {bag} ({args.frames} frames of 640x480 rgb8)")
            make_demo_bag(bag, frames=args.frames)
        summary = replay(
            bag, "generic_replay", Path(args.out), "lockstep", overrides={"generic": {"model_path": str(model)}}
        )
    res = summary.get("results", {})
    per_frame = summary.get("per_frame_topics", [])
    ok = (
        summary["player_exit_code"] == 0
        and bool(per_frame)
        and all(res[t]["frames_with_one_result"] == res["frames"] for t in per_frame)
    )
    if tasks and ok:
        _print_detection_summary(Path(summary["recording"]))
        write_reports(summary, bag, Path(args.out))
    print(f"\ndemo {'OK' if ok else 'FAILED'}: summary in {Path(args.out) / 'replay_summary.json'}")
    return 0 if ok else 1


def camera_mount_from_ground_truth(bag: Path) -> dict[str, float] | None:
    """Camera height above the ground (z of the odom frame, REP-103: z up, ground at 0) and pitch
    below the horizon of the bag's first /ground_truth/odometry pose; None without one."""
    import numpy as np

    from ..bag_io import bag_info, read_messages, typestore
    from .evaluation import odometry_pose

    topic = GROUND_TRUTH_PREFIX + "odometry"
    if topic not in bag_info(bag).topics:
        return None
    _t, msgtype, _l, raw = next(read_messages(bag, [topic]))
    T = odometry_pose(typestore(bag).deserialize_cdr(raw, msgtype))
    forward = T[:3, 0]  # the body's x axis in odom
    return {"camera_height": float(T[2, 3]), "camera_pitch_deg": float(np.degrees(np.arcsin(-forward[2])))}


def _print_detection_summary(recording: Path) -> None:
    from ..bag_io import read_messages, typestore

    store = typestore(recording)
    counts: Counter[str] = Counter()
    frames = 0
    for _t, msgtype, _ts, raw in read_messages(recording, ["/detector/detections"]):
        frames += 1
        for d in store.deserialize_cdr(raw, msgtype).detections:
            counts[d.class_name] += 1
    print(f"  detections over {frames} frames: {dict(counts.most_common())}")


def _cmd_eval(args: argparse.Namespace) -> int:
    out, bag = Path(args.out), resolve_path(args.bag)
    summary = replay(
        bag, args.profile, out, args.mode, args.rate, parse_set(args.set), args.frame_topic, skip_missing_models=True
    )
    if summary["exit_code"] not in (EXIT_OK, EXIT_FRAMES_REJECTED) or not summary.get("per_frame_topics"):
        print(f"perception eval: no report: {summary['verdict']}", file=sys.stderr)
        return int(summary["exit_code"]) or EXIT_FAILED
    throughput = None
    if args.throughput:
        from .throughput import throughput as measure

        print(f"\nthroughput: realtime replays at chosen input rates (< {args.max_drop:g} % dropped frames)")
        throughput = measure(
            bag,
            args.profile,
            out / "throughput",
            args.fixed_rate,
            args.max_drop,
            args.frame_topic,
            overrides=parse_set(args.set),
            visuals=args.throughput_visuals,
        )
    write_reports(summary, bag, out, args.frame_topic, throughput)
    if args.mode != "lockstep" and summary["exit_code"] == EXIT_FRAMES_LOST:
        return EXIT_OK  # realtime drops frames by design; the report counts them
    return int(summary["exit_code"])


def eval_report(
    summary: dict[str, Any], bag: Path, series: dict[str, Any] | None = None, frame_topic: str = "/camera/image_raw"
) -> dict[str, Any]:
    """Accuracy + latency of a replay (its summary) against the bag's ground truth."""
    from .evaluation import evaluate_recording

    per_frame = summary.get("per_frame_topics", [])
    outputs = {task: t for t in per_frame for task in EVAL_OUTPUTS if t.endswith("/" + task)}
    return {
        "bag": summary["bag"],
        "profile": summary["profile"],
        "mode": summary["mode"],
        "rate": summary.get("rate", 1.0),
        "player": summary.get("player", {}),
        "results": summary.get("results", {}),
        "drops": summary.get("drops", {}),
        "resources": summary.get("resources", {}),
        "models": summary.get("models", {}),
        **evaluate_recording(
            bag,
            Path(summary["recording"]),
            outputs,
            frame_topic,
            timed=per_frame,
            series=series,
            frame_published=frame_publish_times(summary),
            label_names=_label_names(summary, outputs.get("labels")),
        ),
    }


def _label_names(summary: dict[str, Any], topic: str | None) -> list[str] | None:
    """The class names of the node that published ``topic`` (its card), when it is not this project's
    own segmenter (an instance model: its ids are matched to the ground truth's by name)."""
    if not topic:
        return None
    node = topic.strip("/").split("/")[0]
    m = summary.get("models", {}).get(node, {})
    return m.get("label_names") if m.get("family", "native") != "native" else None


def write_reports(
    summary: dict[str, Any],
    bag: Path,
    out: Path,
    frame_topic: str = "/camera/image_raw",
    throughput: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """report.json + report.html in ``out``; prints the summary table."""
    from .report import write_report

    series: dict[str, Any] = {}
    report = eval_report(summary, bag, series, frame_topic)
    if throughput is not None:
        report["throughput"] = throughput
    (out / "report.json").write_text(json.dumps(report, indent=2))
    write_report(report, series, out / "report.html", Path(summary["recording"]), frame_topic)
    print_report(report)
    print(f"report: {out / 'report.html'} (data: {out / 'report.json'})")
    return report


def print_report(report: dict[str, Any]) -> None:
    print("\naccuracy (outputs matched to the bag's ground truth by stamp):")
    m = report.get("metrics", {})
    if "detection" in m:
        gp = m["detection"].get("ground_position")
        print(
            f"  detection     mAP@[.5:.95] {m['detection']['mAP']:.3f}  mAP@0.5 {m['detection']['mAP50']:.3f}"
            + (
                f"; ground distance error median {gp['median_distance_error_m']:.2f} m "
                f"({100 * gp['median_relative_error']:.0f} %), "
                f"{100 * gp['within_10_percent']:.0f} % within 10 % ({gp['pairs']} detections)"
                if gp
                else ""
            )
        )
    if "segmentation" in m:
        print(
            f"  segmentation  mIoU {m['segmentation']['mIoU']:.3f}  pixel accuracy "
            f"{m['segmentation']['pixel_accuracy']:.3f}"
        )
    if "depth" in m:
        a = m["depth"]["absolute"]
        print(f"  depth         AbsRel {a['abs_rel']:.3f}  RMSE {a['rmse']:.2f} m  d1 {a['a1']:.3f}")
    if "odometry" in m and "ate_rmse_m" in m["odometry"]:
        o = m["odometry"]
        print(
            f"  odometry      ATE {o['ate_rmse_m']:.2f} m = {o['ate_percent_of_path']:.1f} % of "
            f"{o['path_length_m']:.1f} m (SE(3))"
        )
    if "matching" in m:
        g = m["matching"].get("geometry")
        print(
            f"  matching      {m['matching']['matches_per_frame']:.0f} matches/frame, inlier ratio "
            f"{m['matching']['inlier_ratio']:.2f}"
            + (
                f", relative pose error R {g['rotation_error_deg_median']:.2f}° t "
                f"{g['translation_direction_error_deg_median']:.1f}° "
                f"(median), AUC@10° {g['pose_auc']['@10deg']:.2f}"
                if g
                else ""
            )
        )
    for node, mdl in report.get("models", {}).items():
        if mdl["card_metrics"]:
            print(f"  ({node}: {Path(mdl['model']).name}, its card's held-out result: {mdl['card_metrics']})")
    print("nodes (latency: input frame published -> output received; CPU in % of one core):")
    drops, res = report.get("drops", {}), report.get("resources", {})
    print(
        f"  {'output':28s} {'median':>8s} {'p95':>8s} {'p99':>8s} {'fps':>6s} {'dropped':>8s} {'CPU %':>6s} "
        f"{'RSS MiB':>8s}"
    )
    for topic, st in report["latency"].items():
        node = next((n for n, d in drops.items() if d.get("topic") == topic), None)
        d, r = drops.get(node or "", {}), res.get(node or "", {})
        cpu, rss = (f"{r['cpu_percent_mean']:6.0f}", f"{r['rss_mib_peak']:8.0f}") if r else ("", "")
        print(
            f"  {topic:28s} {st['median_ms']:8.1f} {st['p95_ms']:8.1f} {st['p99_ms']:8.1f} {st['fps']:6.1f} "
            f"{d.get('dropped', ''):>8} {cpu:>6s} {rss:>8s}"
        )
    tools = [
        f"{n[1:-1]} CPU {r['cpu_percent_mean']:.0f} % RSS {r['rss_mib_peak']:.0f} MiB"
        for n, r in res.items()
        if n.startswith("(")
    ]
    if tools:
        print(f"  replay tools: {', '.join(tools)}")
    tp = report.get("throughput")
    if tp:
        f = tp["at_fixed_rate"]
        print(
            f"throughput: {tp['max_rate_hz']:.1f} Hz with < {tp['max_drop_percent']:g} % dropped frames "
            f"(first failing {tp['first_failing_rate_hz']} Hz, bottleneck {tp['bottleneck']}); at "
            f"{tp['fixed_rate_hz']:g} Hz: "
            + ", ".join(
                f"{n} drops {d['percent']:.0f} % latency {f['latency_ms'].get(n, float('nan')):.0f} ms"
                for n, d in f["drops"].items()
            )
        )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="perception", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("run", help="start a profile's nodes as processes")
    p.add_argument("--profile", required=True)
    p.add_argument("--set", action="append", default=[], metavar="NODE.PARAM=VALUE")
    p.add_argument("--log-dir", default="log/run")
    p.add_argument(
        "--restart",
        type=int,
        default=0,
        metavar="N",
        help="restart a node that dies up to N times; after that (default: at once) stop the stack and exit 10",
    )
    p.add_argument(
        "--summary",
        help="summary JSON (default: LOG_DIR/run_summary.json), written also after "
        "Ctrl-C, SIGTERM/SIGHUP or a node's death",
    )
    p.add_argument(
        "--interface",
        action="append",
        default=[],
        metavar="ADDRESS",
        help="bind the nodes' UDP transport to this address only (repeatable; e.g. 127.0.0.1, or the "
        "robot's internal network); default: every interface",
    )
    p.add_argument(
        "--keystore",
        help="enforce DDS security (SROS2): each node runs in its enclave of this keystore "
        "(`perception security keystore`); needs a security-enabled middleware (the ROS install path)",
    )
    p.set_defaults(func=_cmd_run)

    p = sub.add_parser(
        "security",
        help="SROS2 keystore for a profile: one enclave per node, permissions "
        "granting only the stack's topics and services",
    )
    p.add_argument("action", choices=["keystore"])
    p.add_argument("--profile", required=True)
    p.add_argument("--keystore", required=True, metavar="DIR")
    p.set_defaults(func=_cmd_security)

    p = sub.add_parser("eval", help="replay a bag through a profile; accuracy against its ground truth and latency")
    p.add_argument("--bag", required=True)
    p.add_argument("--profile", required=True)
    p.add_argument("--mode", choices=["lockstep", "realtime"], default="lockstep")
    p.add_argument("--rate", type=float, default=1.0, help="realtime: replay speed (x the bag's timing)")
    p.add_argument("--out", default="out/eval")
    p.add_argument("--frame-topic", default="/camera/image_raw")
    p.add_argument("--set", action="append", default=[], metavar="NODE.PARAM=VALUE")
    p.add_argument(
        "--throughput",
        action="store_true",
        help="also search the highest input rate with < --max-drop %% dropped frames (realtime replays) "
        "and measure latency at --fixed-rate Hz",
    )
    p.add_argument("--fixed-rate", type=float, default=30.0, metavar="HZ")
    p.add_argument("--max-drop", type=float, default=5.0, metavar="PERCENT")
    p.add_argument(
        "--throughput-visuals",
        action="store_true",
        help="throughput probes record (so the nodes draw) the annotated/overlay/depth/match images "
        "too; default: per-frame outputs only, as on a robot nobody watches",
    )
    p.set_defaults(func=_cmd_eval)

    p = sub.add_parser("replay", help="replay a bag through a profile and record the outputs")
    p.add_argument("--bag", required=True)
    p.add_argument("--profile", required=True)
    p.add_argument("--mode", choices=["lockstep", "realtime", "fast"], default="lockstep")
    p.add_argument("--rate", type=float, default=1.0)
    p.add_argument("--out", required=True)
    p.add_argument("--frame-topic", default="/camera/image_raw")
    p.add_argument("--timeout", type=float, default=3600.0)
    p.add_argument("--set", action="append", default=[], metavar="NODE.PARAM=VALUE")
    p.set_defaults(func=_cmd_replay)

    p = sub.add_parser("build-engine", help="build (and cache) a TensorRT engine from ONNX, nothing else")
    p.add_argument("--onnx", required=True)
    p.add_argument("--precision", choices=["fp32", "fp16", "int8"], default="fp16")
    p.add_argument("--cache-dir", default="~/.cache/perception/engines")
    p.add_argument("--input-shape", action="append", default=[], metavar="NAME=1,3,H,W")
    p.add_argument("--calib-images", help="folder of images for INT8 calibration")
    p.add_argument("--calib-bag", help="rosbag2 with images for INT8 calibration")
    p.add_argument("--calib-topic", default="/camera/image_raw")
    p.add_argument("--calib-count", type=int, default=200)
    p.add_argument("--calib-cache", help="INT8 calibration cache file (read if present, else written)")
    p.add_argument("--calib-algorithm", choices=["entropy", "minmax"], default="entropy")
    p.set_defaults(func=_cmd_build_engine)

    p = sub.add_parser(
        "start",
        help="container entrypoint: check camera/GPU/engine cache, build missing engines, then launch a profile",
    )
    p.add_argument(
        "profile",
        nargs="?",
        default=os.environ.get("PERCEPTION_PROFILE", "camera_generic"),
        help="profile name or YAML path (default: $PERCEPTION_PROFILE or camera_generic)",
    )
    p.add_argument("--set", action="append", default=[], metavar="NODE.PARAM=VALUE")
    p.add_argument("--camera", help="camera device or file for the profile's camera_source nodes")
    p.add_argument(
        "--engine-cache",
        default=os.environ.get("PERCEPTION_ENGINE_CACHE"),
        help="engine cache directory (a mounted volume; default: $PERCEPTION_ENGINE_CACHE "
        "or each node's engine_cache_dir)",
    )
    p.add_argument(
        "--allow-cpu",
        action="store_true",
        default=os.environ.get("PERCEPTION_ALLOW_CPU", "") in ("1", "true", "yes"),
        help="without a GPU, run TensorRT nodes with ONNX Runtime on the CPU instead of failing",
    )
    p.add_argument("--no-build", action="store_true", help="do not build missing engines here")
    p.add_argument("--build-only", action="store_true", help="check and build engines, then exit")
    p.add_argument("--check", action="store_true", help="run the checks only, then exit")
    p.add_argument("--launcher", choices=["auto", "ros2", "processes"], default="auto")
    p.add_argument(
        "--restart",
        type=int,
        default=0,
        metavar="N",
        help="processes launcher: restart a node that dies up to N times, then stop the stack (exit 10)",
    )
    p.add_argument("--log-dir", default="log/start")
    p.set_defaults(func=_cmd_start)

    p = sub.add_parser("bag-info", help="topics, types and counts of a bag")
    p.add_argument("bag")
    p.set_defaults(func=_cmd_bag_info)

    p = sub.add_parser("demo", help="replay the embedded demo bag through the stack")
    p.add_argument("--out", default="out/demo")
    p.add_argument("--cache", default="cache/demo")
    p.add_argument("--bag", help="use this bag instead of the generated one")
    p.add_argument("--frames", type=int, default=60)
    p.add_argument("--generic", action="store_true", help="the generic ONNX node on the generated bag instead")
    p.add_argument(
        "--profile",
        help="replay the demo bag through this profile instead of synthetic_replay (e.g. pretrained: "
        "the YOLO / XFeat models of ../shared, after make pretrained-cards)",
    )
    p.set_defaults(func=_cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except ReplayInputError as exc:
        print(f"perception {args.command}: {exc}", file=sys.stderr)
        return exc.code
    except (ProfileError, BagError) as exc:
        print(f"perception {args.command}: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT


if __name__ == "__main__":
    raise SystemExit(main())

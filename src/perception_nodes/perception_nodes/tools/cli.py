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
from ..workspace import resolve_path, shared_path
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
    models = shared_path("models")
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
            "multitask": {"use_camera_info": True, "scale_source": "camera_height", **mount},  # both in one node
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
        names = _node_model(summary, "/detector/detections").get("classes")
        _print_detection_summary(Path(summary["recording"]), names)
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


def _print_detection_summary(recording: Path, names: list[str] | None) -> None:
    from ..bag_io import read_messages, typestore
    from ..detection_conversion import read_detections

    store = typestore(recording)
    counts: Counter[str] = Counter()
    frames = 0
    for _t, msgtype, _ts, raw in read_messages(recording, ["/detector/detections"]):
        frames += 1
        for d in read_detections(store.deserialize_cdr(raw, msgtype), names):
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
            detection_names=_node_model(summary, outputs.get("detections")).get("classes"),
        ),
    }


def _node_model(summary: dict[str, Any], topic: str | None) -> dict[str, Any]:
    """What the replay summary says of the model of the node that published ``topic``."""
    if not topic:
        return {}
    return summary.get("models", {}).get(topic.strip("/").split("/")[0], {})


def _label_names(summary: dict[str, Any], topic: str | None) -> list[str] | None:
    """The class names of the node that published ``topic`` (its card), when it is not this project's
    own segmenter (an instance model: its ids are matched to the ground truth's by name)."""
    m = _node_model(summary, topic)
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


# the tools that start a stack of their own: they stay off the robot's graph unless told otherwise
ISOLATED_COMMANDS = ("replay", "eval", "demo")


def isolate_dds(domain: int | None, env: dict[str, str] | None = None) -> str:
    """Before a replay, eval or demo starts its nodes: ``--domain`` when given; else the user's
    ``ROS_DOMAIN_ID`` when set; else a domain of this process's own (1-100) with discovery on
    localhost only, so a replay on a robot or a shared network neither sees nor feeds the live
    graph. Returns the line that says which."""
    import random

    env = os.environ if env is None else env
    if domain is not None:
        env["ROS_DOMAIN_ID"] = str(domain)
        return f"DDS domain {domain} (--domain)"
    if env.get("ROS_DOMAIN_ID"):
        return f"DDS domain {env['ROS_DOMAIN_ID']} (ROS_DOMAIN_ID)"
    env["ROS_DOMAIN_ID"] = str(random.Random(os.getpid()).randint(1, 100))
    env.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    return (
        f"DDS domain {env['ROS_DOMAIN_ID']}, discovery {env['ROS_AUTOMATIC_DISCOVERY_RANGE']} (isolated from "
        "other graphs; --domain N or ROS_DOMAIN_ID to join one)"
    )


def _profiles_epilog() -> str:
    """--help's list of the shipped profiles with the first sentence of each description."""
    try:
        files = sorted(shared_path("config/profiles").glob("*.yaml"))
    except FileNotFoundError:
        return ""
    import yaml

    lines = ["profiles (--profile NAME; config/profiles/):"]
    for f in files:
        try:
            text = str((yaml.safe_load(f.read_text()) or {}).get("description", "")).strip()
        except (OSError, yaml.YAMLError):
            text = ""
        lines.append(f"  {f.stem:<18} {text.split('. ')[0][:100]}")
    return "\n".join(lines)


def _stack_options(p: argparse.ArgumentParser) -> None:
    """Options of every command that starts a profile's nodes on a bag (replay, eval, demo)."""
    p.add_argument("--frame-topic", default="/camera/image_raw", help="the bag's camera image topic")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NODE.PARAM=VALUE",
        help="NODE.PARAM=VALUE applied to the profile's node (repeatable)",
    )
    p.add_argument(
        "--domain",
        type=int,
        help="ROS_DOMAIN_ID for the replayed stack (default: ROS_DOMAIN_ID when set, else a domain of its "
        "own with localhost-only discovery)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="perception",
        description=__doc__,
        epilog=_profiles_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("run", help="start a profile's nodes as processes")
    p.add_argument(
        "--profile",
        required=True,
        help="profile name (config/profiles/, the checkout or the installed share) or a YAML path",
    )
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NODE.PARAM=VALUE",
        help="NODE.PARAM=VALUE: a parameter of a profile node, applied after its parameter files "
        "(repeatable; names are checked against the node's schema)",
    )
    p.add_argument("--log-dir", default="log/run", help="one log file per node, and run_summary.json")
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
    p.add_argument("action", choices=["keystore"], help="keystore: create (or update) the SROS2 keystore")
    p.add_argument("--profile", required=True, help="the profile whose nodes get an enclave each")
    p.add_argument("--keystore", required=True, metavar="DIR", help="keystore directory (created if missing)")
    p.set_defaults(func=_cmd_security)

    p = sub.add_parser("eval", help="replay a bag through a profile; accuracy against its ground truth and latency")
    p.add_argument(
        "--bag",
        required=True,
        help="rosbag2 (MCAP or sqlite3) with the camera topic and, for accuracy, /ground_truth/* topics",
    )
    p.add_argument(
        "--profile", required=True, help="the stack to replay it through (e.g. synthetic_replay, pretrained)"
    )
    p.add_argument(
        "--mode",
        choices=["lockstep", "realtime"],
        default="lockstep",
        help="lockstep: every frame waits for every node's answer (accuracy; no frame dropped); "
        "realtime: the bag's timing",
    )
    p.add_argument("--rate", type=float, default=1.0, help="realtime: replay speed (x the bag's timing)")
    p.add_argument("--out", default="out/eval", help="folder for the recording, report.json and report.html")
    p.add_argument(
        "--throughput",
        action="store_true",
        help="also search the highest input rate with < --max-drop %% dropped frames (realtime replays) "
        "and measure latency at --fixed-rate Hz",
    )
    p.add_argument(
        "--fixed-rate",
        type=float,
        default=30.0,
        metavar="HZ",
        help="throughput: the input rate at which latency is also measured",
    )
    p.add_argument(
        "--max-drop",
        type=float,
        default=5.0,
        metavar="PERCENT",
        help="throughput: the dropped-frame share that counts as keeping up",
    )
    p.add_argument(
        "--throughput-visuals",
        action="store_true",
        help="throughput probes record (so the nodes draw) the annotated/overlay/depth/match images "
        "too; default: per-frame outputs only, as on a robot nobody watches",
    )
    _stack_options(p)
    p.set_defaults(func=_cmd_eval)

    p = sub.add_parser("replay", help="replay a bag through a profile and record the outputs")
    p.add_argument("--bag", required=True, help="rosbag2 (MCAP or sqlite3) to play")
    p.add_argument("--profile", required=True, help="the stack to replay it through")
    p.add_argument(
        "--mode",
        choices=["lockstep", "realtime", "fast"],
        default="lockstep",
        help="lockstep (every frame waits for every node; none dropped), realtime (the bag's timing) "
        "or fast (no waiting)",
    )
    p.add_argument("--rate", type=float, default=1.0, help="realtime: replay speed (x the bag's timing)")
    p.add_argument("--out", required=True, help="folder for the recording, the logs and replay_summary.json")
    p.add_argument(
        "--timeout", type=float, default=3600.0, help="seconds before the replay is stopped (its own exit code)"
    )
    _stack_options(p)
    p.set_defaults(func=_cmd_replay)

    p = sub.add_parser("build-engine", help="build (and cache) a TensorRT engine from ONNX, nothing else")
    p.add_argument("--onnx", required=True, help="the ONNX model (its card next to it)")
    p.add_argument(
        "--precision",
        choices=["fp32", "fp16", "int8"],
        default="fp16",
        help="engine precision; int8 needs calibration images, a bag or a cache",
    )
    p.add_argument(
        "--cache-dir",
        default="~/.cache/perception/engines",
        help="engine cache directory (keyed by model, GPU, TensorRT version and precision)",
    )
    p.add_argument(
        "--input-shape",
        action="append",
        default=[],
        metavar="NAME=1,3,H,W",
        help="NAME=1,3,H,W for a dynamic input (repeatable)",
    )
    p.add_argument("--calib-images", help="folder of images for INT8 calibration")
    p.add_argument("--calib-bag", help="rosbag2 with images for INT8 calibration")
    p.add_argument("--calib-topic", default="/camera/image_raw", help="image topic of --calib-bag")
    p.add_argument("--calib-count", type=int, default=200, help="images used for INT8 calibration")
    p.add_argument("--calib-cache", help="INT8 calibration cache file (read if present, else written)")
    p.add_argument(
        "--calib-algorithm",
        choices=["entropy", "minmax"],
        default="entropy",
        help="INT8 calibrator: entropy (TensorRT's default) or minmax",
    )
    p.set_defaults(func=_cmd_build_engine)

    p = sub.add_parser(
        "start",
        help="container entrypoint: check camera/GPU/engine cache, build missing engines, then launch a profile",
    )
    p.add_argument(
        "profile",
        nargs="?",
        default=os.environ.get("PERCEPTION_PROFILE", "camera_detection"),
        help="profile name or YAML path (default: $PERCEPTION_PROFILE or camera_detection)",
    )
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NODE.PARAM=VALUE",
        help="NODE.PARAM=VALUE applied to the profile's node (repeatable)",
    )
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
    p.add_argument(
        "--launcher",
        choices=["auto", "ros2", "processes"],
        default="auto",
        help="ros2 launch (when launch_ros is installed), supervised processes, or auto (the first that works)",
    )
    p.add_argument(
        "--restart",
        type=int,
        default=0,
        metavar="N",
        help="processes launcher: restart a node that dies up to N times, then stop the stack (exit 10)",
    )
    p.add_argument("--log-dir", default="log/start", help="one log file per node (processes launcher)")
    p.set_defaults(func=_cmd_start)

    p = sub.add_parser("bag-info", help="topics, types and counts of a bag")
    p.add_argument("bag", help="a rosbag2 folder or .mcap file")
    p.set_defaults(func=_cmd_bag_info)

    p = sub.add_parser("demo", help="replay the embedded demo bag through the stack")
    p.add_argument("--out", default="out/demo", help="folder for the recording, report.json and report.html")
    p.add_argument("--cache", default="cache/demo", help="where the generated demo bag and model are kept between runs")
    p.add_argument("--bag", help="use this bag instead of the generated one")
    p.add_argument("--frames", type=int, default=60, help="frames of the generated synthetic bag")
    p.add_argument("--generic", action="store_true", help="the generic ONNX node on the generated bag instead")
    p.add_argument(
        "--profile",
        help="replay the demo bag through this profile instead of synthetic_replay (e.g. pretrained: "
        "the YOLO / XFeat models of ../shared, after make pretrained-cards)",
    )
    p.add_argument(
        "--domain",
        type=int,
        help="ROS_DOMAIN_ID for the demo's stack (default: ROS_DOMAIN_ID when set, else a domain of its "
        "own with localhost-only discovery)",
    )
    p.set_defaults(func=_cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command in ISOLATED_COMMANDS:
        line = isolate_dds(args.domain)
        if "(ROS_DOMAIN_ID)" not in line:  # the user's own domain needs no word
            print(line)
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

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
import time
from collections import Counter
from pathlib import Path
from typing import Any

from .bag_io import BagError
from .exit_codes import (ERROR_KINDS, EXIT_BAD_INPUT, EXIT_DUPLICATE_STAMPS, EXIT_EMPTY_INPUT, EXIT_FAILED,
                         EXIT_FRAMES_LOST, EXIT_FRAMES_REJECTED, EXIT_INTERRUPTED, EXIT_NODE_DIED, EXIT_OK)
from .profile import ProfileError, load_profile, parse_set
from .resources import ResourceMonitor
from .workspace import resolve_path, workspace_root

GROUND_TRUTH_PREFIX = "/ground_truth/"
PROCESSING_EXECUTABLES = {"generic_onnx_node", "detection_node", "segmentation_node", "depth_node", "odometry_node", "matching_node"}
# outputs every input frame must get exactly one of (others are optional: drawn images while
# nobody subscribes, a point cloud before CameraInfo arrived, a match picture for the first frame)
PER_FRAME_OUTPUTS = {"detection_node": ("detections",), "segmentation_node": ("labels",), "depth_node": ("depth",),
                     "odometry_node": ("depth", "odometry", "path"), "matching_node": ("keypoints", "matches")}


def _cmd_run(args: argparse.Namespace) -> int:
    from .launcher import run_until_stopped

    return run_until_stopped(load_profile(args.profile, parse_set(args.set)), args.log_dir, restart=args.restart,
                             summary_path=args.summary, interfaces=args.interface or None, keystore=args.keystore)


def _cmd_security(args: argparse.Namespace) -> int:
    from .security import SecurityError, create_keystore

    try:
        enclaves = create_keystore(args.keystore, load_profile(args.profile))
    except SecurityError as exc:
        print(f"perception security: {exc}", file=sys.stderr)
        return EXIT_FAILED
    print(f"keystore {args.keystore}: enclaves {enclaves}")
    print(f"start the stack with DDS security enforced: perception run --profile {args.profile} --keystore {args.keystore}")
    return EXIT_OK


def check_one_result_per_frame(source_bag: Path, recording: Path, frame_topic: str,
                               result_topics: list[str]) -> dict[str, Any]:
    """For each result topic: how many input frames got exactly one result with their stamp."""
    from .bag_io import header_stamp_ns, read_messages

    frames = [header_stamp_ns(cdr) for _t, _m, _ts, cdr in read_messages(source_bag, [frame_topic])]
    frame_set = set(frames)
    out: dict[str, Any] = {"frames": len(frames)}
    recorded: dict[str, Counter[int]] = {t: Counter() for t in result_topics}
    for topic, _m, _ts, cdr in read_messages(recording):
        if topic in recorded:
            recorded[topic][header_stamp_ns(cdr)] += 1
    for topic, counts in recorded.items():
        out[topic] = {
            "results": sum(counts.values()),
            "frames_with_one_result": sum(1 for f in frames if counts.get(f) == 1),
            "missing": sum(1 for f in frames if f not in counts),
            "duplicated": sum(1 for f, c in counts.items() if c > 1),
            "unknown_stamps": sum(1 for f in counts if f not in frame_set),
        }
    return out


def replay(bag: Path, profile_name: str, out: Path, mode: str = "lockstep", rate: float = 1.0,
           overrides: dict[str, dict[str, Any]] | None = None, frame_topic: str = "/camera/image_raw",
           record_regex: str | None = None, timeout: float = 600.0, quiet: bool = False,
           skip_missing_models: bool = False, per_frame_only: bool = False) -> dict[str, Any]:
    """Start the profile's nodes + a recorder + a player; returns the replay summary.
    ``per_frame_only``: record only the outputs every frame gets (no drawn images, clouds or
    diagnostics): nodes then draw nothing, as on a robot nobody watches (throughput probes)."""
    from .bag_io import bag_info, read_messages
    from .launcher import StackProcesses, stop_on_signals
    from .profile import NodeSpec

    check_replay_input(bag, frame_topic, mode)
    profile = load_profile(profile_name, overrides)
    processing = [n for n in profile.nodes if n.executable in PROCESSING_EXECUTABLES]
    if skip_missing_models:
        from .profile import effective_parameters

        kept = []
        for n in processing:
            model = effective_parameters(n).get("model_path")
            if model and not resolve_path(str(model)).is_file():
                print(f"  (skipping node '{n.name}': its model {model} is not there)")
                continue
            kept.append(n)
        processing = kept
    if not processing:
        raise ProfileError(f"profile '{profile.name}' has no processing node to replay into")
    for n in processing:
        n.parameters.setdefault("input_policy", "lockstep" if mode == "lockstep" else "realtime")
    out.mkdir(parents=True, exist_ok=True)
    recording = out / "recording"
    if recording.exists():
        import shutil

        shutil.rmtree(recording)
    if per_frame_only:
        ns_regex = "|".join(f"^{n.fqn}/({'|'.join(PER_FRAME_OUTPUTS.get(n.executable, ('.*',)))})$" for n in processing)
    else:
        ns_regex = "|".join(f"^{n.fqn}/(?!transition_event$)" for n in processing)
    recorder = NodeSpec("perception_recorder", "bag_recorder", parameters={
        "output": str(recording),
        "topics": [frame_topic] if per_frame_only else [frame_topic, "/perception/frame_status", "/diagnostics"],
        "topic_regex": record_regex or ns_regex,
        "tf_from_odometry": [f"{n.fqn}/odometry" for n in processing if n.executable in ("depth_node", "odometry_node")]})
    summary_path = out / "player_summary.json"
    # ground truth is read from the bag by the evaluation, not sent through DDS to nobody
    played = [t for t in bag_info(bag).topics if not t.startswith(GROUND_TRUTH_PREFIX)]
    player = NodeSpec("perception_player", "bag_player", parameters={
        "bag_path": str(bag), "mode": mode, "rate": float(rate), "lockstep_topic": frame_topic, "topics": played,
        "lockstep_nodes": [n.fqn for n in processing], "summary_path": str(summary_path),
        "min_subscribers": len(processing) + 1,  # the nodes and the recorder
        "wait_for_subscribers": ["/perception_recorder"],  # it finds topics by polling: wait until it has the frames
        "exit_when_done": True})
    profile.nodes = processing + [recorder]
    t0 = time.monotonic()
    interrupted = ""
    deaths: list[Any] = []
    rc: int | None = None
    timed_out = False
    monitor = None
    # Replay tools talk on this host only; the shared-memory segment holds 4 of the bag's frames.
    first = next(read_messages(bag, [frame_topic]), None)
    stack = StackProcesses(profile, out / "logs", frame_bytes=len(first[3]) if first else None,
                           interfaces=["127.0.0.1"])
    try:
        with stop_on_signals(), stack:
            # The recorder must see the output topics before the first frame.
            time.sleep(0.5)
            stack.start_node(player)
            watched = {n.name: stack.procs[n.name].pid for n in processing}
            watched.update({"(player)": stack.procs["perception_player"].pid, "(recorder)": stack.procs["perception_recorder"].pid})
            with ResourceMonitor(watched) as monitor:
                rc, deaths, timed_out = _supervise_replay(stack, timeout)
            stack.stop(["perception_player"])  # after a death: the player writes its summary and exits
            stack.stop(["perception_recorder"])
    except KeyboardInterrupt as exc:  # Ctrl-C, SIGTERM or SIGHUP: the children are stopped; summarise
        interrupted = exc.args[0] if exc.args else "SIGINT"
    died = [d.name for d in deaths]
    player_log = stack.log_text("perception_player")
    summary: dict[str, Any] = {"profile": profile.name, "bag": str(bag), "mode": mode, "rate": rate,
                               "player_exit_code": rc, "wall_time_s": round(time.monotonic() - t0, 2),
                               "nodes_died": died, "deaths": [d.describe() for d in deaths],
                               "interrupted": interrupted, "timed_out": timed_out, "recording": str(recording),
                               "resources": monitor.summary() if monitor is not None else {}}
    if summary_path.exists():
        summary["player"] = json.loads(summary_path.read_text())
    else:
        summary["player_log_tail"] = player_log[-2000:]
    result_topics = []
    if recording.exists():
        try:
            info = bag_info(recording)
        except BagError as exc:  # a recorder that died before writing anything
            summary["recording_error"] = str(exc)
        else:
            if info.note:
                summary["recording_note"] = info.note
            summary["recorded_topics"] = {t: c for t, (_m, c) in info.topics.items()}
            result_topics = [t for t in info.topics if any(t.startswith(n.fqn + "/") for n in processing)
                             and not t.endswith("/transition_event")]
            summary["results"] = check_one_result_per_frame(bag, recording, frame_topic, result_topics)
            summary["per_frame_topics"] = [t for t in result_topics if _per_frame(t, processing)]
            summary["drops"] = _drops(summary["results"], processing)
    summary["models"] = _models(processing)
    summary["exit_code"], summary["verdict"] = replay_verdict(summary)
    (out / "replay_summary.json").write_text(json.dumps(summary, indent=2))
    if not quiet:
        print_summary(summary)
    return summary


def _supervise_replay(stack: Any, timeout: float, poll_s: float = 0.1) -> tuple[int | None, list[Any], bool]:
    """Wait for the player; a node or the recorder dying ends the replay at once (its name, exit
    code and last log lines in the summary), instead of every later frame waiting out its
    retries. Returns (the player's exit code or None, the deaths, whether ``timeout`` ran out)."""
    player = stack.procs["perception_player"]
    deadline = time.monotonic() + timeout
    while True:
        rc = player.poll()
        if rc is not None:
            stack.deaths()  # the player's own exit is not a death
            return rc, [], False
        deaths = [d for d in stack.deaths() if d.name != "perception_player"]
        if deaths:
            for d in deaths:
                print(f"perception: {d.describe()}", file=sys.stderr, flush=True)
            return None, deaths, False
        if time.monotonic() > deadline:
            print(f"perception: the replay did not finish within {timeout:g} s; stopping it", file=sys.stderr)
            return None, [], True
        time.sleep(poll_s)


def replay_verdict(summary: dict[str, Any]) -> tuple[int, str]:
    """The replay's exit code and one line saying why (exit_codes: 0 only when every frame got
    an ok answer from every node)."""
    p = summary.get("player", {})
    if summary.get("interrupted"):
        return EXIT_INTERRUPTED, f"stopped by {summary['interrupted']} before the end"
    if summary.get("nodes_died"):
        return EXIT_NODE_DIED, f"node(s) {summary['nodes_died']} died during the replay (see the logs)"
    if summary.get("timed_out"):
        return EXIT_FAILED, "the replay did not finish within its --timeout"
    if p.get("error"):
        return ERROR_KINDS.get(p.get("error_kind", ""), EXIT_FAILED), p["error"]
    if not p or summary.get("player_exit_code") not in (0, None) and not p.get("frames"):
        return EXIT_FAILED, f"the player failed (exit {summary.get('player_exit_code')}); see its log"
    if summary.get("player_exit_code") is None:
        return EXIT_FAILED, "the player did not finish"
    if not p.get("frames"):
        return EXIT_EMPTY_INPUT, "no frames were played"
    if p.get("frames_lost"):
        return EXIT_FRAMES_LOST, f"{p['frames_lost']} of {p['frames']} frames got no answer from every node"
    if p.get("frames_rejected_by_nodes"):
        return EXIT_FRAMES_REJECTED, (f"nodes rejected {p['frames_rejected_by_nodes']} frame answers "
                                      f"(of {p['frames']} frames); see FrameStatus.detail in the recording")
    return EXIT_OK, "every frame got an ok answer from every node"


def check_replay_input(bag: Path, frame_topic: str, mode: str) -> None:
    """Refuse before starting any node: an unreadable bag (BagError), a frame topic with no
    messages, frames sharing a stamp in lockstep (ReplayInputError with its exit code)."""
    from .bag_io import bag_info, duplicate_stamps

    info = bag_info(bag)
    if info.note:
        print(f"perception: {info.note}", file=sys.stderr)
    if frame_topic not in info.topics or info.topics[frame_topic][1] == 0:
        have = {t: c for t, (_m, c) in info.topics.items()}
        raise ReplayInputError(EXIT_EMPTY_INPUT, f"bag '{bag}' has no messages on the frame topic {frame_topic} "
                               f"(topics: {have}); choose it with --frame-topic")
    if mode == "lockstep":
        dup = duplicate_stamps(bag, frame_topic)
        if dup:
            raise ReplayInputError(EXIT_DUPLICATE_STAMPS, f"bag '{bag}': {dup}")


class ReplayInputError(RuntimeError):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


def card_headline(card: dict[str, Any]) -> str:
    """The held-out numbers a model card reports, in one line (what this replay can be held against)."""
    m = card.get("metrics") or {}
    task = card.get("task")
    try:
        if task == "detection":
            return f"mAP@[.5:.95] {m['mAP']:.3f}, mAP@0.5 {m['mAP50']:.3f}"
        if task == "segmentation":
            return f"mIoU {m['mIoU']:.3f}"
        if task == "depth":
            return f"AbsRel {m['absolute']['abs_rel']:.3f}, δ<1.25 {m['absolute']['a1']:.3f}"
        if task == "matching":
            return f"homography MMA@3 {m['homography_mma']['3']:.3f}, pose AUC@10 {m['pose_auc']['10']:.3f}"
    except (KeyError, TypeError):
        pass
    return ""


def _models(processing: list[Any]) -> dict[str, dict[str, Any]]:
    """Per node: its model file, the card's task, sha256 and held-out headline (report context)."""
    import yaml

    from .model_card import card_path
    from .profile import effective_parameters

    out = {}
    for n in processing:
        model = effective_parameters(n).get("model_path")
        if not model:
            continue
        path = resolve_path(str(model))
        try:
            card = yaml.safe_load(card_path(path).read_text()) or {}
        except (OSError, yaml.YAMLError):
            card = {}
        out[n.name] = {"model": str(path), "task": card.get("task", "?"), "sha256": str(card.get("sha256", ""))[:12],
                       "card_metrics": card_headline(card)}
    return out


def _drops(results: dict[str, Any], processing: list[Any]) -> dict[str, dict[str, Any]]:
    """Per node: input frames that got no result on its (first) per-frame output. A realtime node
    drops frames it is too busy for; in lockstep this must be 0."""
    out = {}
    for n in processing:
        outs = PER_FRAME_OUTPUTS.get(n.executable)
        topics = [f"{n.fqn}/{o}" for o in outs] if outs else [t for t in results if t.startswith(n.fqn + "/")]
        topic = next((t for t in topics if t in results), None)
        frames = int(results.get("frames", 0))
        missing = results[topic]["missing"] if topic else frames
        out[n.name] = {"topic": topic, "frames": frames, "dropped": int(missing),
                       "percent": 100.0 * missing / frames if frames else 0.0}
    return out


def _per_frame(topic: str, processing: list[Any]) -> bool:
    for n in processing:
        if topic.startswith(n.fqn + "/"):
            outs = PER_FRAME_OUTPUTS.get(n.executable)
            return outs is None or topic[len(n.fqn) + 1:] in outs
    return False


def print_summary(summary: dict[str, Any]) -> None:
    p = summary.get("player", {})
    print(f"\nreplay of {summary['bag']} through profile '{summary['profile']}' ({summary['mode']})")
    print(f"  player: {p.get('frames', '?')} frames, lost {p.get('frames_lost', '?')}, "
          f"retries {p.get('retries', '?')}, {p.get('wall_time_s', '?')} s, exit {summary['player_exit_code']}")
    for node, st in (p.get("processing_ms") or {}).items():
        print(f"  {node}: processing median {st['median']:.2f} ms, p95 {st['p95']:.2f} ms ({st['count']} frames)")
    res = summary.get("results", {})
    for topic, r in res.items():
        if isinstance(r, dict):
            print(f"  {topic}: {r['results']} results, {r['frames_with_one_result']}/{res['frames']} "
                  f"frames with exactly one, missing {r['missing']}, duplicated {r['duplicated']}")
    for death in summary.get("deaths", []):
        print("  " + death.replace("\n", "\n  "))
    if summary.get("recording_note"):
        print(f"  recording: {summary['recording_note']}")
    print(f"  recording: {summary.get('recording')}")
    if "exit_code" in summary:
        print(f"  result: {summary['verdict']} (exit {summary['exit_code']})")


def _cmd_replay(args: argparse.Namespace) -> int:
    summary = replay(resolve_path(args.bag), args.profile, Path(args.out), args.mode, args.rate,
                     parse_set(args.set), args.frame_topic, timeout=args.timeout)
    return int(summary["exit_code"])


def _cmd_build_engine(args: argparse.Namespace) -> int:
    import logging

    from .backends.tensorrt_backend import TensorRTBackend
    from .backends.base import BackendError

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    shapes = {}
    for item in args.input_shape:
        name, _, dims = item.partition("=")
        shapes[name] = tuple(int(d) for d in dims.split(","))
    batches = None
    if args.precision == "int8" and (args.calib_images or args.calib_bag):
        from .backends.calibration import calibration_batches

        batches = calibration_batches(Path(args.onnx), shapes, images=args.calib_images, bag=args.calib_bag,
                                      topic=args.calib_topic, count=args.calib_count)
    try:
        backend = TensorRTBackend(args.onnx, cache_dir=args.cache_dir, precision=args.precision,
                                  input_shapes=shapes or None, calibration_batches=batches,
                                  calibration_cache=args.calib_cache, calibration_algorithm=args.calib_algorithm,
                                  progress=True, log_fn=print)
    except BackendError as exc:
        print(f"perception build-engine: {exc}", file=sys.stderr)
        return 2
    print(f"engine ready: {backend.engine_path}")
    print(f"warm-up inference: {backend.warmup(5):.2f} ms")
    backend.close()
    return 0


def _cmd_start(args: argparse.Namespace) -> int:
    from .deploy import start_main

    return start_main(args)


def _cmd_bag_info(args: argparse.Namespace) -> int:
    from .bag_io import BagError, bag_info

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
    write_sequence(SyntheticSequence(SynthConfig(preset="driving", seed=901, frames=frames)), tmp,
                   dataset=False, bag=True, workers=2)
    (tmp / "bag").rename(bag)
    tmp.rmdir()
    return True


def _cmd_demo(args: argparse.Namespace) -> int:
    from .demo_assets import make_demo_bag, make_demo_model

    cache = resolve_path(args.cache)
    models = workspace_root() / "models"
    tasks = (models / "detector.onnx").is_file() and (models / "segmenter.onnx").is_file() and not args.generic
    if tasks:
        # the shipped detector and segmenter on a synthetic driving scene they have not seen
        bag = Path(args.bag) if args.bag else cache / f"synthetic_bag_{args.frames}"
        if not args.bag and not bag.exists() and not _synthetic_demo_bag(bag, args.frames):
            tasks = False
    if tasks:
        mount = camera_mount_from_ground_truth(bag)
        if mount:
            print(f"  camera {mount['camera_height']:.2f} m above the ground, pitch {mount['camera_pitch_deg']:.1f}° (the scene's "
                  "ground truth at its first frame, as a robot knows its camera mount): detector ground positions on, "
                  "depth + odometry scale from the camera height")
        summary = replay(bag, "synthetic_replay", Path(args.out), "lockstep", skip_missing_models=True,
                         overrides={"detector": {"use_camera_info": True, **mount},
                                    "odometry": {"scale_source": "camera_height", **mount}} if mount else None)
    else:
        model = cache / "demo_model.onnx"
        bag = Path(args.bag) if args.bag else cache / f"demo_bag_{args.frames}"
        if not model.exists():
            make_demo_model(model)
        if not args.bag and not bag.exists():
            print(f"generating {bag} ({args.frames} frames of 640x480 rgb8)")
            make_demo_bag(bag, frames=args.frames)
        summary = replay(bag, "generic_replay", Path(args.out), "lockstep",
                         overrides={"generic": {"model_path": str(model)}})
    res = summary.get("results", {})
    per_frame = summary.get("per_frame_topics", [])
    ok = summary["player_exit_code"] == 0 and bool(per_frame) and all(
        res[t]["frames_with_one_result"] == res["frames"] for t in per_frame)
    if tasks and ok:
        _print_detection_summary(Path(summary["recording"]))
        write_reports(summary, bag, Path(args.out))
    print(f"\ndemo {'OK' if ok else 'FAILED'}: summary in {Path(args.out) / 'replay_summary.json'}")
    return 0 if ok else 1


def camera_mount_from_ground_truth(bag: Path) -> dict[str, float] | None:
    """Camera height above the ground (z of the odom frame, REP-103: z up, ground at 0) and pitch
    below the horizon of the bag's first /ground_truth/odometry pose; None without one."""
    import numpy as np

    from .bag_io import bag_info, read_messages, typestore
    from .evaluation import odometry_pose

    topic = GROUND_TRUTH_PREFIX + "odometry"
    if topic not in bag_info(bag).topics:
        return None
    _t, msgtype, _l, raw = next(read_messages(bag, [topic]))
    T = odometry_pose(typestore(bag).deserialize_cdr(raw, msgtype))
    forward = T[:3, 0]  # the body's x axis in odom
    return {"camera_height": float(T[2, 3]), "camera_pitch_deg": float(np.degrees(np.arcsin(-forward[2])))}


def _print_detection_summary(recording: Path) -> None:
    from .bag_io import read_messages, typestore

    store = typestore(recording)
    counts: Counter[str] = Counter()
    frames = 0
    for _t, msgtype, _ts, raw in read_messages(recording, ["/detector/detections"]):
        frames += 1
        for d in store.deserialize_cdr(raw, msgtype).detections:
            counts[d.class_name] += 1
    print(f"  detections over {frames} frames: {dict(counts.most_common())}")


# outputs perception eval scores, by their topic's last name (the task keys of evaluate_recording)
EVAL_OUTPUTS = ("detections", "labels", "depth", "odometry", "matches")


def _cmd_eval(args: argparse.Namespace) -> int:
    out, bag = Path(args.out), resolve_path(args.bag)
    summary = replay(bag, args.profile, out, args.mode, args.rate, parse_set(args.set), args.frame_topic,
                     skip_missing_models=True)
    if summary["exit_code"] not in (EXIT_OK, EXIT_FRAMES_REJECTED) or not summary.get("per_frame_topics"):
        print(f"perception eval: no report: {summary['verdict']}", file=sys.stderr)
        return int(summary["exit_code"]) or EXIT_FAILED
    throughput = None
    if args.throughput:
        from .throughput import throughput as measure

        print(f"\nthroughput: realtime replays at chosen input rates (< {args.max_drop:g} % dropped frames)")
        throughput = measure(bag, args.profile, out / "throughput", args.fixed_rate, args.max_drop, args.frame_topic,
                             overrides=parse_set(args.set), visuals=args.throughput_visuals)
    write_reports(summary, bag, out, args.frame_topic, throughput)
    if args.mode != "lockstep" and summary["exit_code"] == EXIT_FRAMES_LOST:
        return EXIT_OK  # realtime drops frames by design; the report counts them
    return int(summary["exit_code"])


def eval_report(summary: dict[str, Any], bag: Path, series: dict[str, Any] | None = None,
                frame_topic: str = "/camera/image_raw") -> dict[str, Any]:
    """Accuracy + latency of a replay (its summary) against the bag's ground truth."""
    from .evaluation import evaluate_recording

    per_frame = summary.get("per_frame_topics", [])
    outputs = {task: t for t in per_frame for task in EVAL_OUTPUTS if t.endswith("/" + task)}
    return {"bag": summary["bag"], "profile": summary["profile"], "mode": summary["mode"], "rate": summary.get("rate", 1.0),
            "player": summary.get("player", {}), "results": summary.get("results", {}), "drops": summary.get("drops", {}),
            "resources": summary.get("resources", {}), "models": summary.get("models", {}),
            **evaluate_recording(bag, Path(summary["recording"]), outputs, frame_topic, timed=per_frame, series=series,
                                 frame_published=frame_publish_times(summary))}


def frame_publish_times(summary: dict[str, Any]) -> dict[int, int]:
    """Input stamp -> the player's wall time of publishing that frame (from its summary)."""
    return {int(s): int(t) for s, t in summary.get("player", {}).get("frame_publish_ns", [])}


def write_reports(summary: dict[str, Any], bag: Path, out: Path, frame_topic: str = "/camera/image_raw",
                  throughput: dict[str, Any] | None = None) -> dict[str, Any]:
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
        print(f"  detection     mAP@[.5:.95] {m['detection']['mAP']:.3f}  mAP@0.5 {m['detection']['mAP50']:.3f}"
              + (f"; ground distance error median {gp['median_distance_error_m']:.2f} m ({100 * gp['median_relative_error']:.0f} %), "
                 f"{100 * gp['within_10_percent']:.0f} % within 10 % ({gp['pairs']} detections)" if gp else ""))
    if "segmentation" in m:
        print(f"  segmentation  mIoU {m['segmentation']['mIoU']:.3f}  pixel accuracy {m['segmentation']['pixel_accuracy']:.3f}")
    if "depth" in m:
        a = m["depth"]["absolute"]
        print(f"  depth         AbsRel {a['abs_rel']:.3f}  RMSE {a['rmse']:.2f} m  d1 {a['a1']:.3f}")
    if "odometry" in m and "ate_rmse_m" in m["odometry"]:
        o = m["odometry"]
        print(f"  odometry      ATE {o['ate_rmse_m']:.2f} m = {o['ate_percent_of_path']:.1f} % of {o['path_length_m']:.1f} m (SE(3))")
    if "matching" in m:
        g = m["matching"].get("geometry")
        print(f"  matching      {m['matching']['matches_per_frame']:.0f} matches/frame, inlier ratio {m['matching']['inlier_ratio']:.2f}"
              + (f", relative pose error R {g['rotation_error_deg_median']:.2f}° t {g['translation_direction_error_deg_median']:.1f}° "
                 f"(median), AUC@10° {g['pose_auc']['@10deg']:.2f}" if g else ""))
    for node, mdl in report.get("models", {}).items():
        if mdl["card_metrics"]:
            print(f"  ({node}: {Path(mdl['model']).name}, its card's held-out result: {mdl['card_metrics']})")
    print("nodes (latency: input frame published -> output received; CPU in % of one core):")
    drops, res = report.get("drops", {}), report.get("resources", {})
    print(f"  {'output':28s} {'median':>8s} {'p95':>8s} {'p99':>8s} {'fps':>6s} {'dropped':>8s} {'CPU %':>6s} {'RSS MiB':>8s}")
    for topic, st in report["latency"].items():
        node = next((n for n, d in drops.items() if d.get("topic") == topic), None)
        d, r = drops.get(node or "", {}), res.get(node or "", {})
        cpu, rss = (f"{r['cpu_percent_mean']:6.0f}", f"{r['rss_mib_peak']:8.0f}") if r else ("", "")
        print(f"  {topic:28s} {st['median_ms']:8.1f} {st['p95_ms']:8.1f} {st['p99_ms']:8.1f} {st['fps']:6.1f} "
              f"{d.get('dropped', ''):>8} {cpu:>6s} {rss:>8s}")
    tools = [f"{n[1:-1]} CPU {r['cpu_percent_mean']:.0f} % RSS {r['rss_mib_peak']:.0f} MiB" for n, r in res.items() if n.startswith("(")]
    if tools:
        print(f"  replay tools: {', '.join(tools)}")
    tp = report.get("throughput")
    if tp:
        f = tp["at_fixed_rate"]
        print(f"throughput: {tp['max_rate_hz']:.1f} Hz with < {tp['max_drop_percent']:g} % dropped frames "
              f"(first failing {tp['first_failing_rate_hz']} Hz, bottleneck {tp['bottleneck']}); at {tp['fixed_rate_hz']:g} Hz: "
              + ", ".join(f"{n} drops {d['percent']:.0f} % latency {f['latency_ms'].get(n, float('nan')):.0f} ms"
                          for n, d in f["drops"].items()))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="perception", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("run", help="start a profile's nodes as processes")
    p.add_argument("--profile", required=True)
    p.add_argument("--set", action="append", default=[], metavar="NODE.PARAM=VALUE")
    p.add_argument("--log-dir", default="log/run")
    p.add_argument("--restart", type=int, default=0, metavar="N",
                   help="restart a node that dies up to N times; after that (default: at once) stop the "
                   "stack and exit 10")
    p.add_argument("--summary", help="summary JSON (default: LOG_DIR/run_summary.json), written also after "
                   "Ctrl-C, SIGTERM/SIGHUP or a node's death")
    p.add_argument("--interface", action="append", default=[], metavar="ADDRESS",
                   help="bind the nodes' UDP transport to this address only (repeatable; e.g. 127.0.0.1, or the "
                   "robot's internal network); default: every interface")
    p.add_argument("--keystore", help="enforce DDS security (SROS2): each node runs in its enclave of this keystore "
                   "(`perception security keystore`); needs a security-enabled middleware (the ROS install path)")
    p.set_defaults(func=_cmd_run)

    p = sub.add_parser("security", help="SROS2 keystore for a profile: one enclave per node, permissions "
                       "granting only the stack's topics and services")
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
    p.add_argument("--throughput", action="store_true",
                   help="also search the highest input rate with < --max-drop %% dropped frames (realtime replays) "
                   "and measure latency at --fixed-rate Hz")
    p.add_argument("--fixed-rate", type=float, default=30.0, metavar="HZ")
    p.add_argument("--max-drop", type=float, default=5.0, metavar="PERCENT")
    p.add_argument("--throughput-visuals", action="store_true",
                   help="throughput probes record (so the nodes draw) the annotated/overlay/depth/match images "
                   "too; default: per-frame outputs only, as on a robot nobody watches")
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

    p = sub.add_parser("start", help="container entrypoint: check camera/GPU/engine cache, build "
                       "missing engines, then launch a profile")
    p.add_argument("profile", nargs="?", default=os.environ.get("PERCEPTION_PROFILE", "camera_generic"),
                   help="profile name or YAML path (default: $PERCEPTION_PROFILE or camera_generic)")
    p.add_argument("--set", action="append", default=[], metavar="NODE.PARAM=VALUE")
    p.add_argument("--camera", help="camera device or file for the profile's camera_source nodes")
    p.add_argument("--engine-cache", default=os.environ.get("PERCEPTION_ENGINE_CACHE"),
                   help="engine cache directory (a mounted volume; default: $PERCEPTION_ENGINE_CACHE "
                   "or each node's engine_cache_dir)")
    p.add_argument("--allow-cpu", action="store_true",
                   default=os.environ.get("PERCEPTION_ALLOW_CPU", "") in ("1", "true", "yes"),
                   help="without a GPU, run TensorRT nodes with ONNX Runtime on the CPU instead of failing")
    p.add_argument("--no-build", action="store_true", help="do not build missing engines here")
    p.add_argument("--build-only", action="store_true", help="check and build engines, then exit")
    p.add_argument("--check", action="store_true", help="run the checks only, then exit")
    p.add_argument("--launcher", choices=["auto", "ros2", "processes"], default="auto")
    p.add_argument("--restart", type=int, default=0, metavar="N",
                   help="processes launcher: restart a node that dies up to N times, then stop the stack (exit 10)")
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

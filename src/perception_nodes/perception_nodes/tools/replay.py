"""Replaying a bag through a stack profile: the profile's nodes, a recorder and a player, supervised.

:func:`replay` is what ``perception replay``, ``eval``, ``demo`` and the throughput search run.
Before any node starts, :func:`check_replay_input` refuses an unreadable bag, an empty frame topic
and (lockstep) frames that share a stamp. The nodes, recorder and player are children of this
process (launcher.StackProcesses: own process groups, parent-death signal); a child that dies ends
the replay at once with its name, exit code and last log lines; SIGTERM/SIGHUP/Ctrl-C stop them
all, and ``replay_summary.json`` is written in every case. :func:`replay_verdict` turns the summary
into the exit code (exit_codes.py): 0 only when every frame got an ok answer from every node.
"""

from __future__ import annotations

import json
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from ..bag_io import BagError
from ..exit_codes import (
    ERROR_KINDS,
    EXIT_EMPTY_INPUT,
    EXIT_FAILED,
    EXIT_FRAMES_LOST,
    EXIT_FRAMES_REJECTED,
    EXIT_INTERRUPTED,
    EXIT_NODE_DIED,
    EXIT_OK,
)
from ..profile import ProfileError, load_profile
from ..tasks import MULTITASK_NAMESPACES, PER_FRAME_OUTPUTS, PROCESSING_NODES, output_prefix, owns_topic
from ..workspace import resolve_path
from .resources import ResourceMonitor

GROUND_TRUTH_PREFIX = "/ground_truth/"


def check_one_result_per_frame(
    source_bag: Path, recording: Path, frame_topic: str, result_topics: list[str]
) -> dict[str, Any]:
    """For each result topic: how many input frames got exactly one result with their stamp."""
    from ..bag_io import header_stamp_ns, read_messages

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


def replay(
    bag: Path,
    profile_name: str,
    out: Path,
    mode: str = "lockstep",
    rate: float = 1.0,
    overrides: dict[str, dict[str, Any]] | None = None,
    frame_topic: str = "/camera/image_raw",
    record_regex: str | None = None,
    timeout: float = 600.0,
    quiet: bool = False,
    skip_missing_models: bool = False,
    per_frame_only: bool = False,
) -> dict[str, Any]:
    """Start the profile's nodes + a recorder + a player; returns the replay summary.
    ``per_frame_only``: record only the outputs every frame gets (no drawn images, clouds or
    diagnostics): nodes then draw nothing, as on a robot nobody watches (throughput probes)."""
    from ..bag_io import bag_info, read_messages
    from ..launcher import StackProcesses, stop_on_signals
    from ..profile import NodeSpec

    check_replay_input(bag, frame_topic, mode)
    profile = load_profile(profile_name, overrides)
    processing = [n for n in profile.nodes if n.executable in PROCESSING_NODES]
    if skip_missing_models:
        from ..profile import effective_parameters

        kept = []
        for n in processing:
            model = effective_parameters(n).get("model_path")
            if model and not _model_present(resolve_path(str(model))):
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
        ns_regex = "|".join(
            f"^{_root(n)}/({'|'.join(PER_FRAME_OUTPUTS.get(n.executable, ('.*',)))})$" for n in processing
        )
    else:
        ns_regex = "|".join(
            f"^{_root(n)}/({'|'.join(MULTITASK_NAMESPACES.values())})/"
            if n.executable == "multitask_node"
            else f"^{n.fqn}/(?!transition_event$)"
            for n in processing
        )
    bag_topics = bag_info(bag).topics
    camera_info = frame_topic.rsplit("/", 1)[0] + "/camera_info"
    # the camera's calibration and mounting travel with the recording, so it is viewable on its own
    context = [t for t in (camera_info,) if t in bag_topics and not per_frame_only]
    recorder = NodeSpec(
        "perception_recorder",
        "bag_recorder",
        parameters={
            "output": str(recording),
            "topics": [frame_topic, *context]
            if per_frame_only
            else [frame_topic, *context, "/perception/frame_status", "/diagnostics"],
            "copy_from": str(bag),
            "copy_topics": [] if per_frame_only else [t for t in ("/tf_static",) if t in bag_topics],
            "topic_regex": record_regex or ns_regex,
            "tf_from_odometry": [
                f"{n.fqn}/odometry" for n in processing if n.executable in ("depth_node", "odometry_node")
            ]
            + [f"{_root(n)}/odometry/odometry" for n in processing if n.executable == "multitask_node"],
        },
    )
    summary_path = out / "player_summary.json"
    # ground truth is read from the bag by the evaluation, not sent through DDS to nobody
    played = [t for t in bag_info(bag).topics if not t.startswith(GROUND_TRUTH_PREFIX)]
    player = NodeSpec(
        "perception_player",
        "bag_player",
        parameters={
            "bag_path": str(bag),
            "mode": mode,
            "rate": float(rate),
            "lockstep_topic": frame_topic,
            "topics": played,
            "lockstep_nodes": [n.fqn for n in processing],
            "summary_path": str(summary_path),
            "progress_path": str(out / "logs" / "player_progress.json"),
            "min_subscribers": len(processing) + 1,  # the nodes and the recorder
            # the recorder finds topics by polling: wait until it has the frames and every output
            "wait_for_subscribers": ["/perception_recorder"],
            "wait_for_outputs_regex": record_regex or ns_regex,
            "exit_when_done": True,
        },
    )
    profile.nodes = processing + [recorder]
    t0 = time.monotonic()
    interrupted = ""
    deaths: list[Any] = []
    rc: int | None = None
    timed_out = False
    monitor = None
    # Replay tools talk on this host only; the shared-memory segment holds 4 of the bag's frames.
    first = next(read_messages(bag, [frame_topic]), None)
    stack = StackProcesses(
        profile, out / "logs", frame_bytes=len(first[3]) if first else None, interfaces=["127.0.0.1"]
    )
    try:
        with stop_on_signals(), stack:
            # The recorder must see the output topics before the first frame.
            time.sleep(0.5)
            stack.start_node(player)
            watched = {n.name: stack.procs[n.name].pid for n in processing}
            watched.update(
                {"(player)": stack.procs["perception_player"].pid, "(recorder)": stack.procs["perception_recorder"].pid}
            )
            with ResourceMonitor(watched) as monitor:
                bar = ProgressBar(out / "logs" / "player_progress.json", disable=quiet)
                try:
                    rc, deaths, timed_out = _supervise_replay(stack, timeout, on_poll=bar.poll)
                finally:
                    bar.close()
            stack.stop(["perception_player"])  # after a death: the player writes its summary and exits
            stack.stop(["perception_recorder"])
    except KeyboardInterrupt as exc:  # Ctrl-C, SIGTERM or SIGHUP: the children are stopped; summarise
        interrupted = exc.args[0] if exc.args else "SIGINT"
    died = [d.name for d in deaths]
    player_log = stack.log_text("perception_player")
    summary: dict[str, Any] = {
        "profile": profile.name,
        "bag": str(bag),
        "mode": mode,
        "rate": rate,
        "player_exit_code": rc,
        "wall_time_s": round(time.monotonic() - t0, 2),
        "nodes_died": died,
        "deaths": [d.describe() for d in deaths],
        "interrupted": interrupted,
        "timed_out": timed_out,
        "recording": str(recording),
        "resources": monitor.summary() if monitor is not None else {},
    }
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
            result_topics = [
                t for t in info.topics if any(_owns(n, t) for n in processing) and not t.endswith("/transition_event")
            ]
            summary["results"] = check_one_result_per_frame(bag, recording, frame_topic, result_topics)
            summary["per_frame_topics"] = [t for t in result_topics if _per_frame(t, processing)]
            summary["drops"] = _drops(summary["results"], processing)
    summary["models"] = _models(processing)
    summary["exit_code"], summary["verdict"] = replay_verdict(summary)
    (out / "replay_summary.json").write_text(json.dumps(summary, indent=2))
    if not quiet:
        print_summary(summary)
    return summary


class ProgressBar:
    """The replay's progress in the terminal (frames done / total, rate, ETA; tqdm on stderr, only
    on a terminal) from the player's progress file: the player itself logs to its file."""

    def __init__(self, path: Path, disable: bool = False, file: Any = None) -> None:
        self.path, self.disable, self.file, self.bar, self.lost = path, disable, file, None, 0

    def poll(self) -> None:
        if self.disable or not self.path.is_file():
            return
        try:
            state = json.loads(self.path.read_text())
        except (OSError, ValueError):  # being replaced: the next poll reads it
            return
        if self.bar is None:
            from tqdm import tqdm

            self.bar = tqdm(
                total=state.get("frames_total") or None,
                desc="replay",
                unit="frame",
                file=self.file,
                disable=None if self.file is None else False,  # on stderr: only on a terminal
            )
        if int(state["frames"]) != self.bar.n:
            self.bar.update(int(state["frames"]) - self.bar.n)
            self.bar.refresh()  # the supervisor polls every 0.1 s: show each change
        if state.get("lost", 0) != self.lost:
            self.lost = state["lost"]
            self.bar.set_postfix(lost=self.lost)

    def close(self) -> None:
        if self.bar is not None:
            self.poll()
            self.bar.close()


def _supervise_replay(
    stack: Any, timeout: float, poll_s: float = 0.1, on_poll: Any = None
) -> tuple[int | None, list[Any], bool]:
    """Wait for the player; a node or the recorder dying ends the replay at once (its name, exit
    code and last log lines in the summary), instead of every later frame waiting out its
    retries. Returns (the player's exit code or None, the deaths, whether ``timeout`` ran out).
    ``on_poll`` runs at every poll (the progress bar)."""
    player = stack.procs["perception_player"]
    deadline = time.monotonic() + timeout
    while True:
        if on_poll is not None:
            on_poll()
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
    if not p or (summary.get("player_exit_code") not in (0, None) and not p.get("frames")):
        return EXIT_FAILED, f"the player failed (exit {summary.get('player_exit_code')}); see its log"
    if summary.get("player_exit_code") is None:
        return EXIT_FAILED, "the player did not finish"
    if not p.get("frames"):
        return EXIT_EMPTY_INPUT, "no frames were played"
    if p.get("frames_lost"):
        return EXIT_FRAMES_LOST, f"{p['frames_lost']} of {p['frames']} frames got no answer from every node"
    if p.get("frames_rejected_by_nodes"):
        return EXIT_FRAMES_REJECTED, (
            f"nodes rejected {p['frames_rejected_by_nodes']} frame answers "
            f"(of {p['frames']} frames); see FrameStatus.detail in the recording"
        )
    return EXIT_OK, "every frame got an ok answer from every node"


def check_replay_input(bag: Path, frame_topic: str, mode: str) -> None:
    """Refuse before starting any node: an unreadable bag (BagError), a frame topic with no
    messages, frames sharing a stamp in lockstep (ReplayInputError with its exit code)."""
    from ..bag_io import bag_info, frame_topic_problem

    info = bag_info(bag)
    if info.note:
        print(f"perception: {info.note}", file=sys.stderr)
    problem = frame_topic_problem(bag, info, frame_topic, mode == "lockstep")
    if problem:
        kind, why = problem
        raise ReplayInputError(
            ERROR_KINDS[kind], why + ("; choose it with --frame-topic" if kind == "empty_input" else "")
        )


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


def _model_present(path: Path) -> bool:
    """The model file is there (for a card that names its ONNX file, both are)."""
    from ..model_card import ModelCardError, model_files

    if not path.is_file():
        return False
    try:
        return model_files(path)[0].is_file()
    except ModelCardError:
        return False


def _models(processing: list[Any]) -> dict[str, dict[str, Any]]:
    """Per node: its model file, the card's task, sha256 and held-out headline (report context)."""
    import yaml

    from ..model_card import card_path
    from ..profile import effective_parameters

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
        if card.get("task") == "multitask":  # one entry per task, under the name its outputs go to
            for task, section in (card.get("tasks") or {}).items():
                classes = [str(c) for c in section.get("classes") or []]
                out[MULTITASK_NAMESPACES[task]] = {
                    "model": str(path),
                    "task": task,
                    "family": "native",
                    "classes": classes,
                    "label_names": classes,
                    "sha256": str(card.get("sha256", ""))[:12],
                    "card_metrics": card_headline({"task": task, "metrics": section.get("metrics") or {}}),
                }
            continue
        classes = [str(c) for c in card.get("classes") or []]
        out[n.name] = {
            "model": str(path),
            "task": card.get("task", "?"),
            "family": card.get("family", "native"),
            "classes": classes,  # what its detections' class ids index
            # what the ids of its label images mean (an instance model's 0 is "none of its classes")
            "label_names": (["background"] + classes) if card.get("family") == "yolo-segment" else classes,
            "sha256": str(card.get("sha256", ""))[:12],
            "card_metrics": card_headline(card),
        }
    return out


def _root(n: Any) -> str:
    """The prefix of a node's output topics (its name; a multi-task node's namespace)."""
    return output_prefix(n.executable, n.fqn, n.namespace)


def _owns(n: Any, topic: str) -> bool:
    return owns_topic(n.executable, n.fqn, n.namespace, topic)


def _drops(results: dict[str, Any], processing: list[Any]) -> dict[str, dict[str, Any]]:
    """Per node: input frames that got no result on its (first) per-frame output. A realtime node
    drops frames it is too busy for; in lockstep this must be 0."""
    out = {}
    for n in processing:
        outs = PER_FRAME_OUTPUTS.get(n.executable)
        topics = [f"{_root(n)}/{o}" for o in outs] if outs else [t for t in results if _owns(n, t)]
        topic = next((t for t in topics if t in results), None)
        frames = int(results.get("frames", 0))
        missing = results[topic]["missing"] if topic else frames
        out[n.name] = {
            "topic": topic,
            "frames": frames,
            "dropped": int(missing),
            "percent": 100.0 * missing / frames if frames else 0.0,
        }
    return out


def _per_frame(topic: str, processing: list[Any]) -> bool:
    for n in processing:
        if _owns(n, topic):
            outs = PER_FRAME_OUTPUTS.get(n.executable)
            return outs is None or topic[len(_root(n)) + 1 :] in outs
    return False


def print_summary(summary: dict[str, Any]) -> None:
    p = summary.get("player", {})
    print(f"\nreplay of {summary['bag']} through profile '{summary['profile']}' ({summary['mode']})")
    print(
        f"  player: {p.get('frames', '?')} frames, lost {p.get('frames_lost', '?')}, "
        f"retries {p.get('retries', '?')}, {p.get('wall_time_s', '?')} s, exit {summary['player_exit_code']}"
    )
    for node, st in (p.get("processing_ms") or {}).items():
        print(f"  {node}: processing median {st['median']:.2f} ms, p95 {st['p95']:.2f} ms ({st['count']} frames)")
    res = summary.get("results", {})
    for topic, r in res.items():
        if isinstance(r, dict):
            print(
                f"  {topic}: {r['results']} results, {r['frames_with_one_result']}/{res['frames']} "
                f"frames with exactly one, missing {r['missing']}, duplicated {r['duplicated']}"
            )
    for death in summary.get("deaths", []):
        print("  " + death.replace("\n", "\n  "))
    if summary.get("recording_note"):
        print(f"  recording: {summary['recording_note']}")
    print(f"  recording: {summary.get('recording')}")
    if "exit_code" in summary:
        print(f"  result: {summary['verdict']} (exit {summary['exit_code']})")


def frame_publish_times(summary: dict[str, Any]) -> dict[int, int]:
    """Input stamp -> the player's wall time of publishing that frame (from its summary)."""
    return {int(s): int(t) for s, t in summary.get("player", {}).get("frame_publish_ns", [])}

"""The task registry: one row per perception task, read by everything that used to keep its own list.

    detection     detection_node     models/detection.onnx     detections          perception eval: detections
    segmentation  segmentation_node  models/segmentation.onnx  labels              perception eval: labels
    depth         depth_node         models/depth.onnx         depth               perception eval: depth
    odometry      odometry_node      models/depth.onnx (+pose) depth odometry path perception eval: odometry
    matching      matching_node      models/matching.onnx      keypoints matches   perception eval: matches
    multitask     multitask_node     models/multitask.onnx     all of the above, one inference (outputs under
                                                               detector/, segmenter/, odometry/, matcher/)

Readers: ``setup.py`` (console scripts; it executes this file, so only the standard library is
imported here), ``profile.py`` (executables a profile may name), ``tools/replay.py`` (which nodes
process frames and the outputs every frame must get), ``tools/cli.py`` (what ``perception eval``
scores), ``perception_models.cli`` (``train`` / ``export`` / ``evaluate`` choices, each task's
trainer and exporter). One name per task: the card's ``task``, the model file, the node's
parameter file and schema (``config/<node>.param.yaml``, ``schema/<node>.schema.json``) and the
trainer all use it. Odometry is trained and exported with depth (one depth + pose run).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Task:
    name: str
    node: str  # console script and schema name
    model: str  # default model, relative to the workspace root
    per_frame_outputs: tuple[str, ...]  # topics (under the node) every input frame gets exactly one of
    eval_output: str  # the output ``perception eval`` scores against the bag's ground truth
    trainer: str  # the perception_models task that trains it ("" = trained with another task)
    exporter: str  # perception_models.export function that writes its ONNX + card
    # where the outputs are: "node" (``<node fqn>/<output>``) or "namespace" (``<namespace>/<output>``:
    # multitask_node publishes under the four task nodes' names)
    outputs_under: str = "node"

    @property
    def schema(self) -> str:
        return self.node


TASKS: dict[str, Task] = {
    t.name: t
    for t in (
        Task(
            name="detection",
            node="detection_node",
            model="models/detection.onnx",
            per_frame_outputs=("detections",),
            eval_output="detections",
            trainer="detection",
            exporter="export_model",
        ),
        Task(
            name="segmentation",
            node="segmentation_node",
            model="models/segmentation.onnx",
            per_frame_outputs=("labels",),
            eval_output="labels",
            trainer="segmentation",
            exporter="export_model",
        ),
        Task(
            name="depth",
            node="depth_node",
            model="models/depth.onnx",
            per_frame_outputs=("depth",),
            eval_output="depth",
            trainer="depth",
            exporter="export_depth",
        ),
        Task(
            name="odometry",
            node="odometry_node",
            model="models/depth.onnx",
            per_frame_outputs=("depth", "odometry", "path"),
            eval_output="odometry",
            trainer="depth",
            exporter="export_depth",
        ),
        Task(
            name="matching",
            node="matching_node",
            model="models/matching.onnx",
            per_frame_outputs=("keypoints", "matches"),
            eval_output="matches",
            trainer="matching",
            exporter="export_matching",
        ),
        Task(
            name="multitask",
            node="multitask_node",
            model="models/multitask.onnx",
            per_frame_outputs=(
                "detector/detections",
                "segmenter/labels",
                "odometry/depth",
                "odometry/odometry",
                "odometry/path",
                "matcher/keypoints",
                "matcher/matches",
            ),
            eval_output="",  # its outputs are the task nodes' (scored under their names)
            trainer="multitask",
            exporter="export_multitask",
            outputs_under="namespace",
        ),
    )
}

# multitask_node: where each task's outputs go, relative to its namespace (the four-node profiles' node names)
MULTITASK_NAMESPACES = {
    "detection": "detector",
    "segmentation": "segmenter",
    "depth": "odometry",
    "matching": "matcher",
}

# nodes that are not a task: a model without a task, and the data plumbing
GENERIC_NODE = "generic_onnx_node"
SOURCE_NODES = ("bag_player", "bag_recorder", "camera_source")

NODE_EXECUTABLES = (GENERIC_NODE, *SOURCE_NODES, *(t.node for t in TASKS.values()))
PROCESSING_NODES = frozenset((GENERIC_NODE, *(t.node for t in TASKS.values())))
PER_FRAME_OUTPUTS = {t.node: t.per_frame_outputs for t in TASKS.values()}
EVAL_OUTPUTS = tuple(t.eval_output for t in TASKS.values() if t.eval_output)
# tasks with their own trainer and exporter (odometry comes with depth)
TRAINABLE = tuple(name for name, t in TASKS.items() if t.trainer == name)


def task(name: str) -> Task:
    try:
        return TASKS[name]
    except KeyError:
        raise ValueError(f"unknown task '{name}': one of {sorted(TASKS)}") from None


def output_prefix(executable: str, fqn: str, namespace: str) -> str:
    """Where a node's outputs are: its fully qualified name, or (``outputs_under`` namespace) its
    namespace ("" at the root), so that ``f"{prefix}/{output}"`` is the topic."""
    t = task_of_node(executable)
    if t is not None and t.outputs_under == "namespace":
        ns = namespace.strip("/")
        return f"/{ns}" if ns else ""
    return fqn


def owns_topic(executable: str, fqn: str, namespace: str, topic: str) -> bool:
    """Whether ``topic`` is one of the node's outputs (a multi-task node's: under the task namespaces)."""
    prefix = output_prefix(executable, fqn, namespace)
    t = task_of_node(executable)
    if t is not None and t.outputs_under == "namespace":
        return any(topic.startswith(f"{prefix}/{sub}/") for sub in MULTITASK_NAMESPACES.values())
    return topic.startswith(prefix + "/")


def task_of_node(executable: str) -> Task | None:
    """The task an executable serves (None: the generic node or a source node)."""
    return next((t for t in TASKS.values() if t.node == executable), None)

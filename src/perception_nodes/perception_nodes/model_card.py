"""Model cards: the YAML next to each shipped ONNX file (``detection.onnx`` -> ``detection.card.yaml``).

A node reads from the card what it must not guess: the task, class names (and colours), the input
size, normalisation and resize mode, and the ONNX file's sha256 (a card that does not belong to
the file is refused). ``perception_models`` writes cards at export; see models/README.md. Cards also say
what the model is for and where it fails (``intended_use``, ``limitations``, ``real_images``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from .backends.engine_cache import sha256_file

TASKS = ("detection", "segmentation", "depth", "pose", "matching", "generic", "multitask")
#: the tasks one multi-task network (card task ``multitask``) may serve, each in its own card section
MULTITASK_TASKS = ("detection", "segmentation", "depth", "matching")

#: Model families: how a network's outputs are decoded (one decoder per family, perception_nodes.families).
#: "native" is this project's own export (decoding and NMS inside the graph). A family may serve more than
#: one task: a YOLO-seg model's boxes feed the detection node too.
FAMILY_TASKS = {
    "native": TASKS,
    "yolo-detect": ("detection",),
    "yolo-segment": ("segmentation", "detection"),
    "yolox": ("detection",),
    "relative-depth": ("depth",),
    "keypoints": ("matching",),
    "lightglue": ("matcher",),
}


class ModelCardError(ValueError):
    """A missing, malformed, stale or wrong-task model card; the text says which and the fix."""


@dataclass
class ModelCard:
    task: str
    classes: list[str]
    input_name: str
    input_height: int
    input_width: int
    mean: list[float]
    std: list[float]
    resize: str = "letterbox"
    pad_value: int = 114
    colors: list[list[int]] = field(default_factory=list)  # RGB per class (segmentation overlays)
    outputs: dict[str, str] = field(default_factory=dict)
    sha256: str = ""
    metrics: dict[str, Any] = field(default_factory=dict)
    raw: dict[str, Any] = field(default_factory=dict)
    family: str = "native"
    channel_order: str = "RGB"  # RGB | BGR (YOLOX)
    pad_anchor: str = "center"  # letterbox placement: center (ultralytics) | top_left (YOLOX)
    decode: dict[str, Any] = field(default_factory=dict)  # the family decoder's settings
    model_file: Path | None = None  # the ONNX file the card describes

    def serves(self, task: str) -> bool:
        return self.task == task or (self.family != "native" and task in FAMILY_TASKS.get(self.family, ()))

    @property
    def num_classes(self) -> int:
        return len(self.classes)


def card_path(model_path: str | Path) -> Path:
    p = Path(model_path)
    if p.name.endswith((".card.yaml", ".card.yml")):
        return p
    return p.with_name(p.stem + ".card.yaml")


def is_card_file(path: str | Path) -> bool:
    return str(path).endswith((".yaml", ".yml"))


def model_files(path: str | Path) -> tuple[Path, Path]:
    """(ONNX file, card file) of a node's ``model_path``: an ONNX file with its card next to it
    (``x.onnx`` -> ``x.card.yaml``), or a card that names its ONNX file with ``model:`` (relative to
    the card; what ``perception-models card --onnx`` writes for a model you cannot put a card beside)."""
    path = Path(path)
    if not is_card_file(path):
        return path, card_path(path)
    try:
        d = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ModelCardError(f"model card {path} cannot be read ({type(exc).__name__}: {exc})") from None
    model = d.get("model") if isinstance(d, dict) else None
    if not model:
        raise ModelCardError(
            f"model card {path} does not say which ONNX file it describes: add 'model: <path>' "
            "(relative to the card), or give the node the .onnx file with the card next to it"
        )
    onnx = Path(str(model))
    return (onnx if onnx.is_absolute() else (path.parent / onnx).resolve()), path


def card_problems(card: ModelCard) -> list[str]:
    """What makes a card's values unusable (a card with ``std: 0`` made an "ok" node that found
    nothing: every input became inf)."""
    out = []
    if card.task != "matcher" and (card.input_height <= 0 or card.input_width <= 0):
        out.append(f"input size {card.input_height}x{card.input_width} must be positive")
    if len(card.mean) not in (1, 3) or len(card.std) != len(card.mean):
        out.append(f"input mean {card.mean} and std {card.std} need 1 or 3 values each, as many of both")
    if not all(math.isfinite(m) for m in card.mean):
        out.append(f"input mean {card.mean} is not finite")
    if not all(math.isfinite(v) and v > 0 for v in card.std):
        out.append(f"input std {card.std} must be finite and > 0 (the input is divided by it)")
    if card.task in ("detection", "segmentation") and not card.classes:
        out.append(f"a {card.task} card needs its class names (classes: [...])")
    if len(set(card.classes)) != len(card.classes):
        out.append(f"class names repeat: {card.classes}")
    if card.colors and len(card.colors) != len(card.classes):
        out.append(f"{len(card.colors)} colours for {len(card.classes)} classes")
    if card.resize not in ("letterbox", "stretch"):
        out.append(f"input resize '{card.resize}' must be letterbox or stretch")
    if card.family not in FAMILY_TASKS:
        out.append(f"family '{card.family}' must be one of {sorted(FAMILY_TASKS)}")
    elif card.family != "native" and card.task not in FAMILY_TASKS[card.family]:
        out.append(f"a {card.family} model cannot be a {card.task} model (it serves {FAMILY_TASKS[card.family]})")
    if card.task == "multitask":
        out += _multitask_problems(card)
    if card.channel_order not in ("RGB", "BGR"):
        out.append(f"input channel_order '{card.channel_order}' must be RGB or BGR")
    if card.pad_anchor not in ("center", "top_left"):
        out.append(f"input pad_anchor '{card.pad_anchor}' must be center or top_left")
    return out


def _multitask_problems(card: ModelCard) -> list[str]:
    tasks = card.raw.get("tasks")
    if not isinstance(tasks, dict) or not tasks:
        return [f"a multitask card needs 'tasks:' with a section per task it serves ({list(MULTITASK_TASKS)})"]
    out = [
        f"task '{t}' is not one a multi-task network serves ({list(MULTITASK_TASKS)})"
        for t in tasks
        if t not in MULTITASK_TASKS
    ]
    for t, section in tasks.items():
        if not isinstance(section, dict) or not isinstance(section.get("outputs"), dict):
            out.append(f"tasks.{t} needs 'outputs:' (the task's output name -> the graph's)")
        elif t in ("detection", "segmentation") and not section.get("classes"):
            out.append(f"tasks.{t} needs its class names (classes: [...])")
    return out


def task_card(card: ModelCard, task: str) -> ModelCard:
    """The card of one task a multi-task network serves, as a single-task model of that task
    would have it: the shared input, the section's classes, colours and settings, and ``outputs``
    naming the task's outputs (the graph's names are in ``raw['graph_outputs']``)."""
    section = (card.raw.get("tasks") or {}).get(task)
    if card.task != "multitask" or section is None:
        raise ModelCardError(f"{card.model_file}: a {card.task} card has no '{task}' section")
    names = {str(k): str(v) for k, v in section["outputs"].items()}
    # the section stands where a single-task card keeps the task's settings (``depth: {min, ...}``)
    raw = {**card.raw, task: section, "task": task, "graph_outputs": names}
    return replace(
        card,
        task=task,
        classes=[str(c) for c in section.get("classes", [])],
        colors=[[int(c) for c in rgb] for rgb in section.get("colors", [])],
        outputs={k: card.outputs.get(v, "") for k, v in names.items()},
        raw=raw,
        metrics=dict(section.get("metrics") or {}),
    )


def load_card(
    model_path: str | Path, task: str | None = None, check_sha: bool = True, allow_unverified: bool = False
) -> ModelCard:
    """The card of ``model_path``; raises ModelCardError naming the problem. A card without a
    ``sha256`` cannot show that it belongs to the file and is refused unless ``allow_unverified``
    (the nodes' ``allow_unverified_model``)."""
    model_path, path = model_files(model_path)
    if not path.is_file():
        raise ModelCardError(
            f"model card {path} not found: every model needs its card next to it (perception-models export writes it)"
        )
    try:
        d = yaml.safe_load(path.read_text()) or {}
        inp = d["input"]
        card = ModelCard(
            task=str(d["task"]),
            classes=[str(c) for c in d.get("classes", [])],
            input_name=str(inp["name"]),
            input_height=int(inp["height"]),
            input_width=int(inp["width"]),
            mean=[float(x) for x in inp["mean"]],
            std=[float(x) for x in inp["std"]],
            resize=str(inp.get("resize", "letterbox")),
            pad_value=int(inp.get("pad_value", 114)),
            colors=[[int(c) for c in rgb] for rgb in d.get("colors", [])],
            outputs={str(k): str(v) for k, v in (d.get("outputs") or {}).items()},
            sha256=str(d.get("sha256", "")),
            metrics=dict(d.get("metrics") or {}),
            raw=d,
            family=str(d.get("family", "native")),
            channel_order=str(inp.get("channel_order", "RGB")).upper(),
            pad_anchor=str(inp.get("pad_anchor", "center")),
            decode=dict(d.get("decode") or {}),
            model_file=model_path,
        )
    except (OSError, yaml.YAMLError, KeyError, TypeError, ValueError) as exc:
        raise ModelCardError(f"model card {path} is malformed ({type(exc).__name__}: {exc})") from None
    if card.task not in TASKS + ("matcher",):
        raise ModelCardError(f"model card {path}: task '{card.task}' is not one of {TASKS}")
    if task is not None and not card.serves(task):
        raise ModelCardError(f"{model_path} is a {card.task} model (card {path}); this node needs a {task} model")
    problems = card_problems(card)
    if problems:
        raise ModelCardError(f"model card {path}: " + "; ".join(problems))
    if check_sha and not card.sha256 and not allow_unverified:
        raise ModelCardError(
            f"model card {path} has no sha256, so nothing shows it belongs to {model_path.name}: "
            "add 'sha256: <hex>' (perception-models export writes it), or set the node's "
            "allow_unverified_model:=true to run it anyway"
        )
    if check_sha and card.sha256 and model_path.is_file() and sha256_file(model_path) != card.sha256:
        raise ModelCardError(
            f"model card {path} does not belong to {model_path} (sha256 differs): "
            "re-export the model or restore its card"
        )
    return card

"""``perception-models card --onnx``: the model card of a third-party ONNX file, so that the task
nodes run it like this project's own models (families: ``perception_nodes.families``).

The family is recognised from the graph's inputs, outputs and metadata (ultralytics stores
``task``, ``names``, ``imgsz``, ``stride``); what cannot be read is refused with a message naming
the input or output and the option that fixes it. Only ONNX Runtime is needed (no onnx, no torch),
so this runs on the robot too."""

from __future__ import annotations

import ast
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from .backends.engine_cache import sha256_file

FAMILIES = ("yolo-detect", "yolo-segment", "yolox", "relative-depth", "keypoints", "lightglue")

# COCO-80 in the order YOLO and YOLOX exports index them (for graphs without class names)
COCO80 = (
    "person bicycle car motorcycle airplane bus train truck boat traffic_light fire_hydrant stop_sign "
    "parking_meter bench bird cat dog horse sheep cow elephant bear zebra giraffe backpack umbrella handbag tie "
    "suitcase frisbee skis snowboard sports_ball kite baseball_bat baseball_glove skateboard surfboard "
    "tennis_racket bottle wine_glass cup fork knife spoon bowl banana apple sandwich orange broccoli carrot "
    "hot_dog pizza donut cake chair couch potted_plant bed dining_table toilet tv laptop mouse remote keyboard "
    "cell_phone microwave oven toaster sink refrigerator book clock vase scissors teddy_bear hair_drier toothbrush"
).split()
COCO80 = [n.replace("_", " ") for n in COCO80]

IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]


class ModelImportError(ValueError):
    """The graph is not one the named (or any known) family can read; the text says which input or
    output and the option that would fix it."""


@dataclass
class Tensor:
    name: str
    shape: list[Any]  # ints, or a str/None for a dynamic axis

    def dims(self) -> list[int]:
        return [d if isinstance(d, int) and d > 0 else -1 for d in self.shape]

    def __str__(self) -> str:
        return f"'{self.name}' {self.shape}"


@dataclass
class Graph:
    path: Path
    inputs: list[Tensor]
    outputs: list[Tensor]
    metadata: dict[str, str]


def read_graph(path: str | Path) -> Graph:
    import onnxruntime as ort

    path = Path(path)
    if not path.is_file():
        raise ModelImportError(f"{path} does not exist")
    try:
        sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as exc:
        raise ModelImportError(f"{path} is not an ONNX model ONNX Runtime can load: {exc}") from None
    meta = dict(sess.get_modelmeta().custom_metadata_map or {})
    return Graph(
        path,
        [Tensor(i.name, list(i.shape)) for i in sess.get_inputs()],
        [Tensor(o.name, list(o.shape)) for o in sess.get_outputs()],
        meta,
    )


def _names_from_metadata(meta: dict[str, str]) -> list[str] | None:
    raw = meta.get("names")
    if not raw:
        return None
    try:
        names = ast.literal_eval(raw)
    except (ValueError, SyntaxError):
        return None
    if isinstance(names, dict):
        return [str(names[k]) for k in sorted(names)]
    if isinstance(names, (list, tuple)):
        return [str(n) for n in names]
    return None


def read_classes(path: str | Path) -> list[str]:
    """Class names, one per line (a YAML list or ultralytics ``names:`` mapping also works)."""
    text = Path(path).read_text()
    try:
        d = yaml.safe_load(text)
    except yaml.YAMLError:
        d = None
    if isinstance(d, dict) and "names" in d:
        d = d["names"]
    if isinstance(d, dict):
        return [str(d[k]) for k in sorted(d)]
    if isinstance(d, list):
        return [str(n) for n in d]
    return [line.strip() for line in text.splitlines() if line.strip()]


def _image_input(g: Graph, family: str) -> Tensor:
    cands = [t for t in g.inputs if len(t.shape) == 4]
    if len(g.inputs) != 1 or not cands:
        raise ModelImportError(
            f"{g.path.name}: a {family} model has one image input [1, 3, H, W]; this one has "
            f"{', '.join(map(str, g.inputs))}"
        )
    t = cands[0]
    if t.dims()[1] not in (3, -1):
        raise ModelImportError(
            f"{g.path.name}: input {t} has {t.shape[1]} channels; the nodes feed 3-channel images "
            "(re-export the model with a 3-channel input)"
        )
    return t


def _input_size(g: Graph, t: Tensor, input_size: tuple[int, int] | None, family: str) -> tuple[int, int]:
    if input_size:
        return int(input_size[0]), int(input_size[1])
    h, w = t.dims()[2:]
    if h > 0 and w > 0:
        return h, w
    imgsz = g.metadata.get("imgsz")
    if imgsz:
        try:
            v = ast.literal_eval(imgsz)
            v = [v, v] if isinstance(v, int) else list(v)
            return int(v[0]), int(v[1])
        except (ValueError, SyntaxError, TypeError, IndexError):
            pass
    default = {"keypoints": (480, 640), "relative-depth": (518, 518)}.get(family)
    if default:
        return default
    raise ModelImportError(
        f"{g.path.name}: input {t} has a dynamic size and no 'imgsz' metadata: give --input-size H W"
    )


def detect_family(g: Graph) -> str:
    """The family a graph belongs to, from its metadata and its inputs/outputs."""
    task = g.metadata.get("task", "")
    if task == "detect":
        return "yolo-detect"
    if task == "segment":
        return "yolo-segment"
    if task in ("pose", "obb", "classify"):
        raise ModelImportError(
            f"{g.path.name}: an ultralytics '{task}' model; the nodes run detect and segment models only"
        )
    in_names = {t.name for t in g.inputs}
    out_names = {t.name for t in g.outputs}
    if {"kpts0", "kpts1", "desc0", "desc1"} <= in_names:
        return "lightglue"
    if {"keypoints", "descriptors"} <= out_names or any(t.dims()[1:2] == [65] for t in g.outputs if len(t.shape) == 4):
        return "keypoints"
    outs = g.outputs
    img = [t for t in g.inputs if len(t.shape) == 4]
    if len(img) > 1:
        raise ModelImportError(
            f"{g.path.name}: takes {len(img)} images ({', '.join(map(str, img))}): a whole two-image pipeline; "
            "the nodes need the keypoint extractor and the matcher as separate graphs (--family keypoints, lightglue)"
        )
    if len(outs) == 2 and sorted(len(t.shape) for t in outs) == [3, 4] and len(img) == 1:
        return "yolo-segment"
    if len(outs) == 1 and len(outs[0].shape) == 3 and len(img) == 1:
        d = outs[0].dims()
        h, w = img[0].dims()[2:]
        if h > 0 and w > 0 and d[1] == sum((h // s) * (w // s) for s in (8, 16, 32)):
            return "yolox"
        if d[1] > 4 and d[2] > d[1]:
            return "yolo-detect"
    if len(outs) == 1 and len(img) == 1 and len(outs[0].shape) in (3, 4):
        d, (h, w) = outs[0].dims(), img[0].dims()[2:]
        if d[-2:] == [h, w] and (len(d) == 3 or d[1] == 1):
            return "relative-depth"
    raise ModelImportError(
        f"{g.path.name}: cannot tell its family from inputs {', '.join(map(str, g.inputs))} and outputs "
        f"{', '.join(map(str, g.outputs))}; give --family ({'|'.join(FAMILIES)})"
    )


def _need_outputs(g: Graph, family: str, ranks: list[int]) -> list[Tensor]:
    if sorted(len(t.shape) for t in g.outputs) != sorted(ranks):
        raise ModelImportError(
            f"{g.path.name}: a {family} model has {len(ranks)} output(s) of rank {ranks}; this one has "
            f"{', '.join(map(str, g.outputs))}"
            + (" (an instance model: --family yolo-segment)" if family == "yolo-detect" and len(g.outputs) == 2 else "")
        )
    return sorted(g.outputs, key=lambda t: len(t.shape))


def _classes(g: Graph, classes: list[str] | None, count: int, where: Tensor) -> list[str]:
    names = classes or _names_from_metadata(g.metadata)
    if names is None:
        if count == 80:
            return list(COCO80)
        raise ModelImportError(
            f"{g.path.name}: output {where} has {count} classes and the graph has no 'names' metadata: "
            "give --classes FILE (one name per line)"
        )
    if len(names) != count:
        raise ModelImportError(
            f"{g.path.name}: output {where} has {count} classes but {len(names)} names were given "
            "(--classes or the graph's 'names')"
        )
    return names


def build_card(
    onnx: str | Path,
    family: str = "auto",
    classes: list[str] | None = None,
    input_size: tuple[int, int] | None = None,
) -> dict[str, Any]:
    g = read_graph(onnx)
    if family == "auto":
        family = detect_family(g)
    if family not in FAMILIES:
        raise ModelImportError(f"--family '{family}' must be auto or one of {FAMILIES}")
    card: dict[str, Any]
    if family == "lightglue":
        card = _lightglue(g)
    else:
        t = _image_input(g, family)
        h, w = _input_size(g, t, input_size, family)
        card = {"task": "", "family": family}
        inp: dict[str, Any] = {"name": t.name, "height": h, "width": w, "layout": "NCHW float32"}
        if family in ("yolo-detect", "yolo-segment"):
            card.update(_yolo(g, family, classes))
            inp.update(mean=[0.0] * 3, std=[1.0] * 3, scale="1/255", resize="letterbox", pad_value=114)
            inp.update(channel_order="RGB", pad_anchor="center")
        elif family == "yolox":
            card.update(_yolox(g, classes, h, w))
            # to_nchw computes (x/255 - mean) / std: std 1/255 feeds the raw 0-255 values YOLOX expects
            inp.update(mean=[0.0] * 3, std=[1.0 / 255.0] * 3, scale="none (0-255)", resize="letterbox")
            inp.update(pad_value=114, channel_order="BGR", pad_anchor="top_left")
        elif family == "relative-depth":
            card.update(_relative_depth(g))
            inp.update(mean=IMAGENET_MEAN, std=IMAGENET_STD, scale="1/255 before mean/std", resize="stretch")
            inp.update(channel_order="RGB")
        else:
            card.update(_keypoints(g))
            inp.update(mean=[0.0] * 3, std=[1.0] * 3, scale="1/255", resize="stretch", channel_order="RGB")
            if card["decode"]["layout"] == "raw" and (h % 32 or w % 32):
                raise ModelImportError(
                    f"{g.path.name}: keypoint input {h}x{w} must be multiples of 32: give --input-size H W"
                )
        card["input"] = inp
    path = Path(onnx)
    h = sha256_file(path)
    meta = {k: g.metadata[k] for k in ("description", "author", "version", "license", "date") if k in g.metadata}
    card.update(
        {
            "sha256": h,
            "size_bytes": path.stat().st_size,
            "intended_use": f"A third-party {family} model imported with perception-models card; what it is for is "
            "what its authors say (provenance below).",
            "limitations": [
                "not trained or measured by this project: run perception-models evaluate on your own images",
                "its licence is its authors' (provenance.license); this project does not ship it",
            ],
            "provenance": {"imported_from": str(path), **meta},
        }
    )
    return card


def _yolo(g: Graph, family: str, classes: list[str] | None) -> dict[str, Any]:
    seg = family == "yolo-segment"
    outs = _need_outputs(g, family, [3, 4] if seg else [3])
    head = outs[0]
    d = head.dims()
    end2end = g.metadata.get("end2end", "").lower() == "true" or "'nms': True" in g.metadata.get("args", "")
    nm = 0
    decode: dict[str, Any] = {"output": head.name}
    if seg:
        protos = outs[1]
        nm = protos.dims()[1]
        if nm <= 0:
            raise ModelImportError(f"{g.path.name}: prototype output {protos} needs a fixed channel count")
        decode.update(prototypes=protos.name, mask_coefficients=nm)
    if end2end:
        if d[2] != 6 + nm:
            raise ModelImportError(f"{g.path.name}: end2end output {head} must be [1, K, {6 + nm}]")
        names = classes or _names_from_metadata(g.metadata) or (None)
        if names is None:
            raise ModelImportError(f"{g.path.name}: end2end output {head} does not say its classes: give --classes")
        decode.update(layout="end2end")
    else:
        known = classes or _names_from_metadata(g.metadata)
        # ultralytics writes [1, C, N]; a transposed [1, N, C] export is read too when the names say which is C
        channels = d[2] if known and d[2] == 4 + len(known) + nm and d[1] != d[2] else d[1]
        if channels <= 4 + nm:
            raise ModelImportError(
                f"{g.path.name}: output {head} is not a YOLO head [1, 4+classes{'+' + str(nm) if nm else ''}, N]"
            )
        names = _classes(g, classes, channels - 4 - nm, head)
        decode.update(layout="raw", iou_threshold=0.7)
    return {
        "task": "segmentation" if seg else "detection",
        "classes": names,
        "decode": decode,
        "outputs": {head.name: f"{head.shape} YOLO head ({'end2end rows' if end2end else 'cx cy w h + class scores'})"}
        | ({outs[1].name: f"{outs[1].shape} mask prototypes"} if seg else {}),
    }


def _yolox(g: Graph, classes: list[str] | None, h: int, w: int) -> dict[str, Any]:
    head = _need_outputs(g, "yolox", [3])[0]
    d = head.dims()
    n = sum((h // s) * (w // s) for s in (8, 16, 32))
    if d[1] > 0 and d[1] != n:
        raise ModelImportError(
            f"{g.path.name}: output {head} has {d[1]} rows; a YOLOX head at {h}x{w} (strides 8/16/32) has {n}"
        )
    if d[2] <= 5:
        raise ModelImportError(f"{g.path.name}: output {head} is not a YOLOX head [1, N, 5+classes]")
    return {
        "task": "detection",
        "classes": _classes(g, classes, d[2] - 5, head),
        "decode": {"output": head.name, "strides": [8, 16, 32], "grid_in_graph": False, "iou_threshold": 0.45},
        "outputs": {head.name: f"{head.shape} raw grid head: dx dy log-w log-h objectness + class scores"},
    }


def _relative_depth(g: Graph) -> dict[str, Any]:
    out = _need_outputs(g, "relative-depth", [len(g.outputs[0].shape)] if len(g.outputs) == 1 else [3])[0]
    if len(out.shape) not in (3, 4):
        raise ModelImportError(f"{g.path.name}: output {out} is not a depth map [1, (1,) H, W]")
    return {
        "task": "depth",
        "decode": {"output": out.name, "kind": "inverse"},
        "depth": {"scale_source": "relative", "min": 0.1, "max": 80.0},
        "outputs": {out.name: f"{out.shape} relative inverse depth (affine-invariant: up to scale and shift)"},
    }


def _keypoints(g: Graph) -> dict[str, Any]:
    names = {t.name: t for t in g.outputs}
    if {"keypoints", "descriptors"} <= set(names):
        return {
            "task": "matching",
            "decode": {"layout": "end2end", "keypoints": "keypoints", "descriptors": "descriptors", "scores": "scores"},
            "outputs": {n: str(t.shape) for n, t in names.items()},
        }
    four = [t for t in g.outputs if len(t.shape) == 4]
    logits = [t for t in four if t.dims()[1] == 65]
    if not logits:
        raise ModelImportError(
            f"{g.path.name}: no 65-channel keypoint logits output among {', '.join(map(str, g.outputs))} "
            "(SuperPoint/XFeat raw heads: [B, 65, H/8, W/8]); end-to-end extractors need outputs named "
            "keypoints, scores, descriptors"
        )
    rest = [t for t in four if t is not logits[0]]
    desc = [t for t in rest if t.dims()[1] > 1]
    if not desc:
        raise ModelImportError(f"{g.path.name}: no dense descriptor output [B, D, H/8, W/8] next to {logits[0]}")
    rel = [t for t in rest if t.dims()[1] == 1]
    decode = {
        "layout": "raw",
        "logits": logits[0].name,
        "descriptors": desc[0].name,
        "cell": 8,
        "detection_threshold": 0.05,
        "nms_radius": 2,
        "top_k": 1024,
    }
    if rel:
        decode["reliability"] = rel[0].name
    return {"task": "matching", "decode": decode, "outputs": {t.name: str(t.shape) for t in g.outputs}}


def _lightglue(g: Graph) -> dict[str, Any]:
    out = {t.name for t in g.outputs}
    if not {"matches", "scores"} <= out:
        raise ModelImportError(
            f"{g.path.name}: a LightGlue-style matcher outputs 'matches' [M, 2] and 'scores' [M]; this one has "
            f"{', '.join(map(str, g.outputs))}"
        )
    return {
        "task": "matcher",
        "family": "lightglue",
        "input": {"name": "kpts0", "height": 0, "width": 0, "mean": [0.0], "std": [1.0], "resize": "stretch"},
        "decode": {"keypoints": ["kpts0", "kpts1"], "descriptors": ["desc0", "desc1"], "normalise": "center_max"},
        "outputs": {"matches": "[M, 2] int64 index pairs", "scores": "[M] float32"},
    }


def write_card(card: dict[str, Any], onnx: str | Path, out: str | Path | None = None) -> Path:
    """Write ``card`` to ``out`` (default: next to the ONNX file); a card elsewhere names its ONNX
    file relative to itself (``model:``)."""
    onnx = Path(onnx).resolve()
    target = Path(out) if out else onnx.with_name(onnx.stem + ".card.yaml")
    if not target.name.endswith(".card.yaml"):
        raise ModelImportError(f"--out {target}: a card's name ends in .card.yaml")
    target.parent.mkdir(parents=True, exist_ok=True)
    body = dict(card)
    if target.resolve().parent != onnx.parent or target.name != onnx.stem + ".card.yaml":
        body = {"model": os.path.relpath(onnx, target.resolve().parent), **body}
    target.write_text(yaml.safe_dump(body, sort_keys=False, width=110))
    return target

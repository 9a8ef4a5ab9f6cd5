"""The shipped models on real images (../shared/data), next to their synthetic held-out numbers
(models/multitask.onnx's detection and segmentation too, when it is there), and any students or
teachers given, on the same images, with each model's latency (``--latency``):

    python benchmarks/real_images.py [--models models] [--shared ../shared] [--json out/real_images.json]
    python benchmarks/real_images.py --latency --detectors runs/af/detection.onnx \
        cache/pretrained/yolov8n_fp32.card.yaml --segmenters runs/seg/segmentation.onnx

- detector: VOC-100 (100 PASCAL VOC2012 photos, COCO annotations), COCO AP through the node
  pipeline for the classes both have (person, car, chair); the other 17 VOC classes are left out
  (``perception-models evaluate --coco``).
- segmenter: CamVid val (101 road frames 480x360), IoU through the node pipeline for the classes
  both have: CamVid sky -> sky, road + pavement -> ground, building -> wall, car -> car,
  pedestrian -> person; every other CamVid class (pole, tree, sign, fence, bicyclist, unlabelled)
  is ignored. The model's other classes (clutter, cone, box, barrel, chair) count as errors where
  they are predicted on those pixels.
Nothing here trains or chooses anything: VOC-100 and CamVid val are evaluation-only.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


ROOT = Path(__file__).resolve().parents[1]
# CamVid class -> the shipped segmenter's class; the other CamVid classes are ignored
CLASS_MAP = ROOT / "config" / "class_maps" / "camvid_to_ours.yaml"


TARGET_CLASSES = ("person", "car")  # issue 28's detection targets
SIZES = ("small", "medium", "large")


def _ap50(v: dict | None) -> str:
    return "—" if v is None else f"{v['AP50']:.3f}"


def detector(model: Path, shared: Path) -> dict:
    from perception_models.evaluate import evaluate_detection_coco

    voc = shared / "data" / "voc_det100"
    r = evaluate_detection_coco(model, voc / "gts" / "coco_format_v2" / "instances_v2.json", voc / "images")
    return {
        "model": str(model),
        "task": "detection",
        "mAP": r["mAP"],
        "mAP50": r["mAP50"],
        "classes": r["class_mapping"]["matched"],
        "per_class": {c: v for c, v in r["per_class"].items() if v is not None},
        # COCO small (< 32^2 px) / medium (< 96^2) / large: where a detector is blind
        "by_size": {
            size: {c: v for c, v in s["per_class"].items() if v is not None} for size, s in r["by_size"].items()
        },
        "protocol": r["protocol"],
    }


def segmenter(model: Path, shared: Path) -> dict:
    from perception_models.evaluate import evaluate_segmentation_mapped, read_class_map

    mapping = read_class_map(CLASS_MAP)
    r = evaluate_segmentation_mapped(model, shared / "data" / "camvid", mapping, "val")
    iou = {c: v for c, v in r["per_class"].items() if v is not None}
    return {
        "model": str(model),
        "task": "segmentation",
        "mIoU_shared": r["mIoU"],
        "iou": iou,
        "images": r["images"],
        "pixel_accuracy": r["pixel_accuracy"],
        "mapping": mapping,
        "protocol": r["protocol"] + f" (class map {CLASS_MAP.relative_to(ROOT)})",
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default=str(ROOT / "models"))
    ap.add_argument("--shared", default=str(ROOT.parent / "shared"))
    ap.add_argument("--json")
    ap.add_argument("--detectors", nargs="*", default=[], help="more detectors (ONNX or card) beside the shipped one")
    ap.add_argument("--segmenters", nargs="*", default=[], help="more segmenters (ONNX or card) beside the shipped one")
    ap.add_argument(
        "--latency", action="store_true", help="each model's median per 640x480 frame (ORT 2 threads, with pre/post)"
    )
    args = ap.parse_args()
    shared, models = Path(args.shared), Path(args.models)
    if not (shared / "data").is_dir():
        print(f"real_images: no {shared / 'data'}: nothing to measure (the real data sets live outside the project)")
        return 0
    out = {
        "detector": detector(models / "detection.onnx", shared),
        "segmenter": segmenter(models / "segmentation.onnx", shared),
    }
    multi = models / "multitask.onnx"  # the multi-task network's detection and segmentation, same sets
    if multi.is_file():
        out["multitask detector"] = detector(multi, shared)
        out["multitask segmenter"] = segmenter(multi, shared)
    both = set(args.detectors) & set(args.segmenters)  # a multi-task file given as both: a row for each

    def row(path: str, kind: str) -> str:
        return f"{Path(path).parent.name}/{Path(path).name}" + (f" {kind}" if path in both else "")

    for path in args.detectors:
        out[row(path, "detector")] = detector(Path(path), shared)
    for path in args.segmenters:
        out[row(path, "segmenter")] = segmenter(Path(path), shared)
    if args.latency:  # next to each real-image metric, what the model costs (benchmarks/bench_task_models.py)
        from bench_task_models import bench, frame

        rgb = frame()
        for name, d in out.items():
            if name.startswith("multitask"):
                continue  # one network for four tasks: benchmarks/bench_multitask.py times it
            d["median_ms"] = bench(Path(d["model"]), d["task"], rgb, runs=30, threads=2)["median_ms"]
    print("models on real images (../shared/data; evaluation only)")
    for name, d in out.items():
        ms = f"  [{d['median_ms']:.1f} ms/frame]" if "median_ms" in d else ""
        if "mAP" in d:
            print(
                f"  {name:<20} VOC-100 ({', '.join(d['classes'])}): mAP@[.5:.95] {d['mAP']:.3f}  "
                f"mAP@0.5 {d['mAP50']:.3f}  "
                + "  ".join(f"{c} AP50 {v['AP50']:.3f} ({v['ground_truth']} boxes)" for c, v in d["per_class"].items())
                + ms
            )
            sizes = d["by_size"]
            print(
                f"  {'':<20} by object size (COCO small / medium / large), AP50 (boxes): "
                + "  ".join(
                    f"{c} "
                    + " / ".join(_ap50(sizes[z].get(c)) for z in SIZES)
                    + f" ({' / '.join(str((sizes[z].get(c) or {}).get('ground_truth', 0)) for z in SIZES)})"
                    for c in TARGET_CLASSES
                    if c in d["per_class"]
                )
            )
        else:
            print(
                f"  {name:<20} CamVid val ({d['images']} images): mIoU over {len(d['iou'])} shared classes "
                f"{d['mIoU_shared']:.3f}  " + "  ".join(f"{c} {v:.3f}" for c, v in d["iou"].items()) + ms
            )
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

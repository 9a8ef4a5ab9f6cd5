"""How far a held-out metric wanders with the draw of scenes, and whether one model beats another.

Scores each model once per scene folder (ONNX Runtime through the node pipeline, as
``perception-models evaluate``), then re-computes the metric on random subsets of the scenes (by
default 6 driving + 6 indoor, the size of the model cards' held-out sets) and on resamplings of all
of them (with replacement), the first model being the reference for paired differences:

    python benchmarks/heldout_spread.py --task segmentation --models models/segmentation.onnx cand.onnx \\
        --data data/bheld/*/*

Prints the metric on all scenes, its mean and standard deviation over subsets, and the paired
difference to the first model (mean, standard deviation, share of subsets where it is positive,
95 % interval when all scenes are resampled).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from tqdm import tqdm

from perception_models.evaluate import detection_frames, segmentation_frames
from perception_models.node_pipelines import node_pipeline
from perception_models.metrics import ConfusionMatrix, DetectionEvaluator


def per_scene(task: str, model: str, scenes: list[str]) -> tuple[list[str], dict]:
    """Class names and, per scene, what its metric needs: a confusion matrix (segmentation) or the
    frames' ``DetectionEvaluator.add`` arguments (detection), read as ``perception-models evaluate`` reads them."""
    kw = {"score_threshold": 0.05} if task == "detection" else {}
    pipe, card = node_pipeline(Path(model), task, **kw)
    out: dict = {}
    for scene in tqdm(scenes, desc=Path(model).name, unit="scene"):
        if task == "detection":
            out[scene] = list(detection_frames(pipe, card.classes, scene))
            continue
        cm = ConfusionMatrix(card.num_classes, card.classes)
        for target, prediction in segmentation_frames(pipe, scene):
            cm.add(target, prediction)
        out[scene] = cm.matrix
    return list(card.classes), out


def metric(task: str, classes: list[str], scored: dict, scenes: list[str]) -> np.ndarray:
    """mIoU, or (mAP, mAP50), over ``scenes`` (repeats count again)."""
    if task == "segmentation":
        cm = ConfusionMatrix(len(classes), classes)
        cm.matrix = np.sum([scored[s] for s in scenes], axis=0)
        return np.array([cm.summary()["mIoU"]])
    ev = DetectionEvaluator(len(classes), classes)
    for s in scenes:
        for frame in scored[s]:
            ev.add(*frame)
    r = ev.summary()
    return np.array([r["mAP"], r["mAP50"]])


def f(v: np.ndarray, digits: int = 4) -> str:
    """A metric vector as "0.1234 / 0.5678"."""
    return " / ".join(f"{x:.{digits}f}" for x in v)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--task", choices=["detection", "segmentation"], required=True)
    ap.add_argument("--models", nargs="+", required=True, help="ONNX models; the first is the reference")
    ap.add_argument("--data", nargs="+", required=True, help="scene folders (synthetic sequences)")
    ap.add_argument(
        "--subset",
        type=int,
        nargs=2,
        default=(6, 6),
        metavar=("DRIVING", "INDOOR"),
        help="scenes per subset whose folder name contains driving / indoor",
    )
    ap.add_argument("--draws", type=int, default=200, help="random subsets (and full resamplings)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    scenes = sorted(d for d in args.data if Path(d).is_dir())
    groups = [[s for s in scenes if "driving" in Path(s).name], [s for s in scenes if "indoor" in Path(s).name]]
    if any(len(g) < n for g, n in zip(groups, args.subset)):
        ap.error(f"--subset {args.subset} needs that many driving and indoor scenes; found {[len(g) for g in groups]}")
    names = "mIoU" if args.task == "segmentation" else "mAP, mAP50"
    scored = [per_scene(args.task, m, scenes) for m in args.models]
    rng = np.random.default_rng(args.seed)
    subsets = [
        [s for g, n in zip(groups, args.subset) for s in rng.choice(g, n, replace=False)] for _ in range(args.draws)
    ]
    resampled = [[s for g in groups for s in rng.choice(g, len(g), replace=True)] for _ in range(args.draws)]
    sub = np.array([[metric(args.task, c, sc, x) for c, sc in scored] for x in tqdm(subsets, desc="subsets")])
    res = np.array([[metric(args.task, c, sc, x) for c, sc in scored] for x in tqdm(resampled, desc="resamplings")])
    print(
        f"{args.task} ({names}), {len(scenes)} scenes; subsets of {args.subset[0]} driving + {args.subset[1]} "
        f"indoor, {args.draws} draws"
    )
    for i, (model, (classes, sc)) in enumerate(zip(args.models, scored)):
        line = (
            f"{model}: all {f(metric(args.task, classes, sc, scenes))}; subsets {f(sub[:, i].mean(0))} "
            f"± {f(sub[:, i].std(0))}"
        )
        if i:
            d, r = sub[:, i] - sub[:, 0], res[:, i] - res[:, 0]
            line += (
                f"; minus the first: subsets {f(d.mean(0))} ± {f(d.std(0))} (positive in {f((d > 0).mean(0), 2)}), "
                f"all scenes 95 % from {f(np.percentile(r, 2.5, 0))} to {f(np.percentile(r, 97.5, 0))}"
            )
        print(line)


if __name__ == "__main__":
    main()

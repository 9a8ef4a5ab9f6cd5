"""Render synthetic data on every core, then fine-tune the shipped detector, segmenter and depth
network together on one GPU within a wall-clock budget. Needs torch, numpy, opencv, onnx,
pyyaml, tqdm and (for the depth run's validation) evo:

    perception-models train-gpu --work /tmp/gpu --minutes 20 --sync /path/kept [--photos DIR]
    # on a bare GPU machine with the repository and torch, without the workspace installed:
    PYTHONPATH=src/perception_models:src/perception_nodes python -m perception_models.train.gpu_run ...

- data: ``--driving`` + ``--indoor`` sequences of ``--frames`` frames (new seeds), rendered by
  parallel ``perception-models data synth`` processes, and validation scenes for choosing
  ``best.pt`` (seeds 9200 and 9800, 15 sequences x 10 frames each: six scenes were too few to
  choose on, their metric swung by +-0.05 between neighbouring epochs; the model cards are measured
  on seeds 9000 and 9500, the third held-out set on 9400 and 9700, which no run sees);
- training: ``perception-models train`` per task, each ``--init`` from the shipped ONNX model
  (``perception_models.onnx_weights``; ``--init-detection`` / ``--init-segmentation``: an earlier
  call's ``--sync`` copy instead) at its card's input size, ``--time-budget-min`` so that each cosine
  schedule ends inside the budget, data-loader workers split between the tasks; segmentation without
  class weights unless ``--class-weights median_frequency``;
- ``--reuse``: a later call on the same (still warm) machine trains on the sequences already rendered;
- ``--distilled``: the detector also learns from real footage labelled by a teacher (``perception-models
  distill --teacher-only``'s ``<run>/teacher``), next to the renders;
- ``--sync``: every time a run's ``best.pt`` improves, a slim copy (the validated weights, config,
  metrics; no optimizer state, nor ``--ema``'s raw weights) goes there as ``<task>.pt``, with the
  logs, so that what is kept survives the machine; ``status.txt`` says where each run is.

Export and measure locally afterwards (``perception-models export --task ... --checkpoint <task>.pt
--eval ...``) and replace a shipped model only when it beats its card.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from perception_nodes.workspace import workspace_root

ROOT = workspace_root()
ENV = {
    **os.environ,
    "PYTHONPATH": os.pathsep.join(
        [str(ROOT / "src/perception_models"), str(ROOT / "src/perception_nodes"), os.environ.get("PYTHONPATH", "")]
    ),
    "CUBLAS_WORKSPACE_CONFIG": ":4096:8",
    "OMP_NUM_THREADS": "1",
    "PYTHONUNBUFFERED": "1",
}
CLI = [sys.executable, "-m", "perception_models.cli"]
# validation (best.pt) on scenes of their own: the cards' held-out scenes (seeds 9000 and 9500) stay unseen
VAL = [("driving", 9200, 15), ("indoor", 9800, 15)]


def card_input_size(model: str) -> list[str]:
    """``--input-size H W`` of a shipped model's card, so that fine-tuning keeps its resolution."""
    import yaml

    card = yaml.safe_load((ROOT / "models" / f"{model}.card.yaml").read_text())
    return ["--input-size", str(card["input"]["height"]), str(card["input"]["width"])]


def rendered(work: Path) -> tuple[list[str], list[str]]:
    train = sorted(str(p) for p in (work / "train").glob("*/*") if (p / "manifest.json").is_file())
    val = sorted(str(p) for p in (work / "val").glob("*/*") if (p / "manifest.json").is_file())
    return train, val


def render(work: Path, args: argparse.Namespace) -> tuple[list[str], list[str]]:
    """Training and validation sequence folders, rendered by ``--procs`` processes (``--reuse``: those
    that an earlier call on the same machine left in ``--work``)."""
    if args.reuse:
        train, val = rendered(work)
        if train and val:
            print(f"reusing {len(train)} training and {len(val)} validation sequences in {work}", flush=True)
            return train, val
    jobs = []
    for preset, seed0, count in (
        ("driving", args.seed_driving, args.driving),
        ("indoor", args.seed_indoor, args.indoor),
    ):
        chunk = max(1, count // args.procs)
        for s in range(0, count, chunk):
            jobs.append((preset, seed0 + s, min(chunk, count - s), args.frames, work / "train"))
    for preset, seed, count in VAL:
        jobs.append((preset, seed, count, 10, work / "val"))
    photos = ["--photos", args.photos] if args.photos else []

    def run(job):
        preset, seed, count, frames, out = job
        cmd = (
            CLI
            + [
                "data",
                "synth",
                "--preset",
                preset,
                "--sequences",
                str(count),
                "--frames",
                str(frames),
                "--seed",
                str(seed),
                "--out",
                str(out / f"{preset}_{seed}"),
                "--no-flow",
                "--workers",
                "1",
            ]
            + photos
        )
        r = subprocess.run(cmd, env=ENV, capture_output=True, text=True)
        if r.returncode:
            raise RuntimeError(f"{' '.join(cmd)}: {r.stderr[-2000:]}")

    t0 = time.monotonic()
    with ThreadPoolExecutor(args.procs) as pool:
        list(pool.map(run, jobs))
    train, val = rendered(work)
    print(
        f"rendered {len(train)} training and {len(val)} validation sequences in {time.monotonic() - t0:.0f} s",
        flush=True,
    )
    return train, val


def commands(work: Path, train: list[str], val: list[str], args: argparse.Namespace) -> dict[str, list[str]]:
    budget = [
        "--time-budget-min",
        f"{args.minutes:.2f}",
        "--epochs",
        "1000",
        "--max-steps-per-epoch",
        str(args.steps_per_epoch),
    ]
    common = ["--val", *val, "--seed", "0", "--cache-images", "--ema", str(args.ema), "--data", *train]
    if args.backbone_blocks:
        common += ["--backbone-blocks", *map(str, args.backbone_blocks)]
    cmds = {
        "detection": CLI
        + [
            "train",
            "--task",
            "detection",
            *common,
            *[d for d in args.distilled for _ in range(args.distilled_repeat)],  # more --data
            "--out",
            str(work / "runs/detection"),
            *card_input_size("detection"),
            "--batch-size",
            str(args.batch_size),
            "--lr",
            str(args.lr_detection),
            "--workers",
            str(args.workers["detection"]),
            "--init",
            args.init_detection,
            *budget,
        ],
        "segmentation": CLI
        + [
            "train",
            "--task",
            "segmentation",
            *common,
            "--out",
            str(work / "runs/segmentation"),
            *card_input_size("segmentation"),
            "--batch-size",
            str(args.batch_size),
            "--lr",
            str(args.lr_segmentation),
            "--workers",
            str(args.workers["segmentation"]),
            "--class-weights",
            args.class_weights,
            "--init",
            args.init_segmentation,
            *budget,
        ],
        "depth": CLI
        + [
            "train",
            "--task",
            "depth",
            "--data",
            *train,
            "--val",
            *[v for v in val if "driving" in v][:2],
            *[v for v in val if "indoor" in v][:2],
            "--seed",
            "0",
            "--out",
            str(work / "runs/depth"),
            "--batch-size",
            str(max(1, args.batch_size * 3 // 4)),
            "--lr",
            "5e-4",
            "--scales",
            "0",
            "--workers",
            str(args.workers["depth"]),
            "--init",
            str(ROOT / "models/depth.onnx"),
            "--cache-images",
            *budget,
        ],
    }
    return {t: cmds[t] for t in args.tasks}


def slim(src: Path, dst: Path) -> None:
    import torch

    ck = torch.load(src, map_location="cpu", weights_only=True)
    for k in ("optimizer", "torch_rng", "loader_rng", "train_model"):
        ck.pop(k, None)
    tmp = dst.with_suffix(".tmp")
    torch.save(ck, tmp)
    tmp.replace(dst)


def status_line(task: str, run: Path, proc: subprocess.Popen) -> str:
    rows = (
        [json.loads(x) for x in (run / "log.jsonl").read_text().splitlines() if x.strip()]
        if (run / "log.jsonl").is_file()
        else []
    )
    val = [r for r in rows if r.get("kind") == "val"]
    plan = next((r for r in rows if r.get("kind") == "plan"), {})
    train = [r for r in rows if r.get("kind") == "train"]
    state = "running" if proc.poll() is None else f"exited {proc.returncode}"
    metric = ", ".join(f"{r['metric']:.4f}" for r in val[-6:])
    return (
        f"{task}: {state}; step {train[-1]['step'] if train else 0}/{plan.get('planned_steps', '?')} "
        f"({plan.get('steps_per_second', 0):.1f}/s); validation {metric}"
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="perception-models train-gpu", description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, default=Path("/tmp/gpu"))
    ap.add_argument("--sync", type=Path, required=True, help="folder for slim best checkpoints and logs")
    ap.add_argument("--minutes", type=float, default=20.0, help="training budget per task (after rendering)")
    ap.add_argument("--tasks", nargs="+", default=["detection", "segmentation", "depth"])
    ap.add_argument("--driving", type=int, default=600)
    ap.add_argument("--indoor", type=int, default=400)
    ap.add_argument("--frames", type=int, default=6)
    ap.add_argument("--seed-driving", type=int, default=10000)
    ap.add_argument("--seed-indoor", type=int, default=20000)
    ap.add_argument("--photos", help="folder of photos for textures (default: ../shared/data/camvid when present)")
    ap.add_argument("--procs", type=int, default=os.cpu_count() or 4)
    ap.add_argument("--steps-per-epoch", type=int, default=800)
    ap.add_argument("--batch-size", type=int, default=32, help="detection and segmentation (depth: 3/4 of it)")
    ap.add_argument("--lr-detection", type=float, default=1e-3)
    ap.add_argument("--lr-segmentation", type=float, default=1e-3)
    ap.add_argument(
        "--class-weights",
        choices=["none", "median_frequency"],
        default="none",
        help="segmentation (weighted runs lost clutter and cone IoU on validation, docs/model-history.md)",
    )
    ap.add_argument(
        "--init-detection",
        default=str(ROOT / "models/detection.onnx"),
        help="ONNX model or checkpoint (e.g. an earlier call's --sync copy) to fine-tune",
    )
    ap.add_argument("--init-segmentation", default=str(ROOT / "models/segmentation.onnx"), help="likewise")
    ap.add_argument("--ema", type=float, default=0.0, help="detection and segmentation: train's --ema (e.g. 0.999)")
    ap.add_argument(
        "--backbone-blocks",
        type=int,
        nargs=4,
        metavar="N",
        help="detection and segmentation: train's --backbone-blocks (deeper, grown from the --init models)",
    )
    ap.add_argument("--reuse", action="store_true", help="train on the sequences an earlier call rendered into --work")
    ap.add_argument(
        "--distilled",
        nargs="+",
        default=[],
        help="detection: teacher sets of real footage (perception-models distill --teacher-only: <run>/teacher) "
        "to learn from as well",
    )
    ap.add_argument("--distilled-repeat", type=int, default=3, help="times each teacher set is repeated per epoch")
    args = ap.parse_args(argv)
    cores = max(3, (os.cpu_count() or 4) - len(args.tasks))
    share = {"detection": 0.38, "segmentation": 0.38, "depth": 0.24}
    total = sum(share[t] for t in args.tasks)
    args.workers = {
        t: max(1, int(cores * share[t] / total)) for t in share
    }  # every command is built, the chosen ones run
    needs = ["torch", "cv2", "onnx", "yaml", "tqdm"] + (["evo"] if "depth" in args.tasks else [])
    missing = [m for m in needs if importlib.util.find_spec(m) is None]
    if missing:  # before minutes of rendering, not after them
        print(
            f"perception-models train-gpu: missing Python packages {missing} (depth validation needs evo)",
            file=sys.stderr,
        )
        return 2
    args.sync.mkdir(parents=True, exist_ok=True)
    args.work.mkdir(parents=True, exist_ok=True)
    for d in args.distilled:  # what the student learned from goes into its card at export
        record = Path(d).parent / "distillation.json"
        if record.is_file():
            shutil.copy(record, args.sync / "distillation.json")
    train, val = render(args.work, args)
    procs: dict[str, subprocess.Popen] = {}
    for task, cmd in commands(args.work, train, val, args).items():
        (args.work / "runs").mkdir(exist_ok=True)
        shutil.rmtree(args.work / "runs" / task, ignore_errors=True)  # an earlier call's run: its best is in --sync
        log = open(args.work / f"{task}.out", "w")
        procs[task] = subprocess.Popen(cmd, env=ENV, stdout=log, stderr=subprocess.STDOUT)
    seen: dict[str, float] = {}
    while True:
        lines = [time.strftime("%H:%M:%S")]
        for task, proc in procs.items():
            run = args.work / "runs" / task
            best = run / "best.pt"
            if best.is_file() and best.stat().st_mtime != seen.get(task):
                seen[task] = best.stat().st_mtime
                try:
                    slim(best, args.sync / f"{task}.pt")
                except Exception as exc:  # a checkpoint being written: next round
                    seen.pop(task, None)
                    print(f"{task}: {exc}", flush=True)
            if (run / "log.jsonl").is_file():
                shutil.copy(run / "log.jsonl", args.sync / f"{task}.log.jsonl")
            lines.append(status_line(task, run, proc))
        (args.sync / "status.txt").write_text("\n".join(lines) + "\n")
        if all(p.poll() is not None for p in procs.values()):
            break
        time.sleep(15)
    for task in procs:
        out = args.work / f"{task}.out"
        (args.sync / f"{task}.out.txt").write_text(out.read_text()[-20000:])
    print((args.sync / "status.txt").read_text(), flush=True)
    return max(p.returncode for p in procs.values())


if __name__ == "__main__":
    raise SystemExit(main())

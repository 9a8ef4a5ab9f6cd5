"""Side by side: our keypoint model vs OpenCV SIFT vs OpenCV ORB on the same pairs with the same
robust estimators (matching_eval.py): MMA@1/3/5 px, homography accuracy@1/3/5 px (corner error),
pose AUC@5/10/20 deg (essential matrix), matches and time per pair; then our per-frame time at
640x480 on ONNX Runtime CPU (2 threads) through the node pipeline.

Pairs: homographic pairs from CamVid *val* photos (training used CamVid train), synthetic pairs with
ground-truth pose from held-out seeds. Targets (issue 6): MMA@3 and homography acc@3 >= SIFT on the
homographic pairs, pose AUC@10 >= SIFT on the synthetic pairs, ORB beaten everywhere, <= 40 ms/frame.

    python benchmarks/bench_matching.py [--model models/matching.onnx] [--pairs 100]
        [--extra xfeat.card.yaml ...] [--glue lighterglue.card.yaml] [--kitti ../shared/data/kitti_odom06]

``--extra`` adds third-party keypoint models (cards from ``perception-models card``), each with mutual
NN and, with ``--glue``, with the learned matcher too. Real pose pairs: KITTI frames t, t+2 with the
ground-truth relative pose (pose AUC; no depth there, so no pose MMA).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"


def main() -> int:
    from perception_models.matching_eval import (
        evaluate_method,
        homography_eval_pairs,
        network_method,
        orb_method,
        pose_eval_pairs,
        sift_method,
    )
    from perception_nodes.backends import OnnxRuntimeBackend
    from perception_nodes.model_card import load_card
    from perception_nodes.pipelines.matching import MatchingPipeline

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=str(ROOT / "models" / "matching.onnx"))
    ap.add_argument("--photos", default=str(SHARED / "camvid" / "val"))
    ap.add_argument(
        "--sequences", nargs="*", help="synthetic sequences with depth + poses (default: generated, seeds 9700/9800)"
    )
    ap.add_argument("--pairs", type=int, default=100)
    ap.add_argument("--size", type=int, nargs=2, default=[480, 640], metavar=("H", "W"), help="pair image size")
    ap.add_argument("--extra", nargs="*", default=[], help="third-party keypoint model cards to add")
    ap.add_argument("--glue", help="a LightGlue-style matcher card, run with each --extra model")
    ap.add_argument("--kitti", default=str(SHARED / "kitti_odom06"), help="KITTI odometry folder for real pose pairs")
    args = ap.parse_args()
    size = tuple(args.size)
    photos = sorted(p for p in Path(args.photos).glob("*.png")) if Path(args.photos).is_dir() else []
    seqs = [Path(s) for s in args.sequences] if args.sequences else []
    if not seqs:
        import tempfile

        from perception_models.data.synth import SynthConfig, SyntheticSequence
        from perception_models.data.writers import write_sequence

        tmp = Path(tempfile.mkdtemp(prefix="bench-matching-"))
        for preset, seed in (("driving", 9700), ("indoor", 9800)):
            write_sequence(
                SyntheticSequence(SynthConfig(preset=preset, seed=seed, frames=30, width=size[1], height=size[0])),
                tmp / f"{preset}_{seed}",
                flow=False,
                workers=1,
                progress=False,
            )
            seqs.append(tmp / f"{preset}_{seed}")
    hp = homography_eval_pairs(photos, args.pairs, size) if photos else []
    pp = pose_eval_pairs(seqs, max(1, args.pairs // len(seqs)), size)
    from perception_nodes.families.lightglue import LightGlueMatcher
    from perception_nodes.model_card import model_files

    from perception_models.matching_eval import kitti_pose_pairs

    card = load_card(args.model, "matching")
    pipe = MatchingPipeline(OnnxRuntimeBackend(Path(args.model), threads=2), card)
    methods = {"ours": network_method(pipe.run), "SIFT": sift_method(), "ORB": orb_method()}
    glue = None
    if args.glue:
        glue = LightGlueMatcher(
            OnnxRuntimeBackend(model_files(args.glue)[0], threads=2), load_card(args.glue, "matcher")
        )
    for extra in args.extra:
        name = Path(extra).name.split(".")[0][:10]
        xp = MatchingPipeline(OnnxRuntimeBackend(model_files(extra)[0], threads=2), load_card(extra, "matching"))
        methods[name] = network_method(xp.run)
        if glue is not None:
            methods[name[:6] + "+LG"] = network_method(xp.run, match_fn=glue)
    kp = kitti_pose_pairs(args.kitti, args.pairs // 4) if Path(args.kitti, "poses.txt").is_file() else []
    print(
        f"benchmark: matching, {len(hp)} homographic pairs from {args.photos if photos else '(no photos)'}, "
        f"{len(pp)} synthetic pose pairs, {size[1]}x{size[0]}, our model {args.model} "
        f"({card.input_height}x{card.input_width} net)"
    )
    rows = {name: evaluate_method(m, hp, pp) for name, m in methods.items()}
    width = max(6, *(len(n) for n in methods))
    head = (
        f"{'method':{width}s} | {'MMA@1':>6s} {'MMA@3':>6s} {'MMA@5':>6s} | {'H@1':>5s} {'H@3':>5s} {'H@5':>5s} | "
        f"{'poseMMA@3':>9s} | {'AUC@5':>6s} {'AUC@10':>6s} {'AUC@20':>6s} | {'matches':>7s} {'ms/pair':>8s}"
    )
    print(head)
    print("-" * len(head))
    for name, r in rows.items():
        hm = r.get("homography_mma", {1: np.nan, 3: np.nan, 5: np.nan})
        ha = r.get("homography_accuracy", {1: np.nan, 3: np.nan, 5: np.nan})
        print(
            f"{name:{width}s} | {hm[1]:6.3f} {hm[3]:6.3f} {hm[5]:6.3f} | {ha[1]:5.2f} {ha[3]:5.2f} {ha[5]:5.2f} | "
            f"{r['pose_mma'][3]:9.3f} | {r['pose_auc'][5]:6.3f} {r['pose_auc'][10]:6.3f} {r['pose_auc'][20]:6.3f} | "
            f"{r['matches_per_pair']:7.0f} {r['ms_per_pair']:8.1f}"
        )
    if kp:
        print(f"\nreal pose pairs: {len(kp)} KITTI frame pairs (t, t+2) from {args.kitti}, full resolution")
        print(f"{'method':{width}s} | {'AUC@5':>6s} {'AUC@10':>6s} {'AUC@20':>6s} | {'matches':>7s} {'ms/pair':>8s}")
        for name, m in methods.items():
            r = evaluate_method(m, [], kp)
            a = r["pose_auc"]
            print(
                f"{name:{width}s} | {a[5]:6.3f} {a[10]:6.3f} {a[20]:6.3f} | "
                f"{r['matches_per_pair']:7.0f} {r['ms_per_pair']:8.1f}"
            )
    ours, sift, orb = rows["ours"], rows["SIFT"], rows["ORB"]
    checks = []
    if hp:
        checks += [
            ("MMA@3 >= SIFT (homographic)", ours["homography_mma"][3] >= sift["homography_mma"][3]),
            ("H acc@3 >= SIFT (homographic)", ours["homography_accuracy"][3] >= sift["homography_accuracy"][3]),
        ]
    checks += [("pose AUC@10 >= SIFT (synthetic)", ours["pose_auc"][10] >= sift["pose_auc"][10])]
    beats_orb = ours["pose_auc"][10] >= orb["pose_auc"][10] and ours["pose_mma"][3] >= orb["pose_mma"][3]
    if hp:
        beats_orb &= (
            ours["homography_mma"][3] >= orb["homography_mma"][3]
            and ours["homography_accuracy"][3] >= orb["homography_accuracy"][3]
        )
    checks.append(("ORB beaten everywhere", beats_orb))
    rgb = np.random.default_rng(0).integers(0, 255, (480, 640, 3), dtype=np.uint8)
    for _ in range(3):
        pipe.run(rgb)
    ts = []
    for _ in range(30):
        t0 = time.perf_counter()
        pipe.run(rgb)
        ts.append(time.perf_counter() - t0)
    frame_ms = 1e3 * float(np.median(ts))
    checks.append((f"<= 40 ms per 640x480 frame (median {frame_ms:.1f} ms)", frame_ms <= 40.0))
    for text, ok in checks:
        print(f"  {'OK  ' if ok else 'MISS'} {text}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

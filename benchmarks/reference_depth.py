"""How far to trust `perception-models data reference-depth`: the reference triangulated from the
poses of rendered sequences, against the renderer's own depth, with the exact poses and with the
rotations disturbed the way GPS/INS disturbs them (then re-fitted to the images, as on KITTI).
Prints per variant the points per frame, AbsRel, the median relative error and the share within
10 %; corners on depth edges (the ground truth differs by > 10 % within 2 px) are counted apart,
since there a one-pixel offset decides which surface the ground truth reads.

    python benchmarks/reference_depth.py --data data/synth_val/* --every 2 --rotation-noise-deg 0.15
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from perception_models.data.readers.common import read_rgb
from perception_models.data.readers.depth import read_nyu_depth
from perception_models.data.readers.tum import read_tum_trajectory
from perception_models.data.reference_depth import rotation_matrices, reference_depth
from perception_models.train.depth_data import load_synthetic_sequence


def main() -> int:
    import cv2
    from tqdm import tqdm

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", nargs="+", required=True, help="rendered sequence folders (rgb/, depth/, trajectory)")
    ap.add_argument("--every", type=int, default=1, help="reference frames: every n-th")
    ap.add_argument("--rotation-noise-deg", type=float, default=0.15, help="per-axis sigma of the disturbed poses")
    args = ap.parse_args()

    rng = np.random.default_rng(0)
    rows: dict[str, list[np.ndarray]] = {}
    for root in tqdm([Path(d) for d in args.data], desc="sequences", unit="seq"):
        seq = load_synthetic_sequence(root)
        _t, poses = read_tum_trajectory(root / "trajectory_tum.txt")
        frames = [read_rgb(f) for f in seq.frames]
        noisy = poses.copy()
        for k in range(len(noisy)):
            noisy[k, :3, :3] = (
                noisy[k, :3, :3] @ rotation_matrices(np.radians(rng.normal(0, args.rotation_noise_deg, (1, 3))))[0]
            )
        kind = root.name.split("_")[0]
        for i in range(0, len(frames), args.every):
            gt = read_nyu_depth(seq.depth[i])
            filled = np.nan_to_num(gt, nan=0.0)
            lo = cv2.erode(np.where(filled > 0, filled, 1e3).astype(np.float32), np.ones((5, 5)))
            hi = cv2.dilate(filled.astype(np.float32), np.ones((5, 5)))
            edge = hi > 1.1 * lo
            for name, given, refine in (
                ("exact poses", poses, False),
                (f"rotations +-{args.rotation_noise_deg} deg", noisy, False),
                (f"rotations +-{args.rotation_noise_deg} deg, re-fitted", noisy, True),
            ):
                d = reference_depth(frames, seq.K, given, i, refine=refine).depth
                ok = np.isfinite(d) & np.isfinite(gt)
                rel = np.abs(d[ok] - gt[ok]) / gt[ok]
                rows.setdefault(f"{kind:8s} {name}", []).append(np.c_[rel, edge[ok]])
    n_frames = {k: len(v) for k, v in rows.items()}
    print(f"{'set / poses':48s} {'pts/frame':>9s} {'AbsRel':>7s} {'median':>7s} {'<10%':>6s} {'AbsRel off edges':>17s}")
    for k, v in rows.items():
        a = np.concatenate(v)
        rel, edge = a[:, 0], a[:, 1] > 0
        print(
            f"{k:48s} {len(a) / n_frames[k]:9.0f} {rel.mean():7.4f} {np.median(rel):7.4f} "
            f"{np.mean(rel < 0.1):6.3f} {rel[~edge].mean():17.4f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

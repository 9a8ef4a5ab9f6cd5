"""Keypoint network training: detector (cell cross-entropy on pseudo ground-truth corners) +
descriptor metric learning (``--descriptor-loss`` contrastive | triplet, ``--mining`` hard | spatial)
on homographic pairs of real photos and on synthetic frame pairs with depth + pose correspondences.

    perception-models train --task matching --photos ../shared/data/camvid/train --data synth/driving_1000 ... \\
        --val-photos ../shared/data/camvid/val --val synth/driving_9000 --out runs/matching

Validation each epoch (``matching_eval.py``, the same code as the SIFT/ORB side-by-side): MMA@3px
and homography accuracy@3px on held-out homographic pairs, pose AUC@10 on held-out synthetic pairs;
``best.pt`` keeps the highest mean of the three.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import ConcatDataset, DataLoader

from perception_nodes.image_conversion import IMAGE_SUFFIXES

from ..models.matching import KeypointExport, KeypointNet, MatcherConfig
from ..models.matching_losses import descriptor_loss, detector_loss
from .trainer import _lr_at, _seed_everything, checkpoint_epoch, optimizer_step, resume_from


@dataclass
class MatchTrainConfig:
    photos: list[str] = field(default_factory=list)  # folders of real photos (homographic pairs)
    data: list[str] = field(default_factory=list)  # synthetic sequences (depth + pose pairs)
    val_photos: list[str] = field(default_factory=list)
    val: list[str] = field(default_factory=list)
    out: str = "runs/matching"
    epochs: int = 20
    batch_size: int = 8
    lr: float = 1e-3
    weight_decay: float = 1e-4
    warmup_steps: int = 100
    input_size: tuple[int, int] = (240, 320)
    descriptor_dim: int = 64
    descriptor_loss: str = "triplet"  # contrastive | triplet
    mining: str = "hard"  # hard | spatial
    descriptor_weight: float = 1.0
    homography_pairs_per_epoch: int = 0  # 0: one per photo
    val_pairs: int = 40
    seed: int = 0
    workers: int = 0
    log_every: int = 10
    max_steps_per_epoch: int = 0
    init: str = ""


def image_files(folders: list[str]) -> list[Path]:
    out: list[Path] = []
    for f in folders:
        out += sorted(p for p in Path(f).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    return out


def default_photos(data: list[str]) -> list[str]:
    """Photos for homographic pairs when none are given: CamVid train from ../shared/data when it is
    there, else the synthetic sequences' own frames (synthetic textures)."""
    from perception_nodes.workspace import workspace_root

    camvid = workspace_root().parent / "shared" / "data" / "camvid" / "train"
    if camvid.is_dir():
        return [str(camvid)]
    return [str(Path(d) / "rgb") for d in data if (Path(d) / "rgb").is_dir()]


def build_net(cfg: MatchTrainConfig) -> KeypointNet:
    return KeypointNet(MatcherConfig(input_size=tuple(cfg.input_size), descriptor_dim=cfg.descriptor_dim))


def torch_extractor(net: KeypointNet):
    from perception_nodes.pipelines.matching import Features

    from .matching_data import normalise

    export = KeypointExport(net).eval()

    @torch.no_grad()
    def run(rgb: np.ndarray):
        kp, sc, de = export(normalise(rgb)[None])
        ok = sc[0] > 0
        return Features(kp[0][ok].numpy(), sc[0][ok].numpy(), de[0][ok].numpy())

    return run


def validate(cfg: MatchTrainConfig, net: KeypointNet, hpairs: list[dict], ppairs: list[dict]) -> dict[str, Any]:
    from ..matching_eval import evaluate_method, network_method

    net.eval()
    r = evaluate_method(network_method(torch_extractor(net)), hpairs, ppairs)
    net.train()
    parts = []
    if hpairs:
        parts += [r["homography_mma"][3], r["homography_accuracy"][3]]
    if ppairs:
        parts.append(r["pose_auc"][10])
    r["metric"] = float(np.mean(parts)) if parts else float("nan")
    return r


def train_matching(cfg: MatchTrainConfig, resume: bool = False, progress: bool = True) -> dict[str, Any]:
    from tqdm import tqdm

    from ..matching_eval import homography_eval_pairs, pose_eval_pairs
    from .matching_data import HomographyPairs, SequencePairs

    if not cfg.photos and not cfg.data:
        raise ValueError("matching training needs --photos (real images) and/or --data (synthetic sequences)")
    if any(s % 8 for s in cfg.input_size):
        raise ValueError(f"input size {cfg.input_size} must be multiples of 8")
    _seed_everything(cfg.seed)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    parts: list[Any] = []
    if not cfg.photos:
        cfg.photos = default_photos(cfg.data)
        if progress:
            print(f"homographic pairs from {cfg.photos}")
    if cfg.photos:
        photos = image_files(cfg.photos)
        parts.append(HomographyPairs(photos, cfg.input_size, cfg.seed, cfg.homography_pairs_per_epoch))
    if cfg.data:
        parts.append(SequencePairs([Path(d) for d in cfg.data], cfg.input_size, cfg.seed))
    train_set = ConcatDataset(parts)
    val_photos = image_files(cfg.val_photos) if cfg.val_photos else []
    hpairs = homography_eval_pairs(val_photos, cfg.val_pairs, cfg.input_size) if val_photos else []
    ppairs = (
        pose_eval_pairs([Path(v) for v in cfg.val], max(1, cfg.val_pairs // max(1, len(cfg.val))), cfg.input_size)
        if cfg.val
        else []
    )
    net = build_net(cfg)
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    gen = torch.Generator().manual_seed(cfg.seed)
    loader = DataLoader(
        train_set,
        cfg.batch_size,
        shuffle=True,
        generator=gen,
        num_workers=cfg.workers,
        drop_last=len(train_set) > cfg.batch_size,
    )
    steps_per_epoch = len(loader) if not cfg.max_steps_per_epoch else min(len(loader), cfg.max_steps_per_epoch)
    total = steps_per_epoch * cfg.epochs
    start_epoch, step, best = 0, 0, -1.0
    last = out / "last.pt"
    if resume:
        start_epoch, step, best = resume_from(last, {"model": net}, opt, gen, -1.0)
    elif cfg.init:
        ck = torch.load(cfg.init, map_location="cpu", weights_only=True)
        net.load_state_dict(ck["model"])
    loss_gen = torch.Generator().manual_seed(cfg.seed + 1)
    result: dict[str, Any] = {}
    with open(out / "log.jsonl", "a") as log:
        for epoch in range(start_epoch, cfg.epochs):
            for p in parts:
                p.epoch = epoch
            net.train()
            bar = tqdm(
                loader,
                total=steps_per_epoch,
                desc=f"matching epoch {epoch + 1}/{cfg.epochs}",
                disable=not progress,
                unit="batch",
            )
            t0 = time.monotonic()
            for b, batch in enumerate(bar):
                if b >= steps_per_epoch:
                    break
                logits_a, desc_a = net(batch["image_a"])
                logits_b, desc_b = net(batch["image_b"])
                det = detector_loss(logits_a, batch["kp_a"]) + detector_loss(logits_b, batch["kp_b"], batch["valid_b"])
                keypoint_cells = torch.nn.functional.pixel_unshuffle(batch["kp_a"][:, None].float(), 8).sum(1) > 0
                des = descriptor_loss(
                    desc_a,
                    desc_b,
                    batch["corr"],
                    batch["corr_valid"],
                    cfg.descriptor_loss,
                    cfg.mining,
                    generator=loss_gen,
                    prefer=keypoint_cells,
                )
                total_loss = det + cfg.descriptor_weight * des
                optimizer_step(opt, net.parameters(), total_loss, _lr_at(step, total, cfg))  # type: ignore[arg-type]
                step += 1
                values = {
                    "detector": float(det.detach()),
                    "descriptor": float(des.detach()),
                    "total": float(total_loss.detach()),
                }
                bar.set_postfix(loss=f"{values['total']:.3f}")
                if step % cfg.log_every == 0 or b == steps_per_epoch - 1:
                    log.write(
                        json.dumps(
                            {"kind": "train", "epoch": epoch, "step": step, "lr": opt.param_groups[0]["lr"], **values}
                        )
                        + "\n"
                    )
                    log.flush()
            metrics = validate(cfg, net, hpairs, ppairs) if (hpairs or ppairs) else {"metric": float("nan")}
            log.write(
                json.dumps({"kind": "val", "epoch": epoch, "step": step, "seconds": time.monotonic() - t0, **metrics})
                + "\n"
            )
            log.flush()
            best = checkpoint_epoch(
                out,
                {"model": net},
                opt,
                gen,
                cfg,
                epoch,
                step,
                metrics,
                best,
                best_without_validation=not (hpairs or ppairs),
            )
            result = {"epoch": epoch, "metric": metrics["metric"], "best": best, "metrics": metrics}
            if progress and "homography_mma" in metrics:
                print(
                    f"epoch {epoch + 1}: MMA@3 {metrics['homography_mma'][3]:.3f}, H acc@3 "
                    f"{metrics['homography_accuracy'][3]:.3f}"
                    + (f", pose AUC@10 {metrics['pose_auc'][10]:.3f}" if "pose_auc" in metrics else "")
                    + f" (best {best:.3f})"
                )
    return result


def load_matching_checkpoint(path: Path | str) -> tuple[KeypointNet, MatchTrainConfig, dict]:
    ck = torch.load(path, map_location="cpu", weights_only=True)
    c = dict(ck["config"])
    c["input_size"] = tuple(c["input_size"])
    cfg = MatchTrainConfig(**c)
    net = build_net(cfg)
    net.load_state_dict(ck["model"])
    return net.eval(), cfg, ck.get("metrics", {})

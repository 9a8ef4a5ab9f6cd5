"""Keypoint network training: detector (cell cross-entropy on pseudo ground-truth corners) +
descriptor metric learning (``--descriptor-loss`` contrastive | triplet, ``--mining`` hard | spatial)
on homographic pairs of real photos and on synthetic frame pairs with depth + pose correspondences.

    perception-models train --task matching --photos ../shared/data/camvid/train --data synth/driving_1000 ... \\
        --val-photos ../shared/data/camvid/val --val synth/driving_9000 --out runs/matching

A task of the one training loop (``trainer.py``). Validation each epoch (``matching_eval.py``, the
same code as the SIFT/ORB side-by-side): MMA@3px and homography accuracy@3px on held-out
homographic pairs, pose AUC@10 on held-out synthetic pairs; ``best.pt`` keeps the highest mean of
the three.

``--teacher CARD`` (a keypoint model of raw layout: XFeat, SuperPoint; card family ``keypoints``)
adds distillation: on every training image the teacher's 65-way cell distribution and descriptors
are what the student's match (``keypoint_distillation``, cross-entropy + 1 - cosine), at the
student's input size, the node's; the teacher runs on the same warped images the pair losses see
(homographic adaptation of real photos), so it is run on each batch, not cached.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import ConcatDataset

from perception_nodes.image_conversion import list_images

from ..models.matching import KeypointExport, KeypointNet, MatcherConfig
from ..models.matching_losses import descriptor_loss, detector_loss, keypoint_distillation
from .trainer import TrainTask, fit


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
    init: str = ""  # a matching checkpoint to start from
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    time_budget_min: float = 0.0  # > 0: fit the number of steps to this many minutes
    ema: float = 0.0  # > 0: decay of the weights' moving average (trainer.WeightAverage)
    teacher: str = ""  # a raw-layout keypoint model's card (XFeat, SuperPoint): its heatmap + descriptors
    teacher_weight: float = 1.0


def image_files(folders: list[str]) -> list[Path]:
    return [p for f in folders for p in list_images(f)]


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
    device = next(net.parameters()).device

    @torch.no_grad()
    def run(rgb: np.ndarray):
        kp, sc, de = (t[0].cpu() for t in export(normalise(rgb)[None].to(device)))
        ok = sc > 0
        return Features(kp[ok].numpy(), sc[ok].numpy(), de[ok].numpy())

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


class KeypointTeacher:
    """A raw-layout keypoint model (card family ``keypoints``, decode ``layout: raw``) run with ONNX
    Runtime on training images: (65-way cell logits, unit descriptors) on the student's cell grid."""

    def __init__(self, card_path: str | Path, threads: int = 2) -> None:
        from perception_nodes.backends import OnnxRuntimeBackend
        from perception_nodes.model_card import load_card, model_files

        card = load_card(card_path, "matching")
        if card.family != "keypoints" or card.decode.get("layout", "raw") != "raw":
            raise ValueError(
                f"--teacher {card_path}: a keypoint teacher gives its cell logits and descriptors "
                "(card family keypoints, decode layout raw: XFeat, SuperPoint)"
            )
        self.card, self.cell = card, int(card.decode.get("cell", 8))
        self.logits, self.descriptors = str(card.decode["logits"]), str(card.decode["descriptors"])
        self.backend = OnnxRuntimeBackend(model_files(card_path)[0], threads=threads)
        self.mean, self.std = np.asarray(card.mean, np.float32), np.asarray(card.std, np.float32)
        spec = next(s for s in self.backend.inputs if s.name == card.input_name)
        self.fixed_size = tuple(spec.shape[2:]) if all(d > 0 for d in spec.shape[2:]) else None

    @torch.no_grad()
    def __call__(self, images01: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Images (B, 3, H, W) in [0, 1] -> logits (B, 65, H/8, W/8), unit descriptors (B, D, H/8, W/8)."""
        h, w = images01.shape[-2:]
        logits, descs = [], []
        for img in images01.cpu().numpy():
            x = img.transpose(1, 2, 0)
            if self.fixed_size is not None and self.fixed_size != (h, w):  # a fixed-size teacher: its own size
                import cv2

                x = cv2.resize(x, (self.fixed_size[1], self.fixed_size[0]), interpolation=cv2.INTER_LINEAR)
            if self.card.channel_order == "BGR":
                x = x[:, :, ::-1]
            x = ((x - self.mean) / self.std).transpose(2, 0, 1)[None].astype(np.float32)
            out = self.backend.infer({self.card.input_name: np.ascontiguousarray(x)})
            logits.append(torch.from_numpy(np.asarray(out[self.logits], np.float32)))
            descs.append(torch.from_numpy(np.asarray(out[self.descriptors], np.float32)))
        grid = (h // self.cell, w // self.cell)
        lg = torch.nn.functional.interpolate(torch.cat(logits), size=grid, mode="bilinear", align_corners=False)
        de = torch.nn.functional.interpolate(torch.cat(descs), size=grid, mode="bilinear", align_corners=False)
        dev = images01.device
        return lg.to(dev), torch.nn.functional.normalize(de, dim=1).to(dev)


class MatchingTask(TrainTask):
    """Keypoint detector (cell cross-entropy) + descriptors (metric learning with hard or spatial
    negative mining) on homographic photo pairs and synthetic depth + pose pairs."""

    name = "matching"

    def __init__(self, cfg: MatchTrainConfig, progress: bool = True) -> None:
        super().__init__(cfg)
        self.progress = progress

    def check(self) -> None:
        if not self.cfg.photos and not self.cfg.data:
            raise ValueError("matching training needs --photos (real images) and/or --data (synthetic sequences)")
        if any(s % 8 for s in self.cfg.input_size):
            raise ValueError(f"input size {self.cfg.input_size} must be multiples of 8")

    def build(self, device: torch.device, rank: int):
        from ..matching_eval import homography_eval_pairs, pose_eval_pairs
        from .matching_data import HomographyPairs, SequencePairs

        cfg = self.cfg
        if not cfg.photos:
            cfg.photos = default_photos(cfg.data)
            if self.progress and rank == 0:
                print(f"homographic pairs from {cfg.photos}")
        self.parts: list[Any] = []
        if cfg.photos:
            self.parts.append(
                HomographyPairs(image_files(cfg.photos), cfg.input_size, cfg.seed, cfg.homography_pairs_per_epoch)
            )
        if cfg.data:
            self.parts.append(SequencePairs([Path(d) for d in cfg.data], cfg.input_size, cfg.seed))
        val_photos = image_files(cfg.val_photos) if cfg.val_photos else []
        self.hpairs = homography_eval_pairs(val_photos, cfg.val_pairs, cfg.input_size) if val_photos else []
        self.ppairs = (
            pose_eval_pairs([Path(v) for v in cfg.val], max(1, cfg.val_pairs // max(1, len(cfg.val))), cfg.input_size)
            if cfg.val
            else []
        )
        self.loss_gen = torch.Generator().manual_seed(cfg.seed + 1)  # the descriptor loss's negative sampling
        self.teacher = KeypointTeacher(cfg.teacher) if cfg.teacher else None
        self.net = build_net(cfg).to(device)
        return ConcatDataset(self.parts), {"model": self.net}

    def initialise(self, device: torch.device, rank: int) -> str:
        if self.cfg.init.endswith(".onnx"):  # an exported keypoint model (e.g. the shipped one)
            from ..onnx_weights import load_onnx_weights

            r = load_onnx_weights(self.net, self.cfg.init, strict=False)
            unused = [m for m in r["missing"] if not m.startswith("backbone.stages.3.")]
            if unused:
                raise ValueError(f"--init {self.cfg.init}: not a keypoint network of this project (no {unused})")
            return f"initialised from {self.cfg.init} ({r['convs']} convolutions)"
        ck = torch.load(self.cfg.init, map_location="cpu", weights_only=True)
        if "model" not in ck:
            raise ValueError(f"--init {self.cfg.init}: not a matching checkpoint (no 'model' weights)")
        self.net.load_state_dict(ck["model"])
        return f"initialised from {self.cfg.init} (epoch {ck.get('epoch')}, best {ck.get('best')})"

    def set_epoch(self, epoch: int) -> None:
        for p in self.parts:
            p.epoch = epoch

    def loss(self, nets: dict[str, torch.nn.Module], batch: Any) -> dict[str, torch.Tensor]:
        net = nets["model"]
        logits_a, desc_a = net(batch["image_a"])
        logits_b, desc_b = net(batch["image_b"])
        det = detector_loss(logits_a, batch["kp_a"]) + detector_loss(logits_b, batch["kp_b"], batch["valid_b"])
        keypoint_cells = torch.nn.functional.pixel_unshuffle(batch["kp_a"][:, None].float(), 8).sum(1) > 0
        des = descriptor_loss(
            desc_a,
            desc_b,
            batch["corr"],
            batch["corr_valid"],
            self.cfg.descriptor_loss,
            self.cfg.mining,
            generator=self.loss_gen,
            prefer=keypoint_cells,
        )
        total = det + self.cfg.descriptor_weight * des
        out = {"detector": det, "descriptor": des}
        if self.teacher is not None:  # the teacher's heatmap and descriptors on the same (warped) images
            from .data import MEAN, STD

            def raw(x: torch.Tensor) -> torch.Tensor:
                return x * x.new_tensor(STD).view(1, 3, 1, 1) + x.new_tensor(MEAN).view(1, 3, 1, 1)

            teach = keypoint_distillation(
                (logits_a, desc_a), self.teacher(raw(batch["image_a"]))
            ) + keypoint_distillation((logits_b, desc_b), self.teacher(raw(batch["image_b"])))
            out["teacher"] = teach
            total = total + self.cfg.teacher_weight * teach
        return {**out, "total": total}

    def validate(self, modules: dict[str, torch.nn.Module], device: torch.device) -> dict[str, Any] | None:
        if not (self.hpairs or self.ppairs):
            return None
        return validate(self.cfg, modules["model"], self.hpairs, self.ppairs)  # type: ignore[arg-type]

    def epoch_line(self, metrics: dict[str, Any], best: float) -> str:
        return (
            (
                f"MMA@3 {metrics['homography_mma'][3]:.3f}, H acc@3 {metrics['homography_accuracy'][3]:.3f}"
                if "homography_mma" in metrics
                else f"metric {metrics['metric']:.4f}"
            )
            + (f", pose AUC@10 {metrics['pose_auc'][10]:.3f}" if "pose_auc" in metrics else "")
            + f" (best {best:.3f})"
        )


def train_matching(cfg: MatchTrainConfig, resume: bool = False, progress: bool = True) -> dict[str, Any]:
    """Train the keypoint network with the one loop (``trainer.fit``)."""
    return fit(MatchingTask(cfg, progress), resume, progress)


def load_matching_checkpoint(path: Path | str) -> tuple[KeypointNet, MatchTrainConfig, dict]:
    ck = torch.load(path, map_location="cpu", weights_only=True)
    c = dict(ck["config"])
    c["input_size"] = tuple(c["input_size"])
    cfg = MatchTrainConfig(**c)
    net = build_net(cfg)
    net.load_state_dict(ck["model"])
    return net.eval(), cfg, ck.get("metrics", {})

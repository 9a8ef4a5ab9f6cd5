"""Depth + pose training: self-supervised from monocular video (Monodepth2's recipe, see
``models/depth_losses.py``), supervised where the data has ground-truth depth (the synthetic sets),
or both at once — supervised synthetic sequences give the network metric scale while the robot's
own bags (no labels) adapt it to the robot's camera and world.

    perception-models train --task depth --data synth/driving_1000 ... --val synth/driving_9000 --out runs/depth
    perception-models train --task depth --bag robot.mcap --topic /camera/image_raw --val ... --out runs/depth_robot \\
        --init runs/depth/best.pt

A task of the one training loop (``trainer.py``). Validation each epoch on sets with ground truth:
depth errors (absolute and median-scaled, ``metrics/depth.py``) and the trajectory chained from the
pose network (ATE with SE(3) and Sim(3) alignment, ``metrics/odometry.py``). ``best.pt`` keeps the
lowest AbsRel (absolute when the run is supervised, median-scaled when it is not).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..metrics.depth import DepthEvaluator
from ..models.depth import DepthConfig, DepthNet, PoseNet, canonical_factor, disp_to_depth
from ..models.depth_losses import reprojection_loss, silog_loss, smoothness_loss, ssi_loss
from ..models.geometry import warp
from .data import MEAN, STD
from .depth_data import (
    Sequence,
    TripletDataset,
    cache_inputs,
    frame_tensor,
    input_K,
    load_bag_sequence,
    load_synthetic_sequence,
    read_camera_matrix,
)
from .trainer import TrainTask, fit, to_device


@dataclass
class DepthTrainConfig:
    data: list[str] = field(default_factory=list)  # synthetic sequence folders (ground truth used if supervised > 0)
    bags: list[str] = field(default_factory=list)  # rosbag2 files/folders: self-supervised only
    topic: str = "/camera/image_raw"
    camera_info: str = ""  # ROS camera_info YAML when the bag has no CameraInfo
    val: list[str] = field(default_factory=list)
    out: str = "runs/depth"
    epochs: int = 20
    batch_size: int = 6
    lr: float = 5e-4
    weight_decay: float = 0.0
    warmup_steps: int = 100
    input_size: tuple[int, int] = (192, 256)
    min_depth: float = 0.1
    max_depth: float = 100.0
    eval_max_depth: float = 60.0  # synthetic depth PNGs stop at 65.5 m
    supervised: float = 1.0  # weight of the scale-invariant log loss where ground truth exists (0: none)
    supervised_per_image: bool = False  # that loss averaged over images, not pooled over pixels (sparse references)
    photometric: float = 1.0  # weight of the reprojection loss (0: supervised only)
    smoothness: float = 1e-3
    canonical_focal: float = 0.0  # > 0: predict depth for this focal length (pixels at input_size); 0: as seen
    scales: tuple[int, ...] = (0, 1, 2, 3)
    automask: bool = True
    mask_moving: bool = True  # drop pixels on objects flagged as moving (synthetic sets)
    frame_stride: int = 1
    seed: int = 0
    workers: int = 0
    log_every: int = 10
    max_steps_per_epoch: int = 0
    augment: bool = True
    zoom: float = 1.0  # > 1: with probability p_zoom a triplet is cut to 1/z of the frame, z in [1, zoom]
    p_zoom: float = 0.5
    init: str = ""  # checkpoint, or the exported depth .onnx (its pose .onnx beside it)
    cache_images: bool = False  # decode every training frame once, at the network size
    device: str = "auto"
    time_budget_min: float = 0.0
    ema: float = 0.0  # > 0: decay of the weights' moving average (trainer.WeightAverage)
    # a relative-depth teacher (card family relative-depth: Depth Anything, MiDaS ...) and the weight
    # of the scale-and-shift-invariant loss against its inverse depth (train/relative_teacher.py)
    relative_teacher: str = ""
    relative_weight: float = 0.5
    real_repeat: int = 1  # times each bag's triplets come per epoch (a short real recording beside many renders)

    @property
    def metric_name(self) -> str:
        return "abs_rel" if self.supervised > 0 else "abs_rel_median_scaled"


def _norm(x: torch.Tensor) -> torch.Tensor:
    return (x - x.new_tensor(MEAN).view(1, 3, 1, 1)) / x.new_tensor(STD).view(1, 3, 1, 1)


def load_sequences(cfg: DepthTrainConfig, folders: list[str], with_bags: bool) -> list[Sequence]:
    seqs = [load_synthetic_sequence(Path(d)) for d in folders]
    if with_bags:
        K = read_camera_matrix(cfg.camera_info)[0] if cfg.camera_info else None
        bags = [load_bag_sequence(Path(b), cfg.topic, K) for b in cfg.bags]
        seqs += bags * max(1, cfg.real_repeat)  # the same frames in memory, listed again
    return seqs


def depth_losses(
    cfg: DepthTrainConfig, depth_net: DepthNet, pose_net: PoseNet, batch: dict[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    color, aug, K = batch["color"], batch["color_aug"], batch["K"]
    prev, target, nxt = color[:, 0], color[:, 1], color[:, 2]
    disps = depth_net(_norm(aug[:, 1]))
    if cfg.photometric > 0:  # the pose network only serves the reprojection
        T_prev_target = pose_net(_norm(aug[:, 0]), _norm(aug[:, 1]))
        T_next_target = torch.linalg.inv(pose_net(_norm(aug[:, 1]), _norm(aug[:, 2])))
    h, w = target.shape[-2:]
    focal = canonical_factor(K, cfg.canonical_focal)  # canonical camera -> this one (ones when off)

    def full_depth(disp: torch.Tensor) -> torch.Tensor:  # metric depth of these cameras at the input size
        return (
            disp_to_depth(
                F.interpolate(disp, size=(h, w), mode="bilinear", align_corners=False), cfg.min_depth, cfg.max_depth
            )
            * focal
        )

    static = batch["static"] if cfg.mask_moving else None
    photo = target.new_zeros(())
    smooth = target.new_zeros(())
    sup = target.new_zeros(())
    for s in cfg.scales:
        disp = disps[s]
        if cfg.photometric > 0:
            depth = full_depth(disp)
            warped = [warp(prev, depth, T_prev_target, K)[0], warp(nxt, depth, T_next_target, K)[0]]
            loss, _used = reprojection_loss(target, warped, [prev, nxt], cfg.automask, static)
            photo = photo + loss / len(cfg.scales)
            small = F.interpolate(target, size=disp.shape[-2:], mode="area") if s else target
            smooth = smooth + smoothness_loss(disp, small) / (2**s) / len(cfg.scales)
    relative = target.new_zeros(())
    if cfg.relative_teacher and cfg.relative_weight > 0 and "relative" in batch:  # teacher up to scale and shift
        relative = ssi_loss(1.0 / full_depth(disps[0]), batch["relative"])
    has_gt = torch.isfinite(batch["depth"]).flatten(1).any(1)
    if cfg.supervised > 0 and bool(has_gt.any()):
        depth0 = full_depth(disps[0])
        gt = batch["depth"][has_gt]
        gt = torch.where(gt <= cfg.max_depth, gt, torch.full_like(gt, float("nan")))
        sup = silog_loss(depth0[has_gt], gt, per_image=cfg.supervised_per_image)
    total = cfg.photometric * photo + cfg.smoothness * smooth + cfg.supervised * sup + cfg.relative_weight * relative
    out = {"photometric": photo, "smoothness": smooth, "supervised": sup, "total": total}
    if cfg.relative_teacher:
        out["relative"] = relative
    return out


def chain(relative: list[np.ndarray]) -> np.ndarray:
    """T_prev_cur per step -> poses (N + 1, 4, 4) of each frame in the first one's frame."""
    poses = [np.eye(4)]
    for T in relative:
        poses.append(poses[-1] @ T)
    return np.stack(poses)


@torch.no_grad()
def evaluate_depth(
    cfg: DepthTrainConfig,
    depth_net: DepthNet,
    pose_net: PoseNet,
    folders: list[str],
    device: torch.device | None = None,
) -> dict[str, Any]:
    """Depth errors on every frame of ``folders`` and the pose network's trajectory per sequence."""
    from ..data.readers.depth import read_nyu_depth
    from ..data.readers.tum import read_tum_trajectory
    from ..metrics.odometry import trajectory_errors

    depth_net.eval()
    pose_net.eval()
    ev = DepthEvaluator(cfg.min_depth, cfg.eval_max_depth)
    traj: list[dict] = []
    for folder in folders:
        seq = load_synthetic_sequence(Path(folder))
        h, w = seq.size
        K_in = torch.as_tensor(input_K(seq, cfg.input_size), dtype=torch.float32, device=device or "cpu")[None]
        rel, prev_in = [], None
        for t in range(len(seq.frames)):
            x = _norm(frame_tensor(seq, t, cfg.input_size).to(device or "cpu"))
            depth = depth_net.depth(x, K_in).cpu()
            if seq.depth:
                pred = F.interpolate(depth, size=(h, w), mode="bilinear", align_corners=False)[0, 0].numpy()
                ev.add(read_nyu_depth(seq.depth[t]), pred)
            if prev_in is not None:
                rel.append(pose_net(prev_in, x)[0].double().cpu().numpy())
            prev_in = x
        traj_file = Path(folder) / "trajectory_tum.txt"
        if traj_file.is_file() and len(rel) >= 2:
            times, gt = read_tum_trajectory(traj_file)
            est = chain(rel)
            gt_rel = np.linalg.inv(gt[0]) @ gt  # both start at the identity
            row = {"sequence": Path(folder).name}
            for align in ("se3", "sim3"):
                e = trajectory_errors(times, est, gt_rel, align=align)
                row[f"ate_{align}_percent"] = e["ate_percent_of_path"]
                row[f"ate_{align}_m"] = e["ate_rmse_m"]
            row["path_length_m"] = e["path_length_m"]
            traj.append(row)
    out: dict[str, Any] = ev.summary()
    out["abs_rel"] = out["absolute"]["abs_rel"]
    out["abs_rel_median_scaled"] = out["median_scaled"]["abs_rel"]
    out["a1"] = out["absolute"]["a1"]
    out["a1_median_scaled"] = out["median_scaled"]["a1"]
    out["trajectories"] = traj
    if traj:
        out["ate_se3_percent"] = float(np.mean([r["ate_se3_percent"] for r in traj]))
        out["ate_sim3_percent"] = float(np.mean([r["ate_sim3_percent"] for r in traj]))
    out["metric"] = out[cfg.metric_name]
    depth_net.train()
    pose_net.train()
    return out


def build_depth_models(cfg: DepthTrainConfig) -> tuple[DepthNet, PoseNet]:
    return DepthNet(
        DepthConfig(tuple(cfg.input_size), cfg.min_depth, cfg.max_depth, canonical_focal=cfg.canonical_focal)
    ), PoseNet()


class DepthTask(TrainTask):
    """Depth + pose networks: photometric reprojection, smoothness and (where ground truth
    exists) the scale-invariant log loss; ``best.pt`` keeps the lowest AbsRel."""

    name = "depth"
    lower_is_better = True

    def check(self) -> None:
        cfg = self.cfg
        if not cfg.data and not cfg.bags:
            raise ValueError("depth training needs --data (synthetic sequences) and/or --bag")
        if cfg.supervised <= 0 and cfg.photometric <= 0 and not (cfg.relative_teacher and cfg.relative_weight > 0):
            raise ValueError(
                "depth training needs a loss: --supervised and --photometric are both 0 (and no --relative-teacher)"
            )
        if not cfg.canonical_focal >= 0:
            raise ValueError(
                f"--canonical-focal must be >= 0 (pixels at the input size; 0: off), got {cfg.canonical_focal}"
            )
        if not cfg.zoom >= 1.0:
            raise ValueError(f"--depth-zoom must be >= 1 (1: off), got {cfg.zoom}")
        if any(s % 32 for s in cfg.input_size):
            raise ValueError(f"input size {cfg.input_size} must be multiples of 32")
        if cfg.val:  # the validation's trajectory errors need evo: fail now, not after the first epoch
            import importlib.util

            if importlib.util.find_spec("evo") is None:
                raise ValueError(
                    "--val needs the evo package for the trajectory errors (pip install evo), or train without --val"
                )

    def build(self, device: torch.device, rank: int):
        cfg = self.cfg
        sequences = load_sequences(cfg, cfg.data, with_bags=True)
        if cfg.cache_images and rank == 0:
            print(
                "cached the training frames at the network size: "
                f"{cache_inputs(sequences, cfg.input_size) / 2**20:.0f} MiB"
            )
        elif cfg.cache_images:
            cache_inputs(sequences, cfg.input_size)
        if cfg.relative_teacher:  # one pass of the teacher over the footage, cached for every epoch
            from .relative_teacher import cache_teacher

            done = cache_teacher(
                cfg.relative_teacher, sequences, tuple(cfg.input_size), Path(cfg.out) / "relative_teacher", rank == 0
            )
            if rank == 0:
                print(
                    f"relative-depth teacher: {done['frames_run']} frames run, {done['frames_cached']} from the cache"
                )
        self.train_set = TripletDataset(
            sequences, cfg.input_size, cfg.augment, cfg.seed, cfg.frame_stride, cfg.zoom, cfg.p_zoom
        )
        self.depth_net, self.pose_net = (m.to(device) for m in build_depth_models(cfg))
        return self.train_set, {"depth": self.depth_net, "pose": self.pose_net}

    def initialise(self, device: torch.device, rank: int) -> str:
        cfg = self.cfg
        if cfg.init.endswith(".onnx"):
            return init_from_onnx(cfg, self.depth_net, self.pose_net, self.train_set, device)
        ck = torch.load(cfg.init, map_location="cpu", weights_only=True)
        if "depth" not in ck:
            raise ValueError(f"--init {cfg.init}: not a depth checkpoint (no 'depth' weights)")
        self.depth_net.load_state_dict(ck["depth"])
        self.pose_net.load_state_dict(ck["pose"])
        return f"initialised from {cfg.init} (epoch {ck.get('epoch')}, best {ck.get('best')})"

    def set_epoch(self, epoch: int) -> None:
        self.train_set.epoch = epoch

    def loss(self, nets: dict[str, torch.nn.Module], batch: Any) -> dict[str, torch.Tensor]:
        return depth_losses(self.cfg, nets["depth"], nets["pose"], batch)  # type: ignore[arg-type]

    def validate(self, modules: dict[str, torch.nn.Module], device: torch.device) -> dict[str, Any] | None:
        if not self.cfg.val:
            return None
        return evaluate_depth(self.cfg, modules["depth"], modules["pose"], self.cfg.val, device)  # type: ignore[arg-type]

    def epoch_line(self, metrics: dict[str, Any], best: float) -> str:
        ate = f", ATE {metrics['ate_sim3_percent']:.2f} % (Sim(3))" if "ate_sim3_percent" in metrics else ""
        return f"{self.cfg.metric_name} {metrics['metric']:.4f} (best {best:.4f}){ate}"


def train_depth(cfg: DepthTrainConfig, resume: bool = False, progress: bool = True) -> dict[str, Any]:
    """Train the depth and pose networks with the one loop (``trainer.fit``)."""
    return fit(DepthTask(cfg), resume, progress)


def init_from_onnx(
    cfg: DepthTrainConfig, depth_net: DepthNet, pose_net: PoseNet, train_set: TripletDataset, device: torch.device
) -> str:
    """Both networks from an exported pair (``cfg.init`` = the depth .onnx; the pose network is the
    file its card names, else ``pose.onnx`` beside it), BatchNorms calibrated on training triplets.
    A canonical-camera model's ``canonical_focal`` is kept unless the configuration sets one.
    The export's metric scale factor is a constant outside the weights: supervision re-learns it."""
    import yaml
    from perception_nodes.model_card import card_path

    from ..onnx_weights import calibrate_batchnorm, load_onnx_weights

    depth_path = Path(cfg.init)
    card = card_path(depth_path)
    depth_card = ((yaml.safe_load(card.read_text()) or {}).get("depth") or {}) if card.is_file() else {}
    pose_name = depth_card.get("pose_model")
    canonical = float(depth_card.get("canonical_focal") or 0.0)
    adopted = ""
    if canonical > 0 and cfg.canonical_focal == 0:  # keep what the model's output means
        cfg.canonical_focal = depth_net.cfg.canonical_focal = canonical
        adopted = f"; depth for its card's canonical focal length {canonical} px"
    pose_path = depth_path.with_name(pose_name or "pose.onnx")
    loaded = load_onnx_weights(depth_net, depth_path, strict=False)  # the export keeps the finest head only
    n_depth, missing = loaded["convs"], loaded["missing"]
    if any(not m.startswith("decoder.heads.") for m in missing):
        raise ValueError(f"--init {depth_path}: no weights for {missing}")
    n_pose = load_onnx_weights(pose_net, pose_path)["convs"]
    batches = [to_device(train_set[i]["color"], device) for i in range(min(len(train_set), 64))]
    calibrate_batchnorm(
        depth_net, [_norm(torch.stack([c[1] for c in batches[k : k + 8]])) for k in range(0, len(batches), 8)]
    )
    calibrate_batchnorm(
        pose_net,
        [
            (
                _norm(torch.stack([c[0] for c in batches[k : k + 8]])),
                _norm(torch.stack([c[1] for c in batches[k : k + 8]])),
            )
            for k in range(0, len(batches), 8)
        ],
        forward=lambda m, b: m(*b),
    )
    return (
        f"initialised from {depth_path} ({n_depth} convolutions; not in the export, left as initialised: {missing}) "
        f"and {pose_path} ({n_pose}); BatchNorms calibrated on {len(batches)} triplets{adopted}"
    )


def load_depth_checkpoint(path: Path | str) -> tuple[DepthNet, PoseNet, DepthTrainConfig, dict]:
    ck = torch.load(path, map_location="cpu", weights_only=True)
    if "depth" not in ck:
        raise ValueError(f"{path}: not a depth checkpoint")
    c = dict(ck["config"])
    c["input_size"] = tuple(c["input_size"])
    c["scales"] = tuple(c["scales"])
    cfg = DepthTrainConfig(**c)
    depth_net, pose_net = build_depth_models(cfg)
    depth_net.load_state_dict(ck["depth"])
    pose_net.load_state_dict(ck["pose"])
    return depth_net.eval(), pose_net.eval(), cfg, ck.get("metrics", {})

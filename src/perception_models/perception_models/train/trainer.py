"""The one training loop: every task (detection, segmentation, depth + pose, matching, and the
distillation runs) is a small :class:`TrainTask` — its data, its networks, the loss of a batch, its
validation — and :func:`fit` does the rest the same way for all of them:

- deterministic: seeds for torch/numpy/python and per-sample augmentation streams
  (``seed, epoch, index``); the same command gives the same losses on the same machine;
- progress bar per epoch; ``log.jsonl`` with one line per logging step and one per validation
  (``perception-models plot RUN`` draws the curves);
- checkpoints ``last.pt`` (every epoch, resumable with ``--resume``) and ``best.pt`` (best
  validation metric; every epoch when the task has no validation set);
- runs on a GPU when one is there (``--device auto``); several GPUs: launch with
  ``torchrun --nproc_per_node N -m perception_models.cli train ...``; DistributedDataParallel and a
  distributed sampler are used when ``WORLD_SIZE`` > 1; validation and checkpoints are rank 0's;
- ``--time-budget-min M``: the number of steps is fitted to M minutes of wall time from the rate
  measured over the first steps (logged as ``planned_steps``); the cosine schedule then runs to
  that step, so a run on a lent GPU ends its schedule before the machine goes back;
- ``--ema D``: validate, keep (``best.pt``) and export an exponential moving average of the
  weights instead of the last step's weights (:class:`WeightAverage`); the raw weights stay in the
  checkpoints (``train_<name>``) for ``--resume``.

The tasks: ``image_task.py`` (detection, segmentation), ``depth_task.py`` (depth + pose),
``matching_task.py`` (keypoints + descriptors); ``distill.py`` trains a detection task on a
teacher's labels.
"""

from __future__ import annotations

import copy
import json
import math
import os
import random
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

PROBE_STEPS = (20, 60)  # steps between which the time budget measures the rate


class TrainTask:
    """What a task gives the loop. ``cfg`` is the task's dataclass; the loop reads the fields every
    configuration has: out, epochs, batch_size, lr, weight_decay, warmup_steps, seed, workers,
    log_every, max_steps_per_epoch, init, device, time_budget_min, ema."""

    name = "task"
    lower_is_better = False  # the validation metric (``metrics["metric"]``)
    collate: Any = None  # the DataLoader's collate_fn
    unlogged: tuple[str, ...] = ()  # validation results too large for log.jsonl

    def __init__(self, cfg: Any) -> None:
        self.cfg = cfg

    def check(self) -> None:
        """Refuse a configuration before anything is built (ValueError naming the option)."""

    def build(self, device: torch.device, rank: int) -> tuple[Dataset, dict[str, torch.nn.Module]]:
        """The training set and the networks (checkpoint key -> module, on ``device``)."""
        raise NotImplementedError

    def initialise(self, device: torch.device, rank: int) -> str:
        """Start from ``cfg.init`` (a checkpoint or an exported ONNX); a line saying what was loaded."""
        return ""

    def set_epoch(self, epoch: int) -> None:
        """Datasets draw their augmentation from (seed, epoch, index)."""

    def loss(self, nets: dict[str, torch.nn.Module], batch: Any) -> dict[str, torch.Tensor]:
        """Losses of a batch (on the device) with ``total`` among them; ``nets`` are the modules
        of :meth:`build`, wrapped for data parallelism when there are several processes."""
        raise NotImplementedError

    def validate(self, modules: dict[str, torch.nn.Module], device: torch.device) -> dict[str, Any] | None:
        """Metrics with ``metric`` among them (None: no validation data; best.pt is then every epoch)."""
        return None

    def epoch_line(self, metrics: dict[str, Any], best: float) -> str:
        return f"metric {metrics['metric']:.4f} (best {best:.4f})"


def resolve_device(name: str) -> torch.device:
    """``auto``: the GPU of this process (``LOCAL_RANK`` under torchrun) when CUDA works, else the CPU."""
    if name == "auto":
        if not torch.cuda.is_available():
            return torch.device("cpu")
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device '{name}': CUDA is not available here (use --device cpu or auto)")
    return dev


def to_device(batch: Any, device: torch.device) -> Any:
    """Tensors of a batch (tensors, lists, dicts of them) onto ``device``."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {k: to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(to_device(v, device) for v in batch)
    return batch


class WeightAverage:
    """Exponential moving average of a model's weights and BatchNorm statistics (Polyak averaging,
    as YOLOv5's ModelEMA): after step n, ``avg = d * avg + (1 - d) * weights`` with
    ``d = min(decay, (1 + n) / (10 + n))`` (TensorFlow's ``num_updates``), so the average spans about
    the last n / 9 steps until that reaches ``1 / (1 - decay)`` (0.999: 1000 steps, after ~9000).
    One epoch's weights differ from the next by the noise of its last batches; the average much
    less, so checkpoints chosen by validation are less a draw of that noise. Integer buffers
    (BatchNorm's batch counts) are copied."""

    def __init__(self, model: torch.nn.Module, decay: float) -> None:
        self.decay = decay
        self.module = copy.deepcopy(model).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: torch.nn.Module, step: int) -> None:
        d = min(self.decay, (1 + step) / (10 + step))
        for avg, w in zip(self.module.state_dict().values(), model.state_dict().values()):
            if avg.dtype.is_floating_point:
                avg.mul_(d).add_(w.detach(), alpha=1.0 - d)
            else:
                avg.copy_(w)


class StepPlan:
    """How many steps a run makes: ``epochs * steps_per_epoch``, or, with a time budget, as many as
    the rate measured between ``PROBE_STEPS`` fits in the budget (decided once, then fixed)."""

    def __init__(self, steps_per_epoch: int, epochs: int, budget_min: float) -> None:
        self.steps_per_epoch, self.budget_s = steps_per_epoch, budget_min * 60.0
        self.total = steps_per_epoch * epochs
        self.t_start = time.monotonic()
        self._t_probe: float | None = None
        self.decided = budget_min <= 0

    def after_step(self, run_step: int, step: int) -> dict[str, Any] | None:
        """Called after each step with the steps this run has made and the global step; returns the
        plan when it is decided; past the budget, ends the run at ``step``."""
        if self.decided:
            if self.out_of_time():
                self.total = min(self.total, step)
            return None
        if run_step == PROBE_STEPS[0]:
            self._t_probe = time.monotonic()
        if run_step == PROBE_STEPS[1] and self._t_probe is not None:
            now = time.monotonic()
            rate = (PROBE_STEPS[1] - PROBE_STEPS[0]) / max(now - self._t_probe, 1e-6)
            left = self.budget_s - (now - self.t_start)
            # validation passes cost time too: keep 15 % of the remaining budget for them
            self.total = min(self.total, max(run_step + 1, run_step + int(rate * left * 0.85)))
            self.decided = True
            return {
                "kind": "plan",
                "steps_per_second": rate,
                "planned_steps": self.total,
                "budget_minutes": self.budget_s / 60.0,
            }
        return None

    def resumed(self) -> None:
        """A resumed run makes the steps its ``--epochs`` say; the budget was the first run's."""
        self.decided, self.budget_s = True, 0.0

    def out_of_time(self) -> bool:
        """Past the budget (the measured rate was too optimistic): the run ends at this step."""
        return self.budget_s > 0 and time.monotonic() - self.t_start > self.budget_s

    def epochs(self) -> int:
        return max(1, math.ceil(self.total / self.steps_per_epoch))


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)


def _distributed() -> tuple[int, int]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not torch.distributed.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        torch.distributed.init_process_group(backend)
    return (torch.distributed.get_rank() if world > 1 else 0), world


def lr_at(step: int, total: int, cfg: Any) -> float:
    """Linear warm-up over ``cfg.warmup_steps``, then a cosine from ``cfg.lr`` to 0 at ``total``."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    p = (step - cfg.warmup_steps) / max(1, total - cfg.warmup_steps)
    return cfg.lr * 0.5 * (1 + math.cos(math.pi * min(1.0, p)))


def resume_from(
    last: Path,
    models: dict[str, torch.nn.Module],
    opt: torch.optim.Optimizer,
    gen: torch.Generator,
    default_best: float,
) -> tuple[int, int, float]:
    """Load ``last.pt`` into ``models`` (checkpoint key -> module), the optimizer and the RNGs;
    returns (first epoch to run, step, best metric so far)."""
    if not last.is_file():
        raise FileNotFoundError(f"--resume: no checkpoint {last}")
    ck = torch.load(last, map_location="cpu", weights_only=True)
    saved = ck.get("modules", [k for k in models if k in ck])
    if sorted(saved) != sorted(models):
        raise ValueError(
            f"--resume: {last} holds the weights {sorted(saved)}, this run trains {sorted(models)} "
            "(resume with the options it was started with, e.g. --ema)"
        )
    for key, module in models.items():
        module.load_state_dict(ck[key])
    opt.load_state_dict(ck["optimizer"])
    torch.set_rng_state(ck["torch_rng"])
    gen.set_state(ck["loader_rng"])
    return ck["epoch"] + 1, ck["step"], ck.get("best", default_best)


def optimizer_step(opt: torch.optim.Optimizer, params: Any, loss: torch.Tensor, lr: float, clip: float = 10.0) -> None:
    """One update at learning rate ``lr`` with gradient-norm clipping."""
    for g in opt.param_groups:
        g["lr"] = lr
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(params, clip)
    opt.step()


def checkpoint_epoch(
    out: Path,
    modules: dict[str, torch.nn.Module],
    opt: torch.optim.Optimizer,
    gen: torch.Generator,
    cfg: Any,
    epoch: int,
    step: int,
    metrics: dict[str, Any],
    best: float,
    lower_is_better: bool = False,
    best_without_validation: bool = False,
) -> float:
    """Write ``last.pt`` (resumable: weights, optimizer, RNGs) and ``best.pt`` when the validation
    metric improved (or every epoch when there is no validation); returns the best metric."""
    m = metrics["metric"]
    improved = bool(np.isfinite(m) and (m < best if lower_is_better else m > best))
    best = m if improved else best
    ck = {
        **{k: v.state_dict() for k, v in modules.items()},
        "modules": list(modules),
        "optimizer": opt.state_dict(),
        "epoch": epoch,
        "step": step,
        "best": best,
        "config": asdict(cfg),
        "metrics": metrics,
        "torch_rng": torch.get_rng_state(),
        "loader_rng": gen.get_state(),
    }
    torch.save(ck, out / "last.pt")
    if improved or best_without_validation:
        torch.save(ck, out / "best.pt")
    return best


def fit(task: TrainTask, resume: bool = False, progress: bool = True) -> dict[str, Any]:
    """Train ``task``; returns the last validated epoch: ``{epoch, metric, best, metrics}``."""
    from tqdm import tqdm

    cfg = task.cfg
    if not 0.0 <= cfg.ema < 1.0:
        raise ValueError(f"ema {cfg.ema} must be 0 (off) or a decay in (0, 1), e.g. 0.999")
    task.check()
    rank, world = _distributed()
    seed_everything(cfg.seed)
    device = resolve_device(cfg.device)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    train_set, models = task.build(device, rank)
    if cfg.init and not resume:
        line = task.initialise(device, rank)
        if line and rank == 0:
            print(line)
    # the weights that are validated, kept as best.pt and exported: the averages when there are
    averages = {k: WeightAverage(m, cfg.ema) for k, m in models.items()} if cfg.ema > 0 else {}
    evaluated = {k: a.module for k, a in averages.items()} or models
    saved = {**evaluated, **{f"train_{k}": m for k, m in models.items()}} if averages else models
    nets = models
    if world > 1:
        ids = [device.index] if device.type == "cuda" else None
        nets = {k: torch.nn.parallel.DistributedDataParallel(m, device_ids=ids) for k, m in models.items()}
    sampler = torch.utils.data.DistributedSampler(train_set, world, rank, seed=cfg.seed) if world > 1 else None
    gen = torch.Generator().manual_seed(cfg.seed)
    loader = DataLoader(
        train_set,
        cfg.batch_size,
        shuffle=sampler is None,
        sampler=sampler,
        generator=gen,
        num_workers=cfg.workers,
        collate_fn=task.collate,
        drop_last=len(train_set) > cfg.batch_size,  # type: ignore[arg-type]
        pin_memory=device.type == "cuda",
        persistent_workers=cfg.workers > 0,
    )
    params = [p for m in models.values() for p in m.parameters()]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps_per_epoch = len(loader) if not cfg.max_steps_per_epoch else min(len(loader), cfg.max_steps_per_epoch)
    plan = StepPlan(steps_per_epoch, cfg.epochs, cfg.time_budget_min if world == 1 else 0.0)
    worst = float("inf") if task.lower_is_better else -1.0
    start_epoch, step, best = 0, 0, worst
    if resume:
        start_epoch, step, best = resume_from(out / "last.pt", saved, opt, gen, worst)
        plan.resumed()
    log = open(out / "log.jsonl", "a") if rank == 0 else None

    def write(entry: dict[str, Any]) -> None:
        if log is not None:
            log.write(json.dumps(entry) + "\n")
            log.flush()

    result: dict[str, Any] = {}
    run_steps = 0
    try:
        epoch = start_epoch
        while epoch < plan.epochs() and step < plan.total:
            task.set_epoch(epoch)
            if sampler is not None:
                sampler.set_epoch(epoch)
            for m in models.values():
                m.train()
            bar = tqdm(
                loader,
                total=steps_per_epoch,
                desc=f"{task.name} epoch {epoch + 1}/{plan.epochs()}",
                disable=not progress or rank != 0,
                unit="batch",
            )
            t0 = time.monotonic()
            for b, batch in enumerate(bar):
                if b >= steps_per_epoch or step >= plan.total:
                    break
                losses = task.loss(nets, to_device(batch, device))
                optimizer_step(opt, params, losses["total"], lr_at(step, plan.total, cfg))
                step += 1
                for k, avg in averages.items():
                    avg.update(models[k], step)
                run_steps += 1
                decided = plan.after_step(run_steps, step)
                cfg.epochs = plan.epochs()  # what the checkpoints and the card record
                if decided is not None:
                    write({**decided, "step": step})
                    if progress and rank == 0:
                        print(
                            f"time budget: {decided['steps_per_second']:.2f} steps/s -> "
                            f"{decided['planned_steps']} steps"
                        )
                values = {k: float(v.detach()) for k, v in losses.items()}
                bar.set_postfix(loss=f"{values['total']:.3f}")
                if step % cfg.log_every == 0 or b == steps_per_epoch - 1:
                    write({"kind": "train", "epoch": epoch, "step": step, "lr": opt.param_groups[0]["lr"], **values})
            if rank != 0:  # validation and checkpoints are rank 0's; every rank moves on an epoch
                epoch += 1
                continue
            metrics = task.validate(evaluated, device)
            validated = metrics is not None
            metrics = metrics if validated else {"metric": float("nan")}
            for m in evaluated.values():  # a validation may leave them in train mode
                m.eval() if averages else m.train()
            write(
                {
                    "kind": "val",
                    "epoch": epoch,
                    "step": step,
                    "seconds": time.monotonic() - t0,
                    **{k: v for k, v in metrics.items() if k not in task.unlogged},
                }
            )
            best = checkpoint_epoch(
                out,
                saved,
                opt,
                gen,
                cfg,
                epoch,
                step,
                metrics,
                best,
                lower_is_better=task.lower_is_better,
                best_without_validation=not validated,
            )
            result = {"epoch": epoch, "metric": metrics["metric"], "best": best, "metrics": metrics}
            if progress:
                print(f"epoch {epoch + 1}: {task.epoch_line(metrics, best)}")
            epoch += 1
    finally:
        if log is not None:
            log.close()
    return result


def plot_log(run: Path | str, out: Path | str | None = None) -> Path:
    """Training loss and validation metric curves of a run folder as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    run = Path(run)
    rows = [json.loads(ln) for ln in (run / "log.jsonl").read_text().splitlines() if ln.strip()]
    tr = [r for r in rows if r["kind"] == "train"]
    va = [r for r in rows if r["kind"] == "val"]
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    for key in sorted({k for r in tr for k in r} - {"kind", "epoch", "step", "lr"}):
        a.plot([r["step"] for r in tr], [r[key] for r in tr], label=key)
    a.set_xlabel("step")
    a.set_ylabel("loss")
    a.set_yscale("log")
    a.legend()
    b.plot([r["epoch"] + 1 for r in va], [r["metric"] for r in va], marker="o")
    b.set_xlabel("epoch")
    b.set_ylabel("validation metric")
    b.grid(True)
    fig.tight_layout()
    path = Path(out) if out else run / "curves.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path

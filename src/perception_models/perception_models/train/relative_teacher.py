"""A relative-depth teacher's inverse depth for every training frame, computed once and cached on
disk (``<out>/relative_teacher/<sequence>.npy``, one (frames, H, W) float16 array per sequence at
the student's input size): the depth trainer's scale-and-shift-invariant loss (``ssi_loss``)
reads it every epoch without running the teacher again.

The teacher is any relative-depth model the depth node runs (card family ``relative-depth``:
Depth Anything, MiDaS ... through ``perception-models card --onnx``), run by the node's own
DepthPipeline with ONNX Runtime. A sequence whose file is there is not run again (a cache left by
an interrupted pass is resumed: each file is written under a temporary name and renamed when
complete); a file made by another teacher or at another size is refused by its side record.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .depth_data import Sequence, network_input


def teacher_pipeline(model: str | Path, threads: int = 2):
    from perception_nodes.backends import OnnxRuntimeBackend
    from perception_nodes.model_card import load_card, model_files
    from perception_nodes.pipelines.depth import DepthPipeline

    card = load_card(model, "depth")
    if card.family != "relative-depth":
        raise ValueError(
            f"--relative-teacher {model}: a {card.family} depth model; the teacher must be a relative-depth "
            "model (card family relative-depth)"
        )
    return DepthPipeline(OnnxRuntimeBackend(model_files(model)[0], threads=threads), card), card


def cache_teacher(
    model: str | Path, sequences: list[Sequence], size: tuple[int, int], folder: Path, progress: bool = True
) -> dict[str, int]:
    """Run the teacher over every frame not yet cached; attach each sequence's array as
    ``seq.relative``. Returns {"frames_run": ..., "frames_cached": ...}."""
    from tqdm import tqdm

    pipe, card = teacher_pipeline(model)
    folder.mkdir(parents=True, exist_ok=True)
    record = {"teacher_sha256": card.sha256, "size": list(size)}
    todo = []
    cached = 0
    names = {id(seq): f"{i:04d}_{seq.name}" for i, seq in enumerate(sequences)}  # two folders may share a name
    for seq in sequences:
        path, side = folder / f"{names[id(seq)]}.npy", folder / f"{names[id(seq)]}.json"
        if path.is_file() and side.is_file():
            if json.loads(side.read_text()) != {**record, "frames": len(seq.frames)}:
                raise ValueError(f"{path}: cached by another teacher, size or sequence; delete {folder} to rebuild")
            seq.relative = np.load(path, mmap_mode="r")
            cached += len(seq.frames)
        else:
            todo.append(seq)
    run = 0
    bar = tqdm(
        total=sum(len(s.frames) for s in todo), desc="relative-depth teacher", unit="frame", disable=not progress
    )
    for seq in todo:
        out = np.empty((len(seq.frames), *size), np.float16)
        for t in range(len(seq.frames)):
            rel = pipe.run(network_input(seq, t, size)).relative
            out[t] = rel.astype(np.float16)
            run += 1
            bar.update(1)
        name = names[id(seq)]
        tmp = folder / f"{name}.partial.npy"
        np.save(tmp, out)
        tmp.rename(folder / f"{name}.npy")
        (folder / f"{name}.json").write_text(json.dumps({**record, "frames": len(seq.frames)}))
        seq.relative = np.load(folder / f"{name}.npy", mmap_mode="r")
    bar.close()
    return {"frames_run": run, "frames_cached": cached}

"""On-disk cache of TensorRT engines, keyed by everything an engine depends on.

An engine is valid only for the ONNX file, GPU, TensorRT version, precision and input shapes it
was built with (engines serialized by another TensorRT version are the most common pain). The
key is a hash of those fields; the engine lives at ``<cache_dir>/<model>.<key>.engine`` with a
JSON sidecar holding the fields and the engine's own sha256. Looking up a model whose fields
changed names *which* field changed, so the node can log why it rebuilds. No TensorRT import
here: this is tested in CI.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

PRECISIONS = ("fp32", "fp16", "int8")


def sha256_file(path: str | os.PathLike[str], chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


@dataclass(frozen=True)
class EngineKey:
    """What a serialized engine depends on."""

    onnx_sha256: str
    gpu_name: str
    tensorrt_version: str
    precision: str
    input_shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)
    # INT8 only: the calibration cache's hash (another calibration = another engine).
    calibration_sha256: str = ""

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision '{self.precision}' is not one of {PRECISIONS}")

    def to_json(self) -> dict:
        d = asdict(self)
        d["input_shapes"] = {k: list(v) for k, v in sorted(self.input_shapes.items())}
        return d

    @classmethod
    def from_json(cls, d: dict) -> "EngineKey":
        return cls(
            onnx_sha256=str(d["onnx_sha256"]),
            gpu_name=str(d["gpu_name"]),
            tensorrt_version=str(d["tensorrt_version"]),
            precision=str(d["precision"]),
            input_shapes={k: tuple(int(x) for x in v) for k, v in d.get("input_shapes", {}).items()},
            calibration_sha256=str(d.get("calibration_sha256", "")),
        )

    @property
    def digest(self) -> str:
        blob = json.dumps(self.to_json(), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]

    def differences(self, other: "EngineKey") -> list[str]:
        """Human sentences for each field that differs (other = the cached engine's key)."""
        labels = {
            "onnx_sha256": "ONNX model changed (sha256 {theirs:.12} -> {ours:.12})",
            "gpu_name": "engine was built for GPU '{theirs}'; this is '{ours}'",
            "tensorrt_version": "engine was built with TensorRT {theirs}; this is {ours}",
            "precision": "engine precision is {theirs}; {ours} requested",
            "input_shapes": "engine input shapes {theirs}; {ours} requested",
            "calibration_sha256": "INT8 calibration cache changed",
        }
        mine, theirs = self.to_json(), other.to_json()
        return [labels[k].format(ours=mine[k], theirs=theirs[k]) for k in labels if mine[k] != theirs[k]]


@dataclass
class CacheLookup:
    """Result of :meth:`EngineCache.lookup`: a usable engine path, or why it must be built."""

    engine_path: Path
    hit: bool
    reasons: list[str]

    @property
    def message(self) -> str:
        if self.hit:
            return f"using cached engine {self.engine_path}"
        return "building engine: " + "; ".join(self.reasons)


class EngineCache:
    def __init__(self, cache_dir: str | os.PathLike[str]) -> None:
        self.cache_dir = Path(cache_dir).expanduser()

    def paths(self, model_stem: str, key: EngineKey) -> tuple[Path, Path]:
        base = f"{model_stem}.{key.digest}"
        return self.cache_dir / f"{base}.engine", self.cache_dir / f"{base}.json"

    def lookup(self, model_stem: str, key: EngineKey) -> CacheLookup:
        engine, meta = self.paths(model_stem, key)
        if engine.is_file() and meta.is_file():
            try:
                recorded = json.loads(meta.read_text())
            except (OSError, json.JSONDecodeError) as exc:
                return CacheLookup(engine, False, [f"engine metadata {meta} unreadable ({exc})"])
            if recorded.get("engine_sha256") != sha256_file(engine):
                return CacheLookup(engine, False, [f"cached engine {engine} is corrupt (sha256 mismatch)"])
            return CacheLookup(engine, True, [])
        # No exact match: explain against the newest engine of this model, if any.
        reasons: list[str] = []
        others = sorted(self.cache_dir.glob(f"{model_stem}.*.json"), key=lambda p: p.stat().st_mtime)
        for candidate in reversed(others):
            try:
                old = EngineKey.from_json(json.loads(candidate.read_text())["key"])
            except (OSError, KeyError, ValueError, json.JSONDecodeError):
                continue
            reasons = key.differences(old) or [f"cached engine for key {old.digest} missing"]
            break
        if not reasons:
            reasons = [f"no cached engine for '{model_stem}' in {self.cache_dir}"]
        return CacheLookup(engine, False, reasons)

    def store(self, model_stem: str, key: EngineKey, serialized: bytes, build_seconds: float = 0.0) -> Path:
        """Write engine + sidecar atomically (a crash mid-write never leaves a 'valid' engine)."""
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        engine, meta = self.paths(model_stem, key)
        for path, data in (
            (engine, serialized),
            (
                meta,
                json.dumps(
                    {
                        "key": key.to_json(),
                        "engine_sha256": hashlib.sha256(serialized).hexdigest(),
                        "build_seconds": round(build_seconds, 2),
                        "built_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                    },
                    indent=2,
                ).encode(),
            ),
        ):
            fd, tmp = tempfile.mkstemp(dir=self.cache_dir, prefix=".tmp-")
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.replace(tmp, path)
        return engine

"""TensorRT engine cache: keys and the load-or-rebuild rule, with no TensorRT import (unit-tested here).

Key = sha256 of (ONNX content hash, TensorRT version, GPU name, compute capability, precision, workspace),
so a changed model, GPU, TensorRT or precision rebuilds and nothing else does. A cache file that cannot be
deserialised (corrupt, truncated, built by another TensorRT) is rebuilt with a warning, never a crash.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, TypeVar

from ..fileio import atomic_write_bytes

LOG = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True)
class EngineKey:
    onnx_sha256: str
    tensorrt_version: str
    gpu_name: str
    compute_capability: str
    precision: str
    workspace_bytes: int = 0

    def digest(self) -> str:
        text = "|".join([self.onnx_sha256, self.tensorrt_version, self.gpu_name, self.compute_capability,
                         self.precision, str(self.workspace_bytes)])
        return hashlib.sha256(text.encode()).hexdigest()[:24]

    def filename(self, stem: str) -> str:
        return f"{stem}-{self.precision}-sm{self.compute_capability.replace('.', '')}-{self.digest()}.engine"


def load_or_build(path: Path, deserialize: Callable[[bytes], Optional[T]], build: Callable[[], bytes],
                  warn: Callable[[str], None] = LOG.warning) -> T:
    """Deserialise ``path`` if it holds a usable engine, else build, write atomically and deserialise."""
    if path.is_file():
        try:
            engine = deserialize(path.read_bytes())
        except Exception as exc:  # TensorRT raises on some corrupt inputs, returns None on others
            engine, reason = None, repr(exc)
        else:
            reason = "deserialisation returned nothing"
        if engine is not None:
            return engine
        warn(f"engine cache {path} is unusable ({reason}): rebuilding")
        path.unlink(missing_ok=True)
    blob = build()
    atomic_write_bytes(blob, path)
    engine = deserialize(blob)
    if engine is None:
        raise RuntimeError(f"a freshly built engine for {path.name} could not be deserialised")
    return engine

"""TensorRT engine cache: keys, the hash check, and the load-or-rebuild rule, with no TensorRT import (unit-tested
everywhere).

Key = SHA-256 of (graph content hash, TensorRT version, GPU name, compute capability, SM count, memory, precision,
build recipe, int8 calibration source, channel order). A changed model, GPU (Jetson modules share a name and
capability but not their SM count or memory), TensorRT or precision rebuilds and nothing else does; the builder's
workspace limit is not in the key (it changes how fast a build is found, not what the engine computes), so an
engine built by ``ros2-monodepth-export --workspace-mb N`` is found by the node.

Each engine has a sidecar ``<engine>.json`` with its SHA-256, written after the engine: a file that does not
match (truncated, replaced, an interrupted write) is rebuilt with a warning, never loaded and never a crash.

    >>> key = EngineKey("a" * 64, "10.13.0", "Orin", "8.7", 16, 62841, "fp16", "weakly typed, FP16")
    >>> key.filename("depth").startswith("depth-fp16-sm87-")
    True
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Optional

from ..fileio import atomic_write_bytes, atomic_write_text, file_sha256

LOG = logging.getLogger(__name__)


@dataclass(frozen=True)
class EngineKey:
    graph_sha256: str
    tensorrt_version: str
    gpu_name: str
    compute_capability: str
    sm_count: int
    memory_mb: int
    precision: str
    recipe: str
    calibration: str = ""          # int8: where the Q/DQ scales came from
    channel_order: str = "rgb"

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:24]

    def filename(self, stem: str) -> str:
        return f"{stem}-{self.precision}-sm{self.compute_capability.replace('.', '')}-{self.digest()}.engine"


def sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".json")


def engine_problem(path: Path) -> Optional[str]:
    """Why the cached engine at ``path`` cannot be trusted, or None when its SHA-256 matches its sidecar."""
    if not path.is_file():
        return "missing"
    try:
        recorded = json.loads(sidecar(path).read_text()).get("sha256", "")
    except (OSError, ValueError, AttributeError):
        return f"no readable {sidecar(path).name} (an interrupted write?)"
    if file_sha256(path) != recorded:
        return "its SHA-256 differs from the one recorded when it was built (truncated or replaced)"
    return None


def ensure_engine(path: Path, build: Callable[[], bytes], key: Optional[EngineKey] = None,
                  warn: Callable[[str], None] = LOG.warning) -> Path:
    """``path`` when it holds a verified engine; else ``build()`` it, write the engine and then its sidecar (a kill
    between the two leaves an engine without a sidecar, which the next call rebuilds), and return ``path``."""
    problem = engine_problem(path)
    if problem is None:
        return path
    if path.exists():
        warn(f"engine cache {path} is unusable ({problem}): rebuilding")
        path.unlink(missing_ok=True)
    blob = build()
    atomic_write_bytes(blob, path)
    record = {"sha256": hashlib.sha256(blob).hexdigest(), "key": asdict(key) if key is not None else {}}
    atomic_write_text(json.dumps(record, indent=2), sidecar(path))
    return path

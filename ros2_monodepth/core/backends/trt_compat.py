"""Which TensorRT is installed and what its Python API offers, asked explicitly instead of assumed.

TensorRT 10 builds weakly typed networks with precision flags (``BuilderFlag.FP16``, ``INT8``); TensorRT 11
removed those flags and the implicit int8 calibrator: precision comes from the graph (strongly typed networks,
explicit Q/DQ). TensorRT for RTX already works that way. Loading never raises: anything wrong (missing
library, the type stubs alone, an older major, a missing name) comes back as a reason, which ``backend: auto``
logs before falling back.

    >>> api, why = load_tensorrt("no_such_tensorrt_module")
    >>> api is None and "no_such_tensorrt_module" in why
    True
"""

from __future__ import annotations

import importlib
import re
from dataclasses import dataclass
from typing import Any, Optional, Tuple

MIN_MAJOR = 10
# Names every supported TensorRT has (10 and 11, and TensorRT for RTX 1.x); their absence means an unusable install.
REQUIRED = ("Builder", "Logger", "OnnxParser", "Runtime", "BuilderFlag", "MemoryPoolType", "NetworkDefinitionCreationFlag",
            "TensorIOMode", "nptype")


def parse_version(text: str) -> Tuple[int, ...]:
    """'10.13.0.35' -> (10, 13, 0, 35); anything unparsable -> (0,)."""
    parts = re.findall(r"\d+", text or "")
    return tuple(int(p) for p in parts) if parts else (0,)


@dataclass(frozen=True)
class TensorRTApi:
    """An imported TensorRT module and the capabilities the build uses."""

    trt: Any
    module_name: str
    version: Tuple[int, ...]

    @property
    def version_text(self) -> str:
        return ".".join(str(v) for v in self.version)

    def builder_flag(self, name: str) -> Optional[Any]:
        """``BuilderFlag.<name>`` or None where this version has no such flag."""
        return getattr(self.trt.BuilderFlag, name, None)

    @property
    def has_precision_flags(self) -> bool:
        """TensorRT 10: FP16 and INT8 builder flags (weakly typed networks, the builder picks each layer's precision)."""
        return self.builder_flag("FP16") is not None and self.builder_flag("INT8") is not None

    @property
    def strongly_typed_flag(self) -> Optional[int]:
        """The network-creation bit for strongly typed networks (None where networks are always strongly typed)."""
        flag = getattr(self.trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED", None)
        return None if flag is None else 1 << int(flag)

    def describe(self) -> str:
        kind = "precision flags" if self.has_precision_flags else "strongly typed"
        return f"{self.module_name} {self.version_text} ({kind})"


def load_tensorrt(module_name: str = "tensorrt") -> Tuple[Optional[TensorRTApi], str]:
    """(TensorRTApi, '') when ``module_name`` imports as a usable TensorRT, else (None, why not)."""
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:   # ImportError, but also OSError from a broken libnvinfer, AttributeError in its __init__
        return None, f"import {module_name} failed ({type(exc).__name__}: {exc})"
    if not hasattr(module, "Builder"):
        # tensorrt-stubs installs a bare `tensorrt/` folder that imports as an empty namespace package
        return None, f"{module_name} is only the type stubs, not TensorRT"
    version = parse_version(str(getattr(module, "__version__", "")))
    if module_name == "tensorrt" and version[0] < MIN_MAJOR:
        return None, f"TensorRT {'.'.join(map(str, version))} is older than {MIN_MAJOR}, the oldest this backend supports"
    missing = [name for name in REQUIRED if not hasattr(module, name)]
    if missing:
        return None, f"{module_name} {'.'.join(map(str, version))} lacks {', '.join(missing)}"
    return TensorRTApi(module, module_name, version), ""

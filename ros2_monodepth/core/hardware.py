"""What this machine can run fast: CPU instruction sets and CUDA devices.

Owns hardware detection for the backend choice (``artifacts``) and training precision, so both decide from the
same facts.

    >>> isinstance(cpu_has_bf16(), bool)
    True
"""

from __future__ import annotations

import functools
from typing import FrozenSet


@functools.lru_cache(maxsize=1)
def cpu_flags() -> FrozenSet[str]:
    """The CPU feature flags from /proc/cpuinfo (empty where there is no such file)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def cpu_has_bf16() -> bool:
    """True when the CPU has AMX-BF16 or AVX512-BF16 (bf16 is then faster than fp32, not emulated)."""
    flags = cpu_flags()
    return "amx_bf16" in flags or "avx512_bf16" in flags


def cuda_available() -> bool:
    """True when torch is installed with CUDA and sees a device."""
    try:
        import torch

        return bool(torch.cuda.is_available())
    except Exception:  # torch missing or a broken CUDA install
        return False

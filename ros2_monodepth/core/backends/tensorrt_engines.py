"""Building TensorRT engines from the exported graphs: the build recipe for each precision on each TensorRT, the
network definition from ONNX (parser errors name the node), the builder configuration, and the build.

Recipes (``build_recipe``), by what the installed TensorRT offers (``trt_compat``):

=========  =======================================  ==================================================
precision  TensorRT 10 (precision flags)            TensorRT 11 / RTX (strongly typed, no such flags)
=========  =======================================  ==================================================
fp32       fp32 graph, TF32 off                     fp32 graph, strongly typed, TF32 off
fp16       fp32 graph + FP16 flag                   fp16 graph (``depth.fp16.onnx``), strongly typed
int8       Q/DQ graph (``*.qdq.onnx``) + INT8, FP16  Q/DQ graph, strongly typed (the rest in fp32)
=========  =======================================  ==================================================

int8 is always the project's own explicit Q/DQ graph, calibrated on the robot's frames by
``ros2-monodepth-export --int8`` (the implicit calibrator is deprecated since TensorRT 10.1 and gone in 11).
fp32 engines build without TF32, which Ampere and newer GPUs (Orin included) would otherwise use for fp32
convolutions (10-bit mantissa: the fp32 parity check would fail).

Everything up to ``build_serialized_network`` runs without a GPU; the tests run it with TensorRT for RTX's
library, which implements TensorRT 11's strongly typed API.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, List, Optional, Tuple

from .base import BackendError
from .trt_compat import TensorRTApi

LOG = logging.getLogger(__name__)
DEFAULT_WORKSPACE = 1 << 30
PRECISIONS = ("fp32", "fp16", "int8")


@dataclass(frozen=True)
class BuildRecipe:
    """How an engine of one precision is built on one TensorRT: from which graph flavour ('fp32', 'fp16' or
    'int8'), strongly typed or not, and which builder flags are set and cleared."""

    graph: str
    strongly_typed: bool
    set_flags: Tuple[str, ...] = ()
    clear_flags: Tuple[str, ...] = ()

    def describe(self) -> str:
        parts = [f"{self.graph} graph", "strongly typed" if self.strongly_typed else "weakly typed"]
        parts += [f"+{f}" for f in self.set_flags] + [f"-{f}" for f in self.clear_flags]
        return ", ".join(parts)


def build_recipe(api: TensorRTApi, precision: str) -> BuildRecipe:
    """The recipe for ``precision`` on ``api`` (table in the module docstring)."""
    if precision not in PRECISIONS:
        raise BackendError(f"TensorRT precision must be one of {PRECISIONS}, got '{precision}'")
    no_tf32 = ("TF32",) if api.builder_flag("TF32") is not None else ()
    if api.has_precision_flags:
        return {"fp32": BuildRecipe("fp32", False, (), no_tf32),
                "fp16": BuildRecipe("fp32", False, ("FP16",)),
                "int8": BuildRecipe("int8", False, ("INT8", "FP16"))}[precision]
    return {"fp32": BuildRecipe("fp32", True, (), no_tf32),
            "fp16": BuildRecipe("fp16", True),
            "int8": BuildRecipe("int8", True)}[precision]


def parse_onnx(api: TensorRTApi, onnx_path: Path, recipe: BuildRecipe, logger: Optional[Any] = None) -> Tuple[Any, Any, Any]:
    """(builder, network, parser) with ``onnx_path`` parsed into a network definition of ``recipe``'s typing.
    BackendError listing every parser error (each names the failing node)."""
    trt = api.trt
    logger = logger or trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    flags = api.strongly_typed_flag if (recipe.strongly_typed and api.strongly_typed_flag is not None) else 0
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        raise BackendError(f"TensorRT's ONNX parser ({api.describe()}) rejected {onnx_path}: "
                           + "; ".join(parser_errors(parser)))
    return builder, network, parser


def parser_errors(parser: Any) -> List[str]:
    """Every error of a failed parse, one line each (TensorRT's text names the node and operator)."""
    return [" ".join(str(parser.get_error(i)).split()) for i in range(parser.num_errors)]


def builder_config(api: TensorRTApi, builder: Any, recipe: BuildRecipe, workspace: int = DEFAULT_WORKSPACE) -> Any:
    """The builder configuration of ``recipe``: workspace limit, flags, build-phase logging."""
    trt = api.trt
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace)
    for name in recipe.set_flags:
        flag = api.builder_flag(name)
        if flag is None:
            raise BackendError(f"{api.describe()} has no BuilderFlag.{name} (recipe: {recipe.describe()})")
        config.set_flag(flag)
    for name in recipe.clear_flags:
        flag = api.builder_flag(name)
        if flag is not None:
            config.clear_flag(flag)
    monitor = _progress_monitor(api)
    if monitor is not None:
        config.progress_monitor = monitor
    return config


def build_serialized_engine(api: TensorRTApi, onnx_path: Path, recipe: BuildRecipe,
                            workspace: int = DEFAULT_WORKSPACE) -> bytes:
    """Parse ``onnx_path``, configure and build: the serialised engine (needs a GPU)."""
    builder, network, _parser = parse_onnx(api, onnx_path, recipe)
    config = builder_config(api, builder, recipe, workspace)
    LOG.info("building TensorRT engine for %s (%s, %s); this can take minutes", onnx_path.name, recipe.describe(),
             api.describe())
    t0 = time.monotonic()
    blob = builder.build_serialized_network(network, config)
    if blob is None:
        raise BackendError(f"TensorRT failed to build an engine for {onnx_path} ({recipe.describe()})")
    LOG.info("built the engine for %s in %.0f s", onnx_path.name, time.monotonic() - t0)
    return bytes(memoryview(blob))


def _progress_monitor(api: TensorRTApi) -> Optional[Any]:
    """A monitor that logs build phases (an engine build takes minutes on a Jetson), where the API has one."""
    base = getattr(api.trt, "IProgressMonitor", None)
    if base is None:
        return None

    class BuildProgress(base):  # type: ignore[misc, valid-type]
        def __init__(self) -> None:
            super().__init__()
            self._t0 = time.monotonic()

        def phase_start(self, phase_name: str, parent_phase: Optional[str], num_steps: int) -> None:
            LOG.info("TensorRT build: %s (%d steps) at %.0f s", phase_name, num_steps, time.monotonic() - self._t0)

        def step_complete(self, phase_name: str, step: int) -> bool:
            return True  # never cancel

        def phase_finish(self, phase_name: str) -> None:
            LOG.info("TensorRT build: %s done at %.0f s", phase_name, time.monotonic() - self._t0)

    return BuildProgress()

"""Export a compiled network to TorchScript, ``torch.export`` (``.pt2``) or ONNX.

``export(module_or_source, path, format)`` takes a module from
:func:`archdsl.load` (or anything :func:`archdsl.load` accepts: a path, a zoo
name or ``.arch`` text, plus overrides), puts it in eval mode and writes one
file. Without ``example_inputs`` it feeds random tensors of the network's
declared input shapes (batch 1). ``pt2`` and ``onnx`` files keep the batch
dimension dynamic unless ``dynamic_batch=False``.

ONNX export uses PyTorch's ``torch.export``-based exporter, which needs the
``onnx`` and ``onnxscript`` packages: ``pip install 'archdsl[onnx]'``.
"""

from __future__ import annotations

import importlib.util
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import fx, nn

from archdsl.api import load
from archdsl.errors import ArchError, did_you_mean
from archdsl.outputs import check_output, input_files, replacing, replacing_folder_files
from archdsl.pipeline import example_inputs, graph_of_module, without_rewrites

__all__ = ["FORMATS", "ArchExportError", "export"]

FORMATS = ("torchscript", "pt2", "onnx")
ONNX_PACKAGES = ("onnx", "onnxscript")
ONNX_INSTALL = "pip install 'archdsl[onnx]'"
# protobuf cannot hold a model over 2 GiB: past 1 GiB of weights they go to `<path>.data`
ONNX_INLINE_LIMIT = 1 << 30

Inputs = torch.Tensor | Sequence[torch.Tensor]


class ArchExportError(ArchError):
    """A network that cannot be exported (unknown format, missing packages, unsupported op)."""

    default_code = "E901"


def export(
    module_or_source: nn.Module | str | os.PathLike[str],
    path: str | os.PathLike[str],
    format: str,
    *,
    example_inputs: Inputs | None = None,
    dynamic_batch: bool = True,
    **overrides: Any,
) -> Path:
    """Write a network to ``path`` as ``"torchscript"``, ``"pt2"`` or ``"onnx"``; returns the path.

    ``module_or_source`` is a module from :func:`archdsl.load` or anything
    :func:`archdsl.load` accepts (a path, a zoo name, ``.arch`` text); then
    ``overrides`` (``size=64``, ``num_classes=10``, ``network=``, ``seed=``)
    are passed to it. The module is exported in eval mode; its own
    train/eval mode is restored afterwards.

    * ``"torchscript"``: :func:`torch.jit.script`, saved with
      :func:`torch.jit.save` (load with :func:`torch.jit.load`).
    * ``"pt2"``: :func:`torch.export.export`, saved with
      :func:`torch.export.save` (load with :func:`torch.export.load`).
    * ``"onnx"``: :func:`torch.onnx.export` with ``dynamo=True``; needs
      ``onnx`` and ``onnxscript`` (``pip install 'archdsl[onnx]'``). Inputs
      and outputs are named after the network's input and output nodes;
      weights over 1 GiB go to a side file ``<path>.data``.

    ``example_inputs`` (a tensor or a sequence of tensors, one per network
    input) default to random tensors of the declared input shapes with
    batch 1. ``dynamic_batch`` keeps the batch dimension of ``pt2`` and
    ``onnx`` exports symbolic, so the file accepts any batch size.

    Raises :class:`ArchExportError` (an :class:`~archdsl.errors.ArchError`):
    E901 an unknown format, E902 missing ONNX packages, E903 no input shapes
    (a module not built by archdsl and no ``example_inputs``), E904 an
    exporter failure (the PyTorch error is its ``__cause__``), E905
    overrides given with a built module, E906 a missing output folder.
    An output that is one of the network's source files, a folder or a
    special file is refused (E610-E612, :mod:`archdsl.outputs`); the file is
    written to a temporary name and renamed, so a failed export leaves
    ``path`` as it was. Building from source raises the usual ``ArchError`` s.
    """
    fmt = _check_format(format)
    if fmt == "onnx":
        _require_onnx()
    module = _resolve_module(module_or_source, overrides)
    target = check_output(path, input_files(getattr(module, "meta", {}).get("archdsl") or {}))
    inputs = _example_inputs(module, example_inputs)
    if not target.parent.is_dir():
        raise ArchExportError(f"cannot write {target}: the folder {target.parent} does not exist", None, code="E906")
    modes = {m: m.training for m in module.modules()}
    module.eval()
    try:
        with torch.no_grad():
            if fmt == "torchscript":
                _to_torchscript(module, target)
            elif fmt == "pt2":
                _to_pt2(module, inputs, target, dynamic_batch)
            else:
                _to_onnx(module, inputs, target, dynamic_batch)
    except ArchError:
        raise
    except Exception as err:  # the exporters raise many types
        raise ArchExportError(
            f"cannot export `{_name(module)}` to {fmt}: {_first_line(err)}",
            None,
            _failure_hint(fmt, dynamic_batch),
            code="E904",
        ) from err
    finally:
        for m, training in modes.items():
            m.training = training
    return target


def _check_format(format: str) -> str:
    fmt = format.lower() if isinstance(format, str) else format
    if fmt in FORMATS:
        return fmt
    valid = ", ".join(FORMATS)
    hint = did_you_mean(str(fmt), FORMATS) if isinstance(fmt, str) else None
    raise ArchExportError(
        f"unknown export format `{format}`; valid formats: {valid}",
        None,
        hint or f"use one of: {valid}",
        code="E901",
    )


def _require_onnx() -> None:
    missing = [name for name in ONNX_PACKAGES if importlib.util.find_spec(name) is None]
    if missing:
        raise ArchExportError(
            f"ONNX export needs the package{'s' if len(missing) > 1 else ''} "
            f"{' and '.join(missing)}, which {'are' if len(missing) > 1 else 'is'} not installed",
            None,
            f"install them with: {ONNX_INSTALL}  (or: pip install onnx onnxscript onnxruntime)",
            code="E902",
        )


def _resolve_module(module_or_source: Any, overrides: dict[str, Any]) -> nn.Module:
    if isinstance(module_or_source, nn.Module):
        if overrides:
            names = ", ".join(sorted(overrides))
            raise ArchExportError(
                f"overrides ({names}) only apply when exporting from source, not from a built module",
                None,
                "pass them to archdsl.load(...), or pass the source instead of the module",
                code="E905",
            )
        return _without_training_rewrites(module_or_source)
    return load(module_or_source, **{**overrides, "memory_efficient": False})


def _without_training_rewrites(module: nn.Module) -> nn.Module:
    """A memory-efficient module's plain twin with the same weights: the rewrite only helps training."""
    meta = getattr(module, "meta", {}).get("archdsl") or {}
    if not meta.get("options", {}).get("memory_efficient") or graph_of_module(module) is None:
        return module
    return without_rewrites(module, "memory_efficient")


def _example_inputs(module: nn.Module, given: Inputs | None) -> tuple[torch.Tensor, ...]:
    if given is not None:
        inputs = (given,) if isinstance(given, torch.Tensor) else tuple(given)
        if not inputs or not all(isinstance(t, torch.Tensor) for t in inputs):
            raise ArchExportError(
                "example_inputs must be a tensor or a sequence of tensors, one per network input",
                None,
                code="E903",
            )
        return inputs
    _input_shapes(module)  # refuses a module archdsl did not compile
    device = next((p.device for p in module.parameters()), torch.device("cpu"))
    gen = torch.Generator().manual_seed(0)
    return tuple(t.to(device) for t in example_inputs(module.meta["archdsl"], 1, gen))


def _input_shapes(module: nn.Module) -> list[tuple[int, ...]]:
    """The declared shapes (batch excluded) of an archdsl module's inputs, in argument order."""
    meta = getattr(module, "meta", {}).get("archdsl") if isinstance(module, fx.GraphModule) else None
    if not meta or "input_shapes" not in meta:
        raise ArchExportError(
            "cannot tell the input shapes of a module not compiled by archdsl",
            None,
            "pass example_inputs=(tensor, ...) with one tensor per input, batch dimension first",
            code="E903",
        )
    return [tuple(shape) for shape in meta["input_shapes"]]


def _to_torchscript(module: nn.Module, target: Path) -> None:
    with warnings.catch_warnings():
        # torch >= 2.9 deprecates TorchScript, but it is still the format many runtimes load
        warnings.filterwarnings("ignore", message=r".*torch\.jit\.script.*deprecated", category=FutureWarning)
        warnings.filterwarnings("ignore", message=r".*instance-level annotations", category=UserWarning)
        warnings.filterwarnings("ignore", message=r".*torch\.jit\.save.*deprecated", category=FutureWarning)
        scripted = torch.jit.script(module)
        with replacing(target) as stream:
            torch.jit.save(scripted, stream)


def _to_pt2(module: nn.Module, inputs: tuple[torch.Tensor, ...], target: Path, dynamic: bool) -> None:
    args, shapes = _trace_args(inputs, dynamic)
    program = torch.export.export(module, args, dynamic_shapes=shapes)
    with replacing(target) as stream:
        torch.export.save(program, stream)


def _to_onnx(module: nn.Module, inputs: tuple[torch.Tensor, ...], target: Path, dynamic: bool) -> None:
    args, shapes = _trace_args(inputs, dynamic)
    in_names, out_names = _io_names(module, len(inputs))
    size = sum(t.numel() * t.element_size() for t in module.state_dict().values())
    with replacing_folder_files(target) as folder:  # large weights go to a side file, `<name>.data`
        torch.onnx.export(
            module,
            args,
            str(folder / target.name),
            dynamo=True,
            dynamic_shapes=shapes,
            input_names=in_names,
            output_names=out_names,
            external_data=size > ONNX_INLINE_LIMIT,
            verbose=False,
        )


def _trace_args(inputs: tuple[torch.Tensor, ...], dynamic: bool) -> tuple[tuple[torch.Tensor, ...], Any]:
    """Arguments to trace with and their ``dynamic_shapes``.

    ``torch.export`` specializes a dimension of size 1, so a batch of 1 is
    traced as a batch of 2 (repeated rows; only shapes matter when tracing).
    """
    if not dynamic:
        return inputs, None
    batch = torch.export.Dim("batch")
    args = tuple(t.expand(2, *t.shape[1:]).contiguous() if t.dim() and t.shape[0] == 1 else t for t in inputs)
    return args, tuple({0: batch} if t.dim() else None for t in args)


def _io_names(module: nn.Module, count: int) -> tuple[list[str] | None, list[str] | None]:
    if not isinstance(module, fx.GraphModule):
        return None, None
    nodes = list(module.graph.nodes)
    ins = [n.name for n in nodes if n.op == "placeholder"]
    outs: list[str] | None = None
    result = next((n for n in reversed(nodes) if n.op == "output"), None)
    if result is not None:
        value = result.args[0]
        values = value if isinstance(value, (tuple, list)) else (value,)
        if all(isinstance(v, fx.Node) for v in values) and len({v.name for v in values}) == len(values):
            outs = [v.name for v in values]
    return (ins if len(ins) == count else None), outs


def _name(module: nn.Module) -> str:
    meta = getattr(module, "meta", None)
    if isinstance(meta, dict) and meta.get("archdsl", {}).get("network"):
        return meta["archdsl"]["network"]
    return type(module).__name__


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def _failure_hint(fmt: str, dynamic_batch: bool) -> str:
    if fmt == "torchscript":
        return "TorchScript cannot compile every Python function; try format='pt2' or 'onnx'"
    if dynamic_batch:
        return "if the network fixes its batch size, try dynamic_batch=False"
    return "the chained PyTorch error names the op that failed"

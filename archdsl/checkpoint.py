"""Checkpoints: a module's sources, overrides, options and weights in one file, written atomically.

Loading rebuilds the module from the stored sources (one run of the
pipeline) and copies the weights in; files are read with
``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import os
from typing import Any

import networkx as nx
import torch
from torch import fx

from archdsl.errors import ArchCheckpointError, ArchError
from archdsl.outputs import check_output, input_files
from archdsl.pipeline import rebuild

CHECKPOINT_FORMAT = "archdsl-checkpoint"
CHECKPOINT_VERSION = 1


def checkpoint_payload(module: fx.GraphModule) -> dict[str, Any]:
    """What a checkpoint holds about a module: its sources, overrides, outputs and weights."""
    meta = module.meta.get("archdsl")
    if not meta:
        raise ArchCheckpointError("this module was not compiled by archdsl (no sources to save)", None, code="E602")
    return {
        "format": CHECKPOINT_FORMAT,
        "version": CHECKPOINT_VERSION,
        "file": meta["file"],
        "network": meta["network"],
        "sources": meta["sources"],
        "overrides": meta["overrides"],
        "outputs": meta.get("outputs"),
        "options": meta.get("options", {}),
        "limits": meta.get("limits"),
        "state_dict": {k: v.detach().cpu() for k, v in module.state_dict().items()},
    }


def atomic_save(payload: dict[str, Any], path: str | os.PathLike[str]) -> None:
    """``torch.save`` to a temporary file, then rename: a crash never leaves a truncated checkpoint.

    An output that is one of the network's source files, a folder or a
    special file is refused (:func:`archdsl.outputs.check_output`).
    """
    target = check_output(path, input_files(payload))
    if not target.parent.is_dir():
        raise ArchCheckpointError(
            f"cannot write {target}: the folder {target.parent} does not exist", None, code="E606"
        )
    tmp = target.with_name(target.name + ".tmp")
    try:
        with open(tmp, "wb") as stream:
            torch.save(payload, stream)
        os.replace(tmp, target)
    except (OSError, RuntimeError) as err:  # torch's writer reports a full disk as RuntimeError
        tmp.unlink(missing_ok=True)
        reason = err.strerror if isinstance(err, OSError) and err.strerror else err
        raise ArchCheckpointError(f"cannot write {target}: {reason}", None, code="E606") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def save_checkpoint(module: fx.GraphModule, path: str | os.PathLike[str]) -> None:
    """Write (sources, overrides, state_dict) so that :func:`load_checkpoint` restores the module."""
    atomic_save(checkpoint_payload(module), path)


def read_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The payload of an archdsl checkpoint, read with ``torch.load(weights_only=True)``."""
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise ArchCheckpointError(f"no such checkpoint: {path}", None, code="E601") from None
    except Exception as err:  # torch raises many types for corrupt files
        raise ArchCheckpointError(f"cannot read checkpoint {path}: {err}", None, code="E601") from None
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise ArchCheckpointError(f"{path} is not an archdsl checkpoint", None, code="E603")
    return payload


def load_checkpoint(
    path: str | os.PathLike[str], payload: dict[str, Any] | None = None, graph_class: type[nx.DiGraph] = nx.DiGraph
) -> fx.GraphModule:
    """Rebuild a module from a checkpoint written by :func:`save_checkpoint` (``weights_only`` loading).

    ``payload`` is the checkpoint already read by :func:`read_checkpoint`, so
    that a caller who needs more of it (a training state) reads the file once.
    """
    payload = read_checkpoint(path) if payload is None else payload
    try:
        module = rebuild(payload, graph_class)
    except KeyError as err:
        raise ArchCheckpointError(f"checkpoint {path} lacks the entry {err}", None, code="E603") from None
    except (TypeError, ValueError, AttributeError) as err:
        raise ArchCheckpointError(f"checkpoint {path} is malformed: {err}", None, code="E603") from None
    except ArchError as err:
        raise ArchCheckpointError(
            f"the architecture stored in {path} no longer builds:\n{err}", None, code="E604"
        ) from None
    _load_state(module, payload.get("state_dict"), path)
    return module


def _load_state(module: fx.GraphModule, state: Any, path: Any) -> None:
    if not isinstance(state, dict):
        raise ArchCheckpointError(f"checkpoint {path} has no state_dict", None, code="E603")
    expected = module.state_dict(keep_vars=True)
    for key, tensor in expected.items():
        if key not in state:
            raise ArchCheckpointError(f"checkpoint {path} lacks the weight `{key}`", None, code="E605")
        if not isinstance(state[key], torch.Tensor):
            raise ArchCheckpointError(f"weight `{key}` in {path} is not a tensor", None, code="E605")
        if tuple(state[key].shape) != tuple(tensor.shape):
            raise ArchCheckpointError(
                f"weight `{key}` has shape {list(state[key].shape)} in {path}, "
                f"but the network needs {list(tensor.shape)}",
                None,
                code="E605",
            )
    unexpected = [k for k in state if k not in expected]
    if unexpected:
        raise ArchCheckpointError(f"checkpoint {path} has the unexpected weight `{unexpected[0]}`", None, code="E605")
    # Keys and shapes are checked above; copying directly avoids load_state_dict,
    # whose cost grows with the square of a module's children (10,000 blocks: 11 s).
    with torch.no_grad():
        for key, tensor in expected.items():
            tensor.copy_(state[key])

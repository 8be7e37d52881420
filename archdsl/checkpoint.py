"""Checkpoints: a module's sources, overrides, options and weights in one file, written atomically.

Loading rebuilds the module from the stored sources (one run of the
pipeline) and copies the weights in; files are read with
``torch.load(weights_only=True)``.

Every checkpoint carries a SHA-256 of everything else it holds (sources,
overrides, options, limits, weights and any training state), written by
:func:`seal` and checked on reading: a flipped bit or an edited source is
an error (E607), and so is a file without a hash (E608), unless the reader
passes ``verify=False``. The hash finds corruption and edits; it is no
signature (whoever edits a file can compute a new one), so what is read is
also checked field by field, and stored limits can only lower the limits a
checkpoint is rebuilt under.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import os
import struct
from pathlib import Path
from typing import Any

import networkx as nx
import torch
from torch import fx

from archdsl.errors import ArchCheckpointError, ArchError
from archdsl.limits import Limits
from archdsl.limits import current as current_limits
from archdsl.limits import using as using_limits
from archdsl.outputs import check_output, input_files
from archdsl.pipeline import rebuild, stored_limits

CHECKPOINT_FORMAT = "archdsl-checkpoint"
CHECKPOINT_VERSION = 2  # 2: with a SHA-256 of the contents
DIGEST_KEY = "sha256"
TRUST_HINT = "if you trust the file, load it with verify=False (on the command line: --trust-modified)"


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
    atomic_save(seal(checkpoint_payload(module)), path)


def seal(payload: dict[str, Any]) -> dict[str, Any]:
    """Store the SHA-256 of ``payload`` in it (under ``"sha256"``), for :func:`read_checkpoint` to check; returns it."""
    payload[DIGEST_KEY] = payload_digest(payload)
    return payload


def read_checkpoint(path: str | os.PathLike[str], *, verify: bool = True) -> dict[str, Any]:
    """The payload of an archdsl checkpoint, read with ``torch.load(weights_only=True)``.

    With ``verify`` (the default) its contents must match the SHA-256 it
    stores: E607 when they do not, E608 when it stores none.
    """
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise ArchCheckpointError(f"no such checkpoint: {path}", None, code="E601") from None
    except Exception as err:  # torch raises many types for corrupt files
        raise ArchCheckpointError(f"cannot read checkpoint {path}: {err}", None, code="E601") from None
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise ArchCheckpointError(f"{path} is not an archdsl checkpoint", None, code="E603")
    if verify:
        _verify(payload, path)
    return payload


def load_checkpoint(
    path: str | os.PathLike[str],
    payload: dict[str, Any] | None = None,
    graph_class: type[nx.DiGraph] = nx.DiGraph,
    *,
    verify: bool = True,
    limits: Limits | None = None,
) -> fx.GraphModule:
    """Rebuild a module from a checkpoint written by :func:`save_checkpoint` (``weights_only`` loading).

    ``payload`` is the checkpoint already read (and checked) by
    :func:`read_checkpoint`, so that a caller who needs more of it (a
    training state) reads the file once. ``verify=False`` loads a file whose
    contents do not match its hash, or that has none. The module is built
    under the stricter, field by field, of ``limits`` (default: the limits
    in force) and the limits the checkpoint stores.
    """
    payload = read_checkpoint(path, verify=verify) if payload is None else payload
    _check_fields(payload, path)
    reader = current_limits() if limits is None else limits
    if not isinstance(reader, Limits):
        raise TypeError(f"limits must be an archdsl.Limits, not {type(limits).__name__}")
    try:
        with using_limits(reader):
            module = rebuild(payload, graph_class)
    except KeyError as err:
        raise ArchCheckpointError(f"checkpoint {path} lacks the entry {err}", None, code="E603") from None
    except (TypeError, ValueError, AttributeError) as err:
        raise ArchCheckpointError(f"checkpoint {path} is malformed: {err}", None, code="E603") from None
    except ArchError as err:
        raise ArchCheckpointError(
            f"the architecture stored in {path} no longer builds:\n{err}",
            None,
            _raised_limits_hint(stored_limits(payload), reader),
            code="E604",
        ) from None
    _load_state(module, payload.get("state_dict"), path)
    return module


def _check_fields(payload: dict[str, Any], path: Any) -> None:
    """E603 unless the entries that rebuild the module have the types archdsl writes (their values are checked
    by building)."""

    def strings(value: Any, values: type | tuple[type, ...]) -> bool:
        return isinstance(value, dict) and all(isinstance(k, str) and isinstance(v, values) for k, v in value.items())

    outputs = payload.get("outputs")
    fields = {
        "file": isinstance(payload.get("file"), str),
        "network": isinstance(payload.get("network"), str),
        "sources": strings(payload.get("sources"), str),
        "overrides": strings(payload.get("overrides"), object),
        "options": payload.get("options") is None or strings(payload.get("options"), bool),
        "limits": payload.get("limits") is None or strings(payload.get("limits"), int),
        "outputs": outputs is None
        or strings(outputs, str)
        or (isinstance(outputs, list) and all(isinstance(name, str) for name in outputs)),
    }
    for name, fits in fields.items():
        if name not in payload and name in ("file", "network", "sources", "overrides"):
            raise ArchCheckpointError(f"checkpoint {path} lacks the entry '{name}'", None, code="E603")
        if not fits:
            raise ArchCheckpointError(
                f"checkpoint {path} is malformed: its entry `{name}` is {type(payload.get(name)).__name__}, "
                "not what archdsl writes",
                None,
                code="E603",
            )


def _raised_limits_hint(stored: Limits | None, reader: Limits) -> str | None:
    """Why a checkpoint saved under raised limits fails, and how to read it anyway."""
    raised = {name: value for name, value in vars(stored or reader).items() if value > getattr(reader, name)}
    if not raised:
        return None
    fields = ", ".join(f"{name}={value}" for name, value in raised.items())
    return (
        f"it was saved under raised limits ({fields}), and a checkpoint cannot raise the limits it is read "
        f"under; if you trust it, pass limits=archdsl.Limits({fields}) to load_checkpoint"
    )


def _load_state(module: fx.GraphModule, state: Any, path: Any) -> None:
    if not isinstance(state, dict):
        raise ArchCheckpointError(f"checkpoint {path} has no state_dict", None, code="E603")
    expected = module.state_dict(keep_vars=True)
    for key, tensor in expected.items():
        if key not in state:
            raise ArchCheckpointError(f"checkpoint {path} lacks the weight `{key}`", None, code="E605")
        problem = _weight_problem(state[key], tensor)
        if problem:
            raise ArchCheckpointError(f"weight `{key}` {problem} in {path}", None, code="E605")
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


def _weight_problem(value: Any, expected: torch.Tensor) -> str | None:
    """What makes ``value`` unfit to be copied into ``expected``, in words; None when it fits."""
    if not isinstance(value, torch.Tensor):
        return "is not a tensor"
    if value.is_quantized:
        return "is a quantized tensor, not a dense one"
    if value.layout != torch.strided or value.is_nested:
        return f"is a {str(value.layout).removeprefix('torch.')} tensor, not a dense one"
    if value.is_meta:
        return "is a meta tensor, which holds no values"
    kinds = (torch.Tensor.is_floating_point, torch.Tensor.is_complex, lambda t: t.dtype == torch.bool)
    if any(kind(value) != kind(expected) for kind in kinds):
        return f"has dtype {_dtype_name(value)}, but the network needs {_dtype_name(expected)}"
    return None


def _dtype_name(tensor: torch.Tensor) -> str:
    return str(tensor.dtype).removeprefix("torch.")


# ----------------------------------------------------------------- integrity


class _Unhashable(Exception):
    """A value that no checkpoint archdsl writes can hold (a sparse tensor, a cycle, an unknown type)."""


def payload_digest(payload: dict[str, Any], budget: int | None = None) -> str:
    """The SHA-256 of everything in ``payload`` but its stored digest, as a hex string.

    Values are fed in a canonical, type-tagged, length-prefixed encoding
    (dictionaries by sorted key, tensors as dtype, shape and bytes), so the
    digest depends on the contents only. Each list, tuple and dictionary is
    hashed once however often it is referenced. ``budget`` bounds the bytes
    hashed (:class:`_Unhashable` beyond it), so that a small file of many
    references to one large value cannot take hours.
    """
    hasher = _Hasher(budget)
    digest = hashlib.sha256()
    try:
        hasher.feed(digest, {key: value for key, value in payload.items() if key != DIGEST_KEY})
    except RecursionError:
        raise _Unhashable("values nested too deeply") from None
    return digest.hexdigest()


class _Hasher:
    def __init__(self, budget: int | None) -> None:
        self.left = budget
        self.containers: dict[int, bytes | None] = {}  # id -> digest; None while it is being hashed

    def spend(self, size: int) -> None:
        if self.left is not None:
            self.left -= size
            if self.left < 0:
                raise _Unhashable("more data than the file's size can hold (values referenced many times)")

    def update(self, digest: Any, tag: bytes, data: bytes | memoryview = b"") -> None:
        self.spend(len(tag) + 8 + len(data))
        digest.update(tag + struct.pack("<Q", len(data)))
        digest.update(data)

    def feed(self, digest: Any, value: Any) -> None:
        if isinstance(value, dict | list | tuple):
            self.update(digest, self.container_tag(value), self.container_digest(value))
        elif isinstance(value, torch.Tensor):
            self.feed_tensor(digest, value)
        elif value is None or isinstance(value, bool):
            self.update(digest, b"N" if value is None else b"T" if value else b"F")
        elif isinstance(value, int):
            self.update(digest, b"I", value.to_bytes((value.bit_length() + 8) // 8, "little", signed=True))
        elif isinstance(value, float):
            self.update(digest, b"D", struct.pack("<d", value))
        elif isinstance(value, str):
            self.update(digest, b"S", value.encode("utf-8", "surrogatepass"))
        elif isinstance(value, bytes):
            self.update(digest, b"B", value)
        elif isinstance(value, torch.dtype | torch.device):
            self.update(digest, b"E", str(value).encode("utf-8"))
        else:
            raise _Unhashable(f"a value of type {type(value).__name__}")

    @staticmethod
    def container_tag(value: Any) -> bytes:
        return b"M" if isinstance(value, dict) else b"L" if isinstance(value, list) else b"U"

    def container_digest(self, value: dict | list | tuple) -> bytes:
        key = id(value)
        if key in self.containers:
            known = self.containers[key]
            if known is None:
                raise _Unhashable("a value that contains itself")
            return known
        self.containers[key] = None
        inner = hashlib.sha256()
        if isinstance(value, dict):
            for item in sorted(value, key=_key_order):
                self.feed(inner, item)
                self.feed(inner, value[item])
        else:
            for item in value:
                self.feed(inner, item)
        self.containers[key] = inner.digest()
        return self.containers[key]

    def feed_tensor(self, digest: Any, tensor: torch.Tensor) -> None:
        if tensor.is_quantized or tensor.layout != torch.strided or tensor.is_nested or tensor.is_meta:
            raise _Unhashable(f"a {str(tensor.layout).removeprefix('torch.')} or quantized tensor")
        header = f"{tensor.dtype}{list(tensor.shape)}".encode()
        flat = tensor.detach().resolve_conj().resolve_neg().cpu().contiguous().reshape(-1)
        data = flat.view(torch.uint8) if flat.dtype != torch.uint8 else flat
        self.update(digest, b"X", header)
        self.update(digest, b"", memoryview(data.numpy()))


def _key_order(key: Any) -> tuple[str, str]:
    if not isinstance(key, str | int | float | bool | None):
        raise _Unhashable(f"a dictionary key of type {type(key).__name__}")
    return type(key).__name__, repr(key)


def _verify(payload: dict[str, Any], path: Any) -> None:
    """Raise E608 when ``payload`` stores no digest, E607 when it does not match its contents."""
    stored = payload.get(DIGEST_KEY)
    if stored is None:
        raise ArchCheckpointError(
            f"checkpoint {path} stores no sha256 of its contents, so corruption or edits cannot be ruled out",
            None,
            "it was written before archdsl stored one, or the hash was removed; "
            f"{TRUST_HINT}, and save it again to add one",
            code="E608",
        )
    try:
        size = os.path.getsize(path)
    except (OSError, TypeError, ValueError):
        size = None
    try:
        actual = payload_digest(payload, None if size is None else 4 * size + 2**20)
    except _Unhashable as err:
        raise ArchCheckpointError(
            f"checkpoint {path} holds {err}, which archdsl never writes: it was modified after it was written",
            None,
            TRUST_HINT,
            code="E607",
        ) from None
    if stored != actual:
        raise ArchCheckpointError(
            f"checkpoint {path} was modified or damaged after it was written: "
            "its contents do not match the sha256 it stores",
            None,
            TRUST_HINT,
            code="E607",
        )


def remove_stale_temporaries(path: str | os.PathLike[str]) -> list[Path]:
    """Delete the temporary files an interrupted save of ``path`` left (killed between writing and renaming).

    Returns the files removed, for the caller to report. Only for a file
    that one process writes, such as a run folder's checkpoint.
    """
    target = Path(path)
    found = [target.with_name(target.name + ".tmp")]
    found += target.parent.glob(f".{glob.escape(target.stem)}.tmp-*{glob.escape(target.suffix)}")
    removed = []
    for stale in found:
        with contextlib.suppress(OSError):
            if stale.is_file() and not stale.is_symlink():
                stale.unlink()
                removed.append(stale)
    return removed

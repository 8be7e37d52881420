"""Fuzzing checkpoints: flipped bits, truncations and tampered fields, for ``load_checkpoint`` and ``--resume``.

The contract (docs/robustness.md): whatever was done to the file, reading it
either raises an ``archdsl.ArchError`` (whose message renders), or loads it,
and a load that checked the file's SHA-256 gives back exactly what was saved.
Nothing else escapes: no raw torch, pickle or Python exception, and no hang.

Tampered fields are saved two ways: with the old hash, which must then be
refused unless nothing changed, and with a new one (as someone who edits a
file and rehashes it would), or unhashed and read with ``verify=False`` /
``trust_modified`` when no hash can be computed: then every field check
stands alone.

The runs are derandomized and take a few seconds; for more::

    ARCHDSL_FUZZ_EXAMPLES=2000 .venv/bin/pytest tests/test_fuzz_checkpoints.py
"""

from __future__ import annotations

import atexit
import copy
import functools
import math
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from hypothesis import given, note
from hypothesis import strategies as st
from test_robustness import fuzz_settings

import archdsl
from archdsl.checkpoint import DIGEST_KEY, payload_digest, seal
from archdsl.train import TrainConfig, train

MLP = """\
network mlp(num_classes = 10) {
    input x: [64]
    fc: linear(16) -> relu
    out: linear(num_classes)
}
"""


# ---------------------------------------------------------------- the checkpoints and the contract


WORK = Path(tempfile.mkdtemp(prefix="archdsl-fuzz-checkpoints-"))
atexit.register(shutil.rmtree, WORK, ignore_errors=True)
PLAIN, TRAINING = WORK / "plain.pt", WORK / "trained" / "run" / "checkpoint.pt"


@functools.cache
def originals() -> dict[Path, bytes]:
    """The two checkpoints' bytes, made on first use (not when the file is collected)."""
    archdsl.save_checkpoint(archdsl.load(MLP, seed=0), PLAIN)
    assert _training_checkpoint() == TRAINING
    return {path: path.read_bytes() for path in (PLAIN, TRAINING)}


@functools.cache
def payloads() -> dict[Path, dict]:
    return {path: torch.load(path, weights_only=True) for path in originals()}


def _training_checkpoint() -> Path:
    """Epoch 1 of 2 of the MLP on 32 synthetic examples: resuming it trains one epoch in milliseconds."""
    config = TrainConfig(
        arch=MLP,
        data="synthetic",
        epochs=2,
        stop_after=1,
        batch_size=16,
        out=str(TRAINING.parent),
        device="cpu",
        synthetic_size=32,
        progress=False,
    )
    return train(config).out / "checkpoint.pt"


def outcome(action: Callable[[], Any]) -> Any:
    """What ``action`` gives: its result, or the code of the archdsl error it raised (checked to render)."""
    try:
        return action()
    except archdsl.ArchError as err:
        assert err.diagnostics and str(err)
        return err.code


def assert_verified(module: Any, original: Path) -> None:
    """A load that checked the hash gives back the saved sources and weights, bit for bit."""
    saved = payloads()[original]
    meta = module.meta["archdsl"]
    assert meta["sources"] == saved["sources"] and meta["overrides"] == saved["overrides"]
    state = module.state_dict()
    assert set(state) == set(saved["state_dict"])
    for key, tensor in saved["state_dict"].items():
        assert torch.equal(state[key], tensor), key


def load(path: Path, original: Path, verify: bool = True) -> Any:
    result = outcome(lambda: archdsl.load_checkpoint(path, verify=verify))
    if verify and not isinstance(result, str):
        assert_verified(result, original)
    return result


def resume(path: Path, trust_modified: bool = False) -> Any:
    """Resume ``path`` for at most one epoch, into a folder of its own."""
    out = WORK / "resumed"
    config = TrainConfig(
        arch=MLP,
        resume=str(path),
        out=str(out),
        device="cpu",
        progress=False,
        stop_after=1,
        trust_modified=trust_modified,
    )
    return outcome(lambda: train(config))


# ---------------------------------------------------------------- bit flips and truncations


def flipped(data: bytes, bits: list[int]) -> bytes:
    out = bytearray(data)
    for bit in bits:
        out[bit // 8] ^= 1 << (bit % 8)
    return bytes(out)


def bit_flips(original: Path) -> st.SearchStrategy[list[int]]:
    return st.deferred(lambda: st.lists(st.integers(0, len(originals()[original]) * 8 - 1), min_size=1, max_size=4))


@fuzz_settings(150)
@given(bits=bit_flips(PLAIN))
def test_bit_flips_are_refused_or_change_nothing(bits):
    path = WORK / "flipped.pt"
    path.write_bytes(flipped(originals()[PLAIN], bits))
    note(f"flipped bits {bits}")
    load(path, PLAIN)  # verified: an error, or exactly what was saved
    load(path, PLAIN, verify=False)  # unverified: an error or a module, nothing else


@fuzz_settings(30)
@given(bits=bit_flips(TRAINING))
def test_bit_flips_in_a_training_checkpoint_on_resume(bits):
    path = WORK / "flipped-training.pt"
    path.write_bytes(flipped(originals()[TRAINING], bits))
    note(f"flipped bits {bits}")
    resume(path)
    resume(path, trust_modified=True)


@fuzz_settings(60)
@given(which=st.sampled_from([PLAIN, TRAINING]), cut=st.floats(0, 1, exclude_max=True))
def test_truncated_checkpoints_are_refused(which, cut):
    path = WORK / "truncated.pt"
    data = originals()[which]
    path.write_bytes(data[: int(len(data) * cut)])
    result = load(path, which, verify=False)
    assert result == "E601", result  # a zip without its end cannot be read at all
    assert resume(path, trust_modified=True) == "E601"


# ---------------------------------------------------------------- tampered fields


def paths(value: Any, prefix: tuple = ()) -> Iterator[tuple]:
    """Every entry of a payload, as a path of keys and indices (entries of tuples excluded: they cannot be set)."""
    if isinstance(value, dict):
        items = value.items()
    elif isinstance(value, list):
        items = enumerate(value)
    else:
        return
    for key, item in items:
        yield (*prefix, key)
        yield from paths(item, (*prefix, key))


@functools.cache
def entries(original: Path) -> list[tuple]:
    return sorted(paths(payloads()[original]), key=repr)


NUMBERS = st.sampled_from([0, 1, -1, 2, 3, 7, 2**31, 2**63, 10**12, -(10**12), 10**30, 0.0, -0.5, 0.5, 1.5, 1e300])
FLOATS = st.sampled_from([math.nan, math.inf, -math.inf])
DTYPES = st.sampled_from([torch.float32, torch.float64, torch.bfloat16, torch.int64, torch.uint8, torch.bool])
SHAPES = st.lists(st.integers(0, 4), max_size=3)


@st.composite
def tensors(draw) -> torch.Tensor:
    shape, dtype = draw(SHAPES), draw(DTYPES)
    tensor = (torch.arange(math.prod(shape)) % 5).reshape(shape).to(dtype)
    kind = draw(st.sampled_from(["dense", "dense", "sparse", "quantized", "non-contiguous"]))
    if kind == "sparse" and tensor.dim() >= 1:
        return tensor.to_sparse()
    if kind == "quantized" and dtype == torch.float32:
        return torch.quantize_per_tensor(tensor, 0.5, 0, torch.qint8)
    if kind == "non-contiguous" and tensor.dim() == 2:
        return tensor.t()
    return tensor


def values() -> st.SearchStrategy[Any]:
    leaves = st.one_of(
        st.none(),
        st.booleans(),
        NUMBERS,
        FLOATS,
        st.text(max_size=8),
        st.sampled_from(["sgd", "adamw", "cosine", "digits", "synthetic", "mlp", "<string>", "x" * 5000]),
        tensors(),
    )
    return st.recursive(
        leaves,
        lambda inner: st.one_of(
            st.lists(inner, max_size=3), st.dictionaries(st.one_of(st.text(max_size=4), NUMBERS), inner, max_size=3)
        ),
        max_leaves=6,
    )


@st.composite
def tamperings(draw, original: Path) -> tuple[dict, str]:
    """A copy of ``original``'s payload with one to three entries replaced or deleted, and what was done."""
    payload = copy.deepcopy(payloads()[original])
    done = []
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(entries(original)))
        parent = payload
        try:
            for key in path[:-1]:
                parent = parent[key]
            current = parent[path[-1]]
        except (KeyError, IndexError, TypeError):
            continue  # an earlier change removed it
        if draw(st.booleans()) and isinstance(parent, dict):
            del parent[path[-1]]
            done.append(f"deleted {path}")
        else:
            like = draw(st.booleans()) and isinstance(current, torch.Tensor)
            value = current.clone().fill_(draw(NUMBERS) % 256) if like else draw(values())
            parent[path[-1]] = value
            done.append(f"set {path} = {type(value).__name__}")
    return payload, "; ".join(done)


def save_tampered(payload: dict, path: Path, rehash: bool) -> bool:
    """Save ``payload`` (with a new hash when asked and possible); returns whether the file is sealed."""
    if rehash:
        try:
            seal(payload)
        except Exception:  # noqa: BLE001 - a value that cannot be hashed: the file is saved unsealed
            payload.pop(DIGEST_KEY, None)
            rehash = False
    torch.save(payload, path)
    return rehash


def unchanged(payload: dict, original: Path) -> bool:
    try:
        return payload_digest(payload) == payloads()[original][DIGEST_KEY]
    except Exception:  # noqa: BLE001 - unhashable: certainly changed
        return False


@fuzz_settings(200)
@given(tampered=tamperings(PLAIN))
def test_tampered_fields_with_the_old_hash_are_refused(tampered):
    payload, done = tampered
    note(done)
    path = WORK / "tampered.pt"
    save_tampered(payload, path, rehash=False)
    result = load(path, PLAIN)
    if not unchanged(payload, PLAIN):
        assert isinstance(result, str), f"a modified checkpoint loaded: {done}"
    load(path, PLAIN, verify=False)


@fuzz_settings(200)
@given(tampered=tamperings(PLAIN))
def test_tampered_fields_with_a_new_hash_are_checked_field_by_field(tampered):
    payload, done = tampered
    note(done)
    path = WORK / "rehashed.pt"
    sealed = save_tampered(payload, path, rehash=True)
    outcome(lambda: archdsl.load_checkpoint(path, verify=sealed))


@fuzz_settings(60)
@given(tampered=tamperings(TRAINING), rehash=st.booleans())
def test_tampered_training_state_on_resume(tampered, rehash):
    payload, done = tampered
    note(done)
    path = WORK / "tampered-training.pt"
    sealed = save_tampered(payload, path, rehash)
    result = resume(path)
    if not sealed and not unchanged(payload, TRAINING):
        assert isinstance(result, str), f"a modified checkpoint was resumed: {done}"
    resume(path, trust_modified=True)


@pytest.mark.parametrize("original", [PLAIN, TRAINING], ids=["plain", "training"])
def test_the_untouched_checkpoints_load_and_resume(original):
    module = load(original, original)
    assert not isinstance(module, str), module
    if original == TRAINING:
        result = resume(original)
        assert not isinstance(result, str) and [h["epoch"] for h in result.history] == [1, 2]

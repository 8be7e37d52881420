"""Shared fixtures: the repository root and small helper networks."""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def _libc():
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:  # not glibc: nothing to trim
        return None


_LIBC = _libc()


def trim_heap() -> None:
    """Hand the heap's free memory back to the operating system.

    glibc keeps freed blocks smaller than its (self-raising) mmap threshold
    on the heap; after a few 100-million-parameter models the suite's
    resident memory grew past 8 GB although no model was alive any more.
    """
    if _LIBC is not None and hasattr(_LIBC, "malloc_trim"):
        _LIBC.malloc_trim(0)


def release_memory() -> None:
    """Collect garbage, then trim the heap."""
    gc.collect()
    trim_heap()


# Files whose tests hold the most memory at once (two copies of a 100-million-parameter network with their
# gradients), run first: later tests leave the process a gigabyte or two larger (freed memory that glibc
# keeps), and these on top of that made the suite's peak.
MEMORY_HEAVY_FIRST = ("test_zoo_torchvision.py", "test_zoo_modern.py", "test_zoo_efficient.py")


def pytest_collection_modifyitems(session, config, items) -> None:
    """Move the memory-heavy files to the front, keeping every file's own order (and its fixtures' grouping)."""
    first = {name: rank for rank, name in enumerate(MEMORY_HEAVY_FIRST)}
    items.sort(key=lambda item: first.get(item.path.name, len(first)))


def pytest_collection_finish(session) -> None:
    """Freeze what importing the test modules made (torch, torchvision, ...): collections skip it from now on."""
    gc.collect()
    gc.freeze()


def resident_bytes() -> int:
    """This process's resident memory now (0 where /proc is missing)."""
    try:
        with open("/proc/self/statm", encoding="ascii") as statm:
            return int(statm.read().split()[1]) * 4096
    except OSError:
        return 0


_COLLECT_ABOVE = 256 << 20  # resident growth since the last collection that is worth a collection
_last_collected = [0]


@pytest.fixture(autouse=True)
def _release_memory_after_each_test():
    """A compiled GraphModule lives in reference cycles, so a test's models die at the next collection,
    not when the test returns. After a test that grew the process, collect and trim so that models do
    not pile up; after the others only trim (microseconds): a collection after every test cost minutes."""
    yield
    if resident_bytes() - _last_collected[0] > _COLLECT_ABOVE:
        release_memory()
        _last_collected[0] = resident_bytes()
    else:
        trim_heap()


@pytest.fixture
def repo_root() -> Path:
    return REPO


TINY_RESNET = '''
"""A tiny residual network for fast tests."""
block basic(planes, stride = 1) {
    conv1: conv(planes, k=3, stride=stride, pad=1, bias=false) -> bn1: batchnorm -> relu1: relu
    conv2: conv(planes, k=3, pad=1, bias=false) -> bn2: batchnorm
    skip in -> bn2 via projection
    relu2: relu
}

network tiny(num_classes = 10, width = 8) {
    input image: [3, 16, 16]
    conv1: conv(width, k=3, pad=1, bias=false) -> bn1: batchnorm -> relu: relu
    layer1: stage basic(width) x 2
    layer2: stage basic(width * 2) x 2, first(stride=2)
    avgpool: adaptive_avgpool(1) -> flatten -> fc: linear(num_classes)
}
'''


@pytest.fixture
def tiny_resnet() -> str:
    return TINY_RESNET

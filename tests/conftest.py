"""Shared fixtures: the repository root and small helper networks."""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import os
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


# The files whose tests hold the most memory at once: two copies of a network of up to 140 million parameters
# with their gradients (up to 2.3 GB). `make test` runs them on their own, after the rest: in a fresh process,
# and never beside another worker (the rest runs on two xdist workers). A plain `pytest` runs them first,
# before the process has grown by what later tests leave behind (freed memory that glibc keeps).
MEMORY_HEAVY = (
    "test_zoo_torchvision.py",
    "test_zoo_modern.py",
    "test_zoo_efficient.py",
    "test_zoo_mobile.py",
    "test_zoo_transformers.py",
    "test_zoo.py",  # one training step of every zoo network: VGG's weights, gradients and momentum are 1.6 GB
    "test_big_graphs.py",  # networks of 10,000 layers, built once for the file
    "test_zoo_aux.py",  # two Inception-v3s training at 299 pixels: 0.8 GB above torch's own 0.7 GB
)
# `make test` runs these memory-heavy files in a second process, so that what the torchvision comparisons
# leave behind (freed memory that glibc keeps: 2 GB) is not under their own peaks; one process held 4.1 GB.
SECOND_PROCESS = ("test_zoo_transformers.py", "test_zoo.py", "test_big_graphs.py", "test_zoo_aux.py")


# Each process that imports torch (this CUDA build of it) holds about 0.5 GB of its own. A test marked
# `many_processes` starts several (torchrun: a launcher and two workers); it runs with the memory-heavy
# files, first, while the one process beside it is still small, never beside two grown xdist workers.


def pytest_collection_modifyitems(session, config, items) -> None:
    """Mark and front the memory-heavy tests, keeping every file's own order (and its fixtures' grouping).

    `make test` runs the rest with `--dist loadfile`: each file on one worker, so its module-scoped
    fixtures are built once, and what it imports or leaves behind grows one worker only."""
    first = {name: rank for rank, name in enumerate(MEMORY_HEAVY)}

    def rank(item) -> int:
        return -1 if item.get_closest_marker("many_processes") else first.get(item.path.name, len(first))

    items.sort(key=rank)
    for item in items:
        if rank(item) < len(first):
            item.add_marker(pytest.mark.memory_heavy)
        if item.path.name in SECOND_PROCESS:
            item.add_marker(pytest.mark.second_process)


def _share_the_cores() -> None:
    """Each of N xdist workers gets 1/N of the cores for torch's threads (they would otherwise contend)."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers > 1:
        import torch

        torch.set_num_threads(max(1, (os.cpu_count() or 1) // workers))


_share_the_cores()


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

"""Big graphs: far larger networks than the zoo's build, compile, copy, run, save and reload in bounded time and memory.

Three workloads, each in its own interpreter (:data:`WORKER`) so that its peak
memory can be read with ``resource.getrusage``; they run at the same time:

* ``residual``: the zoo's ``cifar_resnet`` with ``depth=10004`` (5,001 basic
  blocks, 10,003 convolutions and a classifier: about 35,000 nodes) and
  ``width=2`` to keep the weights small;
* ``dense``: one dense stage of 63 DenseNet-BC layers (``connect=dense``), whose
  concatenations take 2,079 edges in that one block;
* ``long_file``: a 100,000-line source file (one layer statement a line), which
  must parse and build without hitting the recursion limit or a quadratic pass.

For the two networks the worker does what a user does: ``archdsl.graph``
(parse, elaborate, infer shapes, validate), ``archdsl.load``, ``copy.deepcopy``,
a forward pass on a tiny input, ``save_checkpoint`` and ``load_checkpoint``,
checking that the copy and the reloaded module hold the same weights and
compute the same output. Each phase has a bound on its CPU time (five times
what it takes here, see MEASURED; CPU time rather than wall-clock time, which
a busy machine inflates several times over) and each workload a bound on its
peak memory growth over the interpreter with torch imported (three times), so
that they catch blowups (a quadratic pass, a copy of every tensor per node),
not noise; a workload still running after HANG_SECONDS is a hang.

Torch runs single-threaded in the workers: with tiny tensors, several
processes and spinning OpenMP threads on a busy machine, a forward pass can
otherwise take seconds instead of milliseconds.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

RESIDUAL_DEPTH = 10_004  # 6n + 2 with n = 1,667 blocks per stage
DENSE_LAYERS = 63  # concat edges in the block: sum(i + 1 for i in 1..62) into the layers + 64 into `block1.out`
LONG_LINES = 100_000

DENSE_SOURCE = f'''"""One wide dense block: {DENSE_LAYERS} DenseNet-BC layers with a tiny growth rate."""
import "lib/densenet.arch"

network big_dense(layers = {DENSE_LAYERS}, growth = 2) {{
    input image: [3, 8, 8]
    conv0: conv(4, k=3, pad=1, bias=false)
    block1: stage cifar_dense_layer(growth, bottleneck=true) x layers, connect=dense
    norm: batchnorm -> relu: relu -> avgpool: adaptive_avgpool(1) -> flatten -> fc: linear(10)
}}
'''

# CPU seconds per phase and peak memory growth (MiB), measured on a 2-core machine shared with other jobs.
MEASURED = {
    "residual": {
        "graph": 3.4,
        "load": 7.6,
        "deepcopy": 7.3,
        "forward": 0.5,
        "save": 2.7,
        "reload": 20.6,
        "memory_mib": 1000,
    },
    "dense": {
        "graph": 0.2,
        "load": 0.15,
        "deepcopy": 0.2,
        "forward": 0.01,
        "save": 0.02,
        "reload": 0.2,
        "memory_mib": 30,
    },
    "long_file": {"graph": 17.6, "memory_mib": 500},
}
TIME_FACTOR = 5  # CPU-time bounds are TIME_FACTOR x MEASURED (other CPUs, Python and torch versions) ...
FLOOR_SECONDS = 5.0  # ... but never below this, for phases too short to measure well
MEMORY_FACTOR = 3  # memory hardly varies from run to run
FLOOR_MIB = 256

WORKER = r"""
import copy, json, os, resource, sys, tempfile, time
import torch
torch.set_num_threads(1)
import archdsl

def peak_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux

workload, source, overrides, shape = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), json.loads(sys.argv[4])
baseline = peak_mib()
times, wall, facts = {}, {}, {}

def timed(phase, fn):
    start, start_cpu = time.perf_counter(), time.process_time()
    result = fn()
    times[phase] = time.process_time() - start_cpu
    wall[phase] = time.perf_counter() - start
    return result

g = timed("graph", lambda: archdsl.graph(source, **overrides))
ops = [d["op"] for _, d in g.nodes(data=True)]
facts["nodes"] = g.number_of_nodes()
facts["weighted_layers"] = sum(op in ("conv", "linear") for op in ops)
facts["adds"] = ops.count("add")
facts["concat_edges_per_stage"] = {}
for u, v, d in g.edges(data=True):
    if d["kind"] == "concat":
        stage = v.split(".")[0]
        facts["concat_edges_per_stage"][stage] = facts["concat_edges_per_stage"].get(stage, 0) + 1

if shape is not None:
    module = timed("load", lambda: archdsl.load(source, seed=0, **overrides))
    module.eval()
    if workload == "residual":
        # Zero the last batch norm of every block (torchvision's zero_init_residual): each block then
        # passes its input on, so 5,001 blocks give a finite output that still depends on the input
        # and on every weight being restored (default initialisation overflows to NaN at this depth).
        with torch.no_grad():
            for name, sub in module.named_modules():
                if name.endswith(".bn2"):
                    sub.weight.zero_()
    x = torch.randn(*shape, generator=torch.Generator().manual_seed(0))
    copied = timed("deepcopy", lambda: copy.deepcopy(module))
    with torch.no_grad():
        y = timed("forward", lambda: module(x))
        facts["output_shape"] = list(y.shape)
        facts["output_finite"] = bool(torch.isfinite(y).all())
        facts["output_std"] = float(y.std())
        facts["copy_same_output"] = bool(torch.equal(copied(x), y))
    own = module.state_dict()
    facts["weights"] = len(own)
    copy_state = copied.state_dict()
    facts["copy_same_weights"] = list(copy_state) == list(own) and all(copy_state[k].equal(own[k]) for k in own)
    facts["copy_shares_no_storage"] = all(
        copy_state[k].data_ptr() != own[k].data_ptr() for k in own if own[k].numel()
    )
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "big.ckpt")
        timed("save", lambda: archdsl.save_checkpoint(module, path))
        facts["checkpoint_mib"] = os.path.getsize(path) / 2**20
        reloaded = timed("reload", lambda: archdsl.load_checkpoint(path))
    reloaded.eval()
    state = reloaded.state_dict()
    facts["reload_same_weights"] = list(state) == list(own) and all(state[k].equal(own[k]) for k in own)
    with torch.no_grad():
        facts["reload_same_output"] = bool(torch.equal(reloaded(x), y))

report = {"times": times, "wall": wall, "facts": facts, "memory_mib": peak_mib() - baseline, "baseline_mib": baseline}
print(json.dumps(report))
"""


def long_file_source() -> str:
    """A valid file of exactly LONG_LINES lines: a network with one layer statement a line."""
    head = "# A network written out longhand: one layer statement a line.\nnetwork long_file {\n    input x: [4]\n"
    body = "".join("    fc: linear(4)\n" if i == 0 else "    relu\n" for i in range(LONG_LINES - 5))
    return head + body + "    out: linear(2)\n}\n"


WORKLOADS = {
    # name: (a zoo name or the text of a file, overrides, input shape for the forward pass or None)
    "residual": ("cifar_resnet", {"depth": RESIDUAL_DEPTH, "width": 2}, [1, 3, 32, 32]),
    "dense": (DENSE_SOURCE, {}, [1, 3, 8, 8]),
    "long_file": (long_file_source, {}, None),
}
HANG_SECONDS = 900  # for one workload, whatever the machine: past this something hangs


def run_workloads(names: list[str], folder: Path) -> dict[str, dict]:
    """Run :data:`WORKER` for each workload, all at once; name -> its JSON report.

    Source texts are written to ``folder/NAME.arch`` (a file, as users have them; also, a
    100,000-line text is too long for one command-line argument).
    """
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    running = {}
    for name in names:
        source, overrides, shape = WORKLOADS[name]
        if callable(source):
            source = source()
        if "\n" in source:
            path = folder / f"{name}.arch"
            path.write_text(source, encoding="utf-8")
            source = str(path)
        args = [sys.executable, "-c", WORKER, name, source, json.dumps(overrides), json.dumps(shape)]
        running[name] = subprocess.Popen(
            args, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
    reports = {}
    try:
        for name, process in running.items():
            stdout, stderr = process.communicate(timeout=HANG_SECONDS)
            assert process.returncode == 0, f"{name} failed:\n{stderr[-5000:]}"
            reports[name] = json.loads(stdout.strip().splitlines()[-1])
    finally:
        for process in running.values():
            if process.poll() is None:
                process.kill()
                process.wait()
    return reports


@pytest.fixture(scope="module")
def reports(tmp_path_factory) -> dict[str, dict]:
    return run_workloads(list(WORKLOADS), tmp_path_factory.mktemp("big_graphs"))


def test_long_file_has_the_promised_size():
    text = long_file_source()
    assert text.count("\n") == LONG_LINES and text.endswith("}\n")


# ----------------------------------------------------------------- the graphs are as big as promised


def test_residual_network_has_ten_thousand_layers(reports):
    facts = reports["residual"]["facts"]
    assert facts["weighted_layers"] == RESIDUAL_DEPTH  # 1 + 2 x 5,001 convolutions and the classifier
    assert facts["adds"] == 3 * (RESIDUAL_DEPTH - 2) // 6  # one residual sum per block
    assert facts["nodes"] > 35_000


def test_dense_block_has_two_thousand_concat_edges(reports):
    per_stage = reports["dense"]["facts"]["concat_edges_per_stage"]
    assert set(per_stage) == {"block1"}
    assert per_stage["block1"] == sum(i + 1 for i in range(1, DENSE_LAYERS)) + DENSE_LAYERS + 1 >= 2000


def test_long_file_builds_every_line(reports):
    assert reports["long_file"]["facts"]["nodes"] == LONG_LINES - 5 + 1 + 1  # the statements, input, `out`


# ----------------------------------------------------------------- copies and reloads are faithful


@pytest.mark.parametrize("name", ["residual", "dense"])
def test_forward_pass_runs(reports, name):
    facts = reports[name]["facts"]
    assert facts["output_shape"] == [1, 10]
    assert facts["output_finite"], "the forward pass gave NaN or infinity"
    assert facts["output_std"] > 0, "the output does not depend on the input"


@pytest.mark.parametrize("name", ["residual", "dense"])
def test_deepcopy_is_independent_and_equal(reports, name):
    facts = reports[name]["facts"]
    assert facts["copy_same_weights"]
    assert facts["copy_shares_no_storage"]
    assert facts["copy_same_output"]


@pytest.mark.parametrize("name", ["residual", "dense"])
def test_checkpoint_reloads_equal(reports, name):
    facts = reports[name]["facts"]
    assert facts["weights"] > 0
    assert facts["reload_same_weights"]
    assert facts["reload_same_output"]


# ----------------------------------------------------------------- bounded time and memory


def _phases():
    for name, measured in MEASURED.items():
        for phase in measured:
            if phase != "memory_mib":
                yield pytest.param(name, phase, id=f"{name}-{phase}")


@pytest.mark.parametrize(("name", "phase"), list(_phases()))
def test_phase_time_is_bounded(reports, name, phase):
    took = reports[name]["times"][phase]
    bound = max(FLOOR_SECONDS, TIME_FACTOR * MEASURED[name][phase])
    assert took < bound, (
        f"{name}: {phase} took {took:.1f} CPU seconds (bound {bound:.0f} s, measured {MEASURED[name][phase]} s)"
    )


@pytest.mark.parametrize("name", list(MEASURED))
def test_peak_memory_is_bounded(reports, name):
    grew = reports[name]["memory_mib"]
    bound = max(FLOOR_MIB, MEMORY_FACTOR * MEASURED[name]["memory_mib"])
    assert grew < bound, f"{name}: peak memory grew by {grew:.0f} MiB (bound {bound:.0f} MiB)"


def test_every_phase_has_a_bound(reports):
    for name, report in reports.items():
        assert set(report["times"]) == set(MEASURED[name]) - {"memory_mib"}, name

"""Determinism: the same file gives the same graph, diagram, code and weights, whatever PYTHONHASHSEED is.

Set and dict iteration order of strings changes with ``PYTHONHASHSEED``, so a
pass that iterates a set (or sorts by ``hash``) would give a different node
order, DOT text or generated ``forward`` from one run to the next. Each seed
runs in its own interpreter (:data:`PROBE`), which prints digests of:

* the node order and edge order (with attributes) of ``archdsl.graph``;
* the DOT text of ``archdsl.render.render_dot`` at two levels of detail;
* the generated code of ``archdsl.load(...).code``;
* the JSON that ``archdsl graph`` writes (the real CLI, run in-process);
* with a seed, the initial weights (sha256 over every tensor's bytes, in key order);
* the hint of an unknown override (E208), which lists the network's parameters.

Every digest must agree across the seeds. The networks exercise imports,
dense (concat) stages, skips with zero-padding and projection shortcuts, and
four-way concatenations (Inception).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

# (zoo name, overrides): small settings keep the four interpreters fast.
NETWORKS = {
    "cifar_densenet_bc": {"depth": 40, "growth": 6},  # dense stages, transitions, lib/densenet.arch
    "googlenet": {"num_classes": 10, "size": 64},  # four-way concats, lib/inception.arch
    "cifar_resnet": {"depth": 20, "shortcut": "projection"},  # skips with projections, lib/resnet.arch
    "resnet18": {"num_classes": 10},  # projection shortcuts named downsample.0/1
}
SEEDS = ["0", "1", "12345", "random"]
WEIGHT_SEED = 7

PROBE = r"""
import hashlib, json, sys
import archdsl
from archdsl.render import render_dot
from typer.testing import CliRunner
from archdsl.cli import app

networks = json.loads(sys.argv[1])
weight_seed = int(sys.argv[2])

def digest(text):
    return hashlib.sha256(text.encode("utf-8")).hexdigest()

out = {"hash_of_a_string": hash("archdsl"), "networks": {}}
for name, overrides in networks.items():
    g = archdsl.graph(name, **overrides)
    nodes = list(g.nodes)
    edges = [(u, v, d["kind"], d["position"]) for u, v, d in g.edges(data=True)]
    attrs = [(n, d["op"], repr(d["args"]), d["shape"], d["input_shapes"], [grp.path for grp in d["groups"]])
             for n, d in g.nodes(data=True)]
    module = archdsl.load(name, seed=weight_seed, **overrides)
    weights = hashlib.sha256()
    for key, tensor in module.state_dict().items():
        weights.update(key.encode())
        weights.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    params = [arg for key, value in overrides.items() for arg in ("-p", f"{key}={value}")]
    cli = CliRunner().invoke(app, ["graph", name, *params])
    assert cli.exit_code == 0, cli.output
    out["networks"][name] = {
        "node_count": len(nodes),
        "concat_edges": sum(1 for e in edges if e[2] == "concat"),
        "skip_edges": sum(1 for e in edges if e[2] == "skip"),
        "nodes": digest(json.dumps(nodes)),
        "edges": digest(json.dumps(edges)),
        "attributes": digest(repr(attrs)),
        "dot_block": digest(render_dot(g)),
        "dot_layer": digest(render_dot(g, level="layer", dense_bus=False)),
        "code": digest(module.code),
        "graph_json": digest(cli.stdout),
        "weights": weights.hexdigest(),
        "weight_count": len(module.state_dict()),
    }
try:  # E208's hint lists the network's parameters
    archdsl.graph("cifar_resnet", no_such_parameter=1)
except archdsl.ArchError as error:
    out["unknown_parameter_hint"] = error.hint
print(json.dumps(out))
"""


# Probes run two at a time: each is a Python that imports torch (about 0.5 GB), and the suite stays under 4 GB.
AT_ONCE = 2


def run_probes(hash_seeds: list[str]) -> dict[str, dict]:
    """Run :data:`PROBE` once per ``PYTHONHASHSEED`` value, :data:`AT_ONCE` at a time; seed -> its JSON output."""
    results: dict[str, dict] = {}
    for start in range(0, len(hash_seeds), AT_ONCE):
        results |= _run_at_once(hash_seeds[start : start + AT_ONCE])
    return results


def _run_at_once(hash_seeds: list[str]) -> dict[str, dict]:
    args = [sys.executable, "-c", PROBE, json.dumps(NETWORKS), str(WEIGHT_SEED)]
    running = {
        seed: subprocess.Popen(
            args,
            cwd=REPO,
            env={**os.environ, "PYTHONHASHSEED": seed},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for seed in hash_seeds
    }
    results = {}
    for seed, process in running.items():
        try:
            stdout, stderr = process.communicate(timeout=300)
        except subprocess.TimeoutExpired:
            for other in running.values():
                other.kill()
            raise
        assert process.returncode == 0, f"PYTHONHASHSEED={seed}:\n{stderr}"
        results[seed] = json.loads(stdout.strip().splitlines()[-1])
    return results


@pytest.fixture(scope="module")
def probes() -> dict[str, dict]:
    return run_probes(SEEDS)


def test_the_seeds_really_change_string_hashing(probes):
    """Guards the test itself: if every interpreter hashed alike, the comparison would prove nothing."""
    hashes = {seed: p["hash_of_a_string"] for seed, p in probes.items()}
    assert len(set(hashes.values())) == len(SEEDS), hashes


def test_the_networks_exercise_merges(probes):
    found = probes[SEEDS[0]]["networks"]
    assert found["cifar_densenet_bc"]["concat_edges"] >= 3 * (2 + 3 + 4 + 5 + 6 + 7)  # 6 layers per block
    assert found["googlenet"]["concat_edges"] == 9 * 4  # nine Inception modules, four branches each
    assert found["cifar_resnet"]["skip_edges"] >= 9  # nine residual blocks (plus projection paths)
    assert found["resnet18"]["skip_edges"] >= 8
    assert all(n["weight_count"] > 0 for n in found.values())


ASPECTS = ["nodes", "edges", "attributes", "dot_block", "dot_layer", "code", "graph_json", "weights"]


@pytest.mark.parametrize("aspect", ASPECTS)
@pytest.mark.parametrize("network", list(NETWORKS))
def test_same_across_hash_seeds(probes, network, aspect):
    values = {seed: p["networks"][network][aspect] for seed, p in probes.items()}
    assert len(set(values.values())) == 1, f"{network}: {aspect} differs across PYTHONHASHSEED values: {values}"


def test_unknown_parameter_hint_lists_parameters_in_source_order(probes):
    hints = {seed: p["unknown_parameter_hint"] for seed, p in probes.items()}
    expected = "its parameters are `depth`, `num_classes`, `shortcut`, `residual`, `width`"
    assert set(hints.values()) == {expected}, f"differs across PYTHONHASHSEED values or is not in source order: {hints}"


def test_same_within_one_interpreter():
    """Building twice in one process gives identical results too (no state leaks between builds)."""
    import archdsl
    from archdsl.render import render_dot

    name, overrides = "cifar_densenet_bc", NETWORKS["cifar_densenet_bc"]
    first, second = archdsl.graph(name, **overrides), archdsl.graph(name, **overrides)
    assert list(first.nodes) == list(second.nodes)
    assert list(first.edges(data=True)) == list(second.edges(data=True))
    assert render_dot(first) == render_dot(second)
    a, b = archdsl.load(name, seed=WEIGHT_SEED, **overrides), archdsl.load(name, seed=WEIGHT_SEED, **overrides)
    assert a.code == b.code
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sa) == list(sb)
    assert all(sa[k].equal(sb[k]) for k in sa)
    c = archdsl.load(name, seed=WEIGHT_SEED + 1, **overrides)
    assert not all(sa[k].equal(c.state_dict()[k]) for k in sa), "a different seed must give different weights"

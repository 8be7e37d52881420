"""The summary's static figures are true, and the graph can be exported for other tools."""

from __future__ import annotations

import json
import subprocess
import sys

import networkx as nx
import pytest
import torch
import torchvision
from torch.fx.passes.shape_prop import ShapeProp
from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count
from torchvision.models.feature_extraction import create_feature_extractor
from zoo_configs import small_overrides

import archdsl
from archdsl import zoo_names
from archdsl.compile import fx_name
from archdsl.summary import summarize


def small(name: str) -> dict:
    return small_overrides(name)


@pytest.mark.parametrize("name", zoo_names())
def test_static_figures_match_the_compiled_model(name):
    overrides = small(name)
    g = archdsl.graph(name, **overrides)
    module = archdsl.load(name, **overrides).eval()
    assert sum(p.numel() for p in module.parameters()) == g.graph["total_params"]
    inputs = [example_input(g, i, batch=2) for i in g.graph["inputs"]]
    ShapeProp(module).propagate(*inputs)
    seen = {
        n.name: tuple(n.meta["tensor_meta"].shape[0 if n.op == "get_attr" else 1 :])  # a param has no batch
        for n in module.graph.nodes
        if hasattr(n.meta.get("tensor_meta"), "shape")  # not a tuple of several outputs (chunk, split)
    }
    checked = 0
    for node, data in g.nodes(data=True):
        if fx_name(node) in seen:
            assert seen[fx_name(node)] == data["shape"], node
            checked += 1
    assert checked >= 0.9 * g.number_of_nodes()
    assert runtime_macs(module, *[x[:1] for x in inputs]) == pytest.approx(g.graph["total_macs"], rel=0.01)


def example_input(g, node: str, batch: int) -> torch.Tensor:
    """A random batch for an input node: token ids below its `high` for `dtype=int`, else normal floats."""
    data = g.nodes[node]
    if data["args"].get("dtype") == "int":
        return torch.randint(0, data["args"]["high"], (batch, *data["shape"]))
    return torch.randn(batch, *data["shape"])


def _cpu_attention_flops(query, key, value, *args, out_shape=None, **kwargs) -> int:
    return sdpa_flop_count(query, key, value)


def runtime_macs(module: torch.nn.Module, *inputs: torch.Tensor) -> float:
    """Multiply-accumulates of one forward pass as PyTorch's FlopCounterMode counts them (flops / 2).

    FlopCounterMode knows the CUDA kernels of scaled dot-product attention but
    not the CPU one, which it is told here (the same formula). Gradients stay
    on: with them off an eval-mode nn.MultiheadAttention takes its fast path,
    one fused op the counter does not see at all.
    """
    cpu_attention = {torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _cpu_attention_flops}
    with FlopCounterMode(display=False, custom_mapping=cpu_attention) as counter:
        module(*inputs)
    return counter.get_total_flops() / 2


TRANSFORMER = """
block encoder(heads) {
    ln1: layernorm -> attn: attention(heads)
    skip in -> attn
    ln2: layernorm -> fc1: linear(128) -> act: gelu -> fc2: linear(32)
    skip attn -> fc2
}

block primitive_attention {
    q: linear(32)
    in -> k: linear(32)
    in -> v: linear(16)
    s: sdpa(q, k, v, causal=true) -> out: linear(32)
}

network tiny_transformer {
    input x: [10, 32]
    e1: encoder(4)
    e2: encoder(8)
    p: primitive_attention
    head: layernorm -> fc: linear(5)
}
"""


@pytest.mark.parametrize("mode", ["train", "eval"])
def test_transformer_figures_match_the_runtime(mode):
    """Attention's T² term, linear layers on sequences and the norms: the summary's MACs are FlopCounterMode's."""
    g = archdsl.graph(TRANSFORMER)
    module = archdsl.load(TRANSFORMER, seed=0).train(mode == "train")
    assert sum(p.numel() for p in module.parameters()) == g.graph["total_params"]
    x = torch.randn(1, 10, 32)
    attention = 3 * 10 * 32 * 32 + 2 * 10 * 10 * 32 + 10 * 32 * 32
    assert g.nodes["e1.attn"]["macs"] == g.nodes["e2.attn"]["macs"] == attention
    assert g.nodes["e1.fc1"]["macs"] == 10 * 32 * 128
    assert g.nodes["p.s"]["macs"] == 10 * 10 * (32 + 16)
    assert runtime_macs(module, x) == g.graph["total_macs"]
    total = summarize(g)[-1]
    assert total.macs == g.graph["total_macs"] and total.params == g.graph["total_params"]


def test_summary_rows_add_up_and_fold():
    g = archdsl.graph("resnet50")
    for level in ("layer", "block", "stage"):
        rows = summarize(g, level)
        total = rows[-1]
        assert total.kind == "total"
        assert total.params == g.graph["total_params"] and total.macs == g.graph["total_macs"]
        assert sum(r.params for r in rows if r.kind == "row") == total.params
    layer_rows = [r for r in summarize(g, "layer") if r.kind == "row"]
    assert len(layer_rows) == g.number_of_nodes()
    subtotals = {r.path: r.params for r in summarize(g, "layer") if r.kind == "subtotal"}
    assert subtotals["layer1 (subtotal)"] == sum(d["params"] for n, d in g.nodes(data=True) if n.startswith("layer1."))
    assert [r.op for r in summarize(g, "block") if r.path.startswith("layer3.1")] == ["bottleneck x 5"]


def test_feature_extraction_matches_torchvision():
    reference = torchvision.models.resnet50().eval()
    theirs = create_feature_extractor(reference, return_nodes=["layer2", "layer3", "layer4"])
    ours = archdsl.load("resnet50", outputs=["layer2", "layer3", "layer4"]).eval()
    state = {k: v for k, v in reference.state_dict().items() if k in ours.state_dict()}
    ours.load_state_dict(state, strict=True)
    assert "fc.weight" not in ours.state_dict()  # only what the outputs need is built
    x = torch.randn(2, 3, 96, 96)
    a, b = ours(x), theirs(x)
    assert set(a) == {"layer2", "layer3", "layer4"}
    for key in a:
        torch.testing.assert_close(a[key], b[key])


def test_feature_extraction_names_and_errors():
    module = archdsl.load("densenet121", size=64, outputs={"early": "features.denseblock1", "conv": "features.conv0"})
    out = module(torch.randn(1, 3, 64, 64))
    assert out["early"].shape == (1, 256, 16, 16) and out["conv"].shape == (1, 64, 32, 32)
    with pytest.raises(archdsl.ArchNameError, match="did you mean `layer2`"):
        archdsl.load("resnet18", outputs=["layr2"])


def test_graph_repr_is_a_compact_summary():
    text = repr(archdsl.graph("resnet50"))
    assert text.startswith("<ArchGraph resnet50: 176 nodes, 25,557,032 parameters")
    assert "image [3, 224, 224] -> fc [1000]" in text


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "archdsl", *args], capture_output=True, text=True)


def test_cli_summary():
    result = run("summary", "resnet18", "-p", "num_classes=10")
    assert result.returncode == 0, result.stderr
    assert "layer1 (subtotal)" in result.stdout and "11,181,642" in result.stdout
    folded = run("summary", "resnet50", "--depth", "2")
    assert "bottleneck x 5" in folded.stdout
    assert run("summary", "resnet18", "--depth", "7").returncode == 2


def test_cli_graph_json_and_graphml(tmp_path):
    result = run("graph", "densenet121")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    g = nx.node_link_graph(data, edges="edges")
    assert g.number_of_nodes() == 428 and g.graph["total_params"] == 7_978_856
    assert g.nodes["features.conv0"]["shape"] == [64, 112, 112]
    path = tmp_path / "g.graphml"
    assert run("graph", "resnet18", "-o", str(path)).returncode == 0
    h = nx.read_graphml(path)
    assert h.nodes["layer2.0.downsample.0"]["op"] == "conv"
    assert h.edges["layer2.0.downsample.1", "layer2.0.add"]["kind"] == "skip"

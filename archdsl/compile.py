"""Stage 4: validated graph -> ``torch.fx.GraphModule``, built directly (no tracing).

Stateful ops become submodules at their node's path, so ``state_dict`` keys
are the graph's module paths; stateless ops become ``call_function`` nodes
(``torch.add``-style merges, ``torch.cat``, pooling functions).
"""

from __future__ import annotations

import builtins
import keyword
import re
from typing import Any

import networkx as nx
import torch
from torch import fx, nn

from archdsl.errors import ArchLimitError
from archdsl.limits import float32_size
from archdsl.ops import lookup
from archdsl.ops.params import batched, param_view

_NOT_IDENTIFIER = re.compile("[^0-9a-zA-Z_]+")
# Names the generated forward() uses itself; a node called so gets a trailing underscore.
_CODEGEN_NAMES = {"self", "torch", "operator", "builtins", "inf", "nan", *dir(builtins)}


def fx_name(path: str) -> str:
    """The fx node name for a module path (``layer1.0.conv1`` -> ``layer1_0_conv1``, ``block1-0`` -> ``block1_0``).

    Made the way fx makes a name from a candidate (a run of characters that cannot be in an identifier
    becomes `_`, a leading digit gets a `_` before it), so that the name asked for is the name given.
    """
    name = _NOT_IDENTIFIER.sub("_", path)
    if name[:1].isdigit():
        name = f"_{name}"
    return f"{name}_" if name in _CODEGEN_NAMES or keyword.iskeyword(name) else name


def compile_graph(
    g: nx.DiGraph,
    *,
    seed: int | None = None,
    meta: dict[str, Any] | None = None,
    outputs: dict[str, str] | None = None,
) -> fx.GraphModule:
    """Build a trainable GraphModule from a validated graph.

    ``seed`` makes weight initialisation reproducible without touching the
    global RNG state. ``outputs`` (name -> node id) makes a feature
    extractor: only what those nodes need is built, and the module returns
    a dict of them.
    """
    needed = set(g.nodes)
    if outputs is not None:
        needed = set(outputs.values()).union(*(nx.ancestors(g, n) for n in outputs.values()))
        needed |= {g.nodes[n]["tie"] for n in needed if g.nodes[n].get("tie") is not None}
    graph = fx.Graph()
    modules: dict[str, nn.Module] = {}
    env: dict[str, fx.Node] = {}
    for node in g.graph["inputs"]:
        env[node] = graph.placeholder(fx_name(node))
    with torch.random.fork_rng(devices=[], enabled=seed is not None):
        if seed is not None:
            torch.manual_seed(seed)
        for node, data in g.nodes(data=True):
            if data["op"] == "input" or node not in needed:
                continue
            spec = lookup(data["op"])
            name = fx_name(node)
            if spec.learned:
                modules[node] = spec.build(data["args"], ())
                env[node] = graph.create_node("get_attr", node, name=name)
                continue
            inputs = _inputs(graph, g, node, spec, env)
            if spec.stateful:
                try:
                    modules[node] = spec.build(data["args"], data["input_shapes"])
                except (MemoryError, RuntimeError) as err:
                    if not is_out_of_memory(err):
                        raise
                    raise _no_memory_for(g, node) from None
                env[node] = graph.create_node("call_module", node, tuple(inputs), {}, name=name)
            else:

                def call(fn, args=(), kwargs=None, *, step=None, _name=name):
                    # The node's result takes its name; an intermediate `step` of it is named `{name}_{step}`.
                    named = _name if step is None else f"{_name}_{step}"
                    return graph.create_node("call_function", fn, tuple(args), dict(kwargs or {}), name=named)

                env[node] = spec.emit(call, inputs, data["args"])
    for node, data in g.nodes(data=True):
        if data.get("tie") is not None and node in modules and data["tie"] in modules:
            modules[node].weight = modules[data["tie"]].weight  # one tensor, counted once in parameters()
    if outputs is not None:
        graph.output({name: env[node] for name, node in outputs.items()})
    else:
        value = _returned(env, g.graph["outputs"])
        if g.graph.get("training_outputs"):
            training = graph.get_attr("training")
            value = graph.call_function(
                outputs_for_mode, (training, value, _returned(env, g.graph["training_outputs"]))
            )
        graph.output(value)
    _run_in_place(graph, g, env)
    graph.lint()
    module = fx.GraphModule(_nest(modules), graph, class_name=g.graph["name"])
    _in_source_order(module, [n for n in g.graph.get("module_order", g.nodes) if n in modules])
    module.meta["archdsl"] = dict(meta or {})
    return module


def outputs_for_mode(training: bool, eval_outputs: Any, training_outputs: Any) -> Any:
    """What the network returns: ``output ... when training`` in training mode, its plain ``output`` otherwise."""
    return training_outputs if training else eval_outputs


def _returned(env: dict[str, fx.Node], nodes: list[str]) -> Any:
    results = [env[node] for node in nodes]
    return results[0] if len(results) == 1 else tuple(results)


def _inputs(graph: fx.Graph, g: nx.DiGraph, node: str, spec: Any, env: dict[str, fx.Node]) -> list[fx.Node]:
    """The fx nodes a node reads; a ``param`` beside activations is expanded over the batch unless the op broadcasts."""
    data = g.nodes[node]
    sources = data["inputs"]
    inputs = [env[src] for src in sources]
    if spec.elementwise:
        return inputs
    is_param = [lookup(g.nodes[src]["op"]).learned for src in sources]
    if any(is_param):
        like = next(i for i, p in enumerate(is_param) if not p)
        for index, p in enumerate(is_param):
            if p:
                view = param_view(g.nodes[sources[index]]["shape"], data["input_shapes"][like])
                inputs[index] = graph.call_function(batched, (inputs[index], inputs[like], list(view)))
    return inputs


def _in_source_order(module: nn.Module, order: list[str]) -> None:
    """Put submodules and parameters in the order the source writes them, as ``__init__`` order does in PyTorch.

    fx registers what the graph uses in the order it runs; a post-norm
    transformer layer runs ``norm1`` before ``linear1`` but PyTorch declares
    (and so stores) ``linear1`` first. Writing the layers in that order in the
    source gives the same ``state_dict`` order.
    """
    first: dict[str, int] = {}
    for rank, path in enumerate(order):
        parts = path.split(".")
        for cut in range(1, len(parts) + 1):
            first.setdefault(".".join(parts[:cut]), rank)
    containers = {""} | {path.rpartition(".")[0] for path in first}
    for prefix in containers:
        owner = module.get_submodule(prefix)
        dot = f"{prefix}." if prefix else ""
        for table in ("_modules", "_parameters"):
            entries = getattr(owner, table)
            ranked = sorted(entries, key=lambda key: first.get(dot + key, len(order)))
            if ranked != list(entries):
                reordered = {key: entries[key] for key in ranked}
                entries.clear()
                entries.update(reordered)


def is_out_of_memory(err: BaseException) -> bool:
    """Whether ``err`` says that an allocation failed: Python's, the CPU allocator's or the GPU's."""
    if isinstance(err, (MemoryError, torch.OutOfMemoryError)):
        return True
    text = str(err)
    return isinstance(err, RuntimeError) and any(
        words in text for words in ("can't allocate memory", "out of memory", "not enough memory")
    )


def _no_memory_for(g: nx.DiGraph, node: str) -> ArchLimitError:
    data = g.nodes[node]
    params = data["params"]
    return ArchLimitError(
        f"out of memory while allocating the {params:,} parameters of `{node}` ({data['op']}): "
        f"{float32_size(params)} of float32",
        data["span"],
        "this machine lacks the memory for it: make the layer smaller, or build it on a machine with more memory",
        code="E328",
        sources=g.graph.get("sources"),
    )


def _run_in_place(graph: fx.Graph, g: nx.DiGraph, env: dict[str, fx.Node]) -> None:
    """Run an element-wise op in place where it is the only reader of a result that may be overwritten.

    The reader's op names its ``in_place`` twin and the producer's op says
    it is ``overwritable`` (registry fields): a ReLU after a convolution,
    norm, sum or concat. Hand-written networks use ``nn.ReLU(inplace=True)``
    there (torchvision does throughout); out of place, every ReLU allocates
    and writes one more activation, which cost VGG-16 7% of its training
    step on a CPU.
    """
    op_of: dict[fx.Node, str] = {}
    for node, value in env.items():  # an `identity` hands on its input's fx node, which keeps its producer's op
        op_of.setdefault(value, g.nodes[node]["op"])
    for node, op in op_of.items():
        twin = lookup(op).in_place
        if twin is None or node.op != "call_function" or len(node.args) != 1:
            continue
        (source,) = node.args
        if len(source.users) == 1 and source in op_of and lookup(op_of[source]).overwritable:
            node.target = twin


def _nest(modules: dict[str, nn.Module]) -> nn.Module:
    root = nn.Module()
    for path, leaf in modules.items():
        *parents, name = path.split(".")
        owner = root
        for part in parents:
            if not hasattr(owner, part):
                owner.add_module(part, nn.Module())
            owner = getattr(owner, part)
        if isinstance(leaf, nn.Parameter):
            owner.register_parameter(name, leaf)
        else:
            owner.add_module(name, leaf)
    return root

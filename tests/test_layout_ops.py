"""Layout ops on tensors of any rank: each shape rule is what torch produces, each error is located.

The reference for an op is torch applied to one sample at a time with the
batch-free dims the `.arch` file writes, then stacked: what the op means,
independent of how it is compiled onto the batched tensor.
"""

from __future__ import annotations

import importlib
import math

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from located import assert_shape_error_at
from torch import fx, nn
from torch.utils.flop_counter import FlopCounterMode

import archdsl
from archdsl.export import export
from archdsl.ops import lookup
from archdsl.shapes import op_args

BATCH = 3
SHAPES = st.lists(st.integers(1, 4), min_size=1, max_size=4).map(tuple)


def examples(count: int = 40):
    return settings(
        max_examples=count,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.too_slow],
    )


def net(statement: str, **inputs: tuple[int, ...]) -> str:
    declared = "".join(f"    input {name}: {list(shape)}\n" for name, shape in inputs.items())
    return f"network n {{\n{declared}    t: {statement}\n}}\n"


def per_sample(reference, *tensors: torch.Tensor) -> torch.Tensor:
    return torch.stack([reference(*sample) for sample in zip(*tensors, strict=True)])


def check(statement: str, reference, exact: bool = True, **inputs: tuple[int, ...]) -> None:
    """The node's shape and the compiled module's output are what ``reference`` makes of each sample."""
    text = net(statement, **inputs)
    g = archdsl.graph(text)
    tensors = [torch.randn(BATCH, *shape) for shape in inputs.values()]
    want = per_sample(reference, *tensors)
    assert g.nodes["t"]["shape"] == tuple(want.shape[1:])
    got = archdsl.load(text)(*tensors)
    if exact:
        torch.testing.assert_close(got, want, rtol=0, atol=0)
    else:
        torch.testing.assert_close(got, want)


def signed(draw, index: int, rank: int) -> int:
    """``index`` as written either way: counting from the front or (negative) from the end."""
    return index - rank if draw(st.booleans()) else index


# ---------------------------------------------------------------- shape rules against torch


@examples()
@given(st.data())
def test_transpose(data):
    shape = data.draw(SHAPES)
    a, b = (data.draw(st.integers(-len(shape), len(shape) - 1)) for _ in range(2))
    check(f"transpose({a}, {b})", lambda s: s.transpose(a, b), x=shape)


@examples()
@given(st.data())
def test_permute(data):
    shape = data.draw(SHAPES)
    dims = [signed(data.draw, d, len(shape)) for d in data.draw(st.permutations(range(len(shape))))]
    check(f"permute({dims})", lambda s: s.permute(dims), x=shape)


@examples()
@given(st.data())
def test_flatten(data):
    shape = data.draw(SHAPES)
    start = data.draw(st.integers(0, len(shape) - 1))
    end = data.draw(st.integers(start, len(shape) - 1))
    start, end = signed(data.draw, start, len(shape)), signed(data.draw, end, len(shape))
    check(f"flatten({start}, {end})", lambda s: s.flatten(start, end), x=shape)


@examples()
@given(st.data())
def test_reshape_and_view(data):
    shape = data.draw(SHAPES)
    rank = data.draw(st.integers(1, 5))
    target = [1] * rank
    for factor in _prime_factors(math.prod(shape)):
        target[data.draw(st.integers(0, rank - 1))] *= factor
    if data.draw(st.booleans()):
        target[data.draw(st.integers(0, rank - 1))] = -1
    op = data.draw(st.sampled_from(["reshape", "view"]))
    check(f"{op}({target})", lambda s: s.reshape(target), x=shape)


def _prime_factors(n: int) -> list[int]:
    factors, p = [], 2
    while n > 1:
        while n % p == 0:
            factors.append(p)
            n //= p
        p += 1
    return factors


@examples()
@given(st.data())
def test_select(data):
    shape = data.draw(SHAPES.filter(lambda s: len(s) >= 2))
    dim = data.draw(st.integers(-len(shape), len(shape) - 1))
    index = data.draw(st.integers(-shape[dim], shape[dim] - 1))
    check(f"select({index}, dim={dim})", lambda s: s.select(dim, index), x=shape)


@examples(30)
@given(st.data())
def test_unsqueeze_and_squeeze(data):
    shape = data.draw(SHAPES)
    dim = data.draw(st.integers(-len(shape) - 1, len(shape)))
    check(f"unsqueeze({dim})", lambda s: s.unsqueeze(dim), x=shape)
    if len(shape) >= 2:
        dim = data.draw(st.integers(-len(shape), len(shape) - 1))
        ones = shape[: dim % len(shape)] + (1,) + shape[dim % len(shape) + 1 :]
        check(f"squeeze({dim})", lambda s: s.squeeze(dim), x=ones)


@examples(30)
@given(st.data())
def test_softmax(data):
    shape = data.draw(SHAPES)
    dim = data.draw(st.integers(-len(shape), len(shape) - 1))
    check(f"softmax({dim})", lambda s: s.softmax(dim), exact=False, x=shape)


@examples()
@given(st.data())
def test_concat(data):
    shape = data.draw(SHAPES)
    dim = data.draw(st.integers(-len(shape), len(shape) - 1))
    other = list(shape)
    other[dim] = data.draw(st.integers(1, 4))
    check(f"concat(x, y, dim={dim})", lambda a, b: torch.cat([a, b], dim), x=shape, y=tuple(other))


@examples()
@given(st.data())
def test_matmul(data):
    rank = data.draw(st.integers(2, 4))
    a_lead, b_lead = [], []
    for _ in range(rank - 2):
        size = data.draw(st.integers(1, 3))
        a_size, b_size = data.draw(st.sampled_from([(size, size), (1, size), (size, 1)]))
        a_lead.append(a_size)
        b_lead.append(b_size)
    m, k, n = (data.draw(st.integers(1, 5)) for _ in range(3))
    a, b = (*a_lead, m, k), (*b_lead, k, n)
    check("matmul(x, y)", torch.matmul, exact=False, x=a, y=b)
    g = archdsl.graph(net("matmul(x, y)", x=a, y=b))
    out = g.nodes["t"]["shape"]
    assert g.nodes["t"]["macs"] == math.prod(out) * k and g.nodes["t"]["params"] == 0


# ---------------------------------------------------------------- chunk and split: several outputs


def pieces_of(op: str, shape: tuple[int, ...], **given) -> tuple[tuple[int, ...], ...]:
    spec, args = lookup(op), op_args(op, **given)
    assert spec.infer(args, [shape]) == shape  # the box shows the whole input
    return spec.pieces(args, [shape])


def emitted(op: str, **given) -> fx.GraphModule:
    """The op's emitted fx code alone: one input, and the tuple of its pieces as the output."""
    graph = fx.Graph()
    x = graph.placeholder("x")

    def call(fn, args=(), kwargs=None):
        return graph.create_node("call_function", fn, tuple(args), dict(kwargs or {}), name="t")

    graph.output(lookup(op).emit(call, [x], op_args(op, **given)))
    return fx.GraphModule(nn.Module(), graph)


def check_pieces(op: str, shape, reference, **given) -> None:
    x = torch.randn(BATCH, *shape)
    want = [torch.stack(parts) for parts in zip(*(reference(s) for s in x), strict=True)]
    assert pieces_of(op, shape, **given) == tuple(tuple(w.shape[1:]) for w in want)
    got = emitted(op, **given)(x)
    assert isinstance(got, tuple) and len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g, w, rtol=0, atol=0)


@examples()
@given(st.data())
def test_chunk_pieces_are_torch_chunks(data):
    shape = data.draw(SHAPES.map(lambda s: (*s[:-1], s[-1] * 2 + 1)))  # sizes up to 9: uneven chunks
    dim = data.draw(st.integers(-len(shape), len(shape) - 1))
    n = data.draw(st.integers(1, 10))
    check_pieces("chunk", shape, lambda s: s.chunk(n, dim), n=n, dim=dim)


@examples()
@given(st.data())
def test_split_pieces_are_torch_splits(data):
    shape = data.draw(SHAPES.map(lambda s: (*s[:-1], s[-1] * 2 + 1)))
    dim = data.draw(st.integers(-len(shape), len(shape) - 1))
    size, sizes = shape[dim], []
    while sum(sizes) < size:
        sizes.append(data.draw(st.integers(1, size - sum(sizes))))
    check_pieces("split", shape, lambda s: s.split(sizes, dim), sizes=tuple(sizes), dim=dim)


def test_chunk_follows_torch_exactly_when_pieces_run_out():
    """torch.chunk cuts ceil(size / n) at a time: 6 into 4 makes three pieces of 2, 5 into 3 makes 2, 2, 1."""
    assert pieces_of("chunk", (6, 8), n=4) == ((2, 8), (2, 8), (2, 8))
    assert pieces_of("chunk", (4, 5), n=3, dim=-1) == ((4, 2), (4, 2), (4, 1))
    assert pieces_of("chunk", (2, 3), n=5, dim=1) == ((2, 1), (2, 1), (2, 1))
    assert pieces_of("chunk", (6, 768 * 3), n=3, dim=-1) == ((6, 768),) * 3  # a transformer's q, k, v


def test_chunk_and_split_compile_and_export():
    x = torch.randn(BATCH, 4, 9)
    for op, arguments in (("chunk", {"n": 4, "dim": -1}), ("split", {"sizes": (1, 3), "dim": 0})):
        module = emitted(op, **arguments)
        compiled = torch.compile(module, fullgraph=True, backend="aot_eager")
        for got, want in zip(compiled(x), module(x), strict=True):
            torch.testing.assert_close(got, want, rtol=0, atol=0)
        program = torch.export.export(module, (x,), dynamic_shapes=({0: torch.export.Dim("batch")},))
        for got, want in zip(program.module()(x[:2]), module(x[:2]), strict=True):
            torch.testing.assert_close(got, want, rtol=0, atol=0)


# ---------------------------------------------------------------- what is emitted


def targets(text: str) -> list[tuple[object, tuple, dict]]:
    module = archdsl.load(text)
    return [(n.target, n.args[1:], n.kwargs) for n in module.graph.nodes if n.op == "call_function"]


def test_defaults_emit_what_they_did_before_dims_existed():
    """`flatten`, `softmax` and `concat` without arguments compile as always, so the zoo is unchanged."""
    assert targets(net("flatten", x=(4, 3, 3))) == [(torch.flatten, (), {"start_dim": 1})]
    assert targets(net("softmax", x=(10,))) == [(torch.softmax, (), {"dim": 1})]
    ((target, _, kwargs),) = targets(net("concat(x, y)", x=(2, 3, 3), y=(5, 3, 3)))
    assert (target, kwargs) == (torch.cat, {"dim": 1})
    g = archdsl.graph(net("concat(x, y)", x=(2, 3, 3), y=(5, 3, 3)))
    assert g.nodes["t"]["shape"] == (7, 3, 3) and g.nodes["t"]["args"] == {"dim": 0}


@pytest.mark.parametrize(
    ("statement", "shape", "batched"),
    [
        ("reshape([4, 6])", (2, 12), lambda x: torch.reshape(x, (-1, 4, 6))),
        ("reshape([-1, 3])", (2, 3, 2), lambda x: x.reshape(x.shape[0], -1, 3)),
        ("flatten(start=1)", (768, 14, 14), lambda x: torch.flatten(x, 2)),
        ("flatten(0, 1)", (2, 3, 4), lambda x: torch.flatten(x, 1, 2)),
        ("permute([1, 2, 0])", (96, 7, 7), lambda x: x.permute(0, 2, 3, 1)),
        ("transpose(-2, -1)", (4, 6, 8), lambda x: x.transpose(-2, -1)),
        ("select(0)", (197, 768), lambda x: x[:, 0]),
        ("select(-1, dim=1)", (5, 6), lambda x: x[:, :, -1]),
        ("unsqueeze(0)", (6,), lambda x: x[:, None]),
        ("squeeze(-1)", (6, 1), lambda x: x[:, :, 0]),
        ("softmax(-1)", (4, 6, 6), lambda x: torch.softmax(x, -1)),
    ],
)
def test_compiled_output_is_the_batched_torch_expression(statement, shape, batched):
    x = torch.randn(BATCH, *shape)
    torch.testing.assert_close(archdsl.load(net(statement, x=shape))(x), batched(x), rtol=0, atol=0)


def test_matmul_counts_what_the_flop_counter_counts():
    text = net("matmul(x, y)", x=(4, 6, 8), y=(4, 8, 5))
    g = archdsl.graph(text)
    assert g.nodes["t"]["shape"] == (4, 6, 5) and g.nodes["t"]["macs"] == 4 * 6 * 5 * 8
    with FlopCounterMode(display=False) as counter:
        archdsl.load(text)(torch.randn(1, 4, 6, 8), torch.randn(1, 4, 8, 5))
    assert counter.get_total_flops() == 2 * g.nodes["t"]["macs"]


def test_labels_name_the_arguments():
    labels = {
        "flatten": "flatten",
        "flatten(1)": "flatten 1..-1",
        "reshape([2, -1])": "reshape [2, -1]",
        "permute([1, 0])": "permute [1, 0]",
        "transpose(0, 1)": "transpose 0, 1",
        "select(0)": "select 0",
        "select(2, dim=1)": "select 2, dim 1",
        "chunk(3, dim=-1)": "chunk 3, dim -1",
        "softmax(-1)": "softmax dim -1",
    }
    for statement, label in labels.items():
        data = archdsl.graph(net(statement, x=(6, 12))).nodes["t"]
        assert lookup(data["op"]).describe(data["args"]) == label


# ---------------------------------------------------------------- errors


ERRORS = [
    # statement, inputs, message, the text the caret is under
    ("reshape([-1, -1])", {"x": (6, 8)}, "`reshape`'s shape [-1, -1] has 2 sizes of -1", "[-1, -1]"),
    ("reshape([5, -1])", {"x": (6, 8)}, "48 values, into [5, -1]: 48 is not a multiple of 5", "[5, -1]"),
    ("view([7, 7])", {"x": (6, 8)}, "`view` cannot turn a sequence [T, D] input [6, 8], 48 values", "[7, 7]"),
    ("reshape([0, 48])", {"x": (6, 8)}, "has the size 0; sizes are positive, or -1", "[0, 48]"),
    ("reshape([])", {"x": (6, 8)}, "`reshape` needs at least one size", "[]"),
    (
        "reshape([1, 1, 1, 1, 1, 1, 1, 1, 48])",
        {"x": (6, 8)},
        "9 dims (the batch left out), more than the limit of 8",
        "[1, 1, 1, 1, 1, 1, 1, 1, 48]",
    ),
    ("flatten(1, 0)", {"x": (2, 3, 4)}, "`flatten`'s start=1 comes after its end=0 in an image [C, H, W]", "0"),
    (
        "flatten(start=3)",
        {"x": (2, 3, 4)},
        "`flatten`'s start=3 is outside an image [C, H, W] input [2, 3, 4]",
        "start=3",
    ),
    (
        "permute([1, 0])",
        {"x": (2, 3, 4)},
        "`permute` needs each of the 3 dims of an image [C, H, W] input [2, 3, 4] once, got 2",
        "[1, 0]",
    ),
    (
        "permute([0, -2, 1])",
        {"x": (2, 3, 4)},
        "`permute`'s dims [0, -2, 1] name dim 1 of an image [C, H, W] input [2, 3, 4] twice",
        "[0, -2, 1]",
    ),
    ("permute([0, 2])", {"x": (6, 8)}, "`permute`'s dims=2 is outside a sequence [T, D] input [6, 8]", "[0, 2]"),
    (
        "transpose(0, 2)",
        {"x": (6, 8)},
        "`transpose`'s dim1=2 is outside a sequence [T, D] input [6, 8], whose dims are -2 to 1",
        "2",
    ),
    (
        "select(6)",
        {"x": (6, 8)},
        "`select`'s index=6 is outside dim 0 of a sequence [T, D] input [6, 8], of size 6: it takes -6 to 5",
        "6",
    ),
    ("select(0, dim=-3)", {"x": (6, 8)}, "`select`'s dim=-3 is outside a sequence [T, D] input [6, 8]", "dim=-3"),
    (
        "select(0)",
        {"x": (8,)},
        "`select` takes an input of 2 or more dims (a sequence [T, D], an image [C, H, W], ...), "
        "got a flat [F] input [8]",
        "select(0)",
    ),
    (
        "unsqueeze(3)",
        {"x": (6, 8)},
        "`unsqueeze`'s dim=3 is outside the 3 dims of its output from a sequence [T, D] input [6, 8], "
        "which are -3 to 2",
        "3",
    ),
    (
        "squeeze(0)",
        {"x": (6, 1)},
        "`squeeze` removes a dim of size 1, but dim 0 of a sequence [T, D] input [6, 1] has size 6",
        "0",
    ),
    ("squeeze(0)", {"x": (1,)}, "`squeeze` takes an input of 2 or more dims", "squeeze(0)"),
    ("chunk(2, dim=2)", {"x": (6, 8)}, "`chunk`'s dim=2 is outside a sequence [T, D] input [6, 8]", "dim=2"),
    (
        "split([2, 2])",
        {"x": (6, 8)},
        "`split`'s sizes [2, 2] add up to 4, but dim 0 of a sequence [T, D] input [6, 8] has size 6",
        "[2, 2]",
    ),
    (
        "split([8], dim=-1)",
        {"x": (6, 9)},
        "`split`'s sizes [8] add up to 8, but dim -1 of a sequence [T, D] input [6, 9] has size 9",
        "[8]",
    ),
    (
        "softmax(2)",
        {"x": (6, 8)},
        "`softmax`'s dim=2 is outside a sequence [T, D] input [6, 8], whose dims are -2 to 1",
        "2",
    ),
    (
        "concat(x, y, dim=-1)",
        {"x": (6, 8), "y": (5, 8)},
        "`concat` joins along dim -1, so the other dims must agree: input 1 is [6, 8] but input 2 is [5, 8]",
        "y",
    ),
    (
        "concat(x, y)",
        {"x": (8, 4, 4), "y": (8, 2, 2)},
        "`concat` joins channels, so spatial sizes must agree: input 1 is [8, 4, 4] but input 2 is [8, 2, 2]",
        "y",
    ),
    (
        "concat(x, y, dim=3)",
        {"x": (8, 4, 4), "y": (8, 4, 4)},
        "`concat`'s dim=3 is outside an image [C, H, W] input [8, 4, 4]",
        "dim=3",
    ),
    (
        "matmul(x, y)",
        {"x": (6, 8), "y": (6, 4)},
        "`matmul` cannot multiply [6, 8] by [6, 4]: input 1 has 8 columns (its last dim) but input 2 has 6 rows",
        "y",
    ),
    (
        "matmul(x, y)",
        {"x": (8,), "y": (8, 4)},
        "`matmul` multiplies the matrices in the last two dims of its inputs, but input 1 is a flat [F] input [8]",
        "x",
    ),
    ("matmul(x, y)", {"x": (6, 8), "y": (8,)}, "but input 2 is a flat [F] input [8], of one dim", "y"),
    (
        "matmul(x, y)",
        {"x": (2, 6, 8), "y": (8, 4)},
        "`matmul` needs inputs of the same rank, but input 1 is an image [C, H, W] input [2, 6, 8] "
        "and input 2 a sequence [T, D] input [8, 4]",
        "y",
    ),
    (
        "matmul(x, y)",
        {"x": (2, 6, 8), "y": (3, 8, 4)},
        "`matmul` cannot broadcast the dims before the matrices, [2] of input 1 and [3] of input 2",
        "y",
    ),
]


@pytest.mark.parametrize(("statement", "inputs", "message", "culprit"), ERRORS, ids=[e[0] for e in ERRORS])
def test_errors_say_what_is_wrong_and_where(statement, inputs, message, culprit):
    assert_shape_error_at(net(statement, **inputs), statement, message, culprit)


@pytest.mark.parametrize(
    ("statement", "message"),
    [
        ("reshape([-2, 24])", "`shape` must be at least -1, got -2"),
        ("chunk(0)", "`n` must be at least 1, got 0"),
        ("split([3, 0, 3])", "`sizes` must be at least 1, got 0"),
        ("permute(0.5)", "`dims` must be a list of ints"),
        ("transpose(0)", "needs the argument `dim1`"),
    ],
)
def test_bad_arguments_are_argument_errors(statement, message):
    with pytest.raises(archdsl.ArchError) as info:
        archdsl.graph(net(statement, x=(6, 8)))
    assert message in str(info.value)
    assert info.value.diagnostics[0].code in ("E301", "E315")


def test_rank_limit_applies_to_reshape_and_unsqueeze():
    small = archdsl.Limits(max_rank=2)
    assert archdsl.graph(net("reshape([2, 24])", x=(6, 8)), limits=small).nodes["t"]["shape"] == (2, 24)
    for statement in ("reshape([2, 3, 8])", "unsqueeze(0)"):
        with pytest.raises(archdsl.ArchError, match="3 dims \\(the batch left out\\), more than the limit of 2"):
            archdsl.graph(net(statement, x=(6, 8)), limits=small)


# ---------------------------------------------------------------- a graph of them, compiled and exported

HEADS = """
network heads {
    input x: [6, 8]
    input image: [8, 2, 3]
    x -> heads: reshape([6, 2, -1]) -> q: permute([1, 0, 2])
    k: transpose(-2, -1)
    scores: matmul(q, k) -> weights: softmax(-1)
    mixed: matmul(weights, q) -> merged: transpose(0, 1) -> flat: flatten(1, 2)
    image -> tokens: flatten(start=1) -> seq: transpose(0, 1)
    both: concat(flat, seq, dim=0) -> first: select(0) -> wide: unsqueeze(0) -> view([4, -1])
        -> tall: unsqueeze(-1) -> back: squeeze(-1)
}
"""


def heads_reference(x: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
    q = x.reshape(x.shape[0], 6, 2, -1).permute(0, 2, 1, 3)
    weights = torch.softmax(q @ q.transpose(-2, -1), -1)
    flat = (weights @ q).transpose(1, 2).flatten(2, 3)
    seq = image.flatten(2).transpose(1, 2)
    return torch.cat([flat, seq], 1)[:, 0].reshape(x.shape[0], 4, -1)


def test_a_graph_of_layout_ops_matches_torch_compiles_and_exports(tmp_path):
    module = archdsl.load(HEADS).eval()
    x, image = torch.randn(BATCH, 6, 8), torch.randn(BATCH, 8, 2, 3)
    want = heads_reference(x, image)
    torch.testing.assert_close(module(x, image), want)
    assert archdsl.graph(HEADS).nodes["back"]["shape"] == (4, 2)
    torch._dynamo.reset()
    compiled = torch.compile(module, fullgraph=True, backend="aot_eager")
    torch.testing.assert_close(compiled(x, image), want)
    program = torch.export.load(str(export(module, tmp_path / "heads.pt2", "pt2"))).module()
    torch.testing.assert_close(program(x[:2], image[:2]), want[:2])


def test_a_graph_of_layout_ops_exports_to_onnx(tmp_path):
    try:
        ort = importlib.import_module("onnxruntime")
    except ImportError as err:  # CI installs it: no skip
        pytest.fail(f"the ONNX tests need onnxruntime ({err}): pip install 'archdsl[onnx]'")
    module = archdsl.load(HEADS).eval()
    path = export(module, tmp_path / "heads.onnx", "onnx")
    x, image = torch.randn(BATCH, 6, 8), torch.randn(BATCH, 8, 2, 3)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (result,) = session.run(None, {"x": x.numpy(), "image": image.numpy()})
    torch.testing.assert_close(torch.from_numpy(result), heads_reference(x, image), rtol=1e-4, atol=1e-5)

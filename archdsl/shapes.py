"""Shape inference over the structural graph, the heart of stage 3 (:func:`archdsl.validate.validate`).

Visits nodes in topological order; evaluates each op's arguments (which may
read inferred shapes), checks them against the op's schema, infers the output
shape, counts parameters and MACs, and applies skip policies (identity,
projection, zero-padding) now that both ends' shapes are known. It annotates
the structural graph in place; validation then turns it into node records.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import networkx as nx

from archdsl import limits
from archdsl.binding import Signature, bind
from archdsl.errors import ArchError, ArchLimitError, ArchShapeError, ArchTypeError, Label, Span
from archdsl.expr import FailedValue, Scope, Shape, evaluate, show
from archdsl.frames import resolve
from archdsl.node import Input
from archdsl.ops import lookup
from archdsl.ops.params import param_view, stretch
from archdsl.ops.registry import ArgProblem, OpSpec, ShapeProblem


class ShapeInference:
    """Infers shapes node by node; nodes that already carry a shape (inferred during elaboration) are kept.

    ``ensure``, when given, is asked to infer a node whose shape an argument
    reads before this pass has reached it (elaboration infers on demand).
    """

    def __init__(
        self,
        g: nx.DiGraph,
        errors: list[ArchError],
        poisoned: frozenset[str],
        ensure: Callable[[str], None] | None = None,
    ) -> None:
        self.g = g
        self.errors = errors
        self.poisoned: set[str] = set(poisoned)
        self.shapes: dict[str, Shape] = {n: d["shape"] for n, d in g.nodes(data=True) if "shape" in d}
        self.current_span: Span | None = None
        self.current_node: str | None = None
        self.ensure = ensure

    def shape_of(self, ref: Any, span: Span) -> Shape:
        node = resolve(ref, self.g.__contains__)
        if isinstance(node, ArchError):
            self.errors.append(node)
            raise Poisoned()
        if node is None or node in self.poisoned:
            raise Poisoned()
        if node not in self.shapes and self.ensure is not None:
            saved = self.current_node, self.current_span
            self.ensure(node)
            self.current_node, self.current_span = saved
            if node in self.poisoned:
                raise Poisoned()
        if node not in self.shapes and self.current_node in self.poisoned:
            raise Poisoned()
        if node not in self.shapes:
            raise ArchShapeError(
                f"the shape of `{node}` is read before it is known",
                self.current_span or span,
                f"`{node}` must come before this node in the flow of data",
                code="E402",
            )
        return self.shapes[node]

    def run(self, order: list[str]) -> None:
        for node in order:
            if node not in self.g or node in self.shapes:
                continue  # replaced by a shortcut expansion, or inferred already
            data = self.g.nodes[node]
            self.current_node = node
            self.current_span = data["span"]
            sources = [item.source for item in data["inputs"]]
            if node in self.poisoned or any(src in self.poisoned or src not in self.shapes for src in sources):
                self.poisoned.add(node)
                self._check_args_alone(data)
                continue
            try:
                if data["op"] == "shortcut":
                    self._shortcut(node, data)
                elif data["op"] == "piece":
                    self._piece(node, data, sources[0])
                else:
                    self._infer(node, data, [self.shapes[src] for src in sources])
            except (Poisoned, FailedValue):
                self.poisoned.add(node)
            except ArchError as err:
                self.errors.append(_with_instance_note(err, data))
                self.poisoned.add(node)

    def _check_args_alone(self, data: dict) -> None:
        """Report argument errors of a node whose inputs failed, as far as they do not need shapes."""
        spec = lookup(data["op"])
        if spec is None or "args" in data or "scope" not in data:
            return
        try:
            self._bind(spec, data)
        except (Poisoned, FailedValue):
            pass
        except ArchError as err:
            if not isinstance(err, ArchShapeError):
                self.errors.append(_with_instance_note(err, data))

    # ---------------------------------------------------------------- ops

    def _infer(self, node: str, data: dict, input_shapes: list[Shape]) -> None:
        spec = lookup(data["op"])
        assert spec is not None, data["op"]
        self.current_span = data["span"]
        if "args" not in data:
            data["args"] = self._bind(spec, data)
        self._check_whole_reads(data)
        ids = self._token_ids(spec, data)
        count = len(input_shapes)
        if count < spec.min_inputs or (spec.max_inputs is not None and count > spec.max_inputs):
            want = (
                str(spec.min_inputs)
                if spec.min_inputs == spec.max_inputs
                else f"at least {spec.min_inputs}"
                if spec.max_inputs is None
                else f"{spec.min_inputs} to {spec.max_inputs}"
            )
            raise ArchTypeError(f"`{spec.name}` takes {want} input(s), got {count}", data["span"], code="E322")
        try:
            input_shapes = self._beside_params(spec, data, input_shapes)
            shape = tuple(spec.infer(data["args"], input_shapes))
        except ShapeProblem as problem:
            span = self._arg_span(data, problem.arg)
            input_spans = data.get("input_spans", ())
            if problem.input_index is not None and problem.input_index < len(input_spans):
                span = input_spans[problem.input_index]
            raise ArchShapeError(problem.message, span, problem.hint, code="E401") from None
        if any(d < 1 for d in shape):
            raise ArchShapeError(
                f"`{spec.name}` would produce the non-positive shape {list(shape)}",
                data["span"],
                "an earlier op has shrunk the input too far",
                code="E403",
            )
        if any(d > limits.current().max_dim for d in shape):
            raise ArchShapeError(f"`{spec.name}` would produce the huge shape {list(shape)}", data["span"], code="E404")
        _check_activation(node, spec.name, shape, data["span"])
        data["shape"] = shape
        if ids:
            data["dtype"] = "int"
        data["input_shapes"] = tuple(input_shapes)
        data["params"] = spec.count_params(data["args"], input_shapes)
        data["macs"] = spec.count_macs(data["args"], input_shapes, shape)
        self.shapes[node] = shape

    def _beside_params(self, spec: OpSpec, data: dict, shapes: list[Shape]) -> list[Shape]:
        """The input shapes as the op's rule sees them: a ``param`` lined up with the activations beside it."""
        is_param = [lookup(self.g.nodes[item.source]["op"]).learned for item in data["inputs"]]
        if not any(is_param):
            return shapes
        like = next((shape for shape, p in zip(shapes, is_param, strict=True) if not p), None)
        if like is None:
            raise ArchShapeError(
                f"`{spec.name}` is given only parameters, which have no batch",
                data["span"],
                "use a parameter beside an activation: `add(x, pos_embedding)`, `concat(class_token, x, dim=0)`",
                code="E409",
            )
        try:
            return line_up(spec, shapes, is_param)
        except ShapeProblem as problem:
            spans = data.get("input_spans", ())
            index = problem.input_index or 0
            span = spans[index] if index < len(spans) else data["span"]
            raise ArchShapeError(problem.message, span, problem.hint, code="E409") from None

    def _token_ids(self, spec: OpSpec, data: dict) -> bool:
        """Whether this node's result is integer token ids; a float op given them is an error (E410)."""
        if data["op"] == "input":
            return data["args"].get("dtype") == "int"
        reads = [index for index, item in enumerate(data["inputs"]) if self.g.nodes[item.source].get("dtype") == "int"]
        if not reads:
            return False
        if spec.token_ids == "keep":
            return len(reads) == len(data["inputs"])
        if spec.token_ids == "embed":
            return False
        source = data["inputs"][reads[0]].source
        spans = data.get("input_spans", ())
        raise ArchShapeError(
            f"`{spec.name}` computes with floats, but `{source}` holds integer token ids",
            spans[reads[0]] if reads[0] < len(spans) else data["span"],
            "turn token ids into vectors first: `embedding(num, dim)`",
            code="E410",
        )

    def _check_whole_reads(self, data: dict) -> None:
        """An op with several outputs is read one piece at a time (E408)."""
        for index, item in enumerate(data["inputs"]):
            spec = lookup(self.g.nodes[item.source]["op"])
            if spec is not None and spec.pieces is not None:
                count = len(spec.pieces(self.g.nodes[item.source]["args"], self.g.nodes[item.source]["input_shapes"]))
                spans = data.get("input_spans", ())
                raise ArchShapeError(
                    f"`{item.source}` ({spec.name}) has {count} outputs, and this reads it whole",
                    spans[index] if index < len(spans) else data["span"],
                    f"read one output: `{item.source}.0` to `{item.source}.{count - 1}`",
                    code="E408",
                )

    def _piece(self, node: str, data: dict, producer: str) -> None:
        """Infer output ``index`` of the multi-output op ``producer`` (a reference ``qkv.1``)."""
        made = self.g.nodes[producer]
        spec = lookup(made["op"])
        pieces = spec.pieces(made["args"], made["input_shapes"])
        index = data["args"]["index"]
        if index >= len(pieces):
            raise ArchShapeError(
                f"`{producer}` ({spec.name}) has {len(pieces)} outputs, so there is no `{producer}.{index}`",
                data["span"],
                f"its outputs are `{producer}.0` to `{producer}.{len(pieces) - 1}`",
                code="E408",
            )
        shape = tuple(pieces[index])
        data.update(shape=shape, input_shapes=(made["shape"],), params=0, macs=0)
        if made.get("dtype") == "int":
            data["dtype"] = "int"
        self.shapes[node] = shape

    def _arg_span(self, data: dict, name: str | None) -> Span:
        for arg in data.get("call", ()):
            if name is not None and arg.name == name:
                return arg.span
        spec = lookup(data["op"])
        if name is not None and spec is not None:
            positional = [a for a in data.get("call", ()) if a.name is None]
            index = spec.arg_names.index(name) if name in spec.arg_names else -1
            if 0 <= index < len(positional):
                return positional[index].span
        return data["span"]

    def _bind(self, spec: OpSpec, data: dict) -> dict[str, Any]:
        scope: Scope = data["scope"].with_shapes(self.shape_of)
        values: dict[str, Any] = {}
        for name, arg in bind(op_signature(spec), data.get("call", ()), data["span"]).items():
            schema = spec.args[spec.arg_names.index(name)]
            if schema.kind == "node":  # an input of the node now (see References._node_args): given
                values[name] = True
                continue
            value = evaluate(arg.value, scope)
            try:
                values[name] = schema.coerce(value)
            except ArgProblem as problem:
                raise ArchTypeError(problem.message, arg.span, problem.hint, code="E301") from None
        return complete_args(spec, values)

    # ---------------------------------------------------------- shortcuts

    def _shortcut(self, node: str, data: dict) -> None:
        (src,) = [item.source for item in data["inputs"]]
        (add,) = list(self.g.successors(node))
        target = data["target"]
        if target is None or target in self.poisoned or target not in self.shapes:
            raise Poisoned()
        have, want = self.shapes[src], self.shapes[target]
        edge_span = data["span"]
        if have == want:
            self._replace(node, src, add, [])
            return
        policy = data["policy"]
        mismatch = f"the skip from `{src}` {list(have)} to `{target}` {list(want)} joins different shapes"
        if policy == "identity":
            raise ArchShapeError(
                mismatch,
                edge_span,
                "add `via projection` (1x1 conv + batchnorm) or `via zeropad` (subsample and pad channels)",
                code="E405",
            )
        if len(have) != 3 or len(want) != 3:
            raise ArchShapeError(mismatch + f"; `{policy}` needs [C, H, W] shapes", edge_span, code="E405")
        stride = -(-have[1] // want[1])
        if want[1] < 1 or -(-have[1] // stride) != want[1] or -(-have[2] // stride) != want[2]:
            raise ArchShapeError(
                mismatch + f"; no stride maps {have[1]}x{have[2]} onto {want[1]}x{want[2]}", edge_span, code="E406"
            )
        base = dict(span=data["span"], groups=data["groups"], scope=data["scope"], call=(), role="shortcut")
        if policy == "projection":
            conv = dict(op="conv", args=op_args("conv", out=want[0], k=1, stride=stride, bias=False), **base)
            bn = dict(op="batchnorm", args=op_args("batchnorm"), **base)
            self._replace(node, src, add, [(f"{node}.0", conv), (f"{node}.1", bn)])
        else:
            if want[0] < have[0]:
                raise ArchShapeError(
                    mismatch + "; zero-padding cannot remove channels", edge_span, "use `via projection`", code="E407"
                )
            extra = want[0] - have[0]
            args = op_args("zeropad_shortcut", stride=stride, pad_before=extra // 2, pad_after=extra - extra // 2)
            self._replace(node, src, add, [(node, dict(op="zeropad_shortcut", args=args, **base))])

    def _replace(self, node: str, src: str, add: str, chain: list[tuple[str, dict]]) -> None:
        """Swap the shortcut placeholder for ``chain`` (possibly empty) between src and add."""
        (into_shortcut,) = self.g.nodes[node]["inputs"]
        span = into_shortcut.span
        self.g.remove_node(node)
        previous = src
        for new_id, attrs in chain:
            self.g.add_node(new_id, inputs=[Input(previous, "skip", span)], origin=node, **attrs)
            self.g.add_edge(previous, new_id, span=span)
            self._infer(new_id, self.g.nodes[new_id], [self.shapes[previous]])
            previous = new_id
        add_inputs = self.g.nodes[add]["inputs"]
        for index, item in enumerate(add_inputs):
            if item.source == node:
                add_inputs[index] = replace(item, source=previous)
        if not self.g.has_edge(previous, add):
            self.g.add_edge(previous, add, span=span)


def line_up(spec: OpSpec, shapes: list[Shape], is_param: list[bool]) -> list[Shape]:
    """The input shapes as ``spec``'s rule sees them: each ``param`` lined up with the first activation.

    Raises :class:`ShapeProblem` (its ``input_index`` the parameter's) when one does not line up.
    """
    like = next(shape for shape, p in zip(shapes, is_param, strict=True) if not p)
    views = []
    for index, (shape, p) in enumerate(zip(shapes, is_param, strict=True)):
        if not p:
            views.append(shape)
            continue
        try:
            view = param_view(shape, like)
            views.append(stretch(view, like, shape) if spec.elementwise else view)
        except ShapeProblem as problem:
            problem.input_index = index
            raise
    return views


def _with_instance_note(err: ArchError, data: dict) -> ArchError:
    """Say which block instance a failing node belongs to, when it was written inside a block."""
    groups = [g for g in data.get("groups", ()) if g.kind == "block" and g.span is not None]
    span = err.diagnostics[0].span
    if not groups or span is None or len(err.diagnostics) != 1:
        return err
    group = groups[-1]
    if group.span.line == span.line and group.span.file == span.file:
        return err  # the instance is written on the failing line itself
    diag = err.diagnostics[0]
    note = Label(group.span, f"in `{group.path}`, an instance of block `{group.name}` made")
    err.diagnostics = (type(diag)(diag.code, diag.message, diag.span, diag.hint, diag.severity, (*diag.labels, note)),)
    return err


def _check_activation(node: str, op: str, shape: Shape, span: Span) -> None:
    """An input or an output too large to allocate is an error before any tensor exists (E327)."""
    most = limits.current().max_activation
    values = math.prod(shape)
    if values <= most:
        return
    what, which = (f"the input `{node}` holds", "input") if op == "input" else (f"`{node}` ({op}) outputs", "layer")
    raise ArchLimitError(
        f"{what} {values:,} values per sample ({limits.float32_size(values)} of float32), "
        f"more than the limit of {most:,}",
        span,
        f"shrink the {which}, or raise the limit with archdsl.Limits(max_activation=...)",
        code="E327",
    )


class Poisoned(Exception):
    """A node depends on one that already failed; its own error would only repeat that one."""


def infer_shapes(g: nx.DiGraph, errors: list[ArchError], poisoned: frozenset[str], order: list[str]) -> set[str]:
    """Annotate ``g`` in place with args, shapes, params and MACs, adding to ``errors``; returns the failed nodes."""
    inference = ShapeInference(g, errors, poisoned)
    inference.run(order)
    return inference.poisoned


def op_signature(spec: OpSpec) -> Signature:
    """The op's parameters as the binder sees them, with its usage (``conv(out, k, stride=1, ...)``) as a hint.

    Made once per registered spec (every node binds its arguments against it).
    """
    known = _SIGNATURES.get(spec.name)
    if known is not None and known[0] is spec:
        return known[1]
    signature = _signature(spec)
    _SIGNATURES[spec.name] = (spec, signature)
    return signature


_SIGNATURES: dict[str, tuple[OpSpec, Signature]] = {}


def _signature(spec: OpSpec) -> Signature:
    parts = [
        a.name if a.required else f"{a.name}={show(a.default) if a.default is not None else 'none'}" for a in spec.args
    ]
    return Signature(
        callee=f"`{spec.name}`",
        params=spec.arg_names,
        required=frozenset(a.name for a in spec.args if a.required),
        noun="argument",
        needs="needs the argument",
        usage=f"{spec.name}({', '.join(parts)})",
    )


def complete_args(spec: OpSpec, given: dict[str, Any]) -> dict[str, Any]:
    """``given`` (checked against the schema, in the order written), then every other argument at its default."""
    values = dict(given)
    for schema in spec.args:
        if schema.name not in values:
            values[schema.name] = schema.coerce(schema.default) if schema.default is not None else None
    return spec.finish_args(values) if spec.finish_args is not None else values


def op_args(op: str, **given: Any) -> dict[str, Any]:
    """Complete, checked arguments of ``op`` from its registry entry: ``given`` values, the rest defaults.

    Nodes the compiler adds itself (a projection shortcut's conv and
    batchnorm) take their arguments from here, so they follow the op's schema.
    """
    spec = lookup(op)
    assert spec is not None, op
    checked = {name: spec.args[spec.arg_names.index(name)].coerce(v) for name, v in given.items()}
    values = complete_args(spec, checked)
    return {name: values[name] for name in spec.arg_names}  # schema order: nothing was written

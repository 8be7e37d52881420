"""References: how the names a file writes become node ids.

A name (``conv1``, ``layer1.0.conv2``, ``in``) becomes an
:class:`archdsl.frames.Unresolved` reference when it is written, and a node
id once the whole instance is known, so a skip or a chain may name a node
written later. ``qkv.1`` after ``qkv: chunk(3)`` names one output of an op
with several, and ``tie=wte`` the node whose weight a layer shares. Computed
path segments (``conv.(e + 1)``) are evaluated here too.

A mixin of :class:`archdsl.elaborate.Elaborator`.
"""

from __future__ import annotations

from typing import Any

from archdsl import syntax as ast
from archdsl.binding import bind
from archdsl.errors import ArchError, ArchNameError, ArchTypeError, Span
from archdsl.expr import Scope, show, type_name
from archdsl.frames import Frame, NodeRef, Unresolved, module_name_problem, resolve
from archdsl.node import Input
from archdsl.ops import lookup
from archdsl.shapes import op_signature


class References:
    """The elaborator's references: made while elaborating, resolved once the network is built."""

    def _ref(self, frame: Frame, ref: ast.Ref) -> NodeRef:
        if ref.path == "in":
            if frame.input_ref is None and frame.inputs:
                names = ", ".join(f"`{name}`" for name in frame.inputs)
                raise ArchNameError(
                    f"`in` has no meaning in {frame.where}: it was given its inputs by name ({names})",
                    ref.span,
                    f"start from one of them: `{frame.inputs[0]} -> ...`",
                    code="E204",
                )
            if frame.input_ref is None:
                raise ArchNameError(
                    "`in` has no meaning in a network", ref.span, "refer to a declared input by its name", code="E204"
                )
            return frame.input_ref
        self._check_not_a_value(frame, ref.path, ref.span)
        return self._piece_ref(frame, ref.path, ref.span) or Unresolved(frame, ref.path, ref.span)

    def _check_not_a_value(self, frame: Frame, path: str, span: Span) -> None:
        """A block parameter used as a node must have been given one (E312 names it by position and name)."""
        head = path.split(".")[0]
        if head not in frame.arguments or head in frame.names or head in frame.reserved:
            return  # not a parameter, or also the label of a node of the block (written before or after)
        position, value = frame.arguments[head]
        raise ArchTypeError(
            f"`{head}` is used as a node, but {frame.where} was given {type_name(value)} `{show(value)}` "
            f"for it (argument {position})",
            span,
            f"pass a node as argument {position} (`{head}`), e.g. the label of an earlier op",
            code="E312",
        )

    def _piece_ref(self, frame: Frame, path: str, span: Span) -> str | None:
        """``qkv.1`` after ``qkv: chunk(3)``: the node taking that output, made on its first reference; else None."""
        head, dot, tail = path.rpartition(".")
        if not dot or not tail.isdigit():
            return None
        found = resolve(Unresolved(frame, head, span), self.graph.__contains__)
        if not isinstance(found, str):
            return None
        made = self.graph.nodes[found]
        spec = lookup(made["op"])
        if spec is None or spec.pieces is None:
            return None
        node = f"{found}.{int(tail)}"
        if node not in self.graph:
            self.graph.add_node(node, op="piece", args={"index": int(tail)}, span=span, groups=made["groups"])
            self._edge(found, node, "flow", 0, span)
        return node

    def _tie(self, spec, call: ast.Call, frame: Frame) -> tuple[tuple[ast.Arg, ...], dict[str, Any]]:
        """The call's arguments without ``tie=node``, and the node attributes that ``tie`` gives (none without it).

        ``head: linear(vocab, bias=false, tie=wte)`` makes ``head`` use the
        weight of ``wte`` instead of a weight of its own (weight tying).
        """
        given = [arg for arg in call.args if arg.name == "tie"]
        if not given:
            return call.args, {}
        arg = given[0]
        if not spec.stateful:
            raise ArchTypeError(f"`{spec.name}` has no weight to tie", arg.span, code="E411")
        path = expr_path(arg.value)
        if path is None:
            raise ArchTypeError(
                "`tie=` names the node whose weight this one uses", arg.value.span, "e.g. `tie=wte`", code="E411"
            )
        rest = tuple(a for a in call.args if a is not arg)
        return rest, {"tie": Unresolved(frame, path, arg.value.span), "tie_span": arg.span}

    def _node_args(self, spec, args: tuple[ast.Arg, ...], frame: Frame) -> list[tuple[str, ast.Arg, NodeRef]]:
        """The arguments that name a node (``upsample(like=enc3)``): each becomes one more input of the op.

        The op reads that node's shape (at run time too, so the module works at
        other input sizes); its shape rule sees it after the op's own inputs.
        """
        kinds = {a.name: a.kind for a in spec.args}
        if "node" not in kinds.values():
            return []
        found = []
        for name, arg in bind(op_signature(spec), args, args[0].span if args else Span("", 0, 0, 0, 0)).items():
            if kinds[name] != "node":
                continue
            path = expr_path(arg.value)
            if path is None and not isinstance(arg.value, ast.InputRef):
                raise ArchTypeError(
                    f"`{name}` names a node", arg.value.span, f"e.g. `{name}=enc3`, a node written before", code="E312"
                )
            ref = self._ref(frame, ast.Ref("in", arg.value.span)) if path is None else self._ref_path(frame, path, arg)
            found.append((name, arg, ref))
        return found

    def _ref_path(self, frame: Frame, path: str, arg: ast.Arg) -> NodeRef:
        return self._piece_ref(frame, path, arg.value.span) or Unresolved(frame, path, arg.value.span)

    def _arg_ref(self, frame: Frame, arg: ast.Arg) -> NodeRef:
        value = arg.value
        if isinstance(value, ast.InputRef):
            return self._ref(frame, ast.Ref("in", value.span))
        path = expr_path(value)
        if path is not None:
            self._check_not_a_value(frame, path, arg.span)
        if path is None:
            raise ArchTypeError(
                "inputs of a merge are node names",
                arg.span,
                "write the names of the nodes to merge, e.g. `add(a, b)`",
                code="E312",
            )
        return self._piece_ref(frame, path, arg.span) or Unresolved(frame, path, arg.span)

    # ------------------------------------------------------------- paths

    def _path_text(self, path: ast.Path, scope: Scope) -> str:
        """A label or reference as text: a computed segment ``(expr)`` becomes its value (an int or a name)."""
        if isinstance(path, str):
            return path
        out = []
        for part in path.parts:
            if isinstance(part, str):
                out.append(part)
                continue
            value = self._concrete(part, scope, "a computed label")
            problem = None
            if isinstance(value, bool) or not isinstance(value, (int, str)):
                problem = f"a computed path segment is an int or a string, got {type_name(value)} `{show(value)}`"
            elif isinstance(value, int) and value < 0:
                problem = f"a computed path segment cannot be negative, got {value}"
            elif isinstance(value, str) and (reason := module_name_problem(value)):
                problem = f"a computed path segment gives `{value}`, which {reason}"
            if problem:
                raise ArchTypeError(problem, part.span, "compute a number, or a name without `.`", code="E320")
            out.append(str(value))
        return "".join(out)

    def _static_ref(self, ref: ast.Ref, scope: Scope) -> ast.Ref:
        """``ref`` with its computed segments evaluated."""
        if isinstance(ref.path, str):
            return ref
        return ast.Ref(self._path_text(ref.path, scope), ref.span)

    # ---------------------------------------------------------- resolving

    def resolve(self, ref: NodeRef) -> str | None:
        """The node id a reference names, or None (with an error recorded)."""
        found = resolve(ref, self.graph.__contains__)
        if isinstance(found, ArchError):
            self.errors.append(found)
            return None
        return found

    def _resolve_edges(self) -> None:
        """Give every node its ordered ``inputs``; the graph's edges (one per pair) carry only topology."""
        positioned: dict[str, list[tuple[int, Input]]] = {}
        edges: dict[tuple[str, str], Span] = {}  # each (source, target) pair once, where it was first made
        done = self._resolved  # given their inputs early (see archdsl.upstream)
        for source, target, kind, position, span in self.pending_edges:
            if target in done or target not in self.graph:
                continue
            node = self.resolve(source)
            if node is None:
                self.poisoned.add(target)
                continue
            positioned.setdefault(target, []).append((position, Input(node, kind, span)))
            edges.setdefault((node, target), span)
        self.graph.add_edges_from((source, target, {"span": span}) for (source, target), span in edges.items())
        for node, data in self.graph.nodes(data=True):
            if node in done or "inputs" in data:
                continue
            items = positioned.get(node, ())
            if len(items) > 1:
                items = sorted(items, key=lambda p: p[0])
            data["inputs"] = [item for _, item in items]
        for node, data in self.graph.nodes(data=True):
            if "tie" in data and not isinstance(data["tie"], str):
                data["tie"] = self.resolve(data["tie"])
                if data["tie"] is None:
                    self.poisoned.add(node)
            if data["op"] == "shortcut" and node not in done:
                resolved = self.resolve(data["target"])
                data["target"] = resolved
                if resolved is None:
                    self.poisoned.add(node)

    def _network_outputs(self, definition: ast.Definition, frame: Frame, cursor) -> list[NodeRef]:
        refs = (
            [self._ref(frame, r) for r in frame.outputs] if frame.outputs else ([cursor] if cursor is not None else [])
        )
        if not refs:
            self.errors.append(
                ArchNameError(
                    f"network `{definition.name}` computes nothing",
                    definition.name_span,
                    "declare an input and at least one op",
                    code="E225",
                )
            )
        self._output_refs = refs
        return refs

    def finish_outputs(self, refs: list[NodeRef] | None = None) -> list[str]:
        """Resolve the network's output references, or ``refs`` (after edges are resolved)."""
        outs = [self.resolve(r) for r in (self._output_refs if refs is None else refs)]
        return [o for o in outs if o is not None]


def expr_path(expr: ast.Expr) -> str | None:
    if isinstance(expr, ast.Name):
        return expr.name
    if isinstance(expr, ast.Attr):
        inner = expr_path(expr.obj)
        return f"{inner}.{expr.name}" if inner else None
    return None

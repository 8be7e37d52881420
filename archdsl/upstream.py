"""Shapes during elaboration: what a structural decision reads is inferred on demand.

Conditions, repeat counts, labels and block arguments may read a shape
(``if stride == 1 and in.channels == out``). Elaboration adds nodes in the
order the file writes them, so when such a value is evaluated, the node it
reads and everything upstream of it already exist. This mixin of
:class:`archdsl.elaborate.Elaborator` resolves their inputs and runs shape
inference (:mod:`archdsl.shapes`) over exactly that upstream part, once per
node. Validation later infers the rest and keeps what was inferred here.

A shape that is not determined yet (it reads a node defined later, or one
whose inputs are defined later) is a located error, E325.
"""

from __future__ import annotations

from typing import Any

from archdsl.errors import ArchTypeError, Span
from archdsl.expr import FailedValue, Shape
from archdsl.frames import Unresolved, resolve
from archdsl.node import Input
from archdsl.shapes import ShapeInference


class UpstreamShapes:
    """The elaborator's on-demand shape inference (see the module docstring)."""

    def _init_upstream(self) -> None:
        self._edges_into: dict[str, list[int]] = {}  # target -> indices into pending_edges
        self._resolved: set[str] = set()  # nodes whose inputs are final (resolved here, early)
        self._early: ShapeInference | None = None
        self._ensuring: set[str] = set()  # nodes being inferred for an argument that reads them: a cycle guard

    def _edge(self, source: Any, target: str, kind: str, position: int, span: Span) -> None:
        """Record an input of ``target``; it is resolved when its shape is first needed, or after elaboration."""
        self._edges_into.setdefault(target, []).append(len(self.pending_edges))
        self.pending_edges.append((source, target, kind, position, span))

    def _shape_now(self, ref: Any, span: Span) -> Shape:
        """The shape of the node ``ref`` names, inferring what is upstream of it; for ``Scope.shape_of``."""
        node = self._resolve_now(ref, span)
        self._infer_upstream(node, span)
        early = self._early
        if node in early.poisoned or node not in early.shapes:
            raise FailedValue()  # its own error is reported where it failed
        return early.shapes[node]

    def _resolve_now(self, ref: Any, span: Span) -> str:
        """The node ``ref`` names now, or E325 at ``span``, where its shape is read."""
        found = resolve(ref, self.graph.__contains__)
        if isinstance(found, str):
            return found
        if found is None:
            raise FailedValue()
        name = ref.path if isinstance(ref, Unresolved) else str(ref)
        later = isinstance(ref, Unresolved) and ref.path in ref.frame.reserved
        raise ArchTypeError(
            f"the shape of `{name}` is read before it is determined"
            + (f": `{ref.path}` is defined later" if later else f" ({found.message})"),
            span,
            "a condition, a repeat count or a label may read the shapes of nodes written before it",
            code="E325",
        )

    def _infer_upstream(self, node: str, span: Span) -> None:
        """Resolve the inputs of ``node`` and of everything upstream, then infer their shapes in order."""
        if self._early is None:
            self._early = ShapeInference(self.graph, self.errors, frozenset(), ensure=self._ensure)
        early = self._early
        early.poisoned |= self.poisoned
        order: list[str] = []
        pending = [(node, False)]
        visiting: set[str] = set()
        while pending:
            current, expanded = pending.pop()
            if expanded:
                order.append(current)
                continue
            if current in visiting or current in early.shapes or current in early.poisoned:
                continue
            visiting.add(current)
            pending.append((current, True))
            for source in self._resolve_inputs(current, span):
                pending.append((source, False))
        for current in order:
            if current in self.graph:  # a shortcut replaced by its expansion is gone
                early.run([current])

    def _ensure(self, node: str) -> None:
        """A node's arguments read the shape of ``node``: infer it (and its upstream) first.

        Reading a node that is being inferred is a cycle: left alone, inference reports it (E402).
        """
        if node in self._ensuring:
            return
        self._ensuring.add(node)
        try:
            self._infer_upstream(node, self.graph.nodes[node]["span"])
        finally:
            self._ensuring.discard(node)

    def _resolve_inputs(self, node: str, span: Span) -> list[str]:
        """Give ``node`` its ordered ``inputs`` now; returns the nodes its shape depends on."""
        data = self.graph.nodes[node]
        if node in self._resolved:
            deps = [item.source for item in data["inputs"]]
        else:
            positioned = []
            for index in self._edges_into.get(node, ()):
                source, _, kind, position, edge_span = self.pending_edges[index]
                found = self._resolve_now(source, span)
                positioned.append((position, Input(found, kind, edge_span)))
                if not self.graph.has_edge(found, node):
                    self.graph.add_edge(found, node, span=edge_span)
            positioned.sort(key=lambda p: p[0])
            data["inputs"] = [item for _, item in positioned]
            if data["op"] == "shortcut":
                data["target"] = self._resolve_now(data["target"], span)
            self._resolved.add(node)
            deps = [item.source for item in data["inputs"]]
        if data["op"] == "shortcut" and data["target"] is not None:
            deps.append(data["target"])  # its policy compares both ends' shapes
        return deps

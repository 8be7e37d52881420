"""The names of one block (or network) instance while it is elaborated, and the groups nodes belong to."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from archdsl import syntax as ast
from archdsl.errors import Span


@dataclass(frozen=True)
class Group:
    """A stage or block instance that a node belongs to (outermost first)."""

    path: str  # module path of the group, e.g. "layer2" or "layer2.0"
    kind: str  # "stage" or "block"
    name: str  # the block (or op) that was repeated / instantiated
    repeat: int | None = None  # index within the stage
    span: Span | None = field(default=None, compare=False)  # where it was instantiated
    args: tuple[tuple[str, str], ...] = field(default=(), compare=False)  # the block's arguments, as written values


@dataclass(frozen=True)
class Unresolved:
    """A name used before the whole block instance is known."""

    frame: Frame
    path: str
    span: Span


NodeRef = Any  # str (a node id) or Unresolved


@dataclass(eq=False)
class Frame:
    """Names of one block (or network) instance."""

    prefix: str
    where: str
    input_ref: NodeRef | None
    names: dict[str, NodeRef] = field(default_factory=dict)
    name_spans: dict[str, Span] = field(default_factory=dict)
    reserved: set[str] = field(default_factory=set)
    outputs: list[ast.Ref] | None = None

    counters: dict[str, int] = field(default_factory=dict)

    taken: Any = None  # callable: is this full node id already in the graph?

    def fresh(self, base: str) -> str:
        """A local name for an unlabelled node that collides with no label of this frame and no node."""
        n = self.counters.get(base, 0)
        candidate = base if n == 0 else f"{base}_{n}"
        while (
            candidate in self.reserved
            or candidate in self.names
            or (self.taken is not None and self.taken(self.prefix + candidate))
        ):
            n += 1
            candidate = f"{base}_{n}"
        self.counters[base] = n + 1
        self.reserved.add(candidate)
        return candidate

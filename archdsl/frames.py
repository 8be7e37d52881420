"""The names of one block (or network) instance while it is elaborated, and the groups nodes belong to."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from archdsl import syntax as ast
from archdsl.errors import ArchNameError, Span, did_you_mean


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
    # label -> the next free number under it (`features.0` written: 1), where a stage's repeats continue
    numbering: dict[str, int] = field(default_factory=dict)
    stage_labels: set[str] = field(default_factory=set)  # labels of stages, which later stages may continue

    def number(self, local: str) -> None:
        """Note the numbers ``local`` uses (`features.3` takes 3 under `features`), so stages continue after them."""
        parts = local.split(".")
        for cut in range(1, len(parts)):
            if parts[cut].isdigit():
                parent = ".".join(parts[:cut])
                self.numbering[parent] = max(self.numbering.get(parent, 0), int(parts[cut]) + 1)

    inputs: tuple[str, ...] = ()  # a block's parameters that were given nodes: its named inputs (then no `in`)
    arguments: dict[str, tuple[int, Any]] = field(default_factory=dict)  # other parameters: (position, value)

    taken: Any = None  # callable: is this full node id already in the graph?
    # Shared by every frame of this prefix (unlabelled block instances share their caller's prefix):
    # base -> {n: a later n'} where every name from `base_n` up to `base_(n'-1)` is a node already.
    skips: dict[str, dict[int, int]] = field(default_factory=dict)

    def fresh(self, base: str) -> str:
        """A local name for an unlabelled node that collides with no label of this frame and no node.

        The first of ``base``, ``base_1``, ``base_2``, ... from this frame's
        counter on that is neither a name of this frame nor a node. Runs of
        names that are nodes already are jumped over (nodes are never
        removed during elaboration), so the 20,000th unlabelled instance of
        a block does not test the 19,999 names before it.
        """
        n = self._first_untaken(base, self.counters.get(base, 0))
        while (candidate := base if n == 0 else f"{base}_{n}") in self.reserved or candidate in self.names:
            n = self._first_untaken(base, n + 1)
        self.counters[base] = n + 1
        self.reserved.add(candidate)
        return candidate

    def _first_untaken(self, base: str, n: int) -> int:
        """The first ``m >= n`` whose name ``base_m`` is no node of the graph (union-find with path compression)."""
        if self.taken is None:
            return n
        skips = self.skips.setdefault(base, {})
        visited = []
        while True:
            if n in skips:
                visited.append(n)
                n = skips[n]
            elif self.taken(self.prefix + (base if n == 0 else f"{base}_{n}")):
                visited.append(n)
                n += 1
            else:
                break
        for m in visited:
            skips[m] = n
        return n


def lookup_name(frame: Frame, name: str) -> NodeRef | None:
    """What a bare name means in ``frame`` when it is not a value: a reference to one of its nodes, or None."""
    if name in frame.names or name in frame.reserved:
        return Unresolved(frame, name, Span("", 0, 0, 0, 0))
    return None


def resolve(ref: NodeRef, exists: Callable[[str], bool]) -> str | ArchNameError | None:
    """The node id a reference names, or the error (E201) saying why it names none.

    ``exists`` tells whether a full node id is in the graph; references made
    before their target was defined (a skip to a later node) follow the
    frame's names until they reach a node id. None: a loop of names, which
    only a reported error makes.
    """
    seen = 0
    while isinstance(ref, Unresolved):
        seen += 1
        if seen > 1000:
            return None  # names that only refer to each other; the error that made them is reported
        frame = ref.frame
        if ref.path in frame.names:
            ref = frame.names[ref.path]
            continue
        full = frame.prefix + ref.path
        if exists(full):
            return full
        hint = did_you_mean(ref.path, [*frame.names, *(["in"] if frame.input_ref is not None else [])])
        return ArchNameError(f"unknown node `{ref.path}` in {frame.where}", ref.span, hint, code="E201")
    return ref


# Characters a module name may not hold: the path separator, and what would break the
# generated code's `getattr(self, "name")` for names that are not Python identifiers.
_FORBIDDEN = frozenset('."\\')


def module_name_problem(name: str) -> str | None:
    """Why ``name`` cannot be one segment of a module path, or None when PyTorch and the generated code accept it.

    PyTorch accepts any non-empty name without `.`; the generated code also
    needs names without quotes, backslashes or unprintable characters.
    """
    if not name:
        return "is empty"
    bad = next((ch for ch in name if ch in _FORBIDDEN or not ch.isprintable() or ch.isspace()), None)
    if bad is None:
        return None
    if bad == ".":
        return "holds `.`, which separates the parts of a path"
    if bad in _FORBIDDEN:
        return f"holds `{bad}`, which the generated code cannot quote"
    return f"holds {'a space' if bad == ' ' else repr(bad)}, which the generated code cannot quote"

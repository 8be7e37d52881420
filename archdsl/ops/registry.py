"""The op registry: name -> argument schema, shape rule, counts and torch emission.

Adding an op is one :func:`register` call with its :class:`OpSpec`; no stage
of the pipeline names ops one by one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from archdsl.expr import Shape, show, type_name

REQUIRED = object()


class ShapeProblem(Exception):
    """Raised by shape rules; the elaborator attaches the source location."""

    def __init__(self, message: str, arg: str | None = None, hint: str | None = None, input_index: int | None = None):
        super().__init__(message)
        self.message = message
        self.arg = arg
        self.hint = hint
        self.input_index = input_index


class ArgProblem(Exception):
    """An argument value that does not fit its schema."""

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint


@dataclass(frozen=True)
class ArgSpec:
    """One argument of an op: its name, type, default and range."""

    name: str
    # "int", "float", "bool", "int2" (int or [int, int]), "ints" (a list of ints), "str", or "node": the name of
    # a node, which becomes one more input of the op (after its own); the op's args then hold True
    kind: str
    default: Any = REQUIRED
    minimum: float | None = None
    maximum: float | None = None
    doc: str = ""

    @property
    def required(self) -> bool:
        return self.default is REQUIRED

    def coerce(self, value: Any) -> Any:
        """Check ``value`` against the schema and normalise it (int2 -> tuple)."""
        if value is None and self.default is None:
            return None
        written = value
        kind = self.kind
        if kind == "int":
            ok = isinstance(value, int) and not isinstance(value, bool)
        elif kind == "float":
            ok = isinstance(value, (int, float)) and not isinstance(value, bool)
            value = float(value) if ok else value
        elif kind == "bool":
            ok = isinstance(value, bool)
        elif kind == "str":
            ok = isinstance(value, str)
        elif kind == "ints":
            if isinstance(value, int) and not isinstance(value, bool):
                value = (value,)
            ok = isinstance(value, tuple) and all(isinstance(v, int) and not isinstance(v, bool) for v in value)
        elif kind == "int2":
            if isinstance(value, int) and not isinstance(value, bool):
                value, ok = (value, value), True
            else:
                ok = (
                    isinstance(value, tuple)
                    and len(value) == 2
                    and all(isinstance(v, int) and not isinstance(v, bool) for v in value)
                )
        else:  # pragma: no cover - a registry bug
            raise ValueError(kind)
        if not ok:
            want = {
                "int2": "an int or a list of two ints",
                "ints": "a list of ints",
                "int": "an int",
                "float": "a number",
                "bool": "`true` or `false`",
                "str": "a string",
            }[kind]
            raise ArgProblem(f"`{self.name}` must be {want}, got {type_name(value)} `{show(value)}`")
        items = value if kind == "ints" else written if isinstance(written, tuple) else (written,)
        for item in items:
            if self.minimum is not None and item < self.minimum:
                raise ArgProblem(f"`{self.name}` must be at least {show(self.minimum)}, got {show(item)}")
            if self.maximum is not None and item > self.maximum:
                raise ArgProblem(f"`{self.name}` must be at most {show(self.maximum)}, got {show(item)}")
        return value


@dataclass(frozen=True)
class ChoiceArg(ArgSpec):
    """A string argument that must be one of ``choices``; another value is an argument error (E301)."""

    choices: tuple[str, ...] = ()

    def coerce(self, value: Any) -> Any:
        value = super().coerce(value)
        if value not in self.choices:
            allowed = " or ".join(show(choice) for choice in self.choices)
            raise ArgProblem(f"`{self.name}` must be {allowed}, got `{show(value)}`", hint=self.doc or None)
        return value


def _zero(*_: Any) -> int:
    return 0


def _flow(_: int) -> str:
    return "flow"


@dataclass(frozen=True)
class OpSpec:
    """Everything the pipeline needs to know about one op.

    ``infer(args, input_shapes) -> shape`` raises :class:`ShapeProblem`.
    ``build(args, input_shapes) -> nn.Module`` makes a stateful op's module
    (compiled as ``call_module`` at the node's path); ``emit(call, inputs,
    args) -> fx.Node`` writes a stateless op, where ``call(fn, args, kwargs)``
    adds a ``call_function`` node named after the graph node (an intermediate
    one passes ``step="..."`` and is named ``{node}_{step}``).

    The rest have defaults. Diagrams: ``label(args)`` is the text of the op's
    box (default: the op's name), ``fill`` its colour (default: white),
    ``merge_note`` how a folded box counts it ("skip sums"), and
    ``shortcut_kind`` how a folded box names a shortcut made of it
    ("projection"). ``weighted`` counts it in the zoo's depth (the
    convolutions and linear layers on the longest path). Compilation:
    ``overwritable`` says its backward never reads its own output, so the op
    after it may overwrite that output when it is the only reader; an
    element-wise op with an ``in_place`` twin (``torch.relu_``) then runs in
    place, as torchvision's ``nn.ReLU(inplace=True)`` does.

    Several outputs: ``pieces(args, input_shapes) -> shapes`` makes an op
    whose result is a tuple (``chunk``, ``split``). Its own ``infer`` gives
    the shape drawn on its box; a later statement reads piece ``i`` as
    ``label.i``, which becomes a ``piece`` node taking ``operator.getitem``.

    A ``learned`` op's ``build`` makes an ``nn.Parameter`` that the compiled
    graph reads with ``get_attr`` (``param`` nodes). Such tensors have no batch dimension; beside an
    activation they line up with it as PyTorch broadcasting does (see
    :func:`archdsl.ops.params.param_view`). An ``elementwise`` op's shape rule
    sees them stretched to the activation's shape, and torch broadcasts them
    at run time; any other op gets them expanded over the batch.
    """

    name: str
    summary: str
    infer: Callable[[Mapping[str, Any], Sequence[Shape]], Shape]
    args: tuple[ArgSpec, ...] = ()
    min_inputs: int = 1
    max_inputs: int | None = 1
    inputs_in_args: bool = False
    count_params: Callable[[Mapping[str, Any], Sequence[Shape]], int] = _zero
    count_macs: Callable[[Mapping[str, Any], Sequence[Shape], Shape], int] = _zero
    build: Callable[[Mapping[str, Any], Sequence[Shape]], Any] | None = None
    emit: Callable[[Any, Sequence[Any], Mapping[str, Any]], Any] | None = None
    edge_kind: Callable[[int], str] = _flow
    internal: bool = False  # made by the compiler (shortcuts), not written by users
    finish_args: Callable[[dict[str, Any]], dict[str, Any]] | None = None  # derived defaults
    label: Callable[[Mapping[str, Any]], str] | None = None
    fill: str | None = None
    merge_note: str | None = None
    shortcut_kind: str | None = None
    weighted: bool = False
    overwritable: bool = False
    in_place: Callable[..., Any] | None = None
    pieces: Callable[[Mapping[str, Any], Sequence[Shape]], tuple[Shape, ...]] | None = None
    learned: bool = False  # a learned tensor, not a module (`param`): `build` makes it, the graph reads it, no batch
    elementwise: bool = False  # inputs broadcast against each other (a `param` of size 1 in a dim stretches)
    weight_shape: Callable[[Mapping[str, Any], Sequence[Shape]], Shape] | None = None  # what `tie=` shares
    token_ids: str = "refuse"  # given integer token ids: "refuse" them, "keep" them (layout ops), or "embed" them
    arg_names: tuple[str, ...] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "arg_names", tuple(a.name for a in self.args))

    @property
    def stateful(self) -> bool:
        return self.build is not None

    def describe(self, args: Mapping[str, Any]) -> str:
        """The text of this op's box in a diagram, for the given arguments."""
        return self.name if self.label is None else self.label(args)


REGISTRY: dict[str, OpSpec] = {}


def register(spec: OpSpec) -> OpSpec:
    """Add an op to the registry (names are unique)."""
    if spec.name in REGISTRY:
        raise ValueError(f"op {spec.name!r} is registered twice")
    REGISTRY[spec.name] = spec
    return spec


def unregister(name: str) -> OpSpec:
    """Remove an op from the registry and return it."""
    return REGISTRY.pop(name)


@contextmanager
def registered(spec: OpSpec) -> Iterator[OpSpec]:
    """Register ``spec`` for the duration of a ``with`` block (tests, experiments)."""
    register(spec)
    try:
        yield spec
    finally:
        unregister(spec.name)


def lookup(name: str) -> OpSpec | None:
    """The op called ``name``, or None."""
    return REGISTRY.get(name)


def user_ops() -> list[str]:
    """Names of the ops a user may write, sorted."""
    return sorted(n for n, s in REGISTRY.items() if not s.internal)

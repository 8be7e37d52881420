"""Stage 2: AST -> structural ``networkx.DiGraph``.

Blocks are instantiated, stages repeated, dense connections and skips
expanded. Op arguments stay unevaluated here (they may read inferred shapes,
``in.channels``); :mod:`archdsl.shapes` evaluates them in topological order.

Stages are expanded by :class:`archdsl.stages.StageExpander`; the names of a
block instance live in an :class:`archdsl.frames.Frame`.

Structural node attributes: ``op``, ``call`` (the ``ast.Arg`` s), ``scope``,
``span``, ``groups``, ``inputs`` (ordered :class:`archdsl.node.Input` s; the
graph's edges only record topology), and for inputs the evaluated ``args``.
Skips leave a ``shortcut`` node whose policy is applied once shapes are known.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any

import networkx as nx

from archdsl import limits
from archdsl import syntax as ast
from archdsl.binding import Signature, bind
from archdsl.declarations import Declarations
from archdsl.errors import (
    ArchError,
    ArchLimitError,
    ArchNameError,
    ArchTypeError,
    Span,
    did_you_mean,
)
from archdsl.expr import (
    FAILED,
    Deferred,
    FailedValue,
    NeedsShape,
    NodeValue,
    Scope,
    evaluate,
    show,
    try_evaluate,
    type_name,
)
from archdsl.frames import Frame, Group, NodeRef, lookup_name
from archdsl.loader import Program, zoo_library_blocks
from archdsl.ops import lookup, user_ops
from archdsl.references import References, expr_path
from archdsl.stages import StageExpander
from archdsl.upstream import UpstreamShapes

SHORTCUT_POLICIES = ("identity", "projection", "zeropad")
DEFAULT_SHORTCUT_NAME = "downsample"


class Elaborator(StageExpander, UpstreamShapes, Declarations, References):
    """Builds the structural graph of one network; collects every error on the way."""

    def __init__(self, program: Program) -> None:
        self.program = program
        self.graph = nx.DiGraph()
        self.errors: list[ArchError] = []
        self.pending_edges: list[tuple[NodeRef, str, str, int, Span]] = []
        self.poisoned: set[str] = set()
        self.block_stack: list[str] = []
        self.instances = 0  # block calls so far: bounded like nodes, since a block may add none
        self._groups: tuple[Group, ...] = ()
        self._output_refs: list[NodeRef] = []
        self._training_outputs: list[NodeRef] | None = None  # `output ... when training`
        self._name_skips: dict[str, dict[str, dict[int, int]]] = {}  # per prefix: see Frame.skips
        self._init_upstream()

    # ------------------------------------------------------------ entry

    def network(self, definition: ast.Definition, overrides: Mapping[str, Any]) -> nx.DiGraph:
        """Instantiate ``definition`` with parameter ``overrides``; returns the structural graph."""
        frame = Frame(
            prefix="",
            where=f"network `{definition.name}`",
            input_ref=None,
            taken=self.graph.__contains__,
            skips=self._name_skips.setdefault("", {}),
        )
        scope = self._scope(frame)
        self._bind_network_params(definition, overrides, scope)
        output = self._body(definition, frame, scope, cursor=None)
        outputs = self._network_outputs(definition, frame, output)
        self._resolve_edges()
        g = self.graph
        g.graph.update(
            name=definition.name,
            doc=definition.doc or self.program.main.doc,
            inputs=[n for n, d in g.nodes(data=True) if d["op"] == "input"],
            outputs=outputs,
            params={k: v for k, v in scope.values.items() if k in {p.name for p in definition.params}},
            span=definition.span,
        )
        return g

    def _scope(self, frame: Frame, values: dict[str, Any] | None = None) -> Scope:
        return Scope(
            values if values is not None else {},
            frame.where,
            node_lookup=functools.partial(lookup_name, frame),
            input_ref=frame.input_ref,
        )

    # ------------------------------------------------------------ bodies

    def _body(self, definition: ast.Definition, frame: Frame, scope: Scope, cursor: NodeRef | None) -> NodeRef | None:
        for stmt in definition.body:
            for label in _labels(stmt):
                frame.reserved.add(label)
        cursor = self._statements(definition.body, definition, frame, scope, cursor)
        if frame.outputs:
            if definition.kind == "block":
                # The first output is the block's value; a caller reads the others by path (`dec.aux`).
                return self._ref(frame, frame.outputs[0])
        return cursor

    def _statements(self, body, definition: ast.Definition, frame: Frame, scope: Scope, cursor):
        for stmt in body:
            try:
                cursor = self._statement(stmt, definition, frame, scope, cursor)
            except ArchError as err:
                self.errors.append(err)
            except FailedValue:
                pass  # its cause was reported where it happened
            except NeedsShape:
                self.errors.append(_reads_shape(stmt.span, "this statement's structure"))
            except RecursionError:  # the deepest statement catches it, so the error points there
                hint = "split the expression with `let` bindings, or nest blocks less deeply"
                self.errors.append(
                    ArchLimitError("this statement nests too deeply to process", stmt.span, hint, code="E323")
                )
        return cursor

    def _statement(self, stmt, definition: ast.Definition, frame: Frame, scope: Scope, cursor):
        if isinstance(stmt, ast.If):
            chosen = stmt.then if self._condition(stmt.cond, scope, "an `if` condition") else stmt.other
            return self._statements(chosen, definition, frame, scope, cursor)
        if isinstance(stmt, ast.Assert):
            if not self._condition(stmt.cond, scope, "an `assert`"):
                raise ArchTypeError(
                    f"assertion failed: {stmt.message or 'the condition is false'}", stmt.cond.span, code="E324"
                )
            return cursor
        if isinstance(stmt, ast.Chain):
            return self._chain(stmt, definition, frame, scope, cursor)
        if isinstance(stmt, ast.Skip):
            return self._skip(stmt, frame, scope)
        if isinstance(stmt, ast.Let):
            if stmt.name in scope.values:
                raise ArchNameError(f"`{stmt.name}` is already defined in {frame.where}", stmt.span, code="E211")
            try:
                value = try_evaluate(stmt.value, scope)
            except (ArchError, FailedValue):
                scope.values[stmt.name] = FAILED  # later uses stay silent
                raise
            scope.values[stmt.name] = value
            return cursor
        if isinstance(stmt, ast.InputDecl):
            try:
                return self._input(stmt, definition, frame, scope)
            except (ArchError, FailedValue) as err:
                if isinstance(err, ArchError):
                    self.errors.append(err)
                node = self._placeholder(frame, stmt.name, stmt.span, stmt.name)
                return node
        if isinstance(stmt, ast.ParamDecl):
            try:
                self._param(stmt, frame, scope)
            except (ArchError, FailedValue) as err:
                if isinstance(err, ArchError):
                    self.errors.append(err)
                if isinstance(stmt.path, str):
                    self._placeholder(frame, stmt.path, stmt.span, stmt.path)
            return cursor
        if isinstance(stmt, ast.OutputDecl):
            refs = [self._static_ref(ref, scope) for ref in stmt.refs]
            if stmt.training:
                if definition.kind != "network":
                    hint = "a block's outputs are the same in both modes; say in the network what training returns"
                    raise ArchNameError("`output ... when training` belongs to a network", stmt.span, hint, code="E232")
                if self._training_outputs is not None:
                    raise ArchNameError("`output ... when training` is declared twice", stmt.span, code="E212")
                self._training_outputs = [self._ref(frame, ref) for ref in refs]
                return cursor
            if frame.outputs is not None:
                raise ArchNameError("`output` is declared twice", stmt.span, code="E212")
            frame.outputs = refs
            return cursor
        raise TypeError(stmt)  # pragma: no cover

    def _concrete(self, expr: ast.Expr, scope: Scope, what: str) -> Any:
        """Evaluate a value that decides structure now, inferring the shapes it reads (see :mod:`archdsl.upstream`)."""
        try:
            return evaluate(expr, scope)
        except NeedsShape:
            return evaluate(expr, scope.with_shapes(self._shape_now))

    def _condition(self, expr: ast.Expr, scope: Scope, what: str) -> bool:
        value = self._concrete(expr, scope, what)
        if not isinstance(value, bool):
            raise ArchTypeError(f"{what} needs a bool, got {type_name(value)} `{show(value)}`", expr.span, code="E302")
        return value

    # ------------------------------------------------------------ chains

    def _chain(self, chain: ast.Chain, definition, frame: Frame, scope: Scope, cursor):
        links = chain.links
        for index, link in enumerate(links):
            if isinstance(link.label, ast.Template):
                try:
                    link = replace(link, label=self._path_text(link.label, scope))
                except (ArchError, FailedValue) as err:
                    if isinstance(err, ArchError):
                        self.errors.append(err)
                    link = replace(link, label=None)
            if isinstance(link.target, ast.Ref) and isinstance(link.target.path, ast.Template):
                link = replace(link, target=self._static_ref(link.target, scope))
            target = link.target
            starts_from_node = index == 0 and len(links) > 1 and isinstance(target, ast.Ref)
            if starts_from_node and link.label is None:
                cursor = self._ref(frame, target)
                continue
            try:
                if starts_from_node and self._is_node_name(target.path, frame, definition):
                    raise ArchNameError(
                        f"`{link.label}: {target.path} -> ...` labels a reference to an existing node",
                        link.span,
                        f"to name the next op, write `{target.path} -> {link.label}: ...`",
                        code="E227",
                    )
                if isinstance(target, ast.Ref):
                    target = ast.Call(target.path, (), target.span, target.span)
                if isinstance(target, ast.Stage):
                    cursor = self._stage(target, link, frame, scope, cursor)
                else:
                    cursor = self._call(target, link.label, link.label_span, link.span, frame, scope, cursor)
            except (ArchError, FailedValue, NeedsShape) as err:
                # Keep going with a placeholder, so later statements are still
                # checked but nothing downstream repeats this error.
                if isinstance(err, NeedsShape):
                    err = _reads_shape(link.span, "this link's structure")
                if isinstance(err, ArchError):
                    self.errors.append(err)
                cursor = self._placeholder(frame, link.label, target.span, _callee_name(target))
        return cursor

    def _is_node_name(self, path: str, frame: Frame, definition: ast.Definition) -> bool:
        if path == "in" or path in frame.names or path in frame.reserved:
            return True
        namespace = self.program.namespaces.get(definition.span.file, {})
        return path not in namespace and lookup(path) is None

    def _placeholder(self, frame: Frame, label: str | None, span: Span, callee: str) -> str:
        """A poisoned stand-in for a node that failed: later nodes depending on it stay silent."""
        local = label if label and label not in frame.name_spans else frame.fresh(f"{callee}_failed")
        node_id = frame.prefix + local
        if node_id not in self.graph:
            self.graph.add_node(node_id, op="error", span=span, groups=self._groups_now())
            frame.name_spans[local] = span
        self.poisoned.add(node_id)
        if label:
            frame.names[label] = node_id
        return node_id

    def _callee(self, call: ast.Call, definition_file: str):
        namespace = self.program.namespaces.get(definition_file, {})
        if call.callee in namespace:
            target = namespace[call.callee]
            if target.kind == "network":
                raise ArchNameError(
                    f"`{call.callee}` is a network and cannot be used inside another",
                    call.callee_span,
                    "turn it into a `block`",
                    code="E214",
                )
            return target
        spec = lookup(call.callee)
        if spec is not None and not spec.internal:
            return spec
        hint = _import_hint(call.callee) or did_you_mean(call.callee, [*namespace, *user_ops()])
        raise ArchNameError(f"unknown op or block `{call.callee}`", call.callee_span, hint, code="E202")

    def _call(self, call: ast.Call, label, label_span, span, frame: Frame, scope: Scope, cursor, node_path=None):
        target = self._callee(call, span.file)
        if isinstance(target, ast.Definition):
            return self._block_call(target, call, label, label_span, frame, scope, cursor, node_path)
        spec = target
        inputs: list[NodeRef] = []
        call_args, tie = self._tie(spec, call, frame)
        if spec.inputs_in_args:
            inputs = [self._arg_ref(frame, arg) for arg in call.args if arg.name is None]
            call_args = tuple(arg for arg in call_args if arg.name is not None)
        else:
            if cursor is None:
                hint = (
                    f"start from an input of {frame.where}: `{frame.inputs[0]} -> {call.callee}(...)`"
                    if frame.inputs
                    else "declare an input first: `input image: [3, 224, 224]`"
                )
                raise ArchNameError(f"`{label or call.callee}` has no input", call.callee_span, hint, code="E215")
            inputs = [cursor]
        input_spans = tuple(arg.span for arg in call.args if arg.name is None) if spec.inputs_in_args else ()
        node_args = self._node_args(spec, call_args, frame)
        if node_args:
            input_spans = (*(input_spans or (call.span,) * len(inputs)), *(arg.span for _, arg, _ in node_args))
            inputs += [ref for _, _, ref in node_args]
        local = node_path if node_path is not None else (label or frame.fresh(call.callee))
        node = self._add_node(
            frame,
            local,
            call.span,
            op=spec.name,
            call=call_args,
            scope=scope,
            label_span=label_span,
            input_spans=input_spans,
            **tie,
        )
        for position, source in enumerate(inputs):
            self._edge(source, node, spec.edge_kind(position), position, call.span)
        if label:
            frame.names[label] = node
        return node

    # ------------------------------------------------------------ blocks

    def _block_call(self, block: ast.Definition, call: ast.Call, label, label_span, frame, scope, cursor, node_path):
        if not block.body:
            raise ArchNameError(f"block `{block.name}` is empty", block.name_span, code="E218")
        if block.name in self.block_stack:
            raise ArchNameError(
                f"block `{block.name}` uses itself", call.callee_span, "blocks cannot be recursive", code="E216"
            )
        if len(self.block_stack) >= (depth := limits.current().max_block_depth):
            raise ArchNameError(f"blocks nest deeper than {depth}", call.callee_span, code="E217")
        self.instances += 1
        if self.instances > (most := limits.current().max_nodes):
            raise TooLarge(f"the network expands to more than {most} block instances", call.span)
        node_inputs = self._node_inputs(block, call, frame, scope)
        if cursor is None and not node_inputs:
            raise ArchNameError(
                f"block `{block.name}` has no input",
                call.callee_span,
                "declare an input first: `input image: [3, 224, 224]`",
                code="E215",
            )
        local = node_path if node_path is not None else label
        if label:
            self._claim(frame, label, label_span or call.span)
        prefix = frame.prefix + (f"{local}." if local else "")
        inner = Frame(
            prefix=prefix,
            where=f"block `{block.name}`",
            input_ref=None if node_inputs else cursor,  # a block given its inputs by name has no `in`
            taken=self.graph.__contains__,
            skips=self._name_skips.setdefault(prefix, {}),
            inputs=tuple(node_inputs),
        )
        inner.names.update(node_inputs)
        if node_inputs:
            cursor = None  # its statements start from its inputs, by name
        values = self._bind_block_args(block, call, scope, inner, node_inputs)
        inner_scope = self._scope(inner, values)
        groups = self._groups_now()
        # What the diagram shows for this instance: the arguments given, not the defaults.
        positional = sum(1 for a in call.args if a.name is None)
        given = [p.name for p in block.params[:positional]]
        given += [a.name for a in call.args if a.name is not None]
        shown = tuple((k, _shown(values[k])) for k in given if k in values)
        if node_path is not None and groups and groups[-1].path == prefix.rstrip("."):  # a stage's repeat
            groups = (*groups[:-1], replace(groups[-1], args=shown))
        elif local:
            groups += (Group(path=prefix.rstrip("."), kind="block", name=block.name, span=call.span, args=shown),)
        self.block_stack.append(block.name)
        try:
            with self._grouped(groups):
                output = self._body(block, inner, inner_scope, cursor)
        finally:
            self.block_stack.pop()
        if output is None:
            raise ArchNameError(f"block `{block.name}` is empty", block.name_span, code="E218")
        if label:
            frame.names[label] = output
        return output

    @contextmanager
    def _grouped(self, groups: tuple[Group, ...]):
        """Nodes added inside belong to ``groups`` (the stages and blocks being expanded)."""
        saved = self._groups
        self._groups = groups
        try:
            yield
        finally:
            self._groups = saved

    def _block_signature(self, block: ast.Definition) -> Signature:
        return Signature(
            callee=f"block `{block.name}`",
            params=tuple(p.name for p in block.params),
            required=frozenset(p.name for p in block.params if p.default is None),
            noun="parameter",
            needs="needs a value for",
        )

    def _node_inputs(self, block: ast.Definition, call: ast.Call, frame: Frame, scope: Scope) -> dict[str, NodeRef]:
        """The block's parameters given a node (``up(dec4, enc3, 256)``: ``x`` and ``skip``): its named inputs."""
        found: dict[str, NodeRef] = {}
        for name, arg in bind(self._block_signature(block), call.args, call.span).items():
            if isinstance(arg.value, ast.InputRef):
                found[name] = self._ref(frame, ast.Ref("in", arg.value.span))
                continue
            path = expr_path(arg.value)
            if path is None or path.split(".")[0] in scope.values:
                continue  # a value (a let or a parameter of the caller holding one)
            head = path.split(".")[0]
            if head in frame.names or head in frame.reserved or frame.prefix + path in self.graph:
                found[name] = self._ref(frame, ast.Ref(path, arg.value.span))
        return found

    def _bind_block_args(
        self, block: ast.Definition, call: ast.Call, scope: Scope, inner: Frame, node_inputs: dict[str, NodeRef]
    ) -> dict[str, Any]:
        given = bind(self._block_signature(block), call.args, call.span)
        values = {
            name: NodeValue(node_inputs[name]) if name in node_inputs else try_evaluate(arg.value, scope)
            for name, arg in given.items()
        }
        positions = {p.name: index + 1 for index, p in enumerate(block.params)}
        inner.arguments = {name: (positions[name], value) for name, value in values.items() if name not in node_inputs}
        defaults_scope = self._scope(inner, values)
        for param in block.params:
            if param.name not in values:
                values[param.name] = try_evaluate(param.default, defaults_scope)
        return values

    # ------------------------------------------------------------ stages

    def _groups_now(self) -> tuple[Group, ...]:
        return self._groups

    # ------------------------------------------------------------- skips

    def _skip(self, skip: ast.Skip, frame: Frame, scope: Scope):
        policy = skip.policy or "identity"
        if policy in scope.values:  # `via shortcut` where `shortcut` is a parameter holding the policy
            policy = self._concrete(ast.Name(policy, skip.policy_span or skip.span), scope, "a shortcut policy")
            if not isinstance(policy, str):
                raise ArchTypeError(
                    f"a shortcut policy is a string, got {type_name(policy)} `{show(policy)}`",
                    skip.policy_span or skip.span,
                    code="E301",
                )
        if policy not in SHORTCUT_POLICIES:
            hint = did_you_mean(policy, SHORTCUT_POLICIES) or "policies: " + ", ".join(SHORTCUT_POLICIES)
            raise ArchNameError(f"unknown shortcut policy `{policy}`", skip.policy_span or skip.span, hint, code="E223")
        source = self._ref(frame, self._static_ref(skip.src, scope))
        target = self._ref(frame, self._static_ref(skip.dst, scope))
        label = self._path_text(skip.label, scope) if skip.label is not None else None
        alias = self._path_text(skip.alias, scope) if skip.alias is not None else frame.fresh(DEFAULT_SHORTCUT_NAME)
        shortcut = self._add_node(
            frame, alias, skip.span, op="shortcut", call=(), scope=scope, policy=policy, target=target
        )
        self._edge(source, shortcut, "skip", 0, skip.span)
        add = self._add_node(frame, label or frame.fresh("add"), skip.span, op="add", call=(), scope=scope)
        self._edge(target, add, "flow", 0, skip.span)
        self._edge(shortcut, add, "skip", 1, skip.span)
        if label:
            frame.names[label] = add
        return add

    # ------------------------------------------------------------- nodes

    def _claim(self, frame: Frame, local: str, span: Span) -> None:
        """Register a name of this frame; a second definition is an error pointing at the first."""
        if local in frame.name_spans or frame.prefix + local in self.graph:
            first = frame.name_spans.get(local)
            raise ArchNameError(
                f"`{local}` is defined twice in {frame.where}",
                span,
                f"the first definition is at {first}" if first else "names of nodes must be unique",
                code="E224",
            )
        frame.name_spans[local] = span
        frame.number(local)

    def _add_node(self, frame: Frame, local: str, span: Span, *, op: str, groups=None, label_span=None, **attrs) -> str:
        node_id = frame.prefix + local
        self._claim(frame, local, label_span or span)
        if self.graph.number_of_nodes() >= (most := limits.current().max_nodes):
            raise TooLarge(f"the network has more than {most} nodes", span)
        if len(self.pending_edges) > (most := limits.current().max_edges):
            raise TooLarge(f"the network has more than {most} edges (node inputs)", span, "max_edges")
        groups = self._groups_now() if groups is None else groups
        self.graph.add_node(node_id, op=op, span=span, label_span=label_span, groups=tuple(groups), **attrs)
        return node_id

    def _expect_edges(self, more: int, span: Span, what: str) -> None:
        """Stop (E321) before ``what`` adds ``more`` edges that would take the network past ``Limits.max_edges``."""
        total = len(self.pending_edges) + more
        if total > (most := limits.current().max_edges):
            also = f", which takes the network to {total:,}" if total > more else ""
            message = f"{what} needs {more:,} edges (node inputs){also}, over the limit of {most:,}"
            raise TooLarge(message, span, "max_edges")


def _shown(value: Any) -> str:
    """An argument as a diagram shows it: six significant digits of a float (0.0375, not 0.037500000000000006)."""
    if isinstance(value, Deferred):
        return "…"
    if isinstance(value, float):
        return f"{value:.6g}"
    return show(value)


def _reads_shape(span: Span, what: str) -> ArchTypeError:
    """A shape read where none can be inferred yet (structure reads shapes through ``_concrete``, which infers them)."""
    return ArchTypeError(
        f"{what} reads a shape that is not determined here",
        span,
        "a condition, a repeat count or a label may read the shapes of nodes written before it",
        code="E325",
    )


def _import_hint(name: str) -> str | None:
    """Which import of the zoo's libraries brings the block ``name``, if one does."""
    imports = zoo_library_blocks().get(name)
    if not imports:
        return None
    return " or ".join(f'`import "{path}"`' for path in imports) + f" brings `{name}`"


def _callee_name(target) -> str:
    if isinstance(target, ast.Stage):
        return target.call.callee
    return target.path if isinstance(target, ast.Ref) else target.callee


def _labels(stmt) -> list[str]:
    """The labels a statement defines, in order; a loop, since `else if` chains nest without bound."""
    labels, pending = [], [stmt]
    while pending:
        stmt = pending.pop()
        if isinstance(stmt, ast.If):
            pending.extend(reversed((*stmt.then, *stmt.other)))
        elif isinstance(stmt, ast.Chain):
            labels.extend(link.label for link in stmt.links if isinstance(link.label, str))
        elif isinstance(stmt, ast.Skip):
            labels.extend(x for x in (stmt.label, stmt.alias) if isinstance(x, str))
        elif isinstance(stmt, ast.InputDecl):
            labels.append(stmt.name)
        elif isinstance(stmt, ast.ParamDecl) and isinstance(stmt.path, str):
            labels.append(stmt.path)
    return labels


class TooLarge(Exception):
    """Stops elaboration at once (E321): unlike other errors, a size overflow is not worth collecting."""

    def __init__(self, message: str, span: Span, limit: str = "max_nodes") -> None:
        super().__init__(message)
        hint = f"raise it with archdsl.Limits({limit}=...) if the network really is this large"
        self.error = ArchLimitError(message, span, hint, code="E321")


@dataclass(frozen=True)
class Structure:
    """What elaboration hands to validation: plain data, no live elaborator.

    ``graph`` is the structural graph (node attributes in the module
    docstring); ``errors`` the problems found so far, which validation adds
    to; ``poisoned`` the nodes that stand in for failed ones, whose
    dependants stay silent.
    """

    graph: nx.DiGraph
    errors: list[ArchError]
    poisoned: frozenset[str]
    sources: Mapping[str, str]
    file: str


def elaborate(program: Program, network: str | None, overrides: Mapping[str, Any]) -> Structure:
    """Expand the chosen network of ``program`` into its structural graph (see :class:`Structure`)."""
    elaborator = Elaborator(program)
    try:
        g = elaborator.network(choose_network(program, network), overrides)
    except TooLarge as stop:
        raise stop.error.with_sources(program.sources) from None
    g.graph["outputs"] = elaborator.finish_outputs()
    if elaborator._training_outputs is not None:
        g.graph["training_outputs"] = elaborator.finish_outputs(elaborator._training_outputs)
    poisoned = elaborator.poisoned | (elaborator._early.poisoned if elaborator._early else set())
    return Structure(g, elaborator.errors, frozenset(poisoned), dict(program.sources), program.main.file)


def choose_network(program: Program, network: str | None) -> ast.Definition:
    """The network ``network`` of the program's main file, or its last network when None."""
    networks = program.networks()
    defs = program.main.definitions
    # Point at the first definition, or else the top of the file.
    where = defs[0].name_span if defs else Span(program.main.file, 1, 1, 1, 1)
    if not networks:
        hint = "this file only defines blocks; import it from a file with a `network`"
        raise ArchNameError("no network is defined", where, hint, code="E226").with_sources(program.sources)
    if network is None:
        chosen = networks[-1]
    else:
        chosen = next((n for n in networks if n.name == network), None)
        if chosen is None:
            hint = did_you_mean(network, [n.name for n in networks])
            raise ArchNameError(f"no network `{network}` in this file", where, hint, code="E226").with_sources(
                program.sources
            )
    return chosen

"""Stages: a named repetition of a block or op, with `first(...)`, repeat names and dense connectivity.

A mixin of :class:`archdsl.elaborate.Elaborator`: it uses the elaborator's
naming, callee lookup and node creation.
"""

from __future__ import annotations

from archdsl import limits
from archdsl import syntax as ast
from archdsl.errors import ArchNameError, ArchTypeError, did_you_mean
from archdsl.expr import Scope, show, type_name
from archdsl.frames import Frame, Group, NodeRef, module_name_problem

CONNECT_MODES = ("chain", "dense")


class StageExpander:
    """Expands `NAME: stage callee(args) x N, first(...), connect=..., names="..."`."""

    def _stage(self, stage: ast.Stage, link: ast.Link, frame: Frame, scope: Scope, cursor):
        if link.label is None:
            raise ArchNameError("a stage needs a name", stage.span, "write `layer1: stage block(...) x N`", code="E220")
        continues = link.label in frame.stage_labels  # a later stage of the same name numbers on
        if not continues:
            self._claim(frame, link.label, link.label_span or stage.span)
            frame.stage_labels.add(link.label)
        count = self._concrete(stage.count, scope, "a repeat count")
        if isinstance(count, bool) or not isinstance(count, int):
            hint = "use `//` for integer division" if isinstance(count, float) else None
            raise ArchTypeError(
                f"a repeat count must be an int, got {type_name(count)} `{show(count)}`",
                stage.count.span,
                hint,
                code="E316",
            )
        if count < 1:
            raise ArchTypeError(f"a repeat count must be at least 1, got {count}", stage.count.span, code="E317")
        if count > (most := limits.current().max_repeat):
            raise ArchTypeError(f"a repeat count of {count} exceeds the limit of {most}", stage.count.span, code="E317")
        connect = stage.connect or "chain"
        if connect not in CONNECT_MODES:
            hint = did_you_mean(connect, CONNECT_MODES) or "use `connect=chain` or `connect=dense`"
            raise ArchNameError(f"unknown connection `{connect}`", stage.connect_span or stage.span, hint, code="E221")
        if connect == "dense":  # repeat i reads the stage's input and the i outputs before it; so does `out`
            what = f"dense stage `{link.label}` of {count} repeats"
            self._expect_edges((count - 1) * (count + 2) // 2 + count + 1, stage.count.span, what)
        positional = [a for a in stage.first if a.name is None]
        if positional:
            raise ArchTypeError("`first(...)` takes keyword arguments only", positional[0].span, code="E318")
        start = frame.numbering.get(link.label, 0)  # after `features.0`, or after an earlier stage `features`
        stage_path = frame.prefix + link.label
        stage_group = Group(path=stage_path, kind="stage", name=stage.call.callee, span=stage.span)
        groups = self._groups_now() + (stage_group,)
        stage_input = cursor
        outputs: list[NodeRef] = []
        seen_names: dict[str, int] = {}
        for i in range(count):
            repeat_scope = scope.child({"i": i})
            name = self._repeat_name(stage.names, stage, repeat_scope) if stage.names else str(start + i)
            if name in seen_names:
                raise ArchNameError(
                    f"repeats {seen_names[name]} and {i} are both named `{name}`",
                    stage.names.span if stage.names else stage.span,
                    "use `{i}` in the names template",
                    code="E222",
                )
            seen_names[name] = i
            frame.number(f"{link.label}.{name}")
            args = stage.call.args
            if i == 0 and stage.first:
                overridden = {a.name for a in stage.first}
                args = tuple(a for a in self._by_name(stage.call, args) if a.name not in overridden) + stage.first
            call = ast.Call(stage.call.callee, args, stage.call.span, stage.call.callee_span)
            is_block = isinstance(self._callee(call, stage.span.file), ast.Definition)
            if connect == "dense" and outputs:
                concat_id = self._add_node(
                    frame,
                    f"{link.label}.{name}.in" if is_block else f"{link.label}.into_{name}",
                    stage.span,
                    op="concat",
                    role="dense",
                    call=(),
                    scope=repeat_scope,
                    groups=groups,
                )
                for position, source in enumerate([stage_input, *outputs]):
                    self._edge(source, concat_id, "concat", position, stage.span)
                layer_input = concat_id
            else:
                layer_input = stage_input if connect == "dense" else (outputs[-1] if outputs else stage_input)
            repeat_group = Group(
                path=f"{stage_path}.{name}", kind="block", name=stage.call.callee, repeat=i, span=stage.span
            )
            with self._grouped(groups + ((repeat_group,) if is_block else ())):
                out = self._call(
                    call, None, None, stage.span, frame, repeat_scope, layer_input, node_path=f"{link.label}.{name}"
                )
            outputs.append(out)
        if connect == "dense":
            out_id = self._add_node(
                frame, f"{link.label}.out", stage.span, op="concat", call=(), scope=scope, groups=groups, role="dense"
            )
            for position, source in enumerate([stage_input, *outputs]):
                self._edge(source, out_id, "concat", position, stage.span)
            result = out_id
        else:
            result = outputs[-1]
        frame.names[link.label] = result
        return result

    def _by_name(self, call: ast.Call, args: tuple[ast.Arg, ...]) -> tuple[ast.Arg, ...]:
        """Positional arguments named after the callee's parameters, so `first(...)` can replace them."""
        target = self._callee(call, call.span.file)
        if not isinstance(target, ast.Definition) and target.inputs_in_args:
            return args
        names = [p.name for p in target.params] if isinstance(target, ast.Definition) else list(target.arg_names)
        positional = iter(names)
        return tuple(ast.Arg(next(positional, None), a.value, a.span) if a.name is None else a for a in args)

    def _repeat_name(self, template: ast.Template, stage: ast.Stage, scope: Scope) -> str:
        """The name of one repeat: the template's text, with its expressions evaluated in ``scope``."""
        out = []
        span = template.span
        for part in template.parts:
            if isinstance(part, str):
                out.append(part)
                continue
            value = self._concrete(part, scope, "a names template")
            if isinstance(value, bool) or not isinstance(value, (int, str)):
                raise ArchTypeError(
                    f"a part of a names template is an int or a string, got {type_name(value)} `{show(value)}`",
                    part.span,
                    "compute a number, e.g. `{i + 1}`, or a name",
                    code="E320",
                )
            out.append(str(value))
        name = "".join(out)
        problem = next((p for part in name.split(".") if (p := module_name_problem(part))), None)
        if problem:
            raise ArchTypeError(
                f"the names template gives `{name}`, which is not a valid module name: a part of it {problem}",
                span,
                "names are made of letters, digits, `_` and `-`, with `.` between parts",
                code="E320",
            )
        return name

"""One argument binder for every call: ops (``conv(64, k=3)``) and blocks (``basic(128, stride=2)``).

:func:`bind` matches the arguments written at a call to the callee's
parameters (positional first, in order, then by name) and reports the
mistakes of that matching, each at its argument. The callers evaluate the
matched expressions their own way: an op's arguments once shapes are known,
a block's at once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from archdsl import syntax as ast
from archdsl.errors import ArchNameError, ArchTypeError, Span, did_you_mean


@dataclass(frozen=True)
class Signature:
    """What a callee accepts, and how messages name it."""

    callee: str  # as messages write it: "`conv`" or "block `basic`"
    params: tuple[str, ...]
    required: frozenset[str]
    noun: str  # "argument" (ops) or "parameter" (blocks)
    needs: str  # how a missing one is said: "needs the argument" / "needs a value for"
    usage: str | None = None  # the callee's signature, as a hint: "conv(out, k, stride=1, ...)"


def bind(signature: Signature, args: Sequence[ast.Arg], call_span: Span) -> dict[str, ast.Arg]:
    """The argument given for each parameter, in the order written; raises E313, E219, E314 or E315."""
    params = signature.params
    positional = [a for a in args if a.name is None]
    if len(positional) > len(params):
        raise ArchTypeError(
            f"{signature.callee} takes {len(params)} argument(s), got {len(positional)}",
            positional[len(params)].span,
            signature.usage,
            code="E313",
        )
    bound = dict(zip(params, positional, strict=False))
    for arg in args:
        if arg.name is None:
            continue
        if arg.name not in params:
            hint = did_you_mean(arg.name, params) or signature.usage
            raise ArchNameError(f"{signature.callee} has no {signature.noun} `{arg.name}`", arg.span, hint, code="E219")
        if arg.name in bound:
            raise ArchTypeError(f"`{arg.name}` is given twice", arg.span, code="E314")
        bound[arg.name] = arg
    missing = next((name for name in params if name in signature.required and name not in bound), None)
    if missing is not None:
        message = f"{signature.callee} {signature.needs} `{missing}`"
        raise ArchTypeError(message, call_span, signature.usage, code="E315")
    return bound

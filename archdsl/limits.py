"""Bounds that turn runaway input into a located error at once, instead of a hang or a crash.

Every stage reads the limits in force through :func:`current`; the API sets
them for one call (``archdsl.graph(src, limits=Limits(max_repeat=100_000))``)
or for a block of code (``with archdsl.limits.using(Limits(...)):``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass


@dataclass(frozen=True)
class Limits:
    """The bounds in force. The defaults fit every published network many times over.

    The syntax limits (brackets, prefix operators, operators per
    expression) keep every later stage far from Python's recursion limit;
    raising them far may turn an over-deep input into error E323 instead.
    """

    max_repeat: int = 10_000  # `x N` of one stage
    max_nodes: int = 200_000  # graph nodes of one network
    max_edges: int = 1_000_000  # node inputs of one network; a dense stage of n repeats has about n*n/2
    max_block_depth: int = 64  # block calls nested inside each other
    max_import_depth: int = 32  # files importing files
    max_file_bytes: int = 16 * 2**20  # bytes of one source file, the main file or an import
    max_bracket_depth: int = 48  # nested (), [] in one statement
    max_prefix_run: int = 48  # `- - not ...` in a row
    max_operators: int = 200  # operators in one expression
    max_int: int = 2**62  # magnitude of any integer the language computes
    max_dim: int = 2**31  # any tensor dimension
    max_rank: int = 8  # dimensions of one tensor, the batch left out
    max_activation: int = 2**28  # values of one input or one op's output, per sample (1 GiB of float32)
    max_params: int = 2**31  # parameters of one network (8 GiB of float32): checked before any is allocated
    max_string: int = 100_000  # characters of a string the language computes
    max_value_size: int = 100_000  # elements of a list value, nested lists' elements included (shared ones each time)
    max_errors: int = 100  # diagnostics reported for one file; the rest are counted, not shown

    def __post_init__(self) -> None:
        for name, value in vars(self).items():
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"Limits.{name} must be a positive integer, got {value!r}")


DEFAULT = Limits()


def float32_size(values: int) -> str:
    """How big ``values`` float32 numbers are, for messages: ``2**32`` -> ``"16.0 GiB"``."""
    size = 4 * values
    for factor, unit in ((2**40, "TiB"), (2**30, "GiB"), (2**20, "MiB"), (2**10, "KiB")):
        if size >= factor:
            return f"{size / factor:.1f} {unit}"
    return f"{size} bytes"


def int_bound(most: int) -> str:
    """How messages write an integer bound: ``2**62`` for a power of two, else ``1,000``."""
    if most & (most - 1) == 0:
        return f"2**{most.bit_length() - 1}"
    if most.bit_length() > 1000:  # too long to be worth reading (or, past 4,300 digits, to convert)
        return f"about 2**{most.bit_length() - 1}"
    return f"{most:,}"


_current: ContextVar[Limits] = ContextVar("archdsl_limits", default=DEFAULT)


def current() -> Limits:
    """The limits in force in this context."""
    return _current.get()


@contextlib.contextmanager
def using(limits: Limits | None) -> Iterator[Limits]:
    """Put ``limits`` in force for the ``with`` block (``None`` keeps the current ones)."""
    if limits is None:
        yield current()
        return
    if not isinstance(limits, Limits):
        raise TypeError(f"limits must be an archdsl.Limits, not {type(limits).__name__}")
    token = _current.set(limits)
    try:
        yield limits
    finally:
        _current.reset(token)


def stricter(*limits: Limits | None) -> Limits:
    """Field by field, the lowest of ``limits`` (``None`` s left out; the defaults when none is left).

    A checkpoint's stored limits may lower the limits it is read under, never raise them.
    """
    given = [limit for limit in limits if limit is not None]
    if not given:
        return DEFAULT
    return Limits(**{name: min(getattr(limit, name) for limit in given) for name in vars(given[0])})

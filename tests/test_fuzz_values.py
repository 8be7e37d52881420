"""Values that grow faster than their text: shared lists, doubled strings, huge and deep values.

Forty lines of ``let aK = [aK-1, aK-1]`` describe a list of 2^41 elements; a
5,000-digit literal is beyond what Python converts to an int; a list may nest
thousands of levels deep through lets. The contract is the one of
tests/test_robustness.py: :func:`archdsl.graph` returns a graph or raises an
:class:`archdsl.ArchError` whose diagnostics are located, and it does so fast.
Beyond that, the properties here know what each program must give: the first
``let`` over ``Limits.max_value_size`` or ``Limits.max_string`` is the one
E303 reported, and what only reads failed values stays silent.

Programs come from hypothesis: lets that build lists and strings from earlier
lets (each may be used many times, so sizes multiply), deep chains of
one-element lists, integer literals of up to 6,000 digits in every place an
expression goes, and Python overrides of every kind (shared, self-holding,
huge, infinite). The runs are derandomized; set ``ARCHDSL_FUZZ_EXAMPLES`` for
random ones, as in tests/test_robustness.py.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from hypothesis import event, given, note
from hypothesis import strategies as st
from hypothesis.control import currently_in_test_context
from test_robustness import check_error, fuzz_settings, time_limit

import archdsl

SECONDS = 20  # per example, whatever the machine: past this, something does not stop growing


def outcome(source: str, limits: archdsl.Limits | None = None, **overrides) -> archdsl.ArchError | object:
    """``archdsl.graph(source)``: the graph, or its ArchError once checked to be located and to render.

    An override's diagnostic is placed outside any file (``-p NAME``, line 0); every other one
    must point inside ``source``, as tests/test_robustness.py requires.
    """
    start = time.process_time()
    with time_limit(SECONDS * 3):  # wall time, for a busy machine
        try:
            result = archdsl.graph(source, limits=limits, **overrides)
        except archdsl.ArchError as error:
            located = []
            for diagnostic in error.diagnostics:
                if diagnostic.span is not None and diagnostic.span.line == 0:
                    assert diagnostic.span.file.removeprefix("-p ") in overrides, diagnostic
                else:
                    located.append(diagnostic)
            if located:
                check_error(archdsl.ArchError(diagnostics=located, sources=error.sources), {"<string>": source})
            rendered = str(error)
            assert len(rendered) < 200_000 + 2_000 * len(error.diagnostics), "a value was printed in full"
            result = error
    assert time.process_time() - start < SECONDS
    codes = sorted({d.code for d in result.diagnostics}) if isinstance(result, archdsl.ArchError) else ["a graph"]
    if currently_in_test_context():  # --hypothesis-show-statistics counts the outcomes
        event("outcome: " + ", ".join(codes))
    return result


def network(body: list[str], params: str = "") -> str:
    """A network with one input, ``body`` (statements, one a line) and a layer after them."""
    lines = "".join(f"    {line}\n" for line in body)
    return f"network n({params}) {{\n    input x: [4]\n{lines}    fc: linear(2)\n}}\n"


FIRST_LINE = 3  # the line of body[0] in network()


# ---------------------------------------------------------------- lists and strings built from earlier lets


@dataclass(frozen=True)
class Let:
    """``let v<index> = ...``: a list of earlier lets and literals, or a sum of earlier strings."""

    index: int
    parts: tuple[int | None, ...]  # earlier lets, None for a literal

    def text(self, kind: str) -> str:
        if kind == "list":
            return f"let v{self.index} = [" + ", ".join("1" if p is None else f"v{p}" for p in self.parts) + "]"
        return f"let v{self.index} = " + " + ".join('"ab"' if p is None else f"v{p}" for p in self.parts)


@st.composite
def let_programs(draw, kind: str):
    """Lets each built from up to four earlier ones (repeats allowed): sizes can double at every line."""
    count = draw(st.integers(1, 45))
    lets = []
    for index in range(count):
        earlier = st.none() | st.integers(0, index - 1) if index else st.none()
        parts = draw(st.lists(earlier, min_size=1, max_size=4))
        lets.append(Let(index, tuple(parts)))
    return lets


def sizes(lets: list[Let], kind: str) -> list[int]:
    """Each let's size as the language counts it: list elements (nested ones included), or characters."""
    out: list[int] = []
    for let in lets:
        if kind == "list":
            out.append(sum(1 + (0 if p is None else out[p]) for p in let.parts))
        else:
            out.append(sum(2 if p is None else out[p] for p in let.parts))
    return out


def fails_silently(let: Let, kind: str, size: list[int], failed: set[int], most: int) -> bool:
    """Whether a let reads a failed let before it goes over the limit (it then stays silent).

    A list evaluates all its items before its size is checked; a sum of
    strings is checked at each `+`, from the left.
    """
    if kind == "list":
        return any(p in failed for p in let.parts if p is not None)
    running = 0
    for position, part in enumerate(let.parts):
        if part in failed:
            return True
        running += 2 if part is None else size[part]
        if position and running > most:
            return False
    return False


USES = {
    # what is done with the last let, and the code it gives when that let is fine
    "keep": ("let z = v{last}", None),
    "compare": ("assert v{last} == v{other} or v{last} != v{other}", None),
    "print": ("stem: linear(v{last})", "E301"),
    "index": ("let z = v{last}[0]", None),
    "template": ('s: stage relu x 1, names="r{{v{last}}}"', "E320"),
}


@given(
    kind=st.sampled_from(["list", "string"]),
    data=st.data(),
    use=st.sampled_from(sorted(USES)),
    most=st.sampled_from([20, 1_000, 100_000]),
)
@fuzz_settings(150)
def test_lets_that_multiply_sizes_stop_at_the_first_let_over_the_limit(kind, data, use, most):
    lets = data.draw(let_programs(kind))
    size = sizes(lets, kind)
    limit_name = "max_value_size" if kind == "list" else "max_string"
    limits = archdsl.Limits(**{limit_name: most})
    last, other = len(lets) - 1, data.draw(st.integers(0, len(lets) - 1))
    template, use_code = USES[use]
    if kind == "string" and use == "index":
        template, use_code = "let z = v{last} + v{other}", None  # strings are not indexed: joined instead
    if kind == "string" and use == "template":
        use_code = None  # `r` and a run of `ab`: a valid name, however long
    body = [let.text(kind) for let in lets] + [template.format(last=last, other=other)]
    note("\n".join(body))
    result = outcome(network(body), limits)

    failed: set[int] = set()
    expected: list[tuple[str, int]] = []
    for let in lets:
        if fails_silently(let, kind, size, failed, most):
            failed.add(let.index)
        elif size[let.index] > most:
            failed.add(let.index)
            expected.append(("E303", FIRST_LINE + let.index))
    read = {last, other} if use == "compare" or (kind == "string" and use == "index") else {last}
    use_size = size[last] + size[other] if kind == "string" and use == "index" else 0
    if not read & failed:
        if use_size > most:
            expected.append(("E303", FIRST_LINE + len(lets)))
        elif use_code is not None:
            expected.append((use_code, FIRST_LINE + len(lets)))
    if not expected:
        assert not isinstance(result, archdsl.ArchError), str(result)
        return
    assert isinstance(result, archdsl.ArchError), f"expected {expected}"
    assert [(d.code, d.span.line) for d in result.diagnostics] == expected, str(result)


# ---------------------------------------------------------------- lists nested deeply through lets


@given(depth=st.integers(1, 3000), use=st.sampled_from(["compare", "print", "template", "keep"]))
@fuzz_settings(40)
def test_lists_nested_thousands_deep(depth, use):
    """A list inside a list ... ``depth`` levels deep, built one let a level, twice, and then used."""
    body = ["let a0 = [1]", "let b0 = [1]"]
    for k in range(1, depth + 1):
        body += [f"let a{k} = [a{k - 1}]", f"let b{k} = [b{k - 1}]"]
    body.append(
        {
            "compare": f"assert a{depth} == b{depth}",
            "print": f"stem: linear(a{depth})",
            "template": f's: stage relu x 1, names="r{{a{depth}}}"',
            "keep": f"let z = a{depth}",
        }[use]
    )
    result = outcome(network(body))
    if use == "keep":
        assert not isinstance(result, archdsl.ArchError), str(result)
    elif use == "compare":  # equal, or too deep for Python to compare: E323 at the assert
        assert not isinstance(result, archdsl.ArchError) or [d.code for d in result.diagnostics] == ["E323"]
    else:
        assert isinstance(result, archdsl.ArchError)
        assert [d.code for d in result.diagnostics] in (["E301"], ["E320"], ["E323"])


# ---------------------------------------------------------------- integers of thousands of digits

PLACES = [
    "let a = {n}",
    "stem: linear({n})",
    "let a = [{n}, 1]",
    "let a = -{n}",
    "let a = {n} * {n}",
    "let a = {n} ** 2",
    's: stage relu x 2, names="r{{{n}}}"',
    "assert {n} > 0",
    "let a = min({n}, 3)",
]


@given(
    digits=st.integers(1, 6000),
    lead=st.integers(1, 9),
    place=st.sampled_from(PLACES),
    zeros=st.integers(0, 3),
)
@fuzz_settings(200)
def test_integer_literals_of_any_length(digits, lead, place, zeros):
    literal = "0" * zeros + str(lead) + "7" * (digits - 1)
    result = outcome(network([place.format(n=literal)]))
    if digits > 19:  # beyond 2**62 (19 digits), whatever the place
        assert isinstance(result, archdsl.ArchError)
        assert result.diagnostics[0].code == "E303", str(result)
        assert result.diagnostics[0].span.line == FIRST_LINE
        assert len(result.diagnostics[0].message) < 200  # the literal is shown by its ends


@given(exponent=st.integers(0, 20_000), sign=st.sampled_from([1, -1]), where=st.sampled_from(["alone", "in_list"]))
@fuzz_settings(100)
def test_integer_overrides_of_any_size(exponent, sign, where):
    value = sign * 10**exponent
    result = outcome(network([], "depth = 3"), depth=value if where == "alone" else [1, [value]])
    if 10**exponent > 2**62:
        assert isinstance(result, archdsl.ArchError)
        (diagnostic,) = result.diagnostics
        assert (diagnostic.code, str(diagnostic.span)) == ("E303", "-p depth")


# ---------------------------------------------------------------- Python overrides of every kind


def doubled(value: object, times: int) -> object:
    """``value`` inside a list twice, ``times`` levels up: 2**times copies of it, each level one list."""
    for _ in range(times):
        value = [value, value]
    return value


def holding_itself(value: object) -> list:
    loop: list = [value]
    loop.append(loop)
    return loop


SCALARS = st.one_of(
    st.integers(-(2**70), 2**70),
    st.integers(0, 9000).map(lambda e: 10**e),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.builds(lambda chunk, count: chunk * count, st.sampled_from(["a", "é", "ab "]), st.integers(0, 150_000)),
    st.just(None),
    st.just(object()),
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.tuples(inner, inner),
        st.builds(doubled, inner, st.integers(0, 45)),
        st.builds(holding_itself, inner),
    ),
    max_leaves=12,
)


@given(value=VALUES, default=st.sampled_from(["[1]", "3", '"s"', "true", "1.5"]))
@fuzz_settings(300)
def test_python_overrides_of_every_kind(value, default):
    result = outcome(network(["let v = p"], f"p = {default}"), p=value)
    if isinstance(result, archdsl.ArchError):
        codes = {d.code for d in result.diagnostics}
        assert codes <= {"E303", "E309", "E323"}, str(result)
        assert all(str(d.span) == "-p p" for d in result.diagnostics), str(result)


def test_a_list_shared_forty_levels_up_is_refused_at_once():
    start = time.process_time()
    result = outcome(network(["let v = p"], "p = [1]"), p=doubled(1, 40))
    assert isinstance(result, archdsl.ArchError) and result.code == "E303"
    assert time.process_time() - start < 1


def test_the_limit_counts_a_shared_list_each_time():
    result = outcome(network(["let v = p"], "p = [1]"), p=doubled([1, 1], 15))
    assert isinstance(result, archdsl.ArchError)
    assert result.message == "this list would hold 131,070 elements, more than the limit of 100,000"
    assert not isinstance(outcome(network(["let v = p"], "p = [1]"), p=doubled([1, 1], 14)), archdsl.ArchError)

"""Golden tests for diagnostics: every ``tests/fixtures/invalid/NAME.arch`` must fail.

Each fixture is a small invalid program whose first line, ``# expect: ...``,
says in words what must be reported. ``NAME.expected`` holds the exact text
of ``str(err)`` for ``archdsl.graph("tests/fixtures/invalid/NAME.arch")`` run
from the repository root, followed by one newline. Regenerate the files with
``python tests/regen_diagnostics.py`` after a deliberate change to the
messages, and read the diff before committing it.

Fixtures listed in :data:`KNOWN_BUGS` show a diagnostic that is wrong or
poor today. Their ``.expected`` files are written by hand and hold the
diagnostic we want (the regeneration script leaves them alone), so their
checks are marked ``xfail(strict=True)``: once the code is fixed they pass,
pytest reports XPASS as a failure, and the entry here must be removed (then
regenerate that fixture if the final wording differs from the hand-written one).
"""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path

import pytest

import archdsl

REPO = Path(__file__).resolve().parent.parent
FIXTURES = REPO / "tests" / "fixtures" / "invalid"
NAMES = sorted(p.stem for p in FIXTURES.glob("*.arch"))

MIN_FIXTURES = 32
MIN_DISTINCT_CODES = 30

# fixture -> what is wrong with today's diagnostic (the .expected file holds the wanted one)
KNOWN_BUGS: dict[str, str] = {
    "syntax_hint_after_bare_op": "the help suggests `:` after `act: relu`, which cannot follow there",
}

# Known bugs that break more than the comparison with .expected.
BUG_BREAKS: dict[str, set[str]] = {}


def _params(check: str) -> list:
    params = []
    for name in NAMES:
        marks = ()
        if name in KNOWN_BUGS and (check == "text" or check in BUG_BREAKS.get(name, set())):
            marks = (pytest.mark.xfail(strict=True, reason=KNOWN_BUGS[name]),)
        params.append(pytest.param(name, marks=marks, id=name))
    return params


def relative(name: str) -> str:
    return f"tests/fixtures/invalid/{name}.arch"


def diagnose(name: str) -> BaseException | None:
    """What ``archdsl.graph`` raises for a fixture (cwd must be the repo root); None if it succeeds."""
    try:
        archdsl.graph(relative(name))
    except Exception as err:  # the tests check the type
        return err
    return None


def arch_error(name: str) -> archdsl.ArchError:
    err = diagnose(name)
    assert err is not None, f"{name}.arch raised nothing"
    assert isinstance(err, archdsl.ArchError), f"{name}.arch raised {type(err).__name__}: {err}"
    return err


def expected_text(name: str) -> str:
    return (FIXTURES / f"{name}.expected").read_text(encoding="utf-8")


def source_lines(file: str) -> list[str]:
    """Lines as the parser counts them: separated by "\\n" only (a trailing "\\r" dropped)."""
    text = (REPO / file).read_bytes().decode("utf-8", errors="replace")
    return [line.removesuffix("\r") for line in text.split("\n")]


@pytest.fixture(autouse=True)
def _at_repo_root(monkeypatch):
    monkeypatch.chdir(REPO)


# ----------------------------------------------------------------- per fixture


@pytest.mark.parametrize("name", _params("raises"))
def test_raises_arch_error(name):
    arch_error(name)


@pytest.mark.parametrize("name", _params("text"))
def test_matches_expected(name):
    err = arch_error(name)
    assert str(err) + "\n" == expected_text(name)


@pytest.mark.parametrize("name", _params("spans"))
def test_spans_point_into_files(name):
    err = arch_error(name)
    assert err.diagnostics
    for diag in err.diagnostics:
        span = diag.span
        assert span is not None, f"{diag.code} {diag.message!r} has no span"
        assert (REPO / span.file).is_file(), f"{diag.code}: no such file {span.file}"
        lines = source_lines(span.file)
        assert 1 <= span.line <= len(lines), f"{diag.code}: line {span.line} is outside {span.file}"
        width = len(lines[span.line - 1])
        assert 1 <= span.column <= width + 1, f"{diag.code}: column {span.column} is outside line {span.line} ({width})"
        assert (span.end_line, span.end_column) >= (span.line, span.column), f"{diag.code}: span ends before it starts"
        assert diag.code not in ("E000", "E590"), f"{diag.code}: an internal error"


@pytest.mark.parametrize("name", NAMES)
def test_fixture_is_documented(name):
    first = (FIXTURES / f"{name}.arch").read_bytes().split(b"\n", 1)[0].decode("utf-8")
    assert first.startswith("# expect: "), f"{name}.arch must start with a `# expect: ...` line"
    assert (FIXTURES / f"{name}.expected").is_file(), f"{name}.expected is missing: run tests/regen_diagnostics.py"
    named = re.search(r"E\d{3}", first)
    assert named, f"{name}.arch: the `# expect:` line names no error code"
    header = re.match(r"error\[(E\d{3})\]", expected_text(name))
    assert header and header.group(1) == named.group(0), f"{name}: `# expect:` names {named.group(0)}"


# ---------------------------------------------------------------- the whole set


def expected_codes() -> set[str]:
    codes: set[str] = set()
    for name in NAMES:
        codes.update(re.findall(r"^error\[(E\d{3})\]", expected_text(name), flags=re.M))
    return codes


def test_enough_fixtures_and_codes():
    assert len(NAMES) >= MIN_FIXTURES
    codes = expected_codes()
    assert len(codes) >= MIN_DISTINCT_CODES, sorted(codes)


def test_no_stray_expected_files():
    stray = sorted(p.stem for p in FIXTURES.glob("*.expected") if p.stem not in NAMES)
    assert not stray, f".expected files without a fixture: {stray}"


def test_known_bugs_name_fixtures():
    assert set(KNOWN_BUGS) <= set(NAMES)
    assert set(BUG_BREAKS) <= set(KNOWN_BUGS)


# ------------------------------------------------------------ several mistakes


def test_reports_every_independent_mistake():
    """One file, five unrelated mistakes (in a block and in the network): all are reported, in source order."""
    err = arch_error("several_mistakes")
    found = [(d.code, d.span.line) for d in err.diagnostics]
    assert found == [("E203", 3), ("E202", 4), ("E219", 8), ("E301", 10), ("E201", 11)]


def test_reports_every_syntax_error():
    err = arch_error("several_syntax_errors")
    found = [(d.code, d.span.line, d.span.column) for d in err.diagnostics]
    assert found == [("E101", 4, 31), ("E101", 5, 9)]


# ---------------------------------------------------------------- caret layout

# Written by hand: the line has a leading tab (4 columns), CJK (2 columns each),
# a tab after them (to the next multiple of 4), an `e` with a combining acute
# accent (1 column) and a precomposed `é` (1 column) before the culprit.
CARET_AFTER_TAB_AND_WIDE_CHARS = """\
error[E203]: unknown name `kernal` in network `net`
 --> tests/fixtures/invalid/caret_after_tab_and_wide_chars.arch:4:43
  |
4 |     stem: conv(8 if "日本"  != "e\u0301é" else 16, k=kernal)
  |                                                ^^^^^^
  = help: did you mean `kernel`?"""


def test_caret_lines_up_after_tabs_and_wide_characters():
    err = arch_error("caret_after_tab_and_wide_chars")
    assert err.diagnostics[0].span.column == 43  # characters: 1 tab + 41 others + 1
    assert str(err) == CARET_AFTER_TAB_AND_WIDE_CHARS
    # On screen, `kernal` starts at column 47 of the source text: tab 4, `stem: conv(8 if "` 17,
    # `日本` 4, `"` 1, tab 2 (to 28), `!= "` 4, e + combining accent 1, `é` 1, `" else 16, k=` 13.
    caret = str(err).splitlines()[4]
    assert caret == "  | " + " " * 47 + "^" * len("kernal")


def display_columns(line: str) -> list[int]:
    """The screen column (0-based) where each character of ``line`` starts, then the line's width.

    Written independently of ``archdsl.errors``: tabs stop every 4 columns, wide (CJK)
    characters take 2, combining marks 0, everything else 1.
    """
    starts, column = [], 0
    for ch in line:
        starts.append(column)
        if ch == "\t":
            column = (column // 4 + 1) * 4
        elif unicodedata.combining(ch):
            pass
        elif unicodedata.east_asian_width(ch) in ("W", "F"):
            column += 2
        else:
            column += 1
    return starts + [column]


@pytest.mark.parametrize("name", _params("caret"))
def test_caret_sits_under_the_span(name):
    """In every rendered diagnostic, the carets cover exactly the span's characters on screen."""
    err = arch_error(name)
    blocks = str(err).split("\n\n")
    assert len(blocks) == len(err.diagnostics)
    for diag, block in zip(err.diagnostics, blocks, strict=True):
        span = diag.span
        carets = [line for line in block.split("\n") if re.fullmatch(r" *\| *\^+", line)]
        assert len(carets) == 1, f"{diag.code}: expected one caret line in\n{block}"
        caret = carets[0]
        start = caret.index("^") - (caret.index("|") + 2)
        line = source_lines(span.file)[span.line - 1]
        columns = display_columns(line)
        end = span.end_column if span.end_line == span.line else len(line) + 1
        want_start = columns[span.column - 1]
        want_width = max(1, columns[min(end, len(line) + 1) - 1] - want_start)
        assert (start, caret.count("^")) == (want_start, want_width), f"{diag.code}: caret misplaced in\n{block}"


# ------------------------------------------------- codes only the API can cause

VALID = """\
network net(width = 16) {
    input image: [3, 8, 8]
    stem: conv(width, k=1)
}
"""


@pytest.mark.parametrize(
    ("options", "codes"),
    [
        pytest.param({"widht": 8}, ["E208"], id="unknown_override"),
        pytest.param(
            {"width": object()},
            ["E309"],
            id="bad_override",
        ),
        pytest.param({"network": "nett"}, ["E226"], id="unknown_network"),
    ],
)
def test_api_only_codes(options, codes):
    with pytest.raises(archdsl.ArchError) as info:
        archdsl.graph(VALID, **options)
    assert [d.code for d in info.value.diagnostics] == codes

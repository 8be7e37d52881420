r"""The package's one error root, its diagnostics, and their rustc-style rendering.

Every failure the user can cause is an :class:`ArchError` (or a subclass)
holding one or more :class:`Diagnostic` s, each pointing at a :class:`Span`
of the source. ``str(error)`` renders all of them:

>>> import archdsl
>>> try:
...     archdsl.graph("network n {\n    input x: [3, 8, 8]\n    conv1: conv2(64, k=3)\n}\n")
... except ArchError as error:
...     print(error)
error[E202]: unknown op or block `conv2`
 --> <string>:3:12
  |
3 |     conv1: conv2(64, k=3)
  |            ^^^^^
  = help: did you mean `conv`?
"""

from __future__ import annotations

import difflib
import functools
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from archdsl.limits import current as current_limits


@dataclass(frozen=True, order=True)
class Span:
    """A region of one source file; lines and columns are 1-based, end exclusive.

    Line 0 is a place outside any file, such as an override (:func:`override_span`);
    ``file`` then names it.
    """

    file: str
    line: int
    column: int
    end_line: int
    end_column: int

    def __str__(self) -> str:
        if self.line == 0:
            return self.file
        return f"{self.file}:{self.line}:{self.column}"


def override_span(name: str) -> Span:
    """Where the override of network parameter ``name`` is given: ``-p name`` on the command line, or a keyword."""
    return Span(f"-p {name}", 0, 0, 0, 0)


@dataclass(frozen=True)
class Label:
    """A secondary location attached to a diagnostic ("edge added here")."""

    span: Span
    message: str


@dataclass(frozen=True)
class Diagnostic:
    """One problem found in a source file."""

    code: str
    message: str
    span: Span | None
    hint: str | None = None
    severity: str = "error"
    labels: tuple[Label, ...] = ()

    def render(self, sources: Mapping[str, str] | None = None) -> str:
        """Render rustc-style: header, location, source line, caret, help."""
        return render_diagnostic(self, sources or {})

    def to_dict(self) -> dict:
        """A JSON-ready view (file, line, column, end, severity, code, message, hint, notes).

        ``notes`` are the labels the text shows as ``= note:`` lines, each
        with its own location and message.
        """
        return {
            **_location(self.span),
            "severity": self.severity,
            "code": self.code,
            "message": self.message,
            "hint": self.hint,
            "notes": [{**_location(label.span), "message": label.message} for label in self.labels],
        }


def _location(span: Span | None) -> dict:
    return {
        "file": span.file if span else None,
        "line": span.line if span else None,
        "column": span.column if span else None,
        "end_line": span.end_line if span else None,
        "end_column": span.end_column if span else None,
    }


class ArchError(Exception):
    """Root of every error archdsl raises; carries all diagnostics of a run."""

    default_code = "E000"

    def __init__(
        self,
        message: str | None = None,
        span: Span | None = None,
        hint: str | None = None,
        *,
        code: str | None = None,
        labels: Iterable[Label] = (),
        diagnostics: Iterable[Diagnostic] | None = None,
        sources: Mapping[str, str] | None = None,
    ) -> None:
        if diagnostics is None:
            diag = Diagnostic(code or self.default_code, message or "", span, hint, labels=tuple(labels))
            diagnostics = (diag,)
        self.diagnostics: tuple[Diagnostic, ...] = tuple(diagnostics)
        self.sources: dict[str, str] = dict(sources or {})
        self.omitted = 0  # diagnostics found past Limits.max_errors, counted but not kept (see combine)
        super().__init__(self.diagnostics[0].message if self.diagnostics else "")

    # Structured fields of the first (primary) diagnostic.
    @property
    def message(self) -> str:
        return self.diagnostics[0].message

    @property
    def span(self) -> Span | None:
        return self.diagnostics[0].span

    @property
    def hint(self) -> str | None:
        return self.diagnostics[0].hint

    @property
    def code(self) -> str:
        return self.diagnostics[0].code

    @property
    def file(self) -> str | None:
        return self.span.file if self.span else None

    @property
    def line(self) -> int | None:
        return self.span.line if self.span else None

    @property
    def column(self) -> int | None:
        return self.span.column if self.span else None

    def with_sources(self, sources: Mapping[str, str]) -> ArchError:
        """Attach source texts so that ``str(self)`` can show the lines."""
        self.sources.update(sources)
        return self

    def render(self) -> str:
        """All diagnostics, rendered one after the other, and how many more were found but not kept."""
        text = "\n\n".join(d.render(self.sources) for d in self.diagnostics)
        if self.omitted:
            text += (
                f"\n\nnote: ... and {self.omitted:,} more error{'s' if self.omitted > 1 else ''} "
                f"(only the first {len(self.diagnostics)} are shown; archdsl.Limits(max_errors=...) shows more)"
            )
        return text

    def __str__(self) -> str:
        return self.render()


class ArchSyntaxError(ArchError):
    """The text does not follow the grammar."""

    default_code = "E101"


class ArchNameError(ArchError):
    """An unknown, duplicate or misplaced name (op, block, node, parameter)."""

    default_code = "E201"


class ArchImportError(ArchError):
    """An import that cannot be resolved (missing file, cycle, escape)."""

    default_code = "E250"


class ArchTypeError(ArchError):
    """A value of the wrong type or out of range."""

    default_code = "E301"


class ArchShapeError(ArchError):
    """Shapes that do not fit (merge mismatch, kernel larger than input, ...)."""

    default_code = "E401"


class ArchGraphError(ArchError):
    """A graph that is not a valid network (cycle, unreachable node, ...)."""

    default_code = "E501"


class ArchLimitError(ArchError):
    """Input beyond a documented bound of :class:`archdsl.Limits` (too many nodes, parameters, or too deep)."""

    default_code = "E321"


class ArchCheckpointError(ArchError):
    """A checkpoint that cannot be restored."""

    default_code = "E601"


def combine(errors: list[ArchError], sources: Mapping[str, str] | None = None) -> ArchError:
    """Fold several errors into one exception of the first one's class.

    Diagnostics are de-duplicated (a block instantiated twice reports its
    mistake once) and sorted by position in the source; the first
    ``Limits.max_errors`` are kept, and the rest counted (``omitted``), as
    rustc stops after a bound and says how many more there were.
    """
    seen: set[tuple] = set()
    diagnostics: list[Diagnostic] = []
    for diag in (d for e in errors for d in e.diagnostics):
        key = (diag.code, diag.message, diag.span)
        if key not in seen:
            seen.add(key)
            diagnostics.append(diag)
    diagnostics.sort(key=lambda d: (d.span is None, d.span or Span("", 0, 0, 0, 0)))
    cls = type(errors[0])
    most = current_limits().max_errors
    merged = cls(diagnostics=diagnostics[:most])
    merged.omitted = max(0, len(diagnostics) - most) + sum(e.omitted for e in errors)
    for e in errors:
        merged.sources.update(e.sources)
    merged.sources.update(sources or {})
    return merged


def did_you_mean(name: str, candidates: Iterable[str]) -> str | None:
    """A "did you mean `x`?" hint for a near-miss name, or None."""
    matches = difflib.get_close_matches(name, sorted(set(candidates)), n=1, cutoff=0.6)
    return f"did you mean `{matches[0]}`?" if matches else None


TAB_WIDTH = 4


def _display_width(text: str) -> int:
    width = 0
    for ch in text:
        if ch == "\t":
            width += TAB_WIDTH - width % TAB_WIDTH
        elif unicodedata.combining(ch):
            continue
        elif unicodedata.east_asian_width(ch) in ("W", "F"):
            width += 2
        else:
            width += 1
    return width


def _expand_tabs(text: str) -> str:
    out = []
    for ch in text:
        out.append(" " * (TAB_WIDTH - _display_width("".join(out)) % TAB_WIDTH) if ch == "\t" else ch)
    return "".join(out)


@functools.lru_cache(maxsize=8)
def _source_lines(text: str) -> tuple[str, ...]:
    """The lines of a source, split once for all the diagnostics that show one of them."""
    # Only "\n" ends a line for the parser, so only "\n" may end one here.
    return tuple(line.rstrip("\r") for line in text.split("\n"))


def render_diagnostic(diag: Diagnostic, sources: Mapping[str, str]) -> str:
    """Render one diagnostic; source lines come from ``sources`` (file -> text)."""
    lines = [f"{diag.severity}[{diag.code}]: {diag.message}"]
    span = diag.span
    if span is not None:
        text = sources.get(span.file)
        src_lines = _source_lines(text) if text is not None else ()
        gutter = " " * len(str(span.line))
        lines.append(f"{gutter}--> {span}")
        if 0 < span.line <= len(src_lines):
            src = src_lines[span.line - 1]
            start = _display_width(src[: span.column - 1])
            end_col = span.end_column if span.end_line == span.line else len(src) + 1
            width = max(1, _display_width(src[span.column - 1 : end_col - 1]))
            lines.append(f"{gutter} |")
            lines.append(f"{span.line} | {_expand_tabs(src).rstrip()}")
            lines.append(f"{gutter} | {' ' * start}{'^' * width}")
        for label in diag.labels:
            lines.append(f"{gutter} = note: {label.message} at {label.span}")
    if diag.hint:
        lines.append(f"{' ' * (len(str(span.line)) if span else 0)} = help: {diag.hint}")
    return "\n".join(lines)

"""Checks of located errors shared by the op tests."""

from __future__ import annotations

import pytest

import archdsl


def assert_shape_error_at(text: str, statement: str, message: str, culprit: str) -> None:
    """``text`` fails with one E401 that says ``message``, its caret exactly under ``culprit`` in ``statement``."""
    with pytest.raises(archdsl.ArchError) as info:
        archdsl.graph(text)
    (diagnostic,) = info.value.diagnostics
    assert diagnostic.code == "E401"
    assert message in diagnostic.message
    line = text.splitlines()[diagnostic.span.line - 1]
    statement_at = line.index(statement)
    assert diagnostic.span.column - 1 == line.index(culprit, statement_at), (line, diagnostic.span)
    assert diagnostic.span.end_column - diagnostic.span.column == len(culprit)

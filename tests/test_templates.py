"""Names templates (`names="denselayer{i+1}"`): scanned at parse time into text and expressions.

A template's mistakes are syntax errors located inside the string, reported
with the file's other syntax errors by `archdsl check` and `archdsl fmt`.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

import archdsl
from archdsl import syntax as ast
from archdsl.errors import ArchSyntaxError, Span
from archdsl.fmt import format_source
from archdsl.parse import parse, parse_template


def scan(raw: str, line: int = 3, column: int = 10) -> ast.Template:
    """The template of the string literal ``raw`` written at ``f.arch:line:column``."""
    return parse_template(raw, Span("f.arch", line, column, line, column + len(raw)))


def where(node) -> tuple[int, int, int]:
    return (node.span.line, node.span.column, node.span.end_column)


def network(names: str, count: int = 2) -> str:
    """A network whose third line is a stage with the names template ``names`` (as written, quotes included)."""
    return f"network n {{\n    input x: [10]\n    layers: stage linear(10) x {count}, names={names}\n}}\n"


def column_in(text: str, line: int, fragment: str) -> int:
    return text.split("\n")[line - 1].index(fragment) + 1


# ---------------------------------------------------------------- parts and spans


def test_text_and_expressions_in_order():
    template = scan('"denselayer{i+1}"')
    text, expr = template.parts
    assert text == "denselayer"
    assert isinstance(expr, ast.Binary) and expr.op == "+"
    assert where(expr.left) == (3, 22, 23)  # `"` at 10, `{` at 21, `i` at 22
    assert where(expr) == (3, 22, 25)
    assert template.span == Span("f.arch", 3, 10, 3, 27)


def test_plain_text_and_adjacent_expressions():
    assert scan('"head"').parts == ("head",)
    assert scan('""').parts == ()
    first, second = scan('"{i}{i * 2}"').parts
    assert isinstance(first, ast.Name) and isinstance(second, ast.Binary)
    assert where(first) == (3, 12, 13) and where(second) == (3, 15, 20)


def test_doubled_braces_are_literal_braces():
    assert scan('"a{{b}}c"').parts == ("a{b}c",)
    left, expr, right = scan('"{{{i}}}"').parts
    assert (left, right) == ("{", "}")
    assert isinstance(expr, ast.Name) and where(expr) == (3, 14, 15)


def test_braces_nest_and_strings_inside_an_expression_may_hold_braces():
    # In the file: names="n{\"}\" if false else i}"
    text, expr = scan(r'"n{\"}\" if false else i}"').parts
    assert text == "n"
    assert isinstance(expr, ast.Ternary) and expr.then == ast.Literal("}", expr.then.span)
    assert isinstance(scan('"x{[1, 2][i]}"').parts[1], ast.Index)


def test_escapes_before_an_expression_keep_its_columns():
    # `\t` is two characters in the file and one in the value.
    text, expr = scan(r'"a\tb{i}"').parts
    assert text == "a\tb"
    assert where(expr) == (3, 16, 17)


def test_a_triple_quoted_template():
    text, expr = scan('"""  d{i}"""').parts
    assert text == "d"
    assert where(expr) == (3, 17, 18)


def test_parse_puts_the_template_into_the_stage_with_file_positions():
    source = network('"u{i + 1}"')
    stage = parse(source, "net.arch").definitions[0].body[1].links[0].target
    assert isinstance(stage, ast.Stage) and isinstance(stage.names, ast.Template)
    text, expr = stage.names.parts
    assert text == "u"
    assert expr.span == Span("net.arch", 3, column_in(source, 3, "i + 1"), 3, column_in(source, 3, "}"))


# ---------------------------------------------------------------- malformed templates


@pytest.mark.parametrize(
    ("raw", "code", "column", "end_column", "message"),
    [
        ('"layer{i"', "E319", 16, 17, "unclosed `{` in the names template"),
        ('"a{i}{"', "E319", 15, 16, "unclosed `{` in the names template"),
        ('"a}b"', "E319", 12, 13, "a `}` without its `{` in the names template"),
        ('"{{i}"', "E319", 14, 15, "a `}` without its `{` in the names template"),
        ('"a{}"', "E319", 12, 14, "empty `{}` in the names template"),
        ('"a{  }"', "E319", 12, 16, "empty `{}` in the names template"),
        ('"a{i + * 2}"', "E101", 17, 18, "unexpected `*`"),
        ('"a{i +}"', "E101", 16, 17, "the expression ends too early"),
        ('"a{(i}"', "E101", 15, 16, "the expression ends too early"),
        ('"a{ {i} }"', "E101", 14, 15, "unexpected `{`"),
        ('"a{\\"x}"', "E319", 12, 13, "unclosed `{` in the names template"),
    ],
)
def test_malformed_templates_are_located_syntax_errors(raw, code, column, end_column, message):
    with pytest.raises(ArchSyntaxError) as info:
        scan(raw)
    err = info.value
    assert (err.code, err.message) == (code, message)
    assert err.span == Span("f.arch", 3, column, 3, end_column)
    assert err.hint


def test_hints_say_how_to_write_a_literal_brace():
    with pytest.raises(ArchSyntaxError, match="unclosed") as info:
        scan('"a{i"')
    assert info.value.hint == "close it with `}`, or write `{{` for a literal `{`"
    with pytest.raises(ArchSyntaxError, match="without its") as info:
        scan('"a}"')
    assert info.value.hint == "write `}}` for a literal `}`"


def test_template_errors_are_collected_with_the_other_syntax_errors():
    source = (
        "network n {\n"
        "    input x: [10]\n"
        '    a: stage linear(10) x 2, names="a{i"\n'
        "    b: linear(10 k=3)\n"
        '    c: stage linear(10) x 2, names="c}"\n'
        "}\n"
    )
    with pytest.raises(ArchSyntaxError) as info:
        parse(source, "net.arch")
    found = [(d.code, d.span.line, d.span.column) for d in info.value.diagnostics]
    assert found == [
        ("E319", 3, column_in(source, 3, "{")),
        ("E101", 4, column_in(source, 4, "k=")),
        ("E319", 5, column_in(source, 5, "}")),
    ]


def test_a_template_error_in_a_branch_never_taken_is_still_found():
    source = network('"a{i"').replace("    layers:", "    if false {\n    layers:").replace("\n}\n", "\n    }\n}\n")
    with pytest.raises(archdsl.ArchError) as info:
        archdsl.graph(source)
    assert info.value.code == "E319"


# ---------------------------------------------------------------- elaboration and formatting


def test_repeats_are_named_by_evaluating_the_parts():
    g = archdsl.graph(network('"l{i * 2}_{i}"', count=3))
    assert [n for n in g if n != "x"] == ["layers.l0_0", "layers.l2_1", "layers.l4_2"]


def test_escaped_braces_reach_the_name_and_an_invalid_name_is_still_e320():
    g = archdsl.graph(network('"a{{{i}}}"'))  # braces are fine in a PyTorch module name
    assert "layers.a{0}" in g
    with pytest.raises(archdsl.ArchError) as info:
        archdsl.graph(network('"a{{{i}}} b"'))
    assert info.value.code == "E320"
    assert "gives `a{0} b`" in info.value.message
    assert "holds a space" in info.value.message


def test_formatter_keeps_templates_as_written():
    source = 'network n {\n    input x: [10]\n    s: stage linear(10) x 2, names = "a{{b}}{ i+1 }"\n}\n'
    formatted = format_source(source)
    assert 'names="a{{b}}{ i+1 }"' in formatted
    assert format_source(formatted) == formatted


def test_formatter_reports_template_errors():
    source = network('"l{i"')
    with pytest.raises(ArchSyntaxError) as info:
        format_source(source, "net.arch")
    (diag,) = info.value.diagnostics
    assert (diag.code, diag.span.line, diag.span.column) == ("E319", 3, column_in(source, 3, "{"))


# ---------------------------------------------------------------- the command line


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "archdsl", *args], capture_output=True, text=True)


@pytest.mark.parametrize(
    ("names", "fragment", "code"),
    [
        ('"l{i"', "{", "E319"),
        ('"l}{i}"', "}", "E319"),
        ('"l{}"', "{}", "E319"),
        ('"l{i + * 2}"', "*", "E101"),
    ],
)
@pytest.mark.parametrize("command", [["check"], ["fmt", "--check"]], ids=["check", "fmt-check"])
def test_cli_reports_template_errors_with_file_line_column_and_caret(tmp_path, command, names, fragment, code):
    path = tmp_path / "net.arch"
    source = network(names)
    path.write_text(source, encoding="utf-8")
    result = run(*command, str(path))
    assert result.returncode == 1, result.stdout + result.stderr
    output = result.stdout + result.stderr
    column = column_in(source, 3, fragment)
    assert f"error[{code}]" in output
    assert f"--> {path}:3:{column}" in output
    assert f"3 | {source.splitlines()[2]}" in output
    caret = "  | " + " " * (column - 1) + "^" * len(fragment)
    assert caret in output.splitlines(), output
    assert "would reformat" not in output


def test_cli_accepts_a_good_template(tmp_path):
    path = tmp_path / "net.arch"
    path.write_text(network('"l{i + 1}"'), encoding="utf-8")
    assert run("check", str(path)).returncode == 0
    assert run("fmt", "--check", str(path)).returncode == 0

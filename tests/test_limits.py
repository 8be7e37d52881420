"""Limits: every bound on input size has a default, a located error when exceeded, and an API override."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import time

import pytest
import torch

import archdsl


def test_limits_are_overridable_per_call_and_only_for_that_call():
    source = "network n() {\n    input x: [4]\n    s: stage linear(4) x 12000\n}\n"
    with pytest.raises(archdsl.ArchError, match=r"E317.*limit of 10000"):
        archdsl.graph(source)
    assert archdsl.graph(source, limits=archdsl.Limits(max_repeat=20_000)).number_of_nodes() == 12_001
    with pytest.raises(archdsl.ArchError, match="E317"):  # the default is back
        archdsl.graph(source)


NESTED_BLOCKS = """block inner() {
    fc: linear(4)
}
block outer() {
    a: inner()
}
network n() {
    input x: [4]
    b: outer()
}
"""


@pytest.mark.parametrize(
    ("limits", "source", "code"),
    [
        ({"max_nodes": 10}, "resnet18", "E321"),
        ({"max_bracket_depth": 3}, "network n() {\n    let a = ((((1))))\n    input x: [4]\n}\n", "E102"),
        ({"max_operators": 3}, "network n() {\n    let a = 1 + 2 + 3 + 4 + 5\n    input x: [4]\n}\n", "E102"),
        ({"max_int": 1000}, "network n() {\n    input x: [4]\n    fc: linear(10 ** 4)\n}\n", "E3"),
        ({"max_params": 100}, "network n() {\n    input x: [4]\n    fc: linear(100)\n}\n", "E326"),
        ({"max_string": 10}, 'network n() {\n    let s = "abcdef" + "ghijkl"\n    input x: [4]\n}\n', "E303"),
        ({"max_value_size": 5}, "network n() {\n    let a = [[1, 2], [3, 4]]\n    input x: [4]\n}\n", "E303"),
        ({"max_prefix_run": 2}, "network n() {\n    let a = - - - 1\n    input x: [4]\n}\n", "E102"),
        ({"max_dim": 100}, "network n() {\n    input x: [4]\n    fc: linear(200)\n}\n", "E404"),
        ({"max_activation": 100}, "network n() {\n    input x: [4]\n    fc: linear(200)\n}\n", "E327"),
        ({"max_activation": 100}, "network n() {\n    input x: [3, 8, 8]\n    relu\n}\n", "E327"),
        ({"max_import_depth": 1}, 'import "a.arch"\nnetwork n() {\n    input x: [4]\n}\n', "E254"),
        ({"max_block_depth": 1}, NESTED_BLOCKS, "E217"),
        ({"max_edges": 20}, "network n() {\n    input x: [4]\n    s: stage relu x 6, connect=dense\n}\n", "E321"),
    ],
)
def test_each_limit_can_be_lowered(limits, source, code, tmp_path):
    (tmp_path / "a.arch").write_text('import "b.arch"\n')
    (tmp_path / "b.arch").write_text("block b() {\n    fc: linear(4)\n}\n")
    if source.startswith("import"):
        (tmp_path / "main.arch").write_text(source)
        source = tmp_path / "main.arch"
    with pytest.raises(archdsl.ArchError) as info:
        archdsl.load(source, limits=archdsl.Limits(**limits))
    assert all(d.code.startswith(code) for d in info.value.diagnostics)
    assert all(d.span is not None and d.span.line >= 1 for d in info.value.diagnostics)


def test_node_limit_stops_at_the_first_node_over_it():
    with pytest.raises(archdsl.ArchError) as info:
        archdsl.graph("resnet50", limits=archdsl.Limits(max_nodes=20))
    assert [d.code for d in info.value.diagnostics] == ["E321"]


@pytest.mark.parametrize("bad", [0, -1, 1.5, True])
def test_limits_reject_nonsense(bad):
    with pytest.raises(ValueError, match="positive integer"):
        archdsl.Limits(max_repeat=bad)


def test_integer_limit_message_names_the_limit_in_force():
    source = "network n() {\n    input x: [4]\n    fc: linear(2000)\n}\n"
    with pytest.raises(archdsl.ArchError, match=r"\(\|n\| <= 1,000\)"):
        archdsl.graph(source, limits=archdsl.Limits(max_int=1000))


def test_a_checkpoint_saved_under_raised_limits_reloads_only_when_the_reader_raises_them(tmp_path):
    source = "network n() {\n    let big = 2 ** 63\n    input x: [4]\n    fc: linear(4)\n}\n"
    raised = archdsl.Limits(max_int=2**64)
    module = archdsl.load(source, limits=raised)
    archdsl.save_checkpoint(module, tmp_path / "big.pt")
    with pytest.raises(archdsl.ArchCheckpointError) as info:
        archdsl.load_checkpoint(tmp_path / "big.pt")
    assert info.value.code == "E604" and "E303" in str(info.value)
    assert f"limits=archdsl.Limits(max_int={2**64})" in info.value.hint
    restored = archdsl.load_checkpoint(tmp_path / "big.pt", limits=raised)
    assert restored.meta["archdsl"]["limits"]["max_int"] == 2**64
    with archdsl.limits.using(raised):  # the limits in force count as the reader's
        archdsl.load_checkpoint(tmp_path / "big.pt")


def _stored(tmp_path, source: str, limits: dict):
    """A sealed checkpoint of a small network whose stored source and limits were replaced (as a forger would)."""
    from archdsl.checkpoint import seal

    path = tmp_path / "forged.pt"
    archdsl.save_checkpoint(archdsl.load("network n() {\n    input x: [4]\n    fc: linear(4)\n}\n"), path)
    payload = torch.load(path, weights_only=True)
    payload["sources"][payload["file"]] = source
    payload["limits"] = {**dataclasses.asdict(archdsl.Limits()), **limits}
    torch.save(seal(payload), path)
    return path


def test_stored_limits_cannot_raise_the_parameter_limit(tmp_path):
    """A stored max_params of 2**62 once let a checkpoint allocate 32 GiB; the reader's 2**32 holds."""
    source = "network n() {\n    input x: [65536]\n    fc: linear(131072, bias=false)\n}\n"
    path = _stored(tmp_path, source, {"max_params": 2**62})
    start = time.perf_counter()
    with pytest.raises(archdsl.ArchCheckpointError) as info:
        archdsl.load_checkpoint(path)
    assert time.perf_counter() - start < 10
    assert info.value.code == "E604" and "E326" in str(info.value) and "max_params=" in info.value.hint


def test_stored_limits_cannot_raise_the_repeat_limit(tmp_path):
    """Stored limits with `x 1000000000` hung; the reader's max_repeat stops it at once."""
    source = "network n() {\n    input x: [4]\n    s: stage relu x 1000000000\n}\n"
    path = _stored(tmp_path, source, {"max_repeat": 2**40, "max_nodes": 2**40})
    start = time.perf_counter()
    with pytest.raises(archdsl.ArchCheckpointError) as info:
        archdsl.load_checkpoint(path)
    assert time.perf_counter() - start < 10
    assert info.value.code == "E604" and "E317" in str(info.value)


def test_stored_limits_can_lower_the_readers(tmp_path):
    path = _stored(tmp_path, "network n() {\n    input x: [4]\n    fc: linear(4)\n}\n", {"max_params": 10})
    with pytest.raises(archdsl.ArchCheckpointError, match="E326"):
        archdsl.load_checkpoint(path)
    assert archdsl.limits.stricter(archdsl.Limits(max_nodes=5), None, archdsl.Limits(max_repeat=3)) == archdsl.Limits(
        max_nodes=5, max_repeat=3
    )


# ----------------------------------------------------------------- integers too long to convert (E303)

NINES = "9" * 5000  # Python refuses to convert more than 4,300 digits


@pytest.mark.parametrize(
    ("source", "line", "column"),
    [
        pytest.param("network n() {\n    input x: [4]\n    fc: linear(" + NINES + ")\n}\n", 3, 16, id="network"),
        pytest.param(
            'network n() {\n    input x: [4]\n    s: stage relu x 2, names="r{' + NINES + '}"\n}\n',
            3,
            33,
            id="names_template",
        ),
    ],
)
def test_an_integer_literal_of_thousands_of_digits_is_a_located_error(source, line, column):
    with pytest.raises(archdsl.ArchError) as info:
        archdsl.graph(source)
    (diagnostic,) = info.value.diagnostics
    assert diagnostic.code == "E303" and "(5,000 digits) is out of range (|n| <= 2**62)" in diagnostic.message
    assert (diagnostic.span.line, diagnostic.span.column) == (line, column)
    assert diagnostic.span.end_column == column + len(NINES)
    assert str(info.value).count("99999999…99999999 (5,000 digits)") == 1  # the message shows the literal's ends


def test_an_integer_literal_beyond_a_raised_max_int_is_still_converted_or_refused():
    source = "network n() {\n    let a = " + NINES + "\n    input x: [4]\n}\n"
    with pytest.raises(archdsl.ArchError, match="E303"):
        archdsl.graph(source, limits=archdsl.Limits(max_int=10**6000))  # past Python's 4,300 digits
    assert archdsl.graph(source.replace(NINES, "9" * 40), limits=archdsl.Limits(max_int=10**50))


def test_an_integer_override_of_thousands_of_digits_on_the_command_line():
    result = subprocess.run(
        [sys.executable, "-m", "archdsl", "check", "cifar_resnet", "-p", f"depth={NINES}"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert "error[E303]: integer 99999999…99999999 (5,000 digits) is out of range" in result.stderr
    assert " --> -p depth\n" in result.stderr


def test_an_integer_override_out_of_range_from_python():
    with pytest.raises(archdsl.ArchError) as info:
        archdsl.graph("cifar_resnet", depth=10**5000)
    (diagnostic,) = info.value.diagnostics
    assert diagnostic.code == "E303" and "about 5,001 digits" in diagnostic.message
    assert str(diagnostic.span) == "-p depth"
    assert diagnostic.labels[0].span.file.endswith("cifar_resnet.arch")


# ----------------------------------------------------------------- values that double (E303, Limits.max_value_size)


def doubling(lets: int, use: str) -> str:
    """``let a0 = [1, 1]``, then ``let aK = [aK-1, aK-1]``: 40 lines hold a value of 2**41 elements written out."""
    body = "    let a0 = [1, 1]\n" + "".join(f"    let a{k} = [a{k - 1}, a{k - 1}]\n" for k in range(1, lets))
    return "network n() {\n    input x: [4]\n" + body + use + "    fc: linear(2)\n}\n"


@pytest.mark.parametrize(
    "use",
    ["    let z = a39\n", "    assert a39 == a39\n", "    linear(a39)\n", "    let b = [a39, a39, a39]\n"],
    ids=["let", "compared", "printed", "nested"],
)
def test_a_value_that_doubles_forty_times_stops_at_the_size_limit(use):
    start = time.perf_counter()
    with pytest.raises(archdsl.ArchError) as info:
        archdsl.graph(doubling(40, use))
    assert time.perf_counter() - start < 10  # it hung with growing memory
    (diagnostic,) = info.value.diagnostics  # the uses of the failed `let` stay silent
    assert diagnostic.code == "E303"
    assert diagnostic.message == "this list would hold 131,070 elements, more than the limit of 100,000"
    assert (diagnostic.span.line, diagnostic.span.column) == (18, 15)  # `[a14, a14]`, the first list over it


def test_values_under_the_size_limit_are_shown_short_and_compared_fast():
    twin = "    let b0 = [1, 1]\n" + "".join(f"    let b{k} = [b{k - 1}, b{k - 1}]\n" for k in range(1, 15))
    text = doubling(15, twin + "    assert a14 == b14\n    linear(a14)\n")
    start = time.perf_counter()
    with pytest.raises(archdsl.ArchError) as info:
        archdsl.graph(text)  # a14 and b14 are equal, 65,534 elements each, built apart
    assert time.perf_counter() - start < 10
    (diagnostic,) = info.value.diagnostics
    assert diagnostic.code == "E301" and diagnostic.message.startswith("`out` must be an int, got list `[[[[")
    assert diagnostic.message.endswith("…`") and len(diagnostic.message) < 300


def test_the_size_limit_counts_shared_lists_in_python_overrides():
    value = [1, 1]
    for _ in range(39):
        value = [value, value]
    source = "network n(blocks = [1]) {\n    input x: [4]\n    fc: linear(2)\n}\n"
    start = time.perf_counter()
    with pytest.raises(archdsl.ArchError) as info:
        archdsl.graph(source, blocks=value)
    assert time.perf_counter() - start < 10
    (diagnostic,) = info.value.diagnostics
    assert diagnostic.code == "E303" and "more than the limit of 100,000" in diagnostic.message
    assert str(diagnostic.span) == "-p blocks"
    assert archdsl.graph(source, blocks=[[1, 2]] * 1000).graph["params"]["blocks"] == ((1, 2),) * 1000


def test_a_python_list_that_holds_itself_is_refused():
    loop: list = [1]
    loop.append(loop)
    with pytest.raises(archdsl.ArchError) as info:
        archdsl.graph("network n(a = [1]) {\n    input x: [4]\n    fc: linear(2)\n}\n", a=loop)
    assert info.value.code == "E309" and "holds itself" in info.value.message


# ----------------------------------------------------------------- too many errors (Limits.max_errors)


def test_twenty_thousand_errors_stop_at_a_hundred_and_say_how_many_more(monkeypatch):
    from archdsl import errors

    renders = []
    render = errors.render_diagnostic
    monkeypatch.setattr(errors, "render_diagnostic", lambda *args: renders.append(1) or render(*args))
    text = "network n() {\n    input x: [4]\n" + "    conv2(4)\n" * 20_000 + "    fc: linear(2)\n}\n"
    start = time.process_time()
    with pytest.raises(archdsl.ArchError) as info:
        archdsl.graph(text)
    rendered = str(info.value)
    assert time.process_time() - start < 30  # 35 s before, most of it rendering 20,000 diagnostics
    assert len(renders) == 100  # the work: only the diagnostics kept are rendered
    assert [d.span.line for d in info.value.diagnostics] == list(range(3, 103))  # the first ones, in order
    assert info.value.omitted == 19_900
    assert rendered.endswith(
        "\n\nnote: ... and 19,900 more errors (only the first 100 are shown; archdsl.Limits(max_errors=...) shows more)"
    )


def test_the_error_limit_can_be_lowered_and_says_one_more_error():
    text = "network n() {\n    input x: [4]\n" + "    conv2(4)\n" * 3 + "    fc: linear(2)\n}\n"
    with pytest.raises(archdsl.ArchError) as info:
        archdsl.graph(text, limits=archdsl.Limits(max_errors=2))
    assert len(info.value.diagnostics) == 2 and info.value.omitted == 1
    assert str(info.value).endswith(
        "\n\nnote: ... and 1 more error (only the first 2 are shown; archdsl.Limits(max_errors=...) shows more)"
    )
    with pytest.raises(archdsl.ArchError) as info:
        archdsl.graph(text, limits=archdsl.Limits(max_errors=3))
    assert info.value.omitted == 0 and "note: ..." not in str(info.value)


def test_check_json_counts_the_errors_it_does_not_list(tmp_path):
    path = tmp_path / "many.arch"
    path.write_text("network n() {\n    input x: [4]\n" + "    conv2(4)\n" * 150 + "    fc: linear(2)\n}\n")
    result = subprocess.run(
        [sys.executable, "-m", "archdsl", "check", "--format", "json", str(path)], capture_output=True, text=True
    )
    assert result.returncode == 1, result.stderr
    report = json.loads(result.stdout)
    assert len(report["diagnostics"]) == 100 and report["omitted"] == 50

"""A compiled module at input sizes other than the declared one: it runs where its layers can, and refuses
other sizes with a located error (E412) before any of its code runs."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import archdsl

FCN = """
network fcn(c = 8) {
    input image: [3, 32, 32]
    enc: conv(c, k=3, pad=1) -> relu -> down: maxpool(2) -> mid: conv(2 * c, k=3, pad=1)
    pool: adaptive_avgpool(1) -> flatten -> fc: linear(5)
}
"""

FIXED = """
network fixed {
    input image: [3, 8, 8]
    conv(4, k=3) -> flatten -> fc: linear(5)
}
"""


@pytest.mark.parametrize("size", [(32, 32), (64, 48), (9, 17)])
def test_a_network_that_pools_to_a_fixed_size_runs_at_any_size(size):
    module = archdsl.load(FCN)
    assert module(torch.randn(2, 3, *size)).shape == (2, 5)


def test_resnet18_runs_at_two_sizes_with_the_same_weights():
    module = archdsl.load("resnet18", num_classes=10, seed=0).eval()
    with torch.no_grad():
        assert module(torch.randn(1, 3, 224, 224)).shape == (1, 10)
        assert module(torch.randn(1, 3, 160, 128)).shape == (1, 10)


def refused(module, *shape) -> archdsl.ArchError:
    with pytest.raises(archdsl.ArchError) as caught:
        module(torch.randn(*shape))
    (diagnostic,) = caught.value.diagnostics
    assert diagnostic.code == "E412"
    return caught.value


def test_a_size_a_flatten_then_linear_cannot_take_names_the_linear_layer():
    err = refused(archdsl.load(FIXED), 1, 3, 10, 10)
    text = str(err)
    assert "at input size image [3, 10, 10]: `fc` (linear) has weights for an input of [144]" in text
    assert "conv(4, k=3) -> flatten -> fc: linear(5)" in text  # the source line, with its caret


def test_other_channels_name_the_first_convolution():
    err = refused(archdsl.load(FCN), 1, 1, 32, 32)
    assert "`enc` (conv) has weights for an input of [3, 32, 32], and would get [1, 32, 32]" in str(err)


def test_too_small_an_input_names_the_op_that_cannot_take_it():
    err = refused(archdsl.load(FIXED), 1, 3, 2, 2)
    assert "kernel 3 is larger than its input of size 2" in err.diagnostics[0].message


def test_a_position_embedding_fixes_a_vits_image_size():
    vit = archdsl.load("vit", image_size=32, patch_size=16, num_layers=1, hidden_dim=32, mlp_dim=64, num_heads=2)
    err = refused(vit, 1, 3, 64, 64)
    assert "the parameter [1, 5, 32] does not broadcast against the activation [17, 32]" in str(err)


def test_a_wrong_rank_is_refused():
    err = refused(archdsl.load(FCN), 3, 32, 32)
    assert "declared [3, 32, 32] (batch left out), so it takes 3 dims" in str(err)


def test_each_new_size_is_checked_once():
    module = archdsl.load(FCN)
    module(torch.randn(1, 3, 40, 40))
    module(torch.randn(1, 3, 40, 40))
    assert module.meta["archdsl"]["sizes_checked"] == {((3, 40, 40),)}


def test_compiled_and_exported_modules_skip_the_check():
    module = archdsl.load(FCN).eval()
    x = torch.randn(2, 3, 32, 32)
    compiled = torch.compile(module, fullgraph=True, backend="eager")
    assert torch.allclose(compiled(x), module(x))
    program = torch.export.export(module, (x,))
    assert torch.allclose(program.module()(x), module(x))


def test_torchscript_scripts_a_module_with_its_size_check(tmp_path):
    source = "network two {\n    input a: [4]\n    input b: [4]\n    add(a, b) -> linear(2)\n}\n"
    module = archdsl.load(source)
    scripted = torch.jit.script(module)  # the check's hook is typed for TorchScript, which skips it
    a, b = torch.randn(3, 4), torch.randn(3, 4)
    assert torch.equal(scripted(a, b), module(a, b))
    torch.jit.save(scripted, str(tmp_path / "two.pt"))


def test_the_refusal_reads_as_the_golden_file(repo_root, monkeypatch):
    """E412 is raised at run time, so its fixture is a golden file of its own (tests/fixtures/runtime)."""
    monkeypatch.chdir(repo_root)  # the diagnostic names the file as given: relative to the repository
    folder = Path("tests/fixtures/runtime")
    module = archdsl.load(str(folder / "e412_linear_after_flatten.arch"))
    with pytest.raises(archdsl.ArchError) as caught:
        module(torch.randn(1, 3, 10, 10))
    assert str(caught.value) + "\n" == (folder / "e412_linear_after_flatten.expected").read_text()

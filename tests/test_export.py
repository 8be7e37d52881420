"""archdsl.export: TorchScript, torch.export (.pt2) and ONNX files that compute what the module computes."""

from __future__ import annotations

import functools
import importlib
import sys

import pytest
import torch
from torch import nn

import archdsl
from archdsl.export import FORMATS, ArchExportError, export

# ImageNet networks at size=64 keep the exports fast; the CIFAR ResNet has
# zero-pad (option A) shortcuts and highway_fc has highway gates, the two
# helper functions the compiler emits as call_function nodes.
NETS = {
    "resnet50": {"size": 64},
    "densenet121": {"size": 64},
    "googlenet": {"size": 64, "aux_logits": False},  # unit_scale below scales the one linear layer the output reads
    "cifar_resnet": {},
    "highway_fc": {},
}
ONNX_NETS = ("resnet50", "densenet121", "googlenet")
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:FutureWarning")
ONNX_INSTALL = "pip install 'archdsl[onnx]'  (or: pip install onnx onnxscript onnxruntime)"


@functools.cache
def unit_scale(name: str) -> nn.Module:
    """A seeded module in eval mode whose outputs have unit scale.

    With freshly initialised batchnorm statistics (mean 0, variance 1) the
    activations grow through deep networks (densenet121's logits reach ~1e6),
    so float32 rounding alone would exceed an absolute tolerance. Scaling
    the final linear layer brings the logits to unit scale without changing
    the rest of the network. (Fitting the batchnorm statistics to random
    inputs instead makes the networks worse conditioned: resnet50 then
    differs from its own float64 result by ~1e-4.)
    """
    module = archdsl.load(name, seed=0, **NETS[name]).eval()
    (result,) = [n for n in module.graph.nodes if n.op == "output"]
    last = module.get_submodule(result.args[0].target)
    assert isinstance(last, nn.Linear), f"{name} does not end in a linear layer"
    scale = eager(module, batch(name, 8, seed=1)).abs().max().item()
    with torch.no_grad():
        last.weight /= scale
        last.bias /= scale
    return module


def batch(name: str, n: int, seed: int = 0) -> tuple[torch.Tensor, ...]:
    """Random inputs of the network's declared shapes, batch ``n``."""
    gen = torch.Generator().manual_seed(seed)
    return tuple(torch.randn((n, *shape), generator=gen) for shape in input_shapes(name))


@functools.cache
def input_shapes(name: str) -> list[tuple[int, ...]]:
    g = archdsl.graph(name, **NETS[name])
    return [g.nodes[node]["shape"] for node in g.graph["inputs"]]


def eager(module: nn.Module, inputs: tuple[torch.Tensor, ...]) -> torch.Tensor:
    with torch.no_grad():
        return module(*inputs)


def max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a - b).abs().max().item()


def require_onnx():
    """onnx and onnxruntime, or a failure saying what to install (CI installs them: no skip)."""
    try:
        onnx = importlib.import_module("onnx")
        ort = importlib.import_module("onnxruntime")
        importlib.import_module("onnxscript")
    except ImportError as err:
        pytest.fail(f"the ONNX tests need onnx, onnxscript and onnxruntime ({err}); install them: {ONNX_INSTALL}")
    return onnx, ort


# --- TorchScript ---------------------------------------------------------------


@pytest.mark.parametrize("name", list(NETS))
def test_torchscript_round_trip(name, tmp_path):
    module = unit_scale(name)
    path = export(module, tmp_path / f"{name}.torchscript", "torchscript")
    assert path == tmp_path / f"{name}.torchscript" and path.is_file()
    loaded = torch.jit.load(str(path))
    assert not loaded.training
    inputs = batch(name, 3)
    assert max_diff(eager(loaded, inputs), eager(module, inputs)) <= 1e-5


# --- torch.export (.pt2) -------------------------------------------------------


@pytest.mark.parametrize("name", list(NETS))
def test_pt2_round_trip_with_a_dynamic_batch(name, tmp_path):
    module = unit_scale(name)
    path = export(module, tmp_path / f"{name}.pt2", "pt2")
    loaded = torch.export.load(str(path)).module()
    for n in (1, 3):
        inputs = batch(name, n, seed=n)
        out = eager(loaded, inputs)
        assert out.shape[0] == n
        assert max_diff(out, eager(module, inputs)) <= 1e-5


def test_pt2_with_a_fixed_batch(tmp_path):
    name = "cifar_resnet"
    module = unit_scale(name)
    inputs = batch(name, 4)
    path = export(module, tmp_path / "net.pt2", "pt2", example_inputs=inputs, dynamic_batch=False)
    program = torch.export.load(str(path))
    assert max_diff(eager(program.module(), inputs), eager(module, inputs)) <= 1e-5
    with pytest.raises(Exception):  # noqa: B017 - the guard's error type is torch's business
        program.module()(*batch(name, 2))


def test_export_uses_eval_mode_and_restores_the_mode(tmp_path):
    name = "cifar_resnet"
    module = archdsl.load(name, seed=0)
    module.train()
    module.layer1.eval()  # a mixed state is restored as it was
    path = export(module, tmp_path / "net.pt2", "pt2")
    assert module.training and not module.layer1.training and module.layer2.training
    inputs = batch(name, 2)
    expected = eager(module.eval(), inputs)
    assert max_diff(eager(torch.export.load(str(path)).module(), inputs), expected) <= 1e-5


def test_export_builds_from_source_with_overrides(tmp_path, tiny_resnet):
    path = export(tiny_resnet, tmp_path / "tiny.pt2", "pt2", num_classes=7, seed=0)
    out = eager(torch.export.load(str(path)).module(), (torch.randn(2, 3, 16, 16),))
    assert out.shape == (2, 7)
    path = export("highway_fc", tmp_path / "hw.torchscript", "TorchScript")
    assert torch.jit.load(str(path))(torch.randn(2, 784)).shape[0] == 2


def test_plain_modules_need_example_inputs(tmp_path):
    module = nn.Sequential(nn.Linear(4, 3), nn.ReLU())
    with pytest.raises(ArchExportError) as info:
        export(module, tmp_path / "m.pt2", "pt2")
    assert info.value.code == "E903" and "example_inputs" in str(info.value)
    path = export(module, tmp_path / "m.pt2", "pt2", example_inputs=torch.randn(1, 4))
    x = torch.randn(5, 4)
    assert max_diff(torch.export.load(str(path)).module()(x), module(x)) == 0


# --- ONNX ----------------------------------------------------------------------


@pytest.mark.parametrize("name", ONNX_NETS)
def test_onnx_checks_and_matches_onnxruntime(name, tmp_path):
    onnx, ort = require_onnx()
    module = unit_scale(name)
    path = export(module, tmp_path / f"{name}.onnx", "onnx")
    model = onnx.load(str(path))
    onnx.checker.check_model(model, full_check=True)
    assert [i.name for i in model.graph.input] == ["image"]
    assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_param  # a symbolic batch
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (x,) = batch(name, 3)
    (result,) = session.run(None, {"image": x.numpy()})
    assert max_diff(torch.from_numpy(result), eager(module, (x,))) <= 1e-4


def test_missing_onnx_packages_say_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxscript", None)  # what `import onnxscript` then finds: nothing
    with pytest.raises(ArchExportError) as info:
        export("highway_fc", tmp_path / "m.onnx", "onnx")
    err = info.value
    assert isinstance(err, archdsl.ArchError) and err.code == "E902"
    assert "onnxscript" in err.message and "pip install 'archdsl[onnx]'" in err.hint
    assert not (tmp_path / "m.onnx").exists()


# --- errors --------------------------------------------------------------------


def test_unknown_format_names_the_valid_formats(tmp_path):
    with pytest.raises(archdsl.ArchError) as info:
        export("highway_fc", tmp_path / "m.bin", "onnxx")
    err = info.value
    assert isinstance(err, ArchExportError) and err.code == "E901"
    assert all(fmt in err.message for fmt in FORMATS)
    assert err.hint == "did you mean `onnx`?"
    with pytest.raises(ArchExportError, match="torchscript, pt2, onnx"):
        export("highway_fc", tmp_path / "m.bin", "safetensors")


def test_missing_output_folder(tmp_path):
    with pytest.raises(ArchExportError, match="does not exist"):
        export("highway_fc", tmp_path / "no" / "m.pt2", "pt2")


def test_overrides_with_a_built_module_are_an_error(tmp_path):
    with pytest.raises(ArchExportError, match="num_classes"):
        export(archdsl.load("highway_fc"), tmp_path / "m.pt2", "pt2", num_classes=3)


def test_exporter_failures_become_arch_errors(tmp_path):
    class Unscriptable(nn.Module):
        def forward(self, x):
            return sum(t for t in (x, x))  # generators are not TorchScript

    with pytest.raises(ArchExportError) as info:
        export(Unscriptable(), tmp_path / "m.torchscript", "torchscript", example_inputs=torch.randn(1, 2))
    assert info.value.code == "E904" and "Unscriptable" in info.value.message
    assert info.value.__cause__ is not None


def test_a_memory_efficient_module_exports_as_its_plain_twin(tmp_path):
    """The rewrite only helps training; export writes the same weights in the plain graph."""
    module = archdsl.load("cifar_densenet_bc", depth=22, seed=0, memory_efficient=True).eval()
    path = export(module, tmp_path / "lean.pt", "torchscript")
    scripted = torch.jit.load(path)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(scripted(x), module(x))

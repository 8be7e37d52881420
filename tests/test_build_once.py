"""Each CLI command runs the pipeline once: every file parsed once, the network elaborated once.

The commands run in-process (``typer.testing.CliRunner``) with the parse and
elaborate entry points counted. What is not under test is kept cheap:
modules are built on the meta device (no weights), and the training epoch,
the data and the export writer are stand-ins, so the test covers the whole
zoo in seconds.
"""

from __future__ import annotations

from collections import Counter

import pytest
import torch
from torch.utils.data import TensorDataset
from typer.testing import CliRunner

import archdsl
from archdsl import export as export_module
from archdsl import loader, pipeline
from archdsl.cli import app
from archdsl.train import loop
from archdsl.train.data import Data

ZOO = archdsl.zoo_names()


@pytest.fixture
def counts(monkeypatch) -> Counter:
    """How often each file is parsed (``parse:FILE``) and how often a network is elaborated (``elaborate``)."""
    seen: Counter = Counter()
    real_parse, real_elaborate = loader.parse, pipeline.elaborate

    def parse(text, file, *args, **kwargs):
        seen[f"parse:{file}"] += 1
        return real_parse(text, file, *args, **kwargs)

    def elaborate(*args, **kwargs):
        seen["elaborate"] += 1
        return real_elaborate(*args, **kwargs)

    monkeypatch.setattr(loader, "parse", parse)
    monkeypatch.setattr(pipeline, "elaborate", elaborate)
    return seen


@pytest.fixture
def meta_device():
    with torch.device("meta"):
        yield


def _run(*args: str) -> str:
    result = CliRunner().invoke(app, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def _assert_once(counts: Counter) -> None:
    parses = {key: n for key, n in counts.items() if key.startswith("parse:")}
    assert parses, "nothing was parsed: the instrumentation missed the pipeline"
    assert set(parses.values()) == {1}, f"files parsed more than once: {parses}"
    assert counts["elaborate"] == 1


@pytest.mark.parametrize("name", ZOO)
def test_compile_builds_once(name, counts, meta_device):
    assert "parameters" in _run("compile", name)
    _assert_once(counts)


@pytest.mark.parametrize("name", ZOO)
def test_summary_builds_once(name, counts):
    _run("summary", name, "--depth", "1")
    _assert_once(counts)


@pytest.mark.parametrize("name", ZOO)
def test_export_builds_once(name, counts, meta_device, monkeypatch, tmp_path):
    written = []
    monkeypatch.setattr(export_module, "_to_torchscript", lambda module, target: written.append(module))
    _run("export", name, "-o", str(tmp_path / "net.ts"))
    assert len(written) == 1 and written[0].meta["archdsl"]["network"]
    _assert_once(counts)


# `archdsl train` has image data only: GPT takes token ids, and the encoder returns a sequence (E801, E805)
TRAINABLE = [name for name in ZOO if name not in ("gpt", "transformer_encoder")]


@pytest.mark.parametrize("name", TRAINABLE)
def test_train_builds_once(name, counts, meta_device, monkeypatch, tmp_path):
    classes = archdsl.graph(name)  # outside the counted run: the data must fit the network
    counts.clear()
    (out,) = classes.graph["outputs"]
    num_classes, *map_size = classes.nodes[out]["shape"]  # a map per class: a segmenting network (unet)

    def tiny_data(spec, input_shape, **_):
        images = torch.zeros(2, *input_shape, device="cpu")
        labels = torch.zeros(2, *map_size, dtype=torch.long, device="cpu")
        task = "segment" if map_size else "classify"
        return Data(TensorDataset(images, labels), TensorDataset(images, labels), num_classes, spec, task=task)

    class OnMeta(loop.Distributed):  # one process whose device is the meta device the model was built on
        def __init__(self, device: str) -> None:
            super().__init__("cpu")
            self.device = torch.device("meta")

    epochs = []
    monkeypatch.setattr(loop, "Distributed", OnMeta)
    monkeypatch.setattr(loop, "load_data", tiny_data)
    monkeypatch.setattr(loop, "known_classes", lambda spec: None)  # the tiny data's classes, found when read
    monkeypatch.setattr(loop, "_epoch", lambda *args: epochs.append(1) or (1.0, 0.5, 2, 0.1))
    monkeypatch.setattr(loop, "evaluate_model", lambda *args: (1.0, 0.5))
    monkeypatch.setattr(loop, "evaluate_segmentation", lambda *args: (1.0, 0.5, 0.25))
    monkeypatch.setattr(loop, "save_training_checkpoint", lambda *args: None)
    _run("train", name, "--epochs", "1", "--device", "cpu", "--out", str(tmp_path / "run"))
    assert epochs == [1]
    _assert_once(counts)


def test_eval_reads_its_checkpoint_once(tiny_resnet, tmp_path, monkeypatch):
    source = tmp_path / "tiny.arch"
    source.write_text(tiny_resnet, encoding="utf-8")
    checkpoint = tmp_path / "tiny.pt"
    archdsl.save_checkpoint(archdsl.load(source, seed=0), checkpoint)
    reads = []
    real_load = torch.load

    def counting_load(*args, **kwargs):
        reads.append(args[0] if args else kwargs.get("f"))
        return real_load(*args, **kwargs)

    monkeypatch.setattr(torch, "load", counting_load)
    output = _run("eval", str(source), "--checkpoint", str(checkpoint), "--data", "synthetic", "--device", "cpu")
    assert "test accuracy" in output
    assert [str(path) for path in reads] == [str(checkpoint)]


def test_a_compiled_module_carries_its_graph_through_deepcopy():
    import copy

    module = archdsl.load("resnet18", num_classes=10)
    graph = archdsl.api.graph_of_module(module)
    assert graph is not None and graph.graph["name"] == "resnet18"
    twin = copy.deepcopy(module)
    assert archdsl.api.graph_of_module(twin) is graph  # shared: the architecture, not the weights
    assert twin.meta["archdsl"]["input_shapes"] == [(3, 224, 224)]
    assert twin.meta["archdsl"]["output_names"] == ["fc"]

"""Error codes that no ``.arch`` fixture can show: checkpoints, diagrams, data and training, export, limits.

``tests/fixtures/invalid`` covers what a source file can cause (see
test_diagnostics.py). The codes here come from the API, from files that are
not ``.arch`` sources, or from limits too large for a fixture; each test
triggers one as a user would and checks its code and what it says.
:func:`test_every_code_has_a_test` keeps the two sets complete: a code the
package can raise must appear in a fixture's ``.expected`` or in a test.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import stat
import struct
import zipfile
from pathlib import Path

import networkx as nx
import pytest
import torch
from torch import fx, nn

import archdsl
from archdsl import validate
from archdsl.checkpoint import seal
from archdsl.errors import Span
from archdsl.render import ArchRenderError, render_dot, run_dot, write
from archdsl.train import ArchDataError, TrainConfig, load_data, train

REPO = Path(__file__).resolve().parent.parent

MLP = """\
network mlp(num_classes = 10) {
    input x: [64]
    fc: linear(16) -> relu
    out: linear(num_classes)
}
"""


def code_of(info: pytest.ExceptionInfo) -> str:
    err = info.value
    assert isinstance(err, archdsl.ArchError), type(err)
    assert len(err.diagnostics) == 1, str(err)
    str(err)  # renders
    return err.code


# ----------------------------------------------------------------- checkpoints (E601-E606)


@pytest.fixture
def checkpoint(tmp_path) -> Path:
    path = tmp_path / "mlp.ckpt"
    archdsl.save_checkpoint(archdsl.load(MLP, seed=0), path)
    return path


def rewrite(path: Path, change) -> Path:
    """Load a checkpoint's payload, apply ``change`` to it and save it back with a new hash.

    Like someone who edits a file and recomputes its SHA-256: the hash check
    passes, so what is tested is the check of each field.
    """
    payload = torch.load(path, weights_only=True)
    change(payload)
    torch.save(seal(payload), path)
    return path


def test_e601_missing_checkpoint(tmp_path):
    with pytest.raises(archdsl.ArchCheckpointError, match="no such checkpoint") as info:
        archdsl.load_checkpoint(tmp_path / "nothing.ckpt")
    assert code_of(info) == "E601"


@pytest.mark.parametrize("how", ["garbage", "truncated", "empty"])
def test_e601_unreadable_checkpoint(checkpoint, how):
    data = checkpoint.read_bytes()
    broken = {"garbage": b"not a checkpoint at all", "truncated": data[: len(data) // 2], "empty": b""}
    checkpoint.write_bytes(broken[how])
    with pytest.raises(archdsl.ArchCheckpointError, match="cannot read checkpoint") as info:
        archdsl.load_checkpoint(checkpoint)
    assert code_of(info) == "E601"


class _Trap:
    """Pickles as a call to ``Path.touch``: unpickling it would create a file."""

    def __init__(self, target: Path) -> None:
        self.target = target

    def __reduce__(self):
        return (Path.touch, (self.target,))


def test_e601_checkpoint_that_would_run_code_is_refused(tmp_path):
    """A checkpoint is read with ``weights_only=True``: a pickled call is refused, never made."""
    touched = tmp_path / "touched"
    path = tmp_path / "evil.ckpt"
    torch.save({"format": "archdsl-checkpoint", "trap": _Trap(touched)}, path)
    with pytest.raises(archdsl.ArchCheckpointError) as info:
        archdsl.load_checkpoint(path)
    assert code_of(info) == "E601"
    assert not touched.exists(), "loading the checkpoint ran code"


def test_e602_saving_a_module_archdsl_did_not_compile(tmp_path):
    module = fx.symbolic_trace(nn.Linear(2, 2))
    with pytest.raises(archdsl.ArchCheckpointError, match="not compiled by archdsl") as info:
        archdsl.save_checkpoint(module, tmp_path / "x.ckpt")
    assert code_of(info) == "E602"
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize(
    ("change", "message"),
    [
        pytest.param(lambda p: p.update(format="something-else"), "not an archdsl checkpoint", id="foreign_format"),
        pytest.param(lambda p: p.clear(), "not an archdsl checkpoint", id="empty_dict"),
        pytest.param(lambda p: p.pop("network"), "lacks the entry 'network'", id="missing_entry"),
        pytest.param(lambda p: p.update(state_dict=[1, 2]), "has no state_dict", id="state_dict_not_a_dict"),
    ],
)
def test_e603_foreign_or_incomplete_checkpoint(checkpoint, change, message):
    rewrite(checkpoint, change)
    with pytest.raises(archdsl.ArchCheckpointError, match=re.escape(message)) as info:
        archdsl.load_checkpoint(checkpoint)
    assert code_of(info) == "E603"


def test_e603_a_plain_tensor_file(tmp_path):
    path = tmp_path / "weights.pt"
    torch.save(archdsl.load(MLP).state_dict(), path)  # a bare state_dict, as torch users save them
    with pytest.raises(archdsl.ArchCheckpointError, match="not an archdsl checkpoint") as info:
        archdsl.load_checkpoint(path)
    assert code_of(info) == "E603"


def test_e604_stored_architecture_no_longer_builds(checkpoint):
    def break_source(payload):
        payload["sources"][payload["file"]] = MLP.replace("linear(16)", "linaer(16)")

    rewrite(checkpoint, break_source)
    with pytest.raises(archdsl.ArchCheckpointError, match="no longer builds") as info:
        archdsl.load_checkpoint(checkpoint)
    assert code_of(info) == "E604"
    assert "unknown op or block `linaer`" in str(info.value)  # the underlying diagnostic is shown


@pytest.mark.parametrize(
    ("change", "message"),
    [
        pytest.param(lambda sd: sd.pop("fc.bias"), "lacks the weight `fc.bias`", id="missing_weight"),
        pytest.param(lambda sd: sd.update(extra=torch.zeros(1)), "unexpected weight `extra`", id="unexpected_weight"),
        pytest.param(
            lambda sd: sd.update({"out.weight": torch.zeros(3, 16)}),
            "`out.weight` has shape [3, 16]",
            id="wrong_shape",
        ),
    ],
)
def test_e605_weights_that_do_not_match(checkpoint, change, message):
    rewrite(checkpoint, lambda payload: change(payload["state_dict"]))
    with pytest.raises(archdsl.ArchCheckpointError, match=re.escape(message)) as info:
        archdsl.load_checkpoint(checkpoint)
    assert code_of(info) == "E605"


def test_e605_checkpoint_of_another_architecture(checkpoint):
    """The same file with other overrides: the first mismatching weight is named."""
    rewrite(checkpoint, lambda payload: payload.update(overrides={"num_classes": 3}))
    with pytest.raises(archdsl.ArchCheckpointError, match=re.escape("`out.weight` has shape [10, 16]")) as info:
        archdsl.load_checkpoint(checkpoint)
    assert code_of(info) == "E605"


@pytest.mark.parametrize(
    ("weight", "message"),
    [
        pytest.param(lambda: torch.zeros(10, 16).to_sparse(), "is a sparse_coo tensor, not a dense one", id="sparse"),
        pytest.param(lambda: torch.zeros(10, 16).to_sparse_csr(), "is a sparse_csr tensor", id="sparse_csr"),
        pytest.param(
            lambda: torch.quantize_per_tensor(torch.zeros(10, 16), 0.1, 0, torch.qint8),
            "is a quantized tensor, not a dense one",
            id="quantized",
        ),
        pytest.param(lambda: torch.zeros(10, 16, dtype=torch.int64), "has dtype int64", id="integer"),
        pytest.param(lambda: torch.zeros(10, 16, dtype=torch.complex64), "has dtype complex64", id="complex"),
    ],
)
def test_e605_weight_that_is_not_a_dense_tensor_of_its_kind(checkpoint, weight, message):
    """A sparse or quantized tensor where a dense one belongs (it cannot be hashed, so the file is read unverified)."""
    payload = torch.load(checkpoint, weights_only=True)
    payload["state_dict"]["out.weight"] = weight()
    torch.save(payload, checkpoint)
    with pytest.raises(archdsl.ArchCheckpointError, match=re.escape(f"`out.weight` {message}")) as info:
        archdsl.load_checkpoint(checkpoint, verify=False)
    assert code_of(info) == "E605"


def tensor_bytes(path: Path) -> list[tuple[int, int]]:
    """Where each tensor's bytes lie in a checkpoint: torch's zip stores them uncompressed."""
    spans = []
    with zipfile.ZipFile(path) as archive, open(path, "rb") as raw:
        for info in archive.infolist():
            if "/data/" in info.filename and info.file_size:
                raw.seek(info.header_offset + 26)
                name_length, extra_length = struct.unpack("<HH", raw.read(4))
                start = info.header_offset + 30 + name_length + extra_length
                spans.append((start, start + info.file_size))
    return spans


def test_e607_a_bit_flipped_in_any_tensor(checkpoint):
    """Every tensor's bytes are hashed: one flipped bit in any of them is found, and verify=False still reads it."""
    original = checkpoint.read_bytes()
    spans = tensor_bytes(checkpoint)
    assert len(spans) == 4  # two weights, two biases
    for start, end in spans:
        flipped = bytearray(original)
        flipped[(start + end) // 2] ^= 0x10
        checkpoint.write_bytes(bytes(flipped))
        with pytest.raises(archdsl.ArchCheckpointError, match="modified or damaged") as info:
            archdsl.load_checkpoint(checkpoint)
        assert code_of(info) == "E607"
        assert info.value.hint is not None and "verify=False" in info.value.hint
        archdsl.load_checkpoint(checkpoint, verify=False)


def test_e607_an_edited_source(tmp_path, tiny_resnet):
    """Renaming `avgpool` (a node without weights) changes nothing a load would notice but the hash."""
    path = tmp_path / "tiny.pt"
    archdsl.save_checkpoint(archdsl.load(tiny_resnet, seed=0), path)
    payload = torch.load(path, weights_only=True)
    payload["sources"][payload["file"]] = payload["sources"][payload["file"]].replace("avgpool:", "avgponl:")
    torch.save(payload, path)
    with pytest.raises(archdsl.ArchCheckpointError, match="do not match the sha256") as info:
        archdsl.load_checkpoint(path)
    assert code_of(info) == "E607"
    assert "avgponl" in archdsl.load_checkpoint(path, verify=False).meta["archdsl"]["sources"][payload["file"]]


def test_e607_a_value_archdsl_never_writes(checkpoint):
    """A list that contains itself cannot be hashed: refused, not looped over."""
    payload = torch.load(checkpoint, weights_only=True)
    loop: list = []
    loop.append(loop)
    payload["options"] = {"x": loop}
    torch.save(payload, checkpoint)
    with pytest.raises(archdsl.ArchCheckpointError, match="contains itself") as info:
        archdsl.load_checkpoint(checkpoint)
    assert code_of(info) == "E607"


def test_e608_a_checkpoint_without_a_hash(checkpoint):
    """Checkpoints written before the hash (or with it removed) are refused unless the reader trusts them."""
    payload = torch.load(checkpoint, weights_only=True)
    del payload["sha256"]
    payload["version"] = 1
    torch.save(payload, checkpoint)
    with pytest.raises(archdsl.ArchCheckpointError, match="stores no sha256") as info:
        archdsl.load_checkpoint(checkpoint)
    assert code_of(info) == "E608"
    assert "save it again" in info.value.hint
    module = archdsl.load_checkpoint(checkpoint, verify=False)
    archdsl.save_checkpoint(module, checkpoint)  # saving again adds the hash
    archdsl.load_checkpoint(checkpoint)


def test_e609_eval_of_a_checkpoint_of_another_network(checkpoint):
    from typer.testing import CliRunner

    from archdsl.cli import app
    from archdsl.train import evaluate

    with pytest.raises(archdsl.ArchCheckpointError, match="holds the network `mlp`, not `tiny`") as info:
        evaluate(str(checkpoint), "synthetic", device="cpu", network="tiny")
    assert code_of(info) == "E609"
    result = CliRunner().invoke(app, ["eval", "cifar_resnet", "--checkpoint", str(checkpoint), "--device", "cpu"])
    assert result.exit_code == 1
    assert "error[E609]: " in result.output and "holds the network `mlp`, not `cifar_resnet`" in result.output


def test_e606_missing_folder(tmp_path):
    with pytest.raises(archdsl.ArchCheckpointError, match="does not exist") as info:
        archdsl.save_checkpoint(archdsl.load(MLP), tmp_path / "no" / "such" / "x.ckpt")
    assert code_of(info) == "E606"


# ----------------------------------------------------------------- outputs that would destroy a file (E610-E612)


def test_e610_output_is_a_source_file(tmp_path):
    source = tmp_path / "mlp.arch"
    source.write_text(MLP)
    module = archdsl.load(source)
    with pytest.raises(archdsl.ArchError, match="refusing to write .*: it is `.*mlp.arch`, a source file") as info:
        archdsl.save_checkpoint(module, source)
    assert code_of(info) == "E610"
    assert source.read_text() == MLP


@pytest.mark.parametrize("writer", ["checkpoint", "diagram"])
def test_e611_output_is_a_folder(tmp_path, writer):
    target = tmp_path / "taken.dot"
    target.mkdir()
    with pytest.raises(archdsl.ArchError, match="it is a folder") as info:
        if writer == "checkpoint":
            archdsl.save_checkpoint(archdsl.load(MLP), target)
        else:
            write(render_dot(MLP), target)
    assert code_of(info) == "E611"
    assert target.is_dir() and sorted(p.name for p in tmp_path.iterdir()) == ["taken.dot"]


def test_e612_output_is_a_symlink_or_a_pipe(tmp_path):
    (tmp_path / "link.ckpt").symlink_to("elsewhere.ckpt")
    os.mkfifo(tmp_path / "pipe.ckpt")
    module = archdsl.load(MLP)
    for name, kind in (("link.ckpt", "a symbolic link"), ("pipe.ckpt", "not a regular file")):
        with pytest.raises(archdsl.ArchError, match=kind) as info:
            archdsl.save_checkpoint(module, tmp_path / name)
        assert code_of(info) == "E612"
    assert (tmp_path / "link.ckpt").is_symlink() and stat.S_ISFIFO(os.lstat(tmp_path / "pipe.ckpt").st_mode)


# ----------------------------------------------------------------- diagrams (E701)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        pytest.param({"level": "module"}, "unknown level `module`", id="unknown_level"),
        pytest.param({"rankdir": "XY"}, "rankdir must be TB, LR, BT or RL", id="unknown_rankdir"),
    ],
)
def test_e701_bad_render_options(options, message):
    with pytest.raises(ArchRenderError, match=re.escape(message)) as info:
        render_dot(MLP, **options)
    assert code_of(info) == "E701"


@pytest.mark.parametrize(
    ("name", "message"),
    [
        pytest.param("diagram.jpg", "unknown format `jpg`", id="unknown_format"),
        pytest.param("diagram", "unknown format `(none)`", id="no_suffix"),
        pytest.param("no/such/diagram.dot", "does not exist", id="missing_folder"),
    ],
)
def test_e701_diagram_that_cannot_be_written(tmp_path, name, message):
    with pytest.raises(ArchRenderError, match=re.escape(message)) as info:
        write(render_dot(MLP), tmp_path / name)
    assert code_of(info) == "E701"


@pytest.mark.skipif(shutil.which("dot") is None, reason="needs Graphviz's dot")
def test_e701_graphviz_failure():
    with pytest.raises(ArchRenderError, match="Graphviz failed") as info:
        run_dot("this is { not DOT", "svg")
    assert code_of(info) == "E701"


# ----------------------------------------------------------------- data and training (E801-E807)


@pytest.mark.parametrize(
    ("spec", "shape", "message"),
    [
        pytest.param("imagefolder", (3, 8, 8), "needs a folder", id="folder_missing_from_spec"),
        pytest.param("digits", (10,), "not a square image", id="flat_input_not_square"),
        pytest.param("digits", (2, 8, 8), "wants 2 input channels", id="two_channels"),
    ],
)
def test_e801_data_that_does_not_fit(spec, shape, message):
    with pytest.raises(ArchDataError, match=message) as info:
        load_data(spec, shape)
    assert code_of(info) == "E801"


def test_e801_image_dataset_for_a_flat_input(tmp_path):
    pytest.importorskip("torchvision")
    with pytest.raises(ArchDataError, match="gives images") as info:
        load_data(f"cifar10:{tmp_path}", (64,))
    assert code_of(info) == "E801"


def test_e802_unknown_data_kind():
    with pytest.raises(ArchDataError, match="unknown data `mnist`") as info:
        load_data("mnist", (3, 8, 8))
    assert code_of(info) == "E802"


@pytest.mark.parametrize("kind", ["imagefolder", "cifar10"])
def test_e803_unreadable_data_folder(tmp_path, kind):
    pytest.importorskip("torchvision")
    with pytest.raises(ArchDataError, match=f"cannot read {kind} data") as info:
        load_data(f"{kind}:{tmp_path / 'missing'}", (3, 8, 8))
    assert code_of(info) == "E803"


def config(tmp_path, **changes) -> TrainConfig:
    base = TrainConfig(
        arch=MLP,
        data="synthetic",
        epochs=1,
        batch_size=16,
        out=str(tmp_path / "run"),
        device="cpu",
        synthetic_size=32,
        progress=False,
    )
    return dataclasses.replace(base, **changes)


def test_e804_cuda_asked_for_without_cuda(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # as on a machine without a GPU
    with pytest.raises(ArchDataError, match="no CUDA device") as info:
        train(config(tmp_path, device="cuda"))
    assert code_of(info) == "E804"


def test_e805_output_does_not_match_the_classes(tmp_path):
    with pytest.raises(ArchDataError, match="has 10 classes") as info:
        train(config(tmp_path, overrides={"num_classes": 3}))
    assert code_of(info) == "E805"
    assert info.value.hint == "add `-p num_classes=10`"
    assert not (tmp_path / "run").exists()


def test_e805_network_with_two_outputs(tmp_path):
    two = MLP.replace("out: linear(num_classes)", "out: linear(num_classes)\n    output out, fc")
    with pytest.raises(ArchDataError, match="one input and one output") as info:
        train(config(tmp_path, arch=two))
    assert code_of(info) == "E805"


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        pytest.param({"optimizer": "adam"}, "unknown optimizer `adam`", id="optimizer"),
        pytest.param({"schedule": "linear"}, "unknown schedule `linear`", id="schedule"),
    ],
)
def test_e806_unknown_optimizer_or_schedule(tmp_path, changes, message):
    with pytest.raises(ArchDataError, match=message) as info:
        train(config(tmp_path, **changes))
    assert code_of(info) == "E806"
    assert not (tmp_path / "run").exists()


def test_e807_resuming_from_a_plain_checkpoint(tmp_path, checkpoint):
    with pytest.raises(ArchDataError, match="not a training checkpoint") as info:
        train(config(tmp_path, resume=str(checkpoint)))
    assert code_of(info) == "E807"


@pytest.fixture(scope="module")
def training_checkpoint(tmp_path_factory) -> Path:
    """A resumable checkpoint after epoch 1 of 2 (read-only: tests rewrite copies)."""
    run = tmp_path_factory.mktemp("trained")
    train(config(run, epochs=2, stop_after=1))
    return run / "run" / "checkpoint.pt"


def _set(*path, value=None, delete=False):
    """A change to the payload at ``path`` (keys and indices): set ``value`` or delete the entry."""

    def change(payload):
        target = payload
        for key in path[:-1]:
            target = target[key]
        if delete:
            del target[path[-1]]
        else:
            target[path[-1]] = value

    return change


@pytest.mark.parametrize(
    ("change", "field"),
    [
        pytest.param(_set("training", value=[1]), "training", id="training_not_a_dict"),
        pytest.param(_set("training", "epoch", value="x"), "training.epoch", id="epoch_a_string"),
        pytest.param(_set("training", "epoch", value=10**30), "training.epoch", id="epoch_huge"),
        pytest.param(_set("training", "epoch", value=5), "training.epoch", id="epoch_past_the_end"),
        pytest.param(_set("training", "rng", delete=True), "training.rng", id="rng_missing"),
        pytest.param(_set("training", "rng", value=torch.zeros(3)), "training.rng", id="rng_not_uint8"),
        pytest.param(
            _set("training", "rng", value=torch.zeros(5056, dtype=torch.uint8)), "training.rng", id="rng_invalid_state"
        ),
        pytest.param(_set("training", "cuda_rng", value=[torch.zeros(2)]), "training.cuda_rng[0]", id="cuda_rng"),
        pytest.param(_set("training", "config", value=None), "training.config", id="config_not_a_dict"),
        pytest.param(_set("training", "config", "batch_size", value=0), "training.config.batch_size", id="batch_0"),
        pytest.param(_set("training", "config", "momentum", value=-1), "training.config.momentum", id="momentum"),
        pytest.param(
            _set("training", "config", "synthetic_size", value=10**12),
            "training.config.synthetic_size",
            id="synthetic_size",
        ),
        pytest.param(_set("training", "config", "lr", value=float("nan")), "training.config.lr", id="lr_nan"),
        pytest.param(_set("training", "config", "optimizer", value="adam"), "training.config.optimizer", id="adam"),
        pytest.param(_set("training", "config", "seed", value=2**64), "training.config.seed", id="seed"),
        pytest.param(_set("training", "config", "data", value="mnist"), "training.config.data", id="data"),
        pytest.param(_set("training", "config", "epochs", value=0), "training.config.epochs", id="epochs_0"),
        pytest.param(_set("training", "config", "warmup", value=-1), "training.config.warmup", id="warmup"),
        pytest.param(_set("training", "config", "extra", value=1), "training.config.extra", id="unknown_option"),
        pytest.param(_set("training", "history", value=[1, 2]), "training.history", id="history_too_long"),
        pytest.param(_set("training", "history", value=[1]), "training.history[0]", id="history_of_ints"),
        pytest.param(
            _set("training", "history", 0, "train_loss", value="x"), "training.history[0].train_loss", id="loss"
        ),
        pytest.param(_set("training", "optimizer", value={}), "training.optimizer", id="optimizer_empty"),
        pytest.param(
            _set("training", "optimizer", "param_groups", 0, "lr", value=-1.0),
            "training.optimizer.param_groups[0].lr",
            id="group_lr",
        ),
        pytest.param(
            _set("training", "optimizer", "param_groups", 0, "params", value=[3, 2, 1, 0]),
            "training.optimizer.param_groups[0].params",
            id="group_params",
        ),
        pytest.param(
            _set("training", "optimizer", "state", 0, "momentum_buffer", value=torch.zeros(3)),
            "training.optimizer.state[0].momentum_buffer",
            id="momentum_buffer_shape",
        ),
        pytest.param(
            _set("training", "optimizer", "state", 99, value={}), "training.optimizer.state[99]", id="state_of_nothing"
        ),
        pytest.param(_set("training", "scheduler", "T_max", value=0), "training.scheduler.T_max", id="t_max_0"),
        pytest.param(
            _set("training", "scheduler", "base_lrs", value=[0.1, 0.1]), "training.scheduler.base_lrs", id="base_lrs"
        ),
        pytest.param(_set("training", "scheduler", value=None), "training.scheduler", id="scheduler_none"),
    ],
)
def test_e807_tampered_training_state(tmp_path, training_checkpoint, change, field):
    """Every field of the training state is checked before use (here with a recomputed hash, as a forger would)."""
    path = tmp_path / "tampered.pt"
    path.write_bytes(training_checkpoint.read_bytes())
    rewrite(path, change)
    with pytest.raises(ArchDataError, match=re.escape(f"`{field}` ")) as info:
        train(config(tmp_path, resume=str(path), epochs=None))  # the checkpoint's 2 epochs: one left to train
    assert code_of(info) == "E807"
    assert not (tmp_path / "run").exists()


def test_e807_fewer_epochs_than_already_trained(tmp_path, training_checkpoint):
    with pytest.raises(ArchDataError, match="has trained 1 epochs already; --epochs 0 cannot shorten") as info:
        train(config(tmp_path, resume=str(training_checkpoint), epochs=0))
    assert code_of(info) == "E807"


def _cli_train(*args: str):
    from typer.testing import CliRunner

    from archdsl.cli import app

    return CliRunner().invoke(app, ["train", MLP, "--data", "synthetic", "--device", "cpu", "--epochs", "1", *args])


def test_e808_run_folder_is_a_file(tmp_path):
    taken = tmp_path / "notes.txt"
    taken.write_text("keep me")
    result = _cli_train("--out", str(taken))
    assert result.exit_code == 1, result.output
    assert f"error[E808]: cannot use {taken} as the run folder: it is a file" in result.output
    assert taken.read_text() == "keep me"
    with pytest.raises(ArchDataError, match="is a file") as info:
        train(config(tmp_path, out=str(taken / "run")))
    assert code_of(info) == "E808"


@pytest.mark.skipif(not Path("/proc/self").exists(), reason="needs Linux's /proc")
def test_e808_run_folder_that_cannot_be_made():
    result = _cli_train("--out", "/proc/archdsl-run")
    assert result.exit_code == 1, result.output
    assert "error[E808]: cannot make the run folder /proc/archdsl-run" in result.output
    assert "Traceback" not in result.output


# ----------------------------------------------------------------- export (E905, E906; E901-E904 in test_export.py)


def test_e905_overrides_with_a_built_module(tmp_path):
    from archdsl.export import ArchExportError, export

    with pytest.raises(ArchExportError, match="num_classes") as info:
        export(archdsl.load(MLP), tmp_path / "m.pt2", "pt2", num_classes=3)
    assert code_of(info) == "E905"


def test_e906_missing_output_folder(tmp_path):
    from archdsl.export import ArchExportError, export

    with pytest.raises(ArchExportError, match="does not exist") as info:
        export(MLP, tmp_path / "no" / "m.pt2", "pt2")
    assert code_of(info) == "E906"


# ----------------------------------------------------------------- API options and limits


def test_e229_unknown_feature_output():
    with pytest.raises(archdsl.ArchNameError, match="`fcc` names no node") as info:
        archdsl.load(MLP, outputs=["fcc"])
    assert code_of(info) == "E229"
    assert info.value.hint == "did you mean `fc`?"


def test_e254_imports_nest_too_deeply(tmp_path):
    chain = 40
    for i in range(chain):
        (tmp_path / f"m{i}.arch").write_text(f'import "m{i + 1}.arch"\nblock b{i} {{\n    relu\n}}\n')
    (tmp_path / f"m{chain}.arch").write_text(f"block b{chain} {{\n    relu\n}}\n")
    main = tmp_path / "main.arch"
    main.write_text('import "m0.arch"\nnetwork n {\n    input x: [4]\n    b0()\n}\n')
    with pytest.raises(archdsl.ArchImportError, match="imports nest deeper than") as info:
        archdsl.graph(main)
    assert code_of(info) == "E254"
    span = info.value.span
    assert Path(span.file).name == "m31.arch"  # main.arch and m0 ... m31 make 32 levels of imports
    assert (span.line, span.column, span.end_column) == (1, 1, len('import "m32.arch"') + 1)


def test_e257_an_import_that_is_not_a_regular_file(tmp_path):
    """Folders, devices, pipes and link loops; tests/test_loader.py has one test of each."""
    (tmp_path / "lib.arch").mkdir()
    (tmp_path / "main.arch").write_text('import "lib.arch"\nnetwork n {\n    input x: [4]\n}\n')
    with pytest.raises(archdsl.ArchImportError, match="lib.arch is a folder, not a file") as info:
        archdsl.graph(tmp_path / "main.arch")
    assert code_of(info) == "E257"
    assert info.value.span.line == 1


def test_e258_a_source_file_larger_than_the_limit(tmp_path):
    path = tmp_path / "big.arch"
    path.write_text("network n {\n    input x: [4]\n}\n" + "\n" * 1000)
    with pytest.raises(archdsl.ArchLimitError, match="big.arch is larger than 1,000 bytes") as info:
        archdsl.graph(path, limits=archdsl.Limits(max_file_bytes=1000))
    assert code_of(info) == "E258"
    assert len(archdsl.graph(path)) == 1


def test_e321_too_many_nodes():
    """The default node limit (200,000) is too slow to reach in a test; a lower one shows the error."""
    text = "network n {\n    input x: [4]\n    s: stage relu() x 100\n}\n"
    with pytest.raises(archdsl.ArchLimitError, match="more than 50 nodes") as info:
        archdsl.graph(text, limits=archdsl.Limits(max_nodes=50))
    assert code_of(info) == "E321"
    assert info.value.span is not None and info.value.span.line == 3
    assert len(archdsl.graph(text, limits=archdsl.Limits(max_nodes=101))) == 101  # the input and 100 relus


def _nested_sums(depth: int, terms: int) -> str:
    """Lists nested ``depth`` deep, each a sum of ``terms`` ones: within the parser's limits, deep as a tree."""
    expr = "0"
    for _ in range(depth):
        expr = "[0, " + expr + " + 1" * terms + ", 0]"
    return expr


TOO_DEEP = "network n {\n    input x: [4]\n    let a = " + _nested_sums(40, 150) + "\n    relu\n}\n"


def test_e323_input_too_deep_to_process():
    with pytest.raises(archdsl.ArchLimitError, match="nests too deeply") as info:
        archdsl.graph(TOO_DEEP)
    assert code_of(info) == "E323"


def test_e323_is_located():
    with pytest.raises(archdsl.ArchLimitError) as info:
        archdsl.graph(TOO_DEEP)
    span = info.value.span
    assert span is not None and span.file == "<string>" and span.line == 3


def test_e326_a_layer_of_16_gib_is_refused_by_default():
    """`linear(65536)` on 65,536 features is 2**32 weights (16 GiB): over the default 2**31, so never allocated."""
    with pytest.raises(archdsl.ArchLimitError, match="4,294,967,296 parameters") as info:
        archdsl.graph("network n {\n    input x: [65536]\n    fc: linear(65536, bias=false)\n}\n")
    assert code_of(info) == "E326"
    assert info.value.span.line == 3


@pytest.mark.parametrize(
    ("body", "message", "line"),
    [
        ("input x: [3, 30000, 30000]\n    relu", "the input `x` holds 2,700,000,000 values per sample (10.1 GiB", 2),
        ("input x: [64]\n    fc: linear(300000000)", "`fc` (linear) outputs 300,000,000 values per sample", 3),
    ],
)
def test_e327_an_input_or_activation_over_the_limit(body, message, line):
    with pytest.raises(archdsl.ArchLimitError, match=re.escape(message)) as info:
        archdsl.graph(f"network n {{\n    {body}\n}}\n")
    assert code_of(info) == "E327"
    assert info.value.span.line == line


@pytest.mark.parametrize(
    "failure",
    [
        RuntimeError(
            "[enforce fail at alloc_cpu.cpp:121] DefaultCPUAllocator: can't allocate memory: you tried to "
            "allocate 17179869184 bytes. Error code 12 (Cannot allocate memory)"
        ),
        MemoryError(),
        torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 16.00 GiB"),
    ],
    ids=["cpu", "python", "cuda"],
)
def test_e328_an_allocation_that_fails_while_building(monkeypatch, failure):
    """Under the parameter limit, a machine may still lack the memory: the failure names the layer and its size."""
    from archdsl.ops import registry

    def build(args, shapes):
        raise failure

    monkeypatch.setitem(registry.REGISTRY, "linear", dataclasses.replace(registry.REGISTRY["linear"], build=build))
    with pytest.raises(archdsl.ArchLimitError, match=re.escape("the 1,040 parameters of `fc` (linear)")) as info:
        archdsl.load(MLP)
    assert code_of(info) == "E328"
    assert info.value.span.line == 3 and "fc: linear(16)" in str(info.value)


def test_other_build_failures_are_not_taken_for_memory(monkeypatch):
    from archdsl.ops import registry

    def build(args, shapes):
        raise RuntimeError("a bug in a build function")

    monkeypatch.setitem(registry.REGISTRY, "linear", dataclasses.replace(registry.REGISTRY["linear"], build=build))
    with pytest.raises(RuntimeError, match="a bug in a build function"):
        archdsl.load(MLP)


# ----------------------------------------------------------------- guards no source can reach


def test_e403_non_positive_shape(monkeypatch):
    """Every shape rule rejects what would shrink a size below 1 (E401), so E403 is only a guard: shown with a
    deliberately broken rule."""
    from archdsl.ops import registry

    broken = dataclasses.replace(registry.REGISTRY["relu"], infer=lambda args, shapes: (0,))
    monkeypatch.setitem(registry.REGISTRY, "relu", broken)
    with pytest.raises(archdsl.ArchShapeError, match=re.escape("non-positive shape [0]")) as info:
        archdsl.graph(MLP)
    assert code_of(info) == "E403"
    assert info.value.span.line == 3


def _span(line: int) -> Span:
    return Span("<test>", line, 1, line, 2)


def test_e502_node_no_input_reaches():
    """Every op needs an input (E215, E322), so no source makes E502; the check itself still works."""
    g = nx.DiGraph(inputs=["x"], outputs=["y", "z"])
    g.add_node("x", op="input", span=_span(1))
    g.add_node("y", op="relu", span=_span(2))
    g.add_node("z", op="relu", span=_span(3))
    g.add_edge("x", "y")
    codes = [(err.code, err.message, err.span.line) for err in validate.check_reachability(g)]
    assert codes == [("E502", "`z` does not depend on any input", 3)]


def test_e590_broken_graph_invariant():
    g = archdsl.graph(MLP)
    g.nodes["fc"]["shape"] = (0,)
    with pytest.raises(archdsl.ArchGraphError, match="internal error") as info:
        validate.lint(g)
    assert code_of(info) == "E590"
    assert "node `fc` has the invalid shape (0,)" in info.value.message


# ----------------------------------------------------------------- every code is tested somewhere


def raised_codes() -> set[str]:
    """Every ``code="E..."`` in the package, and the default codes of error classes raised without one."""
    codes = set()
    for path in (REPO / "archdsl").rglob("*.py"):
        codes.update(re.findall(r'code="(E\d{3})"', path.read_text(encoding="utf-8")))
    codes.update({"E701", "E801"})  # ArchRenderError and ArchDataError, raised with their default code
    return codes


def codes_with_tests() -> set[str]:
    codes = set()
    for path in (REPO / "tests" / "fixtures" / "invalid").glob("*.expected"):
        codes.update(re.findall(r"^error\[(E\d{3})\]", path.read_text(encoding="utf-8"), flags=re.M))
    for path in (REPO / "tests").glob("test_*.py"):
        if path.name != Path(__file__).name:
            codes.update(re.findall(r'"(E\d{3})"', path.read_text(encoding="utf-8")))
    codes.update(re.findall(r"def test_e(\d{3})_", Path(__file__).read_text(encoding="utf-8")))
    return {c if c.startswith("E") else f"E{c}" for c in codes}


def test_every_code_has_a_test():
    assert len(raised_codes()) > 90
    untested = sorted(raised_codes() - codes_with_tests())
    assert not untested, f"codes without a fixture or a test: {untested}"


@pytest.mark.parametrize("field", ["options", "overrides"])
def test_e603_checkpoint_with_malformed_fields(tmp_path, field):
    archdsl.save_checkpoint(archdsl.load(MLP), tmp_path / "ok.pt")
    payload = torch.load(tmp_path / "ok.pt", weights_only=True)
    payload[field] = ["fuse"]
    torch.save(seal(payload), tmp_path / "bad.pt")
    with pytest.raises(archdsl.ArchCheckpointError, match="malformed") as info:
        archdsl.load_checkpoint(tmp_path / "bad.pt")
    assert code_of(info) == "E603"


def test_e606_when_torch_cannot_write_leaves_no_temporary_file(tmp_path, monkeypatch):
    def full_disk(*args, **kwargs):
        raise RuntimeError("PytorchStreamWriter failed writing file data/0: file write failed")

    monkeypatch.setattr(torch, "save", full_disk)
    with pytest.raises(archdsl.ArchCheckpointError, match="file write failed") as info:
        archdsl.save_checkpoint(archdsl.load(MLP), tmp_path / "model.pt")
    assert code_of(info) == "E606"
    assert list(tmp_path.iterdir()) == []

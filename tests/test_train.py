"""Training: data fitting, metrics, plots, atomic resumable checkpoints, evaluation, DDP over loopback."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import archdsl
from archdsl.train import ArchDataError, TrainConfig, evaluate, load_data, train
from archdsl.train.loop import save_training_checkpoint

HERE = Path(__file__).parent


def tiny(tiny_resnet, tmp_path, **changes) -> TrainConfig:
    config = TrainConfig(
        arch=tiny_resnet,
        data="synthetic",
        epochs=2,
        batch_size=32,
        out=str(tmp_path / "run"),
        device="cpu",
        synthetic_size=256,
    )
    for key, value in changes.items():
        setattr(config, key, value)
    return config


def test_training_writes_metrics_plot_and_checkpoint(tiny_resnet, tmp_path):
    result = train(tiny(tiny_resnet, tmp_path, epochs=3))
    run = Path(result.out)
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [line["epoch"] for line in lines] == [1, 2, 3]
    assert {"train_loss", "train_acc", "test_loss", "test_acc", "lr", "images_per_s"} <= set(lines[0])
    assert lines[-1]["train_loss"] < lines[0]["train_loss"]
    assert lines[-1]["test_acc"] > 0.3  # ten classes: chance is 0.1
    assert (run / "curves.png").read_bytes()[:4] == b"\x89PNG"
    payload = torch.load(run / "checkpoint.pt", weights_only=True)
    assert payload["training"]["epoch"] == 3
    restored = archdsl.load_checkpoint(run / "checkpoint.pt").eval()
    x = torch.randn(2, 3, 16, 16)
    torch.testing.assert_close(restored(x), result.model.eval()(x))


def test_resumed_run_ends_with_the_same_weights(tiny_resnet, tmp_path):
    straight = train(tiny(tiny_resnet, tmp_path / "a", epochs=3))
    first = train(tiny(tiny_resnet, tmp_path / "b", epochs=3, stop_after=1))  # "killed" after epoch 1
    resumed = train(tiny(tiny_resnet, tmp_path / "c", epochs=3, resume=str(Path(first.out) / "checkpoint.pt")))
    assert [h["epoch"] for h in resumed.history] == [1, 2, 3]
    a, b = straight.model.state_dict(), resumed.model.state_dict()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_a_failed_write_leaves_the_previous_checkpoint_intact(tiny_resnet, tmp_path, monkeypatch):
    result = train(tiny(tiny_resnet, tmp_path, epochs=1))
    path = Path(result.out) / "checkpoint.pt"
    before = path.read_bytes()

    def crash(obj, stream, *args, **kwargs):
        stream.write(b"partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", crash)
    model = archdsl.load(tiny_resnet)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda e: 1.0)
    with pytest.raises(KeyboardInterrupt):
        save_training_checkpoint(path, model, optimizer, scheduler, 2, [], tiny(tiny_resnet, tmp_path))
    assert path.read_bytes() == before
    assert not path.with_name(path.name + ".tmp").exists()
    torch.load(path, weights_only=True)


def test_mismatched_classes_fail_before_training_with_the_fix(tmp_path):
    with pytest.raises(ArchDataError, match="has 10 classes") as info:
        train(TrainConfig(arch="resnet18", data="digits", epochs=1, out=str(tmp_path)))
    assert "-p num_classes=10" in info.value.hint


def test_digits_are_fitted_to_the_declared_input():
    images = load_data("digits", (3, 32, 32))
    x, y = images.train[0]
    assert x.shape == (3, 32, 32) and images.num_classes == 10 and len(images.test) == 360
    flat = load_data("digits", (64,))
    assert flat.train[0][0].shape == (64,)
    with pytest.raises(ArchDataError, match="not a square image"):
        load_data("digits", (50,))
    with pytest.raises(ArchDataError, match="unknown data"):
        load_data("mnist", (1, 28, 28))


def test_imagefolder_reads_a_users_folder(tmp_path):
    from PIL import Image

    for label in ("cat", "dog"):
        (tmp_path / label).mkdir()
        for i in range(5):
            Image.new("RGB", (20, 20), color=(i * 40, 0, 0) if label == "cat" else (0, 0, i * 40)).save(
                tmp_path / label / f"{i}.png"
            )
    data = load_data(f"imagefolder:{tmp_path}", (3, 16, 16))
    assert data.num_classes == 2 and len(data.train) + len(data.test) == 10
    assert data.train[0][0].shape == (3, 16, 16)
    with pytest.raises(ArchDataError, match="cannot read cifar10"):
        load_data(f"cifar10:{tmp_path}", (3, 32, 32))


def test_cli_train_and_eval_on_digits(tmp_path):
    run = tmp_path / "run"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "archdsl",
            "train",
            "cifar_resnet",
            "--epochs",
            "1",
            "--batch-size",
            "128",
            "--out",
            str(run),
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    assert "epoch   1/1" in result.stdout and "test accuracy" in result.stdout
    evaluated = subprocess.run(
        [sys.executable, "-m", "archdsl", "eval", "cifar_resnet", "--checkpoint", str(run / "checkpoint.pt")],
        capture_output=True,
        text=True,
    )
    assert evaluated.returncode == 0, evaluated.stderr
    assert "test accuracy" in evaluated.stdout
    accuracy = json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])["test_acc"]
    assert f"{accuracy:.2%}" in evaluated.stdout
    report = evaluate(str(run / "checkpoint.pt"), "digits")
    assert report["samples"] == 360


def test_cli_train_explains_a_network_that_does_not_fit(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "archdsl", "train", "resnet18", "--out", str(tmp_path)], capture_output=True, text=True
    )
    assert result.returncode == 1
    assert "add `-p num_classes=10`" in result.stderr


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _torchrun(*args: str) -> subprocess.CompletedProcess:
    """Two CPU processes on loopback, as `torchrun --nproc-per-node 2 ...`."""
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-addr", "127.0.0.1"]
    command += ["--master-port", str(_free_port()), *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)


@pytest.mark.many_processes
def test_two_processes_with_ddp_keep_identical_weights(tmp_path):
    out = tmp_path / "ddp"
    out.mkdir()
    result = _torchrun(str(HERE / "ddp_worker.py"), str(HERE), str(out))
    assert result.returncode == 0, result.stderr[-3000:]
    a, b = torch.load(out / "rank0.pt"), torch.load(out / "rank1.pt")
    assert all(torch.equal(a[k], b[k]) for k in a)
    lines = (out / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 2  # rank 0 alone writes
    assert json.loads(lines[-1])["train_loss"] < json.loads(lines[0])["train_loss"]


@pytest.mark.many_processes
def test_torchrun_runs_the_cli(tmp_path):
    run = tmp_path / "run"
    result = _torchrun(
        "-m",
        "archdsl",
        "train",
        "highway_fc",
        "-p",
        "features=64",
        "-p",
        "depth=2",
        "--data",
        "digits",
        "--epochs",
        "1",
        "--out",
        str(run),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("epoch   1/1") == 1  # one report, from rank 0
    assert (run / "checkpoint.pt").exists()


def test_warmup_trains_at_a_tenth_of_the_rate_first(tiny_resnet, tmp_path):
    result = train(tiny(tiny_resnet, tmp_path, epochs=4, warmup=2, schedule="none", lr=0.05))
    assert [h["lr"] for h in result.history] == pytest.approx([0.005, 0.005, 0.05, 0.05])


MLP = """\
network mlp(num_classes = 10) {
    input x: [64]
    fc: linear(16) -> relu
    out: linear(num_classes)
}
"""


class Recorder:
    """A reporter that keeps its notes and the (epoch, epochs) of every finished epoch."""

    def __init__(self) -> None:
        self.notes: list[str] = []
        self.epochs: list[tuple[int, int]] = []

    def note(self, message: str) -> None:
        self.notes.append(message)

    def epoch_start(self, epoch: int, epochs: int, batches: int) -> None:
        pass

    def step(self, loss: float, acc: float, rate: float) -> None:
        pass

    def epoch_done(self, record: dict, epochs: int) -> None:
        self.epochs.append((record["epoch"], epochs))


def small(tmp_path, **changes) -> TrainConfig:
    """The MLP on 64 synthetic examples: an epoch takes milliseconds."""
    config = TrainConfig(
        arch=MLP, data="synthetic", epochs=2, batch_size=16, out=str(tmp_path / "run"), device="cpu", synthetic_size=64
    )
    for key, value in changes.items():
        setattr(config, key, value)
    return config


def test_resume_with_more_epochs_extends_the_run(tmp_path):
    """`--resume CKPT --epochs 4` after a 2-epoch run trains epochs 3 and 4 at the rates of a 4-epoch cosine run."""
    checkpoint = train(small(tmp_path, epochs=2)).out / "checkpoint.pt"
    reporter = Recorder()
    longer = train(TrainConfig(arch=MLP, resume=str(checkpoint), epochs=4, device="cpu"), reporter)
    assert [h["epoch"] for h in longer.history] == [1, 2, 3, 4]
    assert reporter.epochs == [(3, 4), (4, 4)]
    assert reporter.notes == [
        "the run now has 4 epochs instead of 2: from epoch 3 on, the cosine schedule gives the rates of a run "
        "planned for 4 epochs"
    ]
    planned = train(small(tmp_path / "planned", epochs=4))
    assert [h["lr"] for h in longer.history[2:]] == pytest.approx([h["lr"] for h in planned.history[2:]])
    assert torch.load(checkpoint, weights_only=True)["training"]["config"]["epochs"] == 4


def test_resuming_a_finished_run_says_why_nothing_is_trained(tmp_path):
    from typer.testing import CliRunner

    from archdsl.cli import app

    checkpoint = train(small(tmp_path, epochs=2)).out / "checkpoint.pt"
    before = checkpoint.read_bytes()
    reporter = Recorder()
    result = train(TrainConfig(arch=MLP, resume=str(checkpoint), device="cpu"), reporter)
    assert len(result.history) == 2 and reporter.epochs == []
    expected = (
        f"nothing to train: {checkpoint} has trained all 2 epochs of its run; pass --epochs N with N > 2 to train "
        "further"
    )
    assert reporter.notes == [expected]
    cli = CliRunner().invoke(app, ["train", MLP, "--resume", str(checkpoint), "--device", "cpu"])
    assert cli.exit_code == 0, cli.output
    assert "note: nothing to train:" in cli.output
    assert checkpoint.read_bytes() == before


def test_a_stale_temporary_checkpoint_is_removed_at_the_next_save_and_reported(tmp_path):
    """A kill between writing and renaming leaves a temporary file; the next save removes it and says so."""
    run = train(small(tmp_path, epochs=2, stop_after=1)).out
    stale = [run / "checkpoint.pt.tmp", run / ".checkpoint.tmp-0123abcd.pt"]
    for path in stale:
        path.write_bytes(b"half a checkpoint")
    reporter = Recorder()
    train(TrainConfig(arch=MLP, resume=str(run / "checkpoint.pt"), device="cpu"), reporter)
    assert not any(path.exists() for path in stale)
    assert sorted(reporter.notes) == sorted(
        f"removed {path}, left behind by a save that was interrupted" for path in stale
    )


def test_curves_are_written_after_every_epoch_on_a_log_loss_axis(tmp_path):
    from archdsl.train import history_figure

    run = train(small(tmp_path, epochs=3, stop_after=1)).out  # stopped after epoch 1, as a kill would
    assert (run / "curves.png").read_bytes()[:4] == b"\x89PNG"
    assert sorted(path.name for path in run.iterdir()) == ["checkpoint.pt", "curves.png", "metrics.jsonl"]
    records = [
        {"epoch": e, "train_loss": loss, "test_loss": loss, "train_acc": 0.5, "test_acc": 0.5, "lr": 0.1}
        for e, loss in ((1, 50.0), (2, 1.0), (3, 0.5))
    ]
    loss_axis = history_figure(records).axes[0]
    assert loss_axis.get_yscale() == "log"  # the first epoch's 50 does not flatten the rest


def test_digits_resized_to_the_input_are_reported_once(tmp_path):
    from archdsl.train.data import resize_note

    net = "network small(num_classes = 10) {\n    input x: [1, 12, 12]\n    f: flatten -> out: linear(num_classes)\n}\n"
    reporter = Recorder()
    result = train(
        TrainConfig(arch=net, data="digits", epochs=1, batch_size=512, out=str(tmp_path), device="cpu"), reporter
    )
    assert reporter.notes == result.notes == ["digits: 8x8 images resized to 1x12x12"]
    assert resize_note("digits", (1, 8, 8), (3, 224, 224)) == "digits: 8x8 images resized to 3x224x224"
    assert resize_note("digits", (1, 8, 8), (3, 8, 8)) == "digits: 8x8 images given 3 channels instead of 1"
    assert resize_note("digits", (1, 8, 8), (784,)) == "digits: 8x8 images resized and flattened to 784 features"
    assert load_data("digits", (64,)).note is None and load_data("digits", (1, 8, 8)).note is None


def test_ctrl_c_prints_the_resume_command_and_exits_130(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from archdsl.cli import app
    from archdsl.train.progress import RichReporter

    source = tmp_path / "my net.arch"
    source.write_text(MLP)
    run = tmp_path / "run"
    started = RichReporter.epoch_start

    def interrupted_in_epoch_2(self, epoch, epochs, batches):
        if epoch == 2:
            raise KeyboardInterrupt
        started(self, epoch, epochs, batches)

    monkeypatch.setattr(RichReporter, "epoch_start", interrupted_in_epoch_2)
    args = ["--data", "synthetic", "--device", "cpu"]
    result = CliRunner().invoke(app, ["train", str(source), *args, "--epochs", "3", "--out", str(run)])
    assert result.exit_code == 130, result.output
    command = f"archdsl train '{source}' --resume {run / 'checkpoint.pt'}"
    assert f"interrupted; to continue this run: {command}" in result.output
    assert (run / "curves.png").exists()  # written after epoch 1
    monkeypatch.undo()
    resumed = CliRunner().invoke(app, ["train", str(source), "--resume", str(run / "checkpoint.pt"), "--device", "cpu"])
    assert resumed.exit_code == 0, resumed.output
    assert "epoch   2/3" in resumed.output and "epoch   3/3" in resumed.output


def test_ctrl_c_before_the_first_epoch_ends(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from archdsl.cli import app
    from archdsl.train.progress import RichReporter

    def interrupted(self, epoch, epochs, batches):
        raise KeyboardInterrupt

    monkeypatch.setattr(RichReporter, "epoch_start", interrupted)
    result = CliRunner().invoke(app, ["train", MLP, "--data", "synthetic", "--device", "cpu", "--out", str(tmp_path)])
    assert result.exit_code == 130
    assert "interrupted before the first epoch ended; nothing to resume" in result.output


def test_sigint_during_training_in_a_real_process(tmp_path):
    """A real Ctrl-C (SIGINT), wherever it lands: exit 130 and the resume command, no traceback."""
    source = tmp_path / "mlp.arch"
    source.write_text(MLP)
    run = tmp_path / "run"
    command = [sys.executable, "-m", "archdsl", "train", str(source), "--data", "synthetic", "--device", "cpu"]
    command += ["--epochs", "100000", "--out", str(run)]
    # A run started in the background by a non-interactive shell inherits an ignored SIGINT, which
    # Python then leaves alone; give the child the default, as a terminal would.
    process = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        deadline = time.monotonic() + 120
        while not (run / "checkpoint.pt").exists() and time.monotonic() < deadline and process.poll() is None:
            time.sleep(0.1)
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == 130, err
    assert f"to continue this run: archdsl train {source} --resume {run / 'checkpoint.pt'}" in err
    assert "Traceback" not in err
    archdsl.load_checkpoint(run / "checkpoint.pt")


@pytest.mark.parametrize("command", ["train", "eval"])
def test_help_shows_every_option_whole_at_80_columns(command):
    import typer

    from archdsl.cli import app

    params = typer.main.get_command(app).commands[command].params
    names = [name for param in params for name in (*param.opts, *param.secondary_opts) if name.startswith("--")]
    result = subprocess.run(
        [sys.executable, "-m", "archdsl", command, "--help"],
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "80"},
    )
    assert result.returncode == 0, result.stderr
    assert "…" not in result.stdout
    assert max(len(line) for line in result.stdout.splitlines()) <= 80
    for name in names:
        assert re.search(rf"(?<![\w-]){re.escape(name)}(?![\w-])", result.stdout), f"{name} is cut"


def test_ctrl_c_during_training_waits_for_the_next_batch_and_twice_stops_at_once():
    """The first SIGINT only asks to stop (a KeyboardInterrupt inside the progress display could leave its lock
    held, and closing the display would then hang); a second one interrupts where it lands."""
    from archdsl.train.interrupt import stop_at_safe_points

    previous = signal.signal(signal.SIGINT, signal.default_int_handler)  # earlier tests may have changed it
    try:
        _interrupt_twice(stop_at_safe_points)
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # an ignored SIGINT (a background job) stays ignored
        with stop_at_safe_points() as stop:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.05)
            assert not stop.requested
    finally:
        signal.signal(signal.SIGINT, previous)


def _interrupt_twice(stop_at_safe_points) -> None:
    with pytest.raises(KeyboardInterrupt):
        with stop_at_safe_points() as stop:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.05)  # the handler runs: nothing is raised here
            assert stop.requested
            with pytest.raises(KeyboardInterrupt):
                stop.check()  # the safe point raises
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(1)  # the second SIGINT raises here, in the sleep
            pytest.fail("a second Ctrl-C did not interrupt")

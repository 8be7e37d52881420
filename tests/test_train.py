"""Training: data fitting, metrics, plots, atomic resumable checkpoints, evaluation, DDP over loopback."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
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

"""Training and evaluation of a compiled network, on one process or many (torchrun + DDP).

Checkpoints are self-contained (the ``.arch`` sources, overrides, model,
optimizer, scheduler, epoch, RNG state and history), written atomically by
rank 0 after every epoch, and loadable with ``torch.load(weights_only=True)``.
Data order depends only on (seed, epoch), so a run resumed after epoch k ends
with the same weights as one that never stopped.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler

from archdsl import api
from archdsl.train.data import ArchDataError, Data, load_data

CHECKPOINT_NAME = "checkpoint.pt"
METRICS_NAME = "metrics.jsonl"
PLOT_NAME = "curves.png"


@dataclass
class TrainConfig:
    """Everything a training run depends on."""

    arch: str
    overrides: dict[str, Any] = field(default_factory=dict)
    data: str = "digits"
    epochs: int = 10
    batch_size: int = 64
    optimizer: str = "sgd"  # "sgd" (with momentum) or "adamw"
    lr: float | None = None  # default: 0.1 for SGD, 1e-3 for AdamW
    momentum: float = 0.9
    weight_decay: float = 5e-4
    schedule: str = "cosine"  # "cosine", "step" (x0.1 at 50% and 75% of the epochs) or "none"
    warmup: int = 0  # epochs at a tenth of the learning rate first (He et al. 2015 warm up ResNet-110 so)
    label_smoothing: float = 0.0
    seed: int = 0
    device: str = "auto"  # "auto", "cpu" or "cuda"
    amp: bool = True  # bf16 autocast, on CUDA only
    channels_last: bool = False
    memory_efficient: bool = False  # DenseNet-style chains keep only their inputs for backward
    out: str = ""  # run folder; default runs/<network>
    resume: str = ""
    progress: bool = True
    synthetic_size: int = 512
    stop_after: int = 0  # stop this process after so many epochs (0: run to the end); the schedule is unchanged


@dataclass
class TrainResult:
    """The trained model (unwrapped) and the per-epoch history."""

    model: nn.Module
    history: list[dict[str, float]]
    out: Path


class Distributed:
    """The torchrun environment, or a single process."""

    def __init__(self, device: str) -> None:
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        use_cuda = device == "cuda" or (device == "auto" and torch.cuda.is_available())
        if device == "cuda" and not torch.cuda.is_available():
            raise ArchDataError("`--device cuda` was asked for, but no CUDA device is available", None, code="E804")
        self.device = torch.device(f"cuda:{self.local_rank}" if use_cuda else "cpu")
        if use_cuda:
            torch.cuda.set_device(self.device)
        if self.world > 1 and not dist.is_initialized():
            dist.init_process_group(backend="nccl" if use_cuda else "gloo")

    @property
    def main(self) -> bool:
        return self.rank == 0

    def close(self) -> None:
        if self.world > 1 and dist.is_initialized():
            dist.destroy_process_group()


def check_fit(graph, data: Data) -> None:
    """Fail before training when the network's output does not match the data's classes."""
    if len(graph.graph["inputs"]) != 1 or len(graph.graph["outputs"]) != 1:
        raise ArchDataError("training needs a network with one input and one output", None, code="E805")
    out_shape = graph.nodes[graph.graph["outputs"][0]]["shape"]
    if out_shape != (data.num_classes,):
        hint = (
            f"add `-p num_classes={data.num_classes}`"
            if "num_classes" in graph.graph["params"]
            else f"make the network output {data.num_classes} values"
        )
        raise ArchDataError(
            f"the network outputs {list(out_shape)} but `{data.name}` has {data.num_classes} classes",
            None,
            hint,
            code="E805",
        )


def _schedule(optimizer, config: TrainConfig):
    epochs = max(1, config.epochs - config.warmup)
    if config.schedule == "cosine":
        main = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs)
    elif config.schedule == "step":
        milestones = [max(1, epochs // 2), max(1, (3 * epochs) // 4)]
        main = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=milestones, gamma=0.1)
    elif config.schedule == "none":
        main = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda epoch: 1.0)
    else:
        raise ArchDataError(f"unknown schedule `{config.schedule}`", None, "use cosine, step or none", code="E806")
    if config.warmup <= 0:
        return main
    warm = torch.optim.lr_scheduler.ConstantLR(optimizer, factor=0.1, total_iters=config.warmup)
    return torch.optim.lr_scheduler.SequentialLR(optimizer, [warm, main], milestones=[config.warmup])


def _optimizer(model: nn.Module, config: TrainConfig):
    if config.optimizer == "sgd":
        lr = 0.1 if config.lr is None else config.lr
        return torch.optim.SGD(
            model.parameters(), lr=lr, momentum=config.momentum, weight_decay=config.weight_decay, nesterov=False
        )
    if config.optimizer == "adamw":
        lr = 1e-3 if config.lr is None else config.lr
        return torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=config.weight_decay)
    raise ArchDataError(f"unknown optimizer `{config.optimizer}`", None, "use sgd or adamw", code="E806")


def train(config: TrainConfig, reporter=None) -> TrainResult:
    """Train ``config.arch`` on ``config.data``; returns the model and history (see the module docstring)."""
    env = Distributed(config.device)
    try:
        return _train(config, env, reporter)
    finally:
        env.close()


# What a resumed run takes from the command line rather than from its checkpoint.
_NOT_RESTORED = ("resume", "stop_after", "device", "progress", "out")


def _train(config: TrainConfig, env: Distributed, reporter) -> TrainResult:
    payload = _read_checkpoint(config.resume) if config.resume else None
    if payload is not None:
        # A resumed run is the same run: its data, schedule and optimizer come from the checkpoint.
        for key, value in payload["training"]["config"].items():
            if key not in _NOT_RESTORED and hasattr(config, key):
                setattr(config, key, value)
        config.overrides = dict(payload["overrides"])
        config.out = config.out or str(Path(config.resume).parent)
        model = api.load_checkpoint(config.resume, payload)
        graph = api.graph_of_module(model)
    else:
        built = api.build(config.arch, compile=False, params=config.overrides)
        graph = built.graph
    data = load_data(config.data, graph.nodes[graph.graph["inputs"][0]]["shape"], synthetic_size=config.synthetic_size)
    check_fit(graph, data)
    out = Path(config.out or os.path.join("runs", graph.graph["name"]))
    if payload is None:
        model = built.compile(seed=config.seed, memory_efficient=config.memory_efficient).module
    model = model.to(env.device)
    if config.channels_last and env.device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    optimizer = _optimizer(model, config)
    scheduler = _schedule(optimizer, config)
    history: list[dict[str, float]] = []
    start = 0
    if payload is not None:
        optimizer.load_state_dict(payload["training"]["optimizer"])
        scheduler.load_state_dict(payload["training"]["scheduler"])
        history = list(payload["training"]["history"])
        start = int(payload["training"]["epoch"])
        torch.set_rng_state(payload["training"]["rng"])
        if torch.cuda.is_available() and payload["training"].get("cuda_rng"):
            torch.cuda.set_rng_state_all(payload["training"]["cuda_rng"])
    else:
        torch.manual_seed(config.seed)
    wrapped = nn.parallel.DistributedDataParallel(model) if env.world > 1 else model
    sampler = DistributedSampler(data.train, num_replicas=env.world, rank=env.rank, shuffle=True, seed=config.seed)
    loader = DataLoader(data.train, batch_size=config.batch_size, sampler=sampler, drop_last=False)
    test_loader = DataLoader(data.test, batch_size=256)
    criterion = nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)
    if env.main:
        out.mkdir(parents=True, exist_ok=True)
        _keep_metrics(out / METRICS_NAME, start)
    last = config.epochs if not config.stop_after else min(config.epochs, start + config.stop_after)
    for epoch in range(start, last):
        sampler.set_epoch(epoch)
        began = time.perf_counter()
        lr = optimizer.param_groups[0]["lr"]  # the rate this epoch trains at
        train_loss, train_acc, seen, train_seconds = _epoch(
            wrapped, loader, optimizer, criterion, config, env, epoch, reporter
        )
        if env.world > 1:
            # DDP's forward shares rank 0's buffers; after the last step they differ again until shared.
            for buffer in model.buffers():
                dist.broadcast(buffer, src=0)
        scheduler.step()
        test_loss, test_acc = evaluate_model(model, test_loader, env.device, criterion)
        seconds = time.perf_counter() - began
        record = {
            "epoch": epoch + 1,
            "train_loss": round(train_loss, 6),
            "train_acc": round(train_acc, 6),
            "test_loss": round(test_loss, 6),
            "test_acc": round(test_acc, 6),
            "lr": lr,
            "images_per_s": round(seen / max(1e-9, train_seconds), 1),
            "seconds": round(seconds, 3),
        }
        history.append(record)
        if env.main:
            with open(out / METRICS_NAME, "a", encoding="utf-8") as metrics:
                metrics.write(json.dumps(record) + "\n")
            save_training_checkpoint(out / CHECKPOINT_NAME, model, optimizer, scheduler, epoch + 1, history, config)
            if reporter is not None:
                reporter.epoch_done(record, config.epochs)
    if env.main and history:
        plot_history(history, out / PLOT_NAME, title=graph.graph["name"])
    return TrainResult(model, history, out)


def _keep_metrics(path: Path, epochs: int) -> None:
    """Keep the metrics of the first ``epochs`` epochs only (a fresh run starts an empty file)."""
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)[:epochs] if path.exists() else []
    path.write_text("".join(lines), encoding="utf-8")


def _epoch(model, loader, optimizer, criterion, config, env, epoch, reporter) -> tuple[float, float, int, float]:
    """One pass over the training data; returns mean loss, accuracy and samples over all ranks, and seconds."""
    model.train()
    total_loss, correct, seen = 0.0, 0, 0
    autocast = env.device.type == "cuda" and config.amp
    began = time.perf_counter()
    if reporter is not None and env.main:
        reporter.epoch_start(epoch + 1, config.epochs, len(loader))
    for inputs, labels in loader:
        inputs, labels = inputs.to(env.device, non_blocking=True), labels.to(env.device, non_blocking=True)
        if config.channels_last and env.device.type == "cuda" and inputs.dim() == 4:
            inputs = inputs.contiguous(memory_format=torch.channels_last)
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device_type=env.device.type, dtype=torch.bfloat16, enabled=autocast):
            logits = model(inputs)
            loss = criterion(logits.float(), labels)
        loss.backward()
        optimizer.step()
        batch = labels.shape[0]
        total_loss += loss.item() * batch
        correct += (logits.argmax(1) == labels).sum().item()
        seen += batch
        if reporter is not None and env.main:
            rate = seen * env.world / max(1e-9, time.perf_counter() - began)
            reporter.step(total_loss / seen, correct / seen, rate)
    seconds = time.perf_counter() - began
    if env.world > 1:
        sums = torch.tensor([total_loss, correct, seen], dtype=torch.float64, device=env.device)
        dist.all_reduce(sums)
        total_loss, correct, seen = sums[0].item(), int(sums[1].item()), int(sums[2].item())
    return total_loss / max(1, seen), correct / max(1, seen), seen, seconds


@torch.no_grad()
def evaluate_model(model: nn.Module, loader: DataLoader, device, criterion=None) -> tuple[float, float]:
    """Mean loss and accuracy of ``model`` over ``loader`` in eval mode."""
    criterion = criterion or nn.CrossEntropyLoss()
    model.eval()
    total_loss, correct, seen = 0.0, 0, 0
    for inputs, labels in loader:
        inputs, labels = inputs.to(device), labels.to(device)
        logits = model(inputs)
        total_loss += criterion(logits.float(), labels).item() * labels.shape[0]
        correct += (logits.argmax(1) == labels).sum().item()
        seen += labels.shape[0]
    return total_loss / max(1, seen), correct / max(1, seen)


def evaluate(checkpoint: str, data_spec: str, device: str = "auto", batch_size: int = 256) -> dict[str, float]:
    """Accuracy and loss of a checkpoint on a dataset's test split."""
    target = Distributed(device).device if int(os.environ.get("WORLD_SIZE", "1")) == 1 else torch.device("cpu")
    model = api.load_checkpoint(checkpoint)
    graph = api.graph_of_module(model)
    data = load_data(data_spec, graph.nodes[graph.graph["inputs"][0]]["shape"])
    check_fit(graph, data)
    loss, acc = evaluate_model(model.to(target), DataLoader(data.test, batch_size=batch_size), target)
    return {
        "test_loss": loss,
        "test_acc": acc,
        "samples": len(data.test),
        "network": graph.graph["name"],
        "overrides": dict(model.meta["archdsl"]["overrides"]),
    }


def save_training_checkpoint(path: Path, model, optimizer, scheduler, epoch, history, config: TrainConfig) -> None:
    """Write a resumable checkpoint atomically (a temporary file, then a rename), with its SHA-256."""
    payload = api.checkpoint_payload(model)
    payload["training"] = {
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "epoch": epoch,
        "history": history,
        "rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "config": {k: v for k, v in asdict(config).items() if k != "overrides"},
    }
    api.atomic_save(api.seal(payload), path)


def _read_checkpoint(path: str) -> dict:
    payload = api.read_checkpoint(path)
    if "training" not in payload:
        raise ArchDataError(f"{path} is not a training checkpoint (nothing to resume)", None, code="E807")
    return payload


def plot_history(history: list[dict[str, float]], path: Path, title: str = "") -> None:
    """Loss and accuracy curves (train and test) per epoch, as a PNG (no pyplot: the caller's backend is left alone)."""
    from matplotlib.figure import Figure

    epochs = [h["epoch"] for h in history]
    fig = Figure(figsize=(10, 4))
    left, right = fig.subplots(1, 2)
    left.plot(epochs, [h["train_loss"] for h in history], label="train")
    left.plot(epochs, [h["test_loss"] for h in history], label="test")
    left.set_xlabel("epoch")
    left.set_ylabel("loss")
    left.legend()
    right.plot(epochs, [100 * h["train_acc"] for h in history], label="train")
    right.plot(epochs, [100 * h["test_acc"] for h in history], label="test")
    right.set_xlabel("epoch")
    right.set_ylabel("accuracy (%)")
    right.legend()
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)

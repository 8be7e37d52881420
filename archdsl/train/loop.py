"""Training and evaluation of a compiled network, on one process or many (torchrun + DDP).

Checkpoints are self-contained (the ``.arch`` sources, overrides, model,
optimizer, scheduler, epoch, RNG state and history), written atomically by
rank 0 after every epoch with a SHA-256 of their contents, and loadable with
``torch.load(weights_only=True)``. Data order depends only on (seed, epoch),
so a run resumed after epoch k ends with the same weights as one that never
stopped. A resumed run checks the whole training state first
(:mod:`archdsl.train.state`); a larger ``epochs`` extends it, its schedule
then continuing as if the run had been planned that long from the start.

A run classifies or segments (:mod:`archdsl.train.tasks`); the loss is
cross-entropy either way (per pixel for segmentation), the accuracy counts
examples or pixels, and segmentation adds the test set's mean IoU.
"""

from __future__ import annotations

import json
import os
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler

from archdsl import api
from archdsl.checkpoint import remove_stale_temporaries
from archdsl.errors import ArchCheckpointError
from archdsl.train.data import SEGMENT, ArchDataError, Data, data_task, known_classes, load_data
from archdsl.train.interrupt import StopRequest, stop_at_safe_points
from archdsl.train.state import check_optimizer_state, check_scheduler_state, check_training, fail
from archdsl.train.tasks import AUTO, DEFAULT_DATA, check_task, confusion_matrix, mean_iou, pixel_accuracy, resolve_task

CHECKPOINT_NAME = "checkpoint.pt"
METRICS_NAME = "metrics.jsonl"
PLOT_NAME = "curves.png"


@dataclass
class TrainConfig:
    """Everything a training run depends on."""

    arch: str
    overrides: dict[str, Any] = field(default_factory=dict)
    data: str = ""  # "": digits to classify, shapes to segment
    task: str = AUTO  # "classify", "segment" or "auto" (from the network's output shape)
    epochs: int | None = None  # None: 10 for a new run, the checkpoint's for a resumed one (a larger one extends it)
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
    trust_modified: bool = False  # resume from a checkpoint whose contents do not match its hash, or that has none


@dataclass
class TrainResult:
    """The trained model (unwrapped), the per-epoch history and the notes reported on the way."""

    model: nn.Module
    history: list[dict[str, float]]
    out: Path
    notes: list[str] = field(default_factory=list)


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C during training; ``checkpoint`` is the file to resume from (None before the first epoch ended)."""

    def __init__(self, checkpoint: Path | None) -> None:
        super().__init__()
        self.checkpoint = checkpoint


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


def check_fit(graph, data: Data | None, spec: str | None = None, task: str = AUTO) -> str:
    """Fail before training when the network's output does not fit the task or the data; returns the task.

    The task is ``task`` unless that is ``"auto"``, else the one the network's output says
    (:mod:`archdsl.train.tasks`). With ``data`` None, check against what ``spec`` is known to be without
    reading it (its task, and the classes of digits, synthetic and shapes), so a mismatch is found before
    the images are resized; an empty ``spec`` stands for the task's default data (digits or shapes).
    """
    if len(graph.graph["inputs"]) != 1 or len(graph.graph["outputs"]) != 1:
        raise ArchDataError("training needs a network with one input and one output", None, code="E805")
    (source,) = graph.graph["inputs"]
    if graph.nodes[source]["args"].get("dtype") == "int":
        raise ArchDataError(
            f"the input `{source}` takes integer token ids, and `archdsl train` has only image and feature data",
            None,
            "train it from Python: archdsl.load(...) is a torch module like any other",
            code="E801",
        )
    if data is not None:
        task = resolve_task(graph, task, data.task)
        check_task(graph, task, data.task, data.num_classes, data.name)
        return task
    task = resolve_task(graph, task, data_task(spec))  # no spec: classify unless the output or `task` says so
    spec = spec or DEFAULT_DATA[task]
    check_task(graph, task, data_task(spec), known_classes(spec), spec)
    return task


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
    """Train ``config.arch`` on ``config.data``; returns the model and history (see the module docstring).

    Ctrl-C raises :class:`TrainingInterrupted`, which names the checkpoint to resume from.
    """
    env = Distributed(config.device)
    try:
        return _train(config, env, reporter)
    finally:
        env.close()


DEFAULT_EPOCHS = 10

# What a resumed run takes from the command line rather than from its checkpoint (and `epochs`, when given).
_NOT_RESTORED = ("resume", "stop_after", "device", "progress", "out", "trust_modified", "epochs")


class _Notes:
    """What the user should know (a resize, a stale file removed): told once on rank 0, kept for the result."""

    def __init__(self, reporter, main: bool) -> None:
        self.reporter, self.main, self.messages = reporter, main, []

    def __call__(self, message: str) -> None:
        self.messages.append(message)
        if self.main and hasattr(self.reporter, "note"):
            self.reporter.note(message)


def _train(config: TrainConfig, env: Distributed, reporter) -> TrainResult:
    note = _Notes(reporter, env.main)
    training = None
    if config.resume:
        # A resumed run is the same run: its data, schedule and optimizer come from the checkpoint.
        payload, training, planned = _resume(config, note)
        model = api.load_checkpoint(config.resume, payload)
        config.overrides = dict(model.meta["archdsl"]["overrides"])
        graph = api.graph_of_module(model)
    else:
        config.epochs = DEFAULT_EPOCHS if config.epochs is None else config.epochs
        built = api.build(config.arch, compile=False, params=config.overrides)
        graph = built.graph
    out = Path(config.out or os.path.join("runs", graph.graph["name"]))
    _check_run_folder(out)
    if training is not None and training["epoch"] >= config.epochs:
        note(
            f"nothing to train: {config.resume} has trained all {config.epochs} epochs of its run; "
            f"pass --epochs N with N > {config.epochs} to train further"
        )
        return TrainResult(model, list(training["history"]), out, note.messages)
    config.task = check_fit(graph, None, config.data, config.task)  # before reading: digits at 224x224 are a gigabyte
    config.data = config.data or DEFAULT_DATA[config.task]
    (source,), (output,) = graph.graph["inputs"], graph.graph["outputs"]
    data = load_data(
        config.data,
        graph.nodes[source]["shape"],
        synthetic_size=config.synthetic_size,
        output_shape=graph.nodes[output]["shape"],
    )
    if data.note:
        note(data.note)
    check_fit(graph, data, task=config.task)
    if hasattr(reporter, "set_task"):
        reporter.set_task(config.task)
    if training is None:
        model = built.compile(seed=config.seed, memory_efficient=config.memory_efficient).module
    model = model.to(env.device)
    if config.channels_last and env.device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    optimizer = _optimizer(model, config)
    scheduler = _schedule(optimizer, config)
    history: list[dict[str, float]] = []
    start = 0
    if training is not None:
        scheduler = _restore(training, optimizer, scheduler, config, planned)
        history = list(training["history"])
        start = training["epoch"]
    else:
        torch.manual_seed(config.seed)
    wrapped = nn.parallel.DistributedDataParallel(model) if env.world > 1 else model
    sampler = DistributedSampler(data.train, num_replicas=env.world, rank=env.rank, shuffle=True, seed=config.seed)
    loader = DataLoader(data.train, batch_size=config.batch_size, sampler=sampler, drop_last=False)
    test_loader = DataLoader(data.test, batch_size=256)
    criterion = nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)
    if env.main:
        _make_run_folder(out)
        _keep_metrics(out / METRICS_NAME, start)
    last = config.epochs if not config.stop_after else min(config.epochs, start + config.stop_after)
    saved = Path(config.resume) if config.resume else None
    try:
        with stop_at_safe_points() as stop:
            for epoch in range(start, last):
                stop.check()
                sampler.set_epoch(epoch)
                began = time.perf_counter()
                lr = optimizer.param_groups[0]["lr"]  # the rate this epoch trains at
                train_loss, train_acc, seen, train_seconds = _epoch(
                    wrapped, loader, optimizer, criterion, config, env, epoch, reporter, stop
                )
                if env.world > 1:
                    # DDP's forward shares rank 0's buffers; after the last step they differ again until shared.
                    for buffer in model.buffers():
                        dist.broadcast(buffer, src=0)
                scheduler.step()
                if config.task == SEGMENT:
                    test_loss, test_acc, test_miou = evaluate_segmentation(
                        model, test_loader, env.device, data.num_classes, criterion
                    )
                else:
                    test_loss, test_acc = evaluate_model(model, test_loader, env.device, criterion)
                seconds = time.perf_counter() - began
                record = {
                    "epoch": epoch + 1,
                    "train_loss": round(train_loss, 6),
                    "train_acc": round(train_acc, 6),
                    "test_loss": round(test_loss, 6),
                    "test_acc": round(test_acc, 6),
                    **({"test_miou": round(test_miou, 6)} if config.task == SEGMENT else {}),
                    "lr": lr,
                    "images_per_s": round(seen / max(1e-9, train_seconds), 1),
                    "seconds": round(seconds, 3),
                }
                history.append(record)
                if env.main:
                    _append_metrics(out / METRICS_NAME, record)
                    for stale in remove_stale_temporaries(out / CHECKPOINT_NAME):
                        note(f"removed {stale}, left behind by a save that was interrupted")
                    save_training_checkpoint(
                        out / CHECKPOINT_NAME, model, optimizer, scheduler, epoch + 1, history, config
                    )
                    saved = out / CHECKPOINT_NAME
                    plot_history(history, out / PLOT_NAME, title=graph.graph["name"])
                    if reporter is not None:
                        reporter.epoch_done(record, config.epochs)
    except KeyboardInterrupt:
        raise TrainingInterrupted(saved) from None
    return TrainResult(model, history, out, note.messages)


def _resume(config: TrainConfig, note) -> tuple[dict, dict, int]:
    """Read and check ``config.resume`` and take the run's settings from it; returns the payload, the training
    state and the number of epochs the run was planned with."""
    path = config.resume
    payload = api.read_checkpoint(path, verify=not config.trust_modified)
    if "training" not in payload:
        raise ArchDataError(f"{path} is not a training checkpoint (nothing to resume)", None, code="E807")
    training = check_training(payload, path)
    saved_task = training["config"].get("task")
    if config.task != AUTO and saved_task is not None and config.task != saved_task:
        raise ArchDataError(
            f"cannot resume from {path}: `training.config.task` is {saved_task!r}, but --task {config.task} was "
            "asked for",
            None,
            f"leave --task out to go on with the run's {saved_task!r}, or start a new run to {config.task}",
            code="E807",
        )
    for key, value in training["config"].items():
        if key not in _NOT_RESTORED and hasattr(config, key):
            setattr(config, key, value)
    config.out = config.out or str(Path(path).parent)
    planned, done = training["config"]["epochs"], training["epoch"]
    asked, config.epochs = config.epochs, planned if config.epochs is None else config.epochs
    if config.epochs < done:
        raise ArchDataError(
            f"{path} has trained {done} epochs already; --epochs {asked} cannot shorten the run",
            None,
            f"pass --epochs N with N > {done} to train further"
            + (f", or leave --epochs out to finish the planned {planned}" if done < planned else ""),
            code="E807",
        )
    if done < config.epochs != planned:
        note(
            f"the run now has {config.epochs} epochs instead of {planned}: from epoch {done + 1} on, the "
            f"{config.schedule} schedule gives the rates of a run planned for {config.epochs} epochs"
        )
    return payload, training, planned


def _restore(training: dict, optimizer, scheduler, config: TrainConfig, planned: int):
    """Load the checked optimizer, scheduler and RNG states; returns the scheduler to train with.

    When the run's length changed, the saved schedule is replaced by a fresh
    one for the new length, stepped over the epochs already trained.
    """
    path = config.resume
    check_optimizer_state(training["optimizer"], optimizer, path)
    rescheduled = config.epochs != planned
    if not rescheduled:
        check_scheduler_state(training["scheduler"], scheduler, path)
    for field_name, load in (
        ("training.optimizer", lambda: optimizer.load_state_dict(training["optimizer"])),
        ("training.scheduler", None if rescheduled else lambda: scheduler.load_state_dict(training["scheduler"])),
        ("training.rng", lambda: torch.set_rng_state(training["rng"])),
        ("training.cuda_rng", lambda: _set_cuda_rng(training.get("cuda_rng") or [])),
    ):
        try:
            if load is not None:
                load()
        except (ValueError, TypeError, KeyError, IndexError, RuntimeError) as err:
            raise fail(path, field_name, f"cannot be loaded: {err}") from None
    return _fast_forward(optimizer, config, training["epoch"]) if rescheduled else scheduler


def _fast_forward(optimizer, config: TrainConfig, epochs: int):
    """A fresh schedule for ``config.epochs`` epochs, stepped ``epochs`` times: the rate is then the one a run
    planned that long from the start trains its next epoch at."""
    for group in optimizer.param_groups:
        group["lr"] = group["initial_lr"]
    scheduler = _schedule(optimizer, config)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # stepping a schedule without optimizer steps is the point
        for _ in range(epochs):
            scheduler.step()
    return scheduler


def _set_cuda_rng(states: list[torch.Tensor]) -> None:
    if torch.cuda.is_available():
        for index, state in enumerate(states[: torch.cuda.device_count()]):
            torch.cuda.set_rng_state(state, index)


def _check_run_folder(out: Path) -> None:
    """E808 before any work when ``out`` cannot be the run folder: a file, or under a folder it cannot be made in."""
    if out.exists() and not out.is_dir():
        raise ArchDataError(
            f"cannot use {out} as the run folder: it is a file",
            None,
            "--out names a folder (it holds checkpoint.pt, metrics.jsonl and curves.png); choose another",
            code="E808",
        )
    parent = out
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not out.exists() and not (parent.is_dir() and os.access(parent, os.W_OK | os.X_OK)):
        reason = f"{parent} is not writable" if parent.is_dir() else f"{parent} is a file, not a folder"
        raise ArchDataError(f"cannot make the run folder {out}: {reason}", None, "choose another --out", code="E808")


def _make_run_folder(out: Path) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ArchDataError(
            f"cannot make the run folder {out}: {err.strerror or err}", None, "choose another --out", code="E808"
        ) from None


def _keep_metrics(path: Path, epochs: int) -> None:
    """Keep the metrics of the first ``epochs`` epochs only (a fresh run starts an empty file)."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines(keepends=True)[:epochs] if path.exists() else []
        path.write_text("".join(lines), encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        reason = getattr(err, "strerror", None) or err
        raise ArchDataError(f"cannot write {path}: {reason}", None, code="E808") from None


def _append_metrics(path: Path, record: dict) -> None:
    try:
        with open(path, "a", encoding="utf-8") as metrics:
            metrics.write(json.dumps(record) + "\n")
    except OSError as err:
        raise ArchDataError(f"cannot write {path}: {err.strerror or err}", None, code="E808") from None


# How much an auxiliary classifier's loss counts beside the main one, as in the GoogLeNet paper (Section 5)
AUX_WEIGHT = 0.3


def _as_outputs(result) -> tuple[torch.Tensor, ...]:
    """A network's result as a tuple: its main output first, then any returned in training mode only."""
    return tuple(result) if isinstance(result, (tuple, list)) else (result,)


def _epoch(
    model, loader, optimizer, criterion, config, env, epoch, reporter, stop: StopRequest | None = None
) -> tuple[float, float, int, float]:
    """One pass over the training data; returns mean loss, accuracy (of examples or pixels) and samples over all
    ranks, and seconds."""
    model.train()
    total_loss, correct, counted, seen = 0.0, 0, 0, 0
    autocast = env.device.type == "cuda" and config.amp
    began = time.perf_counter()
    if reporter is not None and env.main:
        reporter.epoch_start(epoch + 1, config.epochs, len(loader))
    for inputs, labels in loader:
        if stop is not None:
            stop.check()
        inputs, labels = inputs.to(env.device, non_blocking=True), labels.to(env.device, non_blocking=True)
        if config.channels_last and env.device.type == "cuda" and inputs.dim() == 4:
            inputs = inputs.contiguous(memory_format=torch.channels_last)
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device_type=env.device.type, dtype=torch.bfloat16, enabled=autocast):
            logits, *auxiliary = _as_outputs(model(inputs))
            loss = criterion(logits.float(), labels)
            for aux in auxiliary:  # `output ... when training`: auxiliary classifiers (GoogLeNet, Inception-v3)
                loss = loss + AUX_WEIGHT * criterion(aux.float(), labels)
        loss.backward()
        optimizer.step()
        batch = labels.shape[0]
        total_loss += loss.item() * batch
        correct += (logits.argmax(1) == labels).sum().item()
        counted += labels.numel()  # one label per example, or per pixel
        seen += batch
        if reporter is not None and env.main:
            rate = seen * env.world / max(1e-9, time.perf_counter() - began)
            reporter.step(total_loss / seen, correct / counted, rate)
    seconds = time.perf_counter() - began
    if env.world > 1:
        sums = torch.tensor([total_loss, correct, counted, seen], dtype=torch.float64, device=env.device)
        dist.all_reduce(sums)
        total_loss, correct, counted, seen = (
            sums[0].item(),
            int(sums[1].item()),
            int(sums[2].item()),
            int(sums[3].item()),
        )
    return total_loss / max(1, seen), correct / max(1, counted), seen, seconds


@torch.no_grad()
def evaluate_model(model: nn.Module, loader: DataLoader, device, criterion=None) -> tuple[float, float]:
    """Mean loss and accuracy of a classifier ``model`` over ``loader`` in eval mode."""
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


@torch.no_grad()
def evaluate_segmentation(
    model: nn.Module, loader: DataLoader, device, num_classes: int, criterion=None
) -> tuple[float, float, float]:
    """Mean loss (per pixel, averaged over images), pixel accuracy and mean IoU of ``model`` over ``loader``.

    Both scores come from one confusion matrix over all the pixels (:mod:`archdsl.train.tasks`).
    """
    criterion = criterion or nn.CrossEntropyLoss()
    model.eval()
    total_loss, seen = 0.0, 0
    confusion = torch.zeros(num_classes, num_classes, dtype=torch.long, device=device)
    for inputs, masks in loader:
        inputs, masks = inputs.to(device), masks.to(device)
        logits = model(inputs)
        total_loss += criterion(logits.float(), masks).item() * masks.shape[0]
        confusion += confusion_matrix(logits.argmax(1), masks, num_classes)
        seen += masks.shape[0]
    return total_loss / max(1, seen), pixel_accuracy(confusion), mean_iou(confusion)


def evaluate(
    checkpoint: str,
    data_spec: str = "",
    device: str = "auto",
    batch_size: int = 256,
    *,
    network: str | None = None,
    verify: bool = True,
    task: str = AUTO,
) -> dict[str, Any]:
    """Accuracy and loss of a checkpoint on a dataset's test split (and its mean IoU when it segments).

    ``data_spec`` "" is the task's default data (digits or shapes); the task is ``task`` or the one the
    network's output says. ``network``: the name the checkpoint's network must have (E609 before any
    evaluation otherwise). ``verify=False`` reads a checkpoint whose contents do not match its hash.
    """
    target = Distributed(device).device if int(os.environ.get("WORLD_SIZE", "1")) == 1 else torch.device("cpu")
    model = api.load_checkpoint(checkpoint, verify=verify)
    graph = api.graph_of_module(model)
    if network is not None and graph.graph["name"] != network:
        raise ArchCheckpointError(
            f"{checkpoint} holds the network `{graph.graph['name']}`, not `{network}`",
            None,
            f"evaluate it as `{graph.graph['name']}`, or pass the checkpoint of `{network}`",
            code="E609",
        )
    task = check_fit(graph, None, data_spec, task)
    data_spec = data_spec or DEFAULT_DATA[task]
    (source,), (output,) = graph.graph["inputs"], graph.graph["outputs"]
    data = load_data(data_spec, graph.nodes[source]["shape"], output_shape=graph.nodes[output]["shape"])
    check_fit(graph, data, task=task)
    loader = DataLoader(data.test, batch_size=batch_size)
    scores: dict[str, Any] = {}
    if task == SEGMENT:
        loss, acc, scores["test_miou"] = evaluate_segmentation(model.to(target), loader, target, data.num_classes)
    else:
        loss, acc = evaluate_model(model.to(target), loader, target)
    return {
        "task": task,
        "data": data_spec,
        "test_loss": loss,
        "test_acc": acc,
        **scores,
        "samples": len(data.test),
        "network": graph.graph["name"],
        "overrides": dict(model.meta["archdsl"]["overrides"]),
        "note": data.note,
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


def history_figure(history: list[dict[str, float]], title: str = ""):
    """Loss (on a logarithmic axis: the first epoch's loss may be 50 times the rest) and accuracy, train and test.

    A segmentation run's accuracy is pixel accuracy, drawn beside the test set's mean IoU.
    """
    from matplotlib.figure import Figure

    epochs = [h["epoch"] for h in history]
    fig = Figure(figsize=(10, 4))
    left, right = fig.subplots(1, 2)
    left.plot(epochs, [h["train_loss"] for h in history], label="train", marker=".")
    left.plot(epochs, [h["test_loss"] for h in history], label="test", marker=".")
    left.set_yscale("log")
    left.set_xlabel("epoch")
    left.set_ylabel("loss (log scale)")
    left.legend()
    segments = bool(history) and all("test_miou" in h for h in history)
    what = "pixel accuracy" if segments else "accuracy"
    right.plot(
        epochs, [100 * h["train_acc"] for h in history], label=f"train {what}" if segments else "train", marker="."
    )
    right.plot(epochs, [100 * h["test_acc"] for h in history], label=f"test {what}" if segments else "test", marker=".")
    if segments:
        right.plot(epochs, [100 * h["test_miou"] for h in history], label="test mean IoU", marker="s", linestyle="--")
    right.set_xlabel("epoch")
    right.set_ylabel("pixel accuracy and mean IoU (%)" if segments else "accuracy (%)")
    right.legend()
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_history(history: list[dict[str, float]], path: Path, title: str = "") -> None:
    """Write :func:`history_figure` as a PNG, atomically (no pyplot: the caller's backend is left alone)."""
    target = Path(path)
    tmp = target.with_name(f".{target.name}.tmp")
    try:
        history_figure(history, title).savefig(tmp, dpi=100, format="png")
        os.replace(tmp, target)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        raise ArchDataError(f"cannot write {target}: {err.strerror or err}", None, code="E808") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise

"""The training state a resumable checkpoint holds, checked field by field before any of it is used.

A checkpoint's hash (see :mod:`archdsl.checkpoint`) finds damage and edits,
but whoever edits a file can write a new hash, and ``--trust-modified``
skips it. So everything ``--resume`` reads is checked here first: the type
and range of every config field, the epoch, the history, the RNG states,
and the optimizer's and scheduler's state dicts against those of the
optimizer and scheduler the run builds. Every failure is E807, naming the
field.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch

from archdsl.train.data import ArchDataError

Check = Callable[[Any], "str | None"]

MAX_EPOCHS = 1_000_000
MAX_BATCH = 1 << 24
MAX_SYNTHETIC = 1_000_000
HISTORY_KEYS = ("epoch", "train_loss", "train_acc", "test_loss", "test_acc", "lr")


def show(value: Any) -> str:
    """A short description of ``value`` for a message (never a huge repr)."""
    if isinstance(value, torch.Tensor):
        layout = "" if value.layout == torch.strided else f"{str(value.layout).removeprefix('torch.')} "
        return f"a {layout}{str(value.dtype).removeprefix('torch.')} tensor of shape {list(value.shape)}"
    if isinstance(value, bool) or value is None:
        return repr(value)
    if isinstance(value, int):
        return repr(value) if value.bit_length() <= 64 else f"an integer of {value.bit_length()} bits"
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, str):
        return repr(value) if len(value) <= 40 else repr(value[:40]) + "..."
    if isinstance(value, list | tuple | dict):
        return f"a {type(value).__name__} of {len(value)} items"
    return f"a {type(value).__name__}"


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def integer(low: int, high: int) -> Check:
    def check(value: Any) -> str | None:
        if not _is_int(value) or not low <= value <= high:
            return f"must be an integer from {low:,} to {high:,}, not {show(value)}"
        return None

    return check


def number(low: float, high: float = math.inf, *, above: bool = False, optional: bool = False) -> Check:
    """A finite int or float in [low, high] (or (low, high] with ``above``); None too when ``optional``."""

    def check(value: Any) -> str | None:
        if value is None and optional:
            return None
        fits = _is_number(value) and math.isfinite(value) and (value > low if above else value >= low)
        if not fits or value > high:
            if high != math.inf:
                bound = f"from {low} to {high}"
            else:
                bound = f"above {low}" if above else f"of at least {low}"
            return f"must be a finite number {bound}{', or None' if optional else ''}, not {show(value)}"
        return None

    return check


def choice(*options: str) -> Check:
    def check(value: Any) -> str | None:
        if value not in options or not isinstance(value, str):
            return f"must be one of {', '.join(options)}, not {show(value)}"
        return None

    return check


def boolean(value: Any) -> str | None:
    return None if isinstance(value, bool) else f"must be true or false, not {show(value)}"


def text(value: Any) -> str | None:
    return None if isinstance(value, str) else f"must be a string, not {show(value)}"


def data_spec(value: Any) -> str | None:
    kinds = ("digits", "synthetic", "imagefolder", "cifar10", "shapes")
    if not isinstance(value, str) or value.partition(":")[0] not in kinds:
        return f"must be digits, synthetic, imagefolder:PATH, cifar10:PATH or shapes, not {show(value)}"
    return None


def key_name(key: Any) -> str:
    """A dict key as it appears in a field's name."""
    return key if isinstance(key, str) and len(key) <= 40 else show(key)


# Every field of TrainConfig but `overrides`, which a checkpoint stores with the architecture.
CONFIG: dict[str, Check] = {
    "arch": text,
    "data": data_spec,
    "task": choice("classify", "segment"),  # absent from older checkpoints: taken from the output again
    "epochs": integer(1, MAX_EPOCHS),
    "batch_size": integer(1, MAX_BATCH),
    "optimizer": choice("sgd", "adamw"),
    "lr": number(0, above=True, optional=True),
    "momentum": number(0, 1),
    "weight_decay": number(0),
    "schedule": choice("cosine", "step", "none"),
    "warmup": integer(0, MAX_EPOCHS),
    "label_smoothing": number(0, 1),
    "seed": integer(-(1 << 63), (1 << 63) - 1 - MAX_EPOCHS),
    "device": choice("auto", "cpu", "cuda"),
    "amp": boolean,
    "channels_last": boolean,
    "memory_efficient": boolean,
    "out": text,
    "resume": text,
    "progress": boolean,
    "synthetic_size": integer(1, MAX_SYNTHETIC),
    "stop_after": integer(0, MAX_EPOCHS),
    "trust_modified": boolean,
}


def fail(path: Any, field: str, problem: str) -> ArchDataError:
    """The E807 for a bad field of a checkpoint's training state."""
    return ArchDataError(
        f"cannot resume from {path}: `{field}` {problem}",
        None,
        "the training state was edited or damaged; resume from another checkpoint or start a new run",
        code="E807",
    )


def check_training(payload: dict[str, Any], path: Any) -> dict[str, Any]:
    """The checked ``training`` entry of ``payload``: config, epoch, history and RNG states (E807 otherwise)."""
    training = payload.get("training")
    if not isinstance(training, dict):
        raise fail(path, "training", f"must be a dict, not {show(training)}")
    for key in ("config", "epoch", "history", "rng", "optimizer", "scheduler"):
        if key not in training:
            raise fail(path, f"training.{key}", "is missing")
    config = training["config"]
    if not isinstance(config, dict):
        raise fail(path, "training.config", f"must be a dict, not {show(config)}")
    for key, value in config.items():
        if key not in CONFIG:
            raise fail(path, f"training.config.{key_name(key)}", "is not a training option")
        problem = CONFIG[key](value)
        if problem:
            raise fail(path, f"training.config.{key}", problem)
    if "epochs" not in config:
        raise fail(path, "training.config.epochs", "is missing")
    epoch = training["epoch"]
    problem = integer(1, config["epochs"])(epoch)
    if problem:
        raise fail(path, "training.epoch", problem + f" (the run has {config['epochs']} epochs)")
    _check_history(training["history"], epoch, path)
    _check_rng(training["rng"], "training.rng", path)
    cuda = training.get("cuda_rng", [])
    if not isinstance(cuda, list):
        raise fail(path, "training.cuda_rng", f"must be a list of RNG states, not {show(cuda)}")
    for index, state in enumerate(cuda):
        _check_rng(state, f"training.cuda_rng[{index}]", path, size=None)
    return training


def _check_history(history: Any, epoch: int, path: Any) -> None:
    if not isinstance(history, list) or len(history) != epoch:
        raise fail(path, "training.history", f"must be a list of {epoch} records (one per epoch), not {show(history)}")
    for index, record in enumerate(history):
        field = f"training.history[{index}]"
        if not isinstance(record, dict):
            raise fail(path, field, f"must be a dict of numbers, not {show(record)}")
        for key in HISTORY_KEYS:
            if key not in record:
                raise fail(path, f"{field}.{key}", "is missing")
        for key, value in record.items():
            if not isinstance(key, str) or not _is_number(value):
                raise fail(path, f"{field}.{key_name(key)}", f"must be a number, not {show(value)}")


def _check_rng(state: Any, field: str, path: Any, size: int | None = -1) -> None:
    """An RNG state: a dense 1-D uint8 tensor (of the CPU generator's size unless ``size`` is None)."""
    expected = torch.get_rng_state().numel() if size == -1 else size
    fits = (
        isinstance(state, torch.Tensor)
        and state.layout == torch.strided
        and not state.is_quantized
        and not state.is_meta
        and state.dtype == torch.uint8
        and state.dim() == 1
        and (expected is None or state.numel() == expected)
    )
    if not fits:
        wanted = "a uint8 tensor" + (f" of shape [{expected}]" if expected is not None else " of one dimension")
        raise fail(path, field, f"must be {wanted}, not {show(state)}")


# Ranges of optimizer and scheduler settings beyond "a finite number >= 0".
SETTINGS: dict[str, Check] = {
    "momentum": number(0, 1),
    "dampening": number(0, 1),
    "betas": number(0, 1),
    "eps": number(0, above=True),
    "T_max": integer(1, MAX_EPOCHS),
    "factor": number(0, 1),
    "total_iters": integer(0, MAX_EPOCHS),
    "last_epoch": integer(-1, MAX_EPOCHS),
    "_step_count": integer(0, MAX_EPOCHS + 1),
}


def check_like(saved: Any, template: Any, field: str, path: Any) -> None:
    """``saved`` has the shape of ``template`` (the state dict of a freshly built optimizer or scheduler).

    Dicts have the same keys, lists and tuples the same length, and each
    value the template's kind: a bool, a finite number (an integer where the
    template has one), a string, None; known settings also their range.
    """
    stack = [(saved, template, field)]
    while stack:
        value, like, where = stack.pop()
        name = where.rsplit(".", 1)[-1].split("[", 1)[0]  # `betas[1]` is checked as `betas`
        if isinstance(like, dict):
            if not isinstance(value, dict):
                raise fail(path, where, f"must be a dict, not {show(value)}")
            missing = [key for key in like if key not in value]
            if missing:
                raise fail(path, f"{where}.{missing[0]}", "is missing")
            extra = [key for key in value if key not in like]
            if extra:
                raise fail(path, f"{where}.{key_name(extra[0])}", "is not part of this state")
            stack.extend((value[key], like[key], f"{where}.{key}") for key in like)
        elif isinstance(like, list | tuple):
            if not isinstance(value, list | tuple) or len(value) != len(like):
                raise fail(path, where, f"must be a list of {len(like)} items, not {show(value)}")
            stack.extend(
                (item, model, f"{where}[{i}]") for i, (item, model) in enumerate(zip(value, like, strict=True))
            )
        elif isinstance(like, bool) or like is None:
            if not (value is None or isinstance(value, bool)):
                raise fail(path, where, f"must be true, false or None, not {show(value)}")
        elif isinstance(like, str):
            problem = text(value)
            if problem:
                raise fail(path, where, problem)
        elif _is_number(like):
            check = SETTINGS.get(name) or (integer(-1, MAX_EPOCHS) if _is_int(like) else number(0))
            problem = check(value)
            if problem:
                raise fail(path, where, problem)
        elif isinstance(like, torch.Tensor):
            _check_tensor(value, like, where, path)
        else:  # pragma: no cover - torch's state dicts hold nothing else
            raise fail(path, where, f"holds {show(value)}, which archdsl cannot check")


def _check_tensor(value: Any, like: torch.Tensor, where: str, path: Any) -> None:
    fits = (
        isinstance(value, torch.Tensor)
        and value.layout == torch.strided
        and not value.is_quantized
        and not value.is_meta
        and value.is_floating_point() == like.is_floating_point()
        and tuple(value.shape) == tuple(like.shape)
    )
    if not fits:
        raise fail(
            path,
            where,
            f"must be a dense {str(like.dtype).removeprefix('torch.')} tensor of shape "
            f"{list(like.shape)}, not {show(value)}",
        )


def check_optimizer_state(saved: Any, optimizer: torch.optim.Optimizer, path: Any) -> None:
    """``saved`` fits ``optimizer``: the same groups and settings, and per-parameter state of each parameter's shape."""
    template = optimizer.state_dict()
    if not isinstance(saved, dict) or not isinstance(saved.get("state"), dict):
        raise fail(path, "training.optimizer", f"must be an optimizer state dict, not {show(saved)}")
    check_like(saved.get("param_groups"), template["param_groups"], "training.optimizer.param_groups", path)
    params = {
        index: param
        for group, saved_group in zip(optimizer.param_groups, template["param_groups"], strict=True)
        for index, param in zip(saved_group["params"], group["params"], strict=True)
    }
    for group_index, group in enumerate(saved["param_groups"]):
        if list(group["params"]) != list(template["param_groups"][group_index]["params"]):
            raise fail(
                path,
                f"training.optimizer.param_groups[{group_index}].params",
                "does not list this network's parameters",
            )
    for key, state in saved["state"].items():
        where = f"training.optimizer.state[{show(key)}]"
        if not _is_int(key) or key not in params:
            raise fail(path, where, "belongs to no parameter of this network")
        if not isinstance(state, dict):
            raise fail(path, where, f"must be a dict, not {show(state)}")
        for name, value in state.items():
            if not isinstance(name, str):
                raise fail(path, f"{where}.{key_name(name)}", "is not a state name")
            if name == "step":
                ok = (_is_number(value) and math.isfinite(value) and value >= 0) or (
                    isinstance(value, torch.Tensor)
                    and value.layout == torch.strided
                    and value.numel() == 1
                    and not value.is_quantized
                    and not value.is_meta
                    and value.dtype.is_floating_point
                )
                if not ok:
                    raise fail(path, f"{where}.step", f"must be a step count, not {show(value)}")
            elif value is not None:
                _check_tensor(value, params[key].detach(), f"{where}.{name}", path)


def check_scheduler_state(saved: Any, scheduler: Any, path: Any) -> None:
    """``saved`` has the shape of ``scheduler``'s own state dict, every number in range."""
    check_like(saved, scheduler.state_dict(), "training.scheduler", path)

"""What a run learns, classification or segmentation, and how it is scored.

The task comes from the network's output, unless it is asked for
(``--task``): an output of [K] scores K classes per example (classify); an
output of [K, H, W], one logit map per class at the input's height and width
or smaller (a U-Net with valid convolutions sees only the centre of its
input), labels every pixel (segment). The data must be for the same task and
have K classes; :func:`check_task` says which of the three is wrong and, as
the E805 of :func:`archdsl.train.loop.check_fit`, points at the network's
output.

Segmentation is scored on a confusion matrix over all the test pixels: pixel
accuracy is the share of pixels labelled right; the IoU of a class is
TP / (TP + FP + FN), and the mean IoU averages it over the classes present
in the target or the prediction (a class absent from both is skipped, not
counted as 0 or 1).
"""

from __future__ import annotations

import torch

from archdsl.errors import Label
from archdsl.train.data import CLASSIFY, SEGMENT, ArchDataError

AUTO = "auto"
TASKS = (CLASSIFY, SEGMENT)
DEFAULT_DATA = {CLASSIFY: "digits", SEGMENT: "shapes"}


def output_task(output_shape: tuple[int, ...], input_shape: tuple[int, ...]) -> str | None:
    """:data:`CLASSIFY` for an output [K]; :data:`SEGMENT` for [K, h, w] within an image input's size; else None."""
    if len(output_shape) == 1:
        return CLASSIFY
    if len(output_shape) == 3 and len(input_shape) == 3:
        if all(out <= size for out, size in zip(output_shape[1:], input_shape[1:], strict=True)):
            return SEGMENT
    return None


def resolve_task(graph, asked: str, data_task: str) -> str:
    """The run's task: ``asked`` unless it is ``"auto"``, else the one the output says, else ``data_task``.

    An ``asked`` task that the output contradicts is E805; one that is no task at all, E806.
    """
    if asked not in (AUTO, *TASKS):
        raise ArchDataError(f"unknown task `{asked}`", None, "use classify, segment or auto", code="E806")
    output_shape, input_shape = _shapes(graph)
    says = output_task(output_shape, input_shape)
    if asked == AUTO:
        return says or data_task
    if says is not None and says != asked:
        raise _fit_error(
            graph,
            f"`--task {asked}` needs {_wanted(asked, None, input_shape)}, but {_has(output_shape)}",
            f"leave --task out to {says} (the network's output says so)",
        )
    return asked


def check_task(graph, task: str, data_task: str, num_classes: int | None, name: str) -> None:
    """E805 unless the data ``name`` is for ``task`` and the output fits ``task`` and ``num_classes``."""
    output_shape, input_shape = _shapes(graph)
    if data_task != task:
        kind = "one label per pixel (segmentation)" if data_task == SEGMENT else "one label per image (classification)"
        if output_task(output_shape, input_shape) == task:
            purpose = f"{_has(output_shape)}: it {'segments' if task == SEGMENT else 'classifies'}"
        else:
            purpose = f"`--task {task}` was asked for"
        raise _fit_error(
            graph,
            f"`{name}` has {kind}, but {purpose}",
            "use --data shapes (generated shapes and their masks)"
            if task == SEGMENT
            else "use --data digits, synthetic, imagefolder:PATH or cifar10:PATH",
        )
    if task == CLASSIFY:
        if num_classes is not None and tuple(output_shape) != (num_classes,):
            hint = (
                f"add `-p num_classes={num_classes}`"
                if "num_classes" in graph.graph["params"]
                else f"make the network output {num_classes} values"
            )
            raise _fit_error(
                graph, f"the network outputs {list(output_shape)} but `{name}` has {num_classes} classes", hint
            )
        return
    if output_task(output_shape, input_shape) != SEGMENT:
        raise _fit_error(
            graph,
            f"segmenting `{name}` needs {_wanted(SEGMENT, num_classes, input_shape)}, but {_has(output_shape)}",
            "end the network in conv(K, k=1) on a feature map of the input's size",
        )
    if num_classes is not None and output_shape[0] != num_classes:
        hint = (
            f"add `-p num_classes={num_classes}`"
            if "num_classes" in graph.graph["params"]
            else f"make the network output {num_classes} maps"
        )
        raise _fit_error(
            graph, f"the network outputs {list(output_shape)} but `{name}` has {num_classes} classes per pixel", hint
        )


def confusion_matrix(predictions: torch.Tensor, targets: torch.Tensor, num_classes: int) -> torch.Tensor:
    """The (num_classes, num_classes) int64 counts of (target, predicted) class pairs: rows are the targets."""
    pairs = targets.reshape(-1).long() * num_classes + predictions.reshape(-1).long()
    return torch.bincount(pairs, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def pixel_accuracy(confusion: torch.Tensor) -> float:
    """The share of pixels whose predicted class is the target's (0 for no pixels)."""
    total = confusion.sum().item()
    return confusion.diagonal().sum().item() / total if total else 0.0


def mean_iou(confusion: torch.Tensor) -> float:
    """The mean over classes of TP / (TP + FP + FN), skipping classes absent from both target and prediction."""
    hits = confusion.diagonal().double()
    union = confusion.sum(0).double() + confusion.sum(1).double() - hits
    present = union > 0
    return (hits[present] / union[present]).mean().item() if present.any() else 0.0


def _shapes(graph) -> tuple[tuple[int, ...], tuple[int, ...]]:
    (source,), (output,) = graph.graph["inputs"], graph.graph["outputs"]
    return tuple(graph.nodes[output]["shape"]), tuple(graph.nodes[source]["shape"])


def _wanted(task: str, num_classes: int | None, input_shape: tuple[int, ...]) -> str:
    classes = "K" if num_classes is None else str(num_classes)
    if task == CLASSIFY:
        return f"one score per class ([{classes}])"
    if len(input_shape) != 3:
        return f"an image input [C, H, W] and one logit map per class ([{classes}, H, W])"
    height, width = input_shape[1:]
    return f"one logit map per class at the input's {height}x{width} ([{classes}, {height}, {width}])"


def _has(output_shape: tuple[int, ...]) -> str:
    if len(output_shape) == 1:
        return f"the network outputs {list(output_shape)}, one score per class"
    if len(output_shape) == 3:
        return f"the network outputs {list(output_shape)}, one map per class"
    return f"the network outputs {list(output_shape)}"


def _fit_error(graph, message: str, hint: str | None = None) -> ArchDataError:
    """An E805 pointing at the network's output, with its input shown beside it."""
    (source,), (output,) = graph.graph["inputs"], graph.graph["outputs"]
    span, input_span = graph.nodes[output].get("span"), graph.nodes[source].get("span")
    labels = [Label(input_span, f"the input `{source}`: {list(graph.nodes[source]['shape'])}")] if input_span else []
    return ArchDataError(message, span, hint, code="E805", labels=labels, sources=graph.graph.get("sources"))

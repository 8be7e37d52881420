"""A live progress bar per epoch (loss, accuracy, images/s) and a one-line summary after it.

A segmentation run's accuracy is pixel accuracy, and its summary adds the test set's mean IoU.
"""

from __future__ import annotations

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn


class RichReporter:
    """Reports training progress on a Rich console (a live bar only on a terminal)."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.progress: Progress | None = None
        self.task = None
        self.accuracy = "acc"  # what the accuracy is called: "pixel acc" when the run segments

    def set_task(self, task: str) -> None:
        """Name the scores of ``task`` ("classify" or "segment")."""
        self.accuracy = "pixel acc" if task == "segment" else "acc"

    def epoch_start(self, epoch: int, epochs: int, batches: int) -> None:
        self.progress = Progress(
            TextColumn(f"epoch {epoch}/{epochs}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn(
                f"loss {{task.fields[loss]:.4f}}  {self.accuracy} {{task.fields[acc]:.2%}}  "
                "{task.fields[rate]:.0f} img/s"
            ),
            TimeElapsedColumn(),
            console=self.console,
            transient=True,
            disable=not self.console.is_terminal,
        )
        self.progress.start()
        self.task = self.progress.add_task("train", total=batches, loss=0.0, acc=0.0, rate=0.0)

    def step(self, loss: float, acc: float, rate: float) -> None:
        if self.progress is not None:
            self.progress.update(self.task, advance=1, loss=loss, acc=acc, rate=rate)

    def note(self, message: str) -> None:
        """Something the user should know, on a line of its own."""
        self.console.print(f"note: {message}", markup=False, highlight=False)

    def close(self) -> None:
        """Stop the live bar (after Ctrl-C, or before anything else is printed)."""
        if self.progress is not None:
            self.progress.stop()
            self.progress = None

    def epoch_done(self, record: dict, epochs: int) -> None:
        self.close()
        iou = f" mIoU {record['test_miou']:.2%}" if "test_miou" in record else ""
        self.console.print(
            f"epoch {record['epoch']:>3}/{epochs}  train loss {record['train_loss']:.4f} "
            f"{self.accuracy} {record['train_acc']:.2%}  test loss {record['test_loss']:.4f} "
            f"{self.accuracy} {record['test_acc']:.2%}{iou}"
            f"  lr {record['lr']:.4g}  {record['images_per_s']:.0f} img/s  {record['seconds']:.1f} s"
        )

"""Training compiled networks: data, the loop (single process or DDP), checkpoints, progress."""

from archdsl.train.data import ArchDataError, Data, load_data
from archdsl.train.loop import (
    TrainConfig,
    TrainingInterrupted,
    TrainResult,
    evaluate,
    history_figure,
    plot_history,
    train,
)

__all__ = [
    "ArchDataError",
    "Data",
    "TrainConfig",
    "TrainResult",
    "TrainingInterrupted",
    "evaluate",
    "history_figure",
    "load_data",
    "plot_history",
    "train",
]

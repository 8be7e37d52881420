"""Training compiled networks: data, the loop (single process or DDP), checkpoints, progress."""

from archdsl.train.data import ArchDataError, Data, load_data
from archdsl.train.loop import TrainConfig, TrainResult, evaluate, plot_history, train

__all__ = ["ArchDataError", "Data", "TrainConfig", "TrainResult", "evaluate", "load_data", "plot_history", "train"]

"""Run under torchrun by test_train.py: train a tiny network with DDP and save this rank's weights."""

import os
import sys

import torch

from archdsl.train import TrainConfig, train


def main() -> None:
    sys.path.insert(0, sys.argv[1])
    from conftest import TINY_RESNET

    out = sys.argv[2]
    config = TrainConfig(
        arch=TINY_RESNET,
        data="synthetic",
        epochs=2,
        batch_size=32,
        out=out,
        device="cpu",
        progress=False,
        synthetic_size=128,
    )
    result = train(config)
    rank = torch.distributed.get_rank() if torch.distributed.is_initialized() else int(os.environ["RANK"])
    torch.save(result.model.state_dict(), f"{out}/rank{rank}.pt")


if __name__ == "__main__":
    main()

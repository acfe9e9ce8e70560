"""Launched by ``torchrun`` in test_ddp.py: train with the given overrides, save this rank's final state.

``python -m torch.distributed.run --nproc-per-node=2 --standalone ddp_worker.py OUT_DIR key=value ...``
"""

import os
import sys
from pathlib import Path

import torch

from ccnet.config import load_config
from ccnet.engine.train import train

if __name__ == "__main__":
    out_dir = Path(sys.argv[1])
    result = train(load_config("default", sys.argv[2:]))
    state = {key: value.detach().clone() for key, value in result.model.state_dict().items()}
    torch.save(
        {"state": state, "miou": result.metrics.miou, "pixels": result.metrics.pixels},
        out_dir / f"rank{os.environ['RANK']}.pt",
    )

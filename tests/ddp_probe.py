"""train.py under torchrun, with probes: run by tests/e2e/test_train.py::test_ddp_two_processes_gloo.

    python -m torch.distributed.run --nproc_per_node 2 -m tests.ddp_probe OUT_DIR <train.py args>

Each rank writes OUT_DIR/rank<r>.pt: its weights before the first step and after training, the
dataset indices it loaded and the uint8 batches it trained on, so the test can check that the
ranks agree, that their samples are disjoint, and that each DDP step equals one single-process
step on the union of the ranks' batches.

Two stand-ins make that last equality exact: a loss that is a plain sum over images (the real
loss averages over positives, so halves of a batch do not add up to the whole), and BatchNorm
normalising with its running statistics (without SyncBatchNorm each rank normalises its own
half-batch, by design, which a single-process union batch cannot reproduce).
"""
from __future__ import annotations

import sys
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

import train
import utils.loss
import utils.engine.trainer
from utils.data.dataset import CocoDataset
from utils.torch_utils import unwrap, world_info

ROOT = Path(__file__).resolve().parent.parent


def bn_running_stats(self: nn.BatchNorm2d, x: torch.Tensor) -> torch.Tensor:
    """BatchNorm that treats each image alone (running statistics), in train mode too."""
    return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias, False, 0.0, self.eps)


def sum_over_images_loss(preds: list[torch.Tensor], targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A loss that is a sum of per-image terms (mean squared raw output of each image)."""
    total = sum((p.float() ** 2).flatten(1).mean(1) for p in preds).sum()
    return total, torch.stack([total.detach()] * 3)


def main() -> None:
    out = Path(sys.argv[1])
    rank = max(world_info()[0], 0)
    seen: list[int] = []
    batches: list[torch.Tensor] = []
    record: dict = {}

    nn.BatchNorm2d.forward = bn_running_stats
    utils.loss.build_loss = lambda model, hyp, imgsz: sum_over_images_loss

    get_item = CocoDataset.__getitem__

    def getitem(self, index):
        if self.augment:  # the training set (validation loads too, with augment off)
            seen.append(int(index))
        return get_item(self, index)

    CocoDataset.__getitem__ = getitem
    preprocess = utils.engine.trainer.Trainer.preprocess

    def recording_preprocess(self, imgs):
        batches.append(imgs.clone())
        return preprocess(self, imgs)

    utils.engine.trainer.Trainer.preprocess = recording_preprocess
    fit = utils.engine.trainer.Trainer.fit

    def recording_fit(self):
        record["initial"] = {k: v.clone() for k, v in unwrap(self.model).state_dict().items()}
        record["wrapped"] = type(self.model).__name__
        result = fit(self)
        record["final"] = {k: v.clone() for k, v in unwrap(self.model).state_dict().items()}
        return result

    utils.engine.trainer.Trainer.fit = recording_fit
    train.main(train.parse_opt(sys.argv[2:]))
    torch.save({**record, "seen": seen, "batches": batches}, out / f"rank{rank}.pt")


if __name__ == "__main__":
    main()

"""Probes for in-process train.run tests: the weights training started from, mosaics per epoch,
and the loss of a fixed, un-augmented batch under given weights."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from utils.checkpoints.checkpoint import model_from_checkpoint, read_checkpoint
from utils.data.dataset import CocoDataset, create_dataloader, load_data_config
from utils.loss import build_loss
from utils.torch_utils import unwrap
from utils.engine.trainer import Trainer


class TrainProbe:
    """Records, for train.run(..., workers=0) in this process: the raw weights before the first
    step, and how many mosaics the training set built in each epoch."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch):
        self.initial: dict[str, torch.Tensor] = {}
        self.mosaics: dict[int, int] = {}
        self.epoch = -1
        fit, close_mosaic, load_mosaic = Trainer.fit, Trainer._close_mosaic, CocoDataset.load_mosaic
        probe = self

        def recording_fit(trainer: Trainer) -> dict[str, Any]:
            probe.initial = {k: v.detach().clone() for k, v in unwrap(trainer.model).state_dict().items()}
            return fit(trainer)

        def recording_close_mosaic(trainer: Trainer, epoch: int) -> None:
            probe.epoch = epoch  # called once at the start of every epoch
            probe.mosaics.setdefault(epoch, 0)
            close_mosaic(trainer, epoch)

        def counting_load_mosaic(ds: CocoDataset, i: int):
            probe.mosaics[probe.epoch] = probe.mosaics.get(probe.epoch, 0) + 1
            return load_mosaic(ds, i)

        monkeypatch.setattr(Trainer, "fit", recording_fit)
        monkeypatch.setattr(Trainer, "_close_mosaic", recording_close_mosaic)
        monkeypatch.setattr(CocoDataset, "load_mosaic", counting_load_mosaic)


def fixed_batch_loss(ckpt_path: Path, data_yaml: Path, weights: dict[str, torch.Tensor] | None = None,
                     key: str = "raw_model") -> float:
    """The training loss (the run's own hyperparameters) of the first 8 training images, resized
    without augmentation, under the checkpoint's weights `key` or the given `weights`."""
    ckpt = read_checkpoint(ckpt_path)
    model = model_from_checkpoint(ckpt, key)
    if weights is not None:
        model.load_state_dict(weights)
    data = load_data_config(str(data_yaml))
    loader, _ = create_dataloader(data["train"], ckpt["imgsz"], 8, 32, hyp=ckpt["hyp"], augment=False,
                                  names=data["names"])
    imgs, targets, _, _ = next(iter(loader))
    loss_fn = build_loss(model, ckpt["hyp"], ckpt["imgsz"])
    model.train()  # the loss wants the training outputs; BN statistics of this copy do not matter
    with torch.no_grad():
        return float(loss_fn(model(imgs.float() / 255), targets)[0])


def moved(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    """Fraction of the floating-point tensors that differ between two state dicts."""
    keys = [k for k in a if a[k].is_floating_point()]
    return sum(not torch.equal(a[k], b[k]) for k in keys) / len(keys)

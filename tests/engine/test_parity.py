"""Training-loop details that must match the original YOLOv5 (issue 17: parity of the anchor head)."""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from utils.config import TrainConfig
from utils.engine.optim import accumulation_at
from utils.engine.trainer import Trainer

# Hand-computed for nw = 100 warmup iterations, nbs 64, batch 16 (YOLOv5's schedule): the
# accumulation round(1 + 3 * ni / 100) is 1 up to ni 16, 2 from 17 to 50 (1.5 at 50 rounds
# to even: 2), 3 from 51 to 83, and 4 from 84 on; a step happens once ni - last_step >= it.
WARMUP_STEPS = [*range(17), *range(18, 51, 2), *range(53, 84, 3), 87, 91, 95, 99]


def test_accumulation_ramps_from_one_to_nbs_over_warmup():
    assert [accumulation_at(ni, 100, 64, 16) for ni in (0, 16, 17, 50, 51, 83, 84, 99, 100, 5000)] == \
        [1, 1, 2, 2, 3, 3, 4, 4, 4, 4]
    assert accumulation_at(0, 0, 64, 16) == 4  # no warmup: full accumulation from the start
    assert accumulation_at(0, 100, 64, 128) == 1  # batch above nbs: never below 1
    assert accumulation_at(50, 100, 64, 8) == 4  # 1 + 7 * 0.5 = 4.5 rounds to even


class _Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 2, 1)
        self.bn = nn.BatchNorm2d(2)

    def forward(self, x):
        return [self.bn(self.conv(x))]


class _CountingLoss:
    item_names = ("box", "obj", "cls")

    def __init__(self):
        self.calls = 0

    def __call__(self, preds, targets):
        self.calls += 1
        loss = preds[0].square().mean()
        return loss, torch.stack([loss.detach()] * 3)


def _steps_taken(tmp_path, epochs: int, nb: int, batch: int, hyp_extra: dict) -> tuple[list[int], Trainer]:
    model = _Tiny()
    loss = _CountingLoss()
    batch_t = (torch.randint(0, 255, (2, 3, 8, 8), dtype=torch.uint8), torch.zeros(0, 6), (), ())
    hyp = dict(lr0=0.01, lrf=0.01, momentum=0.937, weight_decay=5e-4, warmup_epochs=3.0,
               warmup_iters=100, warmup_momentum=0.8, warmup_bias_lr=0.1, **hyp_extra)
    # rank 1 (a non-main DDP rank, world 1 so no process group): the same stepping as rank 0
    # without checkpoints, EMA or validation, which this does not test (and _Tiny has no yaml)
    cfg = TrainConfig.from_dict(dict(epochs=epochs, batch_size=batch, imgsz=8, save_dir=str(tmp_path)), hyp)
    t = Trainer(model, loss, [batch_t] * nb, lambda m, final=False: {"fitness": 0.0}, cfg, torch.device("cpu"),
                rank=1)
    steps: list[int] = []
    real_step = t._step

    def record() -> None:
        steps.append(loss.calls - 1)  # the global iteration whose backward just ran
        real_step()

    t._step = record
    t.fit()
    return steps, t


@pytest.mark.parametrize("nbs", [64, None])  # None: default.yaml's nbs, 64
def test_trainer_steps_follow_the_warmup_accumulation_ramp(tmp_path, nbs):
    # 25 batches of 16 images, 8 epochs: warmup is max(3 * 25, 100) = 100 iterations (not capped
    # at half the run, 100), then a step every 4th batch
    steps, t = _steps_taken(tmp_path, epochs=8, nb=25, batch=16, hyp_extra={} if nbs is None else {"nbs": nbs})
    assert steps == WARMUP_STEPS + list(range(103, 200, 4))
    assert len(WARMUP_STEPS) == 49  # a fixed accumulation of 4 would take 25 over the warmup
    # weight decay is scaled with the final accumulation: 5e-4 * 16 * 4 / 64
    assert t.optimizer.param_groups[1]["weight_decay"] == pytest.approx(5e-4)


def test_steps_after_warmup_accumulate_nbs_images(tmp_path):
    # batch 8 -> accumulation 8 after warmup (nw = 100); epochs 4-7 run 100..199: steps every 8th
    steps, t = _steps_taken(tmp_path, epochs=8, nb=25, batch=8, hyp_extra={"nbs": 64})
    after = [s for s in steps if s >= 100]
    assert all(b - a == 8 for a, b in zip(after, after[1:])) and len(after) >= 2
    assert t.optimizer.param_groups[1]["weight_decay"] == pytest.approx(5e-4 * 8 * 8 / 64)

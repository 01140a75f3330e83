"""DFLLoss with the atss assigner: picked by name, end to end, and as tal's warm-up for the first
atss_warmup_epochs epochs, switched by the Trainer's per-epoch hook (resume included)."""
from __future__ import annotations

import math

import pytest
import torch

from models.yolo import Model
from utils.config import TrainConfig, default_hyp, parse_hyp_set
from utils.engine.trainer import Trainer
from utils.loss import DFLLoss, build_loss

FULL = default_hyp()
# a 140k-parameter anchor-free detector (five strided convs and the real DetectDFL head)
TINY_DFL = {"nc": 2, "depth_multiple": 1.0, "width_multiple": 1.0, "assigner": "tal",
            "backbone": [[-1, 1, "Conv", [8, 3, 2]]] * 5,
            "head": [[[2, 3, 4], 1, "DetectDFL", ["nc"]]]}
TARGETS = torch.tensor([[0, 0, 20, 20, 4, 5], [1, 1, 40, 30, 30, 20], [1, 0, 10, 50, 12, 8], [0, 1, 44, 44, 3, 3]])


def _model(assigner: str = "tal") -> Model:
    torch.manual_seed(0)
    model = Model({**TINY_DFL, "assigner": assigner})
    model.names, model.cat_ids = ["a", "b"], [1, 2]
    return model


def test_atss_is_picked_by_model_yaml_hyp_and_caller():
    assert build_loss(_model("atss"), FULL, 64).assigner.name == "atss"
    assert build_loss(_model(), {**FULL, "assigner": "atss"}, 64).assigner.name == "atss"
    assert DFLLoss(_model(), FULL, assigner="atss").assigner.name == "atss"
    assert build_loss(_model(), FULL, 64).assigner.name == "tal"


def test_dfl_loss_with_atss_end_to_end():
    """Finite loss and gradients; class targets are IoU(predicted box, its box) in [0, 1]."""
    m = _model("atss").train()
    loss = build_loss(m, FULL, 64)
    preds = m(torch.rand(2, 3, 64, 64))
    total, items = loss(preds, TARGETS.float())
    total.backward()
    assert torch.isfinite(total) and (items > 0).all()
    grads = [p.grad for p in m.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads) and any(g.abs().sum() > 0 for g in grads)
    # the targets it learned from: soft, in [0, 1], only on positives
    loss.assigner = rec = _Recorder(loss.assigner)
    loss(m(torch.rand(2, 3, 64, 64)), TARGETS.float())
    t = rec.seen[0]
    assert t.fg.any() and t.scores.shape[-1] == 2 and 0 <= t.scores.min() and t.scores.max() <= 1
    assert t.scores[t.fg].sum() > 0 and not t.scores[~t.fg].any()


class _Recorder:
    """Wraps an assigner and keeps every Assignment it returns."""

    def __init__(self, inner):
        self.inner, self.seen, self.name = inner, [], inner.name

    def __call__(self, *args, **kwargs):
        out = self.inner(*args, **kwargs)
        self.seen.append(out)
        return out


class _RecordingDFLLoss(DFLLoss):
    """DFLLoss that notes which assigner each call used."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.used: list[str] = []

    def __call__(self, preds, targets):
        self.used.append(self.active_assigner.name)
        return super().__call__(preds, targets)


def _fit(model: Model, loss: DFLLoss, epochs: int, start_epoch: int = 0, tmp_path=None) -> list[str]:
    batch = (torch.randint(0, 255, (2, 3, 64, 64), dtype=torch.uint8), TARGETS.float(), (), ())
    hyp = {**FULL, "warmup_epochs": 0, "nbs": 2}
    # rank 1 (world 1): the real epoch loop without checkpoints, EMA or validation, which this does not test
    cfg = TrainConfig.from_dict(dict(epochs=epochs, batch_size=2, imgsz=64, save_dir=str(tmp_path)), hyp)
    t = Trainer(model, loss, [batch], lambda m, final=False: {"fitness": 0.0}, cfg, torch.device("cpu"), rank=1)
    t.start_epoch = start_epoch  # what a resumed run's _restore sets (checkpoint epoch + 1)
    t.fit()
    return loss.used


def test_warmup_switches_from_atss_to_tal_through_the_trainer(tmp_path):
    m = _model()
    hyp = {**FULL, "atss_warmup_epochs": 2}
    assert _fit(m, _RecordingDFLLoss(m, hyp), 4, tmp_path=tmp_path) == ["atss", "atss", "tal", "tal"]
    # a resumed run gets a fresh loss (no epoch yet): the hook sets it from the loop, so it goes on
    # with the assigner of the epoch it resumes at
    assert _fit(m, _RecordingDFLLoss(m, hyp), 4, start_epoch=1, tmp_path=tmp_path) == ["atss", "tal", "tal"]
    assert _fit(m, _RecordingDFLLoss(m, hyp), 4, start_epoch=2, tmp_path=tmp_path) == ["tal", "tal"]
    # no warm-up by default: tal throughout, and no second assigner built
    loss = _RecordingDFLLoss(m, FULL)
    assert loss.warmup_assigner is None and _fit(m, loss, 2, tmp_path=tmp_path) == ["tal", "tal"]


def test_warmup_epoch_rule_and_default_outside_training():
    loss = DFLLoss(_model(), {**FULL, "atss_warmup_epochs": 3, "atss_topk": 7, "atss_cell_size": 4.0})
    assert loss.active_assigner.name == "tal"  # no set_epoch (outside a training loop): the chosen assigner
    for epoch, want in ((0, "atss"), (2, "atss"), (3, "tal"), (10, "tal"), (1, "atss")):
        loss.set_epoch(epoch)
        assert loss.active_assigner.name == want, epoch
    warm = loss.warmup_assigner
    assert (warm.topk, warm.cell_size) == (7, 4.0)  # the warm-up atss is configured from the same hyp


@pytest.mark.parametrize("bad", [-1, 1.5, True, "2", math.nan])
def test_bad_warmup_epochs_are_errors(bad):
    with pytest.raises(ValueError, match="atss_warmup_epochs must be a whole number >= 0"):
        DFLLoss(_model(), {**FULL, "atss_warmup_epochs": bad})


def test_warmup_key_in_hyp_files_and_hyp_set():
    assert parse_hyp_set(["atss_warmup_epochs=3"], dict(FULL), "default.yaml") == {"atss_warmup_epochs": 3}
    with pytest.raises(ValueError, match="whole number"):
        parse_hyp_set(["atss_warmup_epochs=1.5"], dict(FULL), "default.yaml")
    with pytest.raises(ValueError, match=">= 0"):
        parse_hyp_set(["atss_warmup_epochs=-2"], dict(FULL), "default.yaml")

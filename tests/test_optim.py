"""Optimizer parameter groups, LR schedules and warmup."""
from __future__ import annotations

import math

import pytest
import torch

from models.yolo import Model
from utils.optim import apply_lr, build_optimizer, lr_lambda, warmup_iterations

HYP = dict(lr0=0.01, lrf=0.01, momentum=0.937, warmup_epochs=3, warmup_iters=100, warmup_momentum=0.8,
           warmup_bias_lr=0.1)


@pytest.mark.parametrize("name", ["SGD", "Adam", "AdamW"])
def test_groups_exclude_norms_and_biases_from_decay(name):
    model = Model("yolov5n.yaml", nc=2)
    opt = build_optimizer(model, name, 0.01, 0.9, 5e-4)
    biases, decayed, norms = opt.param_groups
    ids = lambda g: {id(p) for p in g["params"]}  # noqa: E731
    all_params = {id(p) for p in model.parameters()}
    assert ids(biases) | ids(decayed) | ids(norms) == all_params
    assert not (ids(biases) & ids(decayed)) and not (ids(decayed) & ids(norms))
    assert decayed["weight_decay"] == 5e-4 and norms["weight_decay"] == 0 and biases["weight_decay"] == 0
    bn_weights = {id(m.weight) for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)}
    assert bn_weights == ids(norms)
    assert {id(m.bias) for m in model.modules() if getattr(m, "bias", None) is not None} == ids(biases)


def test_frozen_parameters_are_left_out():
    model = Model("yolov5n.yaml", nc=2)
    for p in model.model[0].parameters():
        p.requires_grad_(False)
    opt = build_optimizer(model, "SGD")
    n = sum(p.numel() for g in opt.param_groups for p in g["params"])
    assert n == sum(p.numel() for p in model.parameters() if p.requires_grad)


def test_unknown_optimizer():
    with pytest.raises(ValueError, match="choose SGD, Adam or AdamW"):
        build_optimizer(Model("yolov5n.yaml", nc=1), "Lion")


def test_schedules_start_at_one_and_end_at_lrf():
    for cos in (False, True):
        lf = lr_lambda(10, 0.05, cos)
        assert lf(0) == pytest.approx(1.0) and lf(10) == pytest.approx(0.05)
        values = [lf(e) for e in range(11)]
        assert all(a >= b for a, b in zip(values, values[1:]))
    assert lr_lambda(10, 0.05, True)(5) == pytest.approx(0.525)  # cosine midpoint = (1 + lrf) / 2
    assert lr_lambda(10, 0.05, False)(5) == pytest.approx(0.525)


def test_warmup_length_and_ramps():
    assert warmup_iterations(HYP, batches_per_epoch=50, epochs=100) == 150
    assert warmup_iterations(HYP, batches_per_epoch=10, epochs=100) == 100  # at least warmup_iters
    assert warmup_iterations(HYP, batches_per_epoch=10, epochs=4) == 20  # at most half the run
    assert warmup_iterations({**HYP, "warmup_epochs": 0}, 10, 4) == 0
    model = Model("yolov5n.yaml", nc=1)
    opt = build_optimizer(model, "SGD", HYP["lr0"], HYP["momentum"])
    lf = lr_lambda(10, HYP["lrf"])
    nb, nw = 10, 40
    apply_lr(opt, HYP, lf, 0, 0, nw, nb, True)
    assert opt.param_groups[0]["lr"] == pytest.approx(0.1) and opt.param_groups[1]["lr"] == 0.0
    assert opt.param_groups[1]["momentum"] == pytest.approx(0.8)
    apply_lr(opt, HYP, lf, 2, 20, nw, nb, True)  # halfway through warmup
    target = 0.01 * lf(2.0)
    assert opt.param_groups[1]["lr"] == pytest.approx(target / 2)
    assert opt.param_groups[0]["lr"] == pytest.approx((0.1 + target) / 2)
    apply_lr(opt, HYP, lf, 5, 55, nw, nb, True)  # after warmup: the schedule at epoch 5.5
    for g in opt.param_groups:
        assert g["lr"] == pytest.approx(0.01 * lf(5.5)) and g["momentum"] == 0.937
    assert not math.isnan(opt.param_groups[0]["lr"])

"""Optimizer parameter groups, LR schedules and warmup."""
from __future__ import annotations

import math

import pytest
import torch

from models.yolo import Model
from utils.config import default_hyp
from utils.engine.optim import apply_lr, build_optimizer, lr_lambda, warmup_iterations

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
    opt = build_optimizer(model, "SGD", 0.01, 0.937, 5e-4)
    n = sum(p.numel() for g in opt.param_groups for p in g["params"])
    assert n == sum(p.numel() for p in model.parameters() if p.requires_grad)


def test_unknown_optimizer():
    with pytest.raises(ValueError, match="choose SGD, Adam or AdamW"):
        build_optimizer(Model("yolov5n.yaml", nc=1), "Lion", 0.01, 0.937, 5e-4)


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
    opt = build_optimizer(model, "SGD", HYP["lr0"], HYP["momentum"], 5e-4)
    lf = lr_lambda(10, HYP["lrf"])
    nb, nw = 10, 40
    apply_lr(opt, HYP, lf, 0, 0, nw, nb, True)
    assert opt.param_groups[0]["lr"] == pytest.approx(0.1) and opt.param_groups[1]["lr"] == 0.0
    assert opt.param_groups[1]["momentum"] == pytest.approx(0.8)
    apply_lr(opt, HYP, lf, 2, 20, nw, nb, True)  # halfway through warmup
    target = 0.01 * lf(2.0)
    assert opt.param_groups[1]["lr"] == pytest.approx(target / 2)
    assert opt.param_groups[0]["lr"] == pytest.approx((0.1 + target) / 2)
    apply_lr(opt, HYP, lf, 5, 55, nw, nb, True)  # after warmup: the schedule at epoch 5, all through it
    for g in opt.param_groups:
        assert g["lr"] == pytest.approx(0.01 * lf(5)) and g["momentum"] == 0.937
    assert not math.isnan(opt.param_groups[0]["lr"])


def test_optimizer_kinds_and_their_settings():
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4))
    sgd = build_optimizer(model, "sgd", 0.02, 0.9, 1e-3)  # names are case-insensitive
    assert isinstance(sgd, torch.optim.SGD)
    for g in sgd.param_groups:
        assert g["lr"] == 0.02 and g["momentum"] == 0.9 and g["nesterov"] is True
    assert [g["weight_decay"] for g in sgd.param_groups] == [0.0, 1e-3, 0.0]
    assert [len(g["params"]) for g in sgd.param_groups] == [2, 1, 1]  # 2 biases, conv weight, BN weight
    for name, cls in (("Adam", torch.optim.Adam), ("ADAMW", torch.optim.AdamW)):
        opt = build_optimizer(model, name, 0.003, 0.85, 1e-3)
        assert type(opt) is cls
        for g in opt.param_groups:
            assert g["lr"] == 0.003 and g["betas"] == (0.85, 0.999)
        assert [g["weight_decay"] for g in opt.param_groups] == [0.0, 1e-3, 0.0]


def test_warmup_iterations_by_hand():
    hyp = {"warmup_epochs": 2.5, "warmup_iters": 10}
    assert warmup_iterations(hyp, 41, 100) == round(2.5 * 41)  # 102.5 -> 102, Python rounding
    assert warmup_iterations({**default_hyp(), "warmup_epochs": 1.0}, 7, 100) == 100  # default.yaml's warmup_iters
    assert warmup_iterations({"warmup_epochs": 1.0, "warmup_iters": 3}, 7, 100) == 7
    assert warmup_iterations({"warmup_epochs": 1.0, "warmup_iters": 3}, 7, 1) == 3  # 7 * 1 // 2
    assert warmup_iterations({"warmup_epochs": -1.0}, 7, 10) == 0
    assert warmup_iterations({"warmup_epochs": 0.0}, 7, 10) == 0


def test_apply_lr_by_hand_during_and_after_warmup():
    """Every group's lr (and SGD momentum) at a few iterations, computed here from the definition:
    linear from (bias: warmup_bias_lr, others: 0) at ni 0 to lr0 * lf(epoch) at ni = nw; the schedule
    moves once per epoch, as YOLOv5's LambdaLR stepped at each epoch's end."""
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4))
    hyp = {**HYP, "lr0": 0.02, "lrf": 0.1, "warmup_bias_lr": 0.2, "warmup_momentum": 0.6}
    lf = lr_lambda(4, hyp["lrf"])
    nb, nw = 8, 12
    for sgd, name in ((True, "SGD"), (False, "Adam")):
        opt = build_optimizer(model, name, 0.5, 0.9, 0.0)
        for ni in (0, 3, 7, 11, 12, 20, 31):
            epoch = ni // nb
            target = 0.02 * (1 - epoch / 4 * (1 - 0.1))
            apply_lr(opt, hyp, lf, epoch, ni, nw, nb, sgd)
            for j, g in enumerate(opt.param_groups):
                if ni < nw:
                    start = 0.2 if j == 0 else 0.0
                    assert g["lr"] == pytest.approx(start + (target - start) * ni / nw), (name, ni, j)
                else:
                    assert g["lr"] == pytest.approx(target), (name, ni, j)
                if sgd:
                    want = 0.6 + (0.937 - 0.6) * ni / nw if ni < nw else 0.937
                    assert g["momentum"] == pytest.approx(want), (ni, j)
                else:
                    assert "momentum" not in g and g["betas"] == (0.9, 0.999)  # Adam's beta1 is not warmed up
    opt = build_optimizer(model, "SGD", 0.5, 0.9, 0.0)
    apply_lr(opt, {**hyp, "warmup_bias_lr": 0.2}, lf, 2, 5, 0, 0, True)  # nb 0: the epoch alone
    assert all(g["lr"] == pytest.approx(0.02 * lf(2)) for g in opt.param_groups)



def test_build_optimizer_groups_and_partly_frozen_modules():
    conv = torch.nn.Conv2d(3, 4, 3)
    opt = build_optimizer(torch.nn.Sequential(conv), "SGD", 0.01, 0.937, 5e-4)  # YOLOv5's SGD values
    assert isinstance(opt, torch.optim.SGD)
    assert [(g["lr"], g["momentum"], g["weight_decay"]) for g in opt.param_groups] == \
        [(0.01, 0.937, 0.0), (0.01, 0.937, 5e-4), (0.01, 0.937, 0.0)]
    conv.weight.requires_grad_(False)  # a frozen weight must not hide the module's trainable bias
    opt = build_optimizer(torch.nn.Sequential(conv), "SGD", 0.01, 0.937, 5e-4)
    assert [[id(p) for p in g["params"]] for g in opt.param_groups] == [[id(conv.bias)], [], []]


def test_apply_lr_warmup_starts_come_from_the_hyp():
    opt = build_optimizer(torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3)), "SGD", 0.5, 0.9, 0.0)
    hyp = {**default_hyp(), "lr0": 0.01, "lrf": 0.01, "momentum": 0.95, "warmup_bias_lr": 0.0}
    apply_lr(opt, hyp, lr_lambda(10, 0.01), 0, 0, 10, 5, True)
    assert [g["lr"] for g in opt.param_groups] == [0.0, 0.0, 0.0]
    assert all(g["momentum"] == pytest.approx(0.8) for g in opt.param_groups)  # default.yaml's warmup_momentum
    apply_lr(opt, hyp, lr_lambda(10, 0.01), 1, 5, 10, 5, True)
    assert all(g["momentum"] == pytest.approx(0.875) for g in opt.param_groups)  # halfway to 0.95
    with pytest.raises(KeyError, match="warmup_bias_lr"):  # an incomplete hyp is an error, not a second default
        apply_lr(opt, {"lr0": 0.01, "momentum": 0.95}, lr_lambda(10, 0.01), 0, 0, 10, 5, True)

"""Optimizer with parameter groups, LR schedules and warmup."""
from __future__ import annotations

import math
from typing import Callable

import numpy as np
import torch
import torch.nn as nn

OPTIMIZERS = ("SGD", "Adam", "AdamW")  # --optimizer and a hyp file's `optimizer:` choose among these


def build_optimizer(model: nn.Module, name: str, lr: float, momentum: float, decay: float) -> torch.optim.Optimizer:
    """Three groups: weights with decay, and norm weights and biases without it (decaying
    them only pulls BN scales and offsets toward zero, it does not regularise). The values come from the
    run's hyperparameters (configs/hyps/default.yaml owns their defaults)."""
    decayed, no_decay_norm, biases = [], [], []
    norms = tuple(v for k, v in nn.__dict__.items() if "Norm" in k and isinstance(v, type))
    for module in model.modules():
        for pname, p in module.named_parameters(recurse=False):
            if not p.requires_grad:
                continue
            if pname == "bias":
                biases.append(p)
            elif isinstance(module, norms):
                no_decay_norm.append(p)
            else:
                decayed.append(p)
    name = name.lower()
    if name == "sgd":
        opt = torch.optim.SGD(biases, lr=lr, momentum=momentum, nesterov=True)
    elif name == "adam":
        opt = torch.optim.Adam(biases, lr=lr, betas=(momentum, 0.999))
    elif name == "adamw":
        opt = torch.optim.AdamW(biases, lr=lr, betas=(momentum, 0.999), weight_decay=0.0)
    else:
        raise ValueError(f"--optimizer {name!r}: choose SGD, Adam or AdamW")
    opt.add_param_group({"params": decayed, "weight_decay": decay})
    opt.add_param_group({"params": no_decay_norm, "weight_decay": 0.0})
    return opt


def lr_lambda(epochs: int, lrf: float, cosine: bool = False) -> Callable[[float], float]:
    """Multiplier of lr0 at a (fractional) epoch: linear or cosine from 1 down to lrf."""
    if cosine:
        return lambda x: ((1 - math.cos(x * math.pi / epochs)) / 2) * (lrf - 1) + 1
    return lambda x: (1 - x / epochs) * (1.0 - lrf) + lrf


def warmup_iterations(hyp: dict, batches_per_epoch: int, epochs: int) -> int:
    """Warmup length: warmup_epochs, at least warmup_iters, at most half of the run (hyp: complete, as
    config.resolve makes it)."""
    if hyp["warmup_epochs"] <= 0:
        return 0
    nw = max(round(hyp["warmup_epochs"] * batches_per_epoch), int(hyp["warmup_iters"]))
    return min(nw, batches_per_epoch * epochs // 2)


def accumulation_at(ni: int, nw: int, nbs: int, batch_size: int) -> int:
    """Batches whose gradients make one optimizer step at global iteration ni.

    After warmup: about nbs / batch_size, so each step sees ~nbs images whatever the batch.
    During warmup (ni < nw) it ramps linearly from 1, as in YOLOv5: the first iterations
    then step every batch instead of summing several large early gradients into one step
    that the gradient clip cuts down (roughly twice the steps over the warmup).
    Rounding is Python's (half to even), which matches numpy's.
    """
    full = max(round(nbs / batch_size), 1)
    if ni >= nw:
        return full
    return max(1, round(float(np.interp(ni, [0, nw], [1.0, nbs / batch_size]))))


def apply_lr(optimizer: torch.optim.Optimizer, hyp: dict, lf: Callable[[float], float], epoch: int,
             ni: int, nw: int, nb: int, sgd: bool) -> None:
    """Set each group's LR (and SGD momentum) for global iteration ni.

    During warmup the bias group (index 0) falls from warmup_bias_lr while the others rise
    from 0; after it, the schedule follows lf. The schedule moves once per epoch (lf(epoch), as
    YOLOv5's LambdaLR stepped at each epoch's end, and Ultralytics' scheduler): the same lr
    for every batch of an epoch, also as the warmup's end point. ``ni`` and ``nb`` place the
    warmup only.
    """
    target = hyp["lr0"] * lf(epoch)
    for j, g in enumerate(optimizer.param_groups):
        if ni < nw:
            start = hyp["warmup_bias_lr"] if j == 0 else 0.0
            g["lr"] = float(np.interp(ni, [0, nw], [start, target]))
            if sgd and "momentum" in g:
                g["momentum"] = float(np.interp(ni, [0, nw], [hyp["warmup_momentum"], hyp["momentum"]]))
        else:
            g["lr"] = target
            if sgd and "momentum" in g:
                g["momentum"] = hyp["momentum"]

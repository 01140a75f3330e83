"""Device selection, seeding, EMA and distributed-training helpers."""
from __future__ import annotations

import math
import os
import random
from copy import deepcopy

import numpy as np
import torch
import torch.nn as nn


def select_device(device: str | int | torch.device = "") -> torch.device:
    """'' -> first GPU if any else CPU; 'cpu'; '0' / 'cuda:0' / 0 -> that GPU (clear error if absent)."""
    if isinstance(device, torch.device):
        return device
    d = str(device).strip().lower().replace("cuda:", "")
    if d in ("", "none"):
        return torch.device("cuda:0" if torch.cuda.is_available() else "cpu")
    if d == "cpu":
        return torch.device("cpu")
    if d == "mps":
        return torch.device("mps")
    if not torch.cuda.is_available():
        raise ValueError(f"--device {device}: CUDA is not available on this machine; use --device cpu")
    first = d.split(",")[0]
    if not first.isdigit() or int(first) >= torch.cuda.device_count():
        raise ValueError(f"--device {device}: no such GPU (found {torch.cuda.device_count()})")
    return torch.device(f"cuda:{first}")


def seed_everything(seed: int = 0, deterministic: bool = False) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.cuda.manual_seed_all(seed)
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        os.environ["CUBLAS_WORKSPACE_CONFIG"] = ":4096:8"


def unwrap(model: nn.Module) -> nn.Module:
    """The model inside a DDP / DataParallel wrapper."""
    return model.module if hasattr(model, "module") else model


class ModelEMA:
    """Exponential moving average of weights; the decay ramps up over the first updates so
    early, poor weights are forgotten quickly (tau ~ 2000 updates as in YOLOv5)."""

    def __init__(self, model: nn.Module, decay: float = 0.9999, tau: float = 2000, updates: int = 0):
        self.ema = deepcopy(unwrap(model)).eval()
        self.updates = updates
        self.decay_fn = lambda x: decay * (1 - math.exp(-x / tau))
        for p in self.ema.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.updates += 1
        d = self.decay_fn(self.updates)
        msd = unwrap(model).state_dict()
        for k, v in self.ema.state_dict().items():
            if v.dtype.is_floating_point:
                v.mul_(d).add_(msd[k].detach(), alpha=1 - d)

    def update_attr(self, model: nn.Module, attrs: tuple[str, ...] = ("names", "cat_ids", "nc")) -> None:
        src = unwrap(model)
        for a in attrs:
            if hasattr(src, a):
                setattr(self.ema, a, getattr(src, a))


def world_info() -> tuple[int, int, int]:
    """(rank, local_rank, world_size) from torchrun's environment; (-1, -1, 1) when single."""
    rank = int(os.environ.get("RANK", -1))
    local = int(os.environ.get("LOCAL_RANK", -1))
    world = int(os.environ.get("WORLD_SIZE", 1))
    return rank, local, world

"""Device selection, seeding, EMA, step timing and distributed-training helpers."""
from __future__ import annotations

import math
import os
import random
import time
from contextlib import contextmanager
from copy import deepcopy
from typing import Any, Iterator

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


def rng_state() -> dict[str, Any]:
    """The global random generators' states (Python, numpy, torch CPU and CUDA), as plain
    tensors, ints and tuples so that a weights_only checkpoint can hold them."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    state = {"python": random.getstate(), "torch": torch.get_rng_state(),
             "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                       "has_gauss": int(has_gauss), "gauss": float(gauss)}}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Undo rng_state(): the next random draws are those that followed the saved point."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


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


class StepTimer:
    """Seconds spent in named steps, summed over calls: ``with timer("inference"): ...``. On CUDA it waits
    for the device at each step's start and end, so a step is charged for its own kernels."""

    def __init__(self, device: torch.device | str = "cpu"):
        self.cuda = torch.device(device).type == "cuda"
        self.device = device
        self.seconds: dict[str, float] = {}

    def _now(self) -> float:
        if self.cuda:
            torch.cuda.synchronize(self.device)
        return time.perf_counter()

    @contextmanager
    def __call__(self, step: str) -> Iterator[None]:
        t0 = self._now()
        try:
            yield
        finally:
            self.seconds[step] = self.seconds.get(step, 0.0) + self._now() - t0

    def ms_per(self, n: int, names: dict[str, str] | None = None) -> dict[str, float]:
        """Milliseconds per item (n items) of each step, keyed by names[step] when given."""
        names = names or {k: k for k in self.seconds}
        return {out: 1e3 * self.seconds.get(step, 0.0) / max(n, 1) for step, out in names.items()}


def world_info() -> tuple[int, int, int]:
    """(rank, local_rank, world_size) from torchrun's environment; (-1, -1, 1) when single."""
    rank = int(os.environ.get("RANK", -1))
    local = int(os.environ.get("LOCAL_RANK", -1))
    world = int(os.environ.get("WORLD_SIZE", 1))
    return rank, local, world

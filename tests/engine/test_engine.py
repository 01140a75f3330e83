"""The training engine in process: NaN guard, EMA, early stopping, multi-scale rescaling,
single-class mode and --freeze, each with real optimizer steps (nbs = batch size)."""
from __future__ import annotations

import argparse
import copy
import csv
import math
import os
import random
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn as nn
import yaml

from models.yolo import Model
from utils.config import TrainConfig
from utils.engine.build import build_model
from utils.torch_utils import ModelEMA
from utils.engine.trainer import MAX_BAD_STEPS, Trainer, TrainingStopped

# a 3k-parameter detector (five strided convs and the real Detect head): the engine tests need
# a Model with a Detect layer, not yolov5n's cost per step
TINY = {"nc": 1, "depth_multiple": 1.0, "width_multiple": 1.0,
        "anchors": [[10, 13, 16, 30, 33, 23], [30, 61, 62, 45, 59, 119], [116, 90, 156, 198, 373, 326]],
        "backbone": [[-1, 1, "Conv", [8, 3, 2]]] * 5,
        "head": [[[2, 3, 4], 1, "Detect", ["nc", "anchors"]]]}


def _model() -> Model:
    model = Model(copy.deepcopy(TINY))
    model.names, model.cat_ids = ["a"], [1]
    return model


HYP = dict(lr0=0.01, lrf=0.01, momentum=0.9, weight_decay=5e-4, warmup_epochs=0, nbs=2)
OPT = dict(epochs=1, batch_size=2, imgsz=64)


def _batch(n: int = 2, seed: int = 0) -> tuple:
    g = torch.Generator().manual_seed(seed)
    imgs = torch.randint(0, 255, (n, 3, 64, 64), dtype=torch.uint8, generator=g)
    targets = torch.tensor([[i, 0, 32.0, 32.0, 16.0, 16.0] for i in range(n)])
    return imgs, targets, (), ()


def _params(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.named_parameters()}


def _differ(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return any(not torch.equal(a[k], b[k]) for k in a)


class SquaredOutputs:
    """A finite, differentiable stand-in loss; NaN on the calls listed in `nan_at`. Records the
    weights it sees (those before this batch's step) and the targets it is given."""

    def __init__(self, model: nn.Module, nan_at: set[int] = frozenset()):
        self.model, self.nan_at, self.calls = model, nan_at, 0
        self.seen: list[dict[str, torch.Tensor]] = []
        self.targets: list[torch.Tensor] = []

    def __call__(self, preds, targets):
        self.seen.append(_params(self.model))
        self.targets.append(targets.clone())
        loss = sum((p.float() ** 2).mean() for p in preds)
        if self.calls in self.nan_at:
            loss = loss * float("nan")
        self.calls += 1
        return loss, loss.detach().repeat(3)


def _csv_epochs(path: Path) -> list[int]:
    """The epochs results.csv holds so far."""
    return [int(r["epoch"]) for r in csv.DictReader(open(path))] if path.exists() else []


def _cfg(save_dir, hyp: dict = HYP, **opt) -> TrainConfig:
    """The run settings and hyperparameters a test names; the rest from their owners (TrainConfig, default.yaml)."""
    return TrainConfig.from_dict({**OPT, **opt, "save_dir": str(save_dir)}, hyp)


def _trainer(tmp_path, model, loss_fn, loader, val_fn=None, **opt) -> Trainer:
    val_fn = val_fn or (lambda m, final=False: {"fitness": 0.0})
    return Trainer(model, loss_fn, loader, val_fn, _cfg(tmp_path, **opt), torch.device("cpu"))


# ----------------------------------------------------------------------------- NaN guard
def test_nan_batches_are_skipped_and_finite_ones_step(tmp_path):
    torch.manual_seed(0)
    model = _model()
    nan_at = {1, 3, 4, 7}
    loss = SquaredOutputs(model, nan_at)
    loader = [_batch(seed=i) for i in range(9)]
    _trainer(tmp_path, model, loss, loader).fit()
    snaps = [*loss.seen, _params(model)]  # weights before batch i, then after the last
    for i in range(len(loader)):
        moved = _differ(snaps[i], snaps[i + 1])
        assert moved == (i not in nan_at), f"batch {i}: stepped={moved}, NaN={i in nan_at}"
    assert all(torch.isfinite(v).all() for v in model.state_dict().values() if v.is_floating_point())


def test_nan_count_resets_on_a_finite_batch(tmp_path):
    model = _model()
    n = MAX_BAD_STEPS - 1  # two runs of 9 NaN losses, one finite batch between: not 10 in a row
    loss = SquaredOutputs(model, set(range(n)) | set(range(n + 1, 2 * n + 1)))
    _trainer(tmp_path, model, loss, [_batch()] * (2 * n + 1)).fit()
    assert loss.calls == 2 * n + 1


def test_repeated_nan_loss_stops_with_clear_message(tmp_path):
    model = _model()
    loss = SquaredOutputs(model, set(range(1, 1 + MAX_BAD_STEPS)))  # one good step, then 10 NaN
    t = _trainer(tmp_path, model, loss, [_batch()] * (MAX_BAD_STEPS + 3))
    with pytest.raises(TrainingStopped, match=f"NaN/inf {MAX_BAD_STEPS} times in a row"):
        t.fit()
    assert loss.calls == 1 + MAX_BAD_STEPS  # stopped at the 10th, not later
    assert _differ(loss.seen[0], loss.seen[1])  # the finite batch did step ...
    assert not _differ(loss.seen[1], _params(model))  # ... and none of the NaN ones did


# ----------------------------------------------------------------------------- EMA
def test_ema_decay_ramp_and_weights_match_a_hand_computation():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2))
    ema = ModelEMA(model, decay=0.9, tau=4.0)
    avg = {k: v.double().clone() for k, v in model.state_dict().items()}
    steps = [0.5, -1.0, 2.0, 0.25, 3.0]
    for n, delta in enumerate(steps, start=1):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(delta)
            model[1].running_mean.add_(delta)
            model[1].num_batches_tracked += 1
        ema.update(model)
        d = 0.9 * (1 - math.exp(-n / 4.0))  # the ramp: small early, so the first weights fade fast
        for k, v in model.state_dict().items():
            if v.is_floating_point():
                avg[k] = d * avg[k] + (1 - d) * v.double()
        assert ema.updates == n
    got = ema.ema.state_dict()
    for k, v in avg.items():
        if got[k].is_floating_point():
            assert torch.allclose(got[k].double(), v, rtol=0, atol=1e-6), k
    # integer buffers are not averaged; the EMA copy is frozen and separate from the model
    assert int(got["1.num_batches_tracked"]) == 0
    assert all(not p.requires_grad for p in ema.ema.parameters())
    assert not ema.ema.training and model.training  # the average is evaluated, never trained
    assert got["0.weight"].data_ptr() != model.state_dict()["0.weight"].data_ptr()


def test_ema_decay_values_and_ddp_unwrap():
    ema = ModelEMA(nn.Linear(2, 2))
    assert ema.decay_fn(1) == pytest.approx(0.9999 * (1 - math.exp(-1 / 2000)))
    assert ema.decay_fn(2000) == pytest.approx(0.9999 * (1 - math.exp(-1)))
    assert ema.decay_fn(10**6) == pytest.approx(0.9999)

    class Wrapper(nn.Module):  # what DistributedDataParallel looks like to ModelEMA
        def __init__(self, m: nn.Module):
            super().__init__()
            self.module = m

    inner = nn.Linear(2, 2)
    with torch.no_grad():
        inner.weight.fill_(1.0)
    ema = ModelEMA(Wrapper(inner), updates=10**6)  # decay ~0.9999
    assert isinstance(ema.ema, nn.Linear)
    with torch.no_grad():
        inner.weight.fill_(2.0)
    ema.update(Wrapper(inner))
    assert torch.allclose(ema.ema.weight, torch.full((2, 2), 1.0 + (1 - ema.decay_fn(10**6 + 1))))
    inner.names, inner.cat_ids, inner.nc, inner.other = ["x"], [7], 1, "y"
    ema.update_attr(Wrapper(inner))
    assert (ema.ema.names, ema.ema.cat_ids, ema.ema.nc) == (["x"], [7], 1)
    assert not hasattr(ema.ema, "other")  # only the listed attributes are copied


def test_trainer_ema_follows_the_steps(tmp_path):
    torch.manual_seed(0)
    model = _model()
    t = _trainer(tmp_path, model, SquaredOutputs(model), [_batch(seed=i) for i in range(3)])
    t.fit()
    assert t.ema.updates == 3  # one update per optimizer step
    raw, avg = model.state_dict(), t.ema.ema.state_dict()
    # early in the ramp the EMA is almost the raw model, but not quite
    w = "model.0.conv.weight"
    assert not torch.equal(raw[w], avg[w]) and torch.allclose(raw[w], avg[w], atol=1e-2)


# ----------------------------------------------------------------------------- early stopping
def test_early_stopping_after_patience_epochs_without_improvement(tmp_path):
    model = _model()
    fitness = iter([0.3, 0.5, 0.4, 0.5, 0.2, 0.1, 0.9])  # best at epoch 3 (>= counts), 2 worse after
    t = _trainer(tmp_path, model, SquaredOutputs(model), [_batch()],
                 val_fn=lambda m, final=False: {"fitness": next(fitness)}, epochs=7, patience=2)
    t.fit()
    with open(tmp_path / "results.csv") as f:
        assert [int(r["epoch"]) for r in csv.DictReader(f)] == [0, 1, 2, 3, 4, 5]
    assert t.best_fitness == 0.5 and t.best_epoch == 3


# ----------------------------------------------------------------------------- multi-scale
def test_multi_scale_rescales_targets_with_the_image():
    """A white box drawn where its target says: after the random resize it must still be
    where the rescaled target says (within a pixel of interpolation blur)."""
    model = _model()
    fake = SimpleNamespace(model=model, cfg=SimpleNamespace(imgsz=64))
    imgs = torch.zeros(1, 3, 64, 96)
    x1, y1, x2, y2 = 40, 16, 72, 40
    imgs[..., y1:y2, x1:x2] = 1.0
    targets = torch.tensor([[0, 0, (x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1]], dtype=torch.float32)
    sizes = set()
    for seed in range(6):
        np.random.seed(seed)
        out, t = Trainer._rescale(fake, imgs, targets)
        h, w = out.shape[2:]
        assert h % 32 == 0 and w % 32 == 0
        sizes.add((h, w))
        ys, xs = torch.nonzero(out[0, 0] > 0.5, as_tuple=True)
        cx, cy, bw, bh = t[0, 2:].tolist()
        assert abs(xs.min() - (cx - bw / 2)) <= 1 and abs(xs.max() + 1 - (cx + bw / 2)) <= 1
        assert abs(ys.min() - (cy - bh / 2)) <= 1 and abs(ys.max() + 1 - (cy + bh / 2)) <= 1
    assert len(sizes) > 1  # it does vary the size
    assert torch.equal(targets[0, 2:], torch.tensor([56.0, 28.0, 32.0, 24.0]))  # input not modified


# ----------------------------------------------------------------------------- options
def test_single_cls_trains_every_box_as_class_zero(tmp_path):
    model = _model()
    loss = SquaredOutputs(model)
    imgs, targets, _, _ = _batch()
    targets[:, 1] = torch.tensor([3.0, 5.0])
    _trainer(tmp_path, model, loss, [(imgs, targets, (), ())], single_cls=True).fit()
    assert loss.targets[0][:, 1].tolist() == [0.0, 0.0]


def test_freeze_keeps_the_first_layers_fixed(tmp_path):
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(yaml.safe_dump(TINY))
    opt = argparse.Namespace(weights="", cfg=str(cfg), assigner=None, freeze=3, reg_max=None)
    torch.manual_seed(0)
    model = build_model(opt, 1, ["a"], [1])
    frozen = [n for n, p in model.named_parameters() if not p.requires_grad]
    assert frozen and all(n.split(".")[1] in ("0", "1", "2") for n in frozen)
    assert all(p.requires_grad for n, p in model.named_parameters() if n.split(".")[1] not in ("0", "1", "2"))
    before = _params(model)
    _trainer(tmp_path, model, SquaredOutputs(model), [_batch(seed=i) for i in range(2)]).fit()
    after = _params(model)
    assert all(torch.equal(before[n], after[n]) for n in frozen)
    assert sum(not torch.equal(before[n], after[n]) for n in before if n not in frozen) > 0.9 * (
        len(before) - len(frozen))


# ----------------------------------------------------------------------------- checkpoint / resume
def _state(t: Trainer) -> dict:
    return {"raw": {k: v.clone() for k, v in t.model.state_dict().items()},
            "ema": {k: v.clone() for k, v in t.ema.ema.state_dict().items()},
            "opt": t.optimizer.state_dict(), "updates": t.ema.updates, "best_epoch": t.best_epoch,
            "last_opt_step": t.last_opt_step, "best_fitness": t.best_fitness}


@pytest.mark.slow
def test_resume_through_last_pt_continues_exactly(tmp_path):
    """Two batches an epoch, a step every 3 (nbs 6 / batch 2): steps straddle epochs, so the
    optimizer-step counter must survive a resume; fitness falls after epoch 0, so early stopping
    (patience 2) must remember the best epoch. Uninterrupted vs stopped after epoch 1 + resumed."""
    from utils.checkpoints.checkpoint import read_checkpoint

    hyp = {**HYP, "nbs": 6}
    loader = [_batch(seed=i) for i in range(2)]
    opt = {**OPT, "epochs": 4, "patience": 2}

    def run(save_dir, fitness, ckpt=None, stop_after=None):
        torch.manual_seed(0)
        model = _model()
        scores = iter(fitness)

        def val_fn(m, final=False):
            if stop_after is not None and _csv_epochs(t.logger.csv)[-1:] == [stop_after - 1]:
                t.stop_signal = 15  # as a SIGTERM during epoch stop_after + 1 would: stop after its first batch
            return {"fitness": next(scores)}

        t = Trainer(model, SquaredOutputs(model), loader, val_fn, _cfg(save_dir, hyp, **opt), torch.device("cpu"),
                    ckpt=ckpt)
        return t, t.fit()

    straight, res = run(tmp_path / "a", [0.5, 0.4, 0.3, 0.2])
    assert not res["interrupted"] and straight.best_epoch == 0 and straight.ema.updates == 2  # steps at ni 2, 5
    first, res = run(tmp_path / "b", [0.5, 0.4], stop_after=1)
    assert res["interrupted"]
    ck = read_checkpoint(tmp_path / "b" / "weights" / "last.pt")
    assert ck["epoch"] == 1 and ck["last_opt_step"] == 2 and ck["best_epoch"] == 0
    resumed, res = run(tmp_path / "b", [0.3, 0.2], ckpt=ck)
    assert not res["interrupted"] and resumed.start_epoch == 2
    a, b = _state(straight), _state(resumed)
    for part in ("raw", "ema"):
        assert all(torch.equal(a[part][k], b[part][k]) for k in a[part]), part
    assert a["opt"]["param_groups"] == b["opt"]["param_groups"]
    assert all(torch.equal(a["opt"]["state"][i]["momentum_buffer"], b["opt"]["state"][i]["momentum_buffer"])
               for i in a["opt"]["state"])
    assert {k: a[k] for k in ("updates", "best_epoch", "last_opt_step", "best_fitness")} == \
        {k: b[k] for k in ("updates", "best_epoch", "last_opt_step", "best_fitness")}
    # early stop after epoch 2 in both (best 0, patience 2): the resumed run logged the same rows
    assert (tmp_path / "a" / "results.csv").read_text() == (tmp_path / "b" / "results.csv").read_text()


# ----------------------------------------------------------------------------- torch_utils helpers
def _draws() -> tuple:
    return random.random(), float(np.random.rand()), float(np.random.randn()), float(torch.rand(1))


def test_rng_state_round_trips_through_a_weights_only_checkpoint(tmp_path):
    from utils.checkpoints.checkpoint import save_checkpoint
    from utils.torch_utils import rng_state, set_rng_state

    np.random.randn()  # numpy caches the second Gaussian of a pair: that must travel too
    save_checkpoint({"rng": rng_state()}, tmp_path / "r.pt")
    want = _draws()
    set_rng_state(torch.load(tmp_path / "r.pt", weights_only=True)["rng"])
    assert _draws() == want
    assert _draws() != want  # and the generators move on from there


def test_seed_everything_seeds_python_numpy_and_torch():
    from utils.torch_utils import seed_everything

    seed_everything(3)
    a = _draws()
    seed_everything(3)
    assert _draws() == a
    seed_everything(4)
    b = _draws()
    assert all(x != y for x, y in zip(a, b))
    assert not torch.are_deterministic_algorithms_enabled()


def test_seed_everything_deterministic_switches_torch_to_deterministic_algorithms(monkeypatch):
    from utils.torch_utils import seed_everything

    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    try:
        seed_everything(0, deterministic=True)
        assert torch.are_deterministic_algorithms_enabled()
        assert torch.is_deterministic_algorithms_warn_only_enabled()
        assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"
    finally:
        torch.use_deterministic_algorithms(False)


def test_select_device_without_cuda(monkeypatch):
    from utils.torch_utils import select_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    for spec in ("", "none", " CPU ", "cpu"):
        assert select_device(spec) == torch.device("cpu"), spec
    assert select_device(torch.device("cpu", 0)) == torch.device("cpu", 0)  # a device passes through
    assert select_device("mps") == torch.device("mps")
    for spec in ("0", "cuda:0", 0, "0,1"):
        with pytest.raises(ValueError, match=rf"--device {spec}: CUDA is not available on this machine; "
                                             "use --device cpu"):
            select_device(spec)


def test_select_device_with_cuda_checks_the_index(monkeypatch):
    from utils.torch_utils import select_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert select_device("") == torch.device("cuda:0")
    assert select_device("1") == torch.device("cuda:1")
    assert select_device("cuda:1") == torch.device("cuda:1")
    assert select_device("1,0") == torch.device("cuda:1")  # the first of a list
    assert select_device(0) == torch.device("cuda:0")
    for spec in ("2", "x", "-1"):
        with pytest.raises(ValueError, match=rf"--device {spec}: no such GPU \(found 2\)"):
            select_device(spec)


def test_world_info_reads_torchrun_environment(monkeypatch):
    from utils.torch_utils import unwrap, world_info

    for k in ("RANK", "LOCAL_RANK", "WORLD_SIZE"):
        monkeypatch.delenv(k, raising=False)
    assert world_info() == (-1, -1, 1)
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "4")
    assert world_info() == (3, 1, 4)
    inner = nn.Linear(1, 1)
    assert unwrap(inner) is inner and unwrap(SimpleNamespace(module=inner)) is inner


def test_default_arguments_of_the_helpers(monkeypatch):
    from utils.torch_utils import select_device, seed_everything

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert select_device() == torch.device("cpu")  # no argument: the first GPU, else the CPU
    seed_everything(0)
    a = _draws()
    seed_everything()
    assert _draws() == a  # the default seed is 0


def test_rng_state_carries_cuda_generators_when_there_are_gpus(monkeypatch):
    """The CUDA branch, wired through stand-ins for torch.cuda (no GPU here)."""
    from utils.torch_utils import rng_state, set_rng_state

    saved = [torch.tensor([1, 2], dtype=torch.uint8)]
    restored = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_rng_state_all", lambda: saved)
    monkeypatch.setattr(torch.cuda, "set_rng_state_all", restored.append)
    state = rng_state()
    assert state["cuda"] is saved
    set_rng_state(state)
    assert restored == [saved]
    set_rng_state({k: v for k, v in state.items() if k != "cuda"})  # a CPU checkpoint on a GPU machine
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    set_rng_state(state)  # a GPU checkpoint on a CPU machine
    assert restored == [saved]


# ----------------------------------------------------------------------------- loop options
class _FlagSet(torch.utils.data.Dataset):
    """Four blank images whose grey level is the mosaic probability the loading process sees."""

    mosaic_p = 1.0

    def __len__(self) -> int:
        return 4

    def __getitem__(self, i: int):
        img = torch.full((3, 64, 64), int(self.mosaic_p * 100), dtype=torch.uint8)
        return img, torch.zeros(0, 5), f"{i}.png", {}


class _RecordingTrainer(Trainer):
    def preprocess(self, imgs: torch.Tensor) -> torch.Tensor:
        self.levels = [*getattr(self, "levels", []), int(imgs[0, 0, 0, 0])]
        self.sizes = [*getattr(self, "sizes", []), tuple(imgs.shape[2:])]
        return super().preprocess(imgs)


def test_close_mosaic_restarts_persistent_workers_with_mosaic_off(tmp_path):
    from utils.data.dataset import collate_fn

    loader = torch.utils.data.DataLoader(_FlagSet(), batch_size=2, num_workers=1, persistent_workers=True,
                                         collate_fn=collate_fn)
    model = _model()
    t = _RecordingTrainer(model, SquaredOutputs(model), loader, lambda m, final=False: {"fitness": 0.0},
                          _cfg(tmp_path, {**HYP, "close_mosaic": 1}, epochs=2), torch.device("cpu"))
    t.fit()
    # the worker kept its copy of the dataset: without the restart epoch 1 would still see 100
    assert t.levels == [100, 100, 0, 0] and loader.dataset.mosaic_p == 0.0


def test_multi_scale_feeds_the_model_varied_stride_multiple_sizes(tmp_path):
    model = _model()
    np.random.seed(0)
    t = _RecordingTrainer(model, SquaredOutputs(model), [_batch(seed=i) for i in range(6)],
                          lambda m, final=False: {"fitness": 0.0}, _cfg(tmp_path, multi_scale=True),
                          torch.device("cpu"))
    seen = []
    rescale = t._rescale

    def recording_rescale(imgs, targets):
        out = rescale(imgs, targets)
        seen.append(tuple(out[0].shape[2:]))
        return out

    t._rescale = recording_rescale
    t.fit()
    assert len(seen) == 6 and len(set(seen)) > 1
    assert all(h % 32 == 0 and w % 32 == 0 and 32 <= h <= 96 for h, w in seen)


def test_save_period_and_a_second_signal(tmp_path):
    model = _model()
    t = _trainer(tmp_path, model, SquaredOutputs(model), [_batch()], epochs=3, save_period=2)
    t.fit()
    assert sorted(p.name for p in (tmp_path / "weights").glob("epoch*.pt")) == ["epoch1.pt"]
    t._on_signal(15, None)  # the first asks to stop after the batch ...
    assert t.stop_signal == 15
    with pytest.raises(KeyboardInterrupt):  # ... a second means now
        t._on_signal(2, None)


def test_final_validation_uses_the_resolved_slicing(tiny_coco, tmp_path, monkeypatch):
    """finish() scores best.pt with the run's --slice/--overlap (set by hand or by --recipe auto); per-epoch
    validation stays whole-image. No training: build_run wires, finish() calls a stand-in Validator."""
    from utils.config import resolve
    from utils.data.config import load_data_config
    from utils.engine.build import build_run
    from utils.eval import validator

    data = load_data_config(tiny_coco)
    cfg = resolve({"imgsz": 64, "slice": 48, "overlap": 0.3, "noplots": True, "noautoanchor": True, "workers": 0,
                   "batch_size": 2, "project": str(tmp_path), "device": "cpu"}, data)
    seen: dict = {}
    monkeypatch.setattr(validator.Validator, "__call__",
                        lambda self, model=None: seen.update(vars(self.settings)) or {})
    _, finish = build_run(cfg, data, torch.device("cpu"), -1, 1, None)
    finish()
    assert (seen["slice"], seen["overlap"], seen["imgsz"]) == (48, 0.3, 64)

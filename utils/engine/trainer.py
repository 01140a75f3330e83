"""The training loop: one object that owns model, EMA, optimizer, loaders and the run dir.

train.py wires options into it; this file knows nothing of the command line. It reads the run's resolved
TrainConfig (utils/config.py) and its complete hyperparameters, and defaults nothing itself: each default has
one owner (TrainConfig's fields, configs/hyps/default.yaml), checked by tests/engine/test_config_owner.py.
"""
from __future__ import annotations

import math
import signal
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F
from tqdm import tqdm

from utils.augment.hsv_device import apply_hsv_tables, batch_tables
from utils.boxes import IGNORE_CLASS
from utils.config import TrainConfig
from utils.checkpoints.checkpoint import checkpoint_yaml, read_checkpoint, save_checkpoint
from utils.logger import LOG, RunLogger
from utils.engine.optim import accumulation_at, apply_lr, build_optimizer, lr_lambda, warmup_iterations
from utils.torch_utils import ModelEMA, rng_state, set_rng_state, unwrap

MAX_BAD_STEPS = 10  # consecutive non-finite losses before the run is stopped


class TrainingStopped(RuntimeError):
    """Training cannot go on (e.g. the loss keeps diverging); the message says why."""


class Trainer:
    def __init__(self, model: nn.Module, loss_fn, train_loader, val_fn, cfg: TrainConfig,
                 device: torch.device, rank: int = -1, world: int = 1, ckpt: dict | None = None):
        """cfg: the run's settings, resolved (config.resolve, or TrainConfig.from_dict for saved ones), with
        cfg.save_dir set to the run folder and cfg.hyp_values complete."""
        if not cfg.save_dir:
            raise ValueError("Trainer: cfg.save_dir is empty; the run folder must be set before training")
        self.model, self.loss_fn, self.train_loader, self.val_fn = model, loss_fn, train_loader, val_fn
        # what the loss's three items are: box/obj/cls (anchor head) or box/dfl/cls (DetectDFL)
        self.loss_names = tuple(getattr(loss_fn, "item_names", ("box", "obj", "cls")))
        self.cfg, self.hyp, self.device = cfg, cfg.hyp_values, device
        self.save_dir = Path(cfg.save_dir)
        self.wdir = self.save_dir / "weights"
        self.rank, self.world = rank, world
        self.main = rank in (-1, 0)
        hyp = self.hyp
        self.epochs = int(cfg.epochs)
        self.nb = len(train_loader)
        self.nbs = int(hyp["nbs"])  # nominal batch size: gradients are accumulated up to it
        # accumulation after warmup (it ramps up from 1 during warmup, see accumulation_at);
        # weight decay is scaled with this final value, as in YOLOv5
        self.accumulate = accumulation_at(0, 0, self.nbs, cfg.batch_size)
        decay = hyp["weight_decay"] * cfg.batch_size * self.accumulate / self.nbs
        self.optimizer = build_optimizer(model, cfg.optimizer, hyp["lr0"], hyp["momentum"], decay)
        self.sgd = cfg.optimizer.lower() == "sgd"
        self.lf = lr_lambda(self.epochs, hyp["lrf"], cfg.cos_lr)
        self.nw = warmup_iterations(hyp, self.nb, self.epochs)
        self.amp = device.type == "cuda" and not cfg.no_amp
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp)
        self.ema = ModelEMA(model) if self.main else None
        self.start_epoch, self.best_fitness = 0, -1.0
        # checkpointed with the weights so that a resumed run goes on exactly as an uninterrupted one
        self.last_opt_step, self.best_epoch = -1, -1
        self.logger = RunLogger(self.save_dir, enabled=self.main)
        # a new run in a reused folder (--exist-ok): epochs 0, 1, not 0, 1, 0, 1. Only ever under the run
        # folder's lock (build_run): a live run's results.csv is never removed
        if not ckpt and self.main:
            self.logger.csv.unlink(missing_ok=True)
        self.stop_signal: int | None = None
        # "pending" in the checkpoints written once training is over: until train.py marks it "done",
        # --resume runs the final evaluation (a Ctrl-C may have stopped it)
        self.final_eval: str | None = None
        self.run_lock = None  # build_run's lock on the run folder (utils/run_lock.py)
        if ckpt:
            self._restore(ckpt)

    # ----------------------------------------------------------------- checkpoints
    def _restore(self, ckpt: dict) -> None:
        """Continue a run from its last.pt: weights, EMA, optimizer (momentum buffers), the
        optimizer-step counter, the best epoch for early stopping, and the random generators
        (global, the loader's shuffle and the dataset's augmentation), so that a resumed run
        reproduces the uninterrupted one (bit for bit on CPU with --workers 0)."""
        unwrap(self.model).load_state_dict(ckpt["raw_model"])
        if self.ema is not None:
            self.ema.ema.load_state_dict(ckpt["model"])
            self.ema.updates = ckpt.get("ema_updates", 0)
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.scaler.load_state_dict(ckpt.get("scaler") or {})
        self.start_epoch = ckpt["epoch"] + 1
        self.best_fitness = ckpt.get("best_fitness", -1.0)
        self.best_epoch = ckpt.get("best_epoch", ckpt["epoch"])
        self.last_opt_step = ckpt.get("last_opt_step", -1)
        rng = ckpt.get("rng")
        if rng and self.main:  # rank 0's generators; other DDP ranks keep their fresh seeds
            set_rng_state(rng)
            gen = getattr(self.train_loader, "generator", None)
            if rng.get("loader") is not None and isinstance(gen, torch.Generator):
                gen.set_state(rng["loader"])
            ds = getattr(self.train_loader, "dataset", None)
            if rng.get("dataset") is not None and isinstance(getattr(ds, "rng", None), np.random.Generator):
                ds.rng.bit_generator.state = rng["dataset"]
        self.logger.truncate_after(ckpt["epoch"])
        self.final_eval = ckpt.get("final_eval")
        if self.final_eval != "pending":  # else train.py says that only the final evaluation runs
            LOG.info(f"Resuming from epoch {self.start_epoch} of {self.epochs} in {self.save_dir}")

    def _rng_state(self) -> dict[str, Any]:
        gen = getattr(self.train_loader, "generator", None)
        ds_rng = getattr(getattr(self.train_loader, "dataset", None), "rng", None)
        return {**rng_state(),
                "loader": gen.get_state() if isinstance(gen, torch.Generator) else None,
                "dataset": ds_rng.bit_generator.state if isinstance(ds_rng, np.random.Generator) else None}

    def checkpoint(self, epoch: int) -> dict[str, Any]:
        raw = unwrap(self.model)
        ema = self.ema.ema if self.ema else raw
        return {
            "model_yaml": checkpoint_yaml(raw),
            "model": {k: v.detach().cpu() for k, v in ema.state_dict().items()},
            "raw_model": {k: v.detach().cpu() for k, v in raw.state_dict().items()},
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict(),
            "ema_updates": self.ema.updates if self.ema else 0,
            "epoch": epoch,
            "best_fitness": self.best_fitness,
            "best_epoch": self.best_epoch,
            "last_opt_step": self.last_opt_step,
            "rng": self._rng_state(),
            "names": list(raw.names), "cat_ids": list(raw.cat_ids),
            "imgsz": self.cfg.imgsz, "hyp": dict(self.hyp),
            "opt": {k: v for k, v in self.cfg.as_dict().items()
                    if isinstance(v, (int, float, str, bool, list, type(None)))},
            "date": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "final_eval": self.final_eval,
        }

    def save(self, epoch: int, fitness: float | None) -> None:
        ckpt = self.checkpoint(epoch)
        save_checkpoint(ckpt, self.wdir / "last.pt")
        if fitness is not None and fitness >= self.best_fitness:
            save_checkpoint(ckpt, self.wdir / "best.pt")
        period = self.cfg.save_period
        if period > 0 and (epoch + 1) % period == 0:
            save_checkpoint(ckpt, self.wdir / f"epoch{epoch}.pt")

    # ----------------------------------------------------------------- signals
    def _on_signal(self, signum, frame) -> None:
        if self.stop_signal is not None:  # a second Ctrl-C means "now"
            raise KeyboardInterrupt
        self.stop_signal = signum
        LOG.info(f"\n{signal.Signals(signum).name} received: stopping after this batch; last.pt "
                 "holds the last finished epoch")

    def _close_mosaic(self, epoch: int) -> None:
        """hyp close_mosaic = N: whole images (no mosaic) for the last N epochs, so the model
        ends on the object scale and context it will see at test time."""
        n = int(self.hyp["close_mosaic"] or 0)
        ds = getattr(self.train_loader, "dataset", None)
        if n <= 0 or epoch < self.epochs - n or not getattr(ds, "mosaic_p", 0):
            return
        ds.mosaic_p = 0.0
        it = getattr(self.train_loader, "_iterator", None)
        if it is not None:  # persistent workers hold a copy of the dataset: start fresh ones
            if hasattr(it, "_shutdown_workers"):
                it._shutdown_workers()
            self.train_loader._iterator = None
        if self.main:
            LOG.info(f"close_mosaic: mosaic off from epoch {epoch} (last {self.epochs - epoch} epochs)")

    # ----------------------------------------------------------------- loop
    def fit(self) -> dict[str, Any]:
        old = {s: signal.signal(s, self._on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            if self.main and self.start_epoch == 0:  # a run stopped in its first epoch can resume too
                save_checkpoint(self.checkpoint(-1), self.wdir / "last.pt")
            return self._fit()
        finally:
            for s, h in old.items():
                signal.signal(s, h)
            self.logger.close()

    def _fit(self) -> dict[str, Any]:
        patience = self.cfg.patience or math.inf
        bad_steps, metrics = 0, {}
        for epoch in range(self.start_epoch, self.epochs):
            if self._should_stop():  # a signal during the previous epoch's validation: that epoch is saved
                return self._interrupted(epoch)
            self.model.train()
            self._close_mosaic(epoch)
            if hasattr(self.loss_fn, "set_epoch"):  # epoch-dependent losses (DFLLoss's atss warm-up); resume-safe
                self.loss_fn.set_epoch(epoch)
            sampler = getattr(self.train_loader, "sampler", None)
            if hasattr(sampler, "set_epoch"):
                sampler.set_epoch(epoch)
            mloss = torch.zeros(3, device=self.device)
            bar = enumerate(self.train_loader)
            if self.main:
                LOG.info(("\n" + "%11s" * 7) % ("Epoch", "GPU_mem", *(f"{n}_loss" for n in self.loss_names),
                                                 "Instances", "Size"))
                bar = tqdm(bar, total=self.nb, bar_format="{l_bar}{bar:10}{r_bar}")
            self.optimizer.zero_grad()
            for i, (imgs, targets, _, metas) in bar:
                ni = i + self.nb * epoch
                imgs = self.preprocess(self.device_augment(imgs, metas))
                targets = targets.to(self.device)
                if self.cfg.single_cls:
                    targets[targets[:, 1] != IGNORE_CLASS, 1] = 0  # ignore regions stay what they are
                apply_lr(self.optimizer, self.hyp, self.lf, epoch, ni, self.nw, self.nb, self.sgd)
                if self.cfg.multi_scale:
                    imgs, targets = self._rescale(imgs, targets)
                with torch.autocast("cuda", enabled=self.amp):
                    preds = self.model(imgs)
                    loss, items = self.loss_fn(preds, targets)
                if not torch.isfinite(loss):
                    bad_steps += 1
                    LOG.warning(f"non-finite loss {items.tolist()} at epoch {epoch} batch {i}: "
                                f"step skipped ({bad_steps}/{MAX_BAD_STEPS})")
                    self.optimizer.zero_grad()
                    if bad_steps >= MAX_BAD_STEPS:
                        raise TrainingStopped(
                            f"loss was NaN/inf {bad_steps} times in a row at epoch {epoch}: lower "
                            f"lr0 (now {self.hyp['lr0']}), check the labels, or use --optimizer AdamW")
                    continue
                bad_steps = 0
                if self.world > 1:
                    loss = loss * self.world  # DDP averages gradients across processes
                self.scaler.scale(loss).backward()
                if ni - self.last_opt_step >= accumulation_at(ni, self.nw, self.nbs, self.cfg.batch_size):
                    self._step()
                    self.last_opt_step = ni
                mloss = (mloss * i + items) / (i + 1)
                if self.main:
                    mem = f"{torch.cuda.memory_reserved() / 1e9:.3g}G" if self.device.type == "cuda" else "0G"
                    bar.set_description(("%11s" * 2 + "%11.4g" * 5) % (
                        f"{epoch}/{self.epochs - 1}", mem, *mloss.tolist(), int((targets[:, 1] != IGNORE_CLASS).sum()),
                        imgs.shape[-1]))
                if self._should_stop():
                    break
            if self._should_stop():
                # the interrupted epoch is not saved: last.pt keeps the end of the previous one (with
                # its random states), and resume repeats this epoch exactly as it would have run
                return self._interrupted(epoch)
            stop = False
            if self.main:
                self.ema.update_attr(self.model)
                final = epoch + 1 == self.epochs
                if final:
                    self.final_eval = "pending"
                if self.cfg.noval and not final:  # --noval: only the last epoch is scored
                    metrics, fitness = {}, None
                else:
                    # the epoch's weights are on disk before evaluation runs: a validation that fails
                    # (a bad val image, a full disk) must not cost the training; saved again after it
                    self.save(epoch, None)
                    metrics = self.val_fn(self.ema.ema, final=final)
                    fitness = metrics["fitness"]
                lrs = [g["lr"] for g in self.optimizer.param_groups]
                # every key on every row (NaN where not scored) so results.csv keeps its columns
                row = {**{f"train/{n}_loss": v for n, v in zip(self.loss_names, mloss.tolist())},
                       **{f"metrics/{k}": float(metrics.get(k, math.nan)) for k in
                          ("precision", "recall", "AP50", "AP", "APs")},
                       **{f"x/lr{j}": lr for j, lr in enumerate(lrs)}}
                self.logger.log_epoch(epoch, row)
                if fitness is not None and fitness >= self.best_fitness:
                    self.best_fitness, self.best_epoch = fitness, epoch
                if fitness is not None and epoch - self.best_epoch >= patience:
                    LOG.info(f"Early stop: no improvement for {patience} epochs (best {self.best_epoch}).")
                    stop, self.final_eval = True, "pending"
                self.save(epoch, fitness)
            if self.world > 1:
                flag = [stop]
                dist.broadcast_object_list(flag, 0)
                stop = flag[0]
            if stop:
                break
        if self._should_stop():  # during the last validation: training is complete, the final evaluation is not
            if self.main:
                LOG.info(f"Interrupted: training is complete in {self.wdir / 'last.pt'}; run the final evaluation "
                         f"with python train.py --resume {self.save_dir}")
            return {"interrupted": True, "signal": self.stop_signal, "save_dir": str(self.save_dir)}
        return {"interrupted": False, "metrics": metrics, "save_dir": str(self.save_dir)}

    def _interrupted(self, epoch: int) -> dict[str, Any]:
        if self.main:
            LOG.info(f"Interrupted: {self.wdir / 'last.pt'} holds epoch {epoch - 1}; continue with "
                     f"python train.py --resume {self.save_dir}")
        return {"interrupted": True, "signal": self.stop_signal, "save_dir": str(self.save_dir)}

    def mark_final_eval_done(self) -> None:
        """After train.py's final evaluation: last.pt says so, and --resume has nothing left to do."""
        last = self.wdir / "last.pt"
        ckpt = read_checkpoint(last)
        ckpt["final_eval"] = "done"
        save_checkpoint(ckpt, last)

    def device_augment(self, imgs: torch.Tensor, metas: tuple) -> torch.Tensor:
        """The augmentation the loader left to the device (HSV gains, CocoDataset.hsv_on_device): the
        uint8 batch on the device with them applied; the batch as it is when there is none."""
        tables = batch_tables(metas)
        if tables is None:
            return imgs
        imgs = imgs.to(self.device, non_blocking=True)
        return apply_hsv_tables(imgs, torch.from_numpy(tables).to(self.device, non_blocking=True))

    def preprocess(self, imgs: torch.Tensor) -> torch.Tensor:
        """uint8 NCHW batch -> float 0-1 on the device, channels-last like the model's weights."""
        imgs = imgs.to(self.device, non_blocking=True, memory_format=torch.channels_last)
        return imgs.float() / 255

    def _should_stop(self) -> bool:
        return self.stop_signal is not None

    def _step(self) -> None:
        self.scaler.unscale_(self.optimizer)
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), max_norm=self.hyp["grad_clip"])
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad()
        if self.ema:
            self.ema.update(self.model)

    def _rescale(self, imgs: torch.Tensor, targets: torch.Tensor):
        """Multi-scale training: a random size in [0.5, 1.5] x imgsz, a multiple of the stride."""
        gs = int(unwrap(self.model).stride.max())
        sz = self.cfg.imgsz
        new = int(np.random.uniform(sz * 0.5, sz * 1.5 + gs)) // gs * gs
        f = new / max(imgs.shape[2:])
        if f != 1:
            h, w = imgs.shape[2:]
            shape = [math.ceil(x * f / gs) * gs for x in (h, w)]
            imgs = F.interpolate(imgs, size=shape, mode="bilinear", align_corners=False)
            targets = targets.clone()
            targets[:, [2, 4]] *= shape[1] / w
            targets[:, [3, 5]] *= shape[0] / h
        return imgs, targets

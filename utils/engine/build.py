"""Wire a training run from options: run dir, data, model, anchors, loss, loaders, validation.

Kept apart from the loop (utils/engine/trainer.py) so that each stays small and the loop knows
nothing of files and options.
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn as nn
import yaml

from models.head import BIN_WIDTH
from models.yolo import Model, head_reads
from utils.augment.hsv_device import matches_opencv as hsv_on_device_ok
from utils.checkpoints.checkpoint import model_from_checkpoint, read_checkpoint
from utils.engine.freeze import freeze
from utils.engine.transfer import transfer
from utils.config import TrainConfig, repo_path
from utils.logger import LOG

def build_model(opt: TrainConfig | argparse.Namespace, nc: int, names: list[str], cat_ids: list[int]) -> Model:
    if opt.weights:
        ck = read_checkpoint(opt.weights)  # ours, or a converted YOLOv5 / Ultralytics one
        src = model_from_checkpoint(ck, "model", opt.weights)
        model = Model(repo_path(opt.cfg) if opt.cfg else ck["model_yaml"], nc=nc, reg_max=opt.reg_max)
        LOG.info(transfer(model, src).summary(opt.weights))
        if model.detect.anchor_free and src.detect.anchor_free:  # its box bins learned that width
            apply_bin_width(model, src.detect.bin_width, f"--weights {opt.weights}", opt.cfg)
    else:
        model = Model(repo_path(opt.cfg), nc=nc, reg_max=opt.reg_max)
    if opt.assigner:  # resolved once (config.resolve): the flag, else the hyp's, else the model YAML's
        model.yaml["assigner"] = opt.assigner
    model.names, model.cat_ids = list(names), list(cat_ids)
    if opt.freeze:
        LOG.info(freeze(model, opt.freeze))
    return model


def apply_bin_width(model: Model, width: float, source: str, cfg: str) -> None:
    """Give the DetectDFL head this DFL bin width and write it into the model YAML that checkpoints keep."""
    det = model.detect
    if width == det.bin_width:
        return
    if not head_reads(model.yaml, "dfl_bin"):
        raise ValueError(f"{source}: bin width {width:g}, but the DetectDFL args of {cfg} do not name dfl_bin "
                         f"(e.g. [nc, 16, dfl_bin]), so its checkpoints would decode with {det.bin_width:g}")
    det.set_bin_width(width)
    model.yaml["dfl_bin"] = det.bin_width


def set_dfl_bin(model: Model, opt: TrainConfig | argparse.Namespace, data: dict, hyp: dict,
                ckpt: dict | None = None) -> None:
    """The DFL bin width: a resumed run keeps its own; else --dfl-bin (a number, or auto fitted to the train
    split's box sizes, utils/data/recipe.fit_dfl_bin); else that of --weights or the model YAML."""
    det = model.detect
    if not getattr(det, "anchor_free", False):
        if opt.dfl_bin is not None:
            raise ValueError(f"--dfl-bin: {opt.cfg} has an anchor head; DFL bins belong to DetectDFL (-dfl configs)")
        return
    if ckpt is not None:  # its weights were trained with these bins, whatever the data says now
        width, source = ckpt["model_yaml"].get("dfl_bin", BIN_WIDTH), "the resumed run"
    elif opt.dfl_bin == "auto":
        from utils.data.recipe import fit_dfl_bin, read_sizes
        width, why = fit_dfl_bin(read_sizes(data["train"]["json"], data["train"].get("images")), opt.imgsz,
                                 float(hyp["tile"]), model.stride.tolist(), det.reg_max, float(hyp["scale"]))
        for line in why:
            LOG.info(f"--dfl-bin auto: {line}")
        source = "--dfl-bin auto"
    elif opt.dfl_bin is not None:
        width, source = float(opt.dfl_bin), f"--dfl-bin {opt.dfl_bin}"
    else:
        return
    if opt.weights and ckpt is None and width != det.bin_width:
        LOG.warning(f"WARNING {source}: bin width {width:g}, but --weights learned {det.bin_width:g}; their box "
                    f"distributions start off scale")
    apply_bin_width(model, width, source, opt.cfg)


def hsv_on_device(device: torch.device, main_proc: bool = True) -> bool:
    """Whether the loader leaves the HSV gains to the device (CocoDataset.hsv_on_device): on a GPU, where
    they cost little for a batch (~half the loader's time per sample on a core), and only where the device
    reproduces this OpenCV's pixels (else the loader keeps doing them)."""
    if device.type != "cuda":
        return False
    if hsv_on_device_ok(device):
        return True
    if main_proc:
        LOG.warning("WARNING: the GPU's HSV pixels differ from this OpenCV's: the loader keeps the HSV gains")
    return False


def build_run(opt: TrainConfig, data: dict, device: torch.device, rank: int, world: int,
              ckpt: dict | None) -> tuple[Any, Callable[[], dict]]:
    """A resolved TrainConfig (utils/config.py) and its loaded data YAML -> (Trainer, finish)."""
    from utils.eval.settings import ValSettings
    from utils.eval.validator import Validator
    from utils.engine.autoanchor import check_anchors, dataset_box_wh
    from utils.data.dataset import create_dataloader
    from utils.loss import build_loss
    from utils.paths import increment_path
    from utils.run_lock import RunLock, claim_run_dir
    from utils.engine.trainer import Trainer

    main_proc = rank in (-1, 0)
    hyp = opt.hyp_values
    names = ["object"] if opt.single_cls else data["names"]
    nc = len(names)
    # NHWC weights: oneDNN convolutions train ~20% faster on CPU, and tensor cores want it on GPU
    model = build_model(opt, nc, names, data["cat_ids"])
    set_dfl_bin(model, opt, data, hyp, ckpt)
    model = model.to(device, memory_format=torch.channels_last)
    gs = max(int(model.stride.max()), 32)
    per_proc_batch = max(opt.batch_size // max(world, 1), 1)
    train_loader, train_set = create_dataloader(
        data["train"], opt.imgsz, per_proc_batch, gs, hyp=hyp, augment=True, rect=False,
        cache=opt.cache, workers=opt.workers, shuffle=True, seed=opt.seed, rank=rank,
        names=data["names"], single_cls=opt.single_cls)
    train_set.hsv_on_device = hsv_on_device(device, main_proc)
    if main_proc and not sum(len(b) for b in train_set.boxes):
        LOG.warning(f"WARNING {data['train']['json']}: the train split has no boxes: the model can only learn "
                    f"that there is nothing to find")
    val_loader = None
    if main_proc:
        val_loader, _ = create_dataloader(
            data["val"], opt.imgsz, per_proc_batch * 2, gs, hyp=hyp, augment=False, rect=True,
            cache=opt.cache, workers=opt.workers, shuffle=False, rank=-1, names=data["names"])
    # the run folder only once model, data and settings have passed their checks: a bad input leaves nothing
    lock = None
    if main_proc:  # one writer per run folder (utils/run_lock.py): a resumed one is held too
        resumed = opt.save_dir
        save_dir, lock = ((Path(resumed), RunLock(resumed)) if resumed
                          else claim_run_dir(Path(opt.project) / opt.name, opt.exist_ok))
    else:
        save_dir = Path(opt.save_dir or increment_path(Path(opt.project) / opt.name, opt.exist_ok))
    opt.save_dir = str(save_dir)
    if main_proc:
        (save_dir / "weights").mkdir(parents=True, exist_ok=True)
        (save_dir / "hyp.yaml").write_text(yaml.safe_dump(hyp, sort_keys=False))
        (save_dir / "opt.yaml").write_text(yaml.safe_dump(opt.as_dict(), sort_keys=False))
        LOG.info(f"Run dir {save_dir}\nhyperparameters: " + ", ".join(f"{k}={v}" for k, v in hyp.items()))
        if not opt.noplots and ckpt is None:
            from utils.plots.labels import plot_labels
            plot_labels(train_set, str(save_dir / "labels.png"))
    if ckpt is None and not opt.noautoanchor and not model.detect.anchor_free:
        wh = dataset_box_wh(train_set.shapes, train_set.boxes, opt.imgsz)
        check_anchors(wh, model, thr=hyp["anchor_t"], imgsz=opt.imgsz)
    if world > 1 and opt.sync_bn and device.type == "cuda":
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    loss_fn = build_loss(model, hyp, opt.imgsz)
    if world > 1:
        model = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)

    # every epoch scores the EMA model on the same loader (in memory, no files); finish() scores best.pt fully
    epoch_val = Validator(ValSettings.training(data=data, batch_size=per_proc_batch * 2, imgsz=opt.imgsz,
                                               half=device.type == "cuda", plots=False, save_json=False,
                                               verbose=False, single_cls=opt.single_cls), val_loader)

    def val_fn(m: nn.Module, final: bool = False) -> dict:
        return epoch_val(m)

    def finish() -> dict:
        """Full COCO evaluation of best.pt, with plots, into the run dir."""
        best = save_dir / "weights" / "best.pt"
        weights = best if best.exists() else save_dir / "weights" / "last.pt"
        sliced = f", sliced: --slice {opt.slice} --overlap {opt.overlap}" if opt.slice else ""
        LOG.info(f"\nValidating {weights} (full COCO evaluation{sliced})")
        # --slice (or --recipe auto's choice): a model trained on native-resolution tiles is scored at that scale
        metrics = Validator(ValSettings(data=data, weights=str(weights), batch_size=per_proc_batch * 2,
                                        workers=opt.workers, imgsz=opt.imgsz, slice=opt.slice, overlap=opt.overlap,
                                        device=str(device) if device.type != "cuda" else str(device.index),
                                        project=str(save_dir), name="val", exist_ok=True,
                                        plots=not opt.noplots, save_json=True, verbose=True,
                                        single_cls=opt.single_cls))()
        if not opt.noplots:
            from utils.plots.results import plot_results
            plot_results(save_dir / "results.csv", save_dir / "results.png")
        LOG.info(f"Results saved to {save_dir}")
        return metrics

    trainer = Trainer(model, loss_fn, train_loader, val_fn, opt, device, rank=rank, world=world, ckpt=ckpt)
    trainer.run_lock = lock  # train.py releases it when the run, final evaluation included, is over
    return trainer, finish


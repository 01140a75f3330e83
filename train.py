"""Train a detector.

    python train.py                                   # yolov5n on the built-in demo data
    python train.py --data data/deeppcb.yaml --cfg yolov5n-spd.yaml --epochs 20 --imgsz 320
    python train.py --resume runs/train/exp           # continue an interrupted run
    torchrun --nproc_per_node 2 train.py --device cpu ...   # DDP (gloo on CPU, nccl on GPU)
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from utils.engine.checkpoint import CheckpointError, read_checkpoint
from utils.logger import LOG
from utils.engine.optim import OPTIMIZERS
from utils.torch_utils import seed_everything, select_device, world_info
from utils.engine.trainer import TrainingStopped

ROOT = Path(__file__).resolve().parent

DEFAULTS: dict[str, Any] = dict(
    data="data/shapes.yaml", cfg="yolov5n.yaml", weights="", hyp="configs/hyps/default.yaml",
    epochs=None, batch_size=None, imgsz=None, device="", workers=2, project="runs/train",
    name="exp", exist_ok=False, resume=False, patience=100, cache=False, optimizer=None,
    cos_lr=False, label_smoothing=None, freeze=0, single_cls=False, multi_scale=False, seed=0,
    save_period=-1, sync_bn=False, assigner=None, noautoanchor=False, noplots=False,
    no_amp=False, data_root=None, noval=False, hyp_set=None,
)
def parse_opt(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    a = p.add_argument
    a("--data", default=DEFAULTS["data"], help="data YAML (default: built-in demo data)")
    a("--cfg", default=DEFAULTS["cfg"], help="model YAML, e.g. yolov5s-spd.yaml")
    a("--weights", default="", help="initial weights (.pt) to fine-tune from")
    a("--hyp", default=DEFAULTS["hyp"], help="hyperparameter YAML")
    a("--epochs", type=int, default=None, help="epochs (default: data YAML's, else 100)")
    a("--batch-size", type=int, default=None, help="total batch size over all processes")
    a("--imgsz", "--img", type=int, default=None, help="train/val image size in pixels")
    a("--device", default="", help="cuda device (0 or 0,1) or cpu")
    a("--workers", type=int, default=2, help="dataloader workers per process")
    a("--project", default=DEFAULTS["project"])
    a("--name", default="exp")
    a("--exist-ok", action="store_true", help="reuse project/name instead of incrementing")
    a("--resume", nargs="?", const=True, default=False, help="resume the latest run, a run dir or a last.pt")
    a("--patience", type=int, default=100, help="early stop after this many epochs without improvement")
    a("--cache", action="store_true", help="cache decoded images in RAM")
    a("--optimizer", default=None, choices=OPTIMIZERS,
      help="default: the hyp file's optimizer, else SGD")
    a("--cos-lr", action="store_true", help="cosine LR schedule")
    a("--label-smoothing", type=float, default=None)
    a("--freeze", type=int, default=0, help="freeze the first N layers")
    a("--single-cls", action="store_true", help="train all classes as one")
    a("--multi-scale", action="store_true", help="vary image size +/- 50%%")
    a("--seed", type=int, default=0)
    a("--save-period", type=int, default=-1, help="also save weights every N epochs")
    a("--sync-bn", action="store_true", help="SyncBatchNorm under DDP")
    a("--assigner", default=None, choices=["iou", "atss", "tal"],
      help="override the model YAML's assigner (tal: only for the anchor-free DetectDFL head)")
    a("--noautoanchor", action="store_true", help="keep the config's anchors")
    a("--noplots", action="store_true")
    a("--no-amp", action="store_true", help="disable mixed precision on CUDA")
    a("--data-root", default=None, help="folder holding the data sets (overrides the data YAML)")
    a("--noval", action="store_true", help="validate only after the last epoch (best.pt = last.pt)")
    a("--hyp-set", nargs="+", default=None, metavar="KEY=VALUE",
      help="override hyperparameters of --hyp, e.g. --hyp-set tile=0 nwd=1.0")
    return p.parse_args(argv)


def _latest_last_pt(project: str) -> Path:
    runs = sorted(Path(project).glob("*/weights/last.pt"), key=os.path.getmtime)
    if not runs:
        raise CheckpointError(f"--resume: no runs with weights/last.pt under {project}")
    return runs[-1]


def resolve_resume(resume: Any, project: str) -> tuple[Path, dict]:
    """--resume True | run dir | last.pt  ->  (checkpoint path, checkpoint)."""
    if resume is True:
        path = _latest_last_pt(project)
    else:
        path = Path(resume)
        if path.is_dir():
            path = path / "weights" / "last.pt"
    ckpt = read_checkpoint(path)
    if "raw_model" not in ckpt or "optimizer" not in ckpt:
        raise CheckpointError(f"{path}: has no optimizer state; it is a final model, not a run to resume")
    return path, ckpt


def run(**kwargs: Any) -> dict[str, Any]:
    """Python entry point: ``train.run(data=..., epochs=3)``; returns the final metrics."""
    unknown = set(kwargs) - set(DEFAULTS)
    if unknown:
        raise TypeError(f"train.run: unknown options {sorted(unknown)}")
    return main(argparse.Namespace(**{**DEFAULTS, **kwargs}))


def main(opt: argparse.Namespace) -> dict[str, Any]:
    from utils.engine.build import build_run  # heavy imports after argument parsing

    rank, local_rank, world = world_info()
    ckpt = None
    if opt.resume:
        path, ckpt = resolve_resume(opt.resume, opt.project)
        saved = ckpt["opt"]
        keep = {k: getattr(opt, k) for k in ("device", "workers")}
        # a resumed run goes on as it was started; a flag that would change it is refused, not ignored
        clash = sorted(k for k, v in vars(opt).items() if k not in (*keep, "resume") and v != DEFAULTS.get(k)
                       and k in saved and v != saved[k])
        if clash:
            given = ", ".join(f"--{k.replace('_', '-')} {getattr(opt, k)} (run: {saved[k]})" for k in clash)
            raise ValueError(f"--resume {path}: continues the run with its own settings; {given} would change "
                             f"it. Start a new run with --weights {path} instead")
        opt = argparse.Namespace(**{**DEFAULTS, **saved, **keep})
        opt.resume, opt.save_dir = str(path), str(path.parent.parent)
        if ckpt["epoch"] + 1 >= opt.epochs:
            LOG.info(f"{path}: training already finished ({opt.epochs} epochs); nothing to resume")
            return {"interrupted": False, "metrics": {}, "save_dir": opt.save_dir}
    if world > 1:
        device = _init_distributed(opt.device, local_rank)
    else:
        device = select_device(opt.device)
    seed_everything(opt.seed + max(rank, 0))
    try:
        trainer, finish = build_run(opt, device, rank, world, ckpt)
        result = trainer.fit()
        if not result["interrupted"] and rank in (-1, 0):
            result["metrics"] = finish()
        return result
    except TrainingStopped as e:
        LOG.error(f"Training stopped: {e}")
        raise
    finally:
        if world > 1 and dist.is_initialized():
            dist.destroy_process_group()


def _init_distributed(device: str, local_rank: int) -> torch.device:
    if torch.cuda.is_available() and device != "cpu":
        torch.cuda.set_device(local_rank)
        dist.init_process_group("nccl")
        return torch.device("cuda", local_rank)
    dist.init_process_group("gloo")
    return torch.device("cpu")


if __name__ == "__main__":
    o = parse_opt()
    try:
        res = main(o)
    except (CheckpointError, TrainingStopped, OSError, ValueError) as e:  # OSError: unwritable folder, full disk
        sys.exit(f"train.py: error: {e}")
    if res.get("interrupted"):
        sys.exit(128 + int(res.get("signal") or 2))

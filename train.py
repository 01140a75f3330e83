"""Train a detector.

    python train.py                                   # yolov5n on the built-in demo data
    python train.py --data data/deeppcb.yaml --cfg yolov5n-spd.yaml --epochs 20 --imgsz 320
    python train.py --resume runs/train/exp           # continue an interrupted run
    torchrun --nproc_per_node 2 train.py --device cpu ...   # DDP (gloo on CPU, nccl on GPU)
"""
from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from utils.checkpoints.checkpoint import CheckpointError, read_checkpoint
from utils.engine.run_paths import check_same_data, record_paths, same_setting
from utils.logger import LOG
from utils.config import FIELDS, TrainConfig, field_default, repo_path, resolve
from utils.torch_utils import seed_everything, select_device, world_info
from utils.engine.trainer import TrainingStopped


def parse_opt(argv: list[str] | None = None) -> argparse.Namespace:
    """The flags of TrainConfig's fields (utils/config.py owns their defaults and help). A flag left out
    is None here, so that the data YAML's `defaults:` can fill it (see config.resolve)."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    for name, f in FIELDS.items():
        flags = (f.metadata["flag"] if f.metadata["flag"] is not None else f"--{name.replace('_', '-')}").split()
        if not flags:
            continue  # not a command-line option (save_dir)
        default = f.default
        helptext = f.metadata["help"] + (f" (default: {default!r})" if default not in (None, "", False) else "")
        kw: dict[str, Any] = dict(default=None, help=helptext or None)
        if name == "resume":
            kw.update(nargs="?", const=True)
        elif name == "cache":  # bare --cache means ram, as in YOLOv5
            kw.update(nargs="?", const="ram", choices=["ram", "disk", "auto", "none"])
        elif name == "hyp_set":
            kw.update(nargs="+", metavar="KEY=VALUE")
        elif isinstance(default, bool):
            kw.update(action="store_true")
        elif name == "freeze":
            kw.update(metavar="N|PARTS")  # a count or part names: checked by config.check_freeze
        elif isinstance(default, int) or f.metadata["least"] is not None:  # whole numbers, None default too
            kw.update(type=int)
        elif name == "label_smoothing" or isinstance(default, float):
            kw.update(type=float)
        if f.metadata["choices"]:
            kw.update(choices=f.metadata["choices"])
        p.add_argument(*flags, **kw)
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
    unknown = set(kwargs) - set(FIELDS)
    if unknown:
        raise TypeError(f"train.run: unknown options {sorted(unknown)}")
    return main(argparse.Namespace(**{**dict.fromkeys(FIELDS), **kwargs}))


def _resumed_config(opt: argparse.Namespace) -> tuple[TrainConfig, dict]:
    """--resume: the run's own settings; a flag that would change them is refused, not ignored."""
    project = opt.project or field_default("project")
    path, ckpt = resolve_resume(opt.resume, project)
    saved = {k: v for k, v in ckpt["opt"].items() if k in FIELDS}
    # what changes speed, never a batch or a weight: a resumed run may set these anew
    keep = {k: getattr(opt, k) for k in ("device", "workers", "cache") if getattr(opt, k) is not None}
    clash = sorted(k for k, v in vars(opt).items() if v is not None and k not in (*keep, "resume")
                   and k in saved and not same_setting(k, v, saved[k]))
    if clash:
        given = ", ".join(f"--{k.replace('_', '-')} {getattr(opt, k)} (run: {saved[k]})" for k in clash)
        raise ValueError(f"--resume {path}: continues the run with its own settings; {given} would change "
                         f"it. Start a new run with --weights {path} instead")
    # a run saved before a setting or hyperparameter existed resumes with its default, from its one owner
    cfg = TrainConfig.from_dict({**saved, **keep, "resume": str(path), "save_dir": str(path.parent.parent)},
                                ckpt["hyp"])
    return cfg, ckpt


def main(opt: argparse.Namespace) -> dict[str, Any]:
    from utils.data.config import load_data_config
    from utils.engine.build import build_run  # heavy imports after argument parsing

    rank, local_rank, world = world_info()
    ckpt, eval_only = None, False
    if opt.resume:
        cfg, ckpt = _resumed_config(opt)
        # "pending": training ended but its final evaluation did not (Ctrl-C); None: a checkpoint from before
        # this key, or a run still training
        eval_only = ckpt.get("final_eval") == "pending"
        if ckpt.get("final_eval") == "done" or (not eval_only and ckpt["epoch"] + 1 >= cfg.epochs):
            LOG.info(f"{cfg.resume}: training already finished ({cfg.epochs} epochs); nothing to resume")
            return {"interrupted": False, "metrics": {}, "save_dir": cfg.save_dir}
        if eval_only and rank in (-1, 0):
            LOG.info(f"{cfg.resume}: training finished; running the final evaluation that did not finish")
        data = load_data_config(repo_path(cfg.data), root=cfg.data_root)  # absolute since run_paths
        for note in check_same_data(cfg, data, cfg.resume):
            LOG.warning(note)
    else:
        data = load_data_config(repo_path(opt.data or field_default("data")), root=opt.data_root)
        cfg = resolve({k: v for k, v in vars(opt).items() if v is not None}, data)
        record_paths(cfg, data)  # absolute paths and the data's fingerprint: --resume works from anywhere
        if cfg.recipe_notes and rank in (-1, 0):  # --recipe auto: what it picked, why, and what the run uses
            LOG.info("\n".join(cfg.recipe_notes))
    if world > 1:
        device = _init_distributed(cfg.device, local_rank)
    else:
        device = select_device(cfg.device)
    seed_everything(cfg.seed + max(rank, 0))
    trainer = None
    try:
        trainer, finish = build_run(cfg, data, device, rank, world, ckpt)
        result = ({"interrupted": False, "metrics": {}, "save_dir": cfg.save_dir} if eval_only
                  else trainer.fit())
        if not result["interrupted"] and rank in (-1, 0):
            result.update(final_evaluation(trainer, finish))
        return result
    except TrainingStopped as e:
        LOG.error(f"Training stopped: {e}")
        raise
    finally:
        if trainer is not None and trainer.run_lock is not None:
            trainer.run_lock.release()
        if world > 1 and dist.is_initialized():
            dist.destroy_process_group()


def final_evaluation(trainer: Any, finish: Any) -> dict[str, Any]:
    """finish() (the full evaluation of best.pt) under its own signal handlers: Ctrl-C or SIGTERM ends it with
    one line, and last.pt stays marked so that --resume runs it; once it completes, last.pt says so."""
    got: list[int] = []

    def stop(signum: int, frame: Any) -> None:
        got.append(signum)
        raise KeyboardInterrupt

    old = {s: signal.signal(s, stop) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        metrics = finish()
        trainer.mark_final_eval_done()  # atomic: a signal here leaves it pending, and --resume evaluates again
    except KeyboardInterrupt:
        sig = got[0] if got else signal.SIGINT
        LOG.info(f"\n{signal.Signals(sig).name}: the final evaluation was stopped; training is complete in "
                 f"{trainer.wdir / 'last.pt'}; run the evaluation with python train.py --resume {trainer.save_dir}")
        return {"interrupted": True, "signal": int(sig)}
    finally:
        for s, h in old.items():
            signal.signal(s, h)
    return {"metrics": metrics}


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
    except KeyboardInterrupt:  # before training started, or a second Ctrl-C ("now"): last.pt is whole
        print("train.py: interrupted; a run's weights/last.pt holds its last finished epoch (--resume continues)",
              file=sys.stderr)
        sys.exit(130)
    if res.get("interrupted"):
        sys.exit(128 + int(res.get("signal") or 2))

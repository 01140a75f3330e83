"""Validate a detector: COCO AP with tiny-object buckets, per-class table, curves and a speed line.

    python val.py --data data/shapes.yaml --weights runs/train/exp/weights/best.pt
    python val.py --data D --weights W --protocol aitod         # AI-TOD buckets at maxDets 1500
    python val.py --data D --weights W --task speed            # timings only, no files
    python val.py --data D --weights best.onnx                  # or best.torchscript (made by export.py)

The engine is utils/eval/validator.py; this script parses flags and calls it. ``run(**kwargs)`` stays
the Python entry point (tests, benchmarks): ``fast=True`` selects the in-training evaluation
(``utils.eval.validator.TRAINING_EVAL``: in-memory figures for all and small boxes, no COCOeval).
"""
from __future__ import annotations

import argparse
from typing import Any

import torch

from utils.eval.protocols import PROTOCOLS
from utils.eval.validator import FULL_EVAL, TASKS, TRAINING_EVAL, validate


def run(data: str | dict = "data/shapes.yaml", weights: str | None = None, model: torch.nn.Module | None = None,
        dataloader: Any = None, batch_size: int = 32, imgsz: int = 640, conf_thres: float = 0.001,
        iou_thres: float = 0.6, max_det: int | None = None, task: str = "val", device: str = "",
        save_json: bool = True, save_txt: bool = False, slice: int = 0, overlap: float = 0.2,
        slice_full: bool = False, project: str = "runs/val", name: str = "exp",
        exist_ok: bool = False, plots: bool = True, fast: bool = False, half: bool = False, verbose: bool = True,
        single_cls: bool = False, workers: int = 2, multi_label: bool = True,
        protocol: str = "coco") -> dict[str, Any]:
    """utils.eval.validator.validate with fast=True meaning TRAINING_EVAL (see its doc for the figures).
    max_det None keeps the protocol's count (COCO 300, AI-TOD 1500)."""
    return validate(data=data, weights=weights, model=model, dataloader=dataloader, batch_size=batch_size,
                    imgsz=imgsz, conf_thres=conf_thres, iou_thres=iou_thres, max_det=max_det, task=task,
                    device=device, save_json=save_json, save_txt=save_txt, slice=slice, overlap=overlap,
                    slice_full=slice_full, project=project, name=name, exist_ok=exist_ok, plots=plots, half=half,
                    verbose=verbose, single_cls=single_cls, workers=workers, multi_label=multi_label,
                    protocol=protocol, options=TRAINING_EVAL if fast else FULL_EVAL)


def parse_opt(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    a = p.add_argument
    a("--data", type=str, default="data/shapes.yaml", help="data YAML")
    a("--weights", type=str, required=True, help="checkpoint .pt, or .onnx / .torchscript from export.py")
    a("--imgsz", "--img", type=int, default=640, help="inference size (pixels)")
    a("--batch-size", type=int, default=32)
    a("--conf-thres", type=float, default=0.001)
    a("--iou-thres", type=float, default=0.6, help="NMS IoU threshold")
    a("--max-det", type=int, default=None, help="boxes kept per image after NMS (default: 300, aitod 1500)")
    a("--task", default="val", choices=TASKS)
    a("--protocol", default="coco", choices=tuple(PROTOCOLS),
      help="coco: COCO figures plus tiny buckets; aitod: AI-TOD buckets (<8, 8-16, 16-32, >=32 px) at maxDets 1500")
    a("--device", default="", help="'' (auto), cpu, 0, cuda:0")
    a("--workers", type=int, default=2)
    a("--single-cls", action="store_true")
    a("--save-json", action=argparse.BooleanOptionalAction, default=True, help="write predictions.json")
    a("--save-txt", action="store_true", help="write labels/*.txt (cls cx cy w h conf, normalised)")
    a("--slice", type=int, default=0, help="sliced inference on tiles of this size (0 = off)")
    a("--overlap", type=float, default=0.2, help="tile overlap fraction for --slice")
    a("--slice-full", action="store_true", help="with --slice, also run the whole image at --imgsz and merge")
    a("--project", default="runs/val")
    a("--name", default="exp")
    a("--exist-ok", action="store_true")
    a("--noplots", action="store_true")
    a("--half", action="store_true", help="fp16 autocast on CUDA")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    opt = vars(parse_opt(argv))
    opt["plots"] = not opt.pop("noplots")
    from utils.engine.checkpoint import CheckpointError
    try:
        return run(**opt)
    except (ValueError, CheckpointError, OSError) as e:  # OSError: unwritable folder, full disk
        raise SystemExit(f"val.py: error: {e}") from None


if __name__ == "__main__":
    main()

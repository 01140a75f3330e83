"""Validate a detector: COCO AP with tiny-object buckets, per-class table, curves and a speed line.

    python val.py --data data/shapes.yaml --weights runs/train/exp/weights/best.pt
    python val.py --data D --weights W --protocol aitod         # AI-TOD buckets at maxDets 1500
    python val.py --data D --weights W --protocol visdrone      # or tinyperson: those benchmarks' own rules
    python val.py --data D --weights W --task speed            # timings only, no files
    python val.py --data D --weights best.onnx                  # or best.torchscript (made by export.py)
    python val.py --data D --weights W --slice auto             # slicing picked from the data (utils/data/recipe.py)

The engine is utils/eval/validator.py (its settings and their defaults: utils/eval/settings.py ValSettings);
this script parses flags and calls it. ``run(**kwargs)`` stays the Python entry point (tests, benchmarks):
``fast=True`` selects the in-training evaluation (``ValSettings.training``: in-memory figures for all and
small boxes, no COCOeval); ``--task speed`` is the ``ValSettings.speed`` preset.
"""
from __future__ import annotations

import argparse
import sys
from typing import Any

import torch

from utils.data.recipe import slice_arg
from utils.eval.protocols import PROTOCOLS
from utils.eval.settings import TASKS, ValSettings
from utils.eval.validator import Validator
from utils.inference.slicing import MERGE_MODES


def run(fast: bool = False, model: torch.nn.Module | None = None, dataloader: Any = None,
        **kwargs: Any) -> dict[str, Any]:
    """Validator(ValSettings(**kwargs), dataloader)(model) (ValSettings holds the options and their defaults;
    the Validator's doc the figures). task="speed" is the ValSettings.speed preset, fast=True the
    ValSettings.training one. slice="auto" picks slice and overlap as train.py --recipe auto does, from the
    data YAML's train split at imgsz; an overlap given (not None) is kept."""
    unknown = set(kwargs) - set(ValSettings.names())
    if unknown:
        raise TypeError(f"val.run: unknown options {sorted(unknown)}")
    if kwargs.get("slice") == "auto":
        _auto_slice(kwargs)
    if kwargs.get("overlap") is None:
        kwargs.pop("overlap", None)  # the settings' default
    preset = ValSettings.speed if kwargs.get("task") == "speed" else ValSettings.training if fast else ValSettings
    return Validator(preset(**kwargs), dataloader)(model)


def _auto_slice(kwargs: dict[str, Any]) -> None:
    """--slice auto: the recipe's slice (imgsz, or 0 = whole image) and, unless --overlap was given, its overlap."""
    from utils.data.recipe import decide
    from utils.eval.inputs import load_data
    from utils.logger import LOG
    defaults = ValSettings.defaults()
    kwargs["data"] = load_data(kwargs.get("data", defaults["data"]))  # loaded once, the validator reuses it
    recipe = decide(kwargs["data"], kwargs.get("imgsz", defaults["imgsz"]))
    if kwargs.get("verbose", True):
        LOG.info(f"--slice auto: {recipe.summary()}")
    kwargs["slice"] = recipe.slice
    if recipe.slice and kwargs.get("overlap") is None:
        kwargs["overlap"] = recipe.overlap


def parse_opt(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    a = p.add_argument
    D = ValSettings.defaults()  # the settings own the defaults
    a("--data", type=str, default=D["data"], help="data YAML")
    a("--weights", type=str, required=True, help="checkpoint .pt, or .onnx / .torchscript from export.py")
    a("--imgsz", "--img", type=int, default=D["imgsz"], help="inference size (pixels)")
    a("--batch-size", type=int, default=D["batch_size"])
    a("--conf-thres", type=float, default=D["conf_thres"])
    a("--iou-thres", type=float, default=D["iou_thres"], help="NMS IoU threshold")
    a("--max-det", type=int, default=D["max_det"], help="boxes kept per image after NMS (default: 300, aitod 1500)")
    a("--task", default=D["task"], choices=TASKS)
    a("--protocol", default=D["protocol"], choices=tuple(PROTOCOLS),
      help="coco: COCO figures plus tiny buckets; aitod: AI-TOD buckets (<8, 8-16, 16-32, >=32 px) at maxDets 1500; "
           "visdrone: VisDrone-DET (boxes half inside ignored regions dropped, maxDets 500); tinyperson: AP50 "
           "over TinyPerson's tiny1-3/small buckets, ignore and uncertain boxes not counted "
           "(docs/evaluation-protocols.md)")
    a("--device", default=D["device"], help="'' (auto), cpu, 0, cuda:0")
    a("--workers", type=int, default=D["workers"])
    a("--single-cls", action="store_true")
    a("--save-json", action=argparse.BooleanOptionalAction, default=D["save_json"], help="write predictions.json")
    a("--save-txt", action="store_true", help="write labels/*.txt (cls cx cy w h conf, normalised)")
    a("--slice", type=slice_arg, default=D["slice"], help="sliced inference on tiles of this size (0 = off); auto: "
      "tiles of --imgsz when the train split's images and boxes call for it (as train.py --recipe auto)")
    a("--overlap", type=float, default=None,
      help=f"tile overlap fraction for --slice (default: {D['overlap']}; with --slice auto, the recipe's)")
    a("--slice-full", action="store_true", help="with --slice, also run the whole image at --imgsz and merge")
    a("--slice-merge", default=D["slice_merge"], choices=MERGE_MODES,
      help="duplicate removal across windows (greedy-nmm: SAHI's default, IoS match, union box)")
    a("--project", default=D["project"])
    a("--name", default=D["name"])
    a("--exist-ok", action="store_true")
    a("--noplots", action="store_true")
    a("--half", action="store_true", help="fp16 autocast on CUDA")
    a("--single-label", dest="multi_label", action="store_false",
      help="NMS keeps one class per box, its best (Ultralytics' predict); default: every class above --conf-thres")
    a("--rect-pad", type=float, default=D["rect_pad"],
      help="pad each batch's shape by this many strides (0.5: YOLOv5's val.py, whose 256 px images run at 288)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    opt = vars(parse_opt(argv))
    opt["plots"] = not opt.pop("noplots")
    from utils.checkpoints.checkpoint import CheckpointError
    try:
        return run(**opt)
    except (ValueError, CheckpointError, OSError) as e:  # OSError: unwritable folder, full disk
        raise SystemExit(f"val.py: error: {e}") from None
    except KeyboardInterrupt:
        print("val.py: interrupted; no metrics were written", file=sys.stderr)
        raise SystemExit(130) from None


if __name__ == "__main__":
    main()

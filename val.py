"""Validate a detector: COCO AP with tiny-object buckets, per-class table, curves and a speed line.

    python val.py --data data/shapes.yaml --weights runs/train/exp/weights/best.pt
    python val.py --data D --weights W --task speed            # timings only, no files
    python val.py --data D --weights best.onnx                  # or best.torchscript (made by export.py)

``run(**kwargs)`` is the entry point for train.py (in-memory model, ``fast=True`` per epoch) and
tests. The full path's AP figures are pycocotools' own on predictions.json; the fast path uses the
in-memory evaluator of utils/eval/metrics.py (COCO's matching rule, ground truth from the loader).
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from utils.logger import LOG
from utils.eval.metrics import AREA_RANGES, ConfusionMatrix, DetectionStats, coco_eval
from utils.paths import UniqueStems, increment_path
from utils.inference.postprocess import non_max_suppression, scale_boxes, to_coco_results, xywh2xyxy
from utils.eval.report import print_results, save_plots, write_txt

ROOT = Path(__file__).resolve().parent

TASKS = ("val", "test", "speed")
FIGURES = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AP_vt", "AP_t", "AP_s16", "AP_tiny",
           "AR1", "AR10", "AR100", "ARs", "ARm", "ARl", "AR_vt", "AR_t", "AR_s16", "AR_tiny")
FAST_AREAS = ("all", "small")  # per-epoch path: each extra range costs one more matching pass


def _load_data(data: str | dict) -> dict:
    if isinstance(data, dict):
        return data
    from utils.data.dataset import load_data_config
    if not Path(data).exists() and (ROOT / data).exists():  # 'data/shapes.yaml' from any working dir
        data = str(ROOT / data)
    return load_data_config(data)


def _sync(device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()


def _check_classes(model_nc: int, model_names: list, names: list, single_cls: bool, src: str, data_src: str) -> None:
    want = 1 if single_cls else len(names)
    if model_nc != want:
        raise ValueError(f"{src}: the model predicts {model_nc} classes {list(model_names)[:10]} but the data "
                         f"{data_src} has {want} {names[:10] if not single_cls else ['object (single_cls)']}; "
                         f"use weights trained on this data set")
    if not single_cls and model_names and list(model_names) != list(names):
        LOG.warning(f"WARNING {src}: class names {list(model_names)[:10]} differ from the data's {names[:10]}; "
                    f"evaluating by class index")


def _read_orig(dataset: Any, path: str, meta: dict) -> Any:
    """The original image behind a batch item, for sliced evaluation (decoded as the dataset does)."""
    from utils.data.image_io import read_image
    p = Path(path)
    if not p.is_file() and getattr(dataset, "img_dir", None):
        p = Path(dataset.img_dir) / p
    try:  # special=True: grey, RGBA and 16-bit files convert exactly as in training
        img = read_image(str(p), special=True)
    except OSError:
        raise ValueError(f"{p}: image id {meta.get('image_id')} could not be read for --slice evaluation") from None
    if tuple(img.shape[:2]) != tuple(int(v) for v in meta["orig_shape"]):
        raise ValueError(f"{p}: decoded as {img.shape[1]}x{img.shape[0]} but the dataset says "
                         f"{meta['orig_shape'][1]}x{meta['orig_shape'][0]} (image id {meta.get('image_id')})")
    return img


def _gt_orig(targets: torch.Tensor, i: int, meta: dict, single_cls: bool) -> torch.Tensor:
    """Image i's labels [cls, cx, cy, w, h] (letterboxed px) -> [cls, x1, y1, x2, y2] original px."""
    t = targets[targets[:, 0] == i, 1:6].double()
    out = torch.zeros((len(t), 5), dtype=torch.float64)
    if len(t):
        out[:, 0] = 0 if single_cls else t[:, 0]
        out[:, 1:] = scale_boxes(xywh2xyxy(t[:, 1:5]), meta)
    return out


@torch.no_grad()
def run(data: str | dict = "data/shapes.yaml", weights: str | None = None, model: torch.nn.Module | None = None,
        dataloader: Any = None, batch_size: int = 32, imgsz: int = 640, conf_thres: float = 0.001,
        iou_thres: float = 0.6, max_det: int = 300, task: str = "val", device: str = "", save_json: bool = True,
        save_txt: bool = False, slice: int = 0, overlap: float = 0.2, slice_full: bool = False,
        project: str = "runs/val", name: str = "exp",
        exist_ok: bool = False, plots: bool = True, fast: bool = False, half: bool = False, verbose: bool = True,
        single_cls: bool = False, workers: int = 2, multi_label: bool = True) -> dict[str, Any]:
    """Evaluate weights (a checkpoint path) or an in-memory model on the data's `task` split.
    Returns AP, AP50, AP75, APs, APm, APl, AP_vt (<8 px), AP_t (8-16), AP_s16 (16-32), AR*,
    precision, recall, per_class, speed (ms per image), fitness (0.1 AP50 + 0.9 AP), save_dir.
    slice > 0: each original image is read from disk and run in slice px windows (utils/inference/slicing.py,
    plus a full-image pass with slice_full); the loader then only supplies labels, paths and metas."""
    if task not in TASKS:
        raise ValueError(f"val.run: task must be one of {TASKS}, got {task!r}")
    if task == "speed":  # timings only: YOLOv5's speed settings, nothing written
        conf_thres, iou_thres, save_json, save_txt, plots, fast = 0.25, 0.45, False, False, False, True
    from utils.torch_utils import select_device, unwrap
    if model is not None:
        model = unwrap(model)
        dev = next(model.parameters()).device
        src = "model"
    elif weights:
        from utils.inference.backends import load_model  # .pt checkpoints, .onnx and .torchscript exports
        dev = select_device(device)
        model = load_model(weights, dev)
        src = str(weights)
    else:
        raise ValueError("val.run: give weights= (a checkpoint path) or model= (an in-memory Model)")
    data_src = data if isinstance(data, str) else data.get("yaml_file", "<data dict>")
    data = _load_data(data)
    names = ["object"] if single_cls else list(data["names"])
    nc = len(names)
    _check_classes(int(model.nc), list(getattr(model, "names", []) or []), names, single_cls, src, str(data_src))
    was_training = model.training
    if isinstance(model, torch.nn.Module):  # an exported model (utils/inference/backends.py) is always in eval mode
        model.eval()
    amp = half and dev.type == "cuda"  # autocast, never .half(): the caller's model (EMA) stays fp32

    split = "val" if task == "speed" else task
    if dataloader is None:
        if split not in data or not data[split]:
            raise ValueError(f"{data_src}: no '{split}' split defined")
        from utils.data.dataset import create_dataloader
        gs = max(int(model.stride.max()), 32)
        dataloader, dataset = create_dataloader(data[split], imgsz, batch_size, gs, rect=True, augment=False,
                                                shuffle=False, workers=workers, names=data["names"])
    dataset = dataloader.dataset
    if len(dataset) == 0:
        raise ValueError(f"{data_src}: the {split} split has no images ({getattr(dataset, 'json_path', '')})")
    cat_ids = list(getattr(dataset, "cat_ids", None) or data.get("cat_ids") or range(1, nc + 1))

    save_dir = None
    if save_json or save_txt or plots:
        save_dir = increment_path(Path(project) / name, exist_ok)
        save_dir.mkdir(parents=True, exist_ok=True)
        if save_txt:
            (save_dir / "labels").mkdir(exist_ok=True)
    txt_stem = UniqueStems()  # a/x.jpg and b/x.jpg must not write the same labels/x.txt

    sliced = None
    if slice:
        try:
            from utils.inference.slicing import sliced_predict as sliced
        except ImportError as e:
            raise RuntimeError(f"--slice {slice}: sliced inference needs utils/inference/slicing.py ({e})") from None

    stats = DetectionStats(nc if not single_cls else 1, FAST_AREAS if fast else ("all",), use_cats=not single_cls)
    confusion = ConfusionMatrix(nc) if plots else None
    jdict: list[dict] = []
    seen_ids: list[int] = []
    t_pre = t_inf = t_nms = 0.0
    n_img = 0
    shape = None
    t_match = 0.0
    n_unreadable = 0
    try:  # the caller's model goes back to train mode even if evaluation fails
        bar = tqdm(dataloader, desc=f"{'val' if fast else task:>10}", leave=verbose, disable=not (verbose or fast),
                   bar_format="{l_bar}{bar:20}{r_bar}")
        for bi, (imgs, targets, paths, metas) in enumerate(bar):
            t0 = _sync(dev)
            x = imgs.to(dev, non_blocking=True).float() / 255
            targets = targets.to("cpu")
            shape = shape or tuple(x.shape)
            t1 = _sync(dev)
            if sliced is None:
                with torch.autocast("cuda", torch.float16, enabled=amp):
                    preds = model(x)
                t2 = _sync(dev)
                dets = non_max_suppression(preds, conf_thres, iou_thres, multi_label=multi_label, max_det=max_det)
                dets_orig = [scale_boxes(d, m) for d, m in zip(dets, metas)]
            else:  # each original image tiled at slice px, merged by the slicing module
                dets_orig = [torch.zeros((0, 6)) if m.get("unreadable") else
                             sliced(model, _read_orig(dataset, p, m), slice=slice, overlap=overlap,
                                    conf_thres=conf_thres, iou_thres=iou_thres, max_det=max_det, imgsz=imgsz,
                                    full=slice_full, multi_label=multi_label, half=amp) for p, m in zip(paths, metas)]
                dets = None
                t2 = _sync(dev)  # tiling, forward and merge all count as inference
            if single_cls:
                for d in dets_orig:
                    d[:, 5] = 0
            t3 = _sync(dev)
            t_pre, t_inf, t_nms, n_img = t_pre + t1 - t0, t_inf + t2 - t1, t_nms + t3 - t2, n_img + len(imgs)
            t5 = time.perf_counter()
            for i, (d, meta) in enumerate(zip(dets_orig, metas)):
                if meta.get("unreadable"):  # the loader warned and named it; scored as if not in the split
                    n_unreadable += 1
                    continue
                gt = _gt_orig(targets, i, meta, single_cls)
                d = d.detach().cpu().double()
                image_id = int(meta["image_id"])
                seen_ids.append(image_id)
                stats.update(d, gt, image_id)
                if confusion is not None:
                    confusion.update(d, gt)
                if save_json or not fast:  # the COCO evaluation runs on exactly these records
                    jdict += to_coco_results(d, image_id, cat_ids if not single_cls else cat_ids[:1])
                if save_txt:
                    write_txt(d, meta, save_dir / "labels" / (txt_stem(paths[i]) + ".txt"))
            t_match += time.perf_counter() - t5
            if plots and bi < 3 and dets is not None:
                from utils.plots.evaluation import plot_predictions
                plot_predictions(imgs, dets, targets, names, save_dir / f"val_batch{bi}_pred.jpg", paths=paths)
    finally:
        if was_training:
            model.train()
    if n_img == 0 or n_unreadable == n_img:
        raise ValueError(f"{data_src}: the {split} split yielded no {'readable ' if n_img else ''}images")
    if n_unreadable:
        LOG.warning(f"{n_unreadable} of {n_img} {split} images could not be decoded and were left out of the scores")

    speed = {"preprocess": 1e3 * t_pre / n_img, "inference": 1e3 * t_inf / n_img, "nms": 1e3 * t_nms / n_img}
    t4 = time.perf_counter()
    fast_res = stats.compute()
    speed["match"] = 1e3 * (time.perf_counter() - t4 + t_match) / n_img  # in-memory matching + accumulate
    t4 = time.perf_counter()
    if fast:
        res = {k: fast_res[k] for k in fast_res if k in FIGURES}
    else:
        json_path = getattr(dataset, "json_path", None)
        if not json_path:
            raise ValueError("val.run: the dataset has no json_path; the COCO evaluation needs its annotation file")
        coco = coco_eval(json_path, jdict, img_ids=seen_ids, use_cats=not single_cls)
        res = {k: coco[k] for k in FIGURES if k in coco}
        res["AP_fast"], res["AP50_fast"] = fast_res["AP"], fast_res["AP50"]
        for row in fast_res["per_class"]:  # COCO's per-class AP replaces the in-memory one
            pc = coco["per_class"].get(-1 if single_cls else int(cat_ids[row["class"]]), {})
            row["AP"], row["AP50"] = pc.get("AP", -1.0), pc.get("AP50", -1.0)
    speed["coco"] = 1e3 * (time.perf_counter() - t4) / n_img  # pycocotools (0 on the fast path)
    per_class = fast_res["per_class"]
    for row in per_class:
        row["name"] = names[row["class"]]
        row["category_id"] = int(cat_ids[row["class"]]) if not single_cls else -1
    res.update(precision=fast_res["precision"], recall=fast_res["recall"], per_class=per_class, speed=speed,
               images=fast_res["images"], instances=fast_res["instances"], unreadable_images=n_unreadable,
               fitness=0.1 * max(res["AP50"], 0) + 0.9 * max(res["AP"], 0),
               save_dir=str(save_dir) if save_dir else "")
    if verbose:
        print_results(res, names, shape, fast)
    if save_dir is not None:
        if save_json:
            (save_dir / "predictions.json").write_text(json.dumps(jdict))
        if plots:
            save_plots(save_dir, res, fast_res, confusion, names, coco if not fast else None, cat_ids)
        meta = {"data": str(data_src), "weights": str(weights) if weights else None, "task": task, "imgsz": imgsz,
                "conf_thres": conf_thres, "iou_thres": iou_thres, "max_det": max_det, "slice": slice,
                "overlap": overlap if slice else None, "slice_full": slice_full if slice else None,
                "area_ranges_px2": {k: list(v) for k, v in AREA_RANGES.items()}}
        (save_dir / "metrics.json").write_text(json.dumps({**res, **meta}, indent=1))
        if verbose:
            LOG.info(f"Results saved to {save_dir}")
    return res


def parse_opt(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    a = p.add_argument
    a("--data", type=str, default="data/shapes.yaml", help="data YAML")
    a("--weights", type=str, required=True, help="checkpoint .pt, or .onnx / .torchscript from export.py")
    a("--imgsz", "--img", type=int, default=640, help="inference size (pixels)")
    a("--batch-size", type=int, default=32)
    a("--conf-thres", type=float, default=0.001)
    a("--iou-thres", type=float, default=0.6, help="NMS IoU threshold")
    a("--max-det", type=int, default=300)
    a("--task", default="val", choices=TASKS)
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

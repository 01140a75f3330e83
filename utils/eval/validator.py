"""The validation engine: predictions on a split (plain or sliced), timing, scoring and output files.

``validate`` is what val.py's CLI and ``val.run`` call, and what training calls each epoch (with
``TRAINING_EVAL``) and once at the end (with the default ``FULL_EVAL``). The full evaluation's AP figures
are pycocotools' own on predictions.json (utils/eval/coco.py); the in-memory scorer uses
utils/eval/metrics.py's DetectionStats (COCO's matching rule, ground truth from the loader).
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from utils.eval.inputs import check_classes, gt_orig, load_data, load_scored_model, read_orig
from utils.eval.metrics import ConfusionMatrix, DetectionStats, coco_eval
from utils.eval.protocols import Protocol, get_protocol
from utils.eval.report import print_results, save_plots, write_txt
from utils.inference.postprocess import non_max_suppression, scale_boxes, to_coco_results
from utils.logger import LOG
from utils.paths import UniqueStems, increment_path

TASKS = ("val", "test", "speed")
SCORERS = ("pycocotools", "memory")


@dataclass(frozen=True)
class EvalOptions:
    """How a validation is scored and shown.

    scorer: 'pycocotools' (COCOeval on the predictions; needs the split's json) or 'memory' (the
        in-memory evaluator alone: no json, no COCOeval, a fraction of the time).
    memory_areas: the area ranges the in-memory evaluator scores; 'all' first, each extra range costs
        one more matching pass.
    progress: show the progress bar even when verbose is off (training's per-epoch bar).
    """
    scorer: str = "pycocotools"
    memory_areas: tuple[str, ...] = ("all",)
    progress: bool = False

    def __post_init__(self) -> None:
        if self.scorer not in SCORERS:
            raise ValueError(f"EvalOptions: scorer must be one of {SCORERS}, got {self.scorer!r}")


FULL_EVAL = EvalOptions()  # val.py and the end of training: pycocotools' figures
# every epoch of training (and --task speed): in-memory figures for all and small boxes, the bar always shown
TRAINING_EVAL = EvalOptions(scorer="memory", memory_areas=("all", "small"), progress=True)


def _sync(device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()


@torch.no_grad()
def validate(data: str | dict = "data/shapes.yaml", weights: str | None = None, model: torch.nn.Module | None = None,
             dataloader: Any = None, batch_size: int = 32, imgsz: int = 640, conf_thres: float = 0.001,
             iou_thres: float = 0.6, max_det: int | None = None, task: str = "val", device: str = "",
             save_json: bool = True, save_txt: bool = False, slice: int = 0, overlap: float = 0.2,
             slice_full: bool = False, project: str = "runs/val", name: str = "exp", exist_ok: bool = False,
             plots: bool = True, half: bool = False, verbose: bool = True, single_cls: bool = False,
             workers: int = 2, multi_label: bool = True, rect_pad: float = 0.0, protocol: str | Protocol = "coco",
             options: EvalOptions = FULL_EVAL) -> dict[str, Any]:
    """Evaluate weights (a checkpoint path) or an in-memory model on the data's `task` split.
    Returns the protocol's figures (COCO: AP, AP50, AP75, APs, APm, APl, AP_vt (<8 px), AP_t (8-16),
    AP_s16 (16-32), AP_tiny (<16), AR*; AI-TOD: AP, AP50, AP75, AP_vt, AP_t, AP_s16, AP_m32 (>=32), AR100,
    AR300, AR1500, AR_*), precision, recall, per_class, speed (ms per image), fitness (0.1 AP50 + 0.9 AP),
    save_dir. max_det None keeps the protocol's count (COCO 300, AI-TOD 1500) after NMS.
    multi_label False: each box keeps its best class only (Ultralytics' predict); rect_pad: the rect batch shapes
    grow by this many strides (YOLOv5's val.py scores at 0.5: 256 px images run at 288).
    slice > 0: each original image is read from disk and run in slice px windows (utils/inference/slicing.py,
    plus a full-image pass with slice_full); the loader then only supplies labels, paths and metas."""
    if task not in TASKS:
        raise ValueError(f"val.run: task must be one of {TASKS}, got {task!r}")
    proto = get_protocol(protocol)
    if task == "speed":  # timings only: YOLOv5's speed settings, nothing written
        conf_thres, iou_thres, save_json, save_txt, plots, options = 0.25, 0.45, False, False, False, TRAINING_EVAL
    if options.scorer == "memory" and proto.name != "coco":
        raise ValueError(f"--protocol {proto.name} is scored by pycocotools only; the in-memory scorer "
                         f"(training, --task speed) implements COCO's protocol")
    if max_det is None:  # COCO keeps YOLOv5's 300 (COCOeval reads 100); AI-TOD needs all 1,500 it scores
        max_det = max(300, proto.max_det)
    elif max_det < proto.max_det:
        LOG.warning(f"WARNING --max-det {max_det} keeps fewer boxes per image than the {proto.title} protocol "
                    f"scores ({proto.max_det}); its AP and AR can only come out lower")
    model, dev, src = load_scored_model(model, weights, device)
    data_src = data if isinstance(data, str) else data.get("yaml_file", "<data dict>")
    data = load_data(data)
    names = ["object"] if single_cls else list(data["names"])
    nc = len(names)
    check_classes(int(model.nc), list(getattr(model, "names", []) or []), names, single_cls, src, str(data_src))
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
                                                shuffle=False, workers=workers, names=data["names"], rect_pad=rect_pad)
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

    stats = DetectionStats(nc if not single_cls else 1, options.memory_areas, use_cats=not single_cls,
                           max_det=proto.max_det)  # the in-memory figures count the detections the protocol does
    confusion = ConfusionMatrix(nc) if plots else None
    keep_records = save_json or options.scorer == "pycocotools"  # COCOeval runs on exactly these records
    jdict: list[dict] = []
    seen_ids: list[int] = []
    t_pre = t_inf = t_nms = t_match = 0.0
    n_img = n_unreadable = 0
    shape = None
    try:  # the caller's model goes back to train mode even if evaluation fails
        bar = tqdm(dataloader, desc=f"{split:>10}", leave=verbose, disable=not (verbose or options.progress),
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
                             sliced(model, read_orig(dataset, p, m), slice=slice, overlap=overlap,
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
                gt = gt_orig(targets, i, meta, single_cls)
                d = d.detach().cpu().double()
                image_id = int(meta["image_id"])
                seen_ids.append(image_id)
                stats.update(d, gt, image_id)
                if confusion is not None:
                    confusion.update(d, gt)
                if keep_records:
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
    coco = None
    if options.scorer == "memory":
        res = {k: fast_res[k] for k in fast_res if k in proto.figures}
    else:
        json_path = getattr(dataset, "json_path", None)
        if not json_path:
            raise ValueError("val.run: the dataset has no json_path; the COCO evaluation needs its annotation file")
        coco = coco_eval(json_path, jdict, img_ids=seen_ids, use_cats=not single_cls, protocol=proto)
        res = {k: coco[k] for k in proto.figures if k in coco}
        res["AP_fast"], res["AP50_fast"] = fast_res["AP"], fast_res["AP50"]
        for row in fast_res["per_class"]:  # COCO's per-class AP replaces the in-memory one
            pc = coco["per_class"].get(-1 if single_cls else int(cat_ids[row["class"]]), {})
            row["AP"], row["AP50"] = pc.get("AP", -1.0), pc.get("AP50", -1.0)
    speed["coco"] = 1e3 * (time.perf_counter() - t4) / n_img  # pycocotools (0 with the in-memory scorer)
    per_class = fast_res["per_class"]
    for row in per_class:
        row["name"] = names[row["class"]]
        row["category_id"] = int(cat_ids[row["class"]]) if not single_cls else -1
    res.update(precision=fast_res["precision"], recall=fast_res["recall"], per_class=per_class, speed=speed,
               images=fast_res["images"], instances=fast_res["instances"], unreadable_images=n_unreadable,
               fitness=0.1 * max(res["AP50"], 0) + 0.9 * max(res["AP"], 0),
               save_dir=str(save_dir) if save_dir else "")
    if verbose:
        print_results(res, names, shape, options.scorer, proto)
    if save_dir is not None:
        if save_json:
            (save_dir / "predictions.json").write_text(json.dumps(jdict))
        if plots:
            save_plots(save_dir, res, fast_res, confusion, names, coco, cat_ids)
        meta = {"data": str(data_src), "weights": str(weights) if weights else None, "task": task, "imgsz": imgsz,
                "conf_thres": conf_thres, "iou_thres": iou_thres, "max_det": max_det, "slice": slice,
                "overlap": overlap if slice else None, "slice_full": slice_full if slice else None,
                "protocol": proto.name, "eval_max_dets": list(proto.max_dets),
                "area_ranges_px2": {k: list(v) for k, v in proto.area_ranges.items()}}
        (save_dir / "metrics.json").write_text(json.dumps({**res, **meta}, indent=1))
        if verbose:
            LOG.info(f"Results saved to {save_dir}")
    return res

"""The validator: predictions on a split (plain or sliced), scored, timed and written, in named steps.

``Validator(settings)(model=None)`` is what val.py runs and what training runs each epoch (with
``ValSettings.training``) and once at the end (plain ``ValSettings``: pycocotools' figures). Each batch goes
through ``preprocess`` -> ``inference`` -> ``postprocess`` -> ``update_metrics``, then ``finalize`` scores the
split; one StepTimer times the steps for the speed line. The inference and postprocess steps are
utils/inference/predict.py's ``forward`` and ``postprocess``, the same code detect.py runs. The full
evaluation's AP figures are pycocotools' own on predictions.json (utils/eval/coco.py); the in-memory scorer is
utils/eval/metrics.py's DetectionStats (COCO's matching rule, ground truth from the loader).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, NamedTuple

import torch
from tqdm import tqdm

from utils.eval.inputs import check_classes, gt_orig, load_data, load_scored_model, read_orig
from utils.eval.metrics import ConfusionMatrix, DetectionStats, coco_eval
from utils.eval.protocols import get_protocol
from utils.eval.report import print_results, save_plots
from utils.eval.settings import ValSettings
from utils.inference.postprocess import scale_boxes, to_coco_results
from utils.inference.predict import forward, postprocess
from utils.inference.slicing import sliced_predict
from utils.inference.writer import write_txt
from utils.logger import LOG
from utils.paths import UniqueStems
from utils.run_lock import claim_run_dir
from utils.torch_utils import StepTimer

# the speed line's name for each step's time (print_results, metrics.json); 'match' includes accumulating
SPEED_KEYS = {"preprocess": "preprocess", "inference": "inference", "postprocess": "nms", "update_metrics": "match",
              "finalize": "coco"}


class Batch(NamedTuple):
    imgs: torch.Tensor      # the loader's uint8 (B, 3, H, W) letterboxed images
    x: torch.Tensor         # the model input: float in [0, 1] on the model's device
    targets: torch.Tensor   # (n, 6) [image, cls, cx, cy, w, h] in letterboxed pixels, on the CPU
    paths: list
    metas: list


class Validator:
    """Evaluate ``settings.weights`` (a checkpoint path) or an in-memory model on the data's split.

    Calling it returns the protocol's figures (COCO: AP, AP50, AP75, APs, APm, APl, AP_vt (<8 px), AP_t
    (8-16), AP_s16 (16-32), AP_tiny (<16), AR*; AI-TOD: AP, AP50, AP75, AP_vt, AP_t, AP_s16, AP_m32 (>=32),
    AR100, AR300, AR1500, AR_*), precision, recall, per_class, speed (ms per image of each step), fitness
    (0.1 AP50 + 0.9 AP), save_dir. A dataloader given is reused by every call (training's per-epoch
    evaluation); with slice set it only supplies labels, paths and metas."""

    def __init__(self, settings: ValSettings | None = None, dataloader: Any = None):
        self.settings = settings or ValSettings()
        self.dataloader = dataloader

    @torch.no_grad()
    def __call__(self, model: torch.nn.Module | None = None) -> dict[str, Any]:
        self.setup(model)
        was_training = self.model.training
        if isinstance(self.model, torch.nn.Module):  # an exported model (utils/inference/backends.py) is in eval mode
            self.model.eval()
        s, timer = self.settings, self.timer
        try:  # the caller's model goes back to train mode even if evaluation fails
            bar = tqdm(self.loader, desc=f"{s.split:>10}", leave=s.verbose, disable=not (s.verbose or s.progress),
                       bar_format="{l_bar}{bar:20}{r_bar}")
            for bi, raw in enumerate(bar):
                with timer("preprocess"):
                    batch = self.preprocess(raw)
                with timer("inference"):  # sliced: tiling, forward and merge all count as inference
                    pred = self.inference(batch)
                with timer("postprocess"):
                    dets, dets_orig = self.postprocess(pred, batch)
                with timer("update_metrics"):
                    self.update_metrics(dets_orig, batch)
                if s.plots and bi < 3 and dets is not None:
                    from utils.plots.evaluation import plot_predictions
                    plot_predictions(batch.imgs, dets, batch.targets, self.names,
                                     self.save_dir / f"val_batch{bi}_pred.jpg", paths=batch.paths)
        finally:
            if was_training:
                self.model.train()
        return self.finalize()

    # ------------------------------------------------------------------ setup
    def setup(self, model: torch.nn.Module | None) -> None:
        """Model, data, loader, run folder and the empty scorers of one evaluation."""
        s = self.settings
        self.proto = proto = get_protocol(s.protocol)
        if s.max_det is None:  # COCO keeps YOLOv5's 300 (COCOeval reads 100); AI-TOD needs all 1,500 it scores
            self.max_det = max(300, proto.max_det)
        else:
            self.max_det = s.max_det
            if s.max_det < proto.max_det:
                LOG.warning(f"WARNING --max-det {s.max_det} keeps fewer boxes per image than the {proto.title} "
                            f"protocol scores ({proto.max_det}); its AP and AR can only come out lower")
        self.model, self.device, src = load_scored_model(model, s.weights, s.device)
        self.data_src = s.data if isinstance(s.data, str) else s.data.get("yaml_file", "<data dict>")
        data = load_data(s.data)
        self.names = names = ["object"] if s.single_cls else list(data["names"])
        nc = len(names)
        check_classes(int(self.model.nc), list(getattr(self.model, "names", []) or []), names, s.single_cls, src,
                      str(self.data_src))
        self.amp = s.half and self.device.type == "cuda"  # autocast, never .half(): the caller's model (EMA) stays fp32
        self.loader = self.dataloader
        if self.loader is None:
            if s.split not in data or not data[s.split]:
                raise ValueError(f"{self.data_src}: no '{s.split}' split defined")
            from utils.data.dataset import create_dataloader
            gs = max(int(self.model.stride.max()), 32)
            self.loader, _ = create_dataloader(data[s.split], s.imgsz, s.batch_size, gs, rect=True, augment=False,
                                               shuffle=False, workers=s.workers, names=data["names"],
                                               rect_pad=s.rect_pad)
        self.dataset = self.loader.dataset
        if len(self.dataset) == 0:
            raise ValueError(f"{self.data_src}: the {s.split} split has no images "
                             f"({getattr(self.dataset, 'json_path', '')})")
        self.cat_ids = list(getattr(self.dataset, "cat_ids", None) or data.get("cat_ids") or range(1, nc + 1))

        self.save_dir = self.lock = None
        if s.save_json or s.save_txt or s.plots:  # one writer per folder (a second val.py --exist-ok is refused)
            self.save_dir, self.lock = claim_run_dir(Path(s.project) / s.name, s.exist_ok)
            if s.save_txt:
                (self.save_dir / "labels").mkdir(exist_ok=True)
        self.txt_stem = UniqueStems()  # a/x.jpg and b/x.jpg must not write the same labels/x.txt

        self.stats = DetectionStats(nc if not s.single_cls else 1, s.memory_areas, use_cats=not s.single_cls,
                                    max_det=proto.max_det)  # the in-memory figures count what the protocol does
        self.confusion = ConfusionMatrix(nc) if s.plots else None
        self.keep_records = s.save_json or s.scorer == "pycocotools"  # COCOeval runs on exactly these records
        self.jdict: list[dict] = []
        self.seen_ids: list[int] = []
        self.n_img = self.n_unreadable = 0
        self.shape: tuple | None = None
        self.timer = StepTimer(self.device)

    # ------------------------------------------------------------------ the steps
    def preprocess(self, raw: tuple) -> Batch:
        """The loader's (imgs, targets, paths, metas) -> the model input on its device."""
        imgs, targets, paths, metas = raw
        x = imgs.to(self.device, non_blocking=True).float() / 255
        self.shape = self.shape or tuple(x.shape)
        self.n_img += len(imgs)
        return Batch(imgs, x, targets.to("cpu"), paths, metas)

    def inference(self, batch: Batch) -> Any:
        """The model's decoded output; sliced: each original image tiled, run and merged (original pixels)."""
        s = self.settings
        if not s.slice:
            return forward(self.model, batch.x, self.amp)
        return [torch.zeros((0, 6)) if m.get("unreadable") else
                sliced_predict(self.model, read_orig(self.dataset, p, m), slice=s.slice, overlap=s.overlap,
                               conf_thres=s.conf_thres, iou_thres=s.iou_thres, max_det=self.max_det, imgsz=s.imgsz,
                               full=s.slice_full, merge=s.slice_merge, multi_label=s.multi_label, half=self.amp)
                for p, m in zip(batch.paths, batch.metas)]

    def postprocess(self, pred: Any, batch: Batch) -> tuple[list[torch.Tensor] | None, list[torch.Tensor]]:
        """(detections in the batch's pixels (None when sliced), detections in original pixels)."""
        s = self.settings
        if not s.slice:
            dets = postprocess(pred, s.conf_thres, s.iou_thres, max_det=self.max_det, multi_label=s.multi_label)
            dets_orig = [scale_boxes(d, m) for d, m in zip(dets, batch.metas)]
        else:
            dets, dets_orig = None, pred
        if s.single_cls:
            for d in dets_orig:
                d[:, 5] = 0
        return dets, dets_orig

    def update_metrics(self, dets_orig: list[torch.Tensor], batch: Batch) -> None:
        """Match each image's detections to its labels; keep the COCO records and write the txt files."""
        s = self.settings
        for i, (d, meta) in enumerate(zip(dets_orig, batch.metas)):
            if meta.get("unreadable"):  # the loader warned and named it; scored as if not in the split
                self.n_unreadable += 1
                continue
            gt = gt_orig(batch.targets, i, meta, s.single_cls)
            d = d.detach().cpu().double()
            image_id = int(meta["image_id"])
            self.seen_ids.append(image_id)
            self.stats.update(d, gt, image_id)
            if self.confusion is not None:
                self.confusion.update(d, gt)
            if self.keep_records:
                self.jdict += to_coco_results(d, image_id, self.cat_ids if not s.single_cls else self.cat_ids[:1])
            if s.save_txt:
                write_txt(d, meta, self.save_dir / "labels" / (self.txt_stem(batch.paths[i]) + ".txt"))

    def finalize(self) -> dict[str, Any]:
        """Score the split (in memory, and with pycocotools unless the scorer is 'memory'), report and write."""
        s, proto, timer = self.settings, self.proto, self.timer
        n_img, n_unreadable = self.n_img, self.n_unreadable
        if n_img == 0 or n_unreadable == n_img:
            raise ValueError(f"{self.data_src}: the {s.split} split yielded no {'readable ' if n_img else ''}images")
        if n_unreadable:
            LOG.warning(f"{n_unreadable} of {n_img} {s.split} images could not be decoded and were left out of "
                        f"the scores")
        with timer("update_metrics"):  # accumulating counts as matching
            fast_res = self.stats.compute()
        with timer("finalize"):
            res, coco = self.score(fast_res)
        res["speed"] = timer.ms_per(n_img, SPEED_KEYS)  # ms per image of each step
        if s.verbose:
            print_results(res, self.names, self.shape, s.scorer, proto)
        if self.save_dir is not None:
            self.write(res, fast_res, coco)
        if self.lock is not None:  # on an error it is released when this frame goes (utils/run_lock.py)
            self.lock.release()
        return res

    # ------------------------------------------------------------------ scoring and outputs
    def score(self, fast_res: dict) -> tuple[dict[str, Any], dict | None]:
        """(figures, pycocotools' raw results or None) from the in-memory results and the kept records."""
        s, proto, cat_ids = self.settings, self.proto, self.cat_ids
        coco = None
        if s.scorer == "memory":
            res = {k: fast_res[k] for k in fast_res if k in proto.figures}
        else:
            json_path = getattr(self.dataset, "json_path", None)
            if not json_path:
                raise ValueError("val.run: the dataset has no json_path; the COCO evaluation needs its annotation "
                                 "file")
            coco = coco_eval(json_path, self.jdict, img_ids=self.seen_ids, use_cats=not s.single_cls, protocol=proto)
            res = {k: coco[k] for k in proto.figures if k in coco}
            res["AP_fast"], res["AP50_fast"] = fast_res["AP"], fast_res["AP50"]
            for row in fast_res["per_class"]:  # COCO's per-class AP replaces the in-memory one
                pc = coco["per_class"].get(-1 if s.single_cls else int(cat_ids[row["class"]]), {})
                row["AP"], row["AP50"] = pc.get("AP", -1.0), pc.get("AP50", -1.0)
        per_class = fast_res["per_class"]
        for row in per_class:
            row["name"] = self.names[row["class"]]
            row["category_id"] = int(cat_ids[row["class"]]) if not s.single_cls else -1
        res.update(precision=fast_res["precision"], recall=fast_res["recall"], per_class=per_class, speed={},
                   images=fast_res["images"], instances=fast_res["instances"], unreadable_images=self.n_unreadable,
                   fitness=0.1 * max(res["AP50"], 0) + 0.9 * max(res["AP"], 0),
                   save_dir=str(self.save_dir) if self.save_dir else "")
        return res, coco

    def write(self, res: dict[str, Any], fast_res: dict, coco: dict | None) -> None:
        """predictions.json, the plots and metrics.json (figures and the settings that made them)."""
        s, proto, save_dir = self.settings, self.proto, self.save_dir
        if s.save_json:
            (save_dir / "predictions.json").write_text(json.dumps(self.jdict))
        if s.plots:
            save_plots(save_dir, res, fast_res, self.confusion, self.names, coco, self.cat_ids)
        meta = {"data": str(self.data_src), "weights": str(s.weights) if s.weights else None, "task": s.task,
                "imgsz": s.imgsz, "conf_thres": s.conf_thres, "iou_thres": s.iou_thres, "max_det": self.max_det,
                "slice": s.slice, "overlap": s.overlap if s.slice else None,
                "slice_full": s.slice_full if s.slice else None, "slice_merge": s.slice_merge if s.slice else None,
                "protocol": proto.name, "eval_max_dets": list(proto.max_dets),
                "area_ranges_px2": {k: list(v) for k, v in proto.area_ranges.items()}}
        (save_dir / "metrics.json").write_text(json.dumps({**res, **meta}, indent=1))
        if s.verbose:
            LOG.info(f"Results saved to {save_dir}")

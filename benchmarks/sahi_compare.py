"""Our sliced inference against SAHI's on the same model: AP (pycocotools, one json) and images/s, one thread.

    python -m benchmarks.sahi_compare --weights /tmp/w38/runs/train/weights/last.pt \
        --data data/aerial-cars.yaml --slice 640 --overlap 0.2 --conf 0.01 --iou 0.5 \
        --out benchmarks/results/sahi-compare-aerial-cars.json

SAHI (the PyPI package sahi, requirements-bench.txt) runs get_sliced_prediction with SmalldetSahiModel, a
sahi DetectionModel that calls our model exactly as our --slice does (each window resized and padded by
utils/inference/slicing.model_tile_predictor, the full-image pass letterboxed by predict_image, per-window
NMS at --conf / --iou). Our side is utils/inference/slicing.sliced_predict on the same fused weights, on
SAHI's window layout (sahi.slicing.get_slice_bboxes, passed as windows=), so both see identical windows and
differ only in how the work is organised (we batch --batch windows per forward; SAHI's default is one) and
in the merge's implementation. Four settings a side: merge NMS by IoU, and SAHI's default GREEDYNMM
matched by IoS (ours: merge='greedy-nmm'), each with and without the full-image pass (SAHI's
perform_standard_pred; ours full=True). The threshold of the merge is --iou on both sides, and SAHI's
switch to NMS below confidence 0.1 is turned off (force_postprocess_type) so that GREEDYNMM stays GREEDYNMM.
Both keep --max-det boxes per window (the per-window NMS) and per image (SAHI keeps every merged box: its
output is cut to the --max-det best, as ours is; COCO AP reads the best 100 per image anyway).

Timing: each image is decoded once (decoding is not timed; SAHI gets the RGB array, we the BGR one) and
every setting of both sides runs on it in turn, so that the load of a shared machine falls on all of them
alike; images/s = images / the summed seconds, and the share of it spent in the network's forward is
reported too (the rest is slicing, NMS, merging and bookkeeping).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]

SETTINGS = [  # (name, our merge, our metric, SAHI postprocess_type, SAHI match metric, full-image pass)
    ("nms", "nms", "iou", "NMS", "IOU", False),
    ("nms+full", "nms", "iou", "NMS", "IOU", True),
    ("greedy-nmm-ios", "greedy-nmm", "ios", "GREEDYNMM", "IOS", False),
    ("greedy-nmm-ios+full", "greedy-nmm", "ios", "GREEDYNMM", "IOS", True),
]


class TimedForward(torch.nn.Module):
    """The model with its forward timed (seconds summed in .seconds); attributes pass through."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model, self.seconds = model, 0.0

    def forward(self, x: torch.Tensor) -> Any:
        sync = torch.cuda.synchronize if x.is_cuda else (lambda: None)  # a GPU's forward ends when its kernels do
        sync()
        t = time.perf_counter()
        out = self.model(x)
        sync()
        self.seconds += time.perf_counter() - t
        return out

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(self._modules["model"], name)


def sahi_windows(h: int, w: int, size: int, overlap: float) -> list[tuple[int, int, int, int]]:
    """SAHI's own window layout for an h x w image (its get_slice_bboxes, as get_sliced_prediction cuts)."""
    from sahi.slicing import get_slice_bboxes
    return [tuple(b) for b in get_slice_bboxes(h, w, size, size, False, overlap, overlap)]


def sahi_model(model: torch.nn.Module, slice: int, imgsz: int, conf: float, iou: float, max_det: int,
               names: list[str]) -> Any:
    """A sahi DetectionModel running our model: windows through model_tile_predictor (in one batch
    per call, grouped by shape, at the zoom sliced_predict uses), the full image through predict_image."""
    from sahi.models.base import DetectionModel
    from sahi.prediction import ObjectPrediction
    from sahi.utils.compatibility import fix_full_shape_list, fix_shift_amount_list

    from utils.inference.predict import predict_image
    from utils.inference.slicing import model_tile_predictor

    kw = dict(conf_thres=conf, iou_thres=iou, max_det=max_det)

    class SmalldetSahiModel(DetectionModel):
        def check_dependencies(self, packages: list[str] | None = None) -> None:
            pass  # our model needs nothing SAHI knows of

        def load_model(self) -> None:
            raise ValueError("SmalldetSahiModel takes a loaded model: model=")

        def set_model(self, model: Any, **kwargs: Any) -> None:
            self.model = model
            self.category_mapping = {str(i): n for i, n in enumerate(names)}

        def perform_inference(self, image: np.ndarray) -> None:
            """The full-image pass (get_prediction): SAHI hands RGB, our predictors take BGR."""
            self._original_predictions = [predict_image(self.model, image[..., ::-1], imgsz, **kw)]

        def perform_batch_inference(self, images: list[np.ndarray]) -> None:
            """The windows of one batch; an image smaller than the window is one window of its size,
            zoomed as sliced_predict zooms it."""
            dets: list[torch.Tensor | None] = [None] * len(images)
            shapes = sorted({im.shape[:2] for im in images})
            for hw in shapes:
                idx = [i for i, im in enumerate(images) if im.shape[:2] == hw]
                pred = model_tile_predictor(self.model, min(slice, max(hw)), imgsz, **kw)
                for i, d in zip(idx, pred([images[i][..., ::-1] for i in idx])):
                    d = d.float().cpu().clone()  # clipped to the window, as sliced_inference clips
                    d[:, [0, 2]] = d[:, [0, 2]].clamp(0, hw[1])
                    d[:, [1, 3]] = d[:, [1, 3]].clamp(0, hw[0])
                    dets[i] = d[(d[:, 2] > d[:, 0]) & (d[:, 3] > d[:, 1])]
            self._original_predictions = dets
            self._batch_images = None  # the predictions are made: no per-image pass in convert

        @property
        def num_categories(self) -> int:
            return len(names)

        @property
        def has_mask(self) -> bool:
            return False

        @property
        def category_names(self) -> list[str]:
            return list(names)

        def _create_object_prediction_list_from_original_predictions(
                self, shift_amount_list: list | None = None, full_shape_list: list | None = None) -> None:
            shifts = fix_shift_amount_list(shift_amount_list or [[0, 0]])
            shapes = fix_full_shape_list(full_shape_list)
            out = []
            for k, det in enumerate(self._original_predictions):
                out.append([ObjectPrediction(bbox=row[:4], category_id=int(row[5]), score=row[4],
                                             category_name=names[int(row[5])], shift_amount=shifts[k],
                                             full_shape=None if shapes is None else shapes[k])
                            for row in det.tolist()])
            self._object_prediction_list_per_image = out

    return SmalldetSahiModel(model=model, confidence_threshold=conf, device="cpu", load_at_init=True,
                             image_size=imgsz)


def run_sahi(smodel: Any, rgb: np.ndarray, slice: int, overlap: float, iou: float, postprocess: str,
             metric: str, full: bool, batch: int = 1, max_det: int = 0) -> torch.Tensor:
    """SAHI's get_sliced_prediction -> (n, 6) [x1, y1, x2, y2, conf, cls] in the image's pixels; with
    max_det, its max_det best (ours keeps that many after the merge; SAHI keeps all)."""
    from sahi.predict import get_sliced_prediction
    res = get_sliced_prediction(rgb, smodel, slice_height=slice, slice_width=slice, overlap_height_ratio=overlap,
                                overlap_width_ratio=overlap, perform_standard_pred=full, postprocess_type=postprocess,
                                postprocess_match_metric=metric, postprocess_match_threshold=iou,
                                postprocess_class_agnostic=False, verbose=0, force_postprocess_type=True,
                                batch_size=batch)
    rows = [[*p.bbox.to_xyxy(), p.score.value, p.category.id] for p in res.object_prediction_list]
    det = torch.tensor(rows, dtype=torch.float32).reshape(-1, 6)
    if max_det and len(det) > max_det:
        det = det[torch.sort(det[:, 4], descending=True, stable=True).indices[:max_det]]
    return det


def run_ours(model: torch.nn.Module, bgr: np.ndarray, slice: int, overlap: float, conf: float, iou: float,
             max_det: int, merge: str, metric: str, full: bool, batch: int, windows: list | None) -> torch.Tensor:
    from utils.inference.slicing import sliced_predict
    return sliced_predict(model, bgr, slice=slice, overlap=overlap, conf_thres=conf, iou_thres=iou, max_det=max_det,
                          imgsz=slice, batch=batch, full=full, merge=merge, windows=windows, metric=metric)


def coco_rows(det: torch.Tensor, image_id: int, cat_ids: list[int]) -> list[dict[str, Any]]:
    return [{"image_id": image_id, "category_id": cat_ids[int(c)], "bbox": [x1, y1, x2 - x1, y2 - y1], "score": s}
            for x1, y1, x2, y2, s, c in det.tolist()]


def _same(a: torch.Tensor, b: torch.Tensor, tol: float = 1e-3) -> bool:
    """Whether two detection sets are equal up to order and float noise."""
    if a.shape != b.shape:
        return False
    key = lambda d: d[torch.from_numpy(np.lexsort(d.numpy().T[::-1].round(2)))]  # noqa: E731
    return bool(torch.allclose(key(a), key(b), atol=tol))


def summarize(rows: dict[str, dict], names: list[str], identical: dict[str, int], n: int) -> dict[str, dict]:
    """Per setting: AP difference, speed ratio, and the time outside the network's forward per image
    (slicing, NMS, merge, bookkeeping: the part where the two implementations differ) and its ratio."""
    out = {}
    for name in names:
        o, s = rows[f"ours:{name}"], rows[f"sahi:{name}"]
        rest = {k: r["seconds"] * (1 - r["forward_share"]) / n for k, r in (("ours", o), ("sahi", s))}
        out[name] = {"AP_ours_minus_sahi": round(o["AP"] - s["AP"], 4),
                     "speed_ratio_ours_over_sahi": round(o["images_per_s"] / s["images_per_s"], 3),
                     "non_forward_s_per_image": {k: round(v, 4) for k, v in rest.items()},
                     "non_forward_ratio_sahi_over_ours": round(rest["sahi"] / max(rest["ours"], 1e-9), 2),
                     "images_with_identical_detections": f"{identical[name]}/{n}"}
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weights", required=True)
    ap.add_argument("--data", default="data/aerial-cars.yaml")
    ap.add_argument("--split", default="val")
    ap.add_argument("--data-root")
    ap.add_argument("--slice", type=int, default=640)
    ap.add_argument("--overlap", type=float, default=0.2)
    ap.add_argument("--conf", type=float, default=0.01)
    ap.add_argument("--iou", type=float, default=0.5, help="per-window NMS and merge threshold, both sides")
    ap.add_argument("--max-det", type=int, default=1000)
    ap.add_argument("--batch", type=int, default=4, help="our windows per forward")
    ap.add_argument("--sahi-batch", type=int, default=1, help="SAHI's batch_size (its default 1)")
    ap.add_argument("--max-images", type=int, default=0, help="first N images (0 = all)")
    ap.add_argument("--settings", nargs="+", default=[s[0] for s in SETTINGS], choices=[s[0] for s in SETTINGS])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default="cpu", help="cpu, or a CUDA index (benchmarks/gpu_sahi.sh)")
    ap.add_argument("--out", default="benchmarks/results/sahi-compare-aerial-cars.json")
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    import sahi

    from utils.data.config import load_data_config
    from utils.data.image_io import read_image
    from utils.eval.coco import coco_eval
    from utils.inference.backends import load_model

    cfg = load_data_config(a.data, a.data_root)
    split = cfg[a.split]
    gt = json.loads(Path(split["json"]).read_text())
    images = sorted(gt["images"], key=lambda im: im["id"])[:a.max_images or None]
    device = torch.device("cpu" if a.device == "cpu" else f"cuda:{a.device}")
    model = TimedForward(load_model(a.weights, device, fuse=True))
    names, cat_ids = cfg["names"], cfg["cat_ids"]
    smodel = sahi_model(model, a.slice, a.slice, a.conf, a.iou, a.max_det, names)
    settings = [s for s in SETTINGS if s[0] in a.settings]
    res = {f"{side}:{s[0]}": {"seconds": 0.0, "forward_s": 0.0, "preds": [], "boxes": 0}
           for s in settings for side in ("ours", "sahi")}
    identical = {s[0]: 0 for s in settings}
    if True:
        for k, im in enumerate(images):
            bgr = read_image(str(Path(split["images"]) / im["file_name"]))
            rgb = np.ascontiguousarray(bgr[..., ::-1])
            wins = sahi_windows(*bgr.shape[:2], a.slice, a.overlap)
            for name, merge, metric, post, smetric, full in settings:
                outs = {}
                for side in ("ours", "sahi"):
                    f0, t0 = model.seconds, time.perf_counter()
                    if side == "ours":
                        det = run_ours(model, bgr, a.slice, a.overlap, a.conf, a.iou, a.max_det, merge, metric,
                                       full, a.batch, wins)
                    else:
                        det = run_sahi(smodel, rgb, a.slice, a.overlap, a.iou, post, smetric, full, a.sahi_batch,
                                       a.max_det)
                    r = res[f"{side}:{name}"]
                    r["seconds"] += time.perf_counter() - t0
                    r["forward_s"] += model.seconds - f0
                    r["preds"] += coco_rows(det, im["id"], cat_ids)
                    r["boxes"] += len(det)
                    outs[side] = det
                identical[name] += _same(outs["ours"], outs["sahi"])
            print(f"{k + 1}/{len(images)} {im['file_name']} {bgr.shape[1]}x{bgr.shape[0]}, {len(wins)} windows: "
                  + ", ".join(f"{key} {r['seconds']:.1f}s" for key, r in res.items()), flush=True)
    rows = {}
    for key, r in res.items():
        m = coco_eval(gt, r["preds"], img_ids=[im["id"] for im in images])
        rows[key] = {"AP": round(m["AP"], 4), "AP50": round(m["AP50"], 4), "APs": round(m["APs"], 4),
                     "images_per_s": round(len(images) / r["seconds"], 4), "seconds": round(r["seconds"], 2),
                     "forward_share": round(r["forward_s"] / r["seconds"], 3), "boxes": r["boxes"]}
    compare = summarize(rows, [s[0] for s in settings], identical, len(images))
    result = {
        "command": "python -m benchmarks.sahi_compare " + " ".join(sys.argv[1:] if argv is None else argv),
        "what": "our sliced_predict vs SAHI get_sliced_prediction with a DetectionModel calling the same fused "
                "model, SAHI's windows on both sides; AP by pycocotools (utils/eval/coco.py) on one set of "
                "ground truth; images/s summed over interleaved runs",
        "data": f"{a.data} {a.split}", "images": len(images), "weights": str(a.weights),
        "slice": a.slice, "overlap": a.overlap, "conf": a.conf, "iou": a.iou, "max_det": a.max_det,
        "our_batch": a.batch, "sahi_batch": a.sahi_batch, "threads": a.threads,
        "versions": {"sahi": sahi.__version__, "torch": torch.__version__, "python": platform.python_version()},
        "machine": f"{platform.machine()}, {os.cpu_count()} cores shared with other jobs (ratios, not absolutes)",
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "seed": "none (deterministic inference)",
        "rows": rows, "compare": compare,
    }
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    for key, r in rows.items():
        print(f"{key:28s} AP {r['AP']:.4f} AP50 {r['AP50']:.4f} APs {r['APs']:.4f} {r['images_per_s']:.3f} img/s "
              f"(forward {r['forward_share']:.0%}) boxes {r['boxes']}")
    for name, c in compare.items():
        print(f"{name:22s} AP diff {c['AP_ours_minus_sahi']:+.4f}, speed x{c['speed_ratio_ours_over_sahi']:.2f}, "
              f"outside the forward x{c['non_forward_ratio_sahi_over_ours']:.1f}, "
              f"identical {c['images_with_identical_detections']}")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

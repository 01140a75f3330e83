"""Score an Ultralytics model the way its users score large images: SAHI sliced prediction on the original
images of a COCO split, AP by pycocotools. The tiled peer of issue 38 (docs/large-images.md): train the
peer on the tiler's output, then score it here on the untiled val images.

Runs with the peer's Python (the Ultralytics package) and SAHI on its path; imports nothing of this
project, so the two environments stay apart:

    /tmp/peer-venv/bin/pip install --target /tmp/sahi-peer --no-deps sahi==0.12.8 shapely==2.2.0 fire==0.7.1 \
        termcolor==3.3.0 tqdm==4.70.1 click==8.5.1
    PYTHONPATH=/tmp/sahi-peer /tmp/peer-venv/bin/python benchmarks/peer_sahi.py \
        --weights /tmp/peer-tiles-s0/runs/train/weights/best.pt \
        --json ../shared/datasets/aerial-cars/annotations/instances_val.json \
        --images ../shared/datasets/aerial-cars/images/val --slice 640 --overlap 0.2 --out peer-sahi.json

Class i of the Ultralytics model is the i-th category id in sorted order (how ../shared/bench/peer.py
converts a COCO set). Defaults are SAHI's (GREEDYNMM by IoS at 0.5, the full-image pass on) with
conf 0.001 for AP; SAHI's switch to NMS at low confidence is turned off so the merge stays as asked.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weights", required=True, help="an Ultralytics .pt (e.g. peer.py's runs/train/weights/best.pt)")
    ap.add_argument("--json", required=True, help="COCO ground truth of the original (untiled) images")
    ap.add_argument("--images", required=True)
    ap.add_argument("--slice", type=int, default=640)
    ap.add_argument("--overlap", type=float, default=0.2)
    ap.add_argument("--imgsz", type=int, default=None, help="the model's input size per slice (default --slice)")
    ap.add_argument("--conf", type=float, default=0.001)
    ap.add_argument("--postprocess", default="GREEDYNMM", choices=("GREEDYNMM", "NMS", "NMM", "LSNMS"))
    ap.add_argument("--metric", default="IOS", choices=("IOS", "IOU"))
    ap.add_argument("--match-threshold", type=float, default=0.5)
    ap.add_argument("--no-full", action="store_true", help="no full-image pass (SAHI's perform_standard_pred off)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--max-images", type=int, default=0)
    ap.add_argument("--out", required=True)
    a = ap.parse_args(argv)
    import torch
    torch.set_num_threads(a.threads)
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval
    from sahi import AutoDetectionModel
    from sahi.predict import get_sliced_prediction

    gt = json.loads(Path(a.json).read_text())
    cat_ids = sorted(c["id"] for c in gt["categories"])
    images = sorted(gt["images"], key=lambda im: im["id"])[:a.max_images or None]
    model = AutoDetectionModel.from_pretrained(model_type="ultralytics", model_path=a.weights,
                                               confidence_threshold=a.conf, device="cpu",
                                               image_size=a.imgsz or a.slice)
    torch.set_num_threads(a.threads)  # the package may reset it when it picks a device
    preds, seconds = [], 0.0
    for k, im in enumerate(images):
        t = time.perf_counter()
        r = get_sliced_prediction(str(Path(a.images) / im["file_name"]), model, slice_height=a.slice,
                                  slice_width=a.slice, overlap_height_ratio=a.overlap, overlap_width_ratio=a.overlap,
                                  perform_standard_pred=not a.no_full, postprocess_type=a.postprocess,
                                  postprocess_match_metric=a.metric, postprocess_match_threshold=a.match_threshold,
                                  verbose=0, force_postprocess_type=True)
        seconds += time.perf_counter() - t
        for p in r.object_prediction_list:
            x1, y1, x2, y2 = p.bbox.to_xyxy()
            preds.append({"image_id": im["id"], "category_id": cat_ids[p.category.id], "score": float(p.score.value),
                          "bbox": [round(x1, 2), round(y1, 2), round(x2 - x1, 2), round(y2 - y1, 2)]})
        print(f"{k + 1}/{len(images)} {im['file_name']}: {len(r.object_prediction_list)} boxes", flush=True)
    coco = COCO(a.json)
    names = ["AP", "AP50", "AP75", "APs", "APm", "APl"]
    stats = dict.fromkeys(names, 0.0)
    if preds:
        e = COCOeval(coco, coco.loadRes(preds), "bbox")
        e.params.imgIds = [im["id"] for im in images]
        e.evaluate(), e.accumulate(), e.summarize()
        stats = {n: round(float(v), 4) for n, v in zip(names, e.stats)}
    out = {"command": "benchmarks/peer_sahi.py " + " ".join(sys.argv[1:] if argv is None else argv),
           "weights": a.weights, "images": len(images), "slice": a.slice, "overlap": a.overlap, "conf": a.conf,
           "postprocess": a.postprocess, "metric": a.metric, "match_threshold": a.match_threshold,
           "full_image_pass": not a.no_full, "threads": a.threads, "images_per_s": round(len(images) / seconds, 4),
           "machine": f"{os.cpu_count()} cores", **stats}
    Path(a.out).write_text(json.dumps(out, indent=1) + "\n")
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

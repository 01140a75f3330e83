"""Validation time on deeppcb val (500 images, 3140 boxes), split into inference, NMS, in-memory
matching and pycocotools' COCOeval; plus how far the fast in-memory AP is from COCO's.

    python -m benchmarks.val_speed                       # both parts, CPU, random-init yolov5n (~4 min, 2 threads)
    python -m benchmarks.val_speed --weights best.pt --device 0 --part model
    python -m benchmarks.val_speed --part metrics        # metrics only (no model), synthetic predictions

Part 'metrics' turns the real ground truth into predictions (jittered true boxes, dropped boxes,
random false boxes up to N per image) so COCOeval and the fast path are timed and compared on the
data set's real box sizes and density. Part 'model' runs val.run end to end. Numbers are printed,
never asserted.
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import yaml

from utils.eval.metrics import AREA_RANGES, DetectionStats, coco_eval

ROOT = Path(__file__).resolve().parents[1]

DATA = Path(os.environ.get("SMALLDET_DATASETS", ROOT.parent / "shared" / "datasets")) / "deeppcb"


def synthetic_predictions(gt: dict, per_image: int, seed: int = 0) -> list[dict]:
    """True boxes jittered by ~8% of their size (15% dropped) with higher scores, plus random false
    boxes of typical sizes with lower scores, per_image in total."""
    rng = np.random.default_rng(seed)
    by_img: dict[int, list] = {im["id"]: [] for im in gt["images"]}
    for a in gt["annotations"]:
        by_img[a["image_id"]].append(a)
    cats = [c["id"] for c in gt["categories"]]
    out = []
    for im in gt["images"]:
        anns = by_img[im["id"]]
        for a in anns:
            if rng.random() < 0.15:
                continue
            x, y, w, h = a["bbox"]
            j = rng.normal(0, 0.08, 4) * [w, h, w, h]
            out.append({"image_id": im["id"], "category_id": a["category_id"] if rng.random() > 0.1 else
                        int(rng.choice(cats)), "score": round(float(rng.beta(5, 2)), 5),
                        "bbox": [round(float(v), 3) for v in (x + j[0], y + j[1], max(w + j[2], 1), max(h + j[3], 1))]})
        for _ in range(max(per_image - len(anns), 0)):
            w, h = np.exp(rng.normal(np.log(30), 0.6, 2))
            out.append({"image_id": im["id"], "category_id": int(rng.choice(cats)),
                        "score": round(float(rng.beta(1, 6)), 5),
                        "bbox": [round(float(v), 3) for v in (rng.uniform(0, im["width"] - w),
                                                              rng.uniform(0, im["height"] - h), w, h)]})
    return out


def bench_metrics(per_image: int) -> None:
    gt_path = DATA / "annotations" / "instances_val.json"
    gt = json.loads(gt_path.read_text())
    preds = synthetic_predictions(gt, per_image)
    cat_index = {c["id"]: i for i, c in enumerate(gt["categories"])}
    t0 = time.perf_counter()
    ref = coco_eval(gt_path, preds)
    t_coco = time.perf_counter() - t0
    g_by, d_by = {}, {}
    for a in gt["annotations"]:
        x, y, w, h = a["bbox"]
        g_by.setdefault(a["image_id"], []).append([cat_index[a["category_id"]], x, y, x + w, y + h])
    for p in preds:
        x, y, w, h = p["bbox"]
        d_by.setdefault(p["image_id"], []).append([x, y, x + w, y + h, p["score"], cat_index[p["category_id"]]])
    for areas in (("all",), ("all", "small"), tuple(AREA_RANGES)):
        st = DetectionStats(len(cat_index), areas=areas)
        t0 = time.perf_counter()
        for im in gt["images"]:
            st.update(np.array(d_by.get(im["id"], []), float).reshape(-1, 6),
                      np.array(g_by.get(im["id"], []), float).reshape(-1, 5), im["id"])
        fast = st.compute()
        t_fast = time.perf_counter() - t0
        diffs = ", ".join(f"{k} {fast[k] - ref[k]:+.2e}" for k in ("AP", "AP50", "APs") if k in fast)
        print(f"  fast path areas={'+'.join(areas):<28} {t_fast:6.2f} s   AP diff vs COCO: {diffs}")
    print(f"  pycocotools COCOeval (8 area ranges)       {t_coco:6.2f} s   AP {ref['AP']:.4f} AP50 {ref['AP50']:.4f} "
          f"APs {ref['APs']:.4f} AP_vt {ref['AP_vt']:.4f} AP_t {ref['AP_t']:.4f} AP_s16 {ref['AP_s16']:.4f}")


class _PlainVal(torch.utils.data.Dataset):
    """Fallback while utils/data/dataset.py is absent: decode + square letterbox, the batch interface of
    docs/interfaces.md. Only for timing; val.run uses create_dataloader when it exists."""

    def __init__(self, json_path: Path, img_dir: Path, imgsz: int):
        d = json.loads(json_path.read_text())
        self.json_path, self.img_dir, self.imgsz = str(json_path), img_dir, imgsz
        self.images, self.cat_ids = d["images"], [c["id"] for c in d["categories"]]
        self.names = [c["name"] for c in d["categories"]]
        self.anns: dict[int, list] = {}
        for a in d["annotations"]:
            self.anns.setdefault(a["image_id"], []).append(a)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int):
        import cv2
        im = self.images[i]
        img = cv2.imread(str(self.img_dir / im["file_name"]))
        h0, w0 = img.shape[:2]
        r = min(self.imgsz / h0, self.imgsz / w0)
        w, h = round(w0 * r), round(h0 * r)
        pw, ph = (self.imgsz - w) // 2, (self.imgsz - h) // 2
        out = np.full((self.imgsz, self.imgsz, 3), 114, np.uint8)
        out[ph:ph + h, pw:pw + w] = cv2.resize(img, (w, h)) if (w, h) != (w0, h0) else img
        lab = [[self.cat_ids.index(a["category_id"]), (a["bbox"][0] + a["bbox"][2] / 2) * w / w0 + pw,
                (a["bbox"][1] + a["bbox"][3] / 2) * h / h0 + ph, a["bbox"][2] * w / w0, a["bbox"][3] * h / h0]
               for a in self.anns.get(im["id"], [])]
        meta = {"image_id": im["id"], "orig_shape": (h0, w0), "ratio": (w / w0, h / h0), "pad": (pw, ph)}
        return (torch.from_numpy(np.ascontiguousarray(out[..., ::-1].transpose(2, 0, 1))),
                torch.tensor(lab, dtype=torch.float32).reshape(-1, 5), im["file_name"], meta)


def _collate(batch):
    imgs, labels, paths, metas = zip(*batch)
    t = torch.cat([torch.cat((torch.full((len(lb), 1), float(i)), lb), 1) for i, lb in enumerate(labels)])
    return torch.stack(imgs), t, paths, metas


def bench_model(opt: argparse.Namespace) -> None:
    import val
    from models.yolo import Model
    from utils.checkpoints.checkpoint import checkpoint_yaml, save_checkpoint
    with tempfile.TemporaryDirectory() as tmp:
        weights = opt.weights
        if not weights:  # untrained: many low-confidence boxes, a heavy case for NMS and COCOeval
            torch.manual_seed(0)
            m = Model(opt.cfg, nc=6)
            names = [c["name"] for c in json.loads((DATA / "annotations/instances_val.json").read_text())["categories"]]
            m.names, m.cat_ids = names, list(range(1, 7))
            weights = str(Path(tmp) / "random.pt")
            save_checkpoint({"model_yaml": checkpoint_yaml(m), "model": m.state_dict(), "names": m.names,
                             "cat_ids": m.cat_ids}, weights)
        data = Path(tmp) / "deeppcb.yaml"
        data.write_text(yaml.safe_dump({"path": str(DATA),
                                        "train": {"json": "annotations/instances_train.json", "images": "images/train"},
                                        "val": {"json": "annotations/instances_val.json", "images": "images/val"}}))
        torch.set_num_threads(opt.threads)
        loader = None
        try:
            import utils.data.dataset  # noqa: F401
        except ImportError:
            print("  (utils/data/dataset.py absent: using the benchmark's plain letterbox loader)")
            ds = _PlainVal(DATA / "annotations/instances_val.json", DATA / "images/val", opt.imgsz)
            loader = torch.utils.data.DataLoader(ds, opt.batch_size, num_workers=opt.workers, collate_fn=_collate)
            data = {"names": ds.names, "cat_ids": ds.cat_ids, "val": {}}
        t0 = time.perf_counter()
        res = val.run(data=data if loader else str(data), weights=weights, dataloader=loader,
                      batch_size=opt.batch_size, imgsz=opt.imgsz, device=opt.device,
                      project=tmp, plots=False, workers=opt.workers, verbose=True, half=opt.half)
        total = time.perf_counter() - t0
        sp = res["speed"]
        n = res["images"]
        print(f"  {n} images, {opt.weights or opt.cfg}, imgsz {opt.imgsz}, batch {opt.batch_size}, "
              f"device {opt.device or 'auto'}, {torch.get_num_threads()} threads")
        for k in ("preprocess", "inference", "nms", "match", "coco"):
            print(f"  {k:<11} {sp[k]:8.2f} ms/image  {sp[k] * n / 1e3:7.2f} s total")
        print(f"  wall total  {total:7.2f} s (includes data loading and model load); predictions "
              f"{len(json.loads((Path(res['save_dir']) / 'predictions.json').read_text()))}; "
              f"AP {res['AP']:.4f} (fast path {res['AP_fast']:.4f})")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--part", choices=("metrics", "model", "both"), default="both")
    p.add_argument("--per-image", type=int, nargs="+", default=[100, 300], help="synthetic predictions per image")
    p.add_argument("--weights", default="")
    p.add_argument("--cfg", default="yolov5n.yaml", help="random-init model when no --weights")
    p.add_argument("--imgsz", type=int, default=640)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--device", default="cpu")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--half", action="store_true")
    opt = p.parse_args()
    if not DATA.is_dir():
        raise SystemExit(f"{DATA}: deeppcb not found (set SMALLDET_DATASETS)")
    if opt.part in ("metrics", "both"):
        for n in opt.per_image:
            print(f"metrics on deeppcb val, synthetic predictions, {n} per image:")
            bench_metrics(n)
    if opt.part in ("model", "both"):
        print("val.run on deeppcb val:")
        bench_model(opt)


if __name__ == "__main__":
    main()

"""COCO evaluation time and memory on dense images: how coco_eval (utils/eval/coco.py) grows with the boxes per
image, with pycocotools' COCOeval (the reference) and faster-coco-eval's COCOeval_faster (what it uses).

    python -m benchmarks.dense_eval                     # the default grid (~6 min CPU, pycocotools most of it)
    python -m benchmarks.dense_eval --boxes 1000 5000 10000 --images 10 --evaluators faster-coco-eval

Each case runs in a fresh process (peak RSS is per process): a synthetic AI-TOD-like set, `--images` images
of 4000x4000 px with `boxes` ground-truth boxes of 2-32 px each in `--classes` classes, and val.py's
predictions for it under `--protocol aitod` (jittered true boxes, 10% dropped, false boxes, the top 1,500 per
image as val.py's NMS keeps). The time is coco_eval's (loadRes, evaluate, accumulate), wall and CPU seconds
(the machine is shared: CPU time is the steadier figure); the memory the peak RSS over the process's RSS before
it. pycocotools runs only the small cases (PYCOCO_CASES); where both ran, their AP is checked to agree.
'in-memory' times val.py's other scorer on the same sets (DetectionStats and the confusion matrix).
Numbers are printed and written, never asserted.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
# pycocotools' matching is O(detections x ground truth) in Python per image and class: only the small cases
PYCOCO_CASES = ((1000, 2), (2000, 1), (5000, 1))


def make_set(n_img: int, n_box: int, n_cls: int, seed: int = 0, max_det: int = 1500) -> tuple[dict, list[dict]]:
    rng = np.random.default_rng(seed)
    images, anns, preds = [], [], []
    for i in range(1, n_img + 1):
        images.append({"id": i, "width": 4000, "height": 4000, "file_name": f"{i}.jpg"})
        wh = rng.uniform(2, 32, (n_box, 2))
        xy = rng.uniform(0, 3960, (n_box, 2))
        cls = rng.integers(1, n_cls + 1, n_box)
        for j in range(n_box):
            w, h = float(wh[j, 0]), float(wh[j, 1])
            anns.append({"id": len(anns) + 1, "image_id": i, "category_id": int(cls[j]),
                         "bbox": [float(xy[j, 0]), float(xy[j, 1]), w, h], "area": w * h, "iscrowd": 0})
        keep = rng.random(n_box) > 0.1
        jit = rng.normal(0, 0.1, (n_box, 4)) * np.c_[wh, wh]
        dets = [{"image_id": i, "category_id": int(cls[j]), "score": float(rng.uniform(0.3, 1.0)),
                 "bbox": [float(xy[j, 0] + jit[j, 0]), float(xy[j, 1] + jit[j, 1]),
                          float(max(wh[j, 0] + jit[j, 2], 1.0)), float(max(wh[j, 1] + jit[j, 3], 1.0))]}
                for j in np.flatnonzero(keep)]
        for _ in range(n_box // 10):
            dets.append({"image_id": i, "category_id": int(rng.integers(1, n_cls + 1)),
                         "score": float(rng.uniform(0.0, 0.7)),
                         "bbox": [*map(float, rng.uniform(0, 3960, 2)), *map(float, rng.uniform(2, 32, 2))]})
        dets.sort(key=lambda d: -d["score"])
        preds += dets[:max_det]
    gt = {"images": images, "annotations": anns, "categories": [{"id": c, "name": f"c{c}"} for c in
                                                                  range(1, n_cls + 1)]}
    return gt, preds


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2 ** 20


def in_memory(gt: dict, preds: list[dict], n_cls: int, protocol: str) -> dict:
    """val.py's other scorer on the same set: DetectionStats (AP_fast, P/R curves) and the confusion matrix."""
    from utils.eval.metrics import ConfusionMatrix, DetectionStats
    from utils.eval.protocols import get_protocol
    proto = get_protocol(protocol)
    stats, cm = DetectionStats(n_cls, areas=proto.areas, max_det=proto.max_det), ConfusionMatrix(n_cls)
    by_img: dict[int, tuple[list, list]] = {im["id"]: ([], []) for im in gt["images"]}
    for a in gt["annotations"]:
        x, y, w, h = a["bbox"]
        by_img[a["image_id"]][0].append([a["category_id"] - 1, x, y, x + w, y + h])
    for p in preds:
        x, y, w, h = p["bbox"]
        by_img[p["image_id"]][1].append([x, y, x + w, y + h, p["score"], p["category_id"] - 1])
    for i, (g, d) in by_img.items():
        g, d = np.array(g, np.float32).reshape(-1, 5), np.array(d, np.float32).reshape(-1, 6)
        stats.update(d, g, i)
        cm.update(d, g)
    return stats.compute()


def one_case(evaluator: str, n_box: int, n_img: int, n_cls: int, protocol: str) -> dict:
    """Run in the child process: time and peak memory of one coco_eval call (or of the in-memory scorer)."""
    from utils.eval.coco import coco_eval, load_gt
    gt, preds = make_set(n_img, n_box, n_cls)
    gt_obj = load_gt(gt)
    before = _rss_mb()
    t, c = time.perf_counter(), time.process_time()
    if evaluator == "in-memory":
        res = in_memory(gt, preds, n_cls, protocol)
    else:
        res = coco_eval(gt_obj, preds, protocol=protocol, evaluator=evaluator)
    dt, cpu = time.perf_counter() - t, time.process_time() - c
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    return {"evaluator": evaluator, "boxes_per_image": n_box, "images": n_img, "classes": n_cls,
            "detections": len(preds), "seconds": round(dt, 3), "cpu_seconds": round(cpu, 3),
            "cpu_seconds_per_image": round(cpu / n_img, 4),
            "peak_rss_mb": round(peak, 1), "rss_before_mb": round(before, 1),
            "extra_mb": round(peak - before, 1), "AP": res["AP"], "AR1500": res.get("AR1500")}  # in-memory: its own AP


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--boxes", type=int, nargs="+", default=[1000, 5000, 10000])
    p.add_argument("--images", type=int, default=10)
    p.add_argument("--classes", type=int, default=2)
    p.add_argument("--protocol", default="aitod")
    p.add_argument("--evaluators", nargs="+", default=["faster-coco-eval", "in-memory", "pycocotools"])
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "dense-eval.json"))
    p.add_argument("--case", help=argparse.SUPPRESS)  # internal: one case in this process
    a = p.parse_args(argv)
    if a.case:
        ev, n_box, n_img = a.case.split(":")
        print(json.dumps(one_case(ev, int(n_box), int(n_img), a.classes, a.protocol)))
        return
    cases = []
    for ev in a.evaluators:
        # faster-coco-eval also on pycocotools' cases: the same sets, compared figure by figure
        grid = (PYCOCO_CASES if ev == "pycocotools" else [(b, a.images) for b in a.boxes] if ev == "in-memory"
                else [*PYCOCO_CASES, *((b, a.images) for b in a.boxes)])
        cases += [(ev, b, n) for b, n in grid]
    rows = []
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for ev, b, n in cases:
        r = subprocess.run([sys.executable, "-m", "benchmarks.dense_eval", "--case", f"{ev}:{b}:{n}",
                            "--classes", str(a.classes), "--protocol", a.protocol],
                           capture_output=True, text=True, cwd=ROOT, env=env, check=True)
        row = json.loads(r.stdout.strip().splitlines()[-1])
        rows.append(row)
        print(f"{ev:17s} {b:6d} boxes x {n:2d} images: {row['seconds']:8.2f} s wall, {row['cpu_seconds']:8.2f} s CPU "
              f"({row['cpu_seconds_per_image']:.3f} s per image), +{row['extra_mb']:.0f} MB (peak "
              f"{row['peak_rss_mb']:.0f} MB), AP {row['AP']:.4f}")
    by = {(r["evaluator"], r["boxes_per_image"], r["images"]): r for r in rows}
    same = [(k, by[("faster-coco-eval",) + k[1:]]) for k in by if k[0] == "pycocotools"
            and ("faster-coco-eval",) + k[1:] in by]
    ratios = {}
    for k, f in same:
        assert abs(by[k]["AP"] - f["AP"]) < 1e-6, (k, by[k]["AP"], f["AP"])  # a benchmark sanity check
        ratios[f"{k[1]} boxes x {k[2]} images"] = round(by[k]["cpu_seconds"] / max(f["cpu_seconds"], 1e-9), 1)
    if ratios:
        print("pycocotools CPU time / faster-coco-eval CPU time, same cases: " + ", ".join(
            f"{k}: {v}x" for k, v in ratios.items()))
    out = {"command": "python -m benchmarks.dense_eval " + " ".join(argv if argv is not None else sys.argv[1:]),
           "seed": 0, "protocol": a.protocol, "classes": a.classes,
           "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores shared with other "
                      f"jobs, OMP_NUM_THREADS=1, python {platform.python_version()}",
           "note": "time and memory of one coco_eval call (loadRes + evaluate + accumulate) on a synthetic "
                   "AI-TOD-like set; pycocotools only on the small cases (quadratic per image)",
           "cpu_time_ratio_pycocotools_over_faster": ratios, "rows": rows}
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(out, indent=1) + "\n")
    print(f"written {a.out}")


if __name__ == "__main__":
    main()

"""What transfer buys: fine-tuning from a checkpoint against training from scratch, same budget, new classes.

    python -m benchmarks.transfer       # small: ~20-30 min on a busy 2-core CPU; the recorded run (~80 min):
    python -m benchmarks.transfer --source-images 900 --source-epochs 15 --target-epochs 30 --target-seeds 0 1

DeepPCB (../shared/datasets/deeppcb) has six defect classes. A source model is trained on `--source-images` train
images labelled with three of them (open, short, mousebite); then 100 other train images labelled with the other
three (spur, copper, pin-hole) are learned twice at the same budget: fine-tuned from the source's last.pt
(train.py --weights: every tensor that fits is transferred, here all of them, the class convs too since both have
three classes) and from scratch. Both are scored by pycocotools on the full val split (500 images) labelled with
those three classes. The filtered annotation files and the runs live in a temporary folder (--keep: in that
one); the images are read in place.
Numbers are written to results/transfer-deeppcb.json, never asserted.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("SMALLDET_DATASETS", ROOT.parent / "shared" / "datasets")) / "deeppcb"
SOURCE_CLASSES, TARGET_CLASSES = ("open", "short", "mousebite"), ("spur", "copper", "pin-hole")
KEYS = ("AP", "AP50", "APs", "AP_tiny")


def subset(coco: dict, image_ids: list[int] | None, classes: tuple[str, ...]) -> dict:
    """The COCO dict with only these images (None: all) and only the boxes of these classes."""
    cats = [c for c in coco["categories"] if c["name"] in classes]
    keep_cat = {c["id"] for c in cats}
    keep_img = set(image_ids) if image_ids is not None else {im["id"] for im in coco["images"]}
    return {"images": [im for im in coco["images"] if im["id"] in keep_img], "categories": cats,
            "annotations": [a for a in coco["annotations"]
                            if a["image_id"] in keep_img and a["category_id"] in keep_cat]}


def write_data(tmp: Path, name: str, train: dict, val: dict) -> Path:
    for split, coco in (("train", train), ("val", val)):
        (tmp / f"{name}_{split}.json").write_text(json.dumps(coco))
    data = {"path": str(tmp), "train": {"json": f"{name}_train.json", "images": str(DATA / "images" / "train")},
            "val": {"json": f"{name}_val.json", "images": str(DATA / "images" / "val")}}
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cfg", default="yolov5n-dfl.yaml")
    ap.add_argument("--imgsz", type=int, default=320)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--source-images", type=int, default=320)
    ap.add_argument("--source-epochs", type=int, default=6)
    ap.add_argument("--target-images", type=int, default=100)
    ap.add_argument("--target-epochs", type=int, default=10)
    ap.add_argument("--val-images", type=int, default=0, help="score on the first N val images (0: all 500)")
    ap.add_argument("--hyp", default="configs/hyps/small-objects-dfl.yaml", help="hyperparameters of all runs")
    ap.add_argument("--hyp-set", nargs="*", default=["nbs=16", "warmup_epochs=1"],
                    help="a step per batch and a short warm-up: short runs spend no steps waiting")
    ap.add_argument("--seed", type=int, default=0, help="seed of the source run and of the image split")
    ap.add_argument("--target-seeds", type=int, nargs="+", default=[0],
                    help="one fine-tuned and one scratch run per seed: the gain against the seed-to-seed spread")
    ap.add_argument("--keep", type=Path, default=None,
                    help="keep the runs (the source's last.pt too) in this folder instead of a temporary one")
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "transfer-deeppcb.json")
    a = ap.parse_args()
    import train

    train_coco = json.loads((DATA / "annotations" / "instances_train.json").read_text())
    val_coco = json.loads((DATA / "annotations" / "instances_val.json").read_text())
    target_cats = {c["id"] for c in train_coco["categories"] if c["name"] in TARGET_CLASSES}
    has_target = {x["image_id"] for x in train_coco["annotations"] if x["category_id"] in target_cats}
    order = [int(i) for i in np.random.default_rng(a.seed).permutation([im["id"] for im in train_coco["images"]])]
    val_ids = [im["id"] for im in val_coco["images"]][:a.val_images or None]
    target_ids = [i for i in order if i in has_target][:a.target_images]
    source_ids = [i for i in order if i not in set(target_ids)][:a.source_images]  # disjoint from the target's
    common = dict(cfg=a.cfg, hyp=a.hyp, hyp_set=a.hyp_set, imgsz=a.imgsz, batch_size=a.batch_size,
                  workers=a.workers, noplots=True, noval=True, exist_ok=True)
    runs = {}
    with tempfile.TemporaryDirectory() as scratch_dir:
        tmp = a.keep or Path(scratch_dir)
        tmp.mkdir(parents=True, exist_ok=True)
        src_yaml = write_data(tmp, "source", subset(train_coco, source_ids, SOURCE_CLASSES),
                              subset(val_coco, val_ids[:100], SOURCE_CLASSES))  # the source's AP: a glance
        tgt_yaml = write_data(tmp, "target", subset(train_coco, target_ids, TARGET_CLASSES),
                              subset(val_coco, val_ids, TARGET_CLASSES))
        t = time.perf_counter()
        src = train.run(data=str(src_yaml), epochs=a.source_epochs, project=str(tmp), name="source", seed=a.seed,
                        **common)
        runs["source"] = {**{k: round(float(src["metrics"][k]), 4) for k in KEYS},
                          "seconds": round(time.perf_counter() - t)}
        weights = Path(src["save_dir"]) / "weights" / "last.pt"
        for seed in a.target_seeds:
            for name, extra in (("fine_tuned", {"weights": str(weights)}), ("scratch", {})):
                t = time.perf_counter()
                r = train.run(data=str(tgt_yaml), epochs=a.target_epochs, project=str(tmp), name=f"{name}-s{seed}",
                              seed=seed, **common, **extra)
                runs.setdefault(name, {})[str(seed)] = {**{k: round(float(r["metrics"][k]), 4) for k in KEYS},
                                                        "seconds": round(time.perf_counter() - t)}
                print(name, seed, runs[name][str(seed)])
    mean = {name: {k: round(float(np.mean([r[k] for r in runs[name].values()])), 4) for k in KEYS}
            for name in ("fine_tuned", "scratch")}
    result = {
        "command": "python -m benchmarks.transfer " + " ".join(
            f"--{k.replace('_', '-')} {' '.join(map(str, v)) if isinstance(v, list) else v}"
            for k, v in vars(a).items() if k not in ("out", "keep") and v is not None),
        "data": f"deeppcb: source = {len(source_ids)} train images labelled {list(SOURCE_CLASSES)}; target = "
                f"{len(target_ids)} other train images labelled {list(TARGET_CLASSES)}; scored on {len(val_ids)} val "
                f"images labelled with the target classes (pycocotools; the source on 100 with its own)",
        "budget": f"source {a.source_epochs} epochs (seed {a.seed}); target {a.target_epochs} epochs each (seeds "
                  f"{a.target_seeds}), batch {a.batch_size}, imgsz {a.imgsz}, {a.cfg}, --hyp {a.hyp} "
                  f"--hyp-set {' '.join(a.hyp_set)}",
        "machine": f"{platform.machine()} CPU shared with other jobs, {torch.get_num_threads()} torch threads, "
                   f"torch {torch.__version__}",
        "runs": runs,
        "mean": mean,
        "fine_tuned_minus_scratch_AP": round(mean["fine_tuned"]["AP"] - mean["scratch"]["AP"], 4),
    }
    a.out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()

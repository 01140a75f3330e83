"""A YOLO-format data YAML read by smalldet and by the Ultralytics package: the same images and boxes?

    python -m benchmarks.yolo_yaml_parity --coco ../shared/datasets/aerial-cars --peer-python /tmp/peer-venv/bin/python
                                          [--work /tmp/yolo-parity] [--out benchmarks/results/yolo-yaml-parity.json]

Writes the COCO set's train and val splits as a YOLO layout under --work (images linked, labels by
utils/data/convert/yolo.py's coco2yolo) with an Ultralytics-style data YAML, then loads it
(1) with smalldet's load_data_config + load_coco (conversion timed on a cold cache, then a warm one) and
(2) with Ultralytics' own YOLODataset in the peer venv (it writes its labels/*.cache beside the
labels, which is why this runs on a copy). Compares per image: box count, class and pixel corners.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

PEER_SNIPPET = r"""
import json, sys
from ultralytics.data.dataset import YOLODataset
from ultralytics.data.utils import check_det_dataset
data = check_det_dataset(sys.argv[1])
out = {}
for split in ("train", "val"):
    ds = YOLODataset(img_path=data[split], data=data, augment=False, imgsz=640, cache=False)
    for lb in ds.labels:
        h, w = lb["shape"]
        b = lb["bboxes"]  # normalised cx cy w h
        out[lb["im_file"]] = [[float(c), (x - bw / 2) * w, (y - bh / 2) * h, (x + bw / 2) * w, (y + bh / 2) * h]
                              for c, (x, y, bw, bh) in zip(lb["cls"].reshape(-1), b.tolist())]
json.dump(out, open(sys.argv[2], "w"))
"""


def make_layout(coco_root: Path, work: Path) -> Path:
    from utils.data.config import load_data_config
    from utils.data.convert.yolo import coco_to_yolo
    cfg = load_data_config(coco_root / "data.yaml") if (coco_root / "data.yaml").is_file() else None
    splits = {}
    for split in ("train", "val"):
        js = coco_root / "annotations" / f"instances_{split}.json"
        imgs = coco_root / "images" / split
        if cfg is not None:
            js, imgs = Path(cfg[split]["json"]), Path(cfg[split]["images"])
        splits[split] = (js, imgs)
        dst = work / "images" / split
        dst.mkdir(parents=True, exist_ok=True)
        for p in imgs.iterdir():
            if not (dst / p.name).exists():
                os.symlink(p.resolve(), dst / p.name)
        coco_to_yolo(js, work / "labels" / split)
    names = (work / "labels" / "train" / "classes.txt").read_text().split("\n")
    y = work / "data.yaml"
    y.write_text(yaml.safe_dump({"path": str(work), "train": "images/train", "val": "images/val",
                                 "names": {i: n for i, n in enumerate(x for x in names if x)}}))
    return y


def ours(y: Path) -> tuple[dict[str, list], float, float]:
    from utils.data.coco import load_coco
    from utils.data.config import load_data_config
    t0 = time.perf_counter()
    cfg = load_data_config(y)
    cold = time.perf_counter() - t0
    t0 = time.perf_counter()
    cfg = load_data_config(y)
    warm = time.perf_counter() - t0
    out = {}
    for split in ("train", "val"):
        s = load_coco(cfg[split]["json"], cfg[split]["images"], check="none")
        for f, b in zip(s.files, s.boxes):
            out[f] = b.tolist()
    return out, cold, warm


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--coco", required=True, help="COCO data set folder (annotations/instances_{train,val}.json)")
    p.add_argument("--peer-python", required=True, help="python of a venv with the ultralytics package")
    p.add_argument("--work", default=None, help="folder for the YOLO layout (default: a new temporary folder)")
    p.add_argument("--out", default=None, help="results json")
    opt = p.parse_args(argv)
    work = Path(opt.work or tempfile.mkdtemp(prefix="yolo-parity-"))
    os.environ.setdefault("SMALLDET_CACHE", str(work.parent / f"{work.name}-cache"))
    y = make_layout(Path(opt.coco), work)
    mine, cold, warm = ours(y)
    peer_json = work.parent / f"{work.name}-peer.json"
    t0 = time.perf_counter()
    subprocess.run([opt.peer_python, "-c", PEER_SNIPPET, str(y), str(peer_json)], check=True,
                   env={**os.environ, "YOLO_OFFLINE": "1"})
    peer_s = time.perf_counter() - t0
    theirs = {str(Path(k).resolve() if not Path(k).is_symlink() else Path(k)): v
              for k, v in json.loads(peer_json.read_text()).items()}
    mine = {str(Path(k)): v for k, v in mine.items()}
    same_files = sorted(mine) == sorted(theirs)
    count_diff, cls_diff, max_px = 0, 0, 0.0
    for f in sorted(set(mine) & set(theirs)):
        a = sorted(mine[f], key=lambda r: [round(v, 2) for v in r])  # float noise must not reorder ties
        b = sorted(theirs[f], key=lambda r: [round(v, 2) for v in r])
        if len(a) != len(b):
            count_diff += 1
            continue
        if a:
            a, b = np.asarray(a), np.asarray(b)
            cls_diff += int((a[:, 0] != b[:, 0]).sum())
            max_px = max(max_px, float(np.abs(a[:, 1:] - b[:, 1:]).max()))
    res = {"command": "python -m benchmarks.yolo_yaml_parity " + " ".join(argv or sys.argv[1:]),
           "machine": f"{platform.node()} {platform.processor() or platform.machine()}, shared CPU",
           "images": len(mine), "peer_images": len(theirs), "same_image_set": same_files,
           "boxes": int(sum(map(len, mine.values()))), "peer_boxes": int(sum(map(len, theirs.values()))),
           "images_with_other_box_count": count_diff, "boxes_with_other_class": cls_diff,
           "max_corner_diff_px": max_px, "smalldet_load_cold_s": round(cold, 3),
           "smalldet_load_warm_s": round(warm, 3), "ultralytics_process_s_incl_import": round(peer_s, 3)}
    print(json.dumps(res, indent=1))
    if opt.out:
        Path(opt.out).write_text(json.dumps(res, indent=1) + "\n")
    return 0 if same_files and not count_diff and not cls_diff and max_px < 0.01 else 1


if __name__ == "__main__":
    sys.exit(main())

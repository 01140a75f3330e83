"""Shared fixtures: a tiny COCO data set written from scratch, independent of utils/data/shapes.py."""
from __future__ import annotations

import json
import os
from pathlib import Path

# One math thread per process, set before torch loads (and inherited by the train.py / torchrun
# children): the end-to-end tests run loader workers and subprocesses beside the main process, and
# with a thread pool per process on 2 cores the suite spent most of its time oversubscribed
# (measured: 17.7 min vs 3.2 min). Speed is benchmarked in benchmarks/, never here.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import cv2
import numpy as np
import pytest
import yaml


def make_coco(root: Path, n_train: int = 8, n_val: int = 4, size: int = 64, seed: int = 0) -> Path:
    """Squares and discs on noise, with a data YAML; returns the YAML path."""
    rng = np.random.default_rng(seed)
    cats = [{"id": 3, "name": "square"}, {"id": 7, "name": "disc"}]  # non-contiguous ids on purpose
    for split, n in (("train", n_train), ("val", n_val)):
        (root / "images" / split).mkdir(parents=True, exist_ok=True)
        images, anns = [], []
        for i in range(n):
            img = rng.integers(0, 60, (size, size, 3), dtype=np.uint8)
            for _ in range(int(rng.integers(1, 4))):
                s = int(rng.integers(8, 20))
                x, y = (int(v) for v in rng.integers(0, size - s, 2))
                k = int(rng.integers(0, 2))
                if k == 0:
                    cv2.rectangle(img, (x, y), (x + s - 1, y + s - 1), (0, 0, 255), -1)
                else:
                    cv2.circle(img, (x + s // 2, y + s // 2), s // 2, (0, 255, 0), -1)
                anns.append({"id": len(anns) + 1, "image_id": i + 1, "category_id": cats[k]["id"],
                             "bbox": [x, y, s, s], "area": s * s, "iscrowd": 0})
            name = f"{split}_{i}.png"
            cv2.imwrite(str(root / "images" / split / name), img)
            images.append({"id": i + 1, "file_name": name, "width": size, "height": size})
        (root / "annotations").mkdir(exist_ok=True)
        (root / "annotations" / f"instances_{split}.json").write_text(
            json.dumps({"images": images, "annotations": anns, "categories": cats}))
    data = {"path": str(root),
            "train": {"json": "annotations/instances_train.json", "images": "images/train"},
            "val": {"json": "annotations/instances_val.json", "images": "images/val"}}
    path = root / "data.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.fixture(scope="session")
def tiny_coco(tmp_path_factory) -> Path:
    return make_coco(tmp_path_factory.mktemp("tiny_coco"))

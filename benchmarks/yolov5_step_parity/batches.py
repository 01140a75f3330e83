"""The fixed inputs of the step-parity check: un-augmented demo-set batches.

Both sides of the check (ours.py here, reference.py with the original ultralytics/yolov5 code) read the
same batches.npz: images drawn by the demo set's own generator (utils/data/shapes.draw_image, deterministic
on every machine) at the check's size, no letterbox needed (square), no augmentation; targets in YOLOv5's
layout [image, class, cx, cy, w, h] normalised to 0-1. The initial weights are a checkpoint written by
ultralytics/yolov5 (WEIGHTS, the shared fixture trained on the demo set): the original loads it with its own
code, ours through train.py's --weights path (the converting reader), so both start from the same numbers.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import cv2
import numpy as np

from utils.data.shapes import VERSION, draw_image

SETTINGS = {"imgsz": 128, "batch": 8, "batches_per_epoch": 6, "epochs_run": 2, "epochs_nominal": 40}
ROOT = Path(__file__).resolve().parents[2]
# ../shared/fixtures (SMALLDET_FIXTURES elsewhere): a yolov5n trained by ultralytics/yolov5 on the demo set
FIXTURES = Path(os.environ.get("SMALLDET_FIXTURES") or ROOT.parent / "shared" / "fixtures")
WEIGHTS = FIXTURES / "yolov5n-shapes.pt"


def make_batches(imgsz: int, batch: int, n_batches: int) -> tuple[np.ndarray, np.ndarray]:
    """images (n_batches, batch, 3, imgsz, imgsz) uint8 RGB and targets (M, 7) float32
    [batch number, image in batch, class, cx, cy, w, h] (normalised)."""
    imgs = np.zeros((n_batches, batch, 3, imgsz, imgsz), np.uint8)
    rows = []
    for k in range(n_batches):
        for j in range(batch):
            img, objects = draw_image((0, VERSION, 0, k * batch + j), imgsz)
            imgs[k, j] = cv2.cvtColor(img, cv2.COLOR_BGR2RGB).transpose(2, 0, 1)
            for cls, (x, y, w, h) in objects:
                rows.append([k, j, cls, (x + w / 2) / imgsz, (y + h / 2) / imgsz, w / imgsz, h / imgsz])
    return imgs, np.array(rows, np.float32).reshape(-1, 7)


def batch_targets(targets: np.ndarray, k: int) -> np.ndarray:
    """Batch k's rows as YOLOv5's (n, 6) [image, class, cx, cy, w, h], normalised."""
    return targets[targets[:, 0] == k, 1:]


def digest(*arrays: np.ndarray) -> str:
    h = hashlib.sha256()
    for a in arrays:
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()[:16]


def write_inputs(out: Path, settings: dict = SETTINGS) -> Path:
    """batches.npz and settings.json in out; returns the batches' path."""
    out.mkdir(parents=True, exist_ok=True)
    n = settings["batches_per_epoch"] * settings["epochs_run"]
    imgs, targets = make_batches(settings["imgsz"], settings["batch"], n)
    np.savez(out / "batches.npz", imgs=imgs, targets=targets)
    (out / "settings.json").write_text(json.dumps(settings))
    return out / "batches.npz"

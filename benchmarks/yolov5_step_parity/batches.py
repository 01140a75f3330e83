"""The fixed inputs of the step-parity check: un-augmented demo-set batches and the initial weights.

Both sides of the check (ours.py here, reference.py with the original ultralytics/yolov5 code) read the
same .npz files, so they start from the same numbers: images drawn by the demo set's own generator
(utils/data/shapes.draw_image, deterministic on every machine) at the check's size, no letterbox needed
(square), no augmentation; targets in YOLOv5's layout [image, class, cx, cy, w, h] normalised to 0-1.
The initial weights are our yolov5n's from a fixed seed, written under the original's tensor names
(the two layouts share names; only Detect's anchors differ: pixels here, grid units there).
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import cv2
import numpy as np
import torch

from utils.data.shapes import VERSION, draw_image

SETTINGS = {"imgsz": 128, "batch": 8, "batches_per_epoch": 6, "epochs_run": 2, "epochs_nominal": 40,
            "nc": 4, "seed": 0, "cfg": "yolov5n.yaml"}


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


def initial_model(cfg: str, nc: int, seed: int):
    """Our model as train.py builds it from scratch, from a fixed seed."""
    from models.yolo import Model

    torch.manual_seed(seed)
    return Model(cfg, nc=nc)


def to_original_names(sd: dict[str, torch.Tensor], strides: torch.Tensor) -> dict[str, np.ndarray]:
    """Our state dict as the original's: same names, anchors in grid units, no stride buffer."""
    out = {}
    for k, v in sd.items():
        if k.endswith(".stride"):
            continue
        if k.endswith(".anchors"):
            v = v / strides.view(-1, 1, 1)
        out[k] = v.detach().cpu().numpy()
    return out


def write_inputs(out: Path, settings: dict = SETTINGS) -> tuple[Path, Path]:
    """batches.npz and init.npz in out; returns their paths."""
    out.mkdir(parents=True, exist_ok=True)
    n = settings["batches_per_epoch"] * settings["epochs_run"]
    imgs, targets = make_batches(settings["imgsz"], settings["batch"], n)
    model = initial_model(settings["cfg"], settings["nc"], settings["seed"])
    np.savez(out / "batches.npz", imgs=imgs, targets=targets)
    np.savez(out / "init.npz", **to_original_names(model.state_dict(), model.stride))
    return out / "batches.npz", out / "init.npz"

"""Time assignment and DetectionLoss per batch (default: batch 16, 640 px, ~100 boxes/image).

    python -m benchmarks.loss_speed [--device cpu] [--threads 1] [--p2] [--nc 80] [--runs 5]

Random raw maps stand in for a model's output, so this times the loss alone. For dense scenes (time and
peak memory against boxes per image, all three assigners) see benchmarks/assign_memory.py.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn as nn

from utils.assign import make_grid
from utils.config import default_hyp
from utils.loss.anchor import DetectionLoss
from utils.loss.common import targets_to_padded

ANCHORS = {4: [5, 6, 8, 14, 15, 11], 8: [10, 13, 16, 30, 33, 23], 16: [30, 61, 62, 45, 59, 119],
           32: [116, 90, 156, 198, 373, 326]}


class FakeModel(nn.Module):
    """The anchor head's attributes only (3 YOLOv5 anchors per level): all the loss reads."""

    def __init__(self, nc: int, strides: list[int]):
        super().__init__()
        self.detect = nn.Module()
        self.detect.nc, self.detect.nl, self.detect.na = nc, len(strides), 3
        self.detect.anchor_free = False
        self.detect.anchors = torch.tensor([ANCHORS[s] for s in strides], dtype=torch.float32
                                           ).view(len(strides), 3, 2)
        self.detect.stride = torch.tensor(strides, dtype=torch.float32)
        self.yaml = {}


def make_targets(b: int, imgsz: int, boxes: int, nc: int, gen: torch.Generator) -> torch.Tensor:
    """(b * boxes, 6) targets: 3..150 px boxes, mostly small, anywhere in the image."""
    m = b * boxes
    wh = torch.exp(torch.rand(m, 2, generator=gen) * 5) + 2
    xy = torch.rand(m, 2, generator=gen) * imgsz
    bi = torch.arange(b).repeat_interleave(boxes).float()[:, None]
    cls = torch.randint(0, nc, (m, 1), generator=gen).float()
    return torch.cat((bi, cls, xy, wh), 1)


def make_batch(b: int, imgsz: int, boxes: int, nc: int, strides: list[int], dev: torch.device
               ) -> tuple[list[torch.Tensor], torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    preds = [torch.randn(b, 3, imgsz // s, imgsz // s, nc + 5, generator=g).to(dev)
             .requires_grad_(True) for s in strides]
    return preds, make_targets(b, imgsz, boxes, nc, g).to(dev)


def timed(fn, runs: int, dev: torch.device) -> float:
    """Median milliseconds of ``runs`` calls after one warm-up."""
    fn()
    out = []
    for _ in range(runs):
        if dev.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        if dev.type == "cuda":
            torch.cuda.synchronize()
        out.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--imgsz", type=int, default=640)
    ap.add_argument("--boxes", type=int, default=100, help="boxes per image")
    ap.add_argument("--nc", type=int, default=80)
    ap.add_argument("--p2", action="store_true", help="P2-P5 head (stride 4 level)")
    ap.add_argument("--runs", type=int, default=5)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    dev = torch.device(a.device)
    strides = [4, 8, 16, 32] if a.p2 else [8, 16, 32]
    model = FakeModel(a.nc, strides)
    preds, targets = make_batch(a.batch, a.imgsz, a.boxes, a.nc, strides, dev)
    shapes = [tuple(p.shape[2:4]) for p in preds]
    grid = make_grid([float(s) for s in strides], shapes, model.detect.anchors.to(dev))
    gt, _, mask = targets_to_padded(targets, a.batch)
    print(f"device {dev}, threads {a.threads}, batch {a.batch}, imgsz {a.imgsz}, "
          f"{a.boxes} boxes/img, nc {a.nc}, strides {strides}, anchors {grid.num}")
    for name in ("iou", "atss"):
        loss = DetectionLoss(model, default_hyp(), a.imgsz, assigner=name)
        fg = loss.assigner(grid, gt, mask).fg
        t_assign = timed(lambda f=loss: f.assigner(grid, gt, mask), a.runs, dev)
        t_fwd = timed(lambda f=loss: f(preds, targets), a.runs, dev)
        t_bwd = timed(lambda f=loss: f(preds, targets)[0].backward(), a.runs, dev)
        print(f"{name:5s} positives/img {fg.sum().item() / a.batch:7.1f}  assign {t_assign:8.1f} ms"
              f"  loss {t_fwd:8.1f} ms  loss+backward {t_bwd:8.1f} ms")


if __name__ == "__main__":
    main()

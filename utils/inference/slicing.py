"""Sliced inference for images far larger than the network input.

A 4000x3000 photo letterboxed to 640 px shrinks a 20 px object to 3 px. Instead the image is cut
into overlapping size x size windows at native resolution (the last window of each row / column
flush with the border), the windows run through the model in batches, their boxes are shifted
back to original pixels and duplicates seen by two windows are merged. An optional full-image
pass adds the objects too large for one window.

Windows are resized by imgsz / size for the network (1 when equal, the usual case), and padded at
the bottom / right to the model stride, so mapping back is an exact scale and offset.
"""
from __future__ import annotations

from typing import Callable, Sequence

import cv2
import numpy as np
import torch
import torchvision

from utils.augment.transforms import PAD_VALUE
from utils.data.windows import Window, slice_windows
from utils.inference.greedy_merge import MATCH_METRICS, greedy_merge
from utils.inference.predict import model_device, model_stride, predict_batch, predict_image, to_batch

MERGE_MODES = ("nms", "wbf", "greedy-nmm")
TilePredictor = Callable[[list[np.ndarray]], list[torch.Tensor]]  # same-shape tiles -> (n, 6) in tile px


def merge_detections(det: torch.Tensor, iou_thres: float = 0.45, mode: str = "nms", max_det: int = 1000,
                     agnostic: bool = False, metric: str | None = None) -> torch.Tensor:
    """Remove duplicates among (n, 6) [x1, y1, x2, y2, conf, cls] boxes from overlapping windows.
    'nms': class-aware NMS, the best box of each cluster stays. 'wbf': same clusters (each box
    joins the best-scoring kept box it overlaps, as NMS would suppress it), but the kept box
    becomes the confidence-weighted mean of its cluster, which evens out boxes cut by borders.
    'greedy-nmm': SAHI's default merge (utils/inference/greedy_merge.py), the kept box grows into the
    union of its cluster. metric: how boxes match, 'iou' or 'ios' (intersection over the smaller box);
    default 'ios' for greedy-nmm (SAHI's default), 'iou' otherwise (wbf takes only 'iou')."""
    if mode not in MERGE_MODES:
        raise ValueError(f"merge_detections: mode must be one of {MERGE_MODES}, got {mode!r}")
    metric = metric or ("ios" if mode == "greedy-nmm" else "iou")
    if metric not in MATCH_METRICS or (mode == "wbf" and metric != "iou"):
        raise ValueError(f"merge_detections: metric must be one of {MATCH_METRICS} ('iou' for wbf), got {metric!r}")
    if len(det) == 0:
        return det.reshape(0, 6)
    if mode == "greedy-nmm" or metric == "ios":
        return greedy_merge(det, iou_thres, metric, mode, agnostic)[:max_det]
    groups = torch.zeros_like(det[:, 5]) if agnostic else det[:, 5]
    keep = torchvision.ops.batched_nms(det[:, :4], det[:, 4], groups, iou_thres)[:max_det]
    if mode == "nms":
        return det[keep]
    leaders = det[keep]
    iou = torchvision.ops.box_iou(leaders[:, :4], det[:, :4])  # (k, n); k <= max_det keeps it small
    iou[groups[keep][:, None] != groups[None, :]] = 0
    iou[leaders[:, 4:5] < det[None, :, 4]] = 0  # only a higher-scoring kept box can absorb a box
    member = iou > iou_thres
    member[:, keep] = False  # a kept box leads its own cluster only (guards float ties at the threshold)
    member[torch.arange(len(keep)), keep] = True
    first = member.float().argmax(0)  # each box joins the first (best) kept box that absorbs it
    assigned = member.any(0)
    w = det[:, 4] * assigned
    sums = torch.zeros(len(keep), 4, dtype=det.dtype, device=det.device).index_add_(
        0, first, det[:, :4] * w[:, None])
    wsum = torch.zeros(len(keep), dtype=det.dtype, device=det.device).index_add_(0, first, w)
    out = leaders.clone()
    out[:, :4] = sums / wsum.clamp_min(1e-12)[:, None]
    return out


def _chunks(windows: Sequence[Window], batch: int) -> list[list[Window]]:
    """Consecutive windows in groups of up to batch of one shape (a batch is one tensor)."""
    out: list[list[Window]] = []
    for win in windows:
        if out and len(out[-1]) < batch and _shape(out[-1][0]) == _shape(win):
            out[-1].append(win)
        else:
            out.append([win])
    return out


def _shape(win: Window) -> tuple[int, int]:
    return win[3] - win[1], win[2] - win[0]


def sliced_inference(img: np.ndarray, predict_tiles: TilePredictor, size: int, overlap: float = 0.2,
                     batch: int = 4, iou_thres: float = 0.45, merge: str = "nms", max_det: int = 1000,
                     extra: torch.Tensor | None = None, agnostic: bool = False,
                     windows: Sequence[Window] | None = None, metric: str | None = None) -> torch.Tensor:
    """Cut img (h, w, C) into windows, call predict_tiles on up to batch same-shape tiles at a time
    (it returns per tile (n, 6) in tile pixels), shift and clip the boxes into original pixels, add
    extra (n, 6) boxes already in original pixels (the full-image pass) and merge duplicates.
    windows: (x1, y1, x2, y2) to use instead of slice_windows(h, w, size, overlap) (another tool's
    layout, e.g. SAHI's, for a like-for-like comparison); metric: merge_detections' match metric.
    Returns the merged (n, 6) on the CPU."""
    if batch < 1:
        raise ValueError(f"sliced_inference: batch must be >= 1, got {batch}")
    h, w = img.shape[:2]
    if windows is None:
        windows = slice_windows(h, w, size, overlap)
    bad = [win for win in windows if not (0 <= win[0] < win[2] <= w and 0 <= win[1] < win[3] <= h)]
    if bad:
        raise ValueError(f"sliced_inference: windows {bad[:3]} are empty or outside the {w}x{h} image")
    # the boxes stay where the model made them until the merge is done: on a GPU, one transfer an image
    # instead of one a window, and the merge runs there too
    parts = [] if extra is None else [extra.detach().float().reshape(-1, 6)]
    for chunk in _chunks(windows, batch):
        dets = predict_tiles([img[y1:y2, x1:x2] for x1, y1, x2, y2 in chunk])
        if len(dets) != len(chunk):
            raise ValueError(f"sliced_inference: predict_tiles returned {len(dets)} results for {len(chunk)} tiles")
        for (x1, y1, x2, y2), d in zip(chunk, dets):
            d = d.detach().float().reshape(-1, 6).clone()
            d[:, [0, 2]] = (d[:, [0, 2]] + x1).clamp(x1, x2)
            d[:, [1, 3]] = (d[:, [1, 3]] + y1).clamp(y1, y2)
            parts.append(d)
    dev = parts[-1].device if parts else torch.device("cpu")
    det = torch.cat([p.to(dev) for p in parts]) if parts else torch.zeros((0, 6))
    det = det[(det[:, 2] > det[:, 0]) & (det[:, 3] > det[:, 1])]  # boxes wholly in the padding vanish
    return merge_detections(det, iou_thres, merge, max_det, agnostic, metric).cpu()


def model_tile_predictor(model: torch.nn.Module, size: int, imgsz: int | None = None, conf_thres: float = 0.25,
                         iou_thres: float = 0.45, classes: Sequence[int] | None = None, max_det: int = 1000,
                         agnostic: bool = False, multi_label: bool = False, half: bool = False) -> TilePredictor:
    """A TilePredictor running model on tiles resized by imgsz / size and padded to the stride."""
    gain = (imgsz or size) / size
    stride, device = model_stride(model), model_device(model)

    def predict(tiles: list[np.ndarray]) -> list[torch.Tensor]:
        th, tw = tiles[0].shape[:2]
        nh, nw = max(round(th * gain), 1), max(round(tw * gain), 1)
        if (nh, nw) != (th, tw):
            interp = cv2.INTER_AREA if gain < 1 else cv2.INTER_LINEAR
            tiles = [cv2.resize(t, (nw, nh), interpolation=interp) for t in tiles]
        ph, pw = -nh % stride, -nw % stride
        if ph or pw:  # bottom / right padding leaves the top-left origin, so no offset to undo
            tiles = [cv2.copyMakeBorder(t, 0, ph, 0, pw, cv2.BORDER_CONSTANT, value=(PAD_VALUE,) * 3) for t in tiles]
        dets = predict_batch(model, to_batch(tiles, device), conf_thres, iou_thres, classes, max_det, agnostic,
                             multi_label, half)
        scale = torch.tensor([nw / tw, nh / th, nw / tw, nh / th])
        for d in dets:
            d[:, :4] /= scale.to(d.device)
        return dets

    return predict


def sliced_predict(model: torch.nn.Module, img: np.ndarray, slice: int = 640, overlap: float = 0.2,
                   conf_thres: float = 0.25, iou_thres: float = 0.45, max_det: int = 1000, imgsz: int | None = None,
                   batch: int = 4, full: bool = False, merge: str = "nms", classes: Sequence[int] | None = None,
                   agnostic: bool = False, multi_label: bool = False, half: bool = False,
                   windows: Sequence[Window] | None = None, metric: str | None = None) -> torch.Tensor:
    """Detections (n, 6) float32 on CPU in img's pixels from windows of slice px (run at imgsz / slice
    scale, default 1) plus, with full=True, one letterboxed full-image pass at imgsz when the image
    takes more than one window (one window already is the whole image). windows / metric: as for
    sliced_inference."""
    kw = dict(conf_thres=conf_thres, iou_thres=iou_thres, classes=classes, max_det=max_det, agnostic=agnostic,
              multi_label=multi_label, half=half)
    # an image smaller than the window is one window of its own size: the zoom is imgsz over that,
    # not over slice (else a 256 px image at --slice 512 would run at half of imgsz)
    win = min(int(slice), max(img.shape[:2]))
    if windows is None:
        windows = slice_windows(*img.shape[:2], win, overlap)
    extra = predict_image(model, img, imgsz or slice, **kw) if full and len(windows) > 1 else None
    tiles = model_tile_predictor(model, win, imgsz, **kw)
    return sliced_inference(img, tiles, win, overlap, batch, iou_thres, merge, max_det, extra, agnostic, windows,
                            metric)

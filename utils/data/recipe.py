"""Tiling and slicing picked from the data: train.py --recipe auto, val.py / detect.py --slice auto.

What decides a small-object run is the scale at which the model sees the objects. decide() reads the train
split's COCO json (image and box sizes only: no image is decoded) and, for an imgsz, picks:

- tile 1.0 (native-resolution imgsz crops, the hyp `tile`) when the images are much larger than imgsz
  (median long side > LARGE x imgsz) AND the whole-image resize would make most boxes tiny (more than MOST
  of them under TINY px); else tile 0. Both conditions: a large image whose boxes stay >= TINY px after the
  resize (deeppcb at 320) loses little to it and keeps its context in one pass, and a crop of an image not
  much larger than imgsz barely changes the scale.
- sliced val / detect (slice = imgsz) exactly when tiling, so that evaluation sees objects at the scale
  training did. The overlap lets 9 boxes in 10 fit whole in some window: the 90th percentile of the
  longer box edge / slice, rounded up to a tenth (readable, stable under small data changes), in [0.1, 0.5].
- a P2 (stride-4) head advised when at least P2_SHARE of the boxes, at the scale the model will see them
  after the decision above, are tiny.

fit_dfl_bin() (train.py --dfl-bin auto) sizes the DFL bins of a DetectDFL head to the same seen box sizes:
a positive cell lies inside its box, so no edge is further from it than the box's longer edge. The bins
must reach that far for the boxes of the finest level (DFL_COVER of them, at the largest scale jitter) and
for the largest box at the coarsest level, and at least DFL_MIN_REACH cells (TAL's STAL and centre cells
can sit up to a stride outside a tiny box); the width is that reach / (reg_max - 1), rounded up to
DFL_STEP and at most 1 cell (YOLOv8's). Small objects then get bins finer than one grid cell.
"""
from __future__ import annotations

import argparse
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from utils.data.coco import DatasetError, read_json

LARGE = 1.5       # images are "much larger" than imgsz above this ratio of long side to imgsz
TINY = 16         # px: AI-TOD's tiny bound, two cells of the finest P3-P5 stride (8)
MOST = 0.5        # tile when more than this share of the boxes would be tiny after the resize
P2_SHARE = 0.25   # advise a stride-4 level when this share of the boxes the model sees is tiny
OVERLAP_MIN, OVERLAP_MAX, OVERLAP_STEP = 0.1, 0.5, 0.1
EDGES = (8, 16, 32)  # the shares printed: boxes under 8 / 16 / 32 px
DFL_COVER, DFL_STEP = 99, 0.05  # percentile of box edges the finest level must reach; bin width step
DFL_MIN_REACH = 2.0  # cells: a tiny box widened by STAL to twice the finest stride
# the P2-P5 model that beat yolov5nu at its compute on both shared sets (docs/small-objects.md)
P2_ADVICE = "--cfg yolov5n-p2-dfl.yaml --reg-max 4"


@dataclass
class Sizes:
    """What the recipe reads from a COCO json (original pixels)."""
    json_path: str
    image_long: np.ndarray  # (N,) long side of every image
    side: np.ndarray        # (M,) box side sqrt(w * h)
    extent: np.ndarray      # (M,) longer box edge max(w, h): what must fit in a window overlap
    box_long: np.ndarray    # (M,) long side of the box's image
    from_headers: int = 0   # images whose size the json lacked, read from the file header


@dataclass
class Recipe:
    """The decisions for one data set at one imgsz, and why."""
    imgsz: int
    tile: float            # the hyp tile: 1.0 or 0.0
    slice: int             # val / detect window in px; 0 = whole image
    overlap: float         # window overlap fraction (0.0 when slice is 0)
    p2: bool               # a P2 (stride-4) head is advised
    reasons: list[str] = field(default_factory=list)

    def summary(self) -> str:
        val = f"val/detect --slice {self.slice} --overlap {self.overlap}" if self.slice else "whole-image val/detect"
        head = "P2 head advised" if self.p2 else "P3-P5 head enough"
        return (f"recipe at imgsz {self.imgsz}: tile {self.tile}, {val}, {head}\n"
                + "\n".join(f"  - {r}" for r in self.reasons))


def _pos(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v > 0


def _header_hw(img_dir: str | Path | None, name: Any) -> tuple[int, int] | None:
    """(h, w) from the image file's header (PIL reads no pixels), as shown (EXIF orientation applied), for
    json records without a size."""
    if img_dir is None or not isinstance(name, str):
        return None
    from PIL import Image

    from utils.data.image_io import shown_size
    try:
        with Image.open(Path(img_dir) / name) as im:
            w, h = shown_size(im)
            return h, w
    except Exception:  # missing or unreadable: the dataset check reports it; the recipe skips it
        return None


def read_sizes(json_path: str | Path, img_dir: str | Path | None = None) -> Sizes:
    """Image long sides and box sizes of a COCO json. Records a training run would skip (crowd, bad bbox,
    unknown image) are skipped here too; a json with no sized image is a DatasetError naming it."""
    data = read_json(json_path)
    images = data.get("images")
    if not isinstance(images, list):
        raise DatasetError(f"{json_path}: 'images' is missing or not a list")
    long_of: dict[int, float] = {}
    from_headers = 0
    for im in images:
        iid = im.get("id") if isinstance(im, dict) else None
        if not isinstance(iid, int) or isinstance(iid, bool):
            continue
        h, w = im.get("height"), im.get("width")
        if not (_pos(h) and _pos(w)):
            hw = _header_hw(img_dir, im.get("file_name"))
            if hw is None:
                continue
            (h, w), from_headers = hw, from_headers + 1
        long_of[iid] = float(max(h, w))
    if not long_of:
        raise DatasetError(f"{json_path}: no image with a size (width/height in the json or a readable file): "
                           f"the recipe has nothing to measure")
    rows = []
    anns = data.get("annotations") or []
    for a in anns if isinstance(anns, list) else []:
        if not isinstance(a, dict) or a.get("iscrowd") or not isinstance(a.get("image_id"), int):
            continue
        bb, long = a.get("bbox"), long_of.get(a["image_id"])
        if long is None or not isinstance(bb, (list, tuple)) or len(bb) != 4 or not (_pos(bb[2]) and _pos(bb[3])):
            continue
        rows.append((math.sqrt(bb[2] * bb[3]), max(bb[2], bb[3]), long))
    r = np.asarray(rows, dtype=np.float64).reshape(-1, 3)
    return Sizes(str(json_path), np.asarray(list(long_of.values())), r[:, 0], r[:, 1], r[:, 2], from_headers)


def _shares(sides: np.ndarray) -> str:
    return "/".join(f"{(sides < e).mean():.0%}" for e in EDGES)


def decide(data: dict[str, Any], imgsz: int) -> Recipe:
    """The recipe for a loaded data config (utils/data/config.load_data_config) at imgsz, from its train split."""
    train = data.get("train")
    if not isinstance(train, dict) or "json" not in train:
        raise DatasetError(f"{data.get('yaml_file', 'data YAML')}: the recipe reads the train split's json, "
                           f"and there is no train split")
    return decide_from_sizes(read_sizes(train["json"], train.get("images")), imgsz)


def decide_from_sizes(s: Sizes, imgsz: int) -> Recipe:
    if imgsz < 1:
        raise ValueError(f"--imgsz {imgsz}: the recipe needs a positive image size")
    med, p90 = np.median(s.image_long), np.percentile(s.image_long, 90)
    ratio = med / imgsz
    headers = f" ({s.from_headers} sized from their file headers)" if s.from_headers else ""
    reasons = [f"{s.json_path}: {len(s.image_long)} images{headers}, {len(s.side)} boxes",
               f"image long side: median {med:.0f} px, p90 {p90:.0f} px = {ratio:.1f}x / {p90 / imgsz:.1f}x "
               f"imgsz {imgsz}"]
    if not len(s.side):
        reasons.append("no boxes: nothing to size the objects by; tile 0, whole-image val/detect")
        return Recipe(imgsz, 0.0, 0, 0.0, False, reasons)
    resized = as_seen(s.side, s, imgsz, 0.0)
    tiny = float((resized < TINY).mean())
    reasons.append(f"box side sqrt(w*h): median {np.median(s.side):.1f} px, p90 {np.percentile(s.side, 90):.1f} px "
                   f"in the originals; median {np.median(resized):.1f} px after the resize to {imgsz} "
                   f"(under {'/'.join(map(str, EDGES))} px: {_shares(resized)})")
    large = ratio > LARGE
    tile = large and tiny > MOST
    if tile:
        reasons.append(f"tile 1.0: the images are much larger than imgsz (median long side {ratio:.1f}x > "
                       f"{LARGE}x) and the resize would make most boxes tiny ({tiny:.0%} under {TINY} px > "
                       f"{MOST:.0%}): train on native-resolution {imgsz} px crops")
    elif not large:
        reasons.append(f"tile 0: the images are not much larger than imgsz (median long side {ratio:.1f}x <= "
                       f"{LARGE}x): the resize keeps their scale")
    else:
        reasons.append(f"tile 0: the images are {ratio:.1f}x imgsz, but after the resize most boxes stay >= {TINY} "
                       f"px ({tiny:.0%} under, <= {MOST:.0%}): whole images keep their context in one pass")
    slice_, overlap, seen = 0, 0.0, resized
    if tile:
        seen = as_seen(s.side, s, imgsz, 1.0)
        big = s.extent[s.box_long > imgsz]  # windows cut only images larger than the window
        e90 = float(np.percentile(big if len(big) else s.extent, 90))
        need = e90 / imgsz
        # round(…, 6) first: 0.2 / 0.1 is 2.0000000000000004 in floating point
        overlap = min(max(math.ceil(round(need / OVERLAP_STEP, 6)) * OVERLAP_STEP, OVERLAP_MIN), OVERLAP_MAX)
        slice_, overlap = imgsz, round(overlap, 2)
        reasons.append(f"slice {imgsz}, overlap {overlap}: evaluate at the scale training sees; 90% of the boxes "
                       f"have a longer edge <= {e90:.0f} px = {need:.2f} of the window, rounded up to a tenth "
                       f"(kept in [{OVERLAP_MIN}, {OVERLAP_MAX}])")
    else:
        reasons.append("whole-image val/detect (no slicing): the model trains on whole images at this scale")
    seen_tiny = float((seen < TINY).mean())
    p2 = seen_tiny >= P2_SHARE
    where = "native crops" if tile else f"resized to {imgsz}"
    if p2:
        reasons.append(f"P2 head advised: the model sees {seen_tiny:.0%} of the boxes under {TINY} px ({where}; "
                       f"under {'/'.join(map(str, EDGES))} px: {_shares(seen)}) >= {P2_SHARE:.0%}: add a "
                       f"stride-4 level, e.g. {P2_ADVICE}")
    else:
        reasons.append(f"no P2 head needed: the model sees {seen_tiny:.0%} of the boxes under {TINY} px ({where}; "
                       f"under {'/'.join(map(str, EDGES))} px: {_shares(seen)}) < {P2_SHARE:.0%}")
    return Recipe(imgsz, 1.0 if tile else 0.0, slice_, overlap, p2, reasons)


def as_seen(px: np.ndarray, s: Sizes, imgsz: int, tile: float) -> np.ndarray:
    """Box lengths px (one per box of s, original pixels) as the model sees them: the loader resizes every
    image so that its long side is imgsz; when tiling (tile > 0), crops of images larger than imgsz stay
    native (smaller images are still resized)."""
    resized = px * imgsz / s.box_long
    return np.where(s.box_long > imgsz, px, resized) if tile > 0 else resized


def fit_dfl_bin(s: Sizes, imgsz: int, tile: float, strides: list[float], reg_max: int,
                scale: float) -> tuple[float, list[str]]:
    """DFL bin width in grid cells for these boxes (module docstring), and why."""
    if not len(s.extent):
        return 1.0, [f"{s.json_path}: no boxes to fit the DFL bins to; bin width 1.0 cell"]
    seen = as_seen(s.extent, s, imgsz, tile) * (1 + scale)  # the largest scale jitter enlarges every box
    lo, hi = min(strides), max(strides)
    edge = float(np.percentile(seen, DFL_COVER))
    fine, coarse = edge / lo, float(seen.max()) / hi
    reach = max(fine, coarse, DFL_MIN_REACH)
    width = round(min(math.ceil(round(reach / (reg_max - 1) / DFL_STEP, 6)) * DFL_STEP, 1.0), 2)
    why = [f"{s.json_path}: {len(seen)} boxes; longer edge as seen at imgsz {imgsz} (tile {tile}) x {1 + scale:.2f} "
           f"scale jitter: p{DFL_COVER} {edge:.1f} px, max {seen.max():.1f} px",
           f"reach {reach:.2f} cells (p{DFL_COVER} / stride {lo:g} = {fine:.2f}, max / stride {hi:g} = {coarse:.2f}, "
           f"at least {DFL_MIN_REACH:g})"
           f" over {reg_max - 1} bin steps -> bin width {width} cell" + (" (capped at 1)" if width == 1.0 else "")]
    return width, why


def image_slice(hw: tuple[int, int], imgsz: int) -> int:
    """detect.py --slice auto, per image (no boxes to measure there): imgsz windows for an image much
    larger than imgsz (long side > LARGE x imgsz), else 0 (the whole image)."""
    return imgsz if max(hw) > LARGE * imgsz else 0


def auto_or_number(text: str, cast: type, ok: Callable[[Any], bool], expected: str) -> int | float | str:
    """argparse type for a flag that takes 'auto' or a number: cast(text) if ok(value), else an error
    'expected <expected> or 'auto''."""
    if text == "auto":
        return text
    try:
        value = cast(text)
    except ValueError:
        value = None
    if value is None or not ok(value):
        raise argparse.ArgumentTypeError(f"expected {expected} or 'auto', got {text!r}")
    return value


def slice_arg(text: str) -> int | str:
    """argparse type of val.py / detect.py --slice: a window size in px (0 = off) or 'auto'."""
    return auto_or_number(text, int, lambda v: v >= 0, "a window size in pixels (0 = off)")

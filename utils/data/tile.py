"""Offline tiler: a tiled copy of a COCO data set, to train on tiles with any framework.

    python -m utils.data.tile --data data/aerial-cars.yaml --out /tmp/aerial-tiles --size 640 --overlap 0.2
    python -m utils.data.tile --data data/aerial-cars.yaml --out /tmp/aerial-tiles --size auto  # the recipe's
    python -m utils.data.tile --json ann.json --images imgs/ --out tiles/ --split train --empty 0.1

Every image is cut into the windows that sliced inference runs (utils/data/windows.py: size x size,
neighbours overlapping by at least overlap x size, the last row and column flush with the border; an
image smaller than the window is one tile of its own size). A box is clipped to each tile it reaches
and kept there when at least --min-visible of its area lies inside (else dropped, or with --cut ignore
kept as an ignore region); ignore regions (iscrowd: 1) are clipped and kept wherever they reach.
Tiles without a box (ignore regions do not count) are capped by --empty, the largest fraction of the
written tiles they may make, picked at random with --seed.

Writes OUT/images/<split>/ (tiles named <stem>_x<X>_y<Y>, in the source's format) and
OUT/annotations/instances_<split>.json, whose image entries carry source_image_id, source_file and
offset [x, y] (tile pixel + offset = source pixel) and whose boxes carry source_annotation_id; with
--data also OUT/data.yaml (tiled splits, the others pointing at the originals). Nothing is written into
the source folders and nothing that exists is overwritten.
"""
from __future__ import annotations

import argparse
import json
import math
import random
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from utils.data.coco import DatasetError, read_json
from utils.data.recipe import auto_or_number
from utils.data.windows import Window, slice_windows

KEEP_KEYS = ("category_id", "iscrowd", "ignore")  # annotation fields carried into the tiles as they are


@dataclass
class Tile:
    """One planned tile: its source image record, its window and its (already clipped) annotations."""
    image: dict[str, Any]
    window: Window
    anns: list[dict[str, Any]]

    @property
    def empty(self) -> bool:
        return not any(not a.get("iscrowd") for a in self.anns)


@dataclass
class Plan:
    tiles: list[Tile]
    counts: dict[str, int] = field(default_factory=dict)


def clip_annotation(ann: dict[str, Any], win: Window, min_visible: float, cut: str = "drop") -> dict[str, Any] | None:
    """ann (a COCO record, bbox [x, y, w, h] in source pixels) as seen by the tile win: bbox clipped to it
    and shifted to tile pixels, or None when it does not reach the tile or, a box (not an ignore region),
    shows less than min_visible of its area there (with cut='ignore' such a box becomes an ignore region)."""
    x, y, w, h = (float(v) for v in ann["bbox"])
    x1, y1, x2, y2 = win
    cx1, cy1, cx2, cy2 = max(x, x1), max(y, y1), min(x + w, x2), min(y + h, y2)
    if cx2 <= cx1 or cy2 <= cy1:
        return None
    area = (cx2 - cx1) * (cy2 - cy1)
    visible = area / (w * h)
    out = {k: ann[k] for k in KEEP_KEYS if k in ann}
    if not ann.get("iscrowd") and visible < min_visible:
        if cut != "ignore":
            return None
        out["iscrowd"] = 1
    out.update(bbox=[cx1 - x1, cy1 - y1, cx2 - cx1, cy2 - cy1], area=area, visible=round(visible, 4),
               source_annotation_id=ann["id"])
    return out


def _valid_box(a: Any) -> bool:
    bb = a.get("bbox") if isinstance(a, dict) else None
    return (isinstance(bb, (list, tuple)) and len(bb) == 4 and all(
        isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in bb)
        and bb[2] > 0 and bb[3] > 0)


def plan_tiles(data: dict[str, Any], size: int, overlap: float, min_visible: float = 0.1, cut: str = "drop",
               empty: float = 1.0, seed: int = 0, json_path: str = "json") -> Plan:
    """The tiles of a loaded COCO dict (no pixels read): every image's windows with their clipped
    annotations, then the empty tiles capped to the fraction empty of the tiles kept."""
    if not 0 <= min_visible <= 1:
        raise ValueError(f"--min-visible must be in [0, 1], got {min_visible}")
    if not 0 <= empty <= 1:
        raise ValueError(f"--empty must be in [0, 1], got {empty}")
    if cut not in ("drop", "ignore"):
        raise ValueError(f"--cut must be 'drop' or 'ignore', got {cut!r}")
    images = data.get("images")
    if not isinstance(images, list):
        raise DatasetError(f"{json_path}: 'images' is missing or not a list")
    counts = dict.fromkeys(("source images", "bad image records", "boxes", "box pieces kept", "box pieces cut",
                            "ignore regions", "bad annotations"), 0)
    by_image: dict[int, list[dict[str, Any]]] = {}
    for a in data.get("annotations") or []:
        if not _valid_box(a) or not isinstance(a.get("id"), int) or not isinstance(a.get("image_id"), int):
            counts["bad annotations"] += 1
            continue
        by_image.setdefault(a["image_id"], []).append(a)
        counts["ignore regions" if a.get("iscrowd") else "boxes"] += 1
    tiles: list[Tile] = []
    for im in images:
        ok = isinstance(im, dict) and isinstance(im.get("id"), int) and isinstance(im.get("file_name"), str)
        h, w = (im.get("height"), im.get("width")) if ok else (None, None)
        if not (ok and isinstance(h, int) and isinstance(w, int) and h > 0 and w > 0):
            counts["bad image records"] += 1
            print(f"{json_path}: image record {str(im)[:80]} lacks an int id, file_name, width or height; "
                  f"skipped", file=sys.stderr)
            continue
        counts["source images"] += 1
        for win in slice_windows(h, w, size, overlap):
            anns = []
            for a in by_image.get(im["id"], []):
                c = clip_annotation(a, win, min_visible, cut)
                cut_box = not a.get("iscrowd") and (c is None or c.get("iscrowd")) and _reaches(a, win)
                counts["box pieces cut"] += bool(cut_box)
                if c is not None:
                    anns.append(c)
                    counts["box pieces kept"] += not c.get("iscrowd")
            tiles.append(Tile(im, win, anns))
    full = [t for t in tiles if not t.empty]
    empties = [t for t in tiles if t.empty]
    cap = len(empties) if empty >= 1 else math.floor(empty * len(full) / (1 - empty) + 1e-9)
    keep = set(map(id, random.Random(seed).sample(empties, min(cap, len(empties)))))
    kept = [t for t in tiles if not t.empty or id(t) in keep]
    counts.update({"tiles": len(kept), "empty tiles kept": len(kept) - len(full),
                   "empty tiles dropped": len(tiles) - len(kept)})
    return Plan(kept, counts)


def _reaches(a: dict[str, Any], win: Window) -> bool:
    x, y, w, h = a["bbox"]
    return x < win[2] and x + w > win[0] and y < win[3] and y + h > win[1]


def tile_name(file_name: str, win: Window) -> str:
    p = Path(file_name)
    return str(p.with_name(f"{p.stem}_x{win[0]}_y{win[1]}{p.suffix}"))


def tiled_coco(data: dict[str, Any], plan: Plan, settings: dict[str, Any]) -> dict[str, Any]:
    """The tiled set's COCO dict: one image per tile (with its source and offset), its boxes in tile pixels."""
    images, anns = [], []
    for k, t in enumerate(plan.tiles, 1):
        x1, y1, x2, y2 = t.window
        images.append({"id": k, "file_name": tile_name(t.image["file_name"], t.window), "width": x2 - x1,
                       "height": y2 - y1, "source_image_id": t.image["id"], "source_file": t.image["file_name"],
                       "offset": [x1, y1]})
        for a in t.anns:
            anns.append({"id": len(anns) + 1, "image_id": k, **a})
    out = {k: v for k, v in data.items() if k not in ("images", "annotations")}
    out.update(images=images, annotations=anns, tiling=settings)
    return out


def _inside(p: Path, folder: Path) -> bool:
    return p == folder or folder in p.parents


def write_split(json_path: Path, img_dir: Path, out: Path, split: str, size: int, overlap: float,
                min_visible: float = 0.1, cut: str = "drop", empty: float = 1.0, seed: int = 0,
                jpeg_quality: int = 95) -> dict[str, Any]:
    """Tile one split into out/images/<split>/ and out/annotations/instances_<split>.json; returns counts."""
    import cv2
    from tqdm import tqdm

    from utils.data.image_io import file_orientation, orient

    out, img_dir = out.resolve(), img_dir.resolve()
    for src in (img_dir, json_path.resolve().parent):
        if _inside(out, src):
            raise DatasetError(f"--out {out} lies in the source folder {src}: write the tiles somewhere else")
    img_out, json_out = out / "images" / split, out / "annotations" / f"instances_{split}.json"
    for p in (img_out, json_out):
        if p.exists():
            raise DatasetError(f"{p} exists: the tiler never overwrites; pick a new --out or remove it")
    data = read_json(json_path)
    plan = plan_tiles(data, size, overlap, min_visible, cut, empty, seed, str(json_path))
    by_source: dict[int, list[Tile]] = {}
    for t in plan.tiles:
        by_source.setdefault(t.image["id"], []).append(t)
    img_out.mkdir(parents=True)
    skipped: dict[int, str] = {}
    for tiles in tqdm(by_source.values(), desc=f"tiling {split}", unit="img"):
        im = tiles[0].image
        src = img_dir / im["file_name"]
        # unchanged: 16-bit and alpha images stay as they are; rotated as shown (the json's frame, EXIF applied)
        pix = cv2.imread(str(src), cv2.IMREAD_UNCHANGED | cv2.IMREAD_IGNORE_ORIENTATION)
        pix = None if pix is None else orient(pix, file_orientation(str(src)))
        if pix is None or pix.shape[:2] != (im["height"], im["width"]):
            got = "unreadable" if pix is None else f"{pix.shape[1]}x{pix.shape[0]}"
            skipped[im["id"]] = f"{src}: {got}, the json says {im['width']}x{im['height']}; its tiles are left out"
            print(f"WARNING {skipped[im['id']]}", file=sys.stderr)
            continue
        for t in tiles:
            x1, y1, x2, y2 = t.window
            dst = img_out / tile_name(im["file_name"], t.window)
            dst.parent.mkdir(parents=True, exist_ok=True)
            jpeg = dst.suffix.lower() in (".jpg", ".jpeg")
            if not cv2.imwrite(str(dst), pix[y1:y2, x1:x2], [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality] if jpeg else []):
                raise OSError(f"{dst}: could not write the tile")
    if skipped:
        plan.tiles = [t for t in plan.tiles if t.image["id"] not in skipped]
        plan.counts["tiles"] = len(plan.tiles)
    plan.counts["unreadable source images"] = len(skipped)
    settings = {"size": size, "overlap": overlap, "min_visible": min_visible, "cut": cut, "empty": empty,
                "seed": seed, "source_json": str(json_path.resolve()), "source_images": str(img_dir),
                "counts": plan.counts}
    json_out.parent.mkdir(parents=True, exist_ok=True)
    tmp = json_out.with_suffix(".json.partial")
    tmp.write_text(json.dumps(tiled_coco(data, plan, settings)))
    tmp.replace(json_out)
    return plan.counts


def _size_arg(text: str) -> int | str:
    return auto_or_number(text, int, lambda v: v >= 1, "a tile size in pixels")


def _overlap_arg(text: str) -> float | str:
    return auto_or_number(text, float, lambda v: 0 <= v < 1, "an overlap fraction in [0, 1)")


def _auto(json_path: str, images: str, imgsz: int, size: int | str, overlap: float | str | None
          ) -> tuple[int, float]:
    """--size / --overlap auto: the recipe's window and overlap for the (train) json at imgsz."""
    from utils.data.recipe import decide_from_sizes, read_sizes
    recipe = decide_from_sizes(read_sizes(json_path, images), imgsz)
    print(recipe.summary())
    if size == "auto":
        if not recipe.slice:
            raise DatasetError(f"--size auto: the recipe does not tile {json_path} at --imgsz {imgsz} (reasons "
                               f"above); give a --size to tile it anyway")
        size = recipe.slice
    if overlap in (None, "auto"):
        overlap = recipe.overlap if recipe.slice else 0.2
    return int(size), float(overlap)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m utils.data.tile", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", help="data YAML whose --splits to tile (or --json and --images)")
    ap.add_argument("--splits", nargs="+", default=["train"], help="with --data: the splits to tile")
    ap.add_argument("--data-root", help="folder holding the data sets (as train.py --data-root)")
    ap.add_argument("--json", help="a COCO json to tile (with --images)")
    ap.add_argument("--images", help="the folder its file_names are relative to")
    ap.add_argument("--split", default="train", help="with --json: the split name the output takes")
    ap.add_argument("--out", required=True, help="output folder (new, outside the source folders)")
    ap.add_argument("--size", type=_size_arg, default=640, help="tile size in px, or auto: the recipe's window at "
                    "--imgsz (utils/data/recipe.py, read from the train split)")
    ap.add_argument("--overlap", type=_overlap_arg, default=None,
                    help="overlap fraction of neighbouring tiles (default 0.2; with --size auto the recipe's); auto")
    ap.add_argument("--imgsz", type=int, default=640, help="the training image size the recipe plans for")
    ap.add_argument("--min-visible", type=float, default=0.1,
                    help="keep a box in a tile when at least this fraction of its area lies inside (0.1: as the "
                         "tiled training's crops and SAHI's slice_coco keep them)")
    ap.add_argument("--cut", choices=("drop", "ignore"), default="drop",
                    help="boxes under --min-visible: dropped, or kept as ignore regions (iscrowd 1)")
    ap.add_argument("--empty", type=float, default=1.0,
                    help="empty tiles make at most this fraction of the tiles written (1 = keep all, 0 = none)")
    ap.add_argument("--seed", type=int, default=0, help="which empty tiles --empty keeps")
    ap.add_argument("--jpeg-quality", type=int, default=95, help="for JPEG sources (tiles are re-encoded)")
    a = ap.parse_args(argv)
    try:
        if a.data:
            from utils.data.config import load_data_config
            cfg = load_data_config(a.data, a.data_root)
            missing = [s for s in a.splits if s not in cfg]
            if missing:
                raise DatasetError(f"{cfg['yaml_file']}: no split {missing}")
            jobs = [(s, Path(cfg[s]["json"]), Path(cfg[s]["images"])) for s in a.splits]
            ref = cfg["train"]
        elif a.json and a.images:
            jobs = [(a.split, Path(a.json), Path(a.images))]
            ref = {"json": a.json, "images": a.images}
        else:
            ap.error("give --data, or --json and --images")
        size, overlap = a.size, a.overlap
        if "auto" in (size, overlap):
            size, overlap = _auto(str(ref["json"]), str(ref["images"]), a.imgsz, size, overlap)
        overlap = 0.2 if overlap is None else overlap
        out = Path(a.out)
        for split, js, im in jobs:
            counts = write_split(js, im, out, split, int(size), float(overlap), a.min_visible, a.cut, a.empty,
                                 a.seed, a.jpeg_quality)
            print(f"{split}: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
        if a.data:
            _write_data_yaml(out, cfg, a.splits)
    except (DatasetError, ValueError, OSError) as e:
        print(f"tile: error: {e}", file=sys.stderr)
        return 1
    print(f"tiles and json under {out.resolve()}")
    return 0


def _write_data_yaml(out: Path, cfg: dict[str, Any], tiled: list[str]) -> None:
    """OUT/data.yaml: the tiled splits from OUT, the others (e.g. val, for sliced validation on the
    original images) where the source data YAML has them."""
    import yaml
    doc: dict[str, Any] = {"path": str(out.resolve())}
    for split in ("train", "val", "test"):
        if split in tiled:
            doc[split] = {"json": f"annotations/instances_{split}.json", "images": f"images/{split}"}
        elif split in cfg:
            doc[split] = {"json": cfg[split]["json"], "images": cfg[split]["images"]}
    dst = out / "data.yaml"
    if dst.exists():
        print(f"{dst} exists: left as it is", file=sys.stderr)
        return
    dst.write_text(f"# written by python -m utils.data.tile from {cfg['yaml_file']}\n" + yaml.safe_dump(doc))


if __name__ == "__main__":
    sys.exit(main())

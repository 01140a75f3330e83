"""COCO json loading and validation: every record checked, every problem named and counted.

`load_coco(json_path, img_dir)` returns a `CocoSplit` (arrays the dataset uses directly) whose
`report` says what was found: images, boxes per class and size bucket, and each problem.
Problems training can live with are skipped and counted; a split that cannot be used raises
`DatasetError` naming the file and what is wrong.
"""
from __future__ import annotations

import json
import math
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import cv2
import numpy as np

from utils.data.image_io import SWAPS_SIDES, exif_orientation, header_mode, shown_size, to_bgr8
from utils.text import display_text

# box size = sqrt(w * h) in pixels, the same buckets the evaluation reports (AP_vt, AP_t, AP_s16, APm, APl)
SIZE_EDGES = (8, 16, 32, 96)
SIZE_LABELS = ("<8", "8-16", "16-32", "32-96", ">96")
MAX_STORED_MESSAGES = 1000  # all problems are counted; only this many messages are kept
# PIL modes whose decoding needs care: alpha is composited on grey, 16-bit/float scaled to 8 bits
SPECIAL_MODES = ("RGBA", "LA", "PA", "RGBa", "La", "I;16", "I;16B", "I;16L", "I;16N", "I", "F", "RGB;16", "RGBA;16")
# PIL modes of one-channel frames (infrared, x-ray, binarised boards): the loader keeps them one channel
GRAY_MODES = ("L", "I;16", "I;16B", "I;16L", "I;16N", "I", "F")


class DatasetError(ValueError):
    """A data set that cannot be used: the message names the file, the record and the problem."""


def size_buckets(sides: np.ndarray) -> np.ndarray:
    """Counts of box sizes (sqrt of area, px) in the buckets <8, 8-16, 16-32, 32-96, >96."""
    idx = np.searchsorted(np.asarray(SIZE_EDGES, dtype=np.float64), np.asarray(sides, dtype=np.float64), side="right")
    return np.bincount(idx, minlength=len(SIZE_LABELS))[: len(SIZE_LABELS)]


@dataclass
class DatasetReport:
    """What one split holds and every problem found in it."""
    json_path: str
    img_dir: str
    split: str = ""
    names: list[str] = field(default_factory=list)
    images: int = 0            # usable images (with or without boxes)
    negatives: int = 0         # usable images without boxes
    boxes: int = 0
    per_class: list[int] = field(default_factory=list)
    buckets: list[int] = field(default_factory=lambda: [0] * len(SIZE_LABELS))
    counts: Counter = field(default_factory=Counter)    # problem kind -> count
    converted: Counter = field(default_factory=Counter)  # PIL mode -> images converted to 8-bit RGB
    messages: list[str] = field(default_factory=list)  # the first MAX_STORED_MESSAGES problems
    fatal: str = ""            # set when the split cannot be used
    boxes_of_skipped: int = 0  # annotations left unused because their image was skipped
    ignore_regions: int = 0    # iscrowd=1 regions: no loss where they lie (docs/ignore-regions.md)

    def add(self, kind: str, message: str) -> None:
        self.counts[kind] += 1
        if len(self.messages) < MAX_STORED_MESSAGES:
            self.messages.append(message)

    @property
    def usable(self) -> bool:
        return not self.fatal

    @property
    def problems(self) -> int:
        return sum(self.counts.values())

    def summary(self, max_messages: int = 20, sides_at: np.ndarray | None = None, imgsz: int = 0) -> str:
        """Human-readable summary; `sides_at` (box sizes at training scale) adds a second bucket line."""
        head = f"{self.split or 'split'}: {self.json_path}  (images: {self.img_dir})"
        if self.fatal:
            return f"{head}\n  UNUSABLE: {self.fatal}"
        lines = [head, f"  images {self.images} ({self.negatives} without boxes), boxes {self.boxes}, "
                       f"classes {len(self.names)}"]
        if self.names:
            lines.append("  per class: " + ", ".join(f"{display_text(n, 40)} {c}" for n, c in zip(self.names,
                                                                                              self.per_class)))
        lines.append("  box size sqrt(w*h) px: " + ", ".join(f"{b} {c}" for b, c in zip(SIZE_LABELS, self.buckets)))
        if sides_at is not None:
            at = size_buckets(sides_at)
            lines.append(f"  at imgsz {imgsz}:        " + ", ".join(f"{b} {c}" for b, c in zip(SIZE_LABELS, at)))
        if self.converted:
            lines.append("  converted to 8-bit RGB when loaded: " + ", ".join(
                f"{m} {c}" for m, c in sorted(self.converted.items())))
        if self.ignore_regions:
            lines.append(f"  ignore regions (iscrowd=1): {self.ignore_regions}")
        if self.boxes_of_skipped:
            lines.append(f"  boxes on skipped images (not used): {self.boxes_of_skipped}")
        if not self.counts:
            lines.append("  problems: none")
        else:
            kinds = ", ".join(f"{k} {c}" for k, c in sorted(self.counts.items(), key=lambda kv: -kv[1]))
            lines.append(f"  problems {self.problems}: {kinds}")
            lines += [f"    {m}" for m in self.messages[:max_messages]]
            if self.problems > max_messages:
                lines.append(f"    ... and {self.problems - max_messages} more")
        return "\n".join(lines)


@dataclass
class CocoSplit:
    """One validated split: per-image arrays in json order (skipped records removed)."""
    json_path: str
    img_dir: str
    names: list[str]
    cat_ids: list[int]
    image_ids: np.ndarray          # (N,) int64
    files: list[str]               # absolute image paths
    shapes: np.ndarray             # (N, 2) int64 original (h, w)
    boxes: list[np.ndarray]        # (n, 5) float32 [cls, x1, y1, x2, y2] original px
    ann_ids: list[np.ndarray]      # (n,) int64 annotation ids (for tracing a label back)
    convert: np.ndarray            # (N,) bool: alpha / 16-bit / float images, decoded by the slow path
    report: DatasetReport
    orientation: np.ndarray | None = None  # (N,) EXIF orientation 1-8 (0: not read, check='none')
    # (k, 4) float32 [x1, y1, x2, y2] original px per image: iscrowd=1 regions (docs/ignore-regions.md)
    ignore: list[np.ndarray] = field(default_factory=list)
    gray: np.ndarray | None = None  # (N,) bool: one-channel files (GRAY_MODES; all False with check='none')


def _read_json(path: Path) -> dict:
    if not path.is_file():
        raise DatasetError(f"{path}: annotation file not found")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise DatasetError(f"{path}: cannot read annotation file: {e}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise DatasetError(f"{path}: malformed JSON at line {e.lineno} column {e.colno}: {e.msg}") from None
    if not isinstance(data, dict):
        raise DatasetError(f"{path}: expected a COCO object with 'images', 'annotations', 'categories', "
                           f"got {type(data).__name__}")
    return data


def read_json(path: str | Path) -> dict:
    """A COCO json as a dict; DatasetError naming the file (and line, column) when it is malformed."""
    return _read_json(Path(path))


def parse_categories(data: dict, json_path: Path | str) -> tuple[list[str], list[int]]:
    """COCO categories -> (names, original ids), sorted by id (contiguous index = position)."""
    cats = data.get("categories")
    if not isinstance(cats, list) or not cats:
        raise DatasetError(f"{json_path}: 'categories' is missing or empty; class names come from it")
    seen: dict[int, str] = {}
    for i, c in enumerate(cats):
        if not isinstance(c, dict) or not isinstance(c.get("id"), int) or isinstance(c.get("id"), bool):
            raise DatasetError(f"{json_path}: categories[{i}]: needs an integer 'id', got {c!r:.80}")
        if c["id"] in seen:
            raise DatasetError(f"{json_path}: categories[{i}]: duplicate category id {c['id']} "
                               f"('{display_text(seen[c['id']], 60)}' and '{display_text(c.get('name'), 60)}')")
        seen[c["id"]] = str(c.get("name", c["id"]))
    ids = sorted(seen)
    return [seen[i] for i in ids], ids


def read_categories(json_path: str | Path) -> tuple[list[str], list[int]]:
    return parse_categories(_read_json(Path(json_path)), json_path)


# (status, h, w, detail, EXIF orientation, note): h, w as the image is shown and read (orientation applied);
# detail: the PIL mode, or why it is unreadable; note: what converting it to 8 bits lost ('' if nothing)
Probe = tuple[str, int, int, str, int, str]


def _probe_header(path: str, bit_depth: int | str = "auto") -> Probe:
    """From the file header only: fast enough for every image at start-up."""
    from PIL import Image  # torchvision's dependency; reads the header without decoding pixels
    try:
        with Image.open(path) as im:
            (w, h), orientation = shown_size(im), exif_orientation(im)
            mode, fmt = header_mode(im), im.format
    except FileNotFoundError:
        return "missing", 0, 0, "", 1, ""
    except Exception as e:  # PIL raises many types for corrupt files
        return "unreadable", 0, 0, f"{type(e).__name__}: {e}", 1, ""
    if fmt == "JPEG":  # a truncated JPEG decodes with grey rows; the end marker tells
        with open(path, "rb") as f:
            f.seek(-2, 2)
            if f.read() != b"\xff\xd9":
                return "truncated", h, w, mode, orientation, ""
    return "ok", h, w, mode, orientation, ""


def _probe_decode(path: str, bit_depth: int | str = "auto") -> Probe:
    """By decoding the whole image as training will (python -m utils.data.dataset --check full): its shown
    size, and for 16-bit/float images whether the conversion to 8 bits keeps the signal."""
    status, _, _, mode, orientation, _ = _probe_header(path)
    if status in ("missing", "unreadable"):
        return status, 0, 0, mode, 1, ""
    img = cv2.imread(path, cv2.IMREAD_UNCHANGED | cv2.IMREAD_IGNORE_ORIENTATION)
    if img is None:
        return "unreadable", 0, 0, "cv2 could not decode it", 1, ""
    note = to_bgr8(img, bit_depth)[1] if mode in SPECIAL_MODES else ""
    h, w = img.shape[:2]
    return status, *((w, h) if orientation in SWAPS_SIDES else (h, w)), mode, orientation, note


def _check_images(paths: list[str], check: str, bit_depth: int | str = "auto") -> list[Probe]:
    if check == "none":
        return [("ok", 0, 0, "RGB", 0, "")] * len(paths)  # orientation 0: not read (read_image reads it)
    probe = partial(_probe_decode if check == "full" else _probe_header, bit_depth=bit_depth)
    with ThreadPoolExecutor(8) as ex:  # I/O and cv2 decoding release the GIL
        return list(ex.map(probe, paths, chunksize=64))


def _num(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _int(v) -> bool:
    """An integer id (bool is an int subclass in Python, but True is no id)."""
    return isinstance(v, int) and not isinstance(v, bool)


def load_coco(json_path: str | Path, img_dir: str | Path, names: list[str] | None = None, check: str = "header",
              split: str = "", bit_depth: int | str = "auto") -> CocoSplit:
    """Read and validate a COCO detection json. check: 'header' (file headers), 'full' (decode every
    image, and check 16-bit/float ones convert to 8 bits by bit_depth without losing their contrast),
    'none' (trust the json). Image sizes are as shown (EXIF orientation applied, utils/data/image_io.py).
    Raises DatasetError when the split cannot be used."""
    json_path, img_dir = Path(json_path), Path(img_dir)
    rep = DatasetReport(str(json_path), str(img_dir), split)
    data = _read_json(json_path)
    cat_names, cat_ids = parse_categories(data, json_path)
    if names is not None and list(names) != cat_names:
        raise DatasetError(f"{json_path}: categories {cat_names} differ from the expected names {list(names)} "
                           f"(all splits of a data set must share one category list)")
    rep.names = cat_names
    cls_of = {cid: i for i, cid in enumerate(cat_ids)}
    images = data.get("images")
    if not isinstance(images, list):
        raise DatasetError(f"{json_path}: 'images' is missing or not a list")
    anns = data.get("annotations", [])
    if not isinstance(anns, list):
        raise DatasetError(f"{json_path}: 'annotations' is not a list")
    if not img_dir.is_dir():
        raise DatasetError(f"{json_path}: image folder {img_dir} does not exist")

    # images: ids, files, json sizes
    recs: list[tuple[int, str, str, int, int]] = []  # (id, file_name, path, json h, json w)
    seen_ids: dict[int, str] = {}   # image id -> file_name of its first record
    seen_files: dict[str, int] = {}
    ambiguous: set[int] = set()     # ids naming two different files: annotations cannot be attributed
    for i, im in enumerate(images):
        iid = im.get("id") if isinstance(im, dict) else None
        fname = im.get("file_name") if isinstance(im, dict) else None
        if not _int(iid) or not isinstance(fname, str) or not fname:
            rep.add("bad image record", f"{json_path}: images[{i}]: needs an integer 'id' and a 'file_name', "
                                        f"got {im!r:.80}; skipped")
            continue
        if iid in seen_ids:
            if seen_ids[iid] == fname:  # the same record listed twice: harmless
                rep.add("duplicate image id", f"{json_path}: images[{i}]: image id {iid} ({fname}) is listed "
                                              f"again; the repeat is skipped")
            else:
                rep.add("duplicate image id", f"{json_path}: images[{i}]: image id {iid} names both "
                                              f"{seen_ids[iid]} and {fname}; its annotations cannot be "
                                              f"attributed, so both images and their boxes are skipped")
                ambiguous.add(iid)
            continue
        if fname in seen_files:
            rep.add("duplicate file_name", f"{json_path}: image id {iid}: file {fname} is also image id "
                                           f"{seen_files[fname]}; both kept")
        seen_ids[iid] = fname
        seen_files.setdefault(fname, iid)
        jh, jw = im.get("height"), im.get("width")
        recs.append((iid, fname, str(img_dir / fname), int(jh) if _num(jh) else 0, int(jw) if _num(jw) else 0))
    recs = [r for r in recs if r[0] not in ambiguous]

    # files on disk
    probes = _check_images([r[2] for r in recs], check, bit_depth)
    keep: dict[int, int] = {}   # image id -> row
    rows_id, rows_file, rows_hw, rows_conv, rows_orient, rows_gray = [], [], [], [], [], []
    for (iid, fname, path, jh, jw), (status, h, w, mode, orientation, note) in zip(recs, probes):
        where = f"{json_path}: image id {iid} ({path})"
        if status == "missing":
            rep.add("missing image", f"{where}: file not found; skipped")
            continue
        if status == "unreadable":
            rep.add("unreadable image", f"{where}: cannot be read ({mode}); skipped")
            continue
        if status == "truncated":
            rep.add("truncated image", f"{where}: JPEG has no end marker (truncated?); used as decoded")
        if check == "none":
            h, w = jh, jw
            if h <= 0 or w <= 0:
                rep.add("bad image record", f"{where}: no valid width/height in the json; skipped")
                continue
        elif (jh, jw) != (h, w) and jh and jw:
            if orientation in SWAPS_SIDES and (jh, jw) == (w, h):  # labelled on the stored, unrotated pixels?
                rep.add("size mismatch", f"{where}: json says {jw}x{jh}, the size stored in the file, but its EXIF "
                                         f"orientation {orientation} shows it as {w}x{h} (as viewers and labelling "
                                         f"tools show it, and as it is read); the shown size is used")
            else:
                rep.add("size mismatch", f"{where}: json says {jw}x{jh}, the file is {w}x{h}; the file's size is used")
        if note:
            rep.add("signal lost in conversion", f"{where}: {note}; set bit_depth in the data YAML "
                                                 f"(docs/bit_depth.md)")
        if mode != "RGB" and check != "none":
            rep.converted[mode] += 1  # grayscale, palette, CMYK: cv2 converts them; alpha/16-bit need care
        conv = mode in SPECIAL_MODES
        keep[iid] = len(rows_id)
        rows_id.append(iid)
        rows_file.append(path)
        rows_hw.append((h, w))
        rows_conv.append(conv)
        rows_orient.append(orientation)
        rows_gray.append(check != "none" and mode in GRAY_MODES)

    # annotations, grouped per kept image
    per_img: list[list[list[float]]] = [[] for _ in rows_id]
    per_ids: list[list[int]] = [[] for _ in rows_id]
    per_ign: list[list[list[float]]] = [[] for _ in rows_id]
    skipped_img_ids = set(seen_ids) - set(keep)
    seen_ann: dict[int, int] = {}  # annotation id -> index of its first record
    for i, a in enumerate(anns):
        if not isinstance(a, dict):
            rep.add("bad annotation record", f"{json_path}: annotations[{i}]: not an object; skipped")
            continue
        aid = a.get("id", -1 - i)
        where = f"{json_path}: annotation id {aid}"
        if not _int(aid):
            rep.add("bad annotation record", f"{json_path}: annotations[{i}]: id {aid!r} is not an integer; skipped")
            continue
        if aid in seen_ann:
            rep.add("duplicate annotation id", f"{where}: annotations[{i}] reuses the id of annotations"
                                               f"[{seen_ann[aid]}]; this record is skipped")
            continue
        seen_ann[aid] = i
        iid = a.get("image_id")
        if not _int(iid) or iid not in keep:
            if _int(iid) and iid in skipped_img_ids:
                rep.boxes_of_skipped += 1  # the image was reported once; its boxes are only counted
                continue
            rep.add("unknown image id", f"{where}: image_id {iid!r:.40} is not in 'images'; skipped")
            continue
        crowd = bool(a.get("iscrowd", 0))
        cid = a.get("category_id")
        if not crowd and (not _int(cid) or cid not in cls_of):  # a region needs no class
            rep.add("unknown category id", f"{where}: category_id {cid!r:.40} is not in 'categories' "
                                           f"{cat_ids}; skipped")
            continue
        bb = a.get("bbox")
        if not isinstance(bb, (list, tuple)) or len(bb) != 4 or not all(_num(v) for v in bb):
            rep.add("bad bbox", f"{where}: bbox {bb!r:.60} is not 4 finite numbers [x, y, w, h]; skipped")
            continue
        x, y, bw, bh = (float(v) for v in bb)
        if bw <= 0 or bh <= 0:
            rep.add("zero or negative size", f"{where}: bbox {bb} has zero or negative width/height; dropped")
            continue
        row = keep[iid]
        h, w = rows_hw[row]
        x1, y1, x2, y2 = max(x, 0.0), max(y, 0.0), min(x + bw, float(w)), min(y + bh, float(h))
        if x2 <= x1 or y2 <= y1:
            rep.add("box outside image", f"{where}: bbox {bb} lies outside the {w}x{h} image; dropped")
            continue
        if (x1, y1, x2, y2) != (x, y, x + bw, y + bh):
            rep.add("box clipped", f"{where}: bbox {bb} extends outside the {w}x{h} image; clipped")
        if crowd:  # a region nobody labelled box by box: training gives its cells no loss
            per_ign[row].append([x1, y1, x2, y2])
            continue
        per_img[row].append([cls_of[cid], x1, y1, x2, y2])
        per_ids[row].append(aid)

    boxes = [np.asarray(b, dtype=np.float32).reshape(-1, 5) for b in per_img]
    allb = np.concatenate(boxes) if boxes else np.zeros((0, 5), np.float32)
    rep.images = len(rows_id)
    rep.ignore_regions = sum(len(r) for r in per_ign)
    rep.negatives = sum(len(b) == 0 for b in boxes)
    rep.boxes = len(allb)
    rep.per_class = np.bincount(allb[:, 0].astype(np.int64), minlength=len(cat_names)).tolist()
    rep.buckets = size_buckets(np.sqrt((allb[:, 3] - allb[:, 1]) * (allb[:, 4] - allb[:, 2]))).tolist()
    if not rows_id:
        kinds = ", ".join(f"{k} {c}" for k, c in rep.counts.items()) or f"{len(images)} image records"
        rep.fatal = f"no usable images ({kinds})"
        first = f"; first problem: {rep.messages[0]}" if rep.messages else ""
        raise DatasetError(f"{json_path}: no usable images in {img_dir} ({kinds}){first}")
    return CocoSplit(str(json_path), str(img_dir), cat_names, cat_ids, np.asarray(rows_id, dtype=np.int64),
                     rows_file, np.asarray(rows_hw, dtype=np.int64).reshape(-1, 2), boxes,
                     [np.asarray(x, dtype=np.int64) for x in per_ids], np.asarray(rows_conv, dtype=bool), rep,
                     np.asarray(rows_orient, dtype=np.int64),
                     [np.asarray(r, dtype=np.float32).reshape(-1, 4) for r in per_ign],
                     np.asarray(rows_gray, dtype=bool))

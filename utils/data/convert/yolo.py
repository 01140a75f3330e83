"""YOLO txt labels <-> COCO json.

A YOLO label file `labels/<image path relative to images/>.txt` has one line per box,
`class cx cy w h`, the four numbers normalised to 0..1 by the image width and height, or per
segment `class x1 y1 x2 y2 x3 y3 ...` (normalised too), which becomes its enclosing box. An image
without a label file (or with an empty one) is a negative. COCO category ids are class + 1.
"""
from __future__ import annotations

import math
from pathlib import Path

from utils.data.convert.common import CocoBuilder, ConvertError, Problems, add_image_file, list_images
from utils.data.coco import parse_categories, read_json

CLASSES_FILE = "classes.txt"  # class names beside the labels (labelImg's convention); not a label file
DECIMALS = 8                  # normalised values written with 8 decimals: < 1e-3 px even at 10^5 px


def _int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _num(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _pos(v) -> bool:
    return _num(v) and v > 0


def _relative(name) -> bool:
    """A file_name that stays inside the output folder once '.txt' replaces its suffix."""
    return isinstance(name, str) and bool(name) and not Path(name).is_absolute() and ".." not in Path(name).parts


def _parse_line(line: str, nc: int) -> tuple[int, list[float]] | str:
    """(class, [cx, cy, w, h]) or a description of what is wrong."""
    cols = line.split()
    polygon = len(cols) >= 7 and len(cols) % 2 == 1  # class x1 y1 x2 y2 x3 y3 ... (a segment, YOLOv5 -seg)
    if len(cols) != 5 and not polygon:
        return f"expected 5 values 'class cx cy w h' or a polygon 'class x1 y1 x2 y2 x3 y3 ...', got {len(cols)}"
    try:
        vals = [float(c) for c in cols]
    except ValueError:
        return f"non-numeric value in {line.strip()!r}"
    cls = vals[0]
    if not cls.is_integer() or not 0 <= cls < nc:
        return f"class {cols[0]} is not an integer in 0..{nc - 1}"
    if not all(math.isfinite(v) and 0.0 <= v <= 1.0 for v in vals[1:]):
        return f"{'polygon x y' if polygon else 'cx cy w h'} {cols[1:]} must be normalised to 0..1"
    if polygon:  # its enclosing box, as YOLOv5 trains detection on segment labels
        xs, ys = vals[1::2], vals[2::2]
        box = [(min(xs) + max(xs)) / 2, (min(ys) + max(ys)) / 2, max(xs) - min(xs), max(ys) - min(ys)]
    else:
        box = vals[1:]
    if box[2] <= 0 or box[3] <= 0:
        return f"polygon {cols[1:]} has zero width or height" if polygon else f"zero width or height {cols[3:]}"
    return int(cls), box


def read_label_file(lab: Path, nc: int, probs: Problems) -> list[tuple[int, list[float]]]:
    """(class, [cx, cy, w, h]) of each good line of one label file; each bad line is added to
    probs as '<file> line <n>: <what is wrong>'."""
    try:
        text = lab.read_text(encoding="utf-8-sig")  # -sig: a BOM some editors add is not data
    except (OSError, UnicodeDecodeError) as e:
        probs.add(f"{lab}: cannot read label file ({type(e).__name__}: {e})")
        return []
    out = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        got = _parse_line(line, nc)
        if isinstance(got, str):
            probs.add(f"{lab} line {n}: {got}")
        else:
            out.append(got)
    return out


def add_label_file(build: CocoBuilder, image_id: int, w: int, h: int, lab: Path, probs: Problems) -> None:
    """Add the boxes of label file `lab` to image `image_id` (w x h px) in pixels."""
    for cls, (cx, cy, bw, bh) in read_label_file(lab, len(build.names), probs):
        build.add_box(image_id, cls, (cx - bw / 2) * w, (cy - bh / 2) * h, bw * w, bh * h)


def yolo_to_coco(images: str | Path, labels: str | Path, names: list[str]) -> dict:
    """COCO dict for every image under `images`; file_name is the path relative to `images`.
    Raises ConvertError listing every malformed line and every label file without an image."""
    images, labels = Path(images), Path(labels)
    if not labels.is_dir():
        raise ConvertError(f"label folder {labels} not found")
    probs = Problems(f"YOLO labels {labels}")
    build = CocoBuilder(names)
    used: dict[Path, Path] = {}  # label file -> image that claimed it
    for img in list_images(images):
        rel = img.relative_to(images)
        lab = labels / rel.with_suffix(".txt")
        if lab in used:  # a.jpg and a.png would share a.txt: the boxes' image is ambiguous
            probs.add(f"{lab}: claimed by both {used[lab]} and {img}")
            continue
        used[lab] = img
        added = add_image_file(build, img, rel.as_posix(), probs)
        if added is None:
            continue
        image_id, w, h = added
        if lab.is_file():  # else a negative image
            add_label_file(build, image_id, w, h, lab, probs)
    for lab in sorted(labels.rglob("*.txt")):
        if lab not in used and lab != labels / CLASSES_FILE:
            probs.add(f"{lab}: no image for this label file under {images}")
    probs.raise_if_any()
    return build.document(f"converted from YOLO labels {labels}")


def coco_to_yolo(json_path: str | Path, out_dir: str | Path) -> dict[str, int]:
    """Write one YOLO txt per image (empty for negatives) and classes.txt under out_dir. Boxes
    are clipped to the image (YOLO cannot hold more); crowd regions and boxes with no area
    left are not written. Returns counts: images, boxes, clipped, dropped, crowd."""
    json_path, out_dir = Path(json_path), Path(out_dir)
    data = read_json(json_path)
    names, cat_ids = parse_categories(data, json_path)
    cls_of = {c: k for k, c in enumerate(cat_ids)}
    probs = Problems(f"COCO json {json_path}")
    sizes: dict[int, tuple[str, float, float]] = {}
    for i, im in enumerate(data.get("images") or []):
        ok = isinstance(im, dict) and all(_pos(im.get(k)) for k in ("width", "height"))
        ok = ok and _int(im.get("id")) and im["id"] not in sizes and _relative(im.get("file_name"))
        if not ok:
            probs.add(f"images[{i}]: needs a unique integer 'id', a relative 'file_name' and positive 'width', "
                      f"'height': {im!r:.80}")
            continue
        sizes[im["id"]] = (im["file_name"], float(im["width"]), float(im["height"]))
    lines: dict[int, list[str]] = {iid: [] for iid in sizes}
    counts = {"images": len(sizes), "boxes": 0, "clipped": 0, "dropped": 0, "crowd": 0}
    for i, a in enumerate(data.get("annotations") or []):
        where = f"annotation id {a.get('id')!r}" if isinstance(a, dict) else f"annotations[{i}]"
        ok = isinstance(a, dict) and _int(a.get("image_id")) and _int(a.get("category_id"))
        if not ok or a["image_id"] not in sizes or a["category_id"] not in cls_of:
            probs.add(f"{where}: needs an 'image_id' in 'images' and a 'category_id' in 'categories'")
            continue
        bb = a.get("bbox")
        if not (isinstance(bb, list) and len(bb) == 4 and all(_num(v) for v in bb)):
            probs.add(f"{where}: bbox {bb!r:.60} is not [x, y, w, h]")
            continue
        if a.get("iscrowd", 0):
            counts["crowd"] += 1
            continue
        _, W, H = sizes[a["image_id"]]
        x1, y1 = min(max(bb[0], 0.0), W), min(max(bb[1], 0.0), H)
        x2, y2 = min(max(bb[0] + bb[2], 0.0), W), min(max(bb[1] + bb[3], 0.0), H)
        if x2 <= x1 or y2 <= y1:
            counts["dropped"] += 1
            continue
        counts["clipped"] += (x1, y1, x2, y2) != (bb[0], bb[1], bb[0] + bb[2], bb[1] + bb[3])
        vals = ((x1 + x2) / 2 / W, (y1 + y2) / 2 / H, (x2 - x1) / W, (y2 - y1) / H)
        lines[a["image_id"]].append(f"{cls_of[a['category_id']]} " + " ".join(f"{v:.{DECIMALS}f}" for v in vals))
        counts["boxes"] += 1
    probs.raise_if_any()
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / CLASSES_FILE).write_text("\n".join(names) + "\n", encoding="utf-8")
    for iid, (fname, _, _) in sizes.items():
        lab = out_dir / Path(fname).with_suffix(".txt")
        lab.parent.mkdir(parents=True, exist_ok=True)
        lab.write_text("".join(s + "\n" for s in lines[iid]), encoding="utf-8")
    return counts

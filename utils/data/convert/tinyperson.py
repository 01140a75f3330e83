"""TinyPerson json -> COCO json for training and the TinyPerson protocol.

TinyPerson's annotations are COCO-like: `images`, `categories` (sea_person, earth_person) and
`annotations` with `bbox` [x, y, w, h] in pixels plus the flags `ignore` (a region or a person
too dense or unclear to box: neither a true nor a false positive), `uncertain`, `in_dense_image`
and often `logo`. The benchmark scores the two categories as one class, person.

The output keeps the image and annotation ids, sets iscrowd 1 on `ignore` boxes, and writes the
flags on every annotation under the same names (`ignore` and `uncertain` always, 0 when absent;
`in_dense_image` and `logo` where given), which is what `val.py --protocol tinyperson` reads.
"""
from __future__ import annotations

import math
from pathlib import Path

from utils.data.convert.common import ConvertError, Problems, image_size
from utils.data.coco import parse_categories, read_json

FLAGS = ("ignore", "uncertain", "in_dense_image", "logo")


def _flag(a: dict, key: str) -> int | None:
    v = a.get(key, 0)
    return int(v) if isinstance(v, (bool, int)) and v in (0, 1) else None


def tinyperson_to_coco(json_path: str | Path, images: str | Path, keep_categories: bool = False) -> dict:
    """COCO dict from a TinyPerson annotation json whose file_name values are relative to `images`.
    Raises ConvertError listing every bad record (missing image, bad bbox, flag not 0/1, unknown id)."""
    json_path, images = Path(json_path), Path(images)
    if not images.is_dir():
        raise ConvertError(f"image folder {images} not found")
    data = read_json(json_path)
    names, cat_ids = parse_categories(data, json_path)
    probs = Problems(f"TinyPerson json {json_path}")
    out_images, ids = [], set()
    for i, im in enumerate(data.get("images") or []):
        iid = im.get("id") if isinstance(im, dict) else None
        fname = im.get("file_name") if isinstance(im, dict) else None
        if not isinstance(iid, int) or isinstance(iid, bool) or iid in ids or not isinstance(fname, str) or not fname:
            probs.add(f"{json_path}: images[{i}]: needs a unique integer 'id' and a 'file_name', got {im!r:.80}")
            continue
        try:
            w, h = image_size(images / fname)
        except ConvertError as e:
            probs.add(f"{json_path}: image id {iid}: {e}")
            continue
        ids.add(iid)
        out_images.append({"id": iid, "file_name": Path(fname).as_posix(), "width": w, "height": h})
    cat_of = {c: (1 if not keep_categories else c) for c in cat_ids}
    out_anns = []
    for i, a in enumerate(data.get("annotations") or []):
        where = f"{json_path}: annotation id {a.get('id')!r}" if isinstance(a, dict) else f"annotations[{i}]"
        if not isinstance(a, dict) or not isinstance(a.get("id"), int):
            probs.add(f"{where}: not an object with an integer 'id'")
            continue
        if a.get("image_id") not in ids or a.get("category_id") not in cat_of:
            probs.add(f"{where}: image_id {a.get('image_id')!r:.40} or category_id {a.get('category_id')!r:.40} "
                      f"is not in 'images' / 'categories'")
            continue
        bb = a.get("bbox")
        if not (isinstance(bb, list) and len(bb) == 4 and all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                                              and math.isfinite(v) for v in bb)) or min(bb[2:]) <= 0:
            probs.add(f"{where}: bbox {bb!r:.60} is not [x, y, w, h] with positive w and h")
            continue
        flags = {k: _flag(a, k) for k in FLAGS if k in a or k in ("ignore", "uncertain")}
        bad = [k for k, v in flags.items() if v is None]
        if bad:
            probs.add(f"{where}: {', '.join(f'{k}={a.get(k)!r}' for k in bad)} must be 0 or 1")
            continue
        crowd = 1 if flags["ignore"] or a.get("iscrowd", 0) else 0
        out_anns.append({"id": a["id"], "image_id": a["image_id"], "category_id": cat_of[a["category_id"]],
                         "bbox": [float(v) for v in bb], "area": float(bb[2] * bb[3]), "iscrowd": crowd, **flags})
    probs.raise_if_any()
    cats = ([{"id": c, "name": n, "supercategory": "person"} for c, n in zip(cat_ids, names)] if keep_categories
            else [{"id": 1, "name": "person", "supercategory": "person"}])
    return {"info": {"description": f"converted from TinyPerson json {json_path}", "warnings": []},
            "images": out_images, "annotations": out_anns, "categories": cats}

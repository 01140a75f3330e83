"""VisDrone-DET txt -> COCO json.

One txt per image (`annotations/<stem>.txt` beside `images/<stem>.jpg`), one object per line:
`bbox_left,bbox_top,bbox_width,bbox_height,score,object_category,truncation,occlusion` in pixels.
Category 0 marks an ignored region, 1..10 are the classes below, 11 "others"; in ground truth the
score is 1 for a box that is evaluated and 0 for one that is not.

What becomes what (every source column is kept on the annotation: visdrone_category, score,
truncation, occlusion):
- classes 1..10 with score 1: boxes;
- classes 1..10 with score 0: ignore regions (iscrowd 1, ignore 1) of their class;
- category 0 (and 11 unless others='drop'): ignore regions of every class, one copy per class,
  because pycocotools matches a crowd region only to detections of its own category.
"""
from __future__ import annotations

import math
from pathlib import Path

from utils.data.convert.common import (CocoBuilder, Problems, add_image_file, paired_label_files,
                                       read_lines)

CLASSES = ("pedestrian", "people", "bicycle", "car", "van", "truck", "tricycle", "awning-tricycle", "bus", "motor")
IGNORED, OTHERS = 0, 11
OTHERS_CHOICES = ("ignore", "drop")


def _parse_line(line: str) -> tuple[list[float], int, int, int, int] | str:
    """([x, y, w, h], score, category, truncation, occlusion) or what is wrong."""
    cols = [c.strip() for c in line.strip().split(",")]
    if cols and cols[-1] == "":  # some files end each line with a comma
        cols = cols[:-1]
    if len(cols) != 8:
        return (f"expected 8 comma-separated values 'left,top,width,height,score,category,truncation,occlusion', "
                f"got {len(cols)}")
    try:
        vals = [float(c) for c in cols]
    except ValueError:
        return f"non-numeric value in {line.strip()!r}"
    if not all(math.isfinite(v) for v in vals):
        return f"non-finite value in {line.strip()!r}"
    score, cat, trunc, occ = vals[4:]
    if score not in (0, 1):
        return f"score {cols[4]} is not 0 or 1 (ground truth; is this a detection file?)"
    if not cat.is_integer() or not 0 <= cat <= OTHERS:
        return f"object_category {cols[5]} is not an integer in 0..11"
    if not (trunc.is_integer() and occ.is_integer()):
        return f"truncation {cols[6]} and occlusion {cols[7]} must be integers"
    return vals[:4], int(score), int(cat), int(trunc), int(occ)


def visdrone_to_coco(labels: str | Path, images: str | Path, others: str = "ignore") -> dict:
    """COCO dict for every image under `images` (an image without a txt is a negative). Raises
    ConvertError listing every malformed line and every txt without an image; boxes of zero width
    or height are left out and listed in info['warnings']."""
    if others not in OTHERS_CHOICES:
        raise ValueError(f"others must be one of {OTHERS_CHOICES}, got {others!r}")
    labels, images = Path(labels), Path(images)
    probs = Problems(f"VisDrone annotations {labels}")
    files, imgs, orphans = paired_label_files(labels, images, probs)
    build, warnings = CocoBuilder(list(CLASSES)), []
    every_class = range(len(CLASSES))
    for key, img in imgs.items():
        added = add_image_file(build, img, img.relative_to(images).as_posix(), probs)
        if added is None:
            continue
        image_id, w, h = added
        txt = files.get(key)
        if txt is None:
            continue
        for n, line in enumerate(read_lines(txt, probs), 1):
            if not line.strip():
                continue
            got = _parse_line(line)
            if isinstance(got, str):
                probs.add(f"{txt} line {n}: {got}")
                continue
            (x, y, bw, bh), score, cat, trunc, occ = got
            if bw <= 0 or bh <= 0:
                warnings.append(f"{txt} line {n}: zero width or height {bw:g}x{bh:g}; left out")
                continue
            extra = {"visdrone_category": cat, "score": score, "truncation": trunc, "occlusion": occ}
            if cat in (IGNORED, OTHERS):
                if cat == OTHERS and others == "drop":
                    continue
                for k in every_class:  # a region of every class: crowd matching is per category
                    build.add_box(image_id, k, x, y, bw, bh, **extra)
                    build.annotations[-1].update(iscrowd=1, ignore=1)
            else:
                build.add_box(image_id, cat - 1, x, y, bw, bh, **extra)
                if score == 0:  # not evaluated: neither a true nor a false positive
                    build.annotations[-1].update(iscrowd=1, ignore=1)
    probs.raise_if_any()
    doc = build.document(f"converted from VisDrone-DET annotations {labels}")
    doc["info"]["warnings"] = orphans + warnings
    return doc

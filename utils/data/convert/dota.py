"""DOTA labelTxt (v1.0 / v1.5 / v2.0) -> COCO json.

One txt per image (`labelTxt/<stem>.txt` beside `images/<stem>.png`): optional header lines
`imagesource:<source>` and `gsd:<metres per pixel>`, then one object per line
`x1 y1 x2 y2 x3 y3 x4 y4 category difficult` (an oriented quadrilateral in pixels; a line without
the difficult column counts as not difficult).

Each polygon becomes its enclosing axis-aligned box, clipped to the image, with the polygon kept as
the COCO `segmentation` and `difficult` kept on the annotation. Difficult objects are ignored in
evaluation, as DOTA's horizontal-box task does (iscrowd 1, ignore 1), unless keep_difficult.
The header is kept on the image record (`imagesource`, `gsd`).
"""
from __future__ import annotations

import math
from pathlib import Path

from utils.data.convert.common import (CocoBuilder, Problems, add_image_file, paired_label_files,
                                       read_lines)

V10 = ("plane", "ship", "storage-tank", "baseball-diamond", "tennis-court", "basketball-court",
       "ground-track-field", "harbor", "bridge", "large-vehicle", "small-vehicle", "helicopter", "roundabout",
       "soccer-ball-field", "swimming-pool")
VERSIONS = {"1.0": V10, "1.5": V10 + ("container-crane",), "2.0": V10 + ("container-crane", "airport", "helipad")}


def _header(line: str) -> tuple[str, str] | None:
    key, sep, value = line.partition(":")
    key = key.strip().lower()
    return (key, value.strip()) if sep and key in ("imagesource", "gsd") else None


def _parse_line(line: str) -> tuple[list[float], str, int] | str:
    cols = line.split()
    if len(cols) not in (9, 10):
        return f"expected 'x1 y1 x2 y2 x3 y3 x4 y4 category difficult', got {len(cols)} values"
    try:
        poly = [float(c) for c in cols[:8]]
    except ValueError:
        return f"non-numeric coordinate in {line.strip()!r}"
    if not all(math.isfinite(v) for v in poly):
        return f"non-finite coordinate in {line.strip()!r}"
    diff = cols[9] if len(cols) == 10 else "0"
    if not diff.isdigit():
        return f"difficult {diff!r} is not a non-negative integer"
    return poly, cols[8], int(diff)


def _versions_for(found: set[str]) -> tuple[str, ...] | None:
    return next((names for names in VERSIONS.values() if found <= set(names)), None)


def dota_to_coco(labels: str | Path, images: str | Path, version: str = "auto", keep_difficult: bool = False) -> dict:
    """COCO dict for every image under `images` (an image without a label file is a negative).
    version: '1.0', '1.5', '2.0' (its class list, in DOTA's order) or 'auto' (the first of them
    holding every class found). Raises ConvertError listing every problem by file and line."""
    if version != "auto" and version not in VERSIONS:
        raise ValueError(f"version must be 'auto' or one of {sorted(VERSIONS)}, got {version!r}")
    labels, images = Path(labels), Path(images)
    probs = Problems(f"DOTA labelTxt {labels}")
    files, imgs, orphans = paired_label_files(labels, images, probs)
    parsed: dict[str, tuple[dict, list]] = {}  # key -> (header, [(line no, poly, name, difficult)])
    for key, txt in files.items():
        if key not in imgs:
            continue
        header, objects = {}, []
        for n, line in enumerate(read_lines(txt, probs), 1):
            if not line.strip():
                continue
            head = _header(line)
            if head is not None:
                header[head[0]] = head[1]
                continue
            got = _parse_line(line)
            if isinstance(got, str):
                probs.add(f"{txt} line {n}: {got}")
            else:
                objects.append((n, *got))
        parsed[key] = header, objects
    found = {o[2] for _, objs in parsed.values() for o in objs}
    classes = VERSIONS[version] if version != "auto" else _versions_for(found) or VERSIONS["2.0"]
    index = {c: k for k, c in enumerate(classes)}
    which = f"DOTA v{version}" if version != "auto" else "DOTA (any version)"
    for key, (_, objs) in parsed.items():
        for n, _, name, _ in objs:
            if name not in index:
                probs.add(f"{files[key]} line {n}: category {name!r} is not a {which} class {list(classes)}")
    build, clipped = CocoBuilder(list(classes)), 0
    for key, img in imgs.items():
        added = add_image_file(build, img, img.relative_to(images).as_posix(), probs)
        if added is None:
            continue
        image_id, w, h = added
        header, objs = parsed.get(key, ({}, []))
        gsd = header.get("gsd")
        try:
            gsd = float(gsd) if gsd is not None else None
        except ValueError:  # 'null' or 'None' in some releases: no ground sample distance known
            gsd = None
        build.images[-1].update(imagesource=header.get("imagesource"), gsd=gsd)
        for n, poly, name, diff in objs:
            if name not in index:
                continue
            xs, ys = poly[0::2], poly[1::2]
            x1, y1 = max(min(xs), 0.0), max(min(ys), 0.0)
            x2, y2 = min(max(xs), float(w)), min(max(ys), float(h))
            clipped += (x1, y1, x2, y2) != (min(xs), min(ys), max(xs), max(ys))
            if x2 <= x1 or y2 <= y1:
                probs.add(f"{files[key]} line {n}: {name} polygon {poly} has no area inside the {w}x{h} image")
                continue
            build.add_box(image_id, index[name], x1, y1, x2 - x1, y2 - y1, segmentation=[poly], difficult=diff)
            if diff and not keep_difficult:
                build.annotations[-1].update(iscrowd=1, ignore=1)
    probs.raise_if_any()
    doc = build.document(f"converted from DOTA labelTxt {labels} (classes of DOTA v"
                         f"{next(v for v, c in VERSIONS.items() if c == tuple(classes))})")
    doc["info"]["warnings"] = orphans + ([f"{clipped} box(es) clipped to their image"] if clipped else [])
    return doc

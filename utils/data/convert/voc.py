"""Pascal VOC xml -> COCO json.

One xml per image: <filename>, <size><width><height>, and per object <name>, <difficult>,
<bndbox><xmin><ymin><xmax><ymax>. The VOC devkit counts pixels from 1 and includes xmax, so by
default a box becomes x = xmin - 1, w = xmax - xmin + 1; coords='edges' takes the numbers as
0-based pixel edges (x = xmin, w = xmax - xmin), as some annotation tools write them.
"""
from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

from utils.data.convert.common import IMAGE_SUFFIXES, CocoBuilder, ConvertError, Problems

COORDS = ("voc", "edges")


@dataclass
class _Object:
    index: int            # position among the file's <object> elements, for messages
    name: str
    box: tuple[float, float, float, float]  # xmin, ymin, xmax, ymax as written
    difficult: bool


def _number(node: ET.Element | None, tag: str) -> float | None:
    text = node.findtext(tag) if node is not None else None
    try:
        v = float(text)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def _find_image(xml: Path, xml_dir: Path, images: Path, filename: str | None) -> Path | None:
    """<filename> beside the xml's relative folder, else an image with the xml's stem."""
    rel = xml.relative_to(xml_dir).parent
    if filename:
        for cand in (images / rel / filename, images / filename):
            if cand.is_file():
                return cand
    for suffix in IMAGE_SUFFIXES:
        for cand in (images / rel / (xml.stem + suffix), images / rel / (xml.stem + suffix.upper())):
            if cand.is_file():
                return cand
    return None


def _parse(xml: Path, probs: Problems) -> tuple[str | None, int, int, list[_Object]] | None:
    """(filename, width, height, objects) of one file, or None after adding its problems."""
    try:
        root = ET.parse(xml).getroot()
    except ET.ParseError as e:
        line, col = e.position
        probs.add(f"{xml} line {line} column {col}: malformed xml ({e})")
        return None
    size = root.find("size")
    w, h = _number(size, "width"), _number(size, "height")
    if size is None or not w or not h or w <= 0 or h <= 0 or not w.is_integer() or not h.is_integer():
        probs.add(f"{xml}: <size> with positive integer <width> and <height> is missing or invalid")
        return None
    objects, ok = [], True
    for k, obj in enumerate(root.findall("object")):
        name = (obj.findtext("name") or "").strip()
        bnd = obj.find("bndbox")
        box = tuple(_number(bnd, t) for t in ("xmin", "ymin", "xmax", "ymax"))
        where = f"{xml}: object {k} ({name or 'no name'})"
        if not name:
            probs.add(f"{where}: <name> is missing")
            ok = False
        elif any(v is None for v in box):
            probs.add(f"{where}: <bndbox> needs numeric xmin, ymin, xmax, ymax")
            ok = False
        elif box[2] < box[0] or box[3] < box[1]:
            probs.add(f"{where}: xmax < xmin or ymax < ymin in {box}")
            ok = False
        else:
            objects.append(_Object(k, name, box, (obj.findtext("difficult") or "0").strip() == "1"))
    return ((root.findtext("filename") or "").strip() or None, int(w), int(h), objects) if ok else None


def voc_to_coco(xml_dir: str | Path, images: str | Path, names: list[str] | None = None, coords: str = "voc",
                skip_difficult: bool = False) -> dict:
    """COCO dict from every *.xml under xml_dir. names fixes the classes and their order (an object
    of another class is an error); without it the classes found are used, sorted by name.
    Difficult objects are kept with "difficult": 1 unless skip_difficult. file_name is the image
    path relative to `images`. Raises ConvertError listing every problem found."""
    if coords not in COORDS:
        raise ValueError(f"coords must be one of {COORDS}, got {coords!r}")
    xml_dir, images = Path(xml_dir), Path(images)
    for d, what in ((xml_dir, "xml"), (images, "image")):
        if not d.is_dir():
            raise ConvertError(f"{what} folder {d} not found")
    files = sorted(xml_dir.rglob("*.xml"))
    if not files:
        raise ConvertError(f"no .xml files under {xml_dir}")
    probs = Problems(f"VOC xml {xml_dir}")
    parsed = []
    for xml in files:
        rec = _parse(xml, probs)
        if rec is None:
            continue
        img = _find_image(xml, xml_dir, images, rec[0])
        if img is None:
            probs.add(f"{xml}: image {rec[0] or xml.stem + '.*'} not found under {images}")
            continue
        parsed.append((xml, img, rec))
    found = sorted({o.name for *_, rec in parsed for o in rec[3]})
    classes = list(names) if names else found
    index = {n: k for k, n in enumerate(classes)}
    for xml, _, rec in parsed:
        for o in rec[3]:
            if o.name not in index:
                probs.add(f"{xml}: object {o.index}: class {o.name!r} is not in --names {classes}")
    probs.raise_if_any()
    if not classes:
        raise ConvertError(f"{xml_dir}: no objects in any xml and no --names given: the class list is unknown")
    one = 1.0 if coords == "voc" else 0.0  # inclusive 1-based pixel indices -> 0-based edges
    build = CocoBuilder(classes)
    for xml, img, (_, w, h, objects) in parsed:
        image_id = build.add_image(img.relative_to(images).as_posix(), w, h)
        for o in objects:
            if o.difficult and skip_difficult:
                continue
            x1, y1, x2, y2 = o.box
            extra = {"difficult": 1} if o.difficult else {}
            build.add_box(image_id, index[o.name], x1 - one, y1 - one, x2 - x1 + one, y2 - y1 + one, **extra)
    return build.document(f"converted from Pascal VOC xml {xml_dir}")

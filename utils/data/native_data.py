"""Data YAML splits in a data set's own label format, converted on load to a cached COCO json.

```yaml
path: /data/VisDrone
train: {format: visdrone, labels: VisDrone2019-DET-train/annotations, images: VisDrone2019-DET-train/images}
val:   {format: visdrone, labels: VisDrone2019-DET-val/annotations,   images: VisDrone2019-DET-val/images}
```
Formats and their keys (paths relative to `path`; options as in `python -m utils.data.convert`):
visdrone {labels, images, others}, dota {labels, images, version, keep_difficult},
xview {geojson, images}, tinyperson {json, images, keep_categories}, voc {xml, images, names, coords,
skip_difficult}. The conversion is the converter's own (utils/data/convert/), cached by
utils/data/conversion_cache.py under a key that hashes every label file's bytes and every
image's path, size and mtime. A malformed label fails the load with every problem by file and
line; what the converter tolerates (clipped boxes, labels without images, ...) is logged.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Callable

from utils.data.coco import DatasetError
from utils.data.conversion_cache import cached_split, file_digest, file_stamp
from utils.data.convert.common import list_images, parse_names
from utils.data.convert.dota import dota_to_coco
from utils.data.convert.tinyperson import tinyperson_to_coco
from utils.data.convert.visdrone import visdrone_to_coco
from utils.data.convert.voc import voc_to_coco
from utils.data.convert.xview import xview_to_coco

VERSION = 1  # bump when a converter's output changes: old cache entries then miss


# format -> (converter, its source key, label-file suffix when the source is a folder, {option: type})
FORMATS: dict[str, tuple[Callable[..., dict], str, str | None, dict[str, type]]] = {
    "visdrone": (visdrone_to_coco, "labels", ".txt", {"others": str}),
    "dota": (dota_to_coco, "labels", ".txt", {"version": str, "keep_difficult": bool}),
    "xview": (xview_to_coco, "geojson", None, {}),
    "tinyperson": (tinyperson_to_coco, "json", None, {"keep_categories": bool}),
    "voc": (voc_to_coco, "xml", ".xml", {"names": list, "coords": str, "skip_difficult": bool}),
}


def is_native_entry(entry: Any) -> bool:
    return isinstance(entry, dict) and "format" in entry


def _sources(src: Path, suffix: str | None) -> list[Path]:
    return sorted(p for p in src.rglob(f"*{suffix}") if p.is_file()) if suffix else [src]


def native_split(entry: dict, base: Path, yaml_file: Path, split: str) -> dict[str, Any]:
    """{'json': cached COCO json, 'images': the image folder, 'name', 'notes'} for one split."""
    fmt = entry.get("format")
    if fmt not in FORMATS:
        raise DatasetError(f"{yaml_file}: {split}: format {fmt!r} is not one of {sorted(FORMATS)} "
                           f"(COCO splits are {{json, images}}, YOLO splits an image folder or list)")
    convert_fn, src_key, suffix, option_types = FORMATS[fmt]
    unknown = set(entry) - {"format", src_key, "images", *option_types}
    missing = [k for k in (src_key, "images") if k not in entry]
    if unknown or missing:
        raise DatasetError(f"{yaml_file}: {split}: a {fmt} split takes {src_key}, images and the options "
                           f"{sorted(option_types) or 'none'}; " + (f"missing {missing}" if missing else "")
                           + ("; " if missing and unknown else "") + (f"unknown {sorted(unknown)}" if unknown else ""))
    options = {}
    for k, typ in option_types.items():
        if k in entry:
            v = entry[k]
            if k == "names":
                v = parse_names(v if isinstance(v, list) else str(v))
            elif not isinstance(v, typ):
                raise DatasetError(f"{yaml_file}: {split}: {k} must be a {typ.__name__}, got {v!r:.40}")
            options[k] = v
    src, images = (base / str(entry[k]) for k in (src_key, "images"))
    if not (src.is_dir() if suffix else src.is_file()):
        raise DatasetError(f"{yaml_file}: {split}: {src_key} {src} not found")
    if not images.is_dir():
        raise DatasetError(f"{yaml_file}: {split}: image folder {images} not found")
    h = hashlib.sha256(json.dumps([VERSION, fmt, options, str(src), str(images)], sort_keys=True).encode())
    for p in _sources(src, suffix):
        h.update(f"{p}\0{file_digest(p)}\n".encode())
    for p in list_images(images):
        h.update(f"{p}\0{file_stamp(p)}\n".encode())

    def convert() -> tuple[dict, list[str]]:
        doc = convert_fn(src, images, **options)
        return doc, list(doc["info"].get("warnings", []))
    out, notes = cached_split(fmt, yaml_file, split, h.hexdigest(), (base, src if suffix else src.parent, images),
                              convert)
    return {"json": str(out), "images": str(images), "name": split, "notes": notes}

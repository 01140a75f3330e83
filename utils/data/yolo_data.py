"""YOLO-format (YOLOv5 / Ultralytics) data YAML splits, converted to a cached COCO json.

```yaml
path: ../datasets/mine            # relative to this file (as for COCO data YAMLs)
train: images/train               # an image folder, a .txt list of images, or a list of these
val: [images/val, extra/val.txt]
names: [car, truck]               # or {0: car, 1: truck}; `nc` optional (checked against names)
```
Labels follow YOLOv5's rule: the last `/images/` of the image path becomes `/labels/` and the suffix
`.txt`; one `cls cx cy w h` line per box, normalised to 0..1. An image without a label file is a
negative. Lines of a .txt list are image paths; `./x.jpg` and other relative lines resolve against
the list's folder (then against `path`).

The converted json (COCO, `file_name` relative to the split's common image folder) is cached under
$SMALLDET_CACHE (default $XDG_CACHE_HOME/smalldet, else ~/.cache/smalldet), never in the data
folder. Its key hashes every label file's content and every image's path, size and mtime, so an
edited label is converted again. Bad label lines, missing and unreadable images are skipped and
reported with file and line (kept in the cached json, so a cache hit reports them again).
"""
from __future__ import annotations

import hashlib
import json
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from utils.data.coco import DatasetError
from utils.data.conversion_cache import cached_split, file_digest, file_stamp
from utils.data.convert.common import IMAGE_SUFFIXES, CocoBuilder, ConvertError, Problems, image_size
from utils.data.convert.yolo import add_label_file

VERSION = 1        # bump when the conversion changes: old cache entries then miss


def is_yolo_entry(entry: Any) -> bool:
    """A split written YOLO-style (a path or a list of paths), not COCO's {json, images}."""
    return isinstance(entry, str) or (isinstance(entry, list) and all(isinstance(e, str) for e in entry))


def label_path(img: Path) -> Path:
    """YOLOv5's rule: the last /images/ becomes /labels/, the suffix .txt (same folder if no /images/)."""
    s = str(img)
    sa, sb = f"{os.sep}images{os.sep}", f"{os.sep}labels{os.sep}"
    if sa in s:
        head, tail = s.rsplit(sa, 1)
        s = head + sb + tail
    return Path(s).with_suffix(".txt")


def class_names(cfg: dict, yaml_file: Path) -> list[str]:
    """`names` as a list or a {0: name, ...} dict; `nc` alone gives class0, class1, ... ."""
    names, nc = cfg.get("names"), cfg.get("nc")
    if names is None:
        if isinstance(nc, int) and not isinstance(nc, bool) and nc > 0:
            return [f"class{i}" for i in range(nc)]
        raise DatasetError(f"{yaml_file}: a YOLO-format data YAML needs 'names' (a list, or a dict "
                           f"{{0: name, 1: name, ...}})")
    if isinstance(names, dict):
        try:
            keyed = {int(k): str(v) for k, v in names.items()}
        except (TypeError, ValueError):
            keyed = {}
        if sorted(keyed) != list(range(len(names))) or not names:
            raise DatasetError(f"{yaml_file}: names: a dict of {len(names)} classes needs the keys "
                               f"0..{len(names) - 1}, got {list(names)}")
        names = [keyed[i] for i in range(len(keyed))]
    elif not isinstance(names, list) or not names or any(isinstance(n, (dict, list)) for n in names):
        raise DatasetError(f"{yaml_file}: names must be a non-empty list or a {{0: name, ...}} dict, got {names!r:.80}")
    names = [str(n) for n in names]
    if nc is not None and nc != len(names):
        raise DatasetError(f"{yaml_file}: nc is {nc} but names has {len(names)} entries")
    return names


def _absolute(p: Path) -> Path:
    """Absolute and normalised, but symlinks not followed: labels/ sits beside the link, not its target."""
    return Path(os.path.abspath(p))


def _from_list(txt: Path, base: Path, probs: Problems) -> list[Path]:
    try:
        lines = txt.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise DatasetError(f"{txt}: cannot read the image list ({type(e).__name__}: {e})") from None
    out = []
    for n, line in enumerate(lines, 1):
        s = line.strip()
        if not s:
            continue
        p = Path(s).expanduser()
        cands = [p] if p.is_absolute() else [txt.parent / p, base / p]
        hit = next((c for c in cands if c.is_file()), None)
        if p.suffix.lower() not in IMAGE_SUFFIXES:
            probs.add(f"{txt} line {n}: {s!r} is not an image file ({', '.join(IMAGE_SUFFIXES)}); skipped")
        elif hit is None:
            probs.add(f"{txt} line {n}: image {s} not found (looked in {txt.parent} and {base}); skipped")
        else:
            out.append(_absolute(hit))
    return out


def list_split_images(entry: str | list[str], base: Path, yaml_file: Path, split: str,
                      probs: Problems) -> list[Path]:
    """Image paths of a split: folders searched recursively, .txt lists read, duplicates reported once."""
    found: list[Path] = []
    for item in [entry] if isinstance(entry, str) else entry:
        p = Path(item).expanduser()
        p = p if p.is_absolute() else base / p
        if p.is_dir():
            found += sorted(_absolute(q) for q in p.rglob("*") if q.suffix.lower() in IMAGE_SUFFIXES and q.is_file())
        elif p.is_file() and p.suffix.lower() == ".txt":
            found += _from_list(p, base, probs)
        else:
            raise DatasetError(f"{yaml_file}: {split}: {item!r} is neither an image folder nor a .txt list of "
                               f"images ({p} not found)")
    seen, out = set(), []
    for p in found:
        if p in seen:
            probs.add(f"{yaml_file}: {split}: image {p} is listed more than once; the repeats are skipped")
            continue
        seen.add(p)
        out.append(p)
    if not out:
        raise DatasetError(f"{yaml_file}: {split}: no images found in {entry!r} (under {base})")
    return out


def split_key(images: list[Path], names: list[str], list_problems: list[str]) -> str:
    """Hash of what the conversion reads: label contents, image paths + sizes + mtimes, names."""
    h = hashlib.sha256(json.dumps([VERSION, names, list_problems]).encode())
    with ThreadPoolExecutor(8) as ex:
        labels = list(ex.map(lambda p: file_digest(label_path(p)), images, chunksize=64))
    for img, lab in zip(images, labels):
        h.update(f"{img}\0{file_stamp(img)}\0{lab}\n".encode())
    return h.hexdigest()


def convert_split(images: list[Path], names: list[str], root: Path, probs: Problems) -> dict:
    """COCO dict with file_name relative to root; unreadable images and bad lines go to probs."""
    build = CocoBuilder(names)

    def size(p: Path):
        try:
            return image_size(p)
        except ConvertError as e:
            return str(e)
    with ThreadPoolExecutor(8) as ex:  # header reads are I/O
        sizes = list(ex.map(size, images, chunksize=64))
    for img, wh in zip(images, sizes):
        if isinstance(wh, str):
            probs.add(f"{wh}; skipped")
            continue
        image_id = build.add_image(img.relative_to(root).as_posix(), *wh)
        lab = label_path(img)
        if lab.is_file():
            add_label_file(build, image_id, wh[0], wh[1], lab, probs)
    return build.document(f"converted from YOLO labels beside {root}")


def yolo_split(cfg: dict, entry: str | list[str], base: Path, yaml_file: Path, split: str) -> dict[str, Any]:
    """{'json': cached COCO json, 'images': common image folder, 'name', 'problems'} for one YOLO-style split."""
    names = class_names(cfg, yaml_file)
    probs = Problems(f"{yaml_file}: {split}")
    images = list_split_images(entry, base, yaml_file, split, probs)
    root = Path(os.path.commonpath([str(p.parent) for p in images]))
    key = split_key(images, names, probs.items)

    def convert() -> tuple[dict, list[str]]:
        return convert_split(images, names, root, probs), probs.items
    out, notes = cached_split("yolo", yaml_file, split, key, (base, root), convert)
    return {"json": str(out), "images": str(root), "name": split, "notes": notes}

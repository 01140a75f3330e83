"""Converted splits cached outside the user's data: data YAML splits in YOLO or a data set's own
format (utils/data/yolo_data.py, utils/data/native_data.py) become a COCO json here, once.

The cache folder is $SMALLDET_CACHE, else $XDG_CACHE_HOME/smalldet, else ~/.cache/smalldet; it may
not lie inside a data folder (smalldet never writes into a user's data). Each entry's name holds a
key that hashes everything the conversion read, so an edited label file misses the cache; entries
of the same YAML and split with another key are ours and are removed.
"""
from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Callable, Iterable

from utils.data.cache import cache_root, refuse_inside
from utils.data.convert.common import write_json

LOG = logging.getLogger("smalldet")
MAX_LOGGED = 20  # notes logged per split; all are kept in the json and counted


def file_stamp(path: Path) -> str:
    """'size:mtime_ns' of a file, '-' when it is missing (cheap: images are stamped, not read)."""
    try:
        st = path.stat()
    except OSError:
        return "-"
    return f"{st.st_size}:{st.st_mtime_ns}"


def file_digest(path: Path) -> str:
    """sha1 of a file's bytes, '-' when it is missing (labels are hashed: an edit keeping size and mtime counts)."""
    h = hashlib.sha1()
    try:
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    except FileNotFoundError:
        return "-"
    return h.hexdigest()


def cached_split(kind: str, yaml_file: Path, split: str, key: str, data_dirs: Iterable[Path],
                 convert: Callable[[], tuple[dict, list[str]]]) -> tuple[Path, list[str]]:
    """(path of the cached COCO json, notes) for one split; convert() -> (COCO doc, notes) runs on a miss.
    Notes (what the conversion skipped or changed, by file and line) are stored with the json and
    logged on every load, so a cache hit reports them again."""
    cache = cache_root()
    refuse_inside(cache, data_dirs, f"{yaml_file}: the conversion cache")
    stem = f"{yaml_file.stem}-{hashlib.sha1(str(yaml_file).encode()).hexdigest()[:8]}-{split}"
    out = cache / kind / f"{stem}-{key[:20]}.json"
    notes: list[str] | None = None
    if out.is_file():
        try:
            notes = list(json.loads(out.read_text(encoding="utf-8"))["info"]["notes"])
        except (OSError, ValueError, KeyError, TypeError):
            out.unlink()  # a damaged entry of ours: convert again
    if notes is None:
        doc, notes = convert()
        doc["info"].update(notes=notes, key=key, yaml=str(yaml_file), split=split)
        write_json(doc, out)
        for old in out.parent.glob(f"{stem}-*.json"):  # our earlier conversions of this split
            if old != out:
                old.unlink(missing_ok=True)
        crowd = sum(1 for a in doc["annotations"] if a.get("iscrowd"))
        LOG.info(f"{yaml_file}: {split}: {len(doc['images'])} images, {len(doc['annotations']) - crowd} boxes, "
                 f"{crowd} ignore regions converted from {kind}, cached as {out}")
    if notes:
        shown = "\n  ".join(notes[:MAX_LOGGED])
        more = f"\n  ... and {len(notes) - MAX_LOGGED} more" if len(notes) > MAX_LOGGED else ""
        LOG.warning(f"WARNING {yaml_file}: {split}: {len(notes)} note(s) from the {kind} conversion:\n  {shown}{more}")
    return out, notes

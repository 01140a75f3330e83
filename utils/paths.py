"""Run-directory and output file naming shared by train.py, val.py and detect.py."""
from __future__ import annotations

import hashlib
import re
from collections import Counter
from pathlib import Path
from typing import Sequence

# the repository root, written once: the CLIs find data/, configs/ and the demo set from any working directory
ROOT = Path(__file__).resolve().parents[1]
MAX_NAME_BYTES = 100  # file-name components from data: far below the 255-byte limit, room for suffixes


def increment_path(path: str | Path, exist_ok: bool = False, sep: str = "", mkdir: bool = False) -> Path:
    """runs/val/exp -> runs/val/exp2, exp3, ... : the first free name (smallest unused suffix
    above the largest existing one, so numbering never goes back after a deletion).
    exist_ok=True returns path unchanged. Files keep their suffix (results.txt -> results2.txt)."""
    path = Path(path)
    if not exist_ok and path.exists():
        stem, suffix = (path.with_suffix(""), path.suffix) if path.is_file() else (path, "")
        parent, name = stem.parent, stem.name
        used = [1]
        if parent.is_dir():
            for p in parent.iterdir():
                tail = p.stem[len(name) + len(sep):] if p.is_file() else p.name[len(name) + len(sep):]
                if (p.stem if p.is_file() else p.name).startswith(name + sep) and tail.isdigit():
                    used.append(int(tail))
        path = parent / f"{name}{sep}{max(used) + 1}{suffix}"
    if mkdir:
        path.mkdir(parents=True, exist_ok=True)
    return path


def safe_name(text: str, default: str = "_") -> str:
    """One file-name component from data-derived text (a class name, an image or video name):
    path separators and other odd characters become '_', leading dots go (no '..', no hidden
    files), so that a name from a COCO json or a checkpoint can never write outside its folder. A name
    longer than MAX_NAME_BYTES (UTF-8) is cut and given a stable suffix, a hash of the whole text."""
    s = re.sub(r"[^\w.-]+", "_", str(text)).lstrip(".") or default
    if len(s.encode()) > MAX_NAME_BYTES:
        digest = hashlib.sha256(str(text).encode()).hexdigest()[:10]
        s = s.encode()[:MAX_NAME_BYTES - 11].decode(errors="ignore") + "_" + digest
    return s


def class_dirs(names: Sequence[str]) -> list[str]:
    """Class index -> its folder name (detect.py's crops/<name>/): safe_name of the class name; classes that
    would share a folder (`car,\nred` and `car red` both give car_red; `Car` and `car` on a case-insensitive
    file system) each get their class index appended: car_red_0, car_red_3."""
    base = [safe_name(n) for n in names]
    seen = Counter(b.lower() for b in base)
    out = [f"{b}_{k}" if seen[b.lower()] > 1 else b for k, b in enumerate(base)]
    if len({o.lower() for o in out}) < len(out):  # a class named like a suffixed one: index them all (unique)
        out = [f"{b}_{k}" for k, b in enumerate(base)]
    return out


class UniqueStems:
    """Source path -> a safe file-name stem, unique within one run: two images named a.jpg in
    different folders become 'a' and 'a_2' instead of overwriting each other's outputs."""

    def __init__(self) -> None:
        self.stems: dict[str, str] = {}
        self.taken: set[str] = set()

    def __call__(self, path: str) -> str:
        if path not in self.stems:
            base = safe_name(Path(path).stem if "://" not in path else path.split("://")[-1], "stream")
            stem, n = base, 1
            while stem.lower() in self.taken:  # a.jpg and A.jpg: one file on a case-insensitive file system
                n += 1
                stem = f"{base}_{n}"
            self.stems[path] = stem
            self.taken.add(stem.lower())
        return self.stems[path]

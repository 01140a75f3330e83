"""Run-directory and output file naming shared by train.py, val.py and detect.py."""
from __future__ import annotations

import re
from pathlib import Path


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
    files), so that a name from a COCO json or a checkpoint can never write outside its folder."""
    return re.sub(r"[^\w.-]+", "_", str(text)).lstrip(".") or default


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
            while stem in self.taken:
                n += 1
                stem = f"{base}_{n}"
            self.stems[path] = stem
            self.taken.add(stem)
        return self.stems[path]

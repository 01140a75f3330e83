"""Run-directory naming shared by train.py, val.py and detect.py."""
from __future__ import annotations

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

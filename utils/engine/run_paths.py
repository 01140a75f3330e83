"""The paths a run saves, and its data set's fingerprint, so that `--resume` continues the same run from any
working directory.

A run's settings go into opt.yaml and every checkpoint; `--resume` reuses them. A path kept as typed
(`ds/data.yaml`) would be resolved against the directory of the resuming command and could name another
data set, silently. So the run keeps absolute paths, and a sha256 of each split's annotation json: a resume
whose data set changed since is refused with the file named.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

from utils.config import TrainConfig, repo_path
from utils.data.config import ENV_ROOT, SPLITS

PATH_FIELDS = ("data", "cfg", "weights", "hyp", "project", "data_root")


def absolute(name: str, value: Any) -> Any:
    """A path setting as the run resolves it now: absolute where it names a file or folder (a model YAML name
    of the zoo, `yolov5s.yaml`, stays a name; it is looked up in configs/models from anywhere)."""
    if name not in PATH_FIELDS or not isinstance(value, str) or not value:
        return value
    p = Path(repo_path(value)).expanduser()
    if name == "cfg" and not p.is_file():
        return value
    return str(p.resolve())


def data_fingerprint(data: dict[str, Any]) -> str:
    """'train=<sha256>,val=<sha256>[,test=...]' of the splits' annotation json files."""
    parts = []
    for split in SPLITS:
        if split in data:
            h = hashlib.sha256()
            with open(data[split]["json"], "rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    h.update(block)
            parts.append(f"{split}={h.hexdigest()}")
    return ",".join(parts)


def record_paths(cfg: TrainConfig, data: dict[str, Any]) -> None:
    """A new run: keep every path absolute (the data YAML as load_data_config found it, the data set holder
    actually used) and the data set's fingerprint."""
    for name in PATH_FIELDS:
        setattr(cfg, name, absolute(name, getattr(cfg, name)))
    cfg.data = data["yaml_file"]
    if not cfg.data_root and os.environ.get(ENV_ROOT):  # the holder `dataset:` was found in, kept for resume
        cfg.data_root = absolute("data_root", os.environ[ENV_ROOT])
    cfg.data_hash = data_fingerprint(data)


def same_setting(name: str, given: Any, saved: Any) -> bool:
    """Whether a flag given with --resume equals the run's own value (paths compared resolved)."""
    return given == saved or absolute(name, given) == saved


def check_same_data(cfg: TrainConfig, data: dict[str, Any], ckpt_path: str | Path) -> list[str]:
    """--resume: refuse a data set whose annotation files changed since the run started (ValueError naming the
    file). Returns warnings for runs saved before paths and fingerprints were kept."""
    notes = []
    if not Path(cfg.data).is_absolute():
        notes.append(f"WARNING --resume {ckpt_path}: the run saved --data as typed ({cfg.data}); resolved from "
                     f"the current directory to {data['yaml_file']}")
    if not cfg.data_hash:
        notes.append(f"WARNING --resume {ckpt_path}: the run kept no fingerprint of its data set; "
                     f"{data['yaml_file']} is used as it is now")
        return notes
    saved = dict(p.split("=", 1) for p in cfg.data_hash.split(",") if "=" in p)
    now = dict(p.split("=", 1) for p in data_fingerprint(data).split(","))
    for split, digest in saved.items():
        if now.get(split) != digest:
            where = data[split]["json"] if split in data else f"the {split} split"
            raise ValueError(f"--resume {ckpt_path}: the data set changed since the run started: {where} "
                             f"({split} split of {data['yaml_file']}) has sha256 {now.get(split, 'none')[:12]}, "
                             f"the run trained on {digest[:12]}. Start a new run (--weights {ckpt_path}) to "
                             f"train on the new data")
    return notes

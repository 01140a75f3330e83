"""Data YAML -> resolved absolute paths, class names and category ids.

```yaml
dataset: deeppcb                     # optional: folder name under $SMALLDET_DATASETS or --data-root
path: ../../shared/datasets/deeppcb  # used otherwise; relative to this file's folder (else to the working dir)
train: {json: annotations/instances_train.json, images: images/train}
val:   {json: annotations/instances_val.json,   images: images/val}
test:  {json: ..., images: ...}      # optional
defaults: {imgsz: 640, epochs: 100}  # optional hints for train.py flags left unset
bit_depth: auto                      # optional: how 16-bit/float frames become 8 bits (docs/bit_depth.md)
generate: shapes                     # optional: utils/data/shapes.py makes the set at `path` on first use
```
Class names come from the json categories (sorted by id: contiguous index -> `cat_ids[index]`).
A split may instead be YOLO-style (`train: images/train`, a .txt list or a list, plus `names:`):
utils/data/yolo_data.py converts it to a cached COCO json outside the data folder; so does
utils/data/native_data.py for `{format: visdrone|dota|xview|tinyperson|voc, ...}` splits.
"""
from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Any

import yaml

from utils.data.coco import DatasetError, read_categories
from utils.data.image_io import BIT_DEPTH_MODES
from utils.data.native_data import is_native_entry, native_split
from utils.data.yolo_data import is_yolo_entry, yolo_split
from utils.paths import ROOT

ENV_ROOT = "SMALLDET_DATASETS"
SPLITS = ("train", "val", "test")
GENERATORS = {"shapes": "utils.data.shapes"}  # generate: NAME -> module with ensure(path)


def _find_yaml(path: str | Path) -> Path:
    p = Path(path).expanduser()
    if not p.exists() and not p.is_absolute() and (ROOT / p).exists():
        p = ROOT / p  # data/x.yaml works from any working directory
    if not p.is_file():
        raise DatasetError(f"data YAML {path}: file not found")
    return p.resolve()


def _generate(name: str, base: Path, yaml_file: Path) -> None:
    src = GENERATORS.get(name)
    if src is None:
        raise DatasetError(f"{yaml_file}: generate: unknown generator {name!r}; known: {sorted(GENERATORS)}")
    mod = importlib.import_module(src)
    try:
        mod.ensure(base)
    except OSError as e:  # e.g. `path:` names a folder of the user's: the generator refuses to replace it
        raise DatasetError(f"{yaml_file}: generate: {name}: {e}") from None


def _base_dir(cfg: dict, yaml_file: Path, root: str | None) -> Path:
    name = cfg.get("dataset")
    holder = root or os.environ.get(ENV_ROOT)
    if name and holder:
        return (Path(holder).expanduser() / str(name)).resolve()
    if cfg.get("path") is not None:
        p = Path(str(cfg["path"])).expanduser()
        if p.is_absolute():
            return p.resolve()
        beside = (yaml_file.parent / p).resolve()
        # YOLOv5 resolves a relative `path` against its repository root, where its users run it from
        return beside if beside.is_dir() or not p.resolve().is_dir() else p.resolve()
    if name:
        raise DatasetError(f"{yaml_file}: 'dataset: {name}' needs the folder holding the data sets: set "
                           f"{ENV_ROOT} or pass --data-root (or give 'path:')")
    return yaml_file.parent


def parse_bit_depth(value: Any, where: str) -> int | str:
    """The `bit_depth` setting (data YAML key, detect.py --bit-depth): 'auto', 'minmax' or a whole number 9..16,
    how utils/data/image_io.py scales 16-bit and float frames to 8 bits. ValueError (DatasetError) naming `where`."""
    text = str(value).strip().lower()
    if text in BIT_DEPTH_MODES:
        return text
    if text.isdigit() and 9 <= int(text) <= 16:
        return int(text)
    raise DatasetError(f"{where}: {value!r} is not a bit depth: use auto, minmax or a whole number 9..16 "
                       f"(the bits the sensor uses, e.g. 10 or 12 for infrared)")


def load_data_config(path: str | Path, root: str | None = None) -> dict[str, Any]:
    """Read a data YAML. Returns {'yaml_file', 'path', 'train'/'val'/['test']: {'json', 'images',
    'name', 'bit_depth'}, 'names', 'nc', 'cat_ids', 'defaults', 'bit_depth'} with absolute paths. `root` (or the
    env var SMALLDET_DATASETS) is the folder holding the data sets, used with the YAML's `dataset:` key."""
    yaml_file = _find_yaml(path)
    try:
        cfg = yaml.safe_load(yaml_file.read_text())
    except yaml.YAMLError as e:
        raise DatasetError(f"{yaml_file}: malformed YAML: {e}") from None
    if not isinstance(cfg, dict):
        raise DatasetError(f"{yaml_file}: expected a mapping with train/val entries, got {type(cfg).__name__}")
    base = _base_dir(cfg, yaml_file, root)
    if cfg.get("generate"):
        _generate(str(cfg["generate"]), base, yaml_file)
    if not base.is_dir():
        hint = (f"; set {ENV_ROOT} (the folder holding '{cfg['dataset']}') or pass --data-root"
                if cfg.get("dataset") else "")
        raise DatasetError(f"{yaml_file}: data set folder {base} not found{hint}")
    out: dict[str, Any] = {"yaml_file": str(yaml_file), "path": str(base), "defaults": cfg.get("defaults") or {},
                           "bit_depth": parse_bit_depth(cfg.get("bit_depth", "auto"), f"{yaml_file}: bit_depth")}
    for split in SPLITS:
        entry = cfg.get(split)
        if entry is None or entry in ("", []):  # Ultralytics YAMLs write `test:` with nothing after it
            if split != "test":
                raise DatasetError(f"{yaml_file}: no '{split}' entry; expected "
                                   f"{split}: {{json: annotations/instances_{split}.json, images: images/{split}}}")
            continue
        if is_yolo_entry(entry) or is_native_entry(entry):  # converted to a cached COCO json
            out[split] = (yolo_split(cfg, entry, base, yaml_file, split) if is_yolo_entry(entry)
                          else native_split(entry, base, yaml_file, split))
            out[split]["bit_depth"] = out["bit_depth"]
            continue
        if not isinstance(entry, dict) or not {"json", "images"} <= set(entry):
            raise DatasetError(f"{yaml_file}: '{split}' must be a mapping with 'json' and 'images' (COCO), an image "
                               f"folder, a .txt list of images or a list of them (YOLO) or {{format: ...}} (a set's "
                               f"own labels, docs/data-formats.md), got {entry!r}")
        js, im = (base / str(entry[k]) for k in ("json", "images"))
        if not js.is_file():
            raise DatasetError(f"{yaml_file}: {split} annotation file {js} not found")
        if not im.is_dir():
            raise DatasetError(f"{yaml_file}: {split} image folder {im} not found")
        out[split] = {"json": str(js), "images": str(im), "name": split, "bit_depth": out["bit_depth"]}
    names, cat_ids = read_categories(out["train"]["json"])
    for split in SPLITS[1:]:
        if split in out:
            n2, c2 = read_categories(out[split]["json"])
            if (n2, c2) != (names, cat_ids):
                raise DatasetError(f"{out[split]['json']}: categories {list(zip(c2, n2))} differ from the train "
                                   f"split's {list(zip(cat_ids, names))}")
    out.update(names=names, nc=len(names), cat_ids=cat_ids)
    return out

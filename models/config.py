"""Model YAML loading: scale resolution (yolov5s.yaml -> yolov5.yaml + scale s), line
numbers for error messages, and the checks that make a bad file fail with its name."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from utils.paths import ROOT

CONFIG_DIR = ROOT / "configs" / "models"


class ModelConfigError(ValueError):
    """A model YAML that cannot be built; the message names the file and line."""


def _line_numbers(text: str) -> dict[tuple[str, int], int]:
    """Map (section, index) of every layer entry to its 1-based line in the file."""
    lines: dict[tuple[str, int], int] = {}
    root = yaml.compose(text)
    if not isinstance(root, yaml.MappingNode):
        return lines
    for key, value in root.value:
        if key.value in ("backbone", "head") and isinstance(value, yaml.SequenceNode):
            for i, item in enumerate(value.value):
                lines[(key.value, i)] = item.start_mark.line + 1
    return lines


def _resolve_path(cfg: str | Path) -> tuple[Path, str | None]:
    """Find the YAML for ``cfg``; 'yolov5s-spd.yaml' falls back to 'yolov5-spd.yaml' scale s."""
    path = Path(cfg)
    candidates = [path, CONFIG_DIR / path.name] if not path.is_absolute() else [path]
    for c in candidates:
        if c.is_file():
            return c, None
    m = re.fullmatch(r"(.*?\d+)([nsmlx])((?:-[\w]+)*)\.ya?ml", path.name)
    if m:
        base = f"{m.group(1)}{m.group(3)}.yaml"
        for c in (path.with_name(base), CONFIG_DIR / base):
            if c.is_file():
                return c, m.group(2)
    raise ModelConfigError(f"{cfg}: model config not found (looked in ., {CONFIG_DIR})")


def load_model_config(cfg: str | Path | dict) -> dict[str, Any]:
    """Return the config dict with ``depth_multiple``/``width_multiple`` set from its scale,
    plus private keys ``_file`` and ``_lines`` for error messages."""
    if isinstance(cfg, dict):
        d = dict(cfg)
        return _finalize(d, d.pop("_file", "<dict>"), d.pop("_lines", {}), None)
    path, scale = _resolve_path(cfg)
    text = path.read_text()
    try:
        d = yaml.safe_load(text)
        lines = _line_numbers(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise ModelConfigError(f"{path}{where}: malformed YAML: "
                               f"{getattr(e, 'problem', None) or e}") from None
    if not isinstance(d, dict):
        raise ModelConfigError(f"{path}: expected a mapping at the top level")
    return _finalize(d, str(path), lines, scale)


def _finalize(d: dict[str, Any], path: str, lines: dict, scale: str | None) -> dict[str, Any]:
    """Check the sections and turn the scale into depth/width multiples."""
    for key in ("backbone", "head"):
        if not isinstance(d.get(key), list):
            raise ModelConfigError(f"{path}: missing or non-list '{key}' section")
    scales = d.pop("scales", None)
    if scales:
        scale = scale or d.get("scale") or next(iter(scales))
        if scale not in scales:
            raise ModelConfigError(f"{path}: scale {scale!r} not in scales {list(scales)}")
        d["depth_multiple"], d["width_multiple"] = scales[scale][:2]
        d["scale"] = scale
    elif scale:
        raise ModelConfigError(f"{path}: no 'scales' table for scale {scale!r}")
    d.setdefault("depth_multiple", 1.0)
    d.setdefault("width_multiple", 1.0)
    d["_file"] = path
    d["_lines"] = lines
    return d


def where(cfg: dict, section: str, index: int) -> str:
    """'file line N' for error messages."""
    line = cfg.get("_lines", {}).get((section, index))
    return f"{cfg.get('_file', '<dict>')}" + (f" line {line}" if line else f" {section}[{index}]")

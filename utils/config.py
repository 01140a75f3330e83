"""Hyperparameter files: names, types and ranges checked once, with errors naming the file and key.

configs/hyps/default.yaml owns the set of keys and their defaults: a key it lacks is a typo (the
run would silently train with the default), a key a file leaves out takes the default's value.
"""
from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

import yaml

DEFAULT_HYP = Path(__file__).resolve().parents[1] / "configs" / "hyps" / "default.yaml"
TEXT_KEYS = {"optimizer", "assigner"}  # the only non-numeric keys a hyp file may hold
# probabilities and fractions; every other numeric key must be >= 0
UNIT = {"hsv_h", "hsv_s", "hsv_v", "translate", "flipud", "fliplr", "mosaic", "mixup", "copy_paste", "tile",
        "nwd", "label_smoothing", "momentum", "warmup_momentum", "iou_t"}
POSITIVE = {"lr0", "nbs", "atss_topk", "tal_topk", "anchor_t", "nwd_c", "grad_clip"}


def default_hyp() -> dict[str, Any]:
    return yaml.safe_load(DEFAULT_HYP.read_text())


def check_value(key: str, value: Any, default: Any, where: str) -> Any:
    """The value for key, as a number of the default's type, or a ValueError naming where and key."""
    if key in TEXT_KEYS:
        if not isinstance(value, str):
            raise ValueError(f"{where}: {key}: expected a name, got {value!r}")
        return value
    if isinstance(value, str):  # YAML 1.1 reads 1e-3 (no dot) as a string
        try:
            value = float(value)
        except ValueError:
            raise ValueError(f"{where}: {key}: expected a number, got {value!r}") from None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{where}: {key}: expected a number, got {value!r}")
    if isinstance(default, int) and not isinstance(default, bool):
        if value != int(value):
            raise ValueError(f"{where}: {key}: expected a whole number, got {value!r}")
        value = int(value)
    else:
        value = float(value)
    if key in UNIT and not 0 <= value <= 1:
        raise ValueError(f"{where}: {key}: {value} is outside [0, 1]")
    if key in POSITIVE and not value > 0:
        raise ValueError(f"{where}: {key}: {value} must be > 0")
    if value < 0:
        raise ValueError(f"{where}: {key}: {value} must be >= 0")
    return value


def _known(key: str, defaults: dict[str, Any], where: str) -> None:
    if key not in defaults and key not in TEXT_KEYS:
        close = difflib.get_close_matches(key, list(defaults), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ValueError(f"{where}: unknown hyperparameter {key!r}{hint}; the known ones are in {DEFAULT_HYP.name}")


def check_hyp(raw: dict[str, Any], where: str) -> dict[str, Any]:
    """raw (from a YAML file) -> a complete, checked hyp dict; keys it leaves out take default.yaml's."""
    defaults = default_hyp()
    for key in raw:
        _known(key, defaults, where)
    hyp = dict(defaults)
    hyp.update({k: check_value(k, v, defaults.get(k), where) for k, v in raw.items()})
    return hyp


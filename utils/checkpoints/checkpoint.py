"""Checkpoints: plain dicts of tensors and builtins (no pickled classes), written atomically."""
from __future__ import annotations

import os
import pickle
import re
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from models.yolo import Model
from utils.assign.registry import DEFAULT_FOR_HEAD


STALE_TMP_S = 3600  # a checkpoint temp file not written to for this long has no live writer


class CheckpointError(RuntimeError):
    """A weights file that is missing, unreadable or not one of ours."""


def save_checkpoint(ckpt: dict[str, Any], path: str | Path) -> None:
    """Write to a temporary file in the same folder, then rename: a crash mid-write never
    leaves a truncated checkpoint behind."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(ckpt, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    # temp files of earlier writes of this path that a kill -9 left behind: only mkstemp's own names, and only
    # those untouched for STALE_TMP_S (a live writer, e.g. another process saving into this folder, keeps
    # its file's mtime fresh as it writes; removing it made that writer's rename fail)
    ours = re.compile(re.escape(path.name) + r"\.[a-z0-9_]{8}\.tmp")
    now = time.time()
    for stale in path.parent.glob(path.name + ".*.tmp"):
        try:
            if ours.fullmatch(stale.name) and now - stale.stat().st_mtime > STALE_TMP_S:
                stale.unlink(missing_ok=True)
        except FileNotFoundError:  # its writer renamed or removed it meanwhile
            pass


def read_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint dict with weights_only=True; clear errors for bad files."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: weights file not found")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError:  # pickled classes: maybe ultralytics/yolov5's or Ultralytics' (never run)
        return _read_foreign(path)
    except Exception as e:  # torch raises many types for truncated/garbage files
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        raise CheckpointError(f"{path}: not a readable checkpoint ({type(e).__name__}: {first})") from None
    if not isinstance(ckpt, dict) or "model" not in ckpt or "model_yaml" not in ckpt:
        raise CheckpointError(f"{path}: not a smalldet checkpoint (needs 'model' and 'model_yaml')")
    return ckpt


def _read_foreign(path: Path) -> dict[str, Any]:
    """A checkpoint written by ultralytics/yolov5 or the Ultralytics package, converted (foreign.py here)."""
    from utils.checkpoints.foreign import ForeignCheckpointError, load_foreign
    from utils.logger import LOG

    try:
        ckpt = load_foreign(path)
    except ForeignCheckpointError as e:
        raise CheckpointError(str(e)) from None
    src = ckpt["converted_from"]
    LOG.info(f"{path}: written by {src['code']}, read as {src['config']} scale {src['scale']} "
             f"(nc={len(ckpt['names'])}); `python -m utils.engine.convert` saves it as ours")
    return ckpt


def model_from_checkpoint(ckpt: dict[str, Any], weights: str = "model", source: str = "") -> Model:
    """Rebuild the Model from its saved YAML and load one of the saved state dicts."""
    cfg = dict(ckpt["model_yaml"])
    cfg["_lines"] = {}
    from models.sizing import weights_mismatch  # sized on the meta device before anything is allocated
    too_big = weights_mismatch(cfg, ckpt.get(weights))
    if too_big:
        raise CheckpointError(f"{source}: weights do not fit the saved model config: {too_big}; not built")
    model = Model(cfg)
    try:
        model.load_state_dict(ckpt[weights])
    except (RuntimeError, KeyError) as e:
        raise CheckpointError(f"{source}: weights do not fit the saved model config: {e}") from None
    model.names = list(ckpt.get("names") or model.names)
    model.cat_ids = list(ckpt.get("cat_ids") or model.cat_ids)
    return model


def load_model(path: str | Path, device: str | torch.device = "cpu", fuse: bool = False) -> Model:
    """A ready-to-run model (eval mode) from a checkpoint file."""
    ckpt = read_checkpoint(path)
    model = model_from_checkpoint(ckpt, "model", str(path)).to(device).eval()
    return model.fuse() if fuse else model


def checkpoint_yaml(model: Model) -> dict[str, Any]:
    """The model's config as saved: plain builtins only (no file/line bookkeeping)."""
    d = {k: v for k, v in model.yaml.items() if not k.startswith("_")}
    # the model keeps its YAML's 'assigner' as data; the head's default policy is utils/assign's
    d.setdefault("assigner", DEFAULT_FOR_HEAD["anchor-free" if model.detect.anchor_free else "anchor"])
    if model.detect.anchor_shapes is not None:
        d["anchors"] = model.detect.anchor_shapes.flatten(1).tolist()  # autoanchor may have changed them
    return d

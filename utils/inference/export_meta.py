"""The metadata an exported model carries, so that the .onnx / .torchscript file alone is enough to run
it: class names and COCO category ids, strides, input size, head type and anchors.

ONNX keeps it as metadata_props (string pairs, each value JSON-encoded); TorchScript as the extra file
metadata.json. Written by export.py, read by utils/inference/backends.py.
"""
from __future__ import annotations

import json
from typing import Any

import torch

FORMAT = "smalldet"  # marks our exports: a foreign .onnx gets a clear error instead of wrong boxes
VERSION = 1
TS_EXTRA_FILE = "metadata.json"
REQUIRED = ("names", "cat_ids", "nc", "stride", "imgsz", "batch", "dynamic", "half", "head")


class ExportMetadataError(ValueError):
    """An exported file without (or with broken) smalldet metadata."""


def export_metadata(model: torch.nn.Module, imgsz: tuple[int, int], batch: int, dynamic: bool, half: bool,
                    source: str = "") -> dict[str, Any]:
    """Everything detect.py / val.py need besides the graph. Anchors (the anchor head's) in input pixels per level."""
    det = model.detect
    meta = {"format": FORMAT, "version": VERSION, "names": [str(n) for n in model.names],
            "cat_ids": [int(c) for c in model.cat_ids], "nc": int(model.nc),
            "stride": [int(s) for s in det.stride.tolist()], "imgsz": [int(imgsz[0]), int(imgsz[1])],
            "batch": int(batch), "dynamic": bool(dynamic), "half": bool(half), "head": type(det).__name__,
            "output": "(B, N, 5 + nc): cx, cy, w, h (input px), obj, cls",
            "source": str(source), "torch": torch.__version__}
    if det.anchor_shapes is not None:  # an anchor-free head has none
        meta["anchors"] = det.anchor_shapes.flatten(1).tolist()
    if hasattr(det, "reg_max"):
        meta["reg_max"] = int(det.reg_max)
    return meta


def to_string_pairs(meta: dict[str, Any]) -> dict[str, str]:
    """ONNX metadata_props hold strings only: JSON-encode each value."""
    return {k: json.dumps(v) for k, v in meta.items()}


def from_string_pairs(props: dict[str, str], source: str) -> dict[str, Any]:
    try:
        return check_metadata({k: json.loads(v) for k, v in props.items()}, source)
    except json.JSONDecodeError as e:
        raise ExportMetadataError(f"{source}: unreadable smalldet metadata ({e})") from None


def check_metadata(meta: dict[str, Any], source: str) -> dict[str, Any]:
    """meta itself, after checking it is ours and complete; the error names the file."""
    if meta.get("format") != FORMAT:
        raise ExportMetadataError(f"{source}: not a smalldet export (no '{FORMAT}' metadata); "
                                  f"export it with export.py --weights W.pt")
    missing = [k for k in REQUIRED if k not in meta]
    if missing:
        raise ExportMetadataError(f"{source}: smalldet metadata lacks {', '.join(missing)}")
    if len(meta["names"]) != meta["nc"] or len(meta["cat_ids"]) != meta["nc"]:
        raise ExportMetadataError(f"{source}: metadata has nc={meta['nc']} but {len(meta['names'])} names and "
                                  f"{len(meta['cat_ids'])} category ids")
    return meta

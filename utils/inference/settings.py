"""detect.py's settings: one dataclass that owns every detection default (detect.py's flags read theirs from
it); ``run_detection(weights, source, **fields)`` takes them by name."""
from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Sequence


@dataclass(frozen=True)
class DetectSettings:
    """How frames are run and what is written. imgsz: the long side the model sees; conf_thres, iou_thres,
    max_det, classes, agnostic_nms: the NMS (iou_thres also merges slices); slice: windows of this many px
    (0 = whole frames, 'auto' = only frames much larger than imgsz) with overlap, slice_batch windows per
    forward, slice_full adding a whole-frame pass, slice_merge: nms, wbf or greedy-nmm. Outputs under
    project/name (incremented unless exist_ok): drawn images (unless nosave), save_txt, save_json, save_crop.
    keep_results False: return no per-frame list (webcams and streams run for hours)."""
    imgsz: int = 640
    conf_thres: float = 0.25
    iou_thres: float = 0.45
    max_det: int = 1000
    device: str = ""
    classes: Sequence[int] | None = None
    agnostic_nms: bool = False
    half: bool = False
    vid_stride: int = 1
    bit_depth: int | str = "auto"
    slice: int | str = 0
    overlap: float = 0.2
    slice_batch: int = 4
    slice_full: bool = False
    slice_merge: str = "nms"
    save_txt: bool = False
    save_json: bool = False
    save_crop: bool = False
    nosave: bool = False
    line_thickness: int | None = None
    hide_labels: bool = False
    hide_conf: bool = False
    project: str | Path = "runs/detect"
    name: str = "exp"
    exist_ok: bool = False
    keep_results: bool = True
    verbose: bool = True

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        """{field: default}: what detect.py's flags default to."""
        return {f.name: f.default for f in fields(cls)}

"""The validator's settings: one dataclass that owns every evaluation default (val.py's flags read theirs from
it), and the named presets that training and ``--task speed`` use instead of rewriting arguments."""
from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any

from utils.eval.protocols import Protocol, get_protocol

TASKS = ("val", "test", "speed")
SCORERS = ("pycocotools", "memory")
# the in-memory COCO-style scorer for all and small boxes, the bar always shown: every epoch of training
MEMORY_SCORING: dict[str, Any] = dict(scorer="memory", memory_areas=("all", "small"), progress=True)
# --task speed: YOLOv5's speed settings, nothing written, scored in memory
SPEED: dict[str, Any] = dict(conf_thres=0.25, iou_thres=0.45, save_json=False, save_txt=False, plots=False,
                             **MEMORY_SCORING)


@dataclass(frozen=True)
class ValSettings:
    """How a split is evaluated. data: a data YAML path or a loaded dict; weights: a checkpoint path (or give
    the Validator an in-memory model). max_det None keeps the protocol's count (COCO 300, AI-TOD 1500) after
    NMS. multi_label False: each box keeps its best class only (Ultralytics' predict). rect_pad: the rect batch
    shapes grow by this many strides (YOLOv5's val.py scores at 0.5: 256 px images run at 288).
    slice > 0: each original image is read from disk and run in slice px windows (utils/inference/slicing.py,
    plus a full-image pass with slice_full, duplicates merged by slice_merge: nms, wbf or greedy-nmm).
    scorer: 'pycocotools' (COCOeval on the predictions; needs the split's json) or 'memory' (the in-memory
    evaluator alone: no json, no COCOeval, a fraction of the time); memory_areas: the area ranges it scores
    ('all' first; each extra range costs one more matching pass). progress: show the bar even when verbose
    is off (training's per-epoch bar)."""
    data: str | dict = "data/shapes.yaml"
    weights: str | None = None
    task: str = "val"
    batch_size: int = 32
    imgsz: int = 640
    conf_thres: float = 0.001
    iou_thres: float = 0.6
    max_det: int | None = None
    device: str = ""
    workers: int = 2
    single_cls: bool = False
    multi_label: bool = True
    rect_pad: float = 0.0
    half: bool = False
    slice: int = 0
    overlap: float = 0.2
    slice_full: bool = False
    slice_merge: str = "nms"
    protocol: str | Protocol = "coco"
    scorer: str = "pycocotools"
    memory_areas: tuple[str, ...] = ("all",)
    save_json: bool = True
    save_txt: bool = False
    plots: bool = True
    project: str = "runs/val"
    name: str = "exp"
    exist_ok: bool = False
    verbose: bool = True
    progress: bool = False

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ValueError(f"val.run: task must be one of {TASKS}, got {self.task!r}")
        if self.scorer not in SCORERS:
            raise ValueError(f"ValSettings: scorer must be one of {SCORERS}, got {self.scorer!r}")
        proto = get_protocol(self.protocol)
        if self.scorer == "memory" and proto.name != "coco":
            raise ValueError(f"--protocol {proto.name} is scored by pycocotools only; the in-memory scorer "
                             f"(training, --task speed) implements COCO's protocol")

    @classmethod
    def speed(cls, **kwargs: Any) -> ValSettings:
        """--task speed: timings on the val split at YOLOv5's speed settings (conf 0.25, IoU 0.45, which
        replace any given), scored in memory, nothing written."""
        return replace(cls(**kwargs), task="speed", **SPEED)

    @classmethod
    def training(cls, **kwargs: Any) -> ValSettings:
        """Every epoch of training (and val.run(fast=True)): the in-memory scorer for all and small boxes."""
        return replace(cls(**kwargs), **MEMORY_SCORING)

    @property
    def split(self) -> str:
        """The data split scored: speed runs on val."""
        return "val" if self.task == "speed" else self.task

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        """{field: default}: what val.py's flags default to."""
        return {f.name: f.default for f in fields(cls)}

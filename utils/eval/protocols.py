"""Evaluation protocols: which size buckets are scored, at how many detections per image, under which names.

- ``coco`` (default): COCO's all / small / medium / large at maxDets 1, 10, 100, plus the AI-TOD-style
  tiny buckets (very tiny < 8 px, tiny 8-16, 16-32, and < 16) reported beside them at maxDets 100.
- ``aitod``: the protocol tiny-object papers report (AI-TOD): maxDets 100, 300, 1500 with every AP and
  bucket AR read at 1,500, buckets very tiny < 8 px, tiny 8-16, small 16-32, medium >= 32.
- ``visdrone``: VisDrone-DET's rule: ground truth and detections at least half inside the image's ignored
  regions (iscrowd=1) are dropped first; AP over IoU .50:.95, AP50, AP75 and AR at 1, 10, 100, 500
  detections per image, every AP read at 500.
- ``tinyperson``: TinyPerson's rule: AP50 over the size buckets tiny 1-20 px, tiny1 1-8, tiny2 8-12,
  tiny3 12-20, small 20-32 (and AP25, AP75, AP over all sizes) at 200 detections per image; detections
  covered by an ignore region for at least half their own area are dropped, and uncertain boxes are
  ignored ground truth (a detection matched to one is neither true nor false).
The rules themselves are in utils/eval/ignore_rules.py (docs/evaluation-protocols.md).

Sizes are the square root of the box area in original-image pixels; ranges are areas in px^2, with
both ends inclusive as in pycocotools.
"""
from __future__ import annotations

from dataclasses import dataclass, field

BIG = 1e5 ** 2  # COCO's upper area bound
# every bucket any protocol uses: name -> (area range in px^2)
BUCKETS: dict[str, tuple[float, float]] = {
    "all": (0.0, BIG), "small": (0.0, 32.0 ** 2), "medium": (32.0 ** 2, 96.0 ** 2), "large": (96.0 ** 2, BIG),
    "vt": (0.0, 8.0 ** 2), "t": (8.0 ** 2, 16.0 ** 2), "s16": (16.0 ** 2, 32.0 ** 2),
    "tiny": (0.0, 16.0 ** 2),  # everything under 16x16 px: the AP_tiny that shared/bench/peer.py reports
    "m32": (32.0 ** 2, BIG),   # AI-TOD's 'medium': everything from 32x32 px up
    # TinyPerson's (the benchmark's scorer starts its ranges at 1 px; its paper writes 2)
    "tp_all": (1.0, BIG), "tp_tiny": (1.0, 20.0 ** 2), "tp_tiny1": (1.0, 8.0 ** 2), "tp_tiny2": (8.0 ** 2, 12.0 ** 2),
    "tp_tiny3": (12.0 ** 2, 20.0 ** 2), "tp_small": (20.0 ** 2, 32.0 ** 2),
}
AP_KEY = {"all": "AP", "small": "APs", "medium": "APm", "large": "APl", "vt": "AP_vt", "t": "AP_t", "s16": "AP_s16",
          "tiny": "AP_tiny", "m32": "AP_m32", "tp_all": "AP", "tp_tiny": "AP50_tiny", "tp_tiny1": "AP50_tiny1",
          "tp_tiny2": "AP50_tiny2", "tp_tiny3": "AP50_tiny3", "tp_small": "AP50_small"}
# the 'all' bucket's AR is named by its maxDets (AR100, AR1500): see Protocol.ar_key
AR_KEY = {"small": "ARs", "medium": "ARm", "large": "ARl", "vt": "AR_vt", "t": "AR_t", "s16": "AR_s16",
          "tiny": "AR_tiny", "m32": "AR_m32", "tp_tiny": "AR50_tiny", "tp_tiny1": "AR50_tiny1",
          "tp_tiny2": "AR50_tiny2", "tp_tiny3": "AR50_tiny3", "tp_small": "AR50_small"}
# what each bucket means, for the printed table
BUCKET_LABEL = {"vt": "<8px", "t": "8-16px", "s16": "16-32px", "tiny": "<16px", "m32": ">=32px",
                "tp_tiny": "1-20px", "tp_tiny1": "1-8px", "tp_tiny2": "8-12px", "tp_tiny3": "12-20px",
                "tp_small": "20-32px"}
COCO_IOUS = tuple(round(0.5 + 0.05 * i, 2) for i in range(10))  # .50:.05:.95


@dataclass(frozen=True)
class Protocol:
    name: str
    title: str                   # how the printed table names it
    areas: tuple[str, ...]       # BUCKETS names COCOeval scores, 'all' first
    max_dets: tuple[int, ...]    # COCOeval params.maxDets (ascending); figures are read at the last
    stats_keys: tuple[str, ...]  # the summary vector, in the order the protocol's summarize() prints it
    headline: tuple[str, ...]    # figures on the table's first summary line
    bucket_line: tuple[str, ...]  # buckets on the second summary line
    bucket_title: str
    bucket_names: dict[str, str] = field(default_factory=dict)  # the protocol's own names, printed with the sizes
    iou_thrs: tuple[float, ...] = COCO_IOUS  # COCOeval's thresholds; AP is the mean over those from .50 up
    bucket_iou: float | None = None  # None: bucket APs over .50:.95; a threshold: bucket APs (and ARs) at it
    rule: str = ""               # utils/eval/ignore_rules.py: how ignore regions and flags are scored

    @property
    def max_det(self) -> int:
        """Detections per image that count: also what NMS must keep at least."""
        return self.max_dets[-1]

    @property
    def area_ranges(self) -> dict[str, tuple[float, float]]:
        return {a: BUCKETS[a] for a in self.areas}

    def ar_key(self, area: str, max_det: int | None = None) -> str:
        if area in ("all", self.areas[0]):  # the bucket of every size
            return f"AR{self.max_det if max_det is None else max_det}"
        return AR_KEY[area]

    @property
    def figures(self) -> tuple[str, ...]:
        """Every figure the protocol reports: AP, AP50, AP75, AP per bucket, AR per maxDets, AR per bucket."""
        extra = tuple(f"AP{round(t * 100)}" for t in self.iou_thrs if t < 0.5)  # TinyPerson's AP25
        return (("AP", "AP50", "AP75") + extra + tuple(AP_KEY[a] for a in self.areas[1:])
                + tuple(self.ar_key("all", m) for m in self.max_dets) + tuple(AR_KEY[a] for a in self.areas[1:]))


COCO = Protocol(
    name="coco", title="COCO", areas=("all", "small", "medium", "large", "vt", "t", "s16", "tiny"),
    max_dets=(1, 10, 100),
    stats_keys=("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl"),
    headline=("AP", "AP50", "AP75", "APs", "APm", "APl", "AR100"), bucket_line=("vt", "t", "s16", "tiny"),
    bucket_title="tiny buckets (AI-TOD)")
AITOD = Protocol(
    name="aitod", title="AI-TOD", areas=("all", "vt", "t", "s16", "m32"), max_dets=(100, 300, 1500),
    stats_keys=("AP", "AP50", "AP75", "AP_vt", "AP_t", "AP_s16", "AP_m32", "AR100", "AR300", "AR1500",
                "AR_vt", "AR_t", "AR_s16", "AR_m32"),
    headline=("AP", "AP50", "AP75", "AR100", "AR300", "AR1500"), bucket_line=("vt", "t", "s16", "m32"),
    bucket_title="AI-TOD buckets",
    bucket_names={"vt": "very tiny", "t": "tiny", "s16": "small", "m32": "medium"})
VISDRONE = Protocol(
    name="visdrone", title="VisDrone-DET", areas=("all",), max_dets=(1, 10, 100, 500),
    stats_keys=("AP", "AP50", "AP75", "AR1", "AR10", "AR100", "AR500"),
    headline=("AP", "AP50", "AP75", "AR1", "AR10", "AR100", "AR500"), bucket_line=(), bucket_title="",
    rule="visdrone")
TINYPERSON = Protocol(
    name="tinyperson", title="TinyPerson", areas=("tp_all", "tp_tiny", "tp_tiny1", "tp_tiny2", "tp_tiny3", "tp_small"),
    max_dets=(200,), iou_thrs=(0.25, *COCO_IOUS), bucket_iou=0.5,
    stats_keys=("AP50", "AP50_tiny", "AP50_tiny1", "AP50_tiny2", "AP50_tiny3", "AP50_small", "AP25", "AP75", "AP"),
    headline=("AP50", "AP25", "AP75", "AP", "AR200"),
    bucket_line=("tp_tiny", "tp_tiny1", "tp_tiny2", "tp_tiny3", "tp_small"), bucket_title="TinyPerson AP50",
    bucket_names={"tp_tiny": "tiny", "tp_tiny1": "tiny1", "tp_tiny2": "tiny2", "tp_tiny3": "tiny3",
                  "tp_small": "small"}, rule="tinyperson")
PROTOCOLS = {p.name: p for p in (COCO, AITOD, VISDRONE, TINYPERSON)}
# the COCO protocol's buckets (the default evaluation), kept under their established name
AREA_RANGES: dict[str, tuple[float, float]] = COCO.area_ranges


def get_protocol(protocol: str | Protocol) -> Protocol:
    if isinstance(protocol, Protocol):
        return protocol
    if protocol not in PROTOCOLS:
        raise ValueError(f"--protocol must be one of {tuple(PROTOCOLS)}, got {protocol!r}")
    return PROTOCOLS[protocol]

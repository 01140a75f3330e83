"""Post-processing of decoded model output: NMS, mapping boxes back to original image pixels,
and conversion to the COCO results format."""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch
import torchvision

MAX_NMS = 30000  # most candidate boxes per image fed to NMS (keeps a pathological image bounded)


def xywh2xyxy(x: torch.Tensor) -> torch.Tensor:
    """(..., 4) centre-size boxes -> corner boxes (new tensor)."""
    xy, wh = x[..., :2], x[..., 2:4] / 2
    return torch.cat((xy - wh, xy + wh), -1)


def non_max_suppression(pred: torch.Tensor, conf_thres: float = 0.25, iou_thres: float = 0.45,
                        classes: Sequence[int] | None = None, multi_label: bool = False,
                        max_det: int = 300, agnostic: bool = False) -> list[torch.Tensor]:
    """Eval-mode model output (B, N, 5 + nc) [cx, cy, w, h, obj, cls...] -> per image (n, 6)
    [x1, y1, x2, y2, conf, cls], sorted by conf descending.

    conf = obj * cls_prob. Without multi_label each box keeps its best class; with it, every
    class whose conf passes conf_thres becomes its own candidate (better recall at low
    thresholds, as used for mAP). NMS is class-aware (torchvision batched_nms) unless agnostic.
    """
    if isinstance(pred, (list, tuple)):  # some wrappers return (decoded, raw)
        pred = pred[0]
    if pred.ndim != 3 or pred.shape[-1] < 6:
        raise ValueError(f"non_max_suppression: expected (B, N, 5 + nc) predictions, got {tuple(pred.shape)}")
    if not (0 <= conf_thres <= 1 and 0 <= iou_thres <= 1):
        raise ValueError(f"non_max_suppression: conf_thres={conf_thres} and iou_thres={iou_thres} must be in [0, 1]")
    out = []
    cls_filter = None if classes is None else torch.as_tensor(list(classes), device=pred.device)
    for x in pred:
        x = x[x[:, 4] > conf_thres].float()  # objectness pre-filter: cheap and drops most boxes
        if not x.shape[0]:
            out.append(torch.zeros((0, 6), device=pred.device))
            continue
        scores = x[:, 5:] * x[:, 4:5]
        boxes = xywh2xyxy(x[:, :4])
        if multi_label:
            i, j = (scores > conf_thres).nonzero(as_tuple=True)
            det = torch.cat((boxes[i], scores[i, j, None], j[:, None].float()), 1)
        else:
            conf, j = scores.max(1, keepdim=True)
            det = torch.cat((boxes, conf, j.float()), 1)[conf.view(-1) > conf_thres]
        if cls_filter is not None:
            det = det[(det[:, 5:6] == cls_filter).any(1)]
        if det.shape[0] > MAX_NMS:
            det = det[det[:, 4].topk(MAX_NMS).indices]
        if not det.shape[0]:
            out.append(det)
            continue
        groups = torch.zeros_like(det[:, 5]) if agnostic else det[:, 5]
        keep = torchvision.ops.batched_nms(det[:, :4], det[:, 4], groups, iou_thres)[:max_det]
        out.append(det[keep])  # batched_nms returns indices sorted by score
    return out


def _meta_get(meta: dict[str, Any], key: str) -> tuple[float, float]:
    try:
        a, b = meta[key]
    except (KeyError, TypeError, ValueError):
        raise ValueError(f"scale_boxes: meta needs '{key}' as a pair, got {meta.get(key)!r} "
                         f"(meta keys: {sorted(meta)})") from None
    return float(a), float(b)


def scale_boxes(boxes: torch.Tensor | np.ndarray, meta: dict[str, Any], clip: bool = True
                ) -> torch.Tensor | np.ndarray:
    """xyxy boxes in letterboxed-image pixels -> original-image pixels (new array), clipped to the
    image. Uses meta['ratio'] = (rw, rh), meta['pad'] = (pw, ph), meta['orig_shape'] = (h0, w0):
    original = (letterboxed - pad) / ratio. Extra columns (conf, cls) are copied unchanged."""
    rw, rh = _meta_get(meta, "ratio")
    pw, ph = _meta_get(meta, "pad")
    h0, w0 = _meta_get(meta, "orig_shape")
    if rw <= 0 or rh <= 0:
        raise ValueError(f"scale_boxes: ratio must be positive, got {(rw, rh)}")
    out = boxes.clone() if isinstance(boxes, torch.Tensor) else np.array(boxes, dtype=np.float64, copy=True)
    if out.shape[0] == 0:
        return out
    out[:, [0, 2]] = (out[:, [0, 2]] - pw) / rw
    out[:, [1, 3]] = (out[:, [1, 3]] - ph) / rh
    if clip:
        if isinstance(out, torch.Tensor):
            out[:, [0, 2]] = out[:, [0, 2]].clamp(0, w0)
            out[:, [1, 3]] = out[:, [1, 3]].clamp(0, h0)
        else:
            out[:, [0, 2]] = out[:, [0, 2]].clip(0, w0)
            out[:, [1, 3]] = out[:, [1, 3]].clip(0, h0)
    return out


def to_coco_results(det: torch.Tensor | np.ndarray, image_id: int, cat_ids: Sequence[int]) -> list[dict]:
    """(n, 6) [x1, y1, x2, y2, conf, cls] in original pixels -> COCO result dicts
    {image_id, category_id, bbox [x, y, w, h], score}; class index -> original category id.
    Rounded (3 decimals px, 5 for score) so the file is compact; metrics are computed on exactly
    these rounded records, so val.py's AP equals pycocotools' on predictions.json."""
    d = det.detach().cpu().double().numpy() if isinstance(det, torch.Tensor) else np.asarray(det, np.float64)
    res = []
    for x1, y1, x2, y2, conf, c in d.tolist():
        ci = int(c)
        if not 0 <= ci < len(cat_ids):
            raise ValueError(f"to_coco_results: class index {ci} outside the {len(cat_ids)} categories")
        res.append({"image_id": int(image_id), "category_id": int(cat_ids[ci]),
                    "bbox": [round(x1, 3), round(y1, 3), round(x2 - x1, 3), round(y2 - y1, 3)],
                    "score": round(conf, 5)})
    return res

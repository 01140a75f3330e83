"""Running a detector on decoded images: BGR uint8 (h, w, 3) in, (n, 6) [x1, y1, x2, y2, conf, cls]
out in that image's own pixels. Shared by detect.py, sliced inference, val.py --slice and the
latency benchmark; ``forward`` and ``postprocess`` are also the validator's inference and postprocess
steps (utils/eval/validator.py), so detect and val run one copy of the model call and the NMS."""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch

from utils.augment.transforms import letterbox
from utils.logger import LOG
from utils.inference.postprocess import non_max_suppression, scale_boxes


def model_stride(model: torch.nn.Module) -> int:
    """Largest stride of the model (input sides must be multiples of it); 32 when unknown."""
    s = getattr(model, "stride", None)
    return int(s.max()) if isinstance(s, torch.Tensor) and s.numel() else 32


def check_imgsz(imgsz: int, stride: int) -> int:
    """imgsz rounded up to a multiple of stride, with a warning when it changes."""
    new = max(math.ceil(int(imgsz) / stride) * stride, stride)
    if new != imgsz:
        LOG.warning(f"WARNING --imgsz {imgsz} is not a multiple of the model stride {stride}; using {new}")
    return new


def to_batch(imgs: Sequence[np.ndarray], device: torch.device | str) -> torch.Tensor:
    """Same-shape BGR HWC uint8 images -> float (B, 3, H, W) RGB in [0, 1] on device."""
    x = np.stack(imgs)[..., ::-1].transpose(0, 3, 1, 2)  # BGR -> RGB (the datasets feed RGB), HWC -> CHW
    x = torch.from_numpy(np.ascontiguousarray(x)).to(device, non_blocking=True)
    return x.float().div_(255)


def model_device(model: torch.nn.Module) -> torch.device:
    """Where the model's input goes: an exported model (utils/inference/backends.py) says so itself."""
    dev = getattr(model, "device", None)
    if isinstance(dev, torch.device):
        return dev
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


def forward(model: torch.nn.Module, x: torch.Tensor, half: bool = False) -> torch.Tensor:
    """The model's decoded output on a prepared batch (fp16 autocast when half and on CUDA; the model itself
    stays fp32). The inference step of detect, slicing and the validator."""
    with torch.autocast("cuda", torch.float16, enabled=half and x.device.type == "cuda"):
        pred = model(x)
    return pred[0] if isinstance(pred, (list, tuple)) else pred  # some wrappers return (decoded, raw)


def postprocess(pred: torch.Tensor, conf_thres: float = 0.25, iou_thres: float = 0.45,
                classes: Sequence[int] | None = None, max_det: int = 1000, agnostic: bool = False,
                multi_label: bool = False) -> list[torch.Tensor]:
    """Decoded output -> per image (n, 6) [x1, y1, x2, y2, conf, cls] in the batch's (model-input) pixels.
    Scores are compared in fp32 even after an fp16 forward. The postprocess step of detect, slicing and
    the validator."""
    return non_max_suppression(pred.float(), conf_thres, iou_thres, classes=classes, multi_label=multi_label,
                               max_det=max_det, agnostic=agnostic)


@torch.no_grad()  # not inference_mode: val.py edits the returned tensors in place
def predict_batch(model: torch.nn.Module, x: torch.Tensor, conf_thres: float = 0.25, iou_thres: float = 0.45,
                  classes: Sequence[int] | None = None, max_det: int = 1000, agnostic: bool = False,
                  multi_label: bool = False, half: bool = False) -> list[torch.Tensor]:
    """forward + postprocess on a prepared batch; per image (n, 6) in the batch's pixels."""
    return postprocess(forward(model, x, half), conf_thres, iou_thres, classes, max_det, agnostic, multi_label)


def predict_image(model: torch.nn.Module, img: np.ndarray, imgsz: int = 640, conf_thres: float = 0.25,
                  iou_thres: float = 0.45, classes: Sequence[int] | None = None, max_det: int = 1000,
                  agnostic: bool = False, multi_label: bool = False, half: bool = False) -> torch.Tensor:
    """One BGR image letterboxed to imgsz (long side, short side padded to the stride) -> (n, 6)
    float32 on CPU in the image's pixels, clipped to it."""
    stride = model_stride(model)
    lb, ratio, pad = letterbox(img, imgsz, auto=True, stride=stride)
    det = predict_batch(model, to_batch([lb], model_device(model)), conf_thres, iou_thres, classes, max_det,
                        agnostic, multi_label, half)[0]
    meta = {"ratio": ratio, "pad": pad, "orig_shape": img.shape[:2]}
    return scale_boxes(det, meta).float().cpu()

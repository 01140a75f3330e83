"""What the validator reads besides the batches: the data config, the model to score, original images
(for sliced evaluation) and ground truth in original-image pixels."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from utils.inference.postprocess import scale_boxes, xywh2xyxy
from utils.logger import LOG
from utils.paths import ROOT



def load_data(data: str | dict) -> dict:
    """A data YAML path (relative to the working dir or the repo root) or an already-loaded dict."""
    if isinstance(data, dict):
        return data
    from utils.data.dataset import load_data_config
    if not Path(data).exists() and (ROOT / data).exists():  # 'data/shapes.yaml' from any working dir
        data = str(ROOT / data)
    return load_data_config(data)


def load_scored_model(model: torch.nn.Module | None, weights: str | None, device: str
                      ) -> tuple[Any, torch.device, str]:
    """(model, its device, a name for messages): the caller's in-memory model, else weights loaded by
    utils/inference/backends.py (.pt checkpoints, .onnx and .torchscript exports)."""
    from utils.torch_utils import select_device, unwrap
    if model is not None:
        model = unwrap(model)
        return model, next(model.parameters()).device, "model"
    if weights:
        from utils.inference.backends import load_model
        dev = select_device(device)
        return load_model(weights, dev), dev, str(weights)
    raise ValueError("val.run: give weights= (a checkpoint path) or model= (an in-memory Model)")


def check_classes(model_nc: int, model_names: list, names: list, single_cls: bool, src: str, data_src: str) -> None:
    """The model must predict the data's classes; differing names only warn (scored by class index)."""
    want = 1 if single_cls else len(names)
    if model_nc != want:
        raise ValueError(f"{src}: the model predicts {model_nc} classes {list(model_names)[:10]} but the data "
                         f"{data_src} has {want} {names[:10] if not single_cls else ['object (single_cls)']}; "
                         f"use weights trained on this data set")
    if not single_cls and model_names and list(model_names) != list(names):
        LOG.warning(f"WARNING {src}: class names {list(model_names)[:10]} differ from the data's {names[:10]}; "
                    f"evaluating by class index")


def read_orig(dataset: Any, path: str, meta: dict) -> Any:
    """The original image behind a batch item, for sliced evaluation (decoded as the dataset does)."""
    from utils.data.image_io import read_image
    p = Path(path)
    if not p.is_file() and getattr(dataset, "img_dir", None):
        p = Path(dataset.img_dir) / p
    try:  # special=True: grey, RGBA and 16-bit files convert exactly as in training
        img = read_image(str(p), special=True, bit_depth=getattr(dataset, "bit_depth", "auto"))
    except OSError:
        raise ValueError(f"{p}: image id {meta.get('image_id')} could not be read for --slice evaluation") from None
    if tuple(img.shape[:2]) != tuple(int(v) for v in meta["orig_shape"]):
        raise ValueError(f"{p}: decoded as {img.shape[1]}x{img.shape[0]} but the dataset says "
                         f"{meta['orig_shape'][1]}x{meta['orig_shape'][0]} (image id {meta.get('image_id')})")
    return img


def gt_orig(targets: torch.Tensor, i: int, meta: dict, single_cls: bool) -> torch.Tensor:
    """Image i's labels [cls, cx, cy, w, h] (letterboxed px) -> [cls, x1, y1, x2, y2] original px."""
    t = targets[targets[:, 0] == i, 1:6].double()
    out = torch.zeros((len(t), 5), dtype=torch.float64)
    if len(t):
        out[:, 0] = 0 if single_cls else t[:, 0]
        out[:, 1:] = scale_boxes(xywh2xyxy(t[:, 1:5]), meta)
    return out

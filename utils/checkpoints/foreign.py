"""Checkpoints written by ultralytics/yolov5 (v6.x/v7.0 layouts) and by the Ultralytics package (YOLOv5u), as
smalldet checkpoints: ``load_foreign(path)`` returns the dict our own training writes (model_yaml, model, names,
cat_ids, ...), so every ``--weights`` reader takes them.

The file is read by the restricted unpickler (utils/checkpoints/unpickle.py: no code of theirs runs); the pickled
model's layer list (its ``.yaml``) picks the config of ours with the same layers, its scale (depth and width
multiples), class count, names, anchors and strides fill that config in, and its tensors (fp16 -> fp32) are
renamed onto our layers. Every tensor must fit: a file that does not map gets one error naming the first tensor
that does not.
"""
from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import torch

from models.config import CONFIG_DIR, load_model_config
from models.yolo import Model
from utils.checkpoints.checkpoint import checkpoint_yaml
from utils.checkpoints.unpickle import UnsafePickleError, module_state, restricted_load, stub_name

# pickled model classes -> the code base that wrote them
YOLOV5, ULTRALYTICS = "ultralytics/yolov5", "Ultralytics"
MODEL_CLASSES = {"models.yolo.DetectionModel": YOLOV5, "models.yolo.Model": YOLOV5,
                 "ultralytics.nn.tasks.DetectionModel": ULTRALYTICS}
# our configs to try, in order, for each code base's detect head (the first whose layers and tensors fit wins)
HEAD_CONFIGS = {"Detect": ("yolov5.yaml", "yolov5-p2.yaml", "yolov5-focus.yaml"),
                "DetectDFL": ("yolov5-dfl.yaml", "yolov5-dfl-lite.yaml", "yolov5-p2-dfl.yaml")}
SCALES = {"n": (0.33, 0.25), "s": (0.33, 0.50), "m": (0.67, 0.75), "l": (1.0, 1.0), "x": (1.33, 1.25)}


class ForeignCheckpointError(ValueError):
    """A YOLOv5/Ultralytics checkpoint that cannot be read or mapped onto one of our models."""


def is_foreign(obj: Any) -> bool:
    """Whether a restricted-unpickled checkpoint holds a model of a code base we can convert."""
    return isinstance(obj, dict) and any(stub_name(obj.get(k)) in MODEL_CLASSES for k in ("ema", "model"))


def read_foreign(path: str | Path) -> dict[str, Any]:
    """The checkpoint dict, read without running any of its code (Stubs in place of its classes)."""
    try:
        return restricted_load(path)
    except UnsafePickleError as e:
        raise ForeignCheckpointError(f"{path}: {e}; the file was not loaded (it may run code when unpickled)") \
            from None
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, TypeError, AttributeError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        raise ForeignCheckpointError(f"{path}: not a readable checkpoint ({type(e).__name__}: {first})") from None


def _layer(entry: list, code: str) -> tuple:
    """One layer line of a model YAML in a form both codes share: (from, repeats, module, args)."""
    f, n, m, args = entry
    m = str(m).removeprefix("nn.").removeprefix("torch.nn.")
    if m == "Detect":  # the head is compared by kind only: its args differ in form between the codes
        return (f, "DetectDFL" if code == ULTRALYTICS else "Detect")
    if m == "DetectDFL":
        return (f, m)
    args = [None if a in ("None", None) else a for a in args]
    return (f, n, m, args)


def _layers(cfg: dict, code: str) -> list[tuple]:
    return [_layer(e, code) for e in list(cfg.get("backbone") or []) + list(cfg.get("head") or [])]


def _multiples(cfg: dict) -> tuple[float, float]:
    if "depth_multiple" in cfg:
        return float(cfg["depth_multiple"]), float(cfg["width_multiple"])
    scales, scale = cfg.get("scales") or {}, cfg.get("scale")
    if scale in scales:
        return float(scales[scale][0]), float(scales[scale][1])
    if len(scales) == 1:
        d, w = next(iter(scales.values()))[:2]
        return float(d), float(w)
    raise ForeignCheckpointError(f"model YAML has no depth/width multiples (scale {scale!r}, scales {list(scales)})")


def _names(names: Any, nc: int) -> list[str]:
    if isinstance(names, dict):
        return [str(names.get(i, f"class{i}")) for i in range(nc)]
    if isinstance(names, (list, tuple)) and len(names) == nc:
        return [str(n) for n in names]
    return [f"class{i}" for i in range(nc)]


def _rename(key: str, head: str) -> str | None:
    """Their state-dict name -> ours (None: a tensor ours does not keep)."""
    parts = key.split(".")
    if parts[1] == head and len(parts) > 2:
        if parts[2] == "dfl":  # the fixed 0..reg_max-1 projection; ours is the `bins` buffer
            return None
        parts[2] = {"cv2": "box", "cv3": "cls"}.get(parts[2], parts[2])
    return ".".join(parts)


def _their_state(model: Any) -> dict[str, torch.Tensor]:
    state = module_state(model)
    return {k: (v.float() if v.is_floating_point() else v).contiguous() for k, v in state.items()}


def _map_state(theirs: dict[str, torch.Tensor], mine: dict[str, torch.Tensor], head: str,
               extra: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], str | None]:
    """Their tensors under our names, and the first misfit (a sentence), or None when all fit."""
    out = dict(extra)
    for key, t in theirs.items():
        ours = _rename(key, head)
        if ours is None or ours in out:
            continue
        if ours not in mine:
            return out, f"tensor {key} {tuple(t.shape)} has no counterpart in our model"
        if mine[ours].shape != t.shape:
            return out, f"tensor {key} {tuple(t.shape)} does not fit our {ours} {tuple(mine[ours].shape)}"
        out[ours] = t
    missing = [k for k in mine if k not in out]
    if missing:
        return out, f"our tensor {missing[0]} {tuple(mine[missing[0]].shape)} has no counterpart in the file"
    return out, None


def _candidates(their_cfg: dict, code: str) -> list[Path]:
    """Our configs with their layer list (or, when none has it, the default for their head, to name the misfit)."""
    kind = "DetectDFL" if code == ULTRALYTICS else "Detect"
    want = _layers(their_cfg, code)
    same = []
    for name in HEAD_CONFIGS[kind]:
        ours = load_model_config(CONFIG_DIR / name)
        if _layers(ours, code) == want:
            same.append(CONFIG_DIR / name)
    return same or [CONFIG_DIR / HEAD_CONFIGS[kind][0]]


def convert_model(model: Any, source: str) -> dict[str, Any]:
    """A pickled (Stub) DetectionModel of either code base -> our checkpoint dict."""
    code = MODEL_CLASSES[stub_name(model)]
    d = model.__dict__
    their_cfg = d.get("yaml")
    if not isinstance(their_cfg, dict):
        raise ForeignCheckpointError(f"{source}: the pickled model has no layer config (.yaml)")
    head = str(len(their_cfg.get("backbone") or []) + len(their_cfg.get("head") or []) - 1)
    det = (d["_modules"]["model"].__dict__.get("_modules") or {}).get(head)
    if det is None:
        raise ForeignCheckpointError(f"{source}: no detect layer model.{head}")
    dd = det.__dict__
    theirs = _their_state(model)
    nc = int(dd.get("nc") or their_cfg.get("nc"))
    stride = dd.get("stride") if dd.get("stride") is not None else d.get("stride")
    if not isinstance(stride, torch.Tensor) or not stride.numel():
        raise ForeignCheckpointError(f"{source}: the detect layer model.{head} has no strides")
    stride = stride.float()
    gd, gw = _multiples(their_cfg)
    names = _names(d.get("names"), nc)
    extra = {f"model.{head}.stride": stride}
    anchors = None
    if code == YOLOV5:
        # their anchors buffer is in units of each level's stride, ours in pixels
        theirs.pop(f"model.{head}.anchor_grid", None)  # older files keep anchors * stride as a buffer too
        a = theirs.pop(f"model.{head}.anchors", None)
        if a is None:
            raise ForeignCheckpointError(f"{source}: no tensor model.{head}.anchors in the detect layer")
        anchors_px = a * stride.view(-1, 1, 1)
        extra[f"model.{head}.anchors"] = anchors_px
        anchors = anchors_px.flatten(1).tolist()
    else:
        proj = theirs.get(f"model.{head}.dfl.conv.weight")
        if proj is not None and not torch.equal(proj.flatten(), torch.arange(proj.numel(), dtype=proj.dtype)):
            raise ForeignCheckpointError(f"{source}: tensor model.{head}.dfl.conv.weight is not 0..{proj.numel() - 1}"
                                         f"; our DFL decodes with those fixed bins")
    why = ""
    for path in _candidates(their_cfg, code):
        cfg = load_model_config(path)
        cfg.update(depth_multiple=gd, width_multiple=gw, nc=nc)
        scale = next((k for k, v in SCALES.items() if v == (gd, gw)), None)
        cfg.pop("scale", None)
        if scale:
            cfg["scale"] = scale
        if anchors is not None:
            if len(anchors) != len(cfg.get("anchors") or []) and not isinstance(cfg.get("anchors"), int):
                why = why or f"{len(anchors)} anchor levels, {path.name} has {len(cfg['anchors'])}"
                continue
            cfg["anchors"] = anchors
        elif code == ULTRALYTICS and proj is not None:
            cfg["reg_max"] = int(proj.numel())
        ours = Model(cfg)
        state, misfit = _map_state(theirs, ours.state_dict(), head, extra)
        if misfit is None:
            ours.load_state_dict(state)
            return {"model_yaml": checkpoint_yaml(ours), "model": ours.state_dict(), "names": names,
                    "cat_ids": list(range(1, nc + 1)), "epoch": -1,
                    "converted_from": {"code": code, "file": str(source), "class": stub_name(model),
                                       "config": path.name, "scale": scale or f"{gd}/{gw}"}}
        why = why or f"{misfit} ({path.name} at depth {gd}, width {gw}, nc {nc})"
    raise ForeignCheckpointError(f"{source}: a {code} checkpoint that does not map onto our models: {why}; "
                                 f"the layouts that map: ultralytics/yolov5 v6.x/v7.0 (yolov5n-x, -p2) and YOLOv5u")


def load_foreign(path: str | Path) -> dict[str, Any]:
    """A checkpoint written by ultralytics/yolov5 or the Ultralytics package -> our checkpoint dict
    (model_yaml, model state dict in fp32, names, cat_ids, epoch, converted_from), read without running its code.
    Raises ForeignCheckpointError (one line) for refused, unreadable or unmappable files."""
    ckpt = read_foreign(path)
    if not is_foreign(ckpt):
        held = [stub_name(ckpt.get(k)) for k in ("ema", "model")] if isinstance(ckpt, dict) else []
        what = next((f" (it holds a {h}, not a detection model we read)" for h in held if h), "")
        raise ForeignCheckpointError(f"{path}: not a smalldet, ultralytics/yolov5 or Ultralytics checkpoint{what}")
    model = ckpt.get("ema") if stub_name(ckpt.get("ema")) in MODEL_CLASSES else ckpt["model"]
    out = convert_model(model, str(path))
    args = ckpt.get("train_args") if isinstance(ckpt.get("train_args"), dict) else ckpt.get("opt")
    if isinstance(args, dict) and isinstance(args.get("imgsz"), (int, list)):
        imgsz = args["imgsz"]
        out["imgsz"] = int(imgsz if isinstance(imgsz, int) else max(imgsz))
    return out

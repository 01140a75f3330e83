"""Model: a YAML file -> nn.Module graph, plus info() and fuse().

Run as a script to print the layer table: ``python -m models.yolo --cfg yolov5s.yaml``.
"""
from __future__ import annotations

import argparse
import sys
from copy import deepcopy
from pathlib import Path
from typing import Any


import torch
import torch.nn as nn

import models.blocks  # noqa: F401  (registers modules)
import models.extras  # noqa: F401
import models.neck  # noqa: F401
import models.stems  # noqa: F401
from models.blocks import Conv
from models.config import ModelConfigError, load_model_config, where
from models.head import BIN_WIDTH, REG_MAX, HeadBase, default_anchors
from models.registry import REGISTRY


def head_reads(cfg: dict[str, Any], symbol: str) -> bool:
    """Whether the last layer's YAML args name this top-level key (nc, reg_max, dfl_bin): only then does a
    value set on the YAML reach the head, and its checkpoints rebuild the same one."""
    return symbol in cfg["head"][-1][3]


def parse_model(cfg: dict[str, Any], ch: int) -> tuple[nn.Sequential, list[int], list[dict]]:
    """Build the layer list. Returns (layers, indices whose outputs must be kept, table)."""
    gd, gw = cfg["depth_multiple"], cfg["width_multiple"]
    names = {"nc": cfg["nc"], "anchors": cfg.get("anchors", 3), "dfl_bin": cfg.get("dfl_bin", BIN_WIDTH),
             "reg_max": cfg.get("reg_max", REG_MAX)}
    chs: list[int] = [ch]  # chs[i + 1] is the output width of layer i
    layers, save, table = [], set(), []
    entries = [("backbone", i, e) for i, e in enumerate(cfg["backbone"])] + \
              [("head", i, e) for i, e in enumerate(cfg["head"])]
    for idx, (section, j, entry) in enumerate(entries):
        loc = where(cfg, section, j)
        if not (isinstance(entry, list) and len(entry) == 4):
            raise ModelConfigError(f"{loc}: expected [from, repeats, module, args], got {entry!r}")
        f, n, mname, args = entry
        if mname not in REGISTRY:
            raise ModelConfigError(f"{loc}: unknown module {mname!r}; known: "
                                   f"{', '.join(sorted(REGISTRY))}")
        froms = f if isinstance(f, list) else [f]
        if not froms or not all(isinstance(x, int) for x in froms):
            raise ModelConfigError(f"{loc}: 'from' must be an int or list of ints, got {f!r}")
        for x in froms:
            a = x if x >= 0 else idx + x
            if not (0 <= a < idx or (idx == 0 and x == -1)):
                raise ModelConfigError(f"{loc}: 'from' index {x} refers to no earlier layer "
                                       f"(this is layer {idx})")
        if not isinstance(n, int) or n < 1:
            raise ModelConfigError(f"{loc}: repeats must be a positive int, got {n!r}")
        if not isinstance(args, list):
            raise ModelConfigError(f"{loc}: args must be a list, got {args!r}")
        args = [names.get(a, a) if isinstance(a, str) else a for a in args]
        n = max(round(n * gd), 1) if n > 1 else n
        cls = REGISTRY[mname]
        c_in = [chs[x + 1] if x >= 0 else chs[idx + x + 1] for x in froms]
        try:
            module, c_out = cls.from_yaml(c_in, args, n, gw)
        except (TypeError, ValueError, IndexError, ZeroDivisionError) as e:
            raise ModelConfigError(f"{loc}: bad args {args!r} for {mname}: {e}") from None
        abs_from = [x if x >= 0 else idx + x for x in froms]
        module.i, module.f, module.type, module.loc = idx, (f if isinstance(f, list) else f), mname, loc
        save.update(a for x, a in zip(froms, abs_from) if x != -1)  # -1 is passed along directly
        layers.append(module)
        chs.append(c_out)
        table.append(dict(i=idx, f=f, n=n, params=sum(p.numel() for p in module.parameters()),
                          module=mname, args=args if mname != "Detect" else [args[0], "..."]))
    return nn.Sequential(*layers), sorted(save), table


class Model(nn.Module):
    """A detection model assembled from a YAML config (see configs/models)."""

    def __init__(self, cfg: str | Path | dict = "yolov5n.yaml", ch: int = 3,
                 nc: int | None = None, anchors: list | None = None, reg_max: int | None = None):
        super().__init__()
        self.yaml = load_model_config(cfg)
        if nc is not None:
            self.yaml["nc"] = nc
        if reg_max is not None:  # train.py --reg-max; kept in the YAML, so checkpoints rebuild the same head
            if not head_reads(self.yaml, "reg_max"):
                raise ModelConfigError(f"{self.yaml['_file']}: --reg-max {reg_max}, but the last layer's args do not "
                                       f"name reg_max (a DetectDFL head: [nc, reg_max, dfl_bin])")
            self.yaml["reg_max"] = reg_max
        if anchors is not None:
            self.yaml["anchors"] = anchors
        if not isinstance(self.yaml.get("nc"), int) or self.yaml["nc"] < 1:
            raise ModelConfigError(f"{self.yaml['_file']}: 'nc' must be a positive int")
        self.model, self.save, self.table = parse_model(self.yaml, ch)
        self.nc = self.yaml["nc"]
        self.names = [f"class{i}" for i in range(self.nc)]
        self.cat_ids = list(range(1, self.nc + 1))
        det = self.detect
        if not isinstance(det, HeadBase):
            raise ModelConfigError(f"{self.yaml['_file']}: the last layer must be a head (Detect or DetectDFL)")
        self._init_strides(ch)
        self._initialize_weights()

    @property
    def detect(self) -> HeadBase:
        return self.model[-1]

    @property
    def stride(self) -> torch.Tensor:
        return self.detect.stride

    def _init_strides(self, ch: int) -> None:
        det = self.detect
        s = 256
        ran: list[nn.Module] = []  # the layers entered so far: the last one is where a bad config fails
        hooks = [m.register_forward_pre_hook(lambda mod, _: ran.append(mod)) for m in self.model]
        try:
            with torch.no_grad():
                self.train()
                out = self.forward(torch.zeros(1, ch, s, s))
        except RuntimeError as e:  # shapes that only clash when run: a 'from' at another resolution, k=0, ...
            m = ran[-1]
            raise ModelConfigError(f"{m.loc}: {m.type} fails on its input in a {s} px test pass: "
                                   f"{str(e).splitlines()[0]}") from None
        finally:
            for h in hooks:
                h.remove()
        det.stride.copy_(torch.tensor([s / o.shape[-2] for o in out]))
        if not det.anchor_free and isinstance(self.yaml.get("anchors", 3), int):
            a = default_anchors([int(v) for v in det.stride.tolist()], det.na)
            det.anchors.copy_(torch.tensor(a).view_as(det.anchors))
        det.init_biases()

    def _initialize_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.eps, m.momentum = 1e-3, 0.03
            elif isinstance(m, (nn.SiLU, nn.ReLU, nn.LeakyReLU)):
                m.inplace = True

    def forward(self, x: torch.Tensor):
        outs: list[torch.Tensor | None] = []
        for m in self.model:
            if m.f != -1:
                x = outs[m.f] if isinstance(m.f, int) else [x if j == -1 else outs[j] for j in m.f]
            x = m(x)
            outs.append(x if m.i in self.save else None)
        return x

    def fuse(self) -> "Model":
        """Fold BatchNorm into the preceding conv, for inference (in place)."""
        for m in self.modules():
            if isinstance(m, Conv) and hasattr(m, "bn"):
                m.conv = torch.nn.utils.fusion.fuse_conv_bn_eval(m.conv.eval(), m.bn.eval())
                delattr(m, "bn")
                m.forward = m.forward_fused
        return self

    def info(self, imgsz: int = 640, verbose: bool = False) -> dict[str, float]:
        """Parameter count and GFLOPs (2 x multiply-adds) for one imgsz x imgsz image."""
        params = sum(p.numel() for p in self.parameters())
        gflops = count_gflops(self, imgsz)
        if verbose:
            print(f"{'':>3}{'from':>18}{'n':>4}{'params':>11}  {'module':<16}arguments")
            for r in self.table:
                print(f"{r['i']:>3}{str(r['f']):>18}{r['n']:>4}{r['params']:>11,}  "
                      f"{r['module']:<16}{r['args']}")
        return {"params": params, "gflops": gflops}


def count_gflops(model: nn.Module, imgsz: int = 640, ch: int = 3) -> float:
    """GFLOPs of one forward pass at imgsz, counted by torch.utils.flop_counter."""
    from torch.utils.flop_counter import FlopCounterMode

    m = deepcopy(model).eval()
    x = torch.zeros(1, ch, imgsz, imgsz, device=next(m.parameters()).device)
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        m(x)
    return counter.get_total_flops() / 1e9


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="Build a model from YAML and print its layers.")
    ap.add_argument("--cfg", default="yolov5n.yaml", help="model YAML (e.g. yolov5s-spd.yaml)")
    ap.add_argument("--imgsz", type=int, default=640, help="image size for the GFLOPs count")
    ap.add_argument("--nc", type=int, default=None, help="override the number of classes")
    opt = ap.parse_args(argv)
    try:
        model = Model(opt.cfg, nc=opt.nc)
    except ModelConfigError as e:
        sys.exit(f"error: {e}")
    info = model.info(opt.imgsz, verbose=True)
    print(f"params {info['params']:,}, GFLOPs {info['gflops']:.1f}")


if __name__ == "__main__":
    main()

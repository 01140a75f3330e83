"""Export a checkpoint for deployment: ONNX (run by onnxruntime) and TorchScript, written next to the weights.

    python export.py --weights runs/train/exp/weights/best.pt --include onnx torchscript --dynamic
    python export.py --weights best.pt --include onnx --imgsz 640 --batch-size 4 --simplify

The exported graph is the fused eval-mode Model: input 'images' (B, 3, H, W) RGB float in [0, 1], output
'output0' (B, N, 5 + nc) decoded boxes [cx, cy, w, h (input px), obj, cls...], the layout NMS takes. Each file
carries its metadata (names, category ids, strides, imgsz, head, anchors; utils/inference/export_meta.py), so
``detect.py --weights best.onnx`` and ``val.py --weights best.torchscript`` need nothing else. Every export is
checked (onnx.checker) and run once against PyTorch before it replaces an older file.
--dynamic: any batch / height / width. Without it the shape is fixed; detect.py and val.py still run such a
file (smaller inputs padded, batches split), but --dynamic is the better choice for them.
--half: fp16 backbone and neck, fp32 head (box decoding in fp16 is only 0.5 px exact at 640).
"""
from __future__ import annotations

import argparse
import json
import os
import time
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Sequence

import torch

from utils.checkpoints.checkpoint import CheckpointError, model_from_checkpoint, read_checkpoint
from utils.inference.export_meta import TS_EXTRA_FILE, export_metadata, to_string_pairs
from utils.inference.predict import check_imgsz
from utils.logger import LOG
from utils.torch_utils import select_device

FORMATS = {"onnx": ".onnx", "torchscript": ".torchscript"}
OPSET = 20  # the newest opset torch's TorchScript-based ONNX exporter writes; onnxruntime >= 1.17 runs it
# how far from PyTorch a correct export may be on the check input, fp32 / fp16: boxes |diff| <= atol px + rtol
# * |box|, scores |diff| <= score_tol. PyTorch's own fp32 result is ~1e-3 relative from the exact (fp64) one on
# badly conditioned weights, and onnxruntime's is as far again; fp16 keeps ~3 digits. A broken graph (a size
# baked in, a wrong op) is off by whole grid cells (>= 4 px).
VERIFY_TOL = {False: (0.5, 5e-3, 5e-3), True: (2.0, 3e-2, 3e-2)}


class ExportError(RuntimeError):
    """An export that failed or does not match the PyTorch model; the message names the file."""


def _deform_conv2d(g, x, weight, offset, mask, bias, stride_h, stride_w, pad_h, pad_w, dil_h, dil_w, groups,
                   offset_groups, use_mask):
    """torchvision's deform_conv2d (models/extras.py DeformConv) as ONNX DeformConv (opset 19): the same
    offset layout, (y, x) pairs per kernel position and offset group."""
    from torch.onnx.symbolic_helper import _get_const

    ints = [_get_const(v, "i", "") for v in (stride_h, stride_w, pad_h, pad_w, dil_h, dil_w, groups, offset_groups)]
    sh, sw, ph, pw, dh, dw, grp, ogrp = ints
    k = weight.type().sizes()[2:]
    inputs = [x, weight, offset, bias] + ([mask] if _get_const(use_mask, "b", "use_mask") else [])
    return g.op("DeformConv", *inputs, strides_i=[sh, sw], pads_i=[ph, pw, ph, pw], dilations_i=[dh, dw],
                group_i=grp, offset_group_i=ogrp, kernel_shape_i=list(k))


def register_onnx_ops(opset: int) -> None:
    if opset >= 19:
        import torchvision  # noqa: F401  (defines the torchvision:: ops)

        torch.onnx.register_custom_op_symbolic("torchvision::deform_conv2d", _deform_conv2d, 19)


@contextmanager
def traceable(model: torch.nn.Module) -> Iterator[None]:
    """Tracing without the notes torch prints about it. (Detect's grid cache cannot freeze one input size into
    the graph: while tracing, shapes are tensors, so every cache lookup misses and the grids are traced from the
    input shape; tests/inference/test_export.py checks exports at other sizes.)"""
    with warnings.catch_warnings():  # tracer / deprecation notes about our shape arithmetic are expected
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", UserWarning)
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit's own deprecation note (torch >= 2.10)
        yield


def prepare_model(weights: str | Path, device: torch.device, half: bool) -> torch.nn.Module:
    """The checkpoint's Model fused, in eval mode, without gradients; with half the backbone and neck in
    fp16 while the head (and its box decoding) stays fp32."""
    model = model_from_checkpoint(read_checkpoint(weights), "model", str(weights)).to(device).eval().fuse()
    for p in model.parameters():
        p.requires_grad_(False)
    if half:
        model.half()
        model.detect.float()
        model.detect.register_forward_pre_hook(lambda m, args: ([t.float() for t in args[0]],))
    return model


def _write_onnx(model: torch.nn.Module, x: torch.Tensor, path: Path, meta: dict, dynamic: bool, simplify: bool,
                opset: int) -> None:
    import onnx

    register_onnx_ops(opset)
    axes = {"images": {0: "batch", 2: "height", 3: "width"}, "output0": {0: "batch", 1: "boxes"}} if dynamic else None
    with traceable(model):
        torch.onnx.export(model, (x,), str(path), dynamo=False, opset_version=opset, input_names=["images"],
                          output_names=["output0"], dynamic_axes=axes, do_constant_folding=True)
    proto = onnx.load(str(path))
    if simplify:
        try:
            import onnxslim
        except ImportError:
            raise ExportError("--simplify needs onnxslim (pip install onnxslim)") from None
        proto = onnxslim.slim(proto)
    onnx.helper.set_model_props(proto, to_string_pairs(meta))
    proto.doc_string = "smalldet detector: images (B,3,H,W) RGB [0,1] -> output0 (B,N,5+nc) cx,cy,w,h,obj,cls"
    try:
        onnx.checker.check_model(proto, full_check=True)
    except Exception as e:  # ValidationError or InferenceError
        raise ExportError("the exported ONNX model fails onnx.checker: "
                          f"{str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__}") from None
    onnx.save(proto, str(path))


def _write_torchscript(model: torch.nn.Module, x: torch.Tensor, path: Path, meta: dict) -> None:
    with traceable(model):
        ts = torch.jit.trace(model, x, check_trace=False)
        torch.jit.save(ts, str(path), _extra_files={TS_EXTRA_FILE: json.dumps(meta)})


def _check_inputs(model: torch.nn.Module, x: torch.Tensor, dynamic: bool) -> list[torch.Tensor]:
    """The export's own input, and for a dynamic export one of another batch and size, so that a size
    frozen into the graph shows up here rather than in deployment."""
    g = torch.Generator().manual_seed(0)
    xs = [torch.rand(x.shape, generator=g).to(x)]
    if dynamic:
        s = int(model.stride.max())
        b, c, h, w = x.shape
        xs.append(torch.rand((b + 1, c, h + s, max(w - s, s)), generator=g).to(x))
    return xs


def verify(model: torch.nn.Module, path: Path, xs: list[torch.Tensor], half: bool) -> float:
    """Run the written file through its backend on xs and compare with PyTorch; returns the largest
    box difference in pixels, raises ExportError past VERIFY_TOL."""
    from utils.inference.backends import load_model

    backend = load_model(path, xs[0].device)
    atol, rtol, score_tol = VERIFY_TOL[half]
    worst = 0.0
    for x in xs:
        with torch.no_grad(), traceable(model):
            want = model(x).float().cpu()
        got = backend(x).float().cpu()
        if got.shape != want.shape:
            raise ExportError(f"output {tuple(got.shape)} but PyTorch gives {tuple(want.shape)} "
                              f"for input {tuple(x.shape)}")
        err = (got[..., :4] - want[..., :4]).abs()
        d_box, excess = err.max().item(), (err - atol - rtol * want[..., :4].abs()).max().item()
        d_score = (got[..., 4:] - want[..., 4:]).abs().max().item()
        if not (excess <= 0 and d_score <= score_tol):  # 'not <=' also catches NaN
            raise ExportError(f"differs from PyTorch on input {tuple(x.shape)} by up to {d_box:.3g} px "
                              f"(boxes) / {d_score:.3g} (scores); tolerance {atol} px + {rtol} x box / {score_tol}")
        worst = max(worst, d_box)
    return worst


def run(weights: str | Path, include: Sequence[str] = ("onnx", "torchscript"), imgsz: int | Sequence[int] = 640,
        batch_size: int = 1, dynamic: bool = False, half: bool = False, simplify: bool = False, device: str = "cpu",
        opset: int = OPSET) -> dict[str, Path]:
    """Export weights to each format in include; returns {format: written file}."""
    include = [f.lower() for f in include]
    bad = [f for f in include if f not in FORMATS]
    if bad or not include:
        raise ValueError(f"--include {' '.join(bad) or '(none)'}: unsupported; choose from {', '.join(FORMATS)}")
    sizes = [imgsz] if isinstance(imgsz, int) else list(imgsz)
    if not 1 <= len(sizes) <= 2 or min(sizes) < 1:
        raise ValueError(f"--imgsz {sizes}: give one size or height width, positive")
    if batch_size < 1:
        raise ValueError(f"--batch-size {batch_size} must be >= 1")
    if simplify and "onnx" not in include:
        LOG.warning("WARNING --simplify applies to ONNX only; ignored")
    weights, dev = Path(weights), select_device(device)
    model = prepare_model(weights, dev, half)
    stride = int(model.stride.max())
    h, w = (check_imgsz(s, stride) for s in (sizes * 2)[:2])
    x = torch.zeros(batch_size, 3, h, w, device=dev, dtype=torch.float16 if half else torch.float32)
    with torch.no_grad(), traceable(model):
        model(x)  # a dry run: a model that cannot run at this size fails here, with PyTorch's own message
    meta = export_metadata(model, (h, w), batch_size, dynamic, half, weights.name)
    xs = _check_inputs(model, x, dynamic)
    out = {}
    for fmt in dict.fromkeys(include):  # each format once, in the order given
        t0 = time.perf_counter()
        path = weights.with_suffix(FORMATS[fmt])
        # the old file stays until the new one passes; the pid keeps two exports of one checkpoint from writing
        # (and removing) the same temp file
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp{FORMATS[fmt]}")
        try:
            if fmt == "onnx":
                _write_onnx(model, x, tmp, meta, dynamic, simplify, opset)
            else:
                _write_torchscript(model, x, tmp, meta)
            diff = verify(model, tmp, xs, half)
            os.replace(tmp, path)
        except ExportError as e:
            raise ExportError(f"{path}: {e}") from None
        except (RuntimeError, TypeError, ValueError) as e:  # the tracer's own failures, e.g. an op without ONNX form
            first = str(e).strip().splitlines()[0] if str(e).strip() else ""
            raise ExportError(f"{path}: {fmt} export failed ({type(e).__name__}: {first})") from None
        finally:
            tmp.unlink(missing_ok=True)
        LOG.info(f"{fmt:<12} {path} ({path.stat().st_size / 1e6:.1f} MB, {'dynamic' if dynamic else 'fixed'} "
                 f"{batch_size}x3x{h}x{w}{', fp16' if half else ''}{f', opset {opset}' if fmt == 'onnx' else ''}; "
                 f"max box difference to PyTorch {diff:.2g} px; {time.perf_counter() - t0:.1f} s)")
        out[fmt] = path
    return out


def parse_opt(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    a = p.add_argument
    a("--weights", type=str, required=True, help="checkpoint .pt; the exports are written next to it")
    a("--include", nargs="+", default=["onnx", "torchscript"], help=f"formats: {', '.join(FORMATS)}")
    a("--imgsz", "--img", nargs="+", type=int, default=[640], help="input size: one value or height width")
    a("--batch-size", type=int, default=1, help="batch size of the exported input (any with --dynamic)")
    a("--dynamic", action="store_true", help="dynamic batch, height and width")
    a("--half", action="store_true", help="fp16 backbone and neck (head in fp32)")
    a("--simplify", action="store_true", help="simplify the ONNX graph with onnxslim")
    a("--device", default="cpu", help="cpu, 0, cuda:0 (where the model is traced)")
    a("--opset", type=int, default=OPSET, help="ONNX opset version")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> dict[str, Path]:
    opt = parse_opt(argv)
    try:
        return run(**vars(opt))
    except (CheckpointError, ExportError, ValueError, OSError) as e:
        raise SystemExit(f"export.py: error: {e}") from None


if __name__ == "__main__":
    main()

"""Inference backends: one loader for checkpoints (.pt), ONNX files (run by onnxruntime) and TorchScript
files, all giving an object that behaves like the eval-mode Model for detect.py, val.py and slicing:
attributes stride (tensor), names, cat_ids, nc, device, and ``model(x)`` -> (B, N, 5 + nc) decoded boxes
for a float (B, 3, H, W) RGB batch in [0, 1]. NMS, box scaling and slicing then run unchanged.
"""
from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from utils.augment.transforms import PAD_VALUE
from utils.checkpoints.checkpoint import CheckpointError
from utils.checkpoints.checkpoint import load_model as load_checkpoint_model
from utils.inference.export_meta import TS_EXTRA_FILE, ExportMetadataError, check_metadata, from_string_pairs
from utils.logger import LOG

ONNX_SUFFIXES = (".onnx",)
# a fixed-shape graph's input is padded to its declared size: the declared size is the file's word, so bounded
# (4 GiB of float32; a batch of 64 at 1536 px needs 0.45e9 values)
MAX_FIXED_INPUT = 2 ** 30
TS_SUFFIXES = (".torchscript",)


def _unreadable(path: Path, fmt: str, e: Exception) -> CheckpointError:
    """The one-line error for a file the runtime cannot load: its type and first message line."""
    first = str(e).strip().splitlines()[0] if str(e).strip() else ""
    return CheckpointError(f"{path}: not a readable {fmt} model ({type(e).__name__}: {first})")


class ExportedModel:
    """Common part of the exported backends: the metadata as Model-like attributes."""

    training = False  # val.py reads it; an exported graph is always in eval mode

    def __init__(self, path: Path, meta: dict[str, Any], device: torch.device):
        self.path, self.meta, self.device = path, meta, device
        self.names, self.cat_ids, self.nc = list(meta["names"]), list(meta["cat_ids"]), int(meta["nc"])
        self.stride = torch.tensor(meta["stride"], dtype=torch.float32)
        self.imgsz = tuple(meta["imgsz"])

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.path}, nc={self.nc}, imgsz={self.imgsz}, dynamic={self.meta['dynamic']})"


class OnnxModel(ExportedModel):
    """An .onnx export run by onnxruntime on the CPU (same thread count as torch). A fixed-shape export
    takes smaller inputs padded at the bottom / right (the origin stays, so boxes need no offset) and
    any batch size, split and padded to the exported one."""

    def __init__(self, path: Path, device: torch.device):
        try:
            import onnxruntime as ort
        except ImportError:
            raise CheckpointError(f"{path}: running .onnx weights needs onnxruntime (pip install onnxruntime)") \
                from None
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = torch.get_num_threads()
        opts.log_severity_level = 3  # errors only: the CPU provider's notes on fp16 are not for the user
        # no busy-waiting between runs: NMS, pre-processing and other torch work follow on the same cores
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        providers = ["CPUExecutionProvider"]
        if device.type == "cuda":  # needs the onnxruntime-gpu build; inputs and outputs still pass through the CPU
            if "CUDAExecutionProvider" in ort.get_available_providers():
                providers.insert(0, "CUDAExecutionProvider")
            else:
                LOG.warning(f"WARNING {path}: this onnxruntime has no CUDA provider; running on the CPU")
        try:
            sess = ort.InferenceSession(str(path), opts, providers=providers)
        except Exception as e:  # onnxruntime raises its own types for bad / truncated files
            raise _unreadable(path, "ONNX", e) from None
        meta = from_string_pairs(sess.get_modelmeta().custom_metadata_map, str(path))
        super().__init__(path, meta, torch.device("cpu"))  # outputs come back on the CPU
        inp = sess.get_inputs()[0]
        self.session, self.input_name = sess, inp.name
        self.input_dtype = torch.float16 if "float16" in inp.type else torch.float32
        # fixed sizes of (batch, height, width); None where the export is dynamic (a name, not an int)
        self.fixed = [d if isinstance(d, int) else None for d in (inp.shape[0], inp.shape[2], inp.shape[3])]
        values = 3
        for d in self.fixed:
            values *= d or 1
        if values > MAX_FIXED_INPUT:
            raise CheckpointError(f"{path}: declares a fixed input of {'x'.join(str(d) for d in inp.shape)} "
                                  f"({values / 1e9:,.1f}G values) that every batch would be padded to; refused")

    def _fit(self, x: torch.Tensor) -> torch.Tensor:
        _, fh, fw = self.fixed
        h, w = x.shape[2:]
        if (fh and h > fh) or (fw and w > fw):
            raise ValueError(f"{self.path}: exported for a fixed {fh}x{fw} input but got {h}x{w}; re-export with "
                             f"--dynamic or a larger --imgsz, or run with a smaller --imgsz / --slice")
        ph, pw = (fh - h if fh else 0), (fw - w if fw else 0)
        return F.pad(x, (0, pw, 0, ph), value=PAD_VALUE / 255) if ph or pw else x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self._fit(x.detach().to("cpu", self.input_dtype))
        fb = self.fixed[0]
        if not fb or fb == len(x):
            return self._run(x)
        outs = []
        for i in range(0, len(x), fb):  # chunks of the exported batch; the last one padded with blank images
            chunk = x[i:i + fb]
            n = len(chunk)
            if n < fb:
                chunk = torch.cat((chunk, chunk.new_full((fb - n, *chunk.shape[1:]), PAD_VALUE / 255)))
            outs.append(self._run(chunk)[:n])
        return torch.cat(outs)

    def _run(self, x: torch.Tensor) -> torch.Tensor:
        y = self.session.run(None, {self.input_name: x.contiguous().numpy()})[0]
        return torch.from_numpy(y).float()


class TorchScriptModel(ExportedModel):
    """A .torchscript export (traced graph) run by torch on the chosen device."""

    def __init__(self, path: Path, device: torch.device):
        extra = {TS_EXTRA_FILE: ""}
        try:
            with warnings.catch_warnings():  # torch >= 2.10 marks torch.jit deprecated; the format still loads
                warnings.simplefilter("ignore", FutureWarning)
                self.module = torch.jit.load(str(path), map_location=device, _extra_files=extra).eval()
        except Exception as e:  # torch raises many types for files that are not TorchScript archives
            raise _unreadable(path, "TorchScript", e) from None
        try:
            meta = json.loads(extra[TS_EXTRA_FILE] or "{}")
        except json.JSONDecodeError as e:
            raise ExportMetadataError(f"{path}: unreadable smalldet metadata ({e})") from None
        super().__init__(path, check_metadata(meta, str(path)), device)
        self.dtype = torch.float16 if meta["half"] else torch.float32

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # the profiling executor re-optimises the graph during the first calls at each new input shape (~1 s
        # each at 64 px on this CPU) and gained nothing at 640 (benchmarks/export_speed.py): plain execution
        with torch.no_grad(), torch.jit.optimized_execution(False):
            return self.module(x.to(self.device, self.dtype)).float()


def load_model(path: str | Path, device: str | torch.device = "cpu", fuse: bool = False) -> Any:
    """A ready-to-run model from weights: a .pt checkpoint gives the (optionally fused) eval-mode Model;
    .onnx and .torchscript exports give an OnnxModel / TorchScriptModel. Errors name the file."""
    path, device = Path(path), torch.device(device)
    suffix = path.suffix.lower()
    if suffix not in ONNX_SUFFIXES + TS_SUFFIXES:
        return load_checkpoint_model(path, device, fuse=fuse)
    if not path.is_file():
        raise CheckpointError(f"{path}: weights file not found")
    try:
        return OnnxModel(path, device) if suffix in ONNX_SUFFIXES else TorchScriptModel(path, device)
    except ExportMetadataError as e:
        raise CheckpointError(str(e)) from None

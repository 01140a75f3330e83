"""Label assignment and loss in dense scenes: time and peak memory against boxes per image.

    python -m benchmarks.assign_memory [--boxes 10 100 500 1000] [--grids p3-p5 p2-p5]
        [--assigners iou atss tal] [--batch 16] [--imgsz 640] [--nc 80] [--runs 2] [--cap-gb 6]
        [--device cpu] [--out benchmarks/results/assign-memory-640.json]

iou and atss run inside the anchor head's DetectionLoss (3 anchors per cell), tal inside the DFL head's
DFLLoss (one point per cell). Random raw maps stand in for a model's output and random boxes (3-150 px,
mostly small, anywhere in the image) for the targets, so this measures assignment and loss alone.
Every case runs in its own child process (one thread), so no case inherits another's memory, with its
address space capped at what it holds before the first call plus --cap-gb: a case that needs more fails
("over cap") instead of pushing a shared machine into swap or the OOM killer.

What is measured, per case:
- assign: the assigner's call as the loss makes it (the assigner is wrapped);
- loss: loss forward + backward, assignment included (the raw maps' gradients are part of the peak).
Times: median of --runs calls after one warm-up call, in a child process with the default allocator.
Peak memory: one call after a warm-up call, in another child process. On CPU it is the rise of the
process's peak resident set (VmHWM, reset through /proc/self/clear_refs just before the call) over its
resident set before the call: every page that the call's tensors, the allocator's slack and Python
objects touched at the worst moment; memory reserved but never touched does not count (tracemalloc
would not see torch's allocations at all). For that figure to be right that child tells glibc, before
it allocates anything, to serve every block of 64 KiB or more by mmap, so that each free is an munmap:
Linux updates VmHWM lazily, at unmaps, and would otherwise miss peaks made of reused heap blocks. On
CUDA it is torch.cuda.max_memory_allocated() minus memory_allocated() before the call: tensors only.
"""
from __future__ import annotations

import argparse
import ctypes
import json
import os
import platform
import re
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from benchmarks.loss_speed import FakeModel, make_targets

GRIDS = {"p3-p5": [8, 16, 32], "p2-p5": [4, 8, 16, 32]}
ROOT = Path(__file__).resolve().parents[1]
# a call this slow has no one-time cost worth a warm-up call; skipping it keeps the big cases short
WARMUP_UNDER_S = 2.0


class DFLStandIn(nn.Module):
    """A DetectDFL head (the real one: the loss decodes with it) with strides set, no backbone."""

    def __init__(self, nc: int, strides: list[int]):
        super().__init__()
        from models.head import DetectDFL

        self.detect = DetectDFL(nc, [32] * len(strides))
        self.detect.stride = torch.tensor(strides, dtype=torch.float32)
        self.yaml = {"assigner": "tal"}


def make_loss(model: nn.Module, imgsz: int) -> Callable:
    """The loss train.py would build for this model (its YAML names the assigner)."""
    from utils.config import default_hyp
    from utils.loss import build_loss

    return build_loss(model, default_hyp(), imgsz)


def _status_mb(key: str) -> float:
    text = Path("/proc/self/status").read_text()
    return int(re.search(rf"{key}:\s+(\d+)", text).group(1)) / 1024


def _malloc_gives_back() -> None:
    """glibc: mmap every block of 64 KiB or more and return freed memory (see the module docstring)."""
    libc = ctypes.CDLL("libc.so.6")
    m_trim_threshold, m_mmap_threshold = -1, -3  # mallopt parameter numbers from <malloc.h>
    libc.mallopt(m_mmap_threshold, 64 * 1024)
    libc.mallopt(m_trim_threshold, 64 * 1024)
    libc.malloc_trim(0)


@contextmanager
def peak_mb(dev: torch.device, active: bool = True) -> Iterator[dict[str, float]]:
    """Yields a dict that holds, after the block, the block's peak memory rise in MiB (see module doc)."""
    out: dict[str, float] = {"mb": float("nan")}
    if not active:
        yield out
    elif dev.type == "cuda":
        torch.cuda.synchronize(dev)
        torch.cuda.reset_peak_memory_stats(dev)
        base = torch.cuda.memory_allocated(dev)
        yield out
        torch.cuda.synchronize(dev)
        out["mb"] = (torch.cuda.max_memory_allocated(dev) - base) / 2 ** 20
    else:
        Path("/proc/self/clear_refs").write_text("5")  # VmHWM := VmRSS
        base = _status_mb("VmRSS")
        yield out
        out["mb"] = _status_mb("VmHWM") - base


def _calls(fn: Callable[[], float], runs: int) -> list[float]:
    """One warm-up call (unless the first call is already slow), then ``runs`` calls: their results."""
    t0 = time.perf_counter()
    first = fn()
    if time.perf_counter() - t0 >= WARMUP_UNDER_S:
        return [first] + [fn() for _ in range(runs - 1)]
    return [fn() for _ in range(runs)]


def run_case(case: dict[str, Any]) -> dict[str, Any]:
    """One (grid, assigner, boxes) case in this process, ``case["mode"]`` 'time' or 'memory'."""
    memory = case["mode"] == "memory"
    dev = torch.device(case["device"])
    if memory and dev.type == "cpu":
        _malloc_gives_back()
    torch.set_num_threads(case["threads"])
    strides, b, imgsz, nc = GRIDS[case["grid"]], case["batch"], case["imgsz"], case["nc"]
    gen = torch.Generator().manual_seed(0)
    if case["assigner"] == "tal":
        model = DFLStandIn(nc, strides)
        shape = lambda s: (b, 1, imgsz // s, imgsz // s, model.detect.n_raw)  # noqa: E731
    else:
        model = FakeModel(nc, strides)
        model.yaml = {"assigner": case["assigner"]}
        shape = lambda s: (b, 3, imgsz // s, imgsz // s, nc + 5)  # noqa: E731
    preds = [torch.randn(*shape(s), generator=gen).to(dev).requires_grad_(True) for s in strides]
    targets = make_targets(b, imgsz, case["boxes"], nc, gen).to(dev)
    loss = make_loss(model.to(dev), imgsz)
    # cap the address space: what this process maps now plus the budget
    cap = int(_status_mb("VmSize") * 2 ** 20 + case["cap_gb"] * 2 ** 30)
    if dev.type == "cpu":
        resource.setrlimit(resource.RLIMIT_AS, (cap, cap))

    inner, seen = loss.assigner, {}

    def measure(fn: Callable[[], Any]) -> tuple[float, Any]:
        """fn's peak MiB (memory mode) or seconds (time mode), and what fn returned."""
        with peak_mb(dev, memory) as pk:
            t0 = time.perf_counter()
            result = fn()
            if dev.type == "cuda":
                torch.cuda.synchronize(dev)
            dt = time.perf_counter() - t0
        return (pk["mb"] if memory else dt), result

    def wrapped(*args: Any, **kwargs: Any) -> Any:
        seen["value"], seen["result"] = measure(lambda: inner(*args, **kwargs))
        return seen["result"]

    def assign_call() -> float:
        with torch.no_grad():  # only the assigner's own call is measured in this pass
            loss(preds, targets)
        return seen["value"]

    def loss_call() -> float:
        for p in preds:
            p.grad = None
        return measure(lambda: loss(preds, targets)[0].backward())[0]

    out = _public(case)
    try:
        loss.assigner = wrapped
        assign = _calls(assign_call, 1 if memory else case["runs"])
        loss.assigner = inner
        total = _calls(loss_call, 1 if memory else case["runs"])
    except (RuntimeError, MemoryError) as e:  # a refused allocation: the case needs more than the cap
        if "alloc" not in str(e) and "memory" not in str(e) and not isinstance(e, MemoryError):
            raise
        return {**out, "error": f"over cap ({case['cap_gb']:g} GB)"}
    if memory:
        return {**out, "assign_peak_mb": round(max(assign), 1), "loss_peak_mb": round(max(total), 1)}
    return {**out, "cells": sum((imgsz // s) ** 2 for s in strides),
            "positives_per_image": round(int(seen["result"].fg.sum()) / b, 1),
            "assign_ms": round(statistics.median(assign) * 1e3, 1),
            "loss_ms": round(statistics.median(total) * 1e3, 1)}


def _public(case: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in case.items() if k != "mode"}


def _child(case: dict[str, Any], timeout: float) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "benchmarks.assign_memory", "--child", json.dumps(case)]
    env = {**os.environ, "OMP_NUM_THREADS": str(case["threads"])}
    try:
        res = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {**_public(case), "error": f"timeout ({timeout:.0f} s)"}
    if res.returncode != 0:  # killed (e.g. by the OOM killer) or a real error: say so, keep going
        tail = (res.stderr.strip().splitlines() or ["?"])[-1]
        return {**_public(case), "error": f"exit {res.returncode}: {tail}"}
    return json.loads(res.stdout.strip().splitlines()[-1])


def _row(r: dict[str, Any]) -> str:
    if "error" in r:
        return f"| {r['grid']} | {r['assigner']} | {r['boxes']} | {r['error']} | | | |"
    return (f"| {r['grid']} | {r['assigner']} | {r['boxes']} | {r['assign_ms']:.0f} | {r['assign_peak_mb']:.0f} "
            f"| {r['loss_ms']:.0f} | {r['loss_peak_mb']:.0f} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--boxes", type=int, nargs="+", default=[10, 100, 500, 1000], help="boxes per image")
    ap.add_argument("--grids", nargs="+", default=list(GRIDS), choices=list(GRIDS))
    ap.add_argument("--assigners", nargs="+", default=["iou", "atss", "tal"])
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--imgsz", type=int, default=640)
    ap.add_argument("--nc", type=int, default=80)
    ap.add_argument("--runs", type=int, default=2, help="measured calls per case (after one warm-up)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--cap-gb", type=float, default=6.0, help="memory a case may use beyond its inputs")
    ap.add_argument("--timeout", type=float, default=900.0, help="seconds per case")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--out", default="benchmarks/results/assign-memory-640.json")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        print(json.dumps(run_case(json.loads(a.child))))
        return
    base = dict(batch=a.batch, imgsz=a.imgsz, nc=a.nc, runs=a.runs, threads=a.threads, cap_gb=a.cap_gb,
                device=a.device)
    rows = []
    print("| grid | assigner | boxes/img | assign ms | assign peak MB | loss+backward ms | loss peak MB |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for grid in a.grids:
        for name in a.assigners:
            for n in a.boxes:
                case = {**base, "grid": grid, "assigner": name, "boxes": n}
                timing = _child({**case, "mode": "time"}, a.timeout)
                mem = _child({**case, "mode": "memory"}, a.timeout) if "error" not in timing else {}
                rows.append({**timing, **mem})
                print(_row(rows[-1]), flush=True)
    report = {"what": "label assignment and loss (forward + backward) per batch: median ms, peak MB "
                      "(CPU: rise of peak resident set; CUDA: max_memory_allocated rise)",
              "command": "python -m benchmarks.assign_memory " + " ".join(sys.argv[1:]),
              **base, "torch": torch.__version__, "cpu": platform.processor() or platform.machine(),
              "cpu_count": os.cpu_count(), "loadavg": os.getloadavg(), "cases": rows}
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()

"""Batch-1 latency of the deployment formats side by side, in one run: our model as .pt (fused, channels-last,
torch.inference_mode), as TorchScript and as ONNX on onnxruntime, and the Ultralytics yolov5nu ONNX export on
the same onnxruntime as the peer.

    python -m benchmarks.export_speed --peer-onnx /tmp/peer-onnx/yolov5nu.onnx          # yolov5n, nc 80, 640
    python -m benchmarks.export_speed --weights best.pt --runs 30 --threads 2 --out results/x.json

Network forward only: a 1x3xSxS float input already in memory -> the (1, N, 5 + nc) output (the peer: its
(1, 4 + nc, N) output). Repetitions are interleaved (one call of each model per round, so load from other jobs
on a shared machine hits all of them alike) and summarised by the median; torch and onnxruntime use the same
thread count. Without --weights an untrained model of --cfg is built (speed does not depend on the weights).
Both ONNX files are run by the same bare onnxruntime session code. Prints a table and writes JSON; nothing is
asserted.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch

import export
from models.yolo import Model
from utils.inference.backends import load_model
from utils.checkpoints.checkpoint import checkpoint_yaml, save_checkpoint

ROOT = Path(__file__).resolve().parents[1]


def ort_session(path: str | Path, threads: int):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    # idle onnxruntime threads would otherwise spin for a while after each run and take the cores from the
    # torch runs that follow in the same process (the same setting as utils/inference/backends.py)
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def ort_runner(path: str | Path, threads: int, imgsz: int) -> Callable[[], None]:
    sess = ort_session(path, threads)
    inp = sess.get_inputs()[0]
    x = np.random.default_rng(0).random((1, 3, imgsz, imgsz), dtype=np.float32)
    if "float16" in inp.type:
        x = x.astype(np.float16)
    return lambda: sess.run(None, {inp.name: x})


def make_weights(cfg: str, nc: int, folder: Path) -> Path:
    torch.manual_seed(0)
    m = Model(cfg, nc=nc)
    path = folder / f"{Path(cfg).stem}.pt"
    save_checkpoint({"model_yaml": checkpoint_yaml(m), "model": m.state_dict(), "names": m.names,
                     "cat_ids": m.cat_ids}, path)
    return path


def bench(runners: dict[str, Callable[[], None]], runs: int, warmup: int) -> dict[str, list[float]]:
    """ms per call of each runner, the runners interleaved round by round."""
    for _ in range(warmup):  # TorchScript's profiling executor optimises during its first calls
        for fn in runners.values():
            fn()
    times: dict[str, list[float]] = {k: [] for k in runners}
    for _ in range(runs):
        for k, fn in runners.items():
            t0 = time.perf_counter()
            fn()
            times[k].append(1e3 * (time.perf_counter() - t0))
    return times


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weights", default="", help="our checkpoint .pt (default: an untrained --cfg model)")
    ap.add_argument("--cfg", default="yolov5n.yaml")
    ap.add_argument("--nc", type=int, default=80, help="classes of the untrained model (the peer has 80)")
    ap.add_argument("--imgsz", type=int, default=640)
    ap.add_argument("--peer-onnx", default="/tmp/peer-onnx/yolov5nu.onnx",
                    help="Ultralytics-exported ONNX (see docs/export.md); skipped if absent")
    ap.add_argument("--runs", type=int, default=30, help="timed rounds")
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--threads", type=int, default=0, help="CPU threads for torch and onnxruntime (0: all cores)")
    ap.add_argument("--simplify", action="store_true", help="export our ONNX with --simplify")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "export-speed-640.json"))
    opt = ap.parse_args(argv)
    threads = opt.threads or os.cpu_count() or 1
    torch.set_num_threads(threads)

    tmp = tempfile.TemporaryDirectory(prefix="export_speed_")
    src = Path(opt.weights) if opt.weights else make_weights(opt.cfg, opt.nc, Path(tmp.name))
    if opt.weights:  # export next to a copy: never overwrite the user's exports
        src = Path(tmp.name) / src.name
        src.write_bytes(Path(opt.weights).read_bytes())
    files = export.run(src, include=("onnx", "torchscript"), imgsz=opt.imgsz, simplify=opt.simplify)

    pt = load_model(src, "cpu", fuse=True).to(memory_format=torch.channels_last)
    x = torch.rand(1, 3, opt.imgsz, opt.imgsz).contiguous(memory_format=torch.channels_last)
    ts = load_model(files["torchscript"], "cpu")
    xt = torch.rand(1, 3, opt.imgsz, opt.imgsz)

    def run_pt() -> None:
        with torch.inference_mode():
            pt(x)

    def run_ts() -> None:
        with torch.inference_mode():
            ts(xt)  # as detect.py runs it (utils/inference/backends.py)

    runners = {"pt": run_pt, "torchscript": run_ts, "onnx": ort_runner(files["onnx"], threads, opt.imgsz)}
    peer = Path(opt.peer_onnx)
    if peer.is_file():
        runners["peer_onnx"] = ort_runner(peer, threads, opt.imgsz)
    else:
        print(f"peer ONNX {peer} not found: peer column skipped")
    load0 = os.getloadavg()
    times = bench(runners, opt.runs, opt.warmup)
    med = {k: statistics.median(v) for k, v in times.items()}
    import onnxruntime

    res = {"what": "batch-1 forward latency, ms (median of interleaved rounds)",
           "command": "python -m benchmarks.export_speed " + " ".join(sys.argv[1:] if argv is None else argv),
           "imgsz": opt.imgsz,
           "threads": threads, "runs": opt.runs, "warmup": opt.warmup, "model": opt.weights or f"{opt.cfg} nc={opt.nc} "
           "(untrained)", "peer": str(peer) if peer.is_file() else None, "simplify": opt.simplify,
           "torch": torch.__version__, "onnxruntime": onnxruntime.__version__, "cpu": platform.processor() or
           platform.machine(), "cpu_count": os.cpu_count(), "loadavg_before": [round(v, 2) for v in load0],
           "loadavg_after": [round(v, 2) for v in os.getloadavg()],
           "median_ms": {k: round(v, 2) for k, v in med.items()},
           "mean_ms": {k: round(statistics.fmean(v), 2) for k, v in times.items()},
           "min_ms": {k: round(min(v), 2) for k, v in times.items()},
           "ratio": {"onnx_over_pt": round(med["onnx"] / med["pt"], 3),
                     "torchscript_over_pt": round(med["torchscript"] / med["pt"], 3)}}
    if "peer_onnx" in med:
        res["ratio"]["onnx_over_peer_onnx"] = round(med["onnx"] / med["peer_onnx"], 3)
    print(f"torch {torch.__version__}, onnxruntime {onnxruntime.__version__}, {threads} threads, imgsz {opt.imgsz}, "
          f"batch 1, {opt.runs} interleaved rounds after {opt.warmup}; load average {load0[0]:.1f}")
    print(f"{'format':<14}{'median':>9}{'mean':>9}{'min':>9}  ms")
    for k in times:
        print(f"{k:<14}{med[k]:>9.1f}{res['mean_ms'][k]:>9.1f}{res['min_ms'][k]:>9.1f}")
    print("ratios: " + ", ".join(f"{k} {v}" for k, v in res["ratio"].items()))
    if opt.out:
        Path(opt.out).parent.mkdir(parents=True, exist_ok=True)
        Path(opt.out).write_text(json.dumps(res, indent=1) + "\n")
        print(f"written {opt.out}")
    tmp.cleanup()
    return res


if __name__ == "__main__":
    main()

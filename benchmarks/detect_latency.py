"""Inference latency per image, batch 1, the way detect.py runs: fused model (BatchNorm folded),
channels-last memory, torch.inference_mode. Two figures per model:

  forward     the network alone on a 1x3xSxS tensor already on the device
  end-to-end  a BGR uint8 SxS image -> letterbox, to tensor, forward, NMS (utils.inference.predict.predict_image)

    python -m benchmarks.detect_latency                                  # n, n-p2, n-spd at 640; CPU (+ CUDA)
    python -m benchmarks.detect_latency --cfgs yolov5s.yaml --runs 50 --device cpu --threads 4
    python -m benchmarks.detect_latency --cfgs yolov5n-dfl.yaml --reg-max 4 --nc 4 --threads 1

Random-init weights (--nc, default 80): speed does not depend on the weights, except NMS, which sees few boxes
from an untrained model, so end-to-end here is a lower bound for busy scenes. Mean and median over
--runs after --warmup runs; numbers are printed, never asserted (shared machines are noisy).
"""
from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from models.yolo import Model
from utils.inference.predict import predict_image

ROOT = Path(__file__).resolve().parents[1]

CFGS = ("yolov5n.yaml", "yolov5n-p2.yaml", "yolov5n-spd.yaml")


def _time(fn, device: torch.device, runs: int, warmup: int) -> list[float]:
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(runs):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        out.append(1e3 * (time.perf_counter() - t0))
    return out


def bench(cfg: str, device: torch.device, imgsz: int, runs: int, warmup: int, channels_last: bool = True,
          half: bool = False, nc: int = 80, reg_max: int | None = None) -> dict[str, float]:
    """ms per image for one model config on one device: forward and end-to-end, mean and median."""
    torch.manual_seed(0)
    model = Model(cfg, nc=nc, reg_max=reg_max).fuse().eval().to(device)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(memory_format=fmt)
    x = torch.rand(1, 3, imgsz, imgsz, device=device).contiguous(memory_format=fmt)
    img = np.random.default_rng(0).integers(0, 255, (imgsz, imgsz, 3), dtype=np.uint8)
    amp = half and device.type == "cuda"

    def forward() -> None:
        with torch.autocast("cuda", torch.float16, enabled=amp):
            model(x)

    def end_to_end() -> None:
        predict_image(model, img, imgsz, conf_thres=0.25, iou_thres=0.45, half=amp)

    with torch.inference_mode():
        fw = _time(forward, device, runs, warmup)
        e2e = _time(end_to_end, device, runs, warmup)
    return {"fw_mean": statistics.fmean(fw), "fw_median": statistics.median(fw),
            "e2e_mean": statistics.fmean(e2e), "e2e_median": statistics.median(e2e)}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cfgs", nargs="+", default=list(CFGS))
    ap.add_argument("--imgsz", type=int, default=640)
    ap.add_argument("--runs", type=int, default=30, help="timed runs per figure")
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--device", nargs="+", default=None, help="cpu and/or cuda:0 (default: cpu, plus cuda if any)")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    ap.add_argument("--no-channels-last", action="store_true")
    ap.add_argument("--half", action="store_true", help="fp16 autocast on CUDA")
    ap.add_argument("--nc", type=int, default=80, help="classes (the head's width)")
    ap.add_argument("--reg-max", type=int, default=None, help="DFL bins per side (train.py --reg-max)")
    opt = ap.parse_args(argv)
    if opt.threads:
        torch.set_num_threads(opt.threads)
    devices = opt.device or (["cpu"] + (["cuda:0"] if torch.cuda.is_available() else []))
    print(f"torch {torch.__version__}, CPU threads {torch.get_num_threads()}, imgsz {opt.imgsz}, batch 1, fused, "
          f"{'contiguous' if opt.no_channels_last else 'channels-last'}, {opt.runs} runs after {opt.warmup} warm-up")
    print(f"{'model':<20}{'device':<10}{'forward mean':>14}{'median':>10}{'end-to-end mean':>18}{'median':>10}  ms/img")
    for dev in devices:
        device = torch.device(dev)
        name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
        for cfg in opt.cfgs:
            r = bench(cfg, device, opt.imgsz, opt.runs, opt.warmup, not opt.no_channels_last, opt.half, opt.nc,
                      opt.reg_max)
            print(f"{Path(cfg).stem:<20}{name[:9]:<10}{r['fw_mean']:>14.1f}{r['fw_median']:>10.1f}"
                  f"{r['e2e_mean']:>18.1f}{r['e2e_median']:>10.1f}", flush=True)


if __name__ == "__main__":
    main()

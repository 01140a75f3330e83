"""HSV gains on the training device: the same pixels as the loader's OpenCV path, and what they cost there.

    python -m benchmarks.gpu_hsv_check [--device 0] [--batch 64] [--imgsz 640] [--repeats 20] [--out FILE]

Colour test images (smooth noise) get random gains as the loader draws them; their OpenCV result
(utils/augment/finish.hsv_to_rgb) is compared with utils/augment/hsv_device.apply_hsv_tables on the
device, pixel by pixel. Then the device time of one batch (median of --repeats, synchronised) against
the loader's CPU time for the same images (one thread). benchmarks/gpu_suite.sh runs it first; on a
CPU-only machine it runs on the CPU (a check of the script, not a measurement).
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from utils.augment.finish import draw_hsv_tables, hsv_to_rgb
from utils.augment.hsv_device import apply_hsv_tables

GAINS = (0.015, 0.7, 0.4)  # configs/hyps/default.yaml


def images(n: int, size: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [cv2.GaussianBlur(rng.integers(0, 256, (size, size, 3), dtype=np.uint8), (7, 7), 0) for _ in range(n)]


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="0", help="cuda index, or cpu")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--imgsz", type=int, default=640)
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--out", default="")
    opt = p.parse_args(argv)
    cv2.setNumThreads(0)
    torch.set_num_threads(1)
    dev = torch.device("cpu" if opt.device == "cpu" or not torch.cuda.is_available() else f"cuda:{opt.device}")
    imgs = images(opt.batch, opt.imgsz)
    t0 = time.process_time()
    ref = [hsv_to_rgb(im, np.random.default_rng(k), *GAINS) for k, im in enumerate(imgs)]
    cpu_s = time.process_time() - t0
    tables = torch.from_numpy(np.stack([draw_hsv_tables(np.random.default_rng(k), *GAINS) for k in range(len(imgs))]))
    rgb = torch.from_numpy(np.stack([cv2.cvtColor(im, cv2.COLOR_BGR2RGB) for im in imgs])).permute(0, 3, 1, 2)
    rgb, tables = rgb.to(dev), tables.to(dev)
    out = apply_hsv_tables(rgb, tables).permute(0, 2, 3, 1).cpu().numpy()
    diff = np.abs(out.astype(np.int16) - np.stack(ref).astype(np.int16))
    times = []
    for _ in range(opt.repeats if dev.type == "cuda" else 1):
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        t0 = time.perf_counter()
        apply_hsv_tables(rgb, tables)
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        times.append(time.perf_counter() - t0)
    result = {
        "what": "HSV gains of one training batch: OpenCV in the loader (one CPU thread) against apply_hsv_tables "
                "on the device; pixels compared with the loader's",
        "command": "python -m benchmarks.gpu_hsv_check " + " ".join(argv if argv is not None else sys.argv[1:]),
        "device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else f"cpu ({platform.machine()})",
        "torch": torch.__version__, "opencv": cv2.__version__, "batch": opt.batch, "imgsz": opt.imgsz,
        "pixels_differing": int((diff > 0).any(-1).sum()), "pixels": int(diff.shape[0] * diff.shape[1] * diff.shape[2]),
        "max_abs_diff": int(diff.max()),
        "device_batch_ms_median": round(1e3 * statistics.median(times), 3),
        "loader_cpu_batch_ms": round(1e3 * cpu_s, 1),
        "peak_device_mem_mb": round(torch.cuda.max_memory_allocated(dev) / 2**20, 1) if dev.type == "cuda" else None,
    }
    print(json.dumps(result, indent=1))
    if opt.out:
        Path(opt.out).write_text(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()

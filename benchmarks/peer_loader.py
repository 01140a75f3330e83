"""The Ultralytics package's training loader, timed on request: the peer side of loader_speed.py.

Run only with the peer venv's interpreter (the one `../shared/bench/setup_peer.sh` makes); this
project never imports the package. loader_speed.py starts it as a subprocess, so that both loaders
stay alive and their timings interleave (ours, peer, ours, peer...):

    /tmp/peer-venv/bin/python benchmarks/peer_loader.py --coco ../shared/datasets/deeppcb --workers 0

It converts the COCO set with `../shared/bench/peer.py`'s converter (symlinks plus label files in
--workdir), builds the package's train dataset and loader with its default augmentation (mosaic,
HSV, flips, scale/translate) and prints `ready`. Then each stdin line `N` times N batches and
answers one line `@loader {"images", "s", "cpu_s"}` (cpu_s: CPU seconds so far of this process
and its loader workers); an empty line or end of input stops it.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MARK = "@loader "  # starts our reply lines: the package prints its own lines too


def cpu_seconds(loader) -> float:
    """CPU time (user + system) so far of this process and the loader's worker processes."""
    it = getattr(loader, "iterator", None)
    pids = [os.getpid()] + [w.pid for w in getattr(it, "_workers", [])]
    total = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime in clock ticks
    return total / os.sysconf("SC_CLK_TCK")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--coco", required=True, type=Path)
    ap.add_argument("--split", default="train")
    ap.add_argument("--imgsz", type=int, default=640)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--workers", type=int, default=0)
    ap.add_argument("--cache", default="", choices=["", "ram", "disk"], help="the package's own image cache")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--bench-dir", type=Path, default=ROOT.parent / "shared" / "bench", help="holds peer.py")
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/peer-loader-work"))
    a = ap.parse_args()
    a.workdir.mkdir(parents=True, exist_ok=True)
    sys.path.insert(0, str(a.bench_dir))
    from peer import coco_to_yolo, go_offline  # the shared bench's converter and offline switches

    go_offline(a.workdir)
    data_yaml, _ = coco_to_yolo(a.coco.resolve(), a.workdir, 0)

    import torch
    torch.set_num_threads(1)  # one core per side; loader_speed.py sets OMP_NUM_THREADS too
    from ultralytics.cfg import get_cfg
    from ultralytics.data.build import build_dataloader, build_yolo_dataset
    from ultralytics.data.utils import check_det_dataset
    from ultralytics.utils import DEFAULT_CFG
    from ultralytics.utils.torch_utils import init_seeds

    init_seeds(a.seed)
    cfg = get_cfg(DEFAULT_CFG, {"imgsz": a.imgsz, "cache": a.cache or False, "seed": a.seed})
    data = check_det_dataset(str(data_yaml))
    ds = build_yolo_dataset(cfg, data[a.split], a.batch, data, mode="train")
    loader = build_dataloader(ds, a.batch, a.workers, shuffle=True, device="cpu")
    it = iter(loader)
    next(it)  # warm-up: worker start, first decodes
    print(MARK + json.dumps({"ready": True, "workers": loader.num_workers, "images": len(ds),
                             "augment": str(ds.transforms), "cpu_s": cpu_seconds(loader)}), flush=True)
    for line in sys.stdin:
        if not line.strip():
            break
        n_img, t0 = 0, time.perf_counter()
        for _ in range(int(line)):
            try:
                n_img += len(next(it)["img"])
            except StopIteration:  # the end of an epoch (the package's iterator yields one)
                it = iter(loader)
                n_img += len(next(it)["img"])
        print(MARK + json.dumps({"images": n_img, "s": time.perf_counter() - t0, "cpu_s": cpu_seconds(loader)}),
              flush=True)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    sys.exit(main())

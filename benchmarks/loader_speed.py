"""Training loader throughput: images/s with mosaic (and the rest of the default augmentation).

    python -m benchmarks.loader_speed [--data data/deeppcb.yaml] [--imgsz 640] [--batch-size 16]
                                      [--batches 30] [--workers 0 2] [--hyp configs/hyps/default.yaml] [--cache]

Times `--batches` batches after one warm-up batch (which pays for starting the workers) and
prints one row per worker count. Numbers depend on the CPU and on what else runs on it.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import yaml

from utils.data.dataset import create_dataloader, load_data_config

ROOT = Path(__file__).resolve().parents[1]


def time_loader(split: dict, hyp: dict, imgsz: int, batch_size: int, workers: int, batches: int,
                cache: bool) -> dict[str, float]:
    t0 = time.perf_counter()
    loader, ds = create_dataloader(split, imgsz, batch_size, hyp=hyp, augment=True, cache=cache, workers=workers,
                                   shuffle=True, seed=0)
    setup = time.perf_counter() - t0
    it = iter(loader)
    t0 = time.perf_counter()
    next(it)  # warm-up: worker start, first decodes
    first = time.perf_counter() - t0
    n_img, t0 = 0, time.perf_counter()
    for _ in range(batches):
        try:
            imgs, *_ = next(it)
        except StopIteration:  # a small data set: start another epoch
            it = iter(loader)
            imgs, *_ = next(it)
        n_img += len(imgs)
    dt = time.perf_counter() - t0
    del it, loader  # stops persistent workers before the next configuration starts its own
    return {"workers": workers, "images/s": n_img / dt, "ms/batch": 1000 * dt / batches, "first batch s": first,
            "setup s": setup}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="data/deeppcb.yaml")
    p.add_argument("--split", default="train")
    p.add_argument("--imgsz", type=int, default=640)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--batches", type=int, default=30, help="timed batches per configuration")
    p.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    p.add_argument("--hyp", default=str(ROOT / "configs" / "hyps" / "default.yaml"))
    p.add_argument("--mosaic", type=float, default=1.0, help="overrides the hyp's mosaic probability")
    p.add_argument("--cache", action="store_true", help="decode every image into RAM first")
    opt = p.parse_args(argv)
    data = load_data_config(opt.data)
    hyp = {**yaml.safe_load(Path(opt.hyp).read_text()), "mosaic": opt.mosaic}
    print(f"{data['yaml_file']} {opt.split}: imgsz {opt.imgsz}, batch {opt.batch_size}, mosaic {hyp['mosaic']}, "
          f"{opt.batches} timed batches{', RAM cache' if opt.cache else ''}")
    rows = [time_loader(data[opt.split], hyp, opt.imgsz, opt.batch_size, w, opt.batches, opt.cache)
            for w in opt.workers]
    cols = list(rows[0])
    print("| " + " | ".join(cols) + " |")
    print("|" + "---|" * len(cols))
    for r in rows:
        print("| " + " | ".join(f"{r[c]:.1f}" if isinstance(r[c], float) else str(r[c]) for c in cols) + " |")


if __name__ == "__main__":
    main()

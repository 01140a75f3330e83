"""Where a training step's time goes: preprocess, forward, loss, backward, optimizer step, in ms per batch.

    python -m benchmarks.train_step --data data/deeppcb.yaml --cfg yolov5n-p2-dfl.yaml --reg-max 4 \\
        --hyp configs/hyps/small-objects-dfl.yaml --imgsz 320 --batch 16 --threads 1

The step is train.py's (its model, loss, optimizer and hyps, built by utils.engine.build), on real mosaic
batches fetched up front so that loading is left out. "step" is the optimizer step with gradient clipping and
EMA, taken after every batch here as benchmarks.speed times it (train.py takes one per ~64 images once warm-up
has ramped the accumulation up). Each part is the median over --batches batches after one untimed pass over
them. Printed, never asserted: compare figures taken in one run on a quiet machine.
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import torch

PARTS = ("preprocess", "forward", "loss", "backward", "step")


def step_breakdown(data: str, cfg: str, imgsz: int, batch: int, batches: int, reg_max: int | None = None,
                   hyp: str | None = None, hyp_set: list[str] | None = None) -> dict[str, float]:
    """Median ms per part of the CPU training step (fp32), over ``batches`` prefetched batches."""
    from benchmarks.speed import build_trainer
    from utils.engine.optim import apply_lr

    times: dict[str, list[float]] = {p: [] for p in PARTS}
    with tempfile.TemporaryDirectory(prefix="step-") as project:
        trainer = build_trainer(data, cfg, imgsz, batch, 0, project, amp=False, reg_max=reg_max, hyp=hyp,
                                hyp_set=hyp_set)
        it = iter(trainer.train_loader)
        held = [next(it) for _ in range(batches)]
        for timed in (False, True):
            for i, (imgs, targets, _, metas) in enumerate(held):
                apply_lr(trainer.optimizer, trainer.hyp, trainer.lf, 0, i, trainer.nw, trainer.nb, trainer.sgd)
                t = [time.perf_counter()]
                x = trainer.preprocess(trainer.device_augment(imgs, metas))  # as the training loop does
                t.append(time.perf_counter())
                preds = trainer.model(x)
                t.append(time.perf_counter())
                loss, _ = trainer.loss_fn(preds, targets)
                t.append(time.perf_counter())
                loss.backward()
                t.append(time.perf_counter())
                trainer._step()
                t.append(time.perf_counter())
                if timed:
                    for k, part in enumerate(PARTS):
                        times[part].append(1e3 * (t[k + 1] - t[k]))
    return {p: statistics.median(v) for p, v in times.items()}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="data/deeppcb.yaml")
    ap.add_argument("--cfg", default="yolov5n-p2-dfl.yaml")
    ap.add_argument("--reg-max", type=int, default=None)
    ap.add_argument("--hyp", default="configs/hyps/small-objects-dfl.yaml")
    ap.add_argument("--hyp-set", nargs="*", default=["tile=0"], metavar="KEY=VALUE")
    ap.add_argument("--imgsz", type=int, default=320)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--batches", type=int, default=8)
    ap.add_argument("--threads", type=int, default=1)
    opt = ap.parse_args(argv)
    torch.set_num_threads(opt.threads)
    ms = step_breakdown(opt.data, opt.cfg, opt.imgsz, opt.batch, opt.batches, opt.reg_max, opt.hyp, opt.hyp_set)
    total = sum(ms.values())
    print(f"{opt.cfg} (reg_max {opt.reg_max or 'from the YAML'}), batch {opt.batch} at {opt.imgsz}, "
          f"{opt.threads} thread(s): " + ", ".join(f"{p} {v:.1f}" for p, v in ms.items())
          + f" ms; {total:.0f} ms a step, {1e3 * opt.batch / total:.1f} img/s")


if __name__ == "__main__":
    main()

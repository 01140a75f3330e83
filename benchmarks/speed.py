"""Training throughput and batch-1 latency on this CPU, ours beside the Ultralytics package's.

    python -m benchmarks.speed                                # deeppcb, yolov5n, 640, batch 8, 2 threads
    python -m benchmarks.speed --peer-python /tmp/peer-venv/bin/python --threads 2
    python -m benchmarks.speed --device cuda:0 --batch 64 --peer-python none   # GPU: AMP step (--no-amp: fp32)

Ours, in this process:
  train img/s  steady-state optimizer steps (forward, loss, backward, clip, SGD, EMA) on mosaic
               batches from the real loader; the median over --batches batches after --warmup
  latency      ms per image, batch 1: read the file, letterbox, forward, NMS at conf 0.001 / IoU 0.6
               (the settings peer.py predicts with), fused model, channels-last, inference mode
On CUDA the step runs as train.py runs it there (autocast fp16 and the gradient scaler unless --no-amp),
the clock waits for the GPU (torch.cuda.synchronize) at both ends of each timed step, and latency runs
fp16 under autocast with --half.

The peer, when --peer-python exists (bash ../shared/bench/setup_peer.sh makes it): peer.py trains
--peer-epochs epochs on the first --peer-images train images (its steady-state figure skips epoch 1)
and times batch-1 predict() on val images. Both sides get the same torch thread count. Numbers are
printed (and written to --out as JSON), never asserted: shared machines are noisy, so compare
figures taken in one run.
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import torch

if TYPE_CHECKING:
    from utils.engine.trainer import Trainer

ROOT = Path(__file__).resolve().parents[1]

PEER = ROOT.parent / "shared" / "bench" / "peer.py"


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def build_trainer(data: str, cfg: str, imgsz: int, batch: int, workers: int, project: str,
                  device: torch.device = torch.device("cpu"), amp: bool = True, reg_max: int | None = None,
                  hyp: str | None = None, hyp_set: list[str] | None = None) -> Trainer:
    """train.py's Trainer for one epoch of ``data``, its run folder under ``project``, in train mode."""
    from utils.config import repo_path, resolve
    from utils.data.config import load_data_config
    from utils.engine.build import build_run

    loaded = load_data_config(repo_path(data))
    opt = resolve({"data": data, "cfg": cfg, "imgsz": imgsz, "batch_size": batch, "epochs": 1, "workers": workers,
                   "noplots": True, "noautoanchor": True, "project": project, "name": "train", "no_amp": not amp,
                   "reg_max": reg_max, "hyp": hyp, "hyp_set": hyp_set}, loaded)
    trainer, _ = build_run(opt, loaded, device, -1, 1, None)
    trainer.model.train()
    return trainer


def our_train_speed(data: str, cfg: str, imgsz: int, batch: int, batches: int, warmup: int,
                    workers: int, device: torch.device = torch.device("cpu"), amp: bool = True,
                    reg_max: int | None = None) -> float:
    """Images/s of the training step as train.py runs it, median over timed batches."""
    from utils.engine.optim import apply_lr

    times: list[float] = []
    with tempfile.TemporaryDirectory(prefix="speed-") as project:  # the run folder build_run writes
        trainer = build_trainer(data, cfg, imgsz, batch, workers, project, device, amp, reg_max)
        it = iter(trainer.train_loader)
        for i in range(warmup + batches):
            try:
                imgs, targets, _, metas = next(it)
            except StopIteration:
                it = iter(trainer.train_loader)
                imgs, targets, _, metas = next(it)
            _sync(device)
            t0 = time.perf_counter()
            apply_lr(trainer.optimizer, trainer.hyp, trainer.lf, 0, i, trainer.nw, trainer.nb, trainer.sgd)
            with torch.autocast("cuda", enabled=trainer.amp):
                x = trainer.preprocess(trainer.device_augment(imgs, metas))  # as the training loop does
                loss, _ = trainer.loss_fn(trainer.model(x), targets.to(device))
            trainer.scaler.scale(loss).backward()
            trainer._step()
            _sync(device)
            if i >= warmup:
                times.append(time.perf_counter() - t0)
        del it  # stop the loader workers before their run folder goes
    # time to fetch a batch is left out above: with workers > 0 the loader runs alongside the step
    return batch / statistics.median(times)


def our_latency(cfg: str, nc: int, images: list[Path], imgsz: int, device: torch.device = torch.device("cpu"),
                half: bool = False, reg_max: int | None = None) -> float:
    """Median ms per image, batch 1, file to boxes."""
    from models.yolo import Model
    from utils.inference.predict import predict_image

    torch.manual_seed(0)
    model = Model(cfg, nc=nc, reg_max=reg_max).fuse().eval().to(device, memory_format=torch.channels_last)
    lat = []
    with torch.inference_mode():
        for k, path in enumerate(images):
            t0 = time.perf_counter()
            img = cv2.imread(str(path))
            predict_image(model, img, imgsz, conf_thres=0.001, iou_thres=0.6, max_det=300, half=half)
            if k:  # the first call pays one-off set-up
                lat.append(1e3 * (time.perf_counter() - t0))
    return statistics.median(lat)


def latency_images(data: dict, n: int) -> list[Path]:
    """The first n + 1 val images (our_latency drops the first call as warm-up)."""
    from utils.data.convert.common import list_images

    return list_images(data["val"]["images"])[:n + 1]


def peer_speed(python: str, coco: Path, imgsz: int, batch: int, threads: int, epochs: int, images: int,
               latency_images: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="peer-speed-") as work:  # its converted data set and run
        out = Path(work) / "peer.json"
        cmd = [python, str(PEER), "--coco", str(coco), "--model", "yolov5nu.yaml", "--epochs", str(epochs),
               "--imgsz", str(imgsz), "--batch", str(batch), "--threads", str(threads), "--max-train", str(images),
               "--latency-images", str(latency_images), "--workdir", work, "--out", str(out)]
        print("peer:", " ".join(cmd), flush=True)
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        return json.loads(out.read_text())


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="data/deeppcb.yaml")
    ap.add_argument("--cfg", default="yolov5n.yaml")
    ap.add_argument("--imgsz", type=int, default=640)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--threads", type=int, default=2, help="torch threads on both sides")
    ap.add_argument("--workers", type=int, default=2, help="our loader workers (the peer uses 0 on CPU)")
    ap.add_argument("--batches", type=int, default=20, help="timed training batches (ours)")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--latency-images", type=int, default=20)
    ap.add_argument("--peer-python", default="/tmp/peer-venv/bin/python")
    ap.add_argument("--peer-epochs", type=int, default=2)
    ap.add_argument("--peer-images", type=int, default=96, help="train images per peer epoch")
    ap.add_argument("--device", default="cpu", help="cpu, or a GPU as train.py takes it (0, cuda:0); the peer runs "
                                                  "only beside a CPU run")
    ap.add_argument("--no-amp", action="store_true", help="CUDA: train in fp32 (train.py --no-amp)")
    ap.add_argument("--half", action="store_true", help="CUDA: latency under fp16 autocast")
    ap.add_argument("--out", type=Path, default=None, help="also write the figures as JSON")
    opt = ap.parse_args(argv)
    from utils.torch_utils import select_device
    device = select_device(opt.device)
    if opt.half and device.type != "cuda":
        ap.error("--half: fp16 autocast runs on CUDA only")
    torch.set_num_threads(opt.threads)

    from utils.data.dataset import load_data_config
    from utils.config import repo_path
    data = load_data_config(repo_path(opt.data))
    coco_root = Path(data["val"]["images"]).parent.parent

    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"torch {torch.__version__}, {gpu}, {opt.threads} threads, {opt.cfg} on {opt.data}, imgsz {opt.imgsz}, "
          f"batch {opt.batch}, amp {device.type == 'cuda' and not opt.no_amp}", flush=True)
    ours = {"device": gpu, "amp": device.type == "cuda" and not opt.no_amp, "half_latency": opt.half,
            "batch": opt.batch, "imgsz": opt.imgsz,
            "train_img_per_s": our_train_speed(opt.data, opt.cfg, opt.imgsz, opt.batch, opt.batches, opt.warmup,
                                               opt.workers, device, not opt.no_amp)}
    ours["latency_ms_median"] = our_latency(opt.cfg, len(data["names"]), latency_images(data, opt.latency_images),
                                            opt.imgsz, device, opt.half)
    rows = {"ours": ours}
    if device.type != "cpu":
        print("(the peer's figures come from CPU runs: no ratio against a GPU run)")
    elif Path(opt.peer_python).exists() and PEER.exists():
        rows["peer"] = peer_speed(opt.peer_python, coco_root, opt.imgsz, opt.batch, opt.threads, opt.peer_epochs,
                                  opt.peer_images, opt.latency_images)
    else:
        print(f"(no peer venv at {opt.peer_python}: bash ../shared/bench/setup_peer.sh {opt.peer_python})")
    print(f"\n{'':<10}{'train img/s':>14}{'latency ms':>14}")
    for name, r in rows.items():
        print(f"{name:<10}{r['train_img_per_s']:>14.2f}{r['latency_ms_median']:>14.1f}")
    if "peer" in rows:
        p = rows["peer"]
        rows["ratio"] = {"train": ours["train_img_per_s"] / p["train_img_per_s"],
                         "latency": ours["latency_ms_median"] / p["latency_ms_median"]}
        print(f"{'ratio':<10}{rows['ratio']['train']:>13.2f}x{rows['ratio']['latency']:>13.2f}x"
              "   (train: ours/peer, want >= 1.3; latency: ours/peer, want <= 0.7)")
    if opt.out:
        opt.out.write_text(json.dumps(rows, indent=1))
    return rows


if __name__ == "__main__":
    main()

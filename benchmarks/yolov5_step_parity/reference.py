#!/usr/bin/env python3
"""The original ultralytics/yolov5 side of the step-parity check (run with the peer venv, offline).

    /tmp/peer-venv/bin/python benchmarks/yolov5_step_parity/reference.py --repo /tmp/yolov5 \\
        --weights ../shared/fixtures/yolov5n-shapes.pt --inputs /tmp/parity --out /tmp/parity/reference.npz

Imports the original's code from --repo at run time (its Model, ComputeLoss, smart_optimizer, ModelEMA) and
runs its train.py loop on the fixed batches of batches.npz (written by ours.py) from --weights, a checkpoint
of its own, loaded as its train.py loads --weights (a Model from the checkpoint's yaml, the checkpoint's
state dict in fp32): hyp.scratch-low with train.py's scaling of the loss gains, nbs=64 accumulation ramped over the
warmup, warmup of lr and momentum, weight-decay scaling, the per-epoch linear schedule (LambdaLR stepped at
each epoch's end), gradient clipping at 10 and the EMA. Written: per-batch loss items, whether the batch
ended in an optimizer step, each group's lr, and the initial, final and EMA weights (original names).
This file carries no YOLOv5 code: the loop below restates train.py's order of operations.
"""
import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

ap = argparse.ArgumentParser()
ap.add_argument("--repo", type=Path, required=True, help="a snapshot of ultralytics/yolov5")
ap.add_argument("--weights", type=Path, required=True, help="a checkpoint written by ultralytics/yolov5")
ap.add_argument("--inputs", type=Path, required=True, help="folder with batches.npz and settings.json")
ap.add_argument("--out", type=Path, required=True)
ap.add_argument("--double", action="store_true", help="run in float64 (separates real differences from fp32 noise)")
a = ap.parse_args()

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("YOLOV5_CONFIG_DIR", str(a.inputs / "yolo_cfg"))
sys.dont_write_bytecode = True  # leave the snapshot as it is
sys.path.insert(0, str(a.repo.resolve()))
import torch  # noqa: E402
import yaml  # noqa: E402
from models.yolo import Model  # noqa: E402  (the original's)
from utils.loss import ComputeLoss  # noqa: E402
from utils.torch_utils import ModelEMA, smart_optimizer  # noqa: E402

torch.set_num_threads(1)
s = json.loads((a.inputs / "settings.json").read_text())
batches = np.load(a.inputs / "batches.npz")
imgs_all, targets_all = batches["imgs"], batches["targets"]
ckpt = torch.load(a.weights, map_location="cpu", weights_only=False)  # its own pickle, read by its own code
nc = ckpt["model"].yaml["nc"]
model = Model(ckpt["model"].yaml, ch=3, nc=nc)
model.load_state_dict(ckpt["model"].float().state_dict(), strict=True)
model.half().float()  # as its train.py does before training (a no-op on weights read from fp16)
dtype = torch.float64 if a.double else torch.float32
model.to(dtype)
torch.set_default_dtype(dtype)  # the loss's own accumulators and constants too
initial = {f"init/{k}": v.detach().clone().numpy() for k, v in model.state_dict().items()}
hyp = yaml.safe_load((a.repo / "data" / "hyps" / "hyp.scratch-low.yaml").read_text())

batch_size, imgsz, epochs, nb = s["batch"], s["imgsz"], s["epochs_nominal"], s["batches_per_epoch"]
nbs = 64
accumulate = max(round(nbs / batch_size), 1)
hyp["weight_decay"] *= batch_size * accumulate / nbs
optimizer = smart_optimizer(model, "SGD", hyp["lr0"], hyp["momentum"], hyp["weight_decay"])


def lf(x):  # train.py's linear schedule (not --cos-lr)
    return (1 - x / epochs) * (1.0 - hyp["lrf"]) + hyp["lrf"]


scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda=lf)
ema = ModelEMA(model)
nl = model.model[-1].nl
hyp["box"] *= 3 / nl
hyp["cls"] *= nc / 80 * 3 / nl
hyp["obj"] *= (imgsz / 640) ** 2 * 3 / nl
hyp["label_smoothing"] = 0.0
model.nc, model.hyp = nc, hyp
nw = max(round(hyp["warmup_epochs"] * nb), 100)
last_opt_step = -1
compute_loss = ComputeLoss(model)
items, stepped, lrs, losses = [], [], [], []
for epoch in range(s["epochs_run"]):
    model.train()
    optimizer.zero_grad()
    for i in range(nb):
        ni = i + nb * epoch
        imgs = torch.from_numpy(imgs_all[ni]).to(dtype) / 255
        t = targets_all[targets_all[:, 0] == ni, 1:]
        targets = torch.from_numpy(np.ascontiguousarray(t)).to(dtype)
        if ni <= nw:
            xi = [0, nw]
            accumulate = max(1, np.interp(ni, xi, [1, nbs / batch_size]).round())
            for j, x in enumerate(optimizer.param_groups):
                x["lr"] = np.interp(ni, xi, [hyp["warmup_bias_lr"] if j == 0 else 0.0, x["initial_lr"] * lf(epoch)])
                if "momentum" in x:
                    x["momentum"] = np.interp(ni, xi, [hyp["warmup_momentum"], hyp["momentum"]])
        lrs.append([float(x["lr"]) for x in optimizer.param_groups])
        pred = model(imgs)
        loss, loss_items = compute_loss(pred, targets)
        loss.backward()
        losses.append(float(loss))
        items.append(loss_items.tolist())
        step = ni - last_opt_step >= accumulate
        if step:
            torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm=10.0)
            optimizer.step()
            optimizer.zero_grad()
            ema.update(model)
            last_opt_step = ni
        stepped.append(step)
        print(f"batch {ni}: loss items {[f'{v:.6f}' for v in items[-1]]} step {step}")
    scheduler.step()

out = {f"model/{k}": v.detach().numpy() for k, v in model.state_dict().items()}
out.update({f"ema/{k}": v.detach().numpy() for k, v in ema.ema.state_dict().items()})
np.savez(a.out, items=np.array(items), loss=np.array(losses), stepped=np.array(stepped), lrs=np.array(lrs),
         **initial, **out)
print(f"wrote {a.out}: {int(np.sum(stepped))} optimizer steps over {len(items)} batches")

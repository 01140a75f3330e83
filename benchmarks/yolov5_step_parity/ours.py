"""Step parity with the original YOLOv5: our side, and the comparison.

    python -m benchmarks.yolov5_step_parity.ours --inputs /tmp/parity            # 1. write the batches
    /tmp/peer-venv/bin/python benchmarks/yolov5_step_parity/reference.py --repo /tmp/yolov5 \\
        --weights ../shared/fixtures/yolov5n-shapes.pt --inputs /tmp/parity \\
        --out /tmp/parity/reference64.npz --double                                # 2. the original's run
    python -m benchmarks.yolov5_step_parity.ours --inputs /tmp/parity \\
        --reference /tmp/parity/reference64.npz --double                          # 3. ours, and the comparison

Our side is train.py's own path: the model from `--weights` (a checkpoint written by ultralytics/yolov5, read by
the converting reader) as utils/engine/build.py builds it, in channels-last, the default hyps (= hyp.scratch-low),
--assigner iou, SGD, nominal --epochs 40 (so that the warmup is the original's 100 iterations), and a Trainer
whose fit() runs on the fixed batches; the loss function is wrapped only to record each batch's loss items, and
the run is stopped (as Ctrl-C would) after the last batch. The comparison prints the loss items per batch and
the tensors whose final weights differ most (Detect's anchors, fixed, are left out: pixels here, grid units there).
"""
from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
import torch

from benchmarks.yolov5_step_parity.batches import WEIGHTS, batch_targets, digest, write_inputs

FIXED = (".anchors", ".stride")  # not trained, and kept in other units by the two codes


def run_ours(inputs: Path, settings: dict, weights: Path = WEIGHTS, double: bool = False) -> dict[str, np.ndarray]:
    """Our Trainer on the fixed batches from ``weights``: per-batch loss items, lrs, which batches stepped,
    and the initial, final and EMA weights."""
    from utils.config import resolve
    from utils.engine.build import build_model
    from utils.checkpoints.checkpoint import read_checkpoint
    from utils.engine.trainer import Trainer
    from utils.loss import build_loss

    b = np.load(inputs / "batches.npz")
    imgs_all, targets_all = b["imgs"], b["targets"]
    imgsz, nb = settings["imgsz"], settings["batches_per_epoch"]
    cfg = resolve({"weights": str(weights), "assigner": "iou", "epochs": settings["epochs_nominal"],
                   "batch_size": settings["batch"], "imgsz": imgsz, "noval": True}, {})
    names = read_checkpoint(weights)["names"]
    model = build_model(cfg, len(names), names, list(range(1, len(names) + 1)))
    model = model.to(memory_format=torch.channels_last)
    if double:
        model = model.double()
    initial = {f"init/{k}": v.detach().clone().numpy() for k, v in model.state_dict().items()}
    loader = []
    for k in range(imgs_all.shape[0]):
        t = torch.from_numpy(batch_targets(targets_all, k).copy())
        t[:, 2:] *= imgsz  # ours: pixels
        loader.append((torch.from_numpy(imgs_all[k]), t, None, None))
    loss_fn = build_loss(model, cfg.hyp_values, imgsz)
    items, lrs, steps = [], [], []

    with tempfile.TemporaryDirectory(prefix="parity-") as run_dir:
        trainer: Trainer

        def recording_loss(preds, targets):
            loss, it = loss_fn(preds, targets)
            items.append(it.tolist())
            lrs.append([g["lr"] for g in trainer.optimizer.param_groups])
            if len(items) == nb * settings["epochs_run"]:
                trainer.stop_signal = 2  # stop after this batch's step, as Ctrl-C does
            return loss, it

        cfg.save_dir = run_dir
        trainer = Trainer(model, recording_loss, loader[:nb], lambda m, final=False: {"fitness": 0.0}, cfg,
                          torch.device("cpu"))
        real_step, real_close = trainer._step, trainer._close_mosaic

        def counted_step():
            steps.append(len(items) - 1)
            real_step()

        def next_batches(epoch: int) -> None:  # epoch k runs batches k*nb .. k*nb+nb-1
            trainer.train_loader = loader[epoch * nb:(epoch + 1) * nb]
            real_close(epoch)

        trainer._step, trainer._close_mosaic = counted_step, next_batches
        if double:  # the Trainer hands the model fp32 images
            trainer.preprocess = lambda imgs: imgs.to(torch.float64) / 255
        trainer.fit()
    stepped = np.zeros(len(items), bool)
    stepped[steps] = True
    out = {"items": np.array(items), "stepped": stepped, "lrs": np.array(lrs), **initial}
    out.update({f"model/{k}": v.detach().numpy() for k, v in model.state_dict().items()})
    out.update({f"ema/{k}": v.detach().numpy() for k, v in trainer.ema.ema.state_dict().items()})
    return out


def compare(ours: dict[str, np.ndarray], ref, top: int = 12) -> dict:
    """Loss items per batch and every tensor (initial, final, EMA): largest differences first."""
    report = {"items_ours": ours["items"].tolist(), "items_ref": ref["items"].tolist(),
              "items_max_abs_diff": float(np.abs(ours["items"] - ref["items"]).max()),
              "steps_ours": int(ours["stepped"].sum()), "steps_ref": int(ref["stepped"].sum()),
              "same_steps": bool((ours["stepped"] == ref["stepped"]).all()),
              "lrs_max_abs_diff": float(np.abs(ours["lrs"] - ref["lrs"]).max())}
    names = [k for k in ref.files if k.split("/")[0] in ("init", "model", "ema") and not k.endswith(FIXED)]
    missing = [k for k in names if k not in ours]
    rows = []
    for k in names:
        if k in ours:
            a, r = ours[k].astype(np.float64), ref[k].astype(np.float64)
            d = float(np.abs(a - r).max()) if a.size else 0.0
            rows.append((d, d / (float(np.abs(r).max()) + 1e-12), k))
    rows.sort(reverse=True)
    init = [d for d, _, k in rows if k.startswith("init/")]
    report.update(missing=missing, initial_weights_max_abs_diff=max(init) if init else None,
                  weights_max_abs_diff=max(d for d, _, k in rows if not k.startswith("init/")),
                  worst=[{"tensor": k, "max_abs": d, "rel_to_max": rel} for d, rel, k in rows[:top]])
    return report


def fingerprint(out) -> dict:
    """A small pin of a run: loss items per batch, which batches stepped, and per trained tensor the norm of its
    change from the initial weights and a projection of that change on a fixed random vector (any element counts)."""
    rng = np.random.default_rng(0)
    tensors = {}
    for k in sorted(n[5:] for n in out if n.startswith("init/")):
        if out[f"init/{k}"].dtype.kind != "f" or k.endswith(FIXED):
            continue
        delta = (out[f"model/{k}"].astype(np.float64) - out[f"init/{k}"].astype(np.float64)).ravel()
        tensors[k] = [float(np.linalg.norm(delta)), float(delta @ rng.standard_normal(delta.size))]
    return {"items": np.asarray(out["items"]).tolist(), "stepped": np.asarray(out["stepped"]).tolist(),
            "delta": tensors}


def initial_digest(out) -> str:
    """The initial weights (floating tensors, fixed ones left out) as one short hash."""
    return digest(*(out[k].astype(np.float32) for k in sorted(out) if k.startswith("init/")
                    and out[k].dtype.kind == "f" and not k.endswith(FIXED)))


def fingerprint_gaps(ours: dict, ref: dict) -> dict:
    """Largest gaps between two fingerprints: loss items (absolute), and per tensor the change's norm and
    projection, relative to the norm of the reference's change."""
    items = float(np.abs(np.array(ours["items"]) - np.array(ref["items"])).max())
    rel = 0.0
    for k, (n_ref, p_ref) in ref["delta"].items():
        n, p = ours["delta"][k]
        rel = max(rel, abs(n - n_ref) / max(n_ref, 1e-12), abs(p - p_ref) / max(n_ref, 1e-12))
    return {"items_abs": items, "delta_rel": rel, "same_steps": ours["stepped"] == ref["stepped"]}


def summary(report: dict) -> dict:
    return {k: v for k, v in report.items() if k not in ("items_ours", "items_ref")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--inputs", type=Path, required=True)
    ap.add_argument("--weights", type=Path, default=WEIGHTS, help="the ultralytics/yolov5 checkpoint both start from")
    ap.add_argument("--reference", type=Path, help="the original's reference.npz: compare with it")
    ap.add_argument("--double", action="store_true", help="float64 on our side (compare with reference.py --double)")
    ap.add_argument("--noise-floor", type=Path, help="the original's run in the other precision: how far the "
                                                       "original drifts from itself, for scale")
    ap.add_argument("--fixture", type=Path, help="write the reference run's fingerprint here (for the test)")
    ap.add_argument("--out", type=Path, help="the comparison as JSON")
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    if a.reference is None:
        print(f"wrote {write_inputs(a.inputs)}; now run reference.py with the peer venv")
        return
    settings = json.loads((a.inputs / "settings.json").read_text())
    ours = run_ours(a.inputs, settings, a.weights, a.double)
    ref = np.load(a.reference)
    report = compare(ours, ref)
    for k, (o, r) in enumerate(zip(report["items_ours"], report["items_ref"])):
        print(f"batch {k:2d} ours {' '.join(f'{v:.9f}' for v in o)}  original {' '.join(f'{v:.9f}' for v in r)}"
              f"  step ours {ours['stepped'][k]} original {bool(ref['stepped'][k])}")
    report["precision"] = "float64" if a.double else "float32"
    if a.noise_floor:
        report["original_vs_itself_other_precision"] = summary(compare({k: ref[k] for k in ref.files},
                                                                       np.load(a.noise_floor), top=3))
    print(json.dumps(summary(report), indent=1))
    if a.out:
        a.out.write_text(json.dumps(report, indent=1))
    if a.fixture:
        b = np.load(a.inputs / "batches.npz")
        ref_out = {k: ref[k] for k in ref.files}
        fix = {"settings": settings, "precision": report["precision"], "weights": a.weights.name,
               "inputs_digest": digest(b["imgs"], b["targets"]), "init_digest": initial_digest(ref_out),
               "reference": fingerprint(ref_out),
               "made_by": "benchmarks/yolov5_step_parity/reference.py: ultralytics/yolov5 @5081342, CPU, 1 thread"}
        a.fixture.parent.mkdir(parents=True, exist_ok=True)
        a.fixture.write_text(json.dumps(fix, indent=1))
        print(f"wrote {a.fixture}; ours vs it: {fingerprint_gaps(fingerprint(ours), fix['reference'])}")


if __name__ == "__main__":
    main()

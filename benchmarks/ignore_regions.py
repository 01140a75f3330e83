"""What honouring ignore regions buys: train on a deeppcb variant whose train split has a fraction of its
boxes turned into ignore regions (iscrowd=1), once honouring them (hyp crowd_ignore=1: no loss where they
lie) and once with the old behaviour (crowd_ignore=0: dropped, so their cells are background), and score
both on the untouched val split.

    python -m benchmarks.ignore_regions --make-variant            # writes the variant under --work
    python -m benchmarks.ignore_regions --mode ignore &            # the two trainings (start them together)
    python -m benchmarks.ignore_regions --mode drop &
    python -m benchmarks.ignore_regions --score-last               # a reading of both last.pt before they end

Model and budget are the ablation's dfl-half-r4 row (benchmarks/ablation.py): yolov5n-dfl-half, TAL,
small-objects-dfl hyps with tile=0 tal_stal=true, --reg-max 4, 20 epochs at 320 px, batch 16, seed 0.
The variant (json + a data YAML pointing at the shared images) is written under --work, never into the
shared data or the repository; each finished run is merged into --out under a file lock.
"""
from __future__ import annotations

import argparse
import fcntl
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
MODES = {"ignore": 1, "drop": 0}  # --mode -> hyp crowd_ignore
ROW = "dfl-half-r4"


def make_variant(src_json: Path, out_json: Path, fraction: float, seed: int) -> dict:
    """Copy of a COCO json with round(fraction * boxes) of its annotations, drawn uniformly with ``seed``,
    marked iscrowd=1 (box and category kept). Returns counts."""
    data = json.loads(src_json.read_text())
    anns = [a for a in data["annotations"] if not a.get("iscrowd", 0)]
    k = int(round(fraction * len(anns)))
    pick = np.random.default_rng(seed).permutation(len(anns))[:k]
    for i in pick.tolist():
        anns[i]["iscrowd"] = 1
    out_json.parent.mkdir(parents=True, exist_ok=True)
    out_json.write_text(json.dumps(data))
    return {"boxes": len(anns), "made_ignore": k,
            "images_with_ignore": len({anns[i]["image_id"] for i in pick.tolist()})}


def write_variant(work: Path, data_yaml: str, fraction: float, seed: int) -> tuple[Path, dict]:
    """The variant's data YAML under ``work``: train json rewritten, val json and both image folders the originals."""
    from utils.config import repo_path
    from utils.data.config import load_data_config

    data = load_data_config(repo_path(data_yaml))
    train_json = work / "annotations" / "instances_train.json"
    counts = make_variant(Path(data["train"]["json"]), train_json, fraction, seed)
    cfg = {"path": str(work), "train": {"json": str(train_json), "images": data["train"]["images"]},
           "val": {"json": data["val"]["json"], "images": data["val"]["images"]}}
    out = work / "data.yaml"
    out.write_text(f"# {data_yaml} with {fraction:.0%} of the train boxes made ignore regions (seed {seed})\n"
                   + yaml.safe_dump(cfg, sort_keys=False))
    return out, counts


def run(mode: str, opt: argparse.Namespace) -> dict:
    import train
    from benchmarks.ablation import ROW_OPTIONS, ROWS

    what, cfg, assigner, hyp, hyp_set = ROWS[ROW]
    hyp_set = [*hyp_set, *opt.hyp_set, f"crowd_ignore={MODES[mode]}"]
    t0 = time.perf_counter()
    res = train.run(data=str(opt.work / "data.yaml"), cfg=cfg, assigner=assigner, hyp=f"configs/hyps/{hyp}.yaml",
                    hyp_set=hyp_set, epochs=opt.epochs, imgsz=opt.imgsz, batch_size=opt.batch, noval=True,
                    noplots=True, workers=opt.workers, project=str(opt.work / "runs"), name=mode, exist_ok=True,
                    seed=opt.seed, **ROW_OPTIONS.get(ROW, {}))
    m = res["metrics"]
    return {"mode": mode, "crowd_ignore": MODES[mode], "cfg": cfg, "assigner": assigner, "hyp": hyp,
            "hyp_set": hyp_set, "options": ROW_OPTIONS.get(ROW, {}),
            **{k: round(float(m[k]), 4) for k in ("AP", "AP50", "AP75", "APs", "APm", "AR100")},
            "train_wall_min": round((time.perf_counter() - t0) / 60, 1)}


def score_last(opt: argparse.Namespace) -> dict:
    """Both runs' last.pt scored on the val split as they stand (a reading before they finish): the epochs
    each has done and its COCO figures. Fair only when both have done the same number of epochs."""
    import val
    from utils.checkpoints.checkpoint import read_checkpoint

    out = {}
    for mode in MODES:
        w = opt.work / "runs" / mode / "weights" / "last.pt"
        if not w.exists():
            continue
        done = int(read_checkpoint(w)["epoch"]) + 1
        m = val.run(data=str(opt.work / "data.yaml"), weights=str(w), imgsz=opt.imgsz, batch_size=opt.batch,
                    device="cpu", workers=0, project=str(opt.work / "partial"), name=mode, exist_ok=True,
                    plots=False, verbose=False)
        out[mode] = {"epochs_done": done, **{k: round(float(m[k]), 4) for k in ("AP", "AP50", "AP75", "APs", "APm",
                                                                                 "AR100")}}
        print(mode, out[mode], flush=True)
    return out


def merge(out: Path, key: str, value: dict, budget: dict) -> dict:
    """Put value under results[key] in ``out``, holding a lock so two runs finishing together both land."""
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        results = json.loads(out.read_text()) if out.exists() else {}
        results.setdefault("budget", budget)
        results.setdefault("runs", {})[key] = value
        tmp = out.with_suffix(".tmp")
        tmp.write_text(json.dumps(results, indent=1) + "\n")
        tmp.replace(out)
    return results


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="data/deeppcb.yaml")
    ap.add_argument("--make-variant", action="store_true", help="write the variant under --work and exit")
    ap.add_argument("--mode", choices=list(MODES), help="ignore: honour the regions; drop: today's behaviour")
    ap.add_argument("--score-last", action="store_true",
                    help="score both runs' last.pt as they stand (before they finish) and record it under 'partial'")
    ap.add_argument("--fraction", type=float, default=0.3, help="share of train boxes made ignore regions")
    ap.add_argument("--variant-seed", type=int, default=0)
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--imgsz", type=int, default=320)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--hyp-set", nargs="*", default=[], metavar="KEY=VALUE", help="extra overrides for both runs")
    ap.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "ignore-regions-deeppcb")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "ignore-regions-deeppcb.json")
    opt = ap.parse_args(argv)
    torch.set_num_threads(opt.threads)
    budget = {k: getattr(opt, k) for k in ("data", "fraction", "variant_seed", "epochs", "imgsz", "batch", "seed",
                                            "threads", "workers", "hyp_set")}
    budget["row"] = ROW
    if opt.make_variant:
        path, counts = write_variant(opt.work, opt.data, opt.fraction, opt.variant_seed)
        print(f"{path}: {counts}")
        merge(opt.out, "variant", {**counts, "yaml": str(path)}, budget) if opt.out else None
        return
    if opt.score_last:
        merge(opt.out, "partial", score_last(opt), budget)
        return
    if not opt.mode:
        raise SystemExit("give --make-variant, --mode ignore|drop or --score-last")
    if not (opt.work / "data.yaml").exists():
        raise SystemExit(f"{opt.work / 'data.yaml'}: no variant yet; run with --make-variant first")
    row = run(opt.mode, opt)
    results = merge(opt.out, opt.mode, row, budget)
    print(json.dumps(row), flush=True)
    if results.get("budget") != budget:
        print(f"warning: {opt.out} was started with another budget {results.get('budget')}")


if __name__ == "__main__":
    main()

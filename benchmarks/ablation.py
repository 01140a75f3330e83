"""Ablation: train each configuration from scratch at one fixed budget and tabulate what it bought.

    python -m benchmarks.ablation                                   # deeppcb, 3 epochs at 320, all rows
    python -m benchmarks.ablation --rows base p2 p2-atss-so --epochs 20
    python -m benchmarks.ablation --data data/aerial-cars.yaml --epochs 200 --recipe auto --cache --rows base se

On aerial-cars (94 train photos of ~1920 px) --recipe auto trains on native-resolution tiles and scores the
final weights sliced, as its tiny cars need; 200 epochs there are as many steps as 20 on deeppcb.

Rows change one thing at a time against the YOLOv5n baseline (conv stem, PAN, P3-P5 head, IoU
assigner, default hyps), then stack what helps. Each finished row is saved in --out (JSON) at once,
so an interrupted ablation picks up where it stopped. Columns: COCO AP, AP50, APs (< 32 px) and
AP_tiny (< 16 px) of the final weights on the val split, params, GFLOPs at --imgsz, steady-state
train images/s and batch-1 latency (benchmarks/speed.py's method), all on this machine. A file under
benchmarks/results is shown on the results page, docs/results.md, which is regenerated after each run
(python -m benchmarks.results_page does that alone).
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# name: (what changes, model YAML, assigner, hyp file, hyp overrides)
ROWS: dict[str, tuple[str, str, str, str, list[str]]] = {
    "base": ("YOLOv5n: conv stem, PAN, P3-P5, IoU", "yolov5n.yaml", "iou", "default", []),
    "focus": ("Focus stem", "yolov5n-focus.yaml", "iou", "default", []),
    "spd": ("SPD-Conv stem and downsampling", "yolov5n-spd.yaml", "iou", "default", []),
    "asff": ("ASFF neck", "yolov5n-asff.yaml", "iou", "default", []),
    "p2": ("P2-P5 head", "yolov5n-p2.yaml", "iou", "default", []),
    # the literature's blocks as whole configs (docs/models.md); the same head, assigner and hyps as base
    "yolov4-csp": ("YOLOv4-CSP: CSPDarknet53 (Mish), SPP, CSP PAN", "yolov4n-csp.yaml", "iou", "default", []),
    "se": ("SE after the backbone C3 stages", "yolov5n-se.yaml", "iou", "default", []),
    "effnet": ("EfficientNet-B0-style MBConv backbone", "yolov5n-effnet.yaml", "iou", "default", []),
    "dense": ("DenseNet-121-style backbone", "yolov5n-dense.yaml", "iou", "default", []),
    "dilated": ("ASPP (dilated convs) in place of SPPF", "yolov5n-dilated.yaml", "iou", "default", []),
    "dcn": ("deformable conv: P5 down conv + P3 output", "yolov5n-dcn.yaml", "iou", "default", []),
    "tconv": ("transposed-conv upsampling in the PAN", "yolov5n-tconv.yaml", "iou", "default", []),
    "dw": ("depthwise downsampling + group-conv C3s", "yolov5n-dw.yaml", "iou", "default", []),
    "atss": ("ATSS assigner", "yolov5n.yaml", "atss", "default", []),
    "p2-atss": ("P2-P5 head + ATSS", "yolov5n-p2.yaml", "atss", "default", []),
    "p2-atss-so": ("P2-P5 + ATSS + small-objects hyps", "yolov5n-p2.yaml", "atss", "small-objects", ["tile=0"]),
    "dfl": ("anchor-free DetectDFL head + TAL", "yolov5n-dfl.yaml", "tal", "default", []),
    "dfl-so": ("DetectDFL + TAL + small-objects hyps", "yolov5n-dfl.yaml", "tal", "small-objects", ["tile=0"]),
    "dfl-tuned": ("DetectDFL + TAL + small-objects-dfl hyps (AdamW, no NWD, close_mosaic)", "yolov5n-dfl.yaml",
                  "tal", "small-objects-dfl", ["tile=0", "tal_stal=false"]),
    "p2-dfl-tuned": ("P2-P5 DetectDFL + TAL + small-objects-dfl hyps", "yolov5n-p2-dfl.yaml", "tal",
                     "small-objects-dfl", ["tile=0", "tal_stal=false"]),
    # assignment on the anchor-free head, each against dfl-tuned (the same model and hyps, TAL)
    "dfl-atss": ("DetectDFL + ATSS (instead of TAL) + small-objects-dfl hyps", "yolov5n-dfl.yaml", "atss",
                 "small-objects-dfl", ["tile=0"]),
    "dfl-atss-warm": ("DetectDFL + ATSS for 3 epochs, then TAL + small-objects-dfl hyps", "yolov5n-dfl.yaml",
                      "tal", "small-objects-dfl", ["tile=0", "atss_warmup_epochs=3", "tal_stal=false"]),
    "dfl-stal": ("DetectDFL + TAL with STAL (tiny boxes enlarged for candidates) + small-objects-dfl hyps",
                 "yolov5n-dfl.yaml", "tal", "small-objects-dfl", ["tile=0", "tal_stal=true"]),
    "dfl-stal-fit": ("dfl-stal + DFL bins fitted to the box sizes (--dfl-bin auto)", "yolov5n-dfl.yaml", "tal",
                     "small-objects-dfl", ["tile=0", "tal_stal=true"]),
    # fewer DFL bins per side: a lighter box branch, for equal compute with the lighter Ultralytics models
    "dfl-r8": ("dfl-stal with 8 DFL bins per side (--reg-max 8)", "yolov5n-dfl.yaml", "tal", "small-objects-dfl",
               ["tile=0", "tal_stal=true"]),
    "dfl-r4": ("dfl-stal with 4 DFL bins per side (--reg-max 4)", "yolov5n-dfl.yaml", "tal", "small-objects-dfl",
               ["tile=0", "tal_stal=true"]),
    "p2-dfl-r4": ("P2-P5 DetectDFL + TAL with STAL, 4 DFL bins per side (--reg-max 4)", "yolov5n-p2-dfl.yaml", "tal",
                  "small-objects-dfl", ["tile=0", "tal_stal=true"]),
    "dfl-lite-r8": ("dfl-r8 with depthwise-separable class convs (yolov5n-dfl-lite)", "yolov5n-dfl-lite.yaml", "tal",
                    "small-objects-dfl", ["tile=0", "tal_stal=true"]),
    "dfl-half-r4": ("dfl-r4 with the class tower's second conv depthwise-separable on P3-P4, both on P5 "
                    "(yolov5n-dfl-half)", "yolov5n-dfl-half.yaml", "tal", "small-objects-dfl",
                    ["tile=0", "tal_stal=true"]),
    "p2-dfl-lite-r4": ("p2-dfl-r4 with depthwise-separable class convs (yolov5n-p2-dfl-lite)",
                       "yolov5n-p2-dfl-lite.yaml", "tal", "small-objects-dfl", ["tile=0", "tal_stal=true"]),
    "p2-dfl-mix-r4": ("p2-dfl-r4 with depthwise-separable class convs on P3-P5 only (yolov5n-p2-dfl-mix)",
                      "yolov5n-p2-dfl-mix.yaml", "tal", "small-objects-dfl", ["tile=0", "tal_stal=true"]),
    "p2-dfl-fast-r4": ("p2-dfl-r4 with the stride-4 level as a side branch: a 1x1 fuse, no path back up "
                       "(yolov5n-p2-dfl-fast)", "yolov5n-p2-dfl-fast.yaml", "tal", "small-objects-dfl",
                       ["tile=0", "tal_stal=true"]),
}
# train.py options beyond the columns
ROW_OPTIONS: dict[str, dict] = {"dfl-stal-fit": {"dfl_bin": "auto"}, "dfl-r8": {"reg_max": 8}, "dfl-r4": {"reg_max": 4},
                                "p2-dfl-r4": {"reg_max": 4}, "dfl-lite-r8": {"reg_max": 8},
                                "dfl-half-r4": {"reg_max": 4},
                                "p2-dfl-lite-r4": {"reg_max": 4}, "p2-dfl-mix-r4": {"reg_max": 4},
                                "p2-dfl-fast-r4": {"reg_max": 4}}


def run_row(name: str, opt: argparse.Namespace) -> dict:
    import train
    from benchmarks.speed import latency_images, our_latency, our_train_speed
    from models.yolo import Model
    from utils.data.dataset import load_data_config
    from utils.config import repo_path

    what, cfg, assigner, hyp, hyp_set = ROWS[name]
    hyp_path = f"configs/hyps/{hyp}.yaml"
    # default.yaml is what train.py reads with no --hyp; naming it as a hyp file would outrank --recipe auto's tile
    hyp_arg = None if hyp == "default" else hyp_path
    hyp_set = [*hyp_set, *opt.hyp_set]
    t0 = time.perf_counter()
    res = train.run(data=opt.data, cfg=cfg, assigner=assigner, hyp=hyp_arg, hyp_set=hyp_set or None,
                    epochs=opt.epochs, imgsz=opt.imgsz, batch_size=opt.batch, noval=True, noplots=True,
                    workers=opt.workers, project=opt.project, name=name, exist_ok=True, seed=opt.seed,
                    recipe=opt.recipe, cache=opt.cache, **ROW_OPTIONS.get(name, {}))
    wall_s = time.perf_counter() - t0  # the whole train.run: loading, epochs, the final val
    m = res["metrics"]
    data = load_data_config(repo_path(opt.data))
    reg_max = ROW_OPTIONS.get(name, {}).get("reg_max")  # the head's size: GFLOPs and speed depend on it
    info = Model(cfg, nc=len(data["names"]), reg_max=reg_max).info(opt.imgsz)
    row = {"row": name, "what": what, "cfg": cfg, "assigner": assigner, "hyp": hyp_path, "hyp_set": hyp_set,
           **({"options": ROW_OPTIONS[name]} if name in ROW_OPTIONS else {}),
           **{k: round(float(m[k]), 4) for k in ("AP", "AP50", "APs", "AP_tiny")},
           "train_wall_min": round(wall_s / 60, 1),
           "params_M": round(info["params"] / 1e6, 3), "gflops": round(info["gflops"], 2),
           "train_img_per_s": round(our_train_speed(opt.data, cfg, opt.imgsz, opt.batch, opt.speed_batches, 2,
                                                    opt.workers, reg_max=reg_max), 2),
           "latency_ms": round(our_latency(cfg, len(data["names"]), latency_images(data, 20), opt.imgsz,
                                           reg_max=reg_max), 1)}
    return row


def _ap(v: float) -> str:
    """pycocotools' -1 (no box of that size in the val split) as a dash, as in the other results tables."""
    return f"{v:.3f}" if v >= 0 else "–"


def table(results: dict) -> str:
    b = results["budget"]
    rows = [results["rows"][n] for n in dict.fromkeys([*ROWS, *results["rows"]]) if n in results["rows"]]
    # rows trained before train_wall_min was recorded have none; a file with none of them gets no such column
    walls = any("train_wall_min" in r for r in rows)
    budget = (f"Budget: {b['data']}, {b['epochs']} epochs at {b['imgsz']} px, batch {b['batch']}, seed {b['seed']}, "
              f"{b['threads']} CPU threads, hyp overrides {' '.join(b.get('hyp_set') or []) or 'none'}"
              f"{', --recipe ' + b['recipe'] if b.get('recipe') else ''}; "
              f"speed columns: train at {b['imgsz']} px batch {b['batch']}, latency "
              f"batch 1 at {b['imgsz']} px (file to boxes, fused, channels-last)")
    budget += "; train wall: the whole training run in minutes (– for rows that predate it)." if walls else "."
    header = ["row", "change", "AP", "AP50", "APs", "AP_tiny", "params (M)", "GFLOPs", "train img/s",
              *(["train wall min"] if walls else []), "latency ms"]
    lines = [budget, "", "| " + " | ".join(header) + " |", "|---" * len(header) + "|"]
    for r in rows:
        wall = (f"{r['train_wall_min']:.1f} | " if "train_wall_min" in r else "– | ") if walls else ""
        lines.append(f"| {r['row']} | {r['what']} | {r['AP']:.3f} | {r['AP50']:.3f} | {r['APs']:.3f} | "
                     f"{_ap(r['AP_tiny'])} | {r['params_M']:.2f} | {r['gflops']:.1f} | {r['train_img_per_s']:.1f} | "
                     f"{wall}{r['latency_ms']:.0f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="data/deeppcb.yaml")
    ap.add_argument("--rows", nargs="+", default=list(ROWS), choices=list(ROWS))
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--imgsz", type=int, default=320)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--hyp-set", nargs="*", default=["warmup_epochs=1"], metavar="KEY=VALUE",
                    help="overrides for every row (default: a 1-epoch warmup, as the default budget is short; "
                         "--hyp-set with no values: none)")
    ap.add_argument("--recipe", default="none", choices=["none", "auto"],
                    help="auto: tile and final sliced validation from the data (train.py --recipe auto), as "
                         "aerial-cars' 4000 px photos need")
    ap.add_argument("--cache", nargs="?", const="ram", default=None, choices=["ram", "disk", "auto", "none"],
                    help="train.py's --cache (bare: ram; default: train.py's, auto)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--speed-batches", type=int, default=10)
    ap.add_argument("--project", default=str(Path(tempfile.gettempdir()) / "ablation"))
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "ablation-deeppcb.json")
    ap.add_argument("--redo", action="store_true", help="retrain rows already in --out")
    opt = ap.parse_args(argv)
    import torch  # here, so that the results page can read table() without loading torch

    torch.set_num_threads(opt.threads)
    budget = {k: getattr(opt, k) for k in ("data", "epochs", "imgsz", "batch", "seed", "threads", "hyp_set")}
    if opt.recipe != "none":  # only then, so the files written before the option stay of the same budget
        budget["recipe"] = opt.recipe
    results = json.loads(opt.out.read_text()) if opt.out.exists() else {"budget": budget, "rows": {}}
    if results["budget"] != budget:
        raise SystemExit(f"{opt.out} holds rows of another budget {results['budget']}; pass another --out")
    for name in opt.rows:
        if name in results["rows"] and not opt.redo:
            print(f"{name}: already in {opt.out}, skipped (--redo to retrain)")
            continue
        results["rows"][name] = run_row(name, opt)
        opt.out.parent.mkdir(parents=True, exist_ok=True)
        tmp = opt.out.with_suffix(".tmp")
        tmp.write_text(json.dumps(results, indent=1))
        tmp.replace(opt.out)
        print(json.dumps(results["rows"][name]), flush=True)
    print(table(results))
    from benchmarks import results_page

    if opt.out.resolve().parent == results_page.RESULTS.resolve():  # a file the page shows: keep the page current
        results_page.write_page()
        print(f"regenerated {results_page.PAGE}")


if __name__ == "__main__":
    main()

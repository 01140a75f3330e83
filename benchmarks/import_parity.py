"""Imported checkpoints score what their own code scored: our val.py on the shared fixtures
(../shared/fixtures: a yolov5n trained by ultralytics/yolov5, a yolov5nu trained by the Ultralytics package, on
the demo set) against the AP each original measured (its reference.json), both scored by pycocotools.

    python -m benchmarks.import_parity     # 4 val runs, 1-4 min on 2 CPU cores; writes results/import-parity.json

Each fixture is scored twice: with our val.py's defaults, and with the settings of the code that made its
reference figure: ultralytics/yolov5's val.py pads each rect batch by half a stride (--rect-pad 0.5: the 256 px
images run at 288); the Ultralytics figure came from its predict, whose NMS keeps one class per box
(--single-label). Thresholds are the same everywhere: conf 0.001, IoU 0.6, 300 boxes. Numbers are printed and
written, never asserted (tests/engine/test_import_ap.py pins the matched settings).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = Path(os.environ.get("SMALLDET_FIXTURES") or ROOT.parent / "shared" / "fixtures")
KEYS = ("AP", "AP50", "AP75", "APs", "APm", "AP_tiny")
# fixture -> the val.py flags that reproduce how its reference figure was made
MATCHED = {"yolov5n-shapes.pt": {"rect_pad": 0.5}, "yolov5nu-shapes.pt": {"multi_label": False}}
FLAGS = {"rect_pad": lambda v: f"--rect-pad {v}", "multi_label": lambda v: "" if v else "--single-label"}


def score(weights: Path, out: Path, **kw) -> dict:
    import val
    t = time.perf_counter()
    r = val.run(data="data/shapes.yaml", weights=str(weights), imgsz=256, conf_thres=0.001, iou_thres=0.6,
                max_det=300, plots=False, verbose=False, project=str(out), name="v", exist_ok=True, workers=0, **kw)
    return {**{k: round(float(r[k]), 4) for k in KEYS}, "seconds": round(time.perf_counter() - t, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "import-parity.json")
    a = ap.parse_args()
    torch.set_num_threads(2)
    ref = json.loads((FIXTURES / "reference.json").read_text())
    result = {"command": "python -m benchmarks.import_parity", "data": "data/shapes.yaml (demo val split, 100 images)",
              "thresholds": "conf 0.001, IoU 0.6, max-det 300, imgsz 256; AP by pycocotools",
              "machine": f"{platform.machine()} CPU, {torch.get_num_threads()} torch threads, "
                         f"torch {torch.__version__}",
              "seed": "none (inference only)", "fixtures": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for name, matched in MATCHED.items():
            theirs = {k: ref[name]["coco_eval"][k] for k in KEYS}
            ours_default = score(FIXTURES / name, Path(tmp))
            ours_matched = score(FIXTURES / name, Path(tmp), **matched)
            flags = " ".join(FLAGS[k](v) for k, v in matched.items())
            result["fixtures"][name] = {
                "original": {"written_by": ref[name]["written_by"], **theirs},
                "ours_val_defaults": ours_default,
                "ours_matched": {"val_flags": flags, **ours_matched},
                "AP_diff_matched": round(ours_matched["AP"] - theirs["AP"], 4),
                "AP_diff_defaults": round(ours_default["AP"] - theirs["AP"], 4),
                "command": f"python val.py --data data/shapes.yaml --weights ../shared/fixtures/{name} --imgsz 256 "
                           f"--conf-thres 0.001 --iou-thres 0.6 --max-det 300 {flags}".strip(),
            }
            print(name, json.dumps(result["fixtures"][name]))
    a.out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()

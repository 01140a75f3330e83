"""Per-class COCO AP of prediction files against one ground truth, through pycocotools.

    python -m benchmarks.per_class_ap GT.json PRED.json [PRED.json ...] [--names ours peer ...]

A data set's AP is the mean over its classes, so on a set where one class holds most boxes and the others
a handful (aerial-cars: 985 cars, 35 minibuses, 11 buses, 3 trucks in val) the rare classes decide much
of it and swing from seed to seed. This prints AP and AP50 per class for each file (ours: a run's
val/predictions.json; any tool's COCO results list works), so that two models can be compared class by class.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from utils.eval.coco import coco_eval, load_gt


def per_class_ap(gt: Any, preds: list[dict]) -> dict[str, tuple[float, float]]:
    """{class name: (AP, AP50)} of a pycocotools COCO ground truth (utils.eval.coco.load_gt); -1 where the
    val split has no box of the class. One COCOeval pass, the same one val.py reports from."""
    per = coco_eval(gt, preds)["per_class"]
    return {gt.loadCats(c)[0]["name"]: (per[c]["AP"], per[c]["AP50"]) for c in sorted(gt.getCatIds())}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("gt", type=Path, help="COCO ground-truth json (the val split)")
    p.add_argument("preds", type=Path, nargs="+", help="COCO results json files")
    p.add_argument("--names", nargs="*", default=None, help="a column name per results file")
    a = p.parse_args(argv)
    names = a.names or [f.parent.parent.name if f.parent.name == "val" else f.stem for f in a.preds]
    if len(names) != len(a.preds):
        p.error(f"--names: {len(names)} names for {len(a.preds)} results files")
    gt = load_gt(a.gt)
    tables = [per_class_ap(gt, json.loads(f.read_text())) for f in a.preds]
    print("| class | val boxes | " + " | ".join(f"{n} AP / AP50" for n in names) + " |")
    print("|---|---|" + "---|" * len(names))
    for cid in sorted(gt.getCatIds()):
        cls = gt.loadCats(cid)[0]["name"]
        cells = " | ".join(f"{t[cls][0]:.3f} / {t[cls][1]:.3f}" for t in tables)
        print(f"| {cls} | {len(gt.getAnnIds(catIds=[cid]))} | {cells} |")


if __name__ == "__main__":
    main()

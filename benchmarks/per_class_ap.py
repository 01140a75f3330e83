"""Per-class COCO AP of prediction files against one ground truth, through pycocotools.

    python -m benchmarks.per_class_ap GT.json PRED.json [PRED.json ...] [--names ours peer ...]

A data set's AP is the mean over its classes, so on a set where one class holds most boxes and the others
a handful (aerial-cars: 985 cars, 35 minibuses, 11 buses, 3 trucks in val) the rare classes decide much
of it and swing from seed to seed. This prints AP and AP50 per class for each file (ours: a run's
val/predictions.json; any tool's COCO results list works), so that two models can be compared class by class.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
from pathlib import Path

from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval


def per_class_ap(gt: COCO, preds: list[dict]) -> dict[str, tuple[float, float]]:
    """{class name: (AP, AP50)}; -1 where the val split has no box of the class."""
    out = {}
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints its progress
        dt = gt.loadRes(preds) if preds else None
    for cid in sorted(gt.getCatIds()):
        name = gt.loadCats(cid)[0]["name"]
        if dt is None:
            out[name] = (0.0, 0.0) if gt.getAnnIds(catIds=[cid]) else (-1.0, -1.0)
            continue
        ev = COCOeval(gt, dt, "bbox")
        ev.params.catIds = [cid]
        with contextlib.redirect_stdout(io.StringIO()):
            ev.evaluate()
            ev.accumulate()
            ev.summarize()
        out[name] = (float(ev.stats[0]), float(ev.stats[1]))
    return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("gt", type=Path, help="COCO ground-truth json (the val split)")
    p.add_argument("preds", type=Path, nargs="+", help="COCO results json files")
    p.add_argument("--names", nargs="*", default=None, help="a column name per results file")
    a = p.parse_args(argv)
    names = a.names or [f.parent.parent.name if f.parent.name == "val" else f.stem for f in a.preds]
    if len(names) != len(a.preds):
        p.error(f"--names: {len(names)} names for {len(a.preds)} results files")
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(a.gt))
    tables = [per_class_ap(gt, json.loads(f.read_text())) for f in a.preds]
    print("| class | val boxes | " + " | ".join(f"{n} AP / AP50" for n in names) + " |")
    print("|---|---|" + "---|" * len(names))
    for cid in sorted(gt.getCatIds()):
        cls = gt.loadCats(cid)[0]["name"]
        cells = " | ".join(f"{t[cls][0]:.3f} / {t[cls][1]:.3f}" for t in tables)
        print(f"| {cls} | {len(gt.getAnnIds(catIds=[cid]))} | {cells} |")


if __name__ == "__main__":
    main()

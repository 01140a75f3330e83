"""Label converters to and from COCO json.

    python -m utils.data.convert yolo --images DIR --labels DIR [--names a,b,c | --names names.txt] --out out.json
    python -m utils.data.convert voc --xml DIR --images DIR [--names ...] [--coords voc|edges] [--skip-difficult]
                                --out out.json
    python -m utils.data.convert coco2yolo --json instances.json --out labels/
    python -m utils.data.convert visdrone --labels annotations --images images [--others ignore|drop] --out out.json
    python -m utils.data.convert dota --labels labelTxt --images images [--version auto|1.0|1.5|2.0]
                                 [--keep-difficult] --out out.json
    python -m utils.data.convert xview --geojson xView_train.geojson --images train_images --out out.json
    python -m utils.data.convert tinyperson --json tiny_set_train.json --images train [--keep-categories]
                                 --out out.json

COCO file_name values are relative to --images, so a data YAML entry {json: out.json, images: DIR}
uses the result directly. Malformed input stops the run before anything is written, with every
problem listed by file and line (YOLO) or object (VOC). Exit status: 0 done, 2 bad input.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path


from utils.data.convert.common import ConvertError, parse_names, write_json
from utils.data.coco import DatasetError
from utils.data.convert.dota import VERSIONS, dota_to_coco
from utils.data.convert.tinyperson import tinyperson_to_coco
from utils.data.convert.visdrone import OTHERS_CHOICES, visdrone_to_coco
from utils.data.convert.voc import COORDS, voc_to_coco
from utils.data.convert.xview import xview_to_coco
from utils.data.convert.yolo import CLASSES_FILE, coco_to_yolo, yolo_to_coco

__all__ = ["ConvertError", "coco_to_yolo", "dota_to_coco", "main", "tinyperson_to_coco", "visdrone_to_coco",
           "voc_to_coco", "xview_to_coco", "yolo_to_coco"]
MAX_WARNINGS = 20


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m utils.data.convert",
                                description="Convert detection labels to/from COCO json.")
    sub = p.add_subparsers(dest="fmt", required=True)
    y = sub.add_parser("yolo", help="YOLO txt labels -> COCO json")
    y.add_argument("--images", required=True, help="image folder (searched recursively)")
    y.add_argument("--labels", required=True, help="label folder: <image path relative to --images>.txt")
    y.add_argument("--names", default=None, help=f"'a,b,c' or a file with one name per line "
                                                 f"(default: {CLASSES_FILE} in --labels)")
    y.add_argument("--out", required=True, help="COCO json to write")
    v = sub.add_parser("voc", help="Pascal VOC xml -> COCO json")
    v.add_argument("--xml", required=True, help="folder of .xml files (searched recursively)")
    v.add_argument("--images", required=True, help="image folder")
    v.add_argument("--names", default=None, help="'a,b,c' or a names file: fixes the class order; other classes "
                                                 "are an error (default: the classes found, sorted)")
    v.add_argument("--coords", default="voc", choices=COORDS,
                   help="voc: 1-based inclusive pixel indices (devkit); edges: 0-based pixel edges")
    v.add_argument("--skip-difficult", action="store_true", help="leave out objects marked difficult")
    v.add_argument("--out", required=True, help="COCO json to write")
    c = sub.add_parser("coco2yolo", help="COCO json -> YOLO txt labels (+ classes.txt)")
    c.add_argument("--json", required=True, help="COCO annotation json")
    c.add_argument("--out", required=True, help="label folder to write")
    d = sub.add_parser("visdrone", help="VisDrone-DET txt -> COCO json (ignored regions -> iscrowd 1)")
    d.add_argument("--labels", required=True, help="annotations folder: <image stem>.txt per image")
    d.add_argument("--images", required=True, help="image folder")
    d.add_argument("--others", default="ignore", choices=OTHERS_CHOICES,
                   help="category 11 'others': ignore regions (default) or left out")
    d.add_argument("--out", required=True, help="COCO json to write")
    t = sub.add_parser("dota", help="DOTA labelTxt polygons -> COCO json (enclosing boxes + segmentation)")
    t.add_argument("--labels", required=True, help="labelTxt folder: <image stem>.txt per image")
    t.add_argument("--images", required=True, help="image folder")
    t.add_argument("--version", default="auto", choices=["auto", *VERSIONS],
                   help="class list of DOTA v1.0/1.5/2.0; auto: the first that holds every class found")
    t.add_argument("--keep-difficult", action="store_true",
                   help="difficult objects as normal boxes (default: ignored in evaluation, iscrowd 1)")
    t.add_argument("--out", required=True, help="COCO json to write")
    x = sub.add_parser("xview", help="xView geojson -> COCO json (category ids = xView type_ids)")
    x.add_argument("--geojson", required=True, help="xView_train.geojson")
    x.add_argument("--images", required=True, help="image folder (.tif); features of other images are skipped")
    x.add_argument("--out", required=True, help="COCO json to write")
    s = sub.add_parser("tinyperson", help="TinyPerson json -> COCO json (ignore -> iscrowd 1, flags kept)")
    s.add_argument("--json", required=True, help="TinyPerson annotation json")
    s.add_argument("--images", required=True, help="folder the json's file_name values are relative to")
    s.add_argument("--keep-categories", action="store_true",
                   help="keep sea_person / earth_person (default: one class, person, as the benchmark scores)")
    s.add_argument("--out", required=True, help="COCO json to write")
    return p


def _summary(doc: dict) -> str:
    with_boxes = len({a["image_id"] for a in doc["annotations"] if not a.get("iscrowd")})
    crowd = sum(1 for a in doc["annotations"] if a.get("iscrowd"))
    regions = f" + {crowd} ignore regions (iscrowd 1)" if crowd else ""
    return (f"{len(doc['images'])} images ({len(doc['images']) - with_boxes} without boxes), "
            f"{len(doc['annotations']) - crowd} boxes{regions}, {len(doc['categories'])} classes "
            f"{[c['name'] for c in doc['categories']]}")


def main(argv: list[str] | None = None) -> int:
    opt = _parser().parse_args(argv)
    try:
        if opt.fmt == "yolo":
            names_spec = opt.names
            if names_spec is None:
                if not (Path(opt.labels) / CLASSES_FILE).is_file():
                    raise ConvertError(f"{opt.labels}: no {CLASSES_FILE}; give the class names with --names")
                names_spec = str(Path(opt.labels) / CLASSES_FILE)
            doc = yolo_to_coco(opt.images, opt.labels, parse_names(names_spec))
        elif opt.fmt == "voc":
            doc = voc_to_coco(opt.xml, opt.images, parse_names(opt.names), opt.coords, opt.skip_difficult)
        elif opt.fmt == "visdrone":
            doc = visdrone_to_coco(opt.labels, opt.images, opt.others)
        elif opt.fmt == "dota":
            doc = dota_to_coco(opt.labels, opt.images, opt.version, opt.keep_difficult)
        elif opt.fmt == "xview":
            doc = xview_to_coco(opt.geojson, opt.images)
        elif opt.fmt == "tinyperson":
            doc = tinyperson_to_coco(opt.json, opt.images, opt.keep_categories)
        else:
            counts = coco_to_yolo(opt.json, opt.out)
            print(f"wrote {counts['images']} label files and {CLASSES_FILE} to {opt.out}: {counts['boxes']} boxes "
                  f"({counts['clipped']} clipped to the image, {counts['dropped']} with no area left and "
                  f"{counts['crowd']} crowd regions not written)")
            return 0
    except DatasetError as e:  # ConvertError and malformed json
        print(f"ERROR {e}", file=sys.stderr)
        return 2
    warnings = doc.get("info", {}).get("warnings") or []
    for w in warnings[:MAX_WARNINGS]:
        print(f"WARNING {w}", file=sys.stderr)
    if len(warnings) > MAX_WARNINGS:
        print(f"WARNING ... and {len(warnings) - MAX_WARNINGS} more (listed in the json's info.warnings)",
              file=sys.stderr)
    print(f"wrote {write_json(doc, opt.out)}: {_summary(doc)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

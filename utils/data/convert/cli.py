"""Label converters to and from COCO json.

    python -m utils.data.convert yolo --images DIR --labels DIR [--names a,b,c | --names names.txt] --out out.json
    python -m utils.data.convert voc --xml DIR --images DIR [--names ...] [--coords voc|edges] [--skip-difficult]
                                --out out.json
    python -m utils.data.convert coco2yolo --json instances.json --out labels/

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
from utils.data.convert.voc import COORDS, voc_to_coco
from utils.data.convert.yolo import CLASSES_FILE, coco_to_yolo, yolo_to_coco

__all__ = ["ConvertError", "coco_to_yolo", "main", "voc_to_coco", "yolo_to_coco"]


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
    return p


def _summary(doc: dict) -> str:
    with_boxes = len({a["image_id"] for a in doc["annotations"]})
    return (f"{len(doc['images'])} images ({len(doc['images']) - with_boxes} without boxes), "
            f"{len(doc['annotations'])} boxes, {len(doc['categories'])} classes "
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
        else:
            counts = coco_to_yolo(opt.json, opt.out)
            print(f"wrote {counts['images']} label files and {CLASSES_FILE} to {opt.out}: {counts['boxes']} boxes "
                  f"({counts['clipped']} clipped to the image, {counts['dropped']} with no area left and "
                  f"{counts['crowd']} crowd regions not written)")
            return 0
    except DatasetError as e:  # ConvertError and malformed json
        print(f"ERROR {e}", file=sys.stderr)
        return 2
    print(f"wrote {write_json(doc, opt.out)}: {_summary(doc)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

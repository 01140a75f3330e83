"""The built-in demo set (utils/data/shapes.py) is deterministic and holds what its docstring says."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import cv2
import numpy as np

from utils.data.coco import load_coco

ROOT = Path(__file__).resolve().parents[2]
SPLITS = {"train": 6, "val": 3}


def shapes_module():
    spec = importlib.util.spec_from_file_location("shapes_demo", ROOT / "utils" / "data" / "shapes.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_seed_same_bytes(tmp_path):
    shapes = shapes_module()
    a = files(shapes.generate(tmp_path / "a", seed=0, splits=SPLITS))
    b = files(shapes.generate(tmp_path / "b", seed=0, splits=SPLITS))
    assert len([f for f in a if f.endswith(".jpg")]) == 9
    assert a.keys() == b.keys() and all(a[f] == b[f] for f in a)
    # each image comes from its own seed: a larger set starts with the same images
    c = files(shapes.generate(tmp_path / "c", seed=0, splits={"train": 8, "val": 3}))
    assert all(c[f] == a[f] for f in a if f.endswith(".jpg"))
    # and the seed matters (the comparisons above could not pass by accident)
    d = files(shapes.generate(tmp_path / "d", seed=1, splits=SPLITS))
    assert d["images/train/train_0000.jpg"] != a["images/train/train_0000.jpg"]
    assert d["annotations/instances_train.json"] != a["annotations/instances_train.json"]


def test_drawing_is_deterministic_in_memory():
    shapes = shapes_module()
    for i in range(4):
        img1, obj1 = shapes.draw_image((0, shapes.VERSION, 0, i))
        img2, obj2 = shapes.draw_image((0, shapes.VERSION, 0, i))
        assert np.array_equal(img1, img2) and obj1 == obj2


def test_objects_are_6_to_40_px_and_match_the_pixels(tmp_path):
    shapes = shapes_module()
    out = shapes.generate(tmp_path / "s", seed=0, splits={"train": 40})
    doc = json.loads((out / "annotations" / "instances_train.json").read_text())
    assert [c["name"] for c in doc["categories"]] == list(shapes.CLASSES)
    sides = np.array([a["bbox"][2:] for a in doc["annotations"]], float)
    assert len(sides) > 100
    longest = sides.max(1)
    assert longest.min() >= 6 and longest.max() <= 40, (longest.min(), longest.max())
    assert (longest < 16).mean() > 0.3  # log-uniform sizes: mostly small objects
    # boxes sit on their objects: the box interior differs from the background around it
    for im in doc["images"][:10]:
        img = cv2.imread(str(out / "images" / "train" / im["file_name"])).astype(np.float32)
        for a in (a for a in doc["annotations"] if a["image_id"] == im["id"]):
            x, y, w, h = a["bbox"]
            hsv = cv2.cvtColor(img[y:y + h, x:x + w].astype(np.uint8), cv2.COLOR_BGR2HSV)
            assert hsv[..., 1].max() > 100, "no saturated (coloured) pixels inside the box"
    s = load_coco(out / "annotations" / "instances_train.json", out / "images" / "train")
    assert s.report.problems == 0 and s.report.images == 40


def test_ensure_writes_once(tmp_path):
    shapes = shapes_module()  # a private copy of the module: its split sizes can be cut down
    shapes.SPLITS = {"train": 2, "val": 1}
    target = tmp_path / "demo"
    shapes.ensure(target)
    assert len(list((target / "images").rglob("*.jpg"))) == 3
    stamp, first = (target / "VERSION").stat().st_mtime_ns, files(target)
    shapes.ensure(target)  # complete and current: left alone
    assert (target / "VERSION").stat().st_mtime_ns == stamp and files(target) == first
    assert (target / "VERSION").read_text().split() == [str(shapes.VERSION), "0"]

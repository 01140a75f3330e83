"""Label converters: COCO -> YOLO -> COCO round trip, VOC xml -> COCO, and malformed input."""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from utils.data.convert.common import ConvertError, parse_names
from utils.data.coco import load_coco
from utils.data.convert.cli import main
from utils.data.convert.voc import voc_to_coco
from utils.data.convert.yolo import coco_to_yolo, yolo_to_coco

# (file_name, width, height): odd sizes, a sub-folder, a PNG and a JPEG
IMAGES = [("a.jpg", 53, 37), ("sub/b.png", 120, 64), ("c.png", 31, 90), ("neg.jpg", 40, 40)]


def write_images(root: Path, images=IMAGES) -> Path:
    for name, w, h in images:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        assert cv2.imwrite(str(root / name), np.full((h, w, 3), 90, np.uint8))
    return root


def coco_doc(seed: int = 0) -> dict:
    """Float boxes inside each image; category ids 4 and 9 (not contiguous); neg.jpg has none."""
    rng = np.random.default_rng(seed)
    cats = [{"id": 9, "name": "bolt"}, {"id": 4, "name": "nut"}]
    images, anns = [], []
    for i, (name, w, h) in enumerate(IMAGES, 1):
        images.append({"id": i * 10, "file_name": name, "width": w, "height": h})
        for _ in range(0 if name.startswith("neg") else 3):
            x, y = rng.uniform(0, w - 3), rng.uniform(0, h - 3)
            bw, bh = rng.uniform(0.5, w - x), rng.uniform(0.5, h - y)
            anns.append({"id": len(anns) + 100, "image_id": i * 10, "category_id": int(rng.choice([4, 9])),
                         "bbox": [x, y, bw, bh], "area": bw * bh, "iscrowd": 0})
    return {"images": images, "annotations": anns, "categories": cats}


def boxes_by_file(doc: dict) -> dict[str, list]:
    """file_name -> sorted [class name, x, y, w, h]."""
    names = {c["id"]: c["name"] for c in doc["categories"]}
    files = {im["id"]: im["file_name"] for im in doc["images"]}
    out: dict[str, list] = {f: [] for f in files.values()}
    for a in doc["annotations"]:
        out[files[a["image_id"]]].append([names[a["category_id"]], *a["bbox"]])
    return {f: sorted(v) for f, v in out.items()}


def assert_same_boxes(a: dict, b: dict, atol: float = 1e-3) -> None:
    ba, bb = boxes_by_file(a), boxes_by_file(b)
    assert ba.keys() == bb.keys()
    for f in ba:
        assert [r[0] for r in ba[f]] == [r[0] for r in bb[f]], f
        if ba[f]:
            np.testing.assert_allclose([r[1:] for r in ba[f]], [r[1:] for r in bb[f]], atol=atol, rtol=0, err_msg=f)


def test_coco_yolo_coco_round_trip(tmp_path):
    images = write_images(tmp_path / "images")
    src = coco_doc()
    (tmp_path / "in.json").write_text(json.dumps(src))
    counts = coco_to_yolo(tmp_path / "in.json", tmp_path / "labels")
    assert counts == {"images": 4, "boxes": 9, "clipped": 0, "dropped": 0, "crowd": 0}
    assert (tmp_path / "labels" / "sub" / "b.txt").is_file()
    assert (tmp_path / "labels" / "neg.txt").read_text() == ""           # negatives get an empty file
    assert (tmp_path / "labels" / "classes.txt").read_text().split() == ["nut", "bolt"]  # sorted by id
    back = yolo_to_coco(images, tmp_path / "labels", ["nut", "bolt"])
    assert_same_boxes(src, back)
    assert [c["id"] for c in back["categories"]] == [1, 2]
    # the result is a clean COCO split for the dataset
    (tmp_path / "back.json").write_text(json.dumps(back))
    s = load_coco(tmp_path / "back.json", images)
    assert s.report.problems == 0 and s.report.images == 4 and s.report.negatives == 1 and s.report.boxes == 9


def test_round_trip_through_the_cli(tmp_path, capsys):
    images = write_images(tmp_path / "images")
    src = coco_doc(seed=1)
    (tmp_path / "in.json").write_text(json.dumps(src))
    assert main(["coco2yolo", "--json", str(tmp_path / "in.json"), "--out", str(tmp_path / "labels")]) == 0
    # without --names, classes.txt beside the labels is used
    assert main(["yolo", "--images", str(images), "--labels", str(tmp_path / "labels"),
                 "--out", str(tmp_path / "out" / "back.json")]) == 0
    assert "4 images (1 without boxes), 9 boxes, 2 classes" in capsys.readouterr().out
    assert_same_boxes(src, json.loads((tmp_path / "out" / "back.json").read_text()))


def test_coco_to_yolo_clips_and_counts(tmp_path):
    doc = coco_doc()
    doc["annotations"] = [
        {"id": 1, "image_id": 10, "category_id": 4, "bbox": [-5, 10, 20, 10]},   # clipped at x = 0
        {"id": 2, "image_id": 10, "category_id": 4, "bbox": [60, 10, 5, 5]},     # right of the 53 px image
        {"id": 3, "image_id": 10, "category_id": 9, "bbox": [5, 5, 5, 5], "iscrowd": 1}]
    (tmp_path / "in.json").write_text(json.dumps(doc))
    counts = coco_to_yolo(tmp_path / "in.json", tmp_path / "labels")
    assert (counts["boxes"], counts["clipped"], counts["dropped"], counts["crowd"]) == (1, 1, 1, 1)
    cls, cx, cy, w, h = (float(v) for v in (tmp_path / "labels" / "a.txt").read_text().split())
    np.testing.assert_allclose([cls, cx * 53, cy * 37, w * 53, h * 37], [0, 7.5, 15, 15, 10], atol=1e-5)


def test_coco_to_yolo_rejects_bad_records(tmp_path):
    doc = coco_doc()
    doc["images"][1]["file_name"] = "../escape.png"
    doc["annotations"][0]["category_id"] = 77
    (tmp_path / "in.json").write_text(json.dumps(doc))
    with pytest.raises(ConvertError) as e:
        coco_to_yolo(tmp_path / "in.json", tmp_path / "labels")
    msg = str(e.value)
    assert "images[1]" in msg and "annotation id 100" in msg and str(tmp_path / "in.json") in msg
    assert not (tmp_path / "labels").exists()  # nothing written


def write_yolo(root: Path, labels: dict[str, str]) -> tuple[Path, Path]:
    images = write_images(root / "images", [("a.jpg", 50, 40), ("b.jpg", 50, 40)])
    for name, text in labels.items():
        (root / "labels" / name).parent.mkdir(parents=True, exist_ok=True)
        (root / "labels" / name).write_text(text)
    return images, root / "labels"


@pytest.mark.parametrize("line, words", [
    ("0 0.5 0.5 0.2", "expected 5 values 'class cx cy w h' or a polygon 'class x1 y1 x2 y2 x3 y3 ...', got 4"),
    ("0 0.5 0.5 0.2 0.2 0.7", "expected 5 values 'class cx cy w h' or a polygon 'class x1 y1 x2 y2 x3 y3 ...', got 6"),
    ("0 0.1 0.1 0.3 0.1 1.2 0.4", "polygon x y ['0.1', '0.1', '0.3', '0.1', '1.2', '0.4'] must be normalised"),
    ("0 0.1 0.1 0.3 0.1 0.2 0.1", "polygon ['0.1', '0.1', '0.3', '0.1', '0.2', '0.1'] has zero width or height"),
    ("0 0.5 half 0.2 0.2", "non-numeric value"),
    ("0 0.5 1.2 0.2 0.2", "cx cy w h ['0.5', '1.2', '0.2', '0.2'] must be normalised to 0..1"),
    ("0 -0.1 0.5 0.2 0.2", "cx cy w h ['-0.1', '0.5', '0.2', '0.2'] must be normalised to 0..1"),
    ("3 0.5 0.5 0.2 0.2", "class 3 is not an integer in 0..1"),
    ("0.5 0.5 0.5 0.2 0.2", "class 0.5 is not an integer"),
    ("1 0.5 0.5 0 0.2", "zero width or height"),
])
def test_malformed_yolo_lines_name_file_and_line(tmp_path, line, words):
    images, labels = write_yolo(tmp_path, {"a.txt": f"0 0.5 0.5 0.1 0.1\n\n{line}\n"})
    with pytest.raises(ConvertError, match="1 problem") as e:
        yolo_to_coco(images, labels, ["x", "y"])
    assert f"{labels / 'a.txt'} line 3: {words}" in str(e.value)


def test_yolo_segment_lines_become_their_enclosing_box(tmp_path):
    images, labels = write_yolo(tmp_path, {"a.txt": "1 0.1 0.2 0.5 0.25 0.3 0.75 0.2 0.5\n"})  # 50x40 image
    doc = yolo_to_coco(images, labels, ["x", "y"])
    np.testing.assert_allclose(doc["annotations"][0]["bbox"], [5, 8, 20, 22], atol=1e-9)
    assert doc["annotations"][0]["category_id"] == 2


def test_yolo_problems_all_reported_and_nothing_written(tmp_path, capsys):
    images, labels = write_yolo(tmp_path, {"a.txt": "0 0.5 0.5\n", "b.txt": "0 2 0.5 0.1 0.1\n",
                                           "orphan.txt": "0 0.5 0.5 0.1 0.1\n"})
    out = tmp_path / "out.json"
    rc = main(["yolo", "--images", str(images), "--labels", str(labels), "--names", "x,y", "--out", str(out)])
    err = capsys.readouterr().err
    assert rc == 2 and not out.exists()
    assert "3 problem(s)" in err and "a.txt line 1" in err and "b.txt line 1" in err
    assert f"{labels / 'orphan.txt'}: no image for this label file" in err
    # no names anywhere: a clear error, not a guess
    assert main(["yolo", "--images", str(images), "--labels", str(labels), "--out", str(out)]) == 2
    assert "--names" in capsys.readouterr().err


def test_names_from_list_or_file(tmp_path):
    assert parse_names("a, b,c") == ["a", "b", "c"]
    f = tmp_path / "names.txt"
    f.write_text("car\n\ntruck\n")
    assert parse_names(str(f)) == ["car", "truck"]
    with pytest.raises(ConvertError, match="repeated"):
        parse_names("a,b,a")
    f.write_text("\n")
    with pytest.raises(ConvertError, match="no class names"):
        parse_names(str(f))


def voc_xml(filename: str | None, size: tuple[int, int] | None, objects: list[tuple]) -> str:
    """objects: (name, xmin, ymin, xmax, ymax[, difficult])."""
    parts = ["<annotation>", "<folder>VOC</folder>"]
    if filename:
        parts.append(f"<filename>{filename}</filename>")
    if size:
        parts.append(f"<size><width>{size[0]}</width><height>{size[1]}</height><depth>3</depth></size>")
    for name, x1, y1, x2, y2, *diff in objects:
        parts.append(f"<object><name>{name}</name><pose>Unspecified</pose><truncated>0</truncated>"
                     f"<difficult>{diff[0] if diff else 0}</difficult><bndbox><xmin>{x1}</xmin><ymin>{y1}</ymin>"
                     f"<xmax>{x2}</xmax><ymax>{y2}</ymax></bndbox></object>")
    return "\n".join(parts + ["</annotation>"])


def write_voc(root: Path, extra: dict[str, str] | None = None) -> tuple[Path, Path]:
    images = write_images(root / "JPEGImages", [("001.jpg", 60, 40), ("002.jpg", 30, 50), ("003.jpg", 20, 20)])
    xml = root / "Annotations"
    xml.mkdir(parents=True, exist_ok=True)
    files = {"001.xml": voc_xml("001.jpg", (60, 40), [("dog", 1, 1, 10, 20), ("cat", 5, 6, 60, 40, 1)]),
             "002.xml": voc_xml(None, (30, 50), [("cat", 3, 4, 3, 4)]),  # no <filename>: found by stem
             "003.xml": voc_xml("003.jpg", (20, 20), []),                 # a negative
             **(extra or {})}
    for name, text in files.items():
        (xml / name).write_text(text)
    return xml, images


def test_voc_to_coco(tmp_path):
    xml, images = write_voc(tmp_path)
    doc = voc_to_coco(xml, images)
    assert [c["name"] for c in doc["categories"]] == ["cat", "dog"]  # found classes, sorted
    assert [(im["file_name"], im["width"], im["height"]) for im in doc["images"]] == [
        ("001.jpg", 60, 40), ("002.jpg", 30, 50), ("003.jpg", 20, 20)]
    got = {(a["image_id"], a["category_id"]): (a["bbox"], a.get("difficult", 0)) for a in doc["annotations"]}
    # VOC pixels are 1-based and inclusive: xmin 1..xmax 10 covers x in [0, 10)
    assert got == {(1, 2): ([0, 0, 10, 20], 0), (1, 1): ([4, 5, 56, 35], 1), (2, 1): ([2, 3, 1, 1], 0)}
    edges = voc_to_coco(xml, images, names=["dog", "cat"], coords="edges", skip_difficult=True)
    assert [c["name"] for c in edges["categories"]] == ["dog", "cat"]
    assert sorted(a["bbox"] for a in edges["annotations"]) == [[1, 1, 9, 19], [3, 4, 0, 0]]
    (tmp_path / "voc.json").write_text(json.dumps(doc))
    s = load_coco(tmp_path / "voc.json", images)
    assert s.report.problems == 0 and s.report.images == 3 and s.report.boxes == 3 and s.report.negatives == 1


@pytest.mark.parametrize("name, text, words", [
    ("004.xml", voc_xml("001.jpg", None, [("dog", 1, 1, 5, 5)]), "004.xml: <size> with positive integer"),
    ("004.xml", voc_xml("001.jpg", (0, 40), []), "004.xml: <size> with positive integer"),
    ("004.xml", voc_xml("001.jpg", (60, 40), [("dog", 1, 1, 5, 5), ("bird", 1, 1, 5, 5)]),
     "004.xml: object 1: class 'bird' is not in --names ['dog', 'cat']"),
    ("004.xml", voc_xml("001.jpg", (60, 40), [("dog", 1, 1, "x", 5)]), "004.xml: object 0 (dog): <bndbox> needs"),
    ("004.xml", voc_xml("001.jpg", (60, 40), [("dog", 9, 1, 5, 5)]), "004.xml: object 0 (dog): xmax < xmin"),
    ("004.xml", voc_xml("nothere.jpg", (60, 40), []), "004.xml: image nothere.jpg not found"),
    ("004.xml", "<annotation><size><width>3</width>\n<oops></annotation>", "004.xml line 2 column"),
], ids=["no-size", "zero-size", "unknown-class", "bad-number", "xmax<xmin", "no-image", "bad-xml"])
def test_malformed_voc(tmp_path, name, text, words, capsys):
    xml, images = write_voc(tmp_path, {name: text})
    with pytest.raises(ConvertError) as e:
        voc_to_coco(xml, images, names=["dog", "cat"])
    assert words in str(e.value)
    out = tmp_path / "voc.json"
    rc = main(["voc", "--xml", str(xml), "--images", str(images), "--names", "dog,cat", "--out", str(out)])
    assert rc == 2 and not out.exists() and words in capsys.readouterr().err

"""VisDrone-DET, DOTA, xView and TinyPerson -> COCO json, on small files in each set's own format
(and DOTA_devkit's real example labels when /tmp/dota_devkit is there)."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from utils.data.coco import load_coco
from utils.data.convert.cli import main
from utils.data.convert.common import ConvertError
from utils.data.convert.dota import VERSIONS, dota_to_coco
from utils.data.convert.tinyperson import tinyperson_to_coco
from utils.data.convert.visdrone import CLASSES as VISDRONE, visdrone_to_coco
from utils.data.convert.xview import CLASSES as XVIEW, xview_to_coco

DOTA_EXAMPLE = Path("/tmp/dota_devkit/example")  # CAPTAIN-WHU/DOTA_devkit's example/, fetched, never committed


def image(path: Path, w: int, h: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), np.full((h, w, 3), 70, np.uint8))
    return path


def by_image(doc: dict) -> dict[str, list[dict]]:
    files = {im["id"]: im["file_name"] for im in doc["images"]}
    out: dict[str, list[dict]] = {f: [] for f in files.values()}
    for a in doc["annotations"]:
        out[files[a["image_id"]]].append(a)
    return out


def loads_clean(doc: dict, images: Path, tmp_path: Path):
    (tmp_path / "out.json").write_text(json.dumps(doc))
    s = load_coco(tmp_path / "out.json", images)
    assert not s.report.problems - s.report.counts["crowd ignored"], s.report.messages
    return s


# ------------------------------------------------------------------------------------------------ VisDrone
# VisDrone2019-DET ground truth: left,top,width,height,score,category,truncation,occlusion (the release ends
# some lines with a comma)
VISDRONE_TXT = ("684,8,273,116,0,0,0,0\n"        # ignored region
                "406,119,265,70,0,0,0,0\n"       # ignored region
                "255,22,119,128,1,4,0,0\n"       # car
                "1,30,10,20,1,1,0,1,\n"          # pedestrian, trailing comma
                "30,40,8,9,0,2,0,2\n"            # people, score 0: not evaluated
                "50,60,12,5,1,11,1,0\n"          # others
                "70,60,0,5,1,10,0,0\n")          # zero width: left out, listed


def write_visdrone(root: Path, extra: dict[str, str] | None = None) -> tuple[Path, Path]:
    image(root / "images" / "0000002_00005_d_0000014.jpg", 960, 540)
    image(root / "images" / "0000003_00231_d_0000016.jpg", 64, 48)  # no txt: a negative
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    for name, text in {"0000002_00005_d_0000014.txt": VISDRONE_TXT, **(extra or {})}.items():
        (root / "annotations" / name).write_text(text)
    return root / "annotations", root / "images"


def test_visdrone(tmp_path):
    labels, images = write_visdrone(tmp_path)
    doc = visdrone_to_coco(labels, images)
    assert [c["name"] for c in doc["categories"]] == list(VISDRONE) and len(VISDRONE) == 10
    anns = by_image(doc)["0000002_00005_d_0000014.jpg"]
    boxes = [(a["category_id"], a["bbox"], a["occlusion"]) for a in anns if not a["iscrowd"]]
    assert boxes == [(4, [255, 22, 119, 128], 0), (1, [1, 30, 10, 20], 1)]
    crowd = [a for a in anns if a["iscrowd"]]
    assert all(a["ignore"] == 1 for a in crowd)
    # each ignored region (and 'others') once per class; the not-evaluated box once, of its own class
    regions = {}
    for a in crowd:
        regions.setdefault((tuple(a["bbox"]), a["visdrone_category"]), []).append(a["category_id"])
    assert regions == {((684, 8, 273, 116), 0): list(range(1, 11)), ((406, 119, 265, 70), 0): list(range(1, 11)),
                       ((50, 60, 12, 5), 11): list(range(1, 11)), ((30, 40, 8, 9), 2): [2]}
    assert doc["info"]["warnings"] == [f"{labels / '0000002_00005_d_0000014.txt'} line 7: zero width or height "
                                       f"0x5; left out"]
    assert by_image(doc)["0000003_00231_d_0000016.jpg"] == []
    dropped = visdrone_to_coco(labels, images, others="drop")
    assert not any(a["visdrone_category"] == 11 for a in dropped["annotations"])
    s = loads_clean(doc, images, tmp_path)
    assert s.report.images == 2 and s.report.boxes == 2


@pytest.mark.parametrize("line, words", [
    ("1,2,3,4,1,1,0", "expected 8 comma-separated values"),
    ("1,2,3,x,1,1,0,0", "non-numeric value"),
    ("1,2,3,4,0.87,1,-1,-1", "score 0.87 is not 0 or 1 (ground truth; is this a detection file?)"),
    ("1,2,3,4,1,12,0,0", "object_category 12 is not an integer in 0..11"),
])
def test_visdrone_bad_lines(tmp_path, capsys, line, words):
    labels, images = write_visdrone(tmp_path, {"0000003_00231_d_0000016.txt": f"1,2,3,4,1,1,0,0\n{line}\n"})
    with pytest.raises(ConvertError, match="1 problem"):
        visdrone_to_coco(labels, images)
    out = tmp_path / "v.json"
    assert main(["visdrone", "--labels", str(labels), "--images", str(images), "--out", str(out)]) == 2
    assert f"{labels / '0000003_00231_d_0000016.txt'} line 2: {words}" in capsys.readouterr().err
    assert not out.exists()


# ------------------------------------------------------------------------------------------------ DOTA
DOTA_TXT = ("imagesource:GoogleEarth\n"
            "gsd:0.146343590398\n"
            "20 10 60 14 58 34 18 30 small-vehicle 0\n"     # a rotated rectangle
            "5 40 25 40 25 50 5 50 plane 1\n"               # difficult
            "90 70 110 70 110 90 90 90 ship 0\n")           # crosses the 100x80 image: clipped


def write_dota(root: Path, text: str = DOTA_TXT, extra: dict[str, str] | None = None) -> tuple[Path, Path]:
    image(root / "images" / "P0001.png", 100, 80)
    (root / "labelTxt").mkdir(parents=True, exist_ok=True)
    for name, t in {"P0001.txt": text, **(extra or {})}.items():
        (root / "labelTxt" / name).write_text(t)
    return root / "labelTxt", root / "images"


def test_dota(tmp_path):
    labels, images = write_dota(tmp_path)
    doc = dota_to_coco(labels, images)
    assert [c["name"] for c in doc["categories"]] == list(VERSIONS["1.0"]) and len(VERSIONS["1.0"]) == 15
    assert doc["images"][0] == {"id": 1, "file_name": "P0001.png", "width": 100, "height": 80,
                                "imagesource": "GoogleEarth", "gsd": 0.146343590398}
    cat = {c["id"]: c["name"] for c in doc["categories"]}
    got = [(cat[a["category_id"]], a["bbox"], a["difficult"], a["iscrowd"], a["segmentation"])
           for a in doc["annotations"]]
    assert got == [("small-vehicle", [18, 10, 42, 24], 0, 0, [[20, 10, 60, 14, 58, 34, 18, 30]]),
                   ("plane", [5, 40, 20, 10], 1, 1, [[5, 40, 25, 40, 25, 50, 5, 50]]),
                   ("ship", [90, 70, 10, 10], 0, 0, [[90, 70, 110, 70, 110, 90, 90, 90]])]
    assert doc["info"]["warnings"] == ["1 box(es) clipped to their image"]
    keep = dota_to_coco(labels, images, keep_difficult=True)
    assert [a["iscrowd"] for a in keep["annotations"]] == [0, 0, 0]
    assert [a["difficult"] for a in keep["annotations"]] == [0, 1, 0]
    loads_clean(doc, images, tmp_path)


def test_dota_versions_and_headerless_lines(tmp_path):
    # no header, no difficult column (DOTA's devkit reads it as 0), a v2.0 class
    labels, images = write_dota(tmp_path, "1 1 9 1 9 9 1 9 helipad\n2 2 8 2 8 8 2 8 container-crane 0\n")
    doc = dota_to_coco(labels, images)
    assert len(doc["categories"]) == 18 and doc["images"][0]["gsd"] is None
    assert [a["difficult"] for a in doc["annotations"]] == [0, 0]
    with pytest.raises(ConvertError, match=r"P0001.txt line 1: category 'helipad' is not a DOTA v1.5 class"):
        dota_to_coco(labels, images, version="1.5")


@pytest.mark.parametrize("line, words", [
    ("1 2 3 4 5 6 7 plane", "expected 'x1 y1 x2 y2 x3 y3 x4 y4 category difficult', got 8 values"),
    ("1 2 3 4 5 6 7 x plane 0", "non-numeric coordinate"),
    ("1 2 3 4 5 6 7 8 plane hard", "difficult 'hard' is not a non-negative integer"),
    ("1 2 3 4 5 6 7 8 tank 0", "category 'tank' is not a DOTA (any version) class"),
    ("200 200 210 200 210 210 200 210 plane 0", "has no area inside the 100x80 image"),
])
def test_dota_bad_lines(tmp_path, capsys, line, words):
    labels, images = write_dota(tmp_path, DOTA_TXT + line + "\n", {"P9999.txt": "1 1 2 1 2 2 1 2 plane 0\n"})
    out = tmp_path / "d.json"
    assert main(["dota", "--labels", str(labels), "--images", str(images), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"{labels / 'P0001.txt'} line 6: " in err and words in err and "1 problem" in err and not out.exists()


def test_dota_label_without_image_is_listed(tmp_path, capsys):
    labels, images = write_dota(tmp_path, extra={"P9999.txt": "1 1 2 1 2 2 1 2 plane 0\n"})
    out = tmp_path / "d.json"
    assert main(["dota", "--labels", str(labels), "--images", str(images), "--out", str(out)]) == 0
    assert f"{labels / 'P9999.txt'}: no image P9999.* under {images}; skipped" in capsys.readouterr().err


@pytest.mark.skipif(not DOTA_EXAMPLE.is_dir(), reason="DOTA_devkit example/ not fetched to /tmp/dota_devkit")
def test_dota_devkit_example(tmp_path):
    """The two real example images: every object line becomes one box enclosing its polygon."""
    labels = tmp_path / "labelTxt"
    labels.mkdir()
    lines = {}
    for stem in ("P0706", "P1888"):
        shutil.copy(DOTA_EXAMPLE / "labelTxt" / f"{stem}.txt", labels)
        lines[stem] = [ln.split() for ln in (labels / f"{stem}.txt").read_text().splitlines()
                       if ln.strip() and ":" not in ln]
    doc = dota_to_coco(labels, DOTA_EXAMPLE / "images")
    anns = by_image(doc)
    for stem, objs in lines.items():
        got = anns[f"{stem}.png"]
        assert len(got) == len(objs) > 50
        im = next(i for i in doc["images"] if i["file_name"] == f"{stem}.png")
        assert im["imagesource"] == "GoogleEarth" and im["gsd"] > 0.2
        for a, cols in zip(got, objs):
            xs, ys = [float(v) for v in cols[0:8:2]], [float(v) for v in cols[1:8:2]]
            x1, y1 = max(min(xs), 0), max(min(ys), 0)
            x2, y2 = min(max(xs), im["width"]), min(max(ys), im["height"])
            assert a["bbox"] == [x1, y1, x2 - x1, y2 - y1] and a["difficult"] == int(cols[9])
            assert a["iscrowd"] == int(cols[9]) and doc["categories"][a["category_id"] - 1]["name"] == cols[8]
    loads_clean(doc, DOTA_EXAMPLE / "images", tmp_path)


# ------------------------------------------------------------------------------------------------ xView
def xview_feature(image_id: str, type_id, bounds: str, fid: int = 1) -> dict:
    return {"type": "Feature",
            "geometry": {"type": "Polygon", "coordinates": [[[-122.3, 37.8], [-122.3, 37.81], [-122.29, 37.81],
                                                              [-122.29, 37.8], [-122.3, 37.8]]]},
            "properties": {"bounds_imcoords": bounds, "edited_by": "wwoscarbecerril", "cat_id": 1,
                           "type_id": type_id, "ingest_time": "2017/07/24 12:49:09.118+00", "index_right": 2356,
                           "image_id": image_id, "point_geom": "0101000020E6100000", "feature_id": fid,
                           "grade": 1}}


def write_xview(root: Path, features: list[dict]) -> tuple[Path, Path]:
    image(root / "train_images" / "1036.tif", 120, 100)
    image(root / "train_images" / "2355.tif", 50, 50)
    (root / "xView_train.geojson").write_text(json.dumps({"type": "FeatureCollection", "features": features}))
    return root / "xView_train.geojson", root / "train_images"


def test_xview(tmp_path):
    geo, images = write_xview(tmp_path, [
        xview_feature("1036.tif", 73, "10,20,40,60"),
        xview_feature("1036.tif", 18, "100,90,130,110"),   # clipped to 120x100
        xview_feature("1036.tif", 75, "1,1,5,5"),           # not one of the 60 classes
        xview_feature("1036.tif", 18, "130,5,140,9"),       # outside the image
        xview_feature("9999.tif", 18, "1,1,5,5"),           # an image of another split
    ])
    doc = xview_to_coco(geo, images)
    assert len(XVIEW) == 60 and [c["id"] for c in doc["categories"]] == sorted(XVIEW)
    assert {c["id"]: c["name"] for c in doc["categories"]}[73] == "Building"
    got = {f: [(a["category_id"], a["bbox"]) for a in v] for f, v in by_image(doc).items()}
    assert got == {"1036.tif": [(73, [10, 20, 30, 40]), (18, [100, 90, 20, 10])], "2355.tif": []}
    w = doc["info"]["warnings"]
    assert any("1 feature(s) of 1 image(s) not under" in x and "9999.tif" in x for x in w)
    assert any("type_id outside the 60 classes skipped: {75: 1}" in x for x in w)
    assert "1 box(es) with no area inside their image dropped" in w and "1 box(es) clipped to their image" in w
    s = loads_clean(doc, images, tmp_path)
    assert s.cat_ids == sorted(XVIEW) and s.report.boxes == 2


@pytest.mark.parametrize("feature, words", [
    (xview_feature("1036.tif", 18, "1,2,3", fid=7), "features[1] (feature_id 7): bounds_imcoords '1,2,3' is not"),
    (xview_feature("1036.tif", "car", "1,2,3,4", fid=7), "features[1] (feature_id 7): type_id 'car' is not an"),
    ({"type": "Feature"}, "features[1]: no 'properties' object"),
])
def test_xview_bad_features(tmp_path, capsys, feature, words):
    geo, images = write_xview(tmp_path, [xview_feature("1036.tif", 73, "10,20,40,60"), feature])
    out = tmp_path / "x.json"
    assert main(["xview", "--geojson", str(geo), "--images", str(images), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"{geo}: {words}" in err and not out.exists()


# ------------------------------------------------------------------------------------------------ TinyPerson
def tinyperson_doc() -> dict:
    def ann(aid, iid, cat, bbox, **flags):
        return {"segmentation": [[bbox[0], bbox[1], bbox[0] + bbox[2], bbox[1], bbox[0] + bbox[2], bbox[1] + bbox[3],
                                  bbox[0], bbox[1] + bbox[3]]], "bbox": bbox, "category_id": cat,
                "area": bbox[2] * bbox[3], "iscrowd": 0, "image_id": iid, "id": aid,
                **{"ignore": False, "uncertain": False, "logo": False, "in_dense_image": False, **flags}}
    return {"type": "instance",
            "images": [{"file_name": "labeled_images/bb_V0005_I0006680.jpg", "height": 60, "width": 80, "id": 0},
                       {"file_name": "labeled_images/bb_V0032_I0001640.jpg", "height": 60, "width": 80, "id": 1}],
            "categories": [{"supercategory": "person", "id": 1, "name": "sea_person"},
                           {"supercategory": "person", "id": 2, "name": "earth_person"}],
            "annotations": [ann(1, 0, 1, [10.5, 20.0, 6.5, 8.0]),
                            ann(2, 0, 2, [30.0, 30.0, 12.0, 10.0], ignore=True),
                            ann(3, 1, 1, [5.0, 5.0, 3.0, 4.0], uncertain=True, in_dense_image=True),
                            ann(4, 1, 2, [40.0, 10.0, 5.0, 9.0], logo=True)]}


def write_tinyperson(root: Path, doc: dict) -> tuple[Path, Path]:
    for im in tinyperson_doc()["images"]:
        image(root / "train" / im["file_name"], 80, 60)
    (root / "tiny_set_train.json").write_text(json.dumps(doc))
    return root / "tiny_set_train.json", root / "train"


def test_tinyperson(tmp_path):
    src, images = write_tinyperson(tmp_path, tinyperson_doc())
    doc = tinyperson_to_coco(src, images)
    assert doc["categories"] == [{"id": 1, "name": "person", "supercategory": "person"}]
    got = [(a["id"], a["image_id"], a["category_id"], a["bbox"], a["iscrowd"], a["ignore"], a["uncertain"],
            a["in_dense_image"], a["logo"]) for a in doc["annotations"]]
    assert got == [(1, 0, 1, [10.5, 20.0, 6.5, 8.0], 0, 0, 0, 0, 0), (2, 0, 1, [30, 30, 12, 10], 1, 1, 0, 0, 0),
                   (3, 1, 1, [5, 5, 3, 4], 0, 0, 1, 1, 0), (4, 1, 1, [40, 10, 5, 9], 0, 0, 0, 0, 1)]
    both = tinyperson_to_coco(src, images, keep_categories=True)
    assert [c["name"] for c in both["categories"]] == ["sea_person", "earth_person"]
    assert [a["category_id"] for a in both["annotations"]] == [1, 2, 1, 2]
    s = loads_clean(doc, images, tmp_path)
    assert s.report.images == 2 and s.report.boxes == 3


def test_tinyperson_bad_records(tmp_path, capsys):
    doc = tinyperson_doc()
    doc["annotations"][0]["bbox"] = [1, 2, 0, 4]
    doc["annotations"][1]["uncertain"] = 2
    doc["images"][1]["file_name"] = "labeled_images/missing.jpg"
    src, images = write_tinyperson(tmp_path, doc)
    out = tmp_path / "t.json"
    assert main(["tinyperson", "--json", str(src), "--images", str(images), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "annotation id 1: bbox [1, 2, 0, 4] is not [x, y, w, h] with positive w and h" in err
    assert "annotation id 2: uncertain=2 must be 0 or 1" in err
    assert "image id 1:" in err and "missing.jpg" in err and not out.exists()


def test_unreadable_label_file_is_named(tmp_path):
    labels, images = write_visdrone(tmp_path, {"0000003_00231_d_0000016.txt": ""})
    (labels / "0000003_00231_d_0000016.txt").write_bytes(b"1,2,3,4,1,1,0,0\n\xff\xfe\x00bad\n")
    with pytest.raises(ConvertError, match=r"0000003_00231_d_0000016.txt: cannot read \(UnicodeDecodeError"):
        visdrone_to_coco(labels, images)
    (labels / "0000003_00231_d_0000016.txt").write_bytes("\ufeff1,2,3,4,1,1,0,0\n".encode())  # a BOM is not data
    assert len(by_image(visdrone_to_coco(labels, images))["0000003_00231_d_0000016.jpg"]) == 1

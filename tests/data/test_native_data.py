"""Data YAML splits in a data set's own format ({format: visdrone|dota|...}): converted once, cached
outside the data folder, converted again when a label changes."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml

from tests.data.test_convert_aerial import (DOTA_EXAMPLE, tinyperson_doc, write_dota, write_tinyperson, write_visdrone,
                                            write_xview, xview_feature)
from tests.data.test_yolo_data import snapshot
from utils.data.cache import ENV_CACHE
from utils.data.coco import DatasetError, load_coco
from utils.data.config import load_data_config


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    d = tmp_path / "cache"
    monkeypatch.setenv(ENV_CACHE, str(d))
    return d


def write_yaml(root: Path, train: dict, val: dict | None = None) -> Path:
    p = root / "data.yaml"
    p.write_text(yaml.safe_dump({"path": ".", "train": train, "val": val or train}))
    return p


def test_visdrone_yaml_cached_and_invalidated(tmp_path, cache):
    data = tmp_path / "VisDrone"
    labels, _ = write_visdrone(data)
    y = write_yaml(data, {"format": "visdrone", "labels": "annotations", "images": "images"})
    before = snapshot(data)
    cfg = load_data_config(y)
    assert snapshot(data) == before  # nothing written into the data folder
    assert cfg["names"][3] == "car" and Path(cfg["train"]["json"]).parent == cache / "visdrone"
    assert cfg["train"]["images"] == str(data / "images")
    assert any("line 7: zero width or height" in n for n in cfg["train"]["notes"])
    s = load_coco(cfg["train"]["json"], cfg["train"]["images"])
    doc = json.loads(Path(cfg["train"]["json"]).read_text())
    assert s.report.boxes == 2 and sum(a["iscrowd"] for a in doc["annotations"]) == 31  # 3 regions x 10 + 1
    first = cfg["train"]["json"]
    stamp = os.stat(first).st_mtime_ns
    assert load_data_config(y)["train"]["json"] == first and os.stat(first).st_mtime_ns == stamp
    txt = labels / "0000002_00005_d_0000014.txt"
    txt.write_text(txt.read_text().replace("255,22,119,128,1,4", "255,22,119,128,1,5"))  # car -> van
    again = load_data_config(y)["train"]["json"]
    assert again != first and not Path(first).exists()
    cats = [a["category_id"] for a in json.loads(Path(again).read_text())["annotations"] if not a["iscrowd"]]
    assert cats == [5, 1]


def test_dota_xview_tinyperson_yaml(tmp_path, cache):
    write_dota(tmp_path / "dota")
    cfg = load_data_config(write_yaml(tmp_path / "dota", {"format": "dota", "labels": "labelTxt", "images": "images",
                                                          "version": "1.5", "keep_difficult": True}))
    assert cfg["nc"] == 16 and "1 box(es) clipped to their image" in cfg["train"]["notes"]
    assert [a["iscrowd"] for a in json.loads(Path(cfg["train"]["json"]).read_text())["annotations"]] == [0, 0, 0]
    write_xview(tmp_path / "xview", [xview_feature("1036.tif", 73, "10,20,40,60")])
    cfg = load_data_config(write_yaml(tmp_path / "xview", {"format": "xview", "geojson": "xView_train.geojson",
                                                           "images": "train_images"}))
    assert cfg["nc"] == 60 and 73 in cfg["cat_ids"]
    write_tinyperson(tmp_path / "tiny", tinyperson_doc())
    cfg = load_data_config(write_yaml(tmp_path / "tiny", {"format": "tinyperson", "json": "tiny_set_train.json",
                                                          "images": "train"}))
    assert cfg["names"] == ["person"]


@pytest.mark.parametrize("entry, words", [
    ({"format": "kitti", "labels": "annotations", "images": "images"}, "format 'kitti' is not one of"),
    ({"format": "visdrone", "images": "images"}, "missing ['labels']"),
    ({"format": "visdrone", "labels": "annotations", "images": "images", "other": 1}, "unknown ['other']"),
    ({"format": "visdrone", "labels": "nothere", "images": "images"}, "labels"),
    ({"format": "dota", "labels": "annotations", "images": "images", "keep_difficult": "yes"},
     "keep_difficult must be a bool"),
])
def test_bad_entries(tmp_path, cache, entry, words):
    data = tmp_path / "VisDrone"
    write_visdrone(data)
    y = write_yaml(data, entry)
    with pytest.raises(DatasetError) as e:
        load_data_config(y)
    assert str(y) in str(e.value) and words in str(e.value)


def test_bad_label_line_fails_the_load_with_file_and_line(tmp_path, cache):
    data = tmp_path / "VisDrone"
    labels, _ = write_visdrone(data, {"0000003_00231_d_0000016.txt": "1,2,3,4,1,1,0\n"})
    with pytest.raises(DatasetError, match=f"{labels / '0000003_00231_d_0000016.txt'} line 1: expected 8"):
        load_data_config(write_yaml(data, {"format": "visdrone", "labels": "annotations", "images": "images"}))
    assert not list(cache.rglob("*.json"))


@pytest.mark.skipif(not DOTA_EXAMPLE.is_dir(), reason="DOTA_devkit example/ not fetched to /tmp/dota_devkit")
def test_dota_devkit_example_as_a_data_yaml(tmp_path, cache):
    y = tmp_path / "dota.yaml"
    split = {"format": "dota", "labels": "labelTxt", "images": "images", "version": "1.0"}
    y.write_text(yaml.safe_dump({"path": str(DOTA_EXAMPLE), "train": split, "val": split}))
    cfg = load_data_config(y)
    assert sum("no image" in n for n in cfg["train"]["notes"]) == 5  # 7 label files, 2 images
    s = load_coco(cfg["val"]["json"], cfg["val"]["images"])
    assert s.report.images == 2 and s.report.boxes > 500


def test_shipped_data_yamls_read_the_released_layouts(tmp_path, cache):
    """data/visdrone.yaml, data/dota.yaml and data/tinyperson.yaml on each set's folder layout as released."""
    root = Path(__file__).resolve().parents[2] / "data"
    for split in ("train", "val"):
        write_visdrone(tmp_path / "VisDrone" / f"VisDrone2019-DET-{split}")
        write_dota(tmp_path / "DOTA" / split)
    tiny = tmp_path / "tiny_set"
    (tiny / "annotations").mkdir(parents=True)
    for split in ("train", "test"):
        src, images = write_tinyperson(tmp_path / f"tp_{split}", tinyperson_doc())
        src.rename(tiny / "annotations" / f"tiny_set_{split}.json")
        images.rename(tiny / split)
    for name, nc in (("visdrone", 10), ("dota", 15), ("tinyperson", 1)):
        cfg = load_data_config(root / f"{name}.yaml", root=str(tmp_path))
        assert cfg["nc"] == nc and {"train", "val"} <= set(cfg)
        assert load_coco(cfg["val"]["json"], cfg["val"]["images"]).report.images >= 1

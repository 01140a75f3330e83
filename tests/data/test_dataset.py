"""COCO dataset validation: every bad-input case is named, counted, and skipped or fatal."""
from __future__ import annotations

import json
import logging
import re
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import yaml

from tests.conftest import make_coco
from utils.data.coco import DatasetError, load_coco
from utils.data.dataset import CocoDataset, collate_fn, main

ROOT = Path(__file__).resolve().parents[2]
CATS = [{"id": 1, "name": "a"}, {"id": 5, "name": "b"}]


def blank(h: int = 32, w: int = 48) -> np.ndarray:
    img = np.full((h, w, 3), 40, np.uint8)
    img[4:12, 6:20] = (0, 0, 255)
    return img


def write_split(root: Path, images: dict, anns: list[dict], records: list[dict] | None = None,
                cats: list[dict] | None = None) -> tuple[Path, Path]:
    """images: file name -> array (written with cv2) | bytes (written raw) | None (not written).
    records default to one per file, ids 1.., json size 48x32. Returns (json path, image folder)."""
    img_dir = root / "images"
    img_dir.mkdir(parents=True, exist_ok=True)
    for name, content in images.items():
        if isinstance(content, bytes):
            (img_dir / name).write_bytes(content)
        elif content is not None:
            assert cv2.imwrite(str(img_dir / name), content)
    if records is None:
        records = [{"id": i + 1, "file_name": n, "width": 48, "height": 32} for i, n in enumerate(images)]
    js = root / "instances.json"
    js.write_text(json.dumps({"images": records, "annotations": anns, "categories": cats or CATS}))
    return js, img_dir


def ann(aid: int, iid: int, bbox, cat: int = 1) -> dict:
    return {"id": aid, "image_id": iid, "category_id": cat, "bbox": bbox, "iscrowd": 0}


def test_clean_split_and_interface(tiny_coco):
    data = yaml.safe_load(tiny_coco.read_text())
    root = Path(data["path"])
    s = load_coco(root / data["train"]["json"], root / data["train"]["images"], split="train")
    rep = s.report
    assert rep.problems == 0 and rep.usable
    assert (rep.names, s.cat_ids) == (["square", "disc"], [3, 7])
    assert rep.images == 8 and rep.boxes == sum(len(b) for b in s.boxes) > 0
    assert sum(rep.buckets) == rep.boxes and sum(rep.per_class) == rep.boxes
    assert "problems: none" in rep.summary() and "8-16" in rep.summary()
    # items map back to the json boxes through meta: original = (letterboxed - pad) / ratio
    raw = json.loads((root / data["train"]["json"]).read_text())
    for rect in (False, True):
        ds = CocoDataset(s.json_path, s.img_dir, imgsz=96, batch_size=4, rect=rect, verbose=False)
        img, labels, path, meta = ds[0]
        assert img.dtype == torch.uint8 and img.shape[0] == 3
        want = np.array(sorted(a["bbox"] for a in raw["annotations"] if a["image_id"] == meta["image_id"]))
        (rw, rh), (pw, ph) = meta["ratio"], meta["pad"]
        lb = labels.numpy()
        got = np.stack([(lb[:, 1] - lb[:, 3] / 2 - pw) / rw, (lb[:, 2] - lb[:, 4] / 2 - ph) / rh,
                        lb[:, 3] / rw, lb[:, 4] / rh], 1)
        np.testing.assert_allclose(np.array(sorted(got.tolist())), want, atol=1e-3)
        imgs, targets, _, _ = collate_fn([ds[0], ds[1]])
        assert imgs.shape[0] == 2 and targets.shape[1] == 6 and set(targets[:, 0].tolist()) <= {0.0, 1.0}


def test_missing_and_corrupt_images_are_skipped_and_counted(tmp_path):
    png = cv2.imencode(".png", blank())[1].tobytes()
    images = {"ok.png": blank(), "gone.png": None, "garbage.jpg": b"this is not an image", "empty.png": b"",
              "neg.png": blank()}
    anns = [ann(1, 1, [6, 4, 14, 8]), ann(2, 2, [6, 4, 14, 8]), ann(3, 3, [1, 1, 5, 5]), ann(4, 4, [1, 1, 5, 5])]
    js, img_dir = write_split(tmp_path, images, anns)
    s = load_coco(js, img_dir)
    rep = s.report
    assert rep.counts["missing image"] == 1 and rep.counts["unreadable image"] == 2
    assert [Path(f).name for f in s.files] == ["ok.png", "neg.png"]
    assert rep.negatives == 1 and rep.boxes == 1 and rep.boxes_of_skipped == 3
    text = "\n".join(rep.messages)
    assert f"{js}: image id 2 ({img_dir / 'gone.png'}): file not found" in text
    assert f"image id 3 ({img_dir / 'garbage.jpg'}): cannot be read" in text
    assert "image id 4" in text and "empty.png" in text
    assert "boxes on skipped images (not used): 3" in rep.summary()

    # a PNG cut in half passes the header check; a full check decodes and catches it
    (img_dir / "half.png").write_bytes(png[: len(png) // 2])
    recs = [{"id": 1, "file_name": "ok.png", "width": 48, "height": 32},
            {"id": 2, "file_name": "half.png", "width": 48, "height": 32}]
    js2, _ = write_split(tmp_path, {}, [ann(1, 2, [6, 4, 14, 8])], records=recs)
    assert load_coco(js2, img_dir, check="header").report.images == 2
    full = load_coco(js2, img_dir, check="full").report
    assert full.images == 1 and full.counts["unreadable image"] == 1 and "half.png" in full.messages[0]


def test_image_that_fails_to_decode_later(tmp_path, caplog):
    """Training replaces it (warned and counted); evaluation gets a labelled-unreadable placeholder
    (warned, with the file named) that val leaves out."""
    png = cv2.imencode(".png", blank())[1].tobytes()
    images = {"ok.png": blank(), "half.png": png[: len(png) // 2]}
    js, img_dir = write_split(tmp_path, images, [ann(1, 1, [6, 4, 14, 8]), ann(2, 2, [6, 4, 14, 8])])
    ev = CocoDataset(str(js), str(img_dir), imgsz=64, verbose=False)
    log = logging.getLogger("smalldet")
    log.addHandler(caplog.handler)  # utils/logger.py turns off propagation to root once it is imported
    try:
        img, labels, path, meta = ev[1]
        assert meta["unreadable"] and meta["image_id"] == 2 and len(labels) == 0 and Path(path).name == "half.png"
        assert tuple(img.shape) == tuple(ev[0][0].shape)  # batches with its readable neighbours
        assert any(re.search(r"instances.json: image id 2: .*half.png.*left out", r.message) for r in caplog.records)
        caplog.clear()
        tr = CocoDataset(str(js), str(img_dir), imgsz=64, augment=True, hyp={"mosaic": 0.0}, verbose=False)
        for _ in range(3):
            img, labels, path, _ = tr[1]
            assert Path(path).name == "ok.png" and len(labels) == 1
    finally:
        log.removeHandler(caplog.handler)
    assert tr.box_stats()["unreadable_images"] == 3
    # warned once, counted every time (distinct records: with propagation on, root's caplog handler sees each twice)
    assert len({id(r) for r in caplog.records if "half.png" in r.message}) == 1


def test_grey_rgba_16bit_images_become_3_channel_uint8(tmp_path):
    h, w = 32, 48
    grey = np.full((h, w), 77, np.uint8)
    rgba = np.zeros((h, w, 4), np.uint8)
    rgba[..., :3] = (10, 20, 30)  # BGR
    rgba[:, : w // 2, 3] = 255     # left half opaque, right half transparent -> pad grey
    g16 = np.full((h, w), 0x8000 + 0x40, np.uint16)  # 16-bit 32832 -> 8-bit 128
    c16 = np.zeros((h, w, 3), np.uint16)
    c16[...] = (0x1000, 0x8000, 0xFF00)  # BGR -> 16, 128, 255
    images = {"grey.png": grey, "rgba.png": rgba, "g16.png": g16, "c16.png": c16}
    js, img_dir = write_split(tmp_path, images, [])
    ds = CocoDataset(str(js), str(img_dir), imgsz=48, stride=16, verbose=False)
    assert ds.report.problems == 0 and ds.report.images == 4
    assert {"L", "RGBA", "I;16"} <= set(ds.report.converted)
    out = {Path(ds[i][2]).name: ds[i][0] for i in range(len(ds))}
    for name, im in out.items():
        assert im.dtype == torch.uint8 and tuple(im.shape) == (3, 48, 48), name
    y = 8 + h // 2  # letterbox pads 8 rows above the 32-row image
    assert out["grey.png"][:, y, 5].tolist() == [77, 77, 77]
    assert out["rgba.png"][:, y, 5].tolist() == [30, 20, 10]       # RGB out
    assert out["rgba.png"][:, y, w - 5].tolist() == [114] * 3     # transparent: composited on grey
    assert out["g16.png"][:, y, 5].tolist() == [128] * 3
    assert out["c16.png"][:, y, 5].tolist() == [255, 128, 16]


def test_boxes_outside_zero_size_and_bad_bbox(tmp_path):
    anns = [ann(10, 1, [40, 20, 20, 20]),          # right/bottom part outside 48x32: clipped
            ann(11, 1, [-5, -3, 10, 10]),          # top-left outside: clipped
            ann(12, 1, [60, 5, 4, 4]),             # entirely outside: dropped
            ann(13, 1, [5, 5, 0, 4]),              # zero width: dropped
            ann(14, 1, [5, 5, 4, -2]),             # negative height: dropped
            ann(15, 1, [5, 5, 4]),                 # not 4 numbers
            ann(16, 1, [5, 5, float("nan"), 4]),   # NaN (json.dumps writes NaN, json.loads reads it)
            ann(17, 1, [6, 4, 14, 8])]
    js, img_dir = write_split(tmp_path, {"x.png": blank()}, anns)
    s = load_coco(js, img_dir)
    c = s.report.counts
    assert (c["box clipped"], c["box outside image"], c["zero or negative size"], c["bad bbox"]) == (2, 1, 2, 2)
    np.testing.assert_allclose(s.boxes[0][:, 1:], [[40, 20, 48, 32], [0, 0, 5, 7], [6, 4, 20, 12]])
    assert s.ann_ids[0].tolist() == [10, 11, 17]
    text = "\n".join(s.report.messages)
    for aid, words in ((10, "clipped"), (12, "outside"), (13, "zero or negative"), (14, "zero or negative"),
                       (15, "not 4 finite numbers"), (16, "not 4 finite numbers")):
        line = next(m for m in s.report.messages if f"annotation id {aid}:" in m)
        assert str(js) in line and words in line, line
    assert "48x32" in text


def test_unknown_category_and_image_ids(tmp_path):
    anns = [ann(1, 1, [6, 4, 14, 8], cat=99), ann(2, 1, [6, 4, 14, 8], cat=[1]), ann(3, 77, [6, 4, 14, 8]),
            ann(4, [1], [6, 4, 14, 8]), ann(5, 1, [6, 4, 14, 8], cat=5)]
    js, img_dir = write_split(tmp_path, {"x.png": blank()}, anns)
    s = load_coco(js, img_dir)
    c = s.report.counts
    assert c["unknown category id"] == 2 and c["unknown image id"] == 2
    assert s.boxes[0][:, 0].tolist() == [1.0]  # category id 5 is contiguous index 1
    line = next(m for m in s.report.messages if "annotation id 1:" in m)
    assert "category_id 99" in line and "[1, 5]" in line and str(js) in line
    assert any("annotation id 3:" in m and "image_id 77" in m for m in s.report.messages)


def test_duplicate_ids(tmp_path):
    recs = [{"id": 1, "file_name": "a.png", "width": 48, "height": 32},
            {"id": 1, "file_name": "a.png", "width": 48, "height": 32},   # repeated record: harmless
            {"id": 2, "file_name": "b.png", "width": 48, "height": 32},
            {"id": 2, "file_name": "c.png", "width": 48, "height": 32}]   # one id, two files: ambiguous
    anns = [ann(1, 1, [6, 4, 14, 8]), ann(1, 1, [1, 1, 3, 3]), ann(2, 2, [6, 4, 14, 8])]
    js, img_dir = write_split(tmp_path, {"a.png": blank(), "b.png": blank(), "c.png": blank()}, anns, records=recs)
    s = load_coco(js, img_dir)
    assert [Path(f).name for f in s.files] == ["a.png"]
    assert s.report.counts["duplicate image id"] == 2 and s.report.counts["duplicate annotation id"] == 1
    assert s.ann_ids[0].tolist() == [1] and s.report.boxes_of_skipped == 1
    np.testing.assert_allclose(s.boxes[0][:, 1:], [[6, 4, 20, 12]])
    text = "\n".join(s.report.messages)
    assert "image id 2 names both b.png and c.png" in text and "images[3]" in text
    assert "annotation id 1: annotations[1] reuses the id of annotations[0]" in text


def test_images_without_boxes_are_negatives(tmp_path):
    js, img_dir = write_split(tmp_path, {"a.png": blank(), "b.png": blank(), "c.png": blank()},
                              [ann(1, 2, [6, 4, 14, 8])])
    ds = CocoDataset(str(js), str(img_dir), imgsz=64, verbose=False)
    assert len(ds) == 3 and ds.report.negatives == 2
    assert [len(ds[i][1]) for i in range(3)] == [0, 1, 0]
    _, targets, _, _ = collate_fn([ds[i] for i in range(3)])
    assert targets[:, 0].tolist() == [1.0]


@pytest.mark.parametrize("text, words", [
    ('{"images": [], "annotations": [', "malformed JSON at line 1"),
    ("[1, 2]", "expected a COCO object"),
    ('{"images": [], "annotations": []}', "'categories' is missing"),
    ('{"images": {}, "categories": [{"id": 1, "name": "a"}]}', "'images' is missing or not a list"),
    ('{"images": [], "categories": [{"id": 1, "name": "a"}, {"id": 1, "name": "b"}]}', "duplicate category id 1"),
])
def test_malformed_json_is_fatal(tmp_path, text, words):
    (tmp_path / "images").mkdir()
    js = tmp_path / "bad.json"
    js.write_text(text)
    with pytest.raises(DatasetError, match=words) as e:
        load_coco(js, tmp_path / "images")
    assert str(js) in str(e.value)


def test_split_without_usable_images_is_fatal(tmp_path):
    js, img_dir = write_split(tmp_path, {"a.png": None, "b.png": b"junk"}, [ann(1, 1, [6, 4, 14, 8])])
    with pytest.raises(DatasetError, match=r"no usable images .*missing image 1.*unreadable image 1") as e:
        load_coco(js, img_dir)
    assert str(js) in str(e.value) and "a.png" in str(e.value)


def test_cli_summary_and_exit_status(tmp_path, capsys):
    data = make_coco(tmp_path / "good", n_train=3, n_val=2)
    assert main([str(data), "--imgsz", "128"]) == 0
    out = capsys.readouterr().out
    assert "train:" in out and "val:" in out and "problems: none" in out and "at imgsz 128" in out
    # remove every val image: train is still summarised, val is unusable, the exit status says so
    for f in (tmp_path / "good" / "images" / "val").iterdir():
        f.unlink()
    assert main([str(data)]) == 1
    out = capsys.readouterr().out
    assert "images 3" in out and "val: UNUSABLE" in out and "instances_val.json" in out
    # a malformed json is reported as an error naming it, also through `python -m`
    (tmp_path / "good" / "annotations" / "instances_val.json").write_text("{oops")
    r = subprocess.run([sys.executable, "-m", "utils.data.dataset", str(data)], cwd=ROOT, capture_output=True,
                       text=True)
    assert r.returncode != 0 and "instances_val.json: malformed JSON at line 1" in r.stdout


def test_crowd_regions_are_ignore_regions_not_boxes(tmp_path):
    crowd = {**ann(2, 1, [20, 14, 10, 10]), "iscrowd": 1}
    bad_crowd = {**ann(3, 1, [20, 14, 0, 10]), "iscrowd": 1}
    classless = {**ann(4, 1, [0, 20, 8, 8], cat=0), "iscrowd": 1}  # a region needs no known category
    js, img_dir = write_split(tmp_path, {"a.png": blank()}, [ann(1, 1, [6, 4, 14, 8]), crowd, bad_crowd, classless])
    split = load_coco(js, img_dir, check="none")
    assert split.report.ignore_regions == 2 and split.report.counts == {"zero or negative size": 1}
    assert "ignore regions (iscrowd=1): 2" in split.report.summary()
    assert split.boxes[0].shape[0] == 1 and split.boxes[0][0, 1:].tolist() == [6, 4, 20, 12]
    assert split.ignore[0].tolist() == [[20, 14, 30, 24], [0, 20, 8, 28]]
    ds = CocoDataset(str(js), str(img_dir), 64, augment=False)
    assert ds[0][1].shape == (1, 5)  # evaluation sees the boxes only


def test_dataset_key_resolves_under_smalldet_datasets(tmp_path, monkeypatch):
    from utils.data.config import load_data_config

    holder = tmp_path / "holder"
    make_coco(holder / "myset", n_train=2, n_val=1)
    cfg = {"dataset": "myset", "train": {"json": "annotations/instances_train.json", "images": "images/train"},
           "val": {"json": "annotations/instances_val.json", "images": "images/val"}}
    yml = tmp_path / "d.yaml"
    yml.write_text(yaml.safe_dump(cfg))
    monkeypatch.delenv("SMALLDET_DATASETS", raising=False)
    with pytest.raises(DatasetError, match="needs the folder holding the data sets: set SMALLDET_DATASETS"):
        load_data_config(yml)
    monkeypatch.setenv("SMALLDET_DATASETS", str(holder))
    d = load_data_config(yml)
    assert Path(d["path"]) == (holder / "myset").resolve()
    assert Path(d["train"]["json"]) == (holder / "myset" / "annotations" / "instances_train.json").resolve()
    assert d["names"] == ["square", "disc"]
    # --data-root wins over the environment variable
    other = tmp_path / "other"
    make_coco(other / "myset", n_train=1, n_val=1)
    assert Path(load_data_config(yml, root=str(other))["path"]) == (other / "myset").resolve()
    monkeypatch.setenv("SMALLDET_DATASETS", str(tmp_path / "nowhere"))
    with pytest.raises(DatasetError, match="set SMALLDET_DATASETS"):
        load_data_config(yml)

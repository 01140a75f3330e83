"""YOLO-format (YOLOv5 / Ultralytics) data YAMLs: variants, the conversion cache, and bad labels."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from utils.data import yolo_data
from utils.data.cache import ENV_CACHE
from utils.data.coco import DatasetError, load_coco
from utils.data.config import load_data_config
from utils.data.dataset import main as dataset_main

# image (relative to the data folder), size (w, h), label lines
SET = {
    "images/train/a.jpg": ((80, 60), ["0 0.5 0.5 0.25 0.5", "1 0.1 0.2 0.1 0.2"]),
    "images/train/sub/b.png": ((40, 100), ["1 0.5 0.25 0.5 0.1"]),
    "images/train/neg.png": ((32, 32), None),          # no label file: a negative
    "images/val/c.png": ((50, 50), ["0 0.2 0.2 0.2 0.2"]),
}


def write_set(root: Path, items=SET) -> Path:
    for rel, ((w, h), lines) in items.items():
        img = root / rel
        img.parent.mkdir(parents=True, exist_ok=True)
        assert cv2.imwrite(str(img), np.full((h, w, 3), 120, np.uint8))
        if lines is not None:
            lab = root / rel.replace("images/", "labels/", 1)
            lab = lab.with_suffix(".txt")
            lab.parent.mkdir(parents=True, exist_ok=True)
            lab.write_text("".join(ln + "\n" for ln in lines))
    return root


def write_yaml(root: Path, **cfg) -> Path:
    p = root / "data.yaml"
    p.write_text(yaml.safe_dump({"path": ".", **cfg}))
    return p


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    return {str(p): (p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*")}


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    d = tmp_path / "cache"
    monkeypatch.setenv(ENV_CACHE, str(d))
    return d


def boxes_of(split: dict) -> dict[str, list]:
    s = load_coco(split["json"], split["images"])
    assert s.report.problems == 0, s.report.messages
    return {Path(f).relative_to(split["images"]).as_posix(): b.tolist() for f, b in zip(s.files, s.boxes)}


def test_folders_and_names_list(tmp_path, cache):
    data = write_set(tmp_path / "data")
    cfg = load_data_config(write_yaml(data, train="images/train", val="images/val", names=["car", "truck"]))
    assert cfg["names"] == ["car", "truck"] and cfg["nc"] == 2 and cfg["cat_ids"] == [1, 2]
    assert Path(cfg["train"]["json"]).parent == cache / "yolo"
    got = boxes_of(cfg["train"])
    # a.jpg 80x60: (0.5, 0.5, 0.25, 0.5) -> x 30..50, y 15..45; b.png 40x100: (0.5, 0.25, 0.5, 0.1) -> 10..30, 20..30
    assert got == {"a.jpg": [[0, 30, 15, 50, 45], [1, 4, 6, 12, 18]], "sub/b.png": [[1, 10, 20, 30, 30]],
                   "neg.png": []}
    assert boxes_of(cfg["val"]) == {"c.png": [[0, 5, 5, 15, 15]]}


def test_txt_lists_lists_and_names_dict(tmp_path, cache):
    data = write_set(tmp_path / "data")
    (data / "train.txt").write_text("./images/train/a.jpg\nimages/train/sub/b.png\n\n")  # ./ and plain relative
    (data / "lists").mkdir()
    (data / "lists" / "val.txt").write_text(f"{data / 'images/val/c.png'}\n")           # absolute
    cfg = load_data_config(write_yaml(data, train=["train.txt", "images/train/neg.png".rsplit("/", 1)[0]],
                                      val="lists/val.txt", names={0: "car", 1: "truck"}, nc=2))
    assert cfg["names"] == ["car", "truck"]
    assert cfg["train"]["notes"] == [f"{data / 'data.yaml'}: train: image {data / 'images/train/a.jpg'} is "
                                        f"listed more than once; the repeats are skipped",
                                        f"{data / 'data.yaml'}: train: image {data / 'images/train/sub/b.png'} is "
                                        f"listed more than once; the repeats are skipped"]
    assert sorted(boxes_of(cfg["train"])) == ["a.jpg", "neg.png", "sub/b.png"]
    assert list(boxes_of(cfg["val"])) == ["c.png"]


def test_relative_path_from_the_working_dir_as_yolov5_reads_it(tmp_path, cache, monkeypatch):
    """yolov5/data/coco128.yaml says path: ../datasets/coco128, meant from the yolov5 folder."""
    write_set(tmp_path / "datasets" / "mine")
    (tmp_path / "yolov5" / "data").mkdir(parents=True)
    y = tmp_path / "yolov5" / "data" / "mine.yaml"
    y.write_text(yaml.safe_dump({"path": "../datasets/mine", "train": "images/train", "val": "images/val",
                                 "names": ["a", "b"]}))
    monkeypatch.chdir(tmp_path / "yolov5")
    assert load_data_config(y)["path"] == str(tmp_path / "datasets" / "mine")


def test_symlinked_images_take_the_labels_beside_the_link(tmp_path, cache):
    """A YOLO layout whose images are links into another folder (as Ultralytics reads it)."""
    data = write_set(tmp_path / "data")
    linked = tmp_path / "linked"
    shutil.copytree(data / "labels", linked / "labels")
    (linked / "images").mkdir(parents=True)
    os.symlink(data / "images" / "train", linked / "images" / "train")
    (linked / "images" / "val").mkdir()
    os.symlink(data / "images" / "val" / "c.png", linked / "images" / "val" / "c.png")
    shutil.rmtree(data / "labels")  # labels only beside the links
    cfg = load_data_config(write_yaml(linked, train="images/train", val="images/val", names=["car", "truck"]))
    assert boxes_of(cfg["val"]) == {"c.png": [[0, 5, 5, 15, 15]]}
    assert len(boxes_of(cfg["train"])["a.jpg"]) == 2


def test_nc_only_gives_numbered_names_and_empty_test_is_no_split(tmp_path, cache):
    data = write_set(tmp_path / "data")
    cfg = load_data_config(write_yaml(data, train="images/train", val="images/val", test="", nc=2))
    assert cfg["names"] == ["class0", "class1"] and "test" not in cfg


@pytest.mark.parametrize("extra, words", [
    ({}, "needs 'names'"),
    ({"names": {0: "a", 2: "b"}}, "needs the keys 0..1, got [0, 2]"),
    ({"names": ["a", "b"], "nc": 3}, "nc is 3 but names has 2 entries"),
    ({"names": ["a", "b"], "val": "images/nothere"}, "'images/nothere' is neither an image folder nor a .txt list"),
    ({"names": ["a", "b"], "val": "labels/val"}, "val: no images found in 'labels/val'"),
])
def test_bad_yaml_is_an_error_naming_the_file(tmp_path, cache, extra, words):
    data = write_set(tmp_path / "data")
    y = write_yaml(data, **{"train": "images/train", "val": "images/val", **extra})
    with pytest.raises(DatasetError) as e:
        load_data_config(y)
    assert str(y) in str(e.value) and words in str(e.value)


def test_nothing_written_into_the_data_folder(tmp_path, cache):
    data = write_set(tmp_path / "data")
    y = write_yaml(data, train="images/train", val="images/val", names=["car", "truck"])
    before = snapshot(data)
    load_data_config(y)
    assert dataset_main([str(y), "--check", "header"]) == 0
    assert snapshot(data) == before
    assert len(list((cache / "yolo").glob("*.json"))) == 2


def test_cache_inside_the_data_folder_is_refused(tmp_path, monkeypatch):
    data = write_set(tmp_path / "data")
    monkeypatch.setenv(ENV_CACHE, str(data / "cache"))
    with pytest.raises(DatasetError, match="lies inside the data folder"):
        load_data_config(write_yaml(data, train="images/train", val="images/val", names=["a", "b"]))
    assert not (data / "cache").exists()


def test_cache_reused_and_invalidated_by_a_label_edit(tmp_path, cache, monkeypatch):
    data = write_set(tmp_path / "data")
    y = write_yaml(data, train="images/train", val="images/val", names=["car", "truck"])
    calls = []
    real = yolo_data.convert_split
    monkeypatch.setattr(yolo_data, "convert_split", lambda *a: calls.append(1) or real(*a))
    first = load_data_config(y)["train"]["json"]
    assert len(calls) == 2  # train and val converted
    stamp = os.stat(first).st_mtime_ns
    again = load_data_config(y)["train"]["json"]
    assert again == first and len(calls) == 2 and os.stat(first).st_mtime_ns == stamp  # reused, not rewritten
    # an edit of the same size with the old mtime restored is still noticed (the key hashes contents)
    lab = data / "labels/train/a.txt"
    st = lab.stat()
    lab.write_text(lab.read_text().replace("0 0.5 0.5", "1 0.5 0.5"))
    os.utime(lab, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert lab.stat().st_size == st.st_size
    cfg = load_data_config(y)
    assert cfg["train"]["json"] != first and len(calls) == 3
    assert not Path(first).exists()  # our stale entry of this split is removed
    assert boxes_of(cfg["train"])["a.jpg"][0][0] == 1
    # a new label file for the negative image is noticed too
    (data / "labels/train/neg.txt").write_text("0 0.5 0.5 0.5 0.5\n")
    assert boxes_of(load_data_config(y)["train"])["neg.png"] == [[0, 8, 8, 24, 24]]
    # and a damaged cache entry of ours is converted again
    cur = load_data_config(y)["train"]["json"]
    Path(cur).write_text("{")
    assert boxes_of(load_data_config(y)["train"])["neg.png"] == [[0, 8, 8, 24, 24]]


def test_bad_label_lines_are_reported_with_file_and_line(tmp_path, cache, capsys):
    items = dict(SET)
    items["images/train/a.jpg"] = ((80, 60), ["0 0.5 0.5 0.25 0.5", "0 1.5 0.5 0.1 0.1", "7 0.5 0.5 0.1 0.1"])
    data = write_set(tmp_path / "data", items)
    (data / "train.txt").write_text("images/train/a.jpg\nimages/train/gone.jpg\n")
    y = write_yaml(data, train="train.txt", val="images/val", names=["car", "truck"])
    lab = data / "labels/train/a.txt"
    expected = [f"{data / 'train.txt'} line 2: image images/train/gone.jpg not found",
                f"{lab} line 2: cx cy w h ['1.5', '0.5', '0.1', '0.1'] must be normalised to 0..1",
                f"{lab} line 3: class 7 is not an integer in 0..1"]
    for _ in range(2):  # converted, then from the cache: reported both times
        probs = load_data_config(y)["train"]["notes"]
        assert len(probs) == 3 and all(w in p for w, p in zip(expected, probs)), probs
    assert dataset_main([str(y), "--check", "header"]) == 0
    out = capsys.readouterr().out
    assert "problems 3: noted in conversion 3" in out and all(w in out for w in expected)
    s = load_coco(load_data_config(y)["train"]["json"], load_data_config(y)["train"]["images"])
    assert [b.tolist() for b in s.boxes] == [[[0, 30, 15, 50, 45]]]  # the good line is kept


@pytest.mark.slow
def test_train_and_val_take_a_yolo_yaml(tiny_coco, tmp_path, cache):
    """The same data as COCO and as YOLO gives the same AP from the same weights."""
    import train
    import val
    from utils.data.convert.yolo import coco_to_yolo
    coco = load_data_config(tiny_coco)
    root = tmp_path / "yolo"
    for split in ("train", "val"):
        shutil.copytree(coco[split]["images"], root / "images" / split)
        coco_to_yolo(coco[split]["json"], root / "labels" / split)
    y = write_yaml(root, train="images/train", val="images/val", names=coco["names"])
    res = train.run(data=str(y), cfg="yolov5n.yaml", imgsz=64, batch_size=4, workers=0, epochs=1,
                    project=str(tmp_path), name="t", noplots=True)
    w = str(Path(res["save_dir"]) / "weights" / "last.pt")
    kw = ["--weights", w, "--imgsz", "64", "--device", "cpu", "--project", str(tmp_path), "--workers", "0",
          "--conf-thres", "0.0001"]
    a, b = val.main(["--data", str(y), *kw]), val.main(["--data", str(tiny_coco), *kw])
    assert b["AP50"] > 0  # seeded: boxes are scored, so equality compares real numbers
    assert a["AP50"] == b["AP50"] and a["AP"] == b["AP"] and a["images"] == b["images"] == 4

"""Class names from data in outputs: distinct folders, plain text in plots, one line in tables (issue 37, item 7)."""
from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from tests.conftest import make_coco
from utils.data.coco import DatasetReport
from utils.inference.annotate import label_text, save_crops
from utils.paths import MAX_NAME_BYTES, UniqueStems, class_dirs, safe_name
from utils.plots import evaluation as ev
from utils.plots.figure import render
from utils.plots.labels import labels_figure
from utils.text import display_text, plot_text

HOSTILE = ["cost $\\x$", "car,\nred", "car red", "x" * 300, "$a$ and $\\frac{b}$"]


def _dets(n: int) -> torch.Tensor:
    return torch.tensor([[2.0, 2.0, 10.0, 10.0, 0.9, float(k)] for k in range(n)])


def test_distinct_classes_never_share_a_crop_folder(tmp_path):
    names = ["car,\nred", "car red", "ok", "Car red"]
    img = np.zeros((16, 16, 3), np.uint8)
    paths = save_crops(img, _dets(len(names)), names, tmp_path, "im")
    folders = [p.parent.name for p in paths]
    assert len(set(f.lower() for f in folders)) == len(names), folders  # was: car_red for the first two
    assert folders[2] == "ok"  # a name that collides with nothing keeps its plain folder
    assert all(p.parent.parent == tmp_path for p in paths)
    assert class_dirs(["a b", "a/b"]) == ["a_b_0", "a_b_1"] and class_dirs(["a", "b"]) == ["a", "b"]
    tricky = class_dirs(["a b", "a/b", "a_b_0"])  # a class named like a suffixed one: all get their index
    assert len(set(tricky)) == 3


def test_long_names_are_shortened_with_a_stable_suffix(tmp_path):
    long_a, long_b, wide = "x" * 300, "x" * 299 + "y", "車" * 200
    for n in (long_a, long_b, wide):
        s = safe_name(n)
        assert len(s.encode()) <= MAX_NAME_BYTES and s == safe_name(n)  # stable: the same folder every run
    assert safe_name(long_a) != safe_name(long_b)
    assert safe_name("short.name") == "short.name"
    paths = save_crops(np.zeros((16, 16, 3), np.uint8), _dets(2), [long_a, wide], tmp_path, "y" * 300)
    assert all(p.is_file() for p in paths)  # was: OSError File name too long
    stems = UniqueStems()
    assert stems("a/A.jpg") == "A" and stems("b/a.jpg") == "a_2"  # one file on a case-insensitive disk


def test_display_text_is_one_line_and_plot_text_is_not_mathtext():
    assert display_text("car,\nred") == "car,\\nred"
    assert display_text("a\tb\x00c") == "a\\tb\\x00c"
    assert display_text("x" * 300, 20) == "x" * 17 + "..."
    assert plot_text("cost $\\x$") == "cost \\$\\x\\$"
    assert "\n" not in label_text(1, 0.5, HOSTILE)


@pytest.mark.parametrize("build", ["pr", "conf", "confusion", "per_class", "labels"])
def test_names_are_drawn_as_plain_text(build):
    """Every figure that shows class names draws with hostile ones (was: ValueError from mathtext on draw)."""
    n = len(HOSTILE)
    if build == "pr":
        fig = ev.pr_curve_figure({k: np.linspace(1, 0, 101) for k in range(n)}, {k: 0.5 for k in range(n)}, HOSTILE)
    elif build == "conf":
        px = np.linspace(0, 1, 50)
        fig = ev.conf_curve_figure(px, np.tile(px, (n, 1)), np.ones(n, bool), HOSTILE, "F1")
    elif build == "confusion":
        fig = ev.confusion_matrix_figure(np.eye(n + 1), HOSTILE)
    elif build == "per_class":
        fig = ev.per_class_ap_figure(HOSTILE, [0.1] * n)
    else:
        boxes = [np.array([[k, 1.0, 1.0, 9.0 + k, 9.0] for k in range(n)], np.float32)]
        fig = labels_figure(SimpleNamespace(names=HOSTILE, boxes=boxes, shapes=np.array([[64, 64]]), imgsz=64))
    render(fig)
    shown = [t.get_text() for t in fig.findobj(lambda a: hasattr(a, "get_text"))]
    assert not any("\n" in s and "car" in s for s in shown)  # a newline in a name is shown as \n


def test_tables_keep_one_row_per_class(monkeypatch):
    rep = DatasetReport("a.json", "imgs", split="train", names=["car,\nred", "ok"], per_class=[3, 4])
    per_class = [line for line in rep.summary().splitlines() if "per class" in line]
    assert per_class == ["  per class: car,\\nred 3, ok 4"]  # was: the row split at the newline
    from utils.eval import report
    printed = []
    monkeypatch.setattr(report.LOG, "info", printed.append)
    row = {"name": "car,\nred", "images": 1, "instances": 2, "P": 0.5, "R": 0.5, "AP50": 0.4, "AP": 0.2}
    res = {"images": 1, "instances": 2, "precision": 0.5, "recall": 0.5, "AP50": 0.4, "AP": 0.2,
           "per_class": [row, {**row, "name": "ok"}],
           "speed": {"preprocess": 1.0, "inference": 1.0, "nms": 1.0, "match": 1.0, "coco": 1.0}}
    report.print_results(res, ["car,\nred", "ok"], (64, 64))
    lines = printed[0].splitlines()
    assert any(line.strip().startswith("car,\\nred") and line.rstrip().endswith("0.200") for line in lines)


@pytest.mark.slow
def test_val_with_a_mathtext_class_name_writes_its_metrics_and_plots(tmp_path):
    """val.py with plots: was exit 1 after scoring (matplotlib parsed `cost $\\x$`), no metrics.json."""
    import val
    from models.yolo import Model
    from utils.checkpoints.checkpoint import checkpoint_yaml, save_checkpoint
    data = make_coco(tmp_path / "set", n_train=2, n_val=2, size=64)
    names = ["cost $\\x$", "car,\nred"]
    for split in ("train", "val"):
        f = data.parent / "annotations" / f"instances_{split}.json"
        d = json.loads(f.read_text())
        for c, n in zip(d["categories"], names):
            c["name"] = n
        f.write_text(json.dumps(d))
    torch.manual_seed(0)
    m = Model("yolov5n.yaml", nc=2)
    m.names, m.cat_ids = names, [3, 7]
    save_checkpoint({"model_yaml": checkpoint_yaml(m), "model": m.state_dict(), "names": names, "cat_ids": [3, 7]},
                    tmp_path / "w.pt")
    res = val.main(["--data", str(data), "--weights", str(tmp_path / "w.pt"), "--imgsz", "64", "--device", "cpu",
                    "--project", str(tmp_path / "runs"), "--workers", "0", "--conf-thres", "0.0001"])
    out = Path(res["save_dir"])
    assert (out / "metrics.json").is_file() and (out / "confusion_matrix.png").is_file()

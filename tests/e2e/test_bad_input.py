"""Bad input loses nothing and escapes nowhere (issue: reliability). Each test failed before its fix."""
from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import yaml

import val
from utils.data import shapes
from tests.conftest import make_coco
from utils.inference.annotate import save_crops
from utils.data.config import DatasetError, load_data_config
from utils.paths import UniqueStems, safe_name
from utils.data.windows import MAX_WINDOWS, slice_windows
from utils.inference.slicing import sliced_predict


def _untrained_weights(path: Path) -> Path:
    """An untrained yolov5n checkpoint for the tiny COCO sets (class ids as in tests/conftest.py)."""
    from models.yolo import Model
    from utils.checkpoints.checkpoint import checkpoint_yaml, save_checkpoint
    torch.manual_seed(0)
    m = Model("yolov5n.yaml", nc=2)
    m.names, m.cat_ids = ["square", "disc"], [3, 7]
    save_checkpoint({"model_yaml": checkpoint_yaml(m), "model": m.state_dict(), "names": m.names,
                     "cat_ids": m.cat_ids}, path)
    return path


# ---------------------------------------------------------------- 1. a data YAML must never delete a folder
def _shapes_yaml(tmp_path: Path, target: Path) -> Path:
    src = yaml.safe_load((Path(__file__).resolve().parents[2] / "data" / "shapes.yaml").read_text())
    src["path"] = str(target)
    p = tmp_path / "copy.yaml"
    p.write_text(yaml.safe_dump(src))
    return p


def test_generate_refuses_a_folder_it_did_not_create(tmp_path):
    mine = tmp_path / "my_photos"
    (mine / "sub").mkdir(parents=True)
    (mine / "sub" / "holiday.jpg").write_bytes(b"precious")
    with pytest.raises(DatasetError, match=r"my_photos.*refusing"):
        load_data_config(str(_shapes_yaml(tmp_path, mine)))
    assert (mine / "sub" / "holiday.jpg").read_bytes() == b"precious"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["copy.yaml", "my_photos"]  # no temp folder left


def test_generate_replaces_only_its_own_older_sets(tmp_path, monkeypatch):
    monkeypatch.setattr(shapes, "SPLITS", {"train": 2, "val": 1})  # a small set: the logic, not the drawing
    ours = tmp_path / "old_demo"
    ours.mkdir()
    (ours / "VERSION").write_text(f"{shapes.VERSION - 1} 0\n")  # an older set this generator wrote
    (ours / "stale.txt").write_text("x")
    shapes.ensure(ours)
    assert (ours / "VERSION").read_text().split()[:2] == [str(shapes.VERSION), "0"]
    assert not (ours / "stale.txt").exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    shapes.ensure(empty)  # an empty folder is filled
    assert (empty / "annotations" / "instances_val.json").is_file()
    a_file = tmp_path / "a_file"
    a_file.write_text("keep")
    with pytest.raises(FileExistsError, match="a_file"):
        shapes.ensure(a_file)
    assert a_file.read_text() == "keep"


# ---------------------------------------------------------------- 2. names from data stay inside the run folder
@pytest.mark.parametrize("name", ["../../escaped", "/tmp/abs_escape", "..", ".hidden", "a/b\\c", ""])
def test_safe_name_is_one_harmless_component(name):
    s = safe_name(name)
    assert s and "/" not in s and "\\" not in s and not s.startswith(".")


def test_save_crops_with_hostile_class_names_stays_in_the_crop_dir(tmp_path):
    crop_dir = tmp_path / "run" / "crops"
    img = np.full((40, 40, 3), 100, np.uint8)
    det = torch.tensor([[0, 0, 10, 10, 0.9, 0], [5, 5, 20, 20, 0.8, 1], [1, 1, 9, 9, 0.7, 2]])
    names = ["../../escaped", str(tmp_path / "abs_escape"), ".."]
    paths = save_crops(img, det, names, crop_dir, stem="../../../up")
    root = crop_dir.resolve()
    for p in paths:
        assert p.is_file() and root in p.resolve().parents, p
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]  # nothing written beside the run folder


def test_unique_stems_never_collide_and_stay_safe():
    stems = UniqueStems()
    got = [stems(p) for p in ("a/x.jpg", "b/x.jpg", "c/x.png", "a/x.jpg", "../../x.jpg", "rtsp://cam/1")]
    assert got[:4] == ["x", "x_2", "x_3", "x"]  # the same source keeps its stem
    assert got[4] == "x_4" and "/" not in got[5]


def test_val_save_txt_keeps_same_named_images_in_different_folders(tmp_path):
    """Two val images named img.png in folders a/ and b/ must give two label files."""
    data = make_coco(tmp_path / "set", n_train=2, n_val=2, size=64)
    root = data.parent
    ann = json.loads((root / "annotations" / "instances_val.json").read_text())
    for sub, im in zip("ab", ann["images"]):
        (root / "images" / "val" / sub).mkdir()
        shutil.move(root / "images" / "val" / im["file_name"], root / "images" / "val" / sub / "img.png")
        im["file_name"] = f"{sub}/img.png"
    (root / "annotations" / "instances_val.json").write_text(json.dumps(ann))
    _untrained_weights(tmp_path / "w.pt")
    res = val.main(["--data", str(data), "--weights", str(tmp_path / "w.pt"), "--imgsz", "64", "--device", "cpu",
                    "--project", str(tmp_path / "runs"), "--workers", "0", "--save-txt", "--noplots"])
    labels = sorted(p.name for p in (Path(res["save_dir"]) / "labels").iterdir())
    assert labels == ["img.txt", "img_2.txt"]


# ---------------------------------------------------------------- 4 and 8. slicing flags
class _SizeRecorder(torch.nn.Module):
    """Stands in for a detector: records the input size and finds nothing."""

    def __init__(self):
        super().__init__()
        self.stride = torch.tensor([8.0, 16.0, 32.0])
        self.w = torch.nn.Parameter(torch.zeros(1))
        self.sizes: list[tuple[int, int]] = []

    def forward(self, x):
        self.sizes.append(tuple(x.shape[2:]))
        return torch.zeros(x.shape[0], 1, 7)


def test_slice_larger_than_the_image_runs_it_at_imgsz_not_shrunk():
    m = _SizeRecorder()
    img = np.zeros((256, 256, 3), np.uint8)
    sliced_predict(m, img, slice=512, imgsz=256, conf_thres=0.1)
    assert m.sizes == [(256, 256)]  # was (128, 128): the factor imgsz / slice shrank it to half
    m.sizes.clear()
    sliced_predict(m, np.zeros((200, 900, 3), np.uint8), slice=512, imgsz=512, conf_thres=0.1)
    assert set(m.sizes) == {(224, 512)}  # a real slice of a wider image: native scale, padded to the stride


def test_too_many_windows_is_refused_with_the_flags_named():
    with pytest.raises(ValueError, match=r"--slice 1 --overlap 0.2.*windows"):
        slice_windows(1000, 1000, 1, 0.2)
    with pytest.raises(ValueError, match=r"--overlap 0.99"):
        slice_windows(4000, 4000, 64, 0.99)
    assert len(slice_windows(4000, 4000, 64, 0.2)) <= MAX_WINDOWS  # an ordinary request still works


def test_detect_cli_reports_a_bad_slice_in_one_line(tmp_path):
    import detect
    _untrained_weights(tmp_path / "w.pt")
    cv2.imwrite(str(tmp_path / "img.png"), np.zeros((300, 300, 3), np.uint8))
    with pytest.raises(SystemExit, match=r"detect.py: error: --slice 2 .*windows"):
        detect.main(["--weights", str(tmp_path / "w.pt"), "--source", str(tmp_path / "img.png"), "--slice", "2",
                     "--device", "cpu", "--project", str(tmp_path / "runs")])


# ---------------------------------------------------------------- 5. hyperparameters: names, types, ranges
def _hyp_file(tmp_path: Path, text: str) -> str:
    p = tmp_path / "h.yaml"
    p.write_text(text)
    return str(p)


@pytest.mark.parametrize("text, message", [
    ("lr0: 0.01\nmosiac: 0.0\n", r"h\.yaml: unknown hyperparameter 'mosiac' \(did you mean 'mosaic'\?\)"),
    ("lr0: 0.01\nfliplr: 2.5\n", r"h\.yaml: fliplr: 2\.5 is outside \[0, 1\]"),
    ("lr0: 0.01\nmosaic: yes\n", r"h\.yaml: mosaic: expected a number, got True"),
    ("lr0: 0\n", r"h\.yaml: lr0: 0\.0 must be > 0"),
    ("lr0: 0.01\nclose_mosaic: 2.5\n", r"h\.yaml: close_mosaic: expected a whole number"),
    ("lr0: 0.01\nweight_decay: -1\n", r"h\.yaml: weight_decay: -1\.0 must be >= 0"),
])
def test_hyp_file_errors_name_the_file_and_key(tmp_path, text, message):
    from utils.config import load_hyp
    with pytest.raises(ValueError, match=message):
        load_hyp(_hyp_file(tmp_path, text))


def test_hyp_file_numbers_in_yaml11_form_and_missing_keys_take_the_defaults(tmp_path):
    from utils.config import load_hyp
    from utils.config import default_hyp
    hyp = load_hyp(_hyp_file(tmp_path, "lr0: 1e-3\n"))  # YAML 1.1 reads 1e-3 as a string
    assert hyp["lr0"] == 0.001 and isinstance(hyp["lr0"], float)
    assert hyp["weight_decay"] == default_hyp()["weight_decay"]  # was KeyError 'weight_decay'
    assert set(hyp) == set(default_hyp())


def test_hyp_set_values_are_checked_like_the_file(tmp_path):
    from utils.config import load_hyp, parse_hyp_set
    hyp = load_hyp("configs/hyps/default.yaml")
    assert parse_hyp_set(["lr0=1e-3", "close_mosaic=3"], hyp, "d.yaml") == {"lr0": 0.001, "close_mosaic": 3}
    with pytest.raises(ValueError, match=r"--hyp-set 'fliplr=2.5': fliplr: 2\.5 is outside"):
        parse_hyp_set(["fliplr=2.5"], hyp, "d.yaml")
    with pytest.raises(ValueError, match=r"--hyp-set 'tile=yes': tile: expected a number"):
        parse_hyp_set(["tile=yes"], hyp, "d.yaml")


# ---------------------------------------------------------------- 7. --exist-ok starts results.csv afresh
@pytest.mark.slow
def test_exist_ok_new_run_does_not_append_to_the_old_results(tiny_coco, tmp_path):
    import csv

    import train
    kw = dict(data=str(tiny_coco), cfg="yolov5n.yaml", imgsz=64, batch_size=4, workers=0, epochs=2,
              project=str(tmp_path), name="same", exist_ok=True, noplots=True, noval=True)
    train.run(**kw)
    train.run(**kw)
    with open(tmp_path / "same" / "results.csv") as f:
        assert [int(r["epoch"]) for r in csv.DictReader(f)] == [0, 1]  # was 0, 1, 0, 1


# ---------------------------------------------------------------- 3. one undecodable val image
def test_an_undecodable_val_image_is_left_out_and_counted(tmp_path):
    data = make_coco(tmp_path / "set", n_train=2, n_val=4, size=64)
    root = data.parent
    ann = json.loads((root / "annotations" / "instances_val.json").read_text())
    bad = root / "images" / "val" / ann["images"][1]["file_name"]
    bad.write_bytes(bad.read_bytes()[:60])  # the PNG header survives, the pixels do not
    _untrained_weights(tmp_path / "w.pt")
    res = val.main(["--data", str(data), "--weights", str(tmp_path / "w.pt"), "--imgsz", "64", "--device", "cpu",
                    "--project", str(tmp_path / "runs"), "--workers", "0", "--noplots", "--batch-size", "2"])
    assert res["unreadable_images"] == 1 and res["images"] == 3  # was: OSError, no scores at all


# ---------------------------------------------------------------- 9. one named error, not a traceback
ROOT = Path(__file__).resolve().parents[2]


def _bad_model_yaml(tmp_path: Path, old: str, new: str) -> str:
    text = (ROOT / "configs" / "models" / "yolov5.yaml").read_text()
    assert old in text
    p = tmp_path / "bad.yaml"
    p.write_text(text.replace(old, new))
    return str(p)


@pytest.mark.parametrize("old, new, message", [
    ("[-1, 1, Conv, [128, 3, 2]]", "[-1, 1, Conv, [128, 0, 2]]", r"bad\.yaml line 18: Conv fails"),
    ("SPPF, [1024, 5]", "SPPF, [1024, 4]", r"bad\.yaml line 26: SPPF fails"),
    ("[[-1, 6], 1, Concat, [1]]", "[[-1, 4], 1, Concat, [1]]", r"bad\.yaml line 31: Concat fails"),
])
def test_model_yaml_errors_that_show_only_when_run_name_the_line(tmp_path, old, new, message):
    from models.config import ModelConfigError
    from models.yolo import Model
    with pytest.raises(ModelConfigError, match=message):
        Model(_bad_model_yaml(tmp_path, old, new), nc=2)


def _data_with_defaults(tiny_coco: Path, tmp_path: Path, defaults: dict) -> str:
    d = yaml.safe_load(Path(tiny_coco).read_text())
    d["defaults"] = defaults
    p = tmp_path / "with_defaults.yaml"
    p.write_text(yaml.safe_dump(d))
    return str(p)


@pytest.mark.parametrize("kw, message", [
    (dict(batch_size=0), r"--batch-size: expected a whole number >= 1, got 0"),
    (dict(epochs=0), r"--epochs: expected a whole number >= 1, got 0"),
    (dict(epochs=-3), r"--epochs: expected a whole number >= 1, got -3"),
    (dict(imgsz=8), r"--imgsz: expected a whole number >= 32, got 8"),
    (dict(defaults={"epochs": "ten"}, epochs=None), r"with_defaults\.yaml: defaults: epochs: expected a whole number"),
    (dict(device="0"), r"--device 0: CUDA is not available"),
])
def test_bad_run_options_are_named_and_leave_no_run_folder(tiny_coco, tmp_path, kw, message):
    import train
    if kw.get("device") and torch.cuda.is_available():
        pytest.skip("this machine has CUDA: --device 0 is valid here")
    data = _data_with_defaults(tiny_coco, tmp_path, kw.pop("defaults")) if "defaults" in kw else str(tiny_coco)
    args = dict(data=data, cfg="yolov5n.yaml", imgsz=64, batch_size=4, workers=0, epochs=1,
                project=str(tmp_path / "runs"), noplots=True)
    with pytest.raises(ValueError, match=message):
        train.run(**{**args, **kw})
    assert not (tmp_path / "runs").exists()  # refused before anything was written


def test_bad_model_config_leaves_no_run_folder(tiny_coco, tmp_path):
    import train
    cfg = _bad_model_yaml(tmp_path, "SPPF, [1024, 5]", "SPPF, [1024, 4]")
    with pytest.raises(ValueError, match="SPPF fails"):
        train.run(data=str(tiny_coco), cfg=cfg, imgsz=64, batch_size=4, workers=0, epochs=1,
                  project=str(tmp_path / "runs"))
    assert not (tmp_path / "runs").exists()


@pytest.mark.slow
@pytest.mark.parametrize("script, args, message", [
    ("train.py", ["--epochs", "0"], "train.py: error: --epochs: expected a whole number >= 1, got 0"),
    ("train.py", ["--project", "{blocker}/runs"], "train.py: error: [Errno 20] Not a directory"),
    ("val.py", ["--weights", "{blocker}"], "val.py: error: "),
])
def test_cli_ends_with_one_line_and_a_nonzero_exit(tiny_coco, tmp_path, script, args, message):
    """As a user sees it: no traceback, the last stderr line names the problem, exit status 1."""
    import subprocess
    import sys
    blocker = tmp_path / "a_file"  # a file where a folder is wanted: unwritable even for root
    blocker.write_text("not a folder")
    args = [a.format(blocker=blocker) for a in args]
    common = ["--data", str(tiny_coco), "--imgsz", "64", "--batch-size", "4", "--workers", "0", "--device", "cpu"]
    if script == "train.py":
        common += ["--epochs", "1", "--noplots", "--project", str(tmp_path / "runs")]
    r = subprocess.run([sys.executable, str(ROOT / script), *common, *args], capture_output=True, text=True,
                       timeout=300, cwd=tmp_path)
    assert r.returncode == 1, r.stderr
    assert "Traceback" not in r.stderr
    assert r.stderr.strip().splitlines()[-1].startswith(message), r.stderr


# ---------------------------------------------------------------- 10. smaller ones
def test_stale_checkpoint_temp_files_are_cleaned_and_nothing_else(tmp_path):
    from utils.checkpoints.checkpoint import save_checkpoint
    stale = tmp_path / "last.pt.k3x9_a1q.tmp"  # what a kill -9 mid-write leaves (mkstemp's 8 characters)
    stale.write_bytes(b"half a checkpoint")
    old = time.time() - 7200  # untouched for two hours: its writer is gone (see test_run_lock for a live one)
    os.utime(stale, (old, old))
    keep = [tmp_path / "last.pt.my-notes.tmp", tmp_path / "best.pt.k3x9_a1q.tmp", tmp_path / "other.tmp"]
    for k in keep:
        k.write_text("not ours to delete")
    save_checkpoint({"epoch": 3}, tmp_path / "last.pt")
    assert torch.load(tmp_path / "last.pt", weights_only=True)["epoch"] == 3
    assert not stale.exists() and all(k.read_text() == "not ours to delete" for k in keep)


def test_truncated_video_is_read_with_a_warning(tmp_path, caplog):
    import logging

    from utils.inference.sources import SourceReader
    path = tmp_path / "clip.avi"
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 48))
    for k in range(20):
        w.write(np.full((48, 64, 3), k * 10, np.uint8))
    w.release()
    data = path.read_bytes()
    path.write_bytes(data[: len(data) * 6 // 10])
    log = logging.getLogger("smalldet")
    log.addHandler(caplog.handler)
    try:
        n = sum(1 for _ in SourceReader(path))
    finally:
        log.removeHandler(caplog.handler)
    assert 0 < n < 20
    assert any(f"only {n} of its 20 frames" in r.message for r in caplog.records)


@pytest.mark.slow
def test_empty_train_split_warns_final_eval_uses_workers_and_resume_refuses_new_epochs(tmp_path, monkeypatch, caplog):
    import logging

    import train
    data = make_coco(tmp_path / "set", n_train=4, n_val=2, size=64)
    ann_file = data.parent / "annotations" / "instances_train.json"
    ann = json.loads(ann_file.read_text())
    ann["annotations"] = []
    ann_file.write_text(json.dumps(ann))
    calls = []
    from utils.eval import validator  # training calls the library, not val.py
    real_run = validator.Validator.__call__
    monkeypatch.setattr(validator.Validator, "__call__",
                        lambda self, model=None: calls.append(vars(self.settings)) or real_run(self, model))
    log = logging.getLogger("smalldet")
    log.addHandler(caplog.handler)
    try:
        res = train.run(data=str(data), cfg="yolov5n.yaml", imgsz=64, batch_size=4, workers=0, epochs=1,
                        project=str(tmp_path / "runs"), noplots=True)
    finally:
        log.removeHandler(caplog.handler)
    assert any("the train split has no boxes" in r.message for r in caplog.records)
    assert calls[-1].get("weights") and calls[-1]["workers"] == 0  # the final evaluation: was val's default 2
    with pytest.raises(ValueError, match=r"--epochs 5 \(run: 1\) would change it"):
        train.run(resume=res["save_dir"], epochs=5)


# ---------------------------------------------------------------- 3b. the epoch is saved before it is validated
def test_a_failing_validation_keeps_the_epochs_weights(tmp_path):
    from tests.engine.test_engine import SquaredOutputs, _batch, _model, _trainer
    torch.manual_seed(0)
    model = _model()
    calls = []

    def val_fn(m, final=False):
        calls.append(final)
        if len(calls) == 2:
            raise OSError("val image could not be read")
        return {"fitness": 0.1}

    t = _trainer(tmp_path, model, SquaredOutputs(model), [_batch(seed=i) for i in range(2)], val_fn=val_fn, epochs=3)
    with pytest.raises(OSError, match="could not be read"):
        t.fit()
    ckpt = torch.load(tmp_path / "weights" / "last.pt", weights_only=True)
    assert ckpt["epoch"] == 1  # the epoch whose validation failed, not the one before it
    assert all(torch.equal(v, model.state_dict()[k].cpu()) for k, v in ckpt["raw_model"].items())

"""--resume reuses the run's saved paths: absolute, and its data set fingerprinted (issue 37, item 5)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import make_coco
from utils.config import TrainConfig
from utils.checkpoints.checkpoint import read_checkpoint, save_checkpoint
from utils.engine.run_paths import absolute, data_fingerprint, same_setting


class _Built(Exception):
    """Raised by the spy in place of building the resumed run: what it was given is all the test needs."""


@pytest.mark.slow
def test_resume_from_another_directory_trains_on_the_runs_own_data(tmp_path, monkeypatch):
    import train
    from utils.engine import build
    a, b = tmp_path / "a", tmp_path / "b"
    make_coco(a / "ds", seed=0)
    make_coco(b / "ds", n_train=3, seed=1)  # another data set at the same relative path
    monkeypatch.chdir(a)
    res = train.run(data="ds/data.yaml", cfg="yolov5n.yaml", imgsz=64, batch_size=4, workers=0, epochs=2,
                    project="runs", noplots=True, noval=True)
    last = Path(a, res["save_dir"]) / "weights" / "last.pt"
    ck = read_checkpoint(last)
    assert ck["opt"]["data"] == str(a / "ds" / "data.yaml") and Path(ck["opt"]["project"]).is_absolute()
    ck["epoch"] = 0  # as if stopped after its first epoch
    ck.pop("final_eval", None)  # (set once the final evaluation ran)
    save_checkpoint(ck, last)

    seen = {}

    def spy(cfg, data, *rest):
        seen.update(cfg=cfg, data=data)
        raise _Built

    monkeypatch.setattr(build, "build_run", spy)
    monkeypatch.chdir(b)
    with pytest.raises(_Built):  # was: ds/data.yaml read from b, b's 3 images trained on, silently
        train.run(resume=str(last), project="../a/runs")  # the same project, typed from here: no clash
    assert seen["data"]["train"]["json"] == str(a / "ds" / "annotations" / "instances_train.json")

    ann = a / "ds" / "annotations" / "instances_train.json"
    d = json.loads(ann.read_text())
    d["annotations"] = d["annotations"][:-1]
    ann.write_text(json.dumps(d))
    with pytest.raises(ValueError, match=r"the data set changed since the run started: .*a/ds/annotations/"
                                         r"instances_train\.json \(train split of .*\) has sha256 [0-9a-f]{12}"):
        train.run(resume=str(last))


def test_saved_paths_are_absolute_and_compared_resolved(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "h.yaml").write_text("lr0: 0.01\n")
    assert absolute("hyp", "h.yaml") == str(tmp_path / "h.yaml")
    assert absolute("cfg", "yolov5s.yaml") == "yolov5s.yaml"  # a zoo name, found from anywhere
    assert absolute("epochs", 3) == 3 and absolute("weights", "") == ""
    assert same_setting("project", "runs", str(tmp_path / "runs"))
    assert not same_setting("project", "other", str(tmp_path / "runs"))
    data = make_coco(tmp_path / "ds")
    from utils.data.config import load_data_config
    fp = data_fingerprint(load_data_config(data))
    assert fp.startswith("train=") and ",val=" in fp
    assert "data_hash" in TrainConfig().as_dict()  # kept in opt.yaml and every checkpoint

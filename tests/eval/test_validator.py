"""The validator's named steps, its settings and presets, its step timer, and the forward + postprocess it
shares with detect (utils/inference/predict.py)."""
from __future__ import annotations

import dataclasses

import pytest
import torch

import val
from tests.eval import test_val
from tests.eval.test_val import IMGSZ, OracleModel, StandInDataset, StandInLoader
from utils.eval.settings import MEMORY_SCORING, SPEED, ValSettings
from utils.eval.validator import SPEED_KEYS, Validator
from utils.inference import predict
from utils.inference.postprocess import non_max_suppression
from utils.torch_utils import StepTimer

odd_coco = test_val.odd_coco  # the same odd-sized COCO fixture


def _setup(odd_coco, tmp_path, **kw):
    loader = StandInLoader(StandInDataset(odd_coco))
    data = {"names": loader.dataset.names, "cat_ids": loader.dataset.cat_ids, "val": {}}
    settings = ValSettings(data=data, project=str(tmp_path), imgsz=IMGSZ, plots=False, verbose=False, **kw)
    return settings, loader, OracleModel(loader, jitter=0.1, extra=3, seed=2)


def test_each_batch_runs_the_named_steps_in_order_then_finalize_once(odd_coco, tmp_path):
    calls: list[str] = []

    class Recording(Validator):
        pass

    for step in ("preprocess", "inference", "postprocess", "update_metrics", "finalize"):
        def wrap(self, *a, _step=step, **k):
            calls.append(_step)
            return getattr(Validator, _step)(self, *a, **k)
        setattr(Recording, step, wrap)
    settings, loader, model = _setup(odd_coco, tmp_path)
    res = Recording(settings, loader)(model)
    per_batch = ["preprocess", "inference", "postprocess", "update_metrics"]
    assert calls == per_batch * len(loader) + ["finalize"]
    assert list(res["speed"]) == ["preprocess", "inference", "nms", "match", "coco"]  # the speed line's names
    assert set(SPEED_KEYS) == {"preprocess", "inference", "postprocess", "update_metrics", "finalize"}
    assert res["AP"] > 0.1


def test_validator_steps_are_detects_forward_and_postprocess(odd_coco, tmp_path, monkeypatch):
    """val and detect run one copy of the model call and the NMS: replacing predict's changes the validator's."""
    from utils.eval import validator
    seen = []
    real = predict.postprocess

    def spy(pred, *a, **k):
        seen.append(pred.shape)
        return real(pred, *a, **k)
    assert validator.forward is predict.forward and validator.postprocess is predict.postprocess
    monkeypatch.setattr(validator, "postprocess", spy)
    settings, loader, model = _setup(odd_coco, tmp_path, save_json=False)
    Validator(settings, loader)(model)
    assert len(seen) == len(loader)


def test_postprocess_compares_scores_in_fp32_after_an_fp16_forward():
    """A box whose fp16 objectness rounds onto the fp16 threshold is above the true (fp32) threshold: kept, as
    detect kept it; NMS on the raw fp16 output would drop it."""
    thr = 0.001
    t16 = torch.tensor(thr, dtype=torch.float16)
    assert t16.float() > thr  # fp16(0.001) = 0.0010004
    pred = torch.tensor([[[10.0, 10.0, 4.0, 4.0, float(t16), 1.0]]], dtype=torch.float16)
    assert len(predict.postprocess(pred, thr, 0.6, multi_label=True)[0]) == 1
    assert len(predict.postprocess(pred.float(), thr, 0.6, multi_label=True)[0]) == 1
    assert len(non_max_suppression(pred, thr, 0.6, multi_label=True)[0]) == 0  # the fp16 comparison


def test_speed_and_training_are_named_presets():
    s = ValSettings.speed(conf_thres=0.1, imgsz=320, save_txt=True)
    assert s.task == "speed" and s.split == "val" and s.imgsz == 320
    assert {k: getattr(s, k) for k in SPEED} == SPEED  # the preset's values replace those given
    assert (s.conf_thres, s.iou_thres, s.save_json, s.plots, s.scorer) == (0.25, 0.45, False, False, "memory")
    t = ValSettings.training(imgsz=320, plots=False)
    assert {k: getattr(t, k) for k in MEMORY_SCORING} == MEMORY_SCORING and t.conf_thres == 0.001
    assert ValSettings(task="speed").conf_thres == 0.001  # no silent rewriting: only the preset changes fields
    with pytest.raises(ValueError, match="scored by pycocotools only"):
        ValSettings.speed(protocol="aitod")
    with pytest.raises(ValueError, match="task must be one of"):
        ValSettings(task="train")
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.conf_thres = 0.5


def test_val_flags_default_to_the_settings(monkeypatch):
    opt = vars(val.parse_opt(["--weights", "w.pt"]))
    defaults = ValSettings.defaults()
    assert set(opt) - {"noplots"} <= set(defaults)
    for k, v in opt.items():
        if k in ("weights", "overlap", "noplots"):  # required; None = the recipe's or the settings' overlap
            continue
        assert v == defaults[k], k
    monkeypatch.setattr(ValSettings.__dataclass_fields__["iou_thres"], "default", 0.55)
    assert val.parse_opt(["--weights", "w.pt"]).iou_thres == 0.55  # one owner: the flag follows the dataclass


def test_val_run_task_speed_uses_the_preset(monkeypatch):
    got = {}
    monkeypatch.setattr(Validator, "__call__", lambda self, model=None: got.setdefault("s", self.settings) and {})
    val.run(data="x.yaml", task="speed", conf_thres=0.01)
    assert got["s"] == ValSettings.speed(data="x.yaml", conf_thres=0.01)
    got.clear()
    val.run(data="x.yaml", fast=True)
    assert got["s"] == ValSettings.training(data="x.yaml")
    with pytest.raises(TypeError, match="unknown options"):
        val.run(data="x.yaml", conf=0.1)


def test_step_timer_sums_named_steps():
    clock = iter([0.0, 1.0, 1.0, 1.5, 2.0, 4.0])
    t = StepTimer("cpu")
    t._now = lambda: next(clock)  # a fake clock: no timed assert
    with t("inference"):
        pass
    with t("postprocess"):
        pass
    with t("inference"):
        pass
    assert t.seconds == {"inference": 3.0, "postprocess": 0.5}
    assert t.ms_per(2, {"inference": "inference", "postprocess": "nms", "finalize": "coco"}) == \
        {"inference": 1500.0, "nms": 250.0, "coco": 0.0}

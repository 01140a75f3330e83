"""HSV gains on the device (utils/augment/hsv_device.py) against OpenCV's own conversions, and the
loader + trainer path that uses them against the loader doing them itself."""
from __future__ import annotations

from types import SimpleNamespace

import cv2
import numpy as np
import pytest
import torch

from tests.data.test_loader_fast_paths import HYP, batches, write_big_images
from utils.augment.finish import draw_hsv_tables, hsv_to_rgb
from utils.augment.hsv_device import IDENTITY, apply_hsv_tables, batch_tables, hsv8_to_rgb, rgb_to_hsv8
from utils.data.dataset import CocoDataset
from utils.engine.trainer import Trainer


def nchw(img: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1)[None]


def test_rgb_to_hsv_is_opencvs_for_every_colour():
    c = np.arange(1 << 24, dtype=np.uint32)
    rgb = np.stack([(c >> 16) & 255, (c >> 8) & 255, c & 255], 1).astype(np.uint8).reshape(4096, 4096, 3)
    out = rgb_to_hsv8(nchw(rgb))[0].permute(1, 2, 0).numpy()
    np.testing.assert_array_equal(out, cv2.cvtColor(rgb, cv2.COLOR_RGB2HSV))


def test_hsv_to_rgb_is_opencvs_for_every_hsv_value():
    """Rows of 256 px: OpenCV's vectorised loop converts all of them (its scalar remainder loop,
    which rounds where the vector loop truncates, is not used)."""
    h, s, v = np.meshgrid(np.arange(180), np.arange(256), np.arange(256), indexing="ij")
    hsv = np.stack([h, s, v], -1).astype(np.uint8).reshape(180 * 256, 256, 3)
    out = hsv8_to_rgb(nchw(hsv))[0].permute(1, 2, 0).numpy()
    np.testing.assert_array_equal(out, cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB))


@pytest.mark.parametrize("gains", [(0.015, 0.7, 0.4), (0.5, 0.9, 0.9), (0.0, 0.0, 0.0)])
def test_tables_on_a_batch_equal_hsv_to_rgb(gains):
    rng = np.random.default_rng(0)
    imgs = [cv2.GaussianBlur(rng.integers(0, 256, (64, 96, 3), dtype=np.uint8), (5, 5), 0) for _ in range(3)]
    refs, tables = [], []
    for k, im in enumerate(imgs):
        refs.append(hsv_to_rgb(im, np.random.default_rng(k), *gains))
        t = draw_hsv_tables(np.random.default_rng(k), *gains)
        tables.append(IDENTITY if t is None else t)
    rgb = torch.cat([nchw(cv2.cvtColor(im, cv2.COLOR_BGR2RGB)) for im in imgs])
    out = apply_hsv_tables(rgb, torch.from_numpy(np.stack(tables)))
    for o, r in zip(out, refs):
        np.testing.assert_array_equal(o.permute(1, 2, 0).numpy(), r)


def test_loader_leaves_hsv_to_the_device_with_the_same_batches(tmp_path, monkeypatch):
    """hsv_on_device: colour samples carry their tables in meta['hsv'] (grey ones apply theirs, a
    value table, on the CPU), and the trainer's device_augment turns the batch into the one the
    loader makes by itself: bit for bit, flips, mixup and copy-paste included."""
    js = write_big_images(tmp_path / "data", n=6, gray=(0, 4))
    hyp = dict(HYP, mixup=0.3, flipud=0.5)
    out = {}
    for on_device in (False, True):
        monkeypatch.setattr(CocoDataset, "hsv_on_device", on_device)
        ds = CocoDataset(str(js), str(tmp_path / "data" / "img"), imgsz=64, augment=True, hyp=hyp, seed=2,
                         verbose=False)
        out[on_device] = batches(ds, n=5)
    stub = SimpleNamespace(device=torch.device("cpu"))
    deferred = 0
    for (imgs, targets, _, metas), (ref, ref_targets, _, ref_metas) in zip(out[True], out[False]):
        assert not any("hsv" in m for m in ref_metas)
        deferred += sum("hsv" in m for m in metas)
        assert torch.equal(targets, ref_targets)
        assert torch.equal(Trainer.device_augment(stub, imgs, metas), ref)
    assert deferred >= 10  # most samples are colour: their HSV ran in device_augment
    assert batch_tables([{}, {}]) is None and batch_tables(None) is None


def test_no_tables_no_transfer():
    imgs = torch.zeros((2, 3, 4, 4), dtype=torch.uint8)
    assert Trainer.device_augment(SimpleNamespace(device=torch.device("cpu")), imgs, ({}, {})) is imgs


def test_the_trainer_checks_the_device_against_opencv(monkeypatch):
    """matches_opencv gates hsv_on_device (utils/engine/build.py): true here, false when the device's
    conversion differs (here: rounding where OpenCV's vector loop truncates)."""
    from utils.augment import hsv_device
    assert hsv_device.matches_opencv("cpu")
    real = hsv_device.hsv8_to_rgb

    def rounding(hsv):
        h, s, v = hsv.unbind(1)
        return torch.where(s[:, None] == 0, real(hsv), (real(hsv).int() + (v[:, None] % 2).int()).clamp(0, 255)
                           .to(torch.uint8))

    monkeypatch.setattr(hsv_device, "hsv8_to_rgb", rounding)
    assert not hsv_device.matches_opencv("cpu")


def test_a_training_run_with_hsv_on_the_device_learns_the_same_weights(tiny_coco, tmp_path, monkeypatch):
    """The whole path (build_run sets the flag, workers carry the tables, the training loop calls
    device_augment) on the CPU standing in for the device: the same weights as the loader doing HSV."""
    import train
    from utils.checkpoints.checkpoint import read_checkpoint
    from utils.engine import build
    kw = dict(data=str(tiny_coco), epochs=1, imgsz=64, batch_size=4, workers=1, project=str(tmp_path), noval=True,
              noplots=True, cfg="yolov5n.yaml", hyp_set=["hsv_h=0.5", "hsv_s=0.9", "hsv_v=0.9"])
    calls = []

    def on_device(device, main_proc=True):
        calls.append(device.type)
        return True

    weights = {}
    for name in ("loader", "device"):
        if name == "device":
            monkeypatch.setattr(build, "hsv_on_device", on_device)
            monkeypatch.setattr(Trainer, "device_augment", counting(Trainer.device_augment, calls))
        res = train.run(name=name, **kw)
        weights[name] = read_checkpoint(f"{res['save_dir']}/weights/last.pt")["raw_model"]
    assert calls.count("cpu") == 1 and calls.count("tables") >= 2  # the flag was set, batches carried tables
    assert all(torch.equal(weights["loader"][k], weights["device"][k]) for k in weights["loader"])


def counting(device_augment, calls):
    def wrapped(self, imgs, metas):
        if batch_tables(metas) is not None:
            calls.append("tables")
        return device_augment(self, imgs, metas)
    return wrapped

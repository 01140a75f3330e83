"""--weights with a checkpoint written by ultralytics/yolov5 or the Ultralytics package, in detect.py, export.py
and train.py (val.py: tests/engine/test_import_ap.py)."""
from __future__ import annotations

import logging
import shutil

import cv2
import numpy as np
import pytest
import torch

from tests.engine.test_foreign import fixture
from utils.inference.postprocess import non_max_suppression


@pytest.mark.parametrize("name", ["yolov5n-shapes", "yolov5nu-shapes"])
def test_detect_gives_the_originals_detections(tmp_path, name):
    """detect.py on the fixture's first image = our NMS on the original code's own raw output for it."""
    import detect
    img = np.load(fixture("input.npy"))[0].transpose(1, 2, 0)  # RGB HWC, 256 x 256: no letterbox change
    cv2.imwrite(str(tmp_path / "im.png"), img[..., ::-1])
    res = detect.run(weights=str(fixture(f"{name}.pt")), source=str(tmp_path / "im.png"), imgsz=256,
                     conf_thres=0.25, device="cpu", project=str(tmp_path), nosave=True, verbose=False)
    ref = torch.from_numpy(np.load(fixture(f"{name}.output.npy"))[:1])
    if name.endswith("nu-shapes"):  # (1, 8, N) xywh + class scores -> our (1, N, 5 + nc) with objectness 1
        ref = ref.transpose(1, 2)
        ref = torch.cat((ref[..., :4], torch.ones_like(ref[..., :1]), ref[..., 4:]), -1)
    want = non_max_suppression(ref, 0.25, 0.45, max_det=1000)[0].numpy()
    got = res[0].det
    assert len(want) > 0 and got.shape == want.shape
    np.testing.assert_allclose(got[:, :4], want[:, :4], atol=1e-2)
    np.testing.assert_allclose(got[:, 4], want[:, 4], atol=1e-4)
    assert (got[:, 5] == want[:, 5]).all()


def test_export_takes_a_yolov5_checkpoint(tmp_path):
    import export
    weights = tmp_path / "yolov5n-shapes.pt"  # export writes beside the weights: a copy, not the shared file
    shutil.copy(fixture("yolov5n-shapes.pt"), weights)
    out = export.run(weights, include=("torchscript",), imgsz=256)  # export verifies the file against the model
    assert out["torchscript"].is_file()


@pytest.mark.slow
def test_train_fine_tunes_a_yolov5_checkpoint_on_other_classes(tiny_coco, tmp_path, caplog):
    import train
    from utils.engine.checkpoint import read_checkpoint
    with caplog.at_level(logging.INFO, logger="smalldet"):
        res = train.run(data=str(tiny_coco), weights=str(fixture("yolov5n-shapes.pt")), epochs=1, imgsz=64,
                        batch_size=4, workers=0, project=str(tmp_path), name="ft", noplots=True, freeze="backbone",
                        hyp_set=["nbs=4"], noautoanchor=True)
    assert "written by ultralytics/yolov5, read as yolov5.yaml scale n (nc=4)" in caplog.text
    assert "transferred 343/349 tensors from" in caplog.text  # all but the class outputs: 4 classes -> 2
    assert "--freeze backbone: froze layers 0-9" in caplog.text
    src = read_checkpoint(fixture("yolov5n-shapes.pt"))["model"]
    out = read_checkpoint(res["save_dir"] + "/weights/last.pt")
    assert out["names"] == ["square", "disc"] and out["model_yaml"]["width_multiple"] == 0.25
    for k, v in out["raw_model"].items():  # a frozen backbone: its weights are the checkpoint's
        if k.split(".")[1] in {str(i) for i in range(10)} and k.endswith((".conv.weight", ".bn.weight")):
            assert torch.equal(v, src[k]), k

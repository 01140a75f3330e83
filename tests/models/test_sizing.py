"""A checkpoint's model YAML is sized on the meta device before anything is allocated (issue 37, item 6)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

import utils.checkpoints.checkpoint as checkpoint
from models.sizing import meta_shapes, weights_mismatch
from models.config import load_model_config
from models.yolo import Model
from utils.checkpoints.checkpoint import CheckpointError, checkpoint_yaml, model_from_checkpoint, save_checkpoint

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("cfg", ["yolov5n.yaml", "yolov5n-dfl.yaml", "yolov5n-p2.yaml"])
def test_meta_shapes_are_the_real_models(cfg):
    want, acts = meta_shapes(load_model_config(cfg))
    real = {k: tuple(v.shape) for k, v in Model(cfg).state_dict().items()}
    assert want == real
    assert 0 < acts < 10 ** 8


def _ckpt(**yaml_changes) -> dict:
    torch.manual_seed(0)
    m = Model("yolov5n.yaml", nc=2)
    y = {**checkpoint_yaml(m), **yaml_changes}
    return {"model_yaml": y, "model": m.state_dict(), "names": ["a", "b"], "cat_ids": [1, 2]}


class _NeverBuilt:
    def __init__(self, *a, **k):
        raise AssertionError("Model was built for real before its size was checked")


@pytest.mark.parametrize("changes, message", [
    ({"width_multiple": 64.0}, r"asks for [\d,.]+M parameters, its weights hold 1\.\dM"),
    ({"width_multiple": 64.0, "depth_multiple": 20.0}, r"asks for 677 layer repeats"),
    ({"nc": 10 ** 7}, r"nc 10000000.* asks for 13,5\d\d\.\dM parameters"),
    ({"depth_multiple": 10 ** 6}, r"asks for \d+ layer repeats"),
])
def test_a_checkpoint_asking_for_a_huge_model_is_refused_before_allocation(monkeypatch, changes, message):
    monkeypatch.setattr(checkpoint, "Model", _NeverBuilt)  # was: built (hundreds of GB), then shape-checked
    with pytest.raises(CheckpointError, match=r"huge\.pt: weights do not fit the saved model config: .*" + message):
        model_from_checkpoint(_ckpt(**changes), "model", "huge.pt")


def test_a_parameter_free_blow_up_is_refused_too(monkeypatch):
    """Weights that fit, but an Upsample x100 makes the 256 px build pass need 10 GB."""
    y = {"nc": 1, "anchors": [[10, 13, 16, 30, 33, 23]], "width_multiple": 1.0, "depth_multiple": 1.0,
         "backbone": [[-1, 1, "Conv", [16, 3, 2]], [-1, 1, "Upsample", [None, 100, "nearest"]],
                      [-1, 1, "Conv", [16, 3, 2]]],
         "head": [[[2], 1, "Detect", ["nc", "anchors"]]]}
    shapes, _ = meta_shapes(y)
    ck = {"model_yaml": y, "model": {k: torch.zeros(s) for k, s in shapes.items()}}
    monkeypatch.setattr(checkpoint, "Model", _NeverBuilt)
    with pytest.raises(CheckpointError, match=r"up\.pt: .*layers need [\d.]+G activation values"):
        model_from_checkpoint(ck, "model", "up.pt")


def test_a_fitting_checkpoint_still_loads():
    ck = _ckpt()
    assert weights_mismatch(dict(ck["model_yaml"]), ck["model"]) is None
    m = model_from_checkpoint(ck, "model", "ok.pt")
    assert all(torch.equal(v, ck["model"][k]) for k, v in m.state_dict().items())


def test_missing_weights_are_named_before_the_build(monkeypatch):
    monkeypatch.setattr(checkpoint, "Model", _NeverBuilt)
    with pytest.raises(CheckpointError, match=r"x\.pt: .*the weights are missing"):
        model_from_checkpoint(_ckpt(), "ema", "x.pt")


@pytest.mark.slow
@pytest.mark.parametrize("script", ["detect.py", "val.py", "export.py"])
def test_cli_refuses_a_huge_checkpoint_in_one_line(tmp_path, script):
    """As a user sees it (was: past 8 GB in 22-43 s, killed). The memory cap makes a regression fail, not swap."""
    path = tmp_path / "huge.pt"
    save_checkpoint(_ckpt(width_multiple=64.0, depth_multiple=20.0), path)
    img = tmp_path / "im.png"
    cv2.imwrite(str(img), np.zeros((32, 32, 3), np.uint8))
    args = {"detect.py": ["--source", str(img), "--project", str(tmp_path / "runs")],
            "val.py": ["--data", str(ROOT / "data" / "shapes.yaml"), "--project", str(tmp_path / "runs")],
            "export.py": ["--include", "torchscript"]}[script]
    code = ("import resource, runpy, sys; resource.setrlimit(resource.RLIMIT_DATA, (6 << 30, 6 << 30)); "
            f"sys.argv = sys.argv[1:]; sys.path.insert(0, {str(ROOT)!r}); "
            f"runpy.run_path({str(ROOT / script)!r}, run_name='__main__')")
    r = subprocess.run([sys.executable, "-c", code, script, "--weights", str(path), "--device", "cpu", *args],
                       capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert r.returncode == 1, r.stderr[-2000:]
    assert "Traceback" not in r.stderr
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith(f"{script}: error: {path}: weights do not fit the saved model config"), last


def test_an_onnx_file_declaring_a_huge_fixed_input_is_refused(tmp_path):
    """The same defect in exported files: a fixed input shape in the graph sizes the padding of every batch."""
    onnx = pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    from onnx import TensorProto, helper

    from utils.inference.backends import OnnxModel
    from utils.inference.export_meta import export_metadata, to_string_pairs
    m = Model("yolov5n.yaml", nc=2)
    shape = [1, 3, 200000, 200000]  # 480 GB of float32 to pad a 32 px image to
    graph = helper.make_graph([helper.make_node("Identity", ["images"], ["output"])], "g",
                              [helper.make_tensor_value_info("images", TensorProto.FLOAT, shape)],
                              [helper.make_tensor_value_info("output", TensorProto.FLOAT, shape)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    for k, v in to_string_pairs(export_metadata(m, (200000, 200000), 1, False, False)).items():
        model.metadata_props.add(key=k, value=v)
    path = tmp_path / "huge.onnx"
    onnx.save(model, str(path))
    with pytest.raises(CheckpointError, match=r"huge\.onnx: declares a fixed input of 1x3x200000x200000"):
        OnnxModel(path, torch.device("cpu"))(torch.zeros(1, 3, 32, 32))  # was: MemoryError or swap

"""--weights into another class count or head (utils/engine/transfer.py), and --freeze by count or part name."""
from __future__ import annotations

import argparse
import logging

import pytest
import torch

from models.yolo import Model
from utils.config import check_freeze
from utils.engine.build import build_model
from utils.engine.checkpoint import checkpoint_yaml, save_checkpoint
from utils.engine.freeze import freeze, layers_to_freeze
from utils.engine.transfer import pair_layers, transfer


def _trained(cfg: str, nc: int, seed: int = 1) -> Model:
    """A source model whose weights differ from any fresh init (random biases, BN statistics)."""
    torch.manual_seed(seed)
    m = Model(cfg, nc=nc)
    with torch.no_grad():
        for k, t in m.state_dict().items():
            if t.is_floating_point() and not k.endswith(".stride"):
                t.add_(torch.randn_like(t) * 0.1)
    return m


def _fresh(cfg: str, nc: int) -> Model:
    torch.manual_seed(0)
    return Model(cfg, nc=nc)


def test_other_class_count_keeps_all_but_the_class_outputs():
    src = _trained("yolov5n.yaml", 4)
    model, new = _fresh("yolov5n.yaml", 7), _fresh("yolov5n.yaml", 7).state_dict()
    rep = transfer(model, src)
    s, mine = src.state_dict(), model.state_dict()
    left = {f"model.24.m.{k}.{p}" for k in range(3) for p in ("weight", "bias")}
    assert set(rep.left_out) == left and all(r.startswith("shape") for r in rep.left_out.values())
    assert len(rep.copied) == rep.total - 6 and rep.total == len(mine) - 1  # the stride buffer is not a weight
    for k in mine:
        if k in left:  # what a new model of this shape starts from
            assert torch.equal(mine[k], new[k]), k
        elif not k.endswith(".stride"):
            assert torch.equal(mine[k], s[k]), k
    text = rep.summary("src.pt")
    assert text.startswith(f"transferred {rep.total - 6}/{rep.total} tensors from src.pt")
    assert "model.24.m.0.weight: shape: ours (36, 64, 1, 1), the source's model.24.m.0.weight (27, 64, 1, 1)" in text


def test_p2_model_from_a_p3_p5_checkpoint():
    """Backbone and top-down neck by what they compute, the bottom-up path by walking back from the head, and
    the new stride-4 level's head from the P3 level's weights (its bias: the P2 input is narrower)."""
    src = _trained("yolov5n.yaml", 4)
    model = _fresh("yolov5n-p2.yaml", 4)
    new = _fresh("yolov5n-p2.yaml", 4).state_dict()
    pairs = pair_layers(model, src)
    assert {i: pairs[i] for i in range(18)} == {i: i for i in range(18)}
    assert [pairs[i] for i in range(25, 32)] == [18, 19, 20, 21, 22, 23, 24]
    assert pairs[24] == 17 and not {18, 19, 20, 21, 22} & set(pairs)  # the P2 branch itself is new
    rep = transfer(model, src)
    s, mine = src.state_dict(), model.state_dict()
    for k, v in s.items():
        i, rest = int(k.split(".")[1]), k.split(".", 2)[2]
        if i < 18:
            assert torch.equal(mine[k], v), k
        elif i < 24:  # bottom-up path and P4/P5 shift by 7 layers
            assert torch.equal(mine[f"model.{i + 7}.{rest}"], v), k
    for lv in range(3):  # P3-P5 head levels move up one
        assert torch.equal(mine[f"model.31.m.{lv + 1}.weight"], s[f"model.24.m.{lv}.weight"])
        assert torch.equal(mine["model.31.anchors"][lv + 1], s["model.24.anchors"][lv])
    assert torch.equal(mine["model.31.m.0.bias"], s["model.24.m.0.bias"])  # new P2 level from P3
    assert rep.left_out["model.31.m.0.weight"].startswith("shape: ours (27, 32, 1, 1)")
    assert torch.equal(mine["model.31.anchors"][0], new["model.31.anchors"][0])  # its own small anchors
    assert torch.equal(mine["model.18.conv.weight"], new["model.18.conv.weight"])
    assert "model.18 (6 tensors): new layer" in rep.summary("x")


def test_p2_dfl_level_starts_from_p3_box_tower():
    src = _trained("yolov5n-dfl.yaml", 4)
    model = _fresh("yolov5n-p2-dfl.yaml", 4)
    transfer(model, src)
    s, mine = src.state_dict(), model.state_dict()
    head = len(model.model) - 1
    for lv in (0, 1):  # P2 (new) and P3 both from the source's P3 level, where the shapes fit
        assert torch.equal(mine[f"model.{head}.box.{lv}.1.conv.weight"], s["model.24.box.0.1.conv.weight"])
        assert torch.equal(mine[f"model.{head}.box.{lv}.2.bias"], s["model.24.box.0.2.bias"])


def test_other_head_kind_transfers_backbone_and_neck_only():
    src = _trained("yolov5n.yaml", 4)
    model = _fresh("yolov5n-dfl.yaml", 4)
    rep = transfer(model, src)
    assert all(k.startswith("model.24.") for k in rep.left_out) and rep.left_out
    assert all(r.startswith("other head: DetectDFL, the source has Detect") for r in rep.left_out.values())
    assert torch.equal(model.state_dict()["model.23.cv3.conv.weight"], src.state_dict()["model.23.cv3.conv.weight"])


def test_train_weights_prints_the_transfer(tmp_path, caplog):
    src = _trained("yolov5n.yaml", 4)
    path = tmp_path / "src.pt"
    save_checkpoint({"model_yaml": checkpoint_yaml(src), "model": src.state_dict(), "names": list("abcd")}, path)
    opt = argparse.Namespace(weights=str(path), cfg="", assigner=None, freeze=0, reg_max=None)
    with caplog.at_level(logging.INFO, logger="smalldet"):
        model = build_model(opt, 2, ["x", "y"], [1, 2])
    assert model.nc == 2 and model.yaml["scale"] == "n"
    assert f"transferred 343/349 tensors from {path}" in caplog.text
    assert "model.24.m.2.bias: shape: ours (21,)" in caplog.text


def test_weights_alone_trains_the_checkpoints_architecture():
    from utils.config import resolve
    data = {"yaml_file": "d.yaml", "names": ["a"]}
    assert resolve({"weights": "x.pt"}, data).cfg == ""  # build_model then takes the checkpoint's model_yaml
    assert resolve({"weights": "x.pt", "cfg": "yolov5s.yaml"}, data).cfg == "yolov5s.yaml"
    assert resolve({}, data).cfg == "yolov5n.yaml"


# ----------------------------------------------------------------------------- --freeze
def test_freeze_by_part_name_and_count():
    model = _fresh("yolov5n.yaml", 2)
    assert layers_to_freeze(model, "backbone") == list(range(10))
    assert layers_to_freeze(model, "neck") == list(range(10, 24))
    assert layers_to_freeze(model, "backbone,head") == [*range(10), 24]
    assert layers_to_freeze(model, 3) == [0, 1, 2]
    line = freeze(model, "backbone")
    assert line.startswith("--freeze backbone: froze layers 0-9,")
    frozen = {n.split(".")[1] for n, p in model.named_parameters() if not p.requires_grad}
    assert frozen == {str(i) for i in range(10)}


def test_freeze_values_are_checked():
    assert check_freeze("10", "--freeze") == 10 and check_freeze(3, "--freeze") == 3
    assert check_freeze(" backbone, neck", "--freeze") == "backbone,neck"
    for bad in ("bakbone", "", "-1", True):
        with pytest.raises(ValueError, match="expected a layer count or part names"):
            check_freeze(bad, "--freeze")
    import train
    from utils.config import resolve
    opt = train.parse_opt(["--freeze", "backbone"])
    assert resolve({"freeze": opt.freeze}, {"yaml_file": "d.yaml", "names": ["a"]}).freeze == "backbone"

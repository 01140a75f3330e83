"""DetectDFL's class branch: full 3x3 convs, depthwise-separable ones (-lite), both in one tower (conv-dw,
-half), or one kind per level (-p2-dfl-mix); parameters counted by hand, BatchNorm folded without changing outputs."""
from __future__ import annotations

import copy

import pytest
import torch
import torch.nn as nn

from models.yolo import Model
from tests.models.test_model_zoo import conv_bn, n_params


def assert_class_towers_fuse(model: Model) -> None:
    """Each level's class tower gives the same output after fuse() as before, on random features and random
    BatchNorm statistics (on a fresh model the head's inputs are so small that its output is its biases)."""
    m = copy.deepcopy(model).eval()
    g = torch.Generator().manual_seed(0)
    for bn in (b for b in m.detect.cls.modules() if isinstance(b, nn.BatchNorm2d)):
        for t in (bn.weight, bn.bias, bn.running_mean):
            t.data = torch.randn(t.shape, generator=g)
        bn.running_var.data = torch.rand(bn.running_var.shape, generator=g) + 0.5
    xs = [torch.randn(1, next(c for c in t.modules() if isinstance(c, nn.Conv2d)).in_channels, 6, 8, generator=g)
          for t in m.detect.cls]
    with torch.no_grad():
        before = [t(x) for t, x in zip(m.detect.cls, xs)]
        m.fuse()
        after = [t(x) for t, x in zip(m.detect.cls, xs)]
    assert not any(isinstance(b, nn.BatchNorm2d) for b in m.detect.cls.modules())
    for a, b in zip(after, before):
        assert b.abs().mean() > 0.1  # the towers' outputs are not just their biases
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


def test_lite_class_branch_is_depthwise_separable():
    """yolov5n-dfl-lite: every 3x3 of the class tower is a depthwise 3x3 + 1x1; the box branch, neck and
    backbone are yolov5n-dfl's. Parameters counted by hand; the same outputs shapes; fuses."""
    full, lite = Model("yolov5n-dfl.yaml", nc=6, reg_max=8), Model("yolov5n-dfl-lite.yaml", nc=6, reg_max=8)
    c3 = 64  # max(ch[0], nc): the P3 width at n scale
    by_hand = sum(conv_bn(c, c, 3, c) + conv_bn(c, c3, 1) + conv_bn(c3, c3, 3, c3) + conv_bn(c3, c3, 1)
                  + c3 * 6 + 6 for c in (64, 128, 256))
    assert n_params(lite.detect.cls) == by_hand
    assert n_params(lite) - n_params(lite.detect.cls) == n_params(full) - n_params(full.detect.cls)
    assert lite.info(320)["gflops"] < 0.81 * full.info(320)["gflops"]  # 1.53 -> 1.22 at 320 for 6 classes
    assert_class_towers_fuse(lite)
    with torch.no_grad():
        y = lite.eval()(torch.rand(1, 3, 64, 96))
    assert y.shape == (1, 8 * 12 + 4 * 6 + 2 * 3, 11)
    with pytest.raises(ValueError, match="class branch 'sep': choose conv or dw or conv-dw"):
        bad = [[17, 20, 23], 1, "DetectDFL", ["nc", "reg_max", 1.0, "sep"]]
        Model({**lite.yaml, "head": lite.yaml["head"][:-1] + [bad]})


def test_class_branch_per_level():
    """A list picks each level's class branch: [conv, dw, dw, dw] on the P2 model is the full tower on P2 and
    the depthwise one on P3-P5, level by level the same modules as the all-conv and all-dw heads."""
    full, lite = Model("yolov5n-p2-dfl.yaml", nc=6, reg_max=4), Model("yolov5n-p2-dfl-lite.yaml", nc=6, reg_max=4)
    head = lite.yaml["head"][-1]  # [from, n, DetectDFL, [nc, reg_max, dfl_bin, branch]]

    def with_branches(branches: list[str]) -> Model:
        return Model({**lite.yaml, "head": lite.yaml["head"][:-1] + [[*head[:3], [*head[3][:3], branches]]]})

    mixed = with_branches(["conv", "dw", "dw", "dw"])
    assert ([n_params(m) for m in mixed.detect.cls]
            == [n_params(full.detect.cls[0])] + [n_params(m) for m in lite.detect.cls[1:]])
    assert [type(m[0]) for m in mixed.detect.cls] == [type(full.detect.cls[0][0])] + [type(lite.detect.cls[1][0])] * 3
    assert Model(mixed.yaml).detect.cls[0][0].conv.kernel_size == (3, 3)  # checkpoints rebuild from the YAML
    with pytest.raises(ValueError, match=r"3 class branches \['conv', 'dw', 'dw'\] for 4 levels"):
        with_branches(["conv", "dw", "dw"])
    with pytest.raises(ValueError, match="class branch 'sep': choose conv or dw or conv-dw"):
        with_branches(["conv", "sep", "dw", "dw"])
    assert_class_towers_fuse(mixed)


def test_half_class_branch_keeps_the_first_3x3_on_p3_p4():
    """yolov5n-dfl-half ([conv-dw, conv-dw, dw]): on P3 and P4 the class tower's first conv is yolov5n-dfl's full
    3x3 and its second -lite's depthwise 3x3 + 1x1; P5 is -lite's. Parameters counted by hand; GFLOPs between
    the two, under yolo26n's 5.31 at 640 on aerial-cars' 4 classes; fuses to the same outputs."""
    full, lite = Model("yolov5n-dfl.yaml", nc=4, reg_max=4), Model("yolov5n-dfl-lite.yaml", nc=4, reg_max=4)
    half = Model("yolov5n-dfl-half.yaml", nc=4, reg_max=4)
    c3 = 64
    first = [conv_bn(c, c3, 3) for c in (64, 128)] + [conv_bn(256, 256, 3, 256) + conv_bn(256, c3, 1)]
    second = conv_bn(c3, c3, 3, c3) + conv_bn(c3, c3, 1)  # depthwise-separable on every level
    assert n_params(half.detect.cls) == sum(first) + 3 * (second + c3 * 4 + 4)
    assert n_params(half) - n_params(half.detect.cls) == n_params(lite) - n_params(lite.detect.cls)
    assert [n_params(t[0]) for t in half.detect.cls] == [n_params(full.detect.cls[0][0]),
                                                         n_params(full.detect.cls[1][0]),
                                                         n_params(lite.detect.cls[2][0])]
    g = {k: m.info(640)["gflops"] for k, m in (("full", full), ("lite", lite), ("half", half))}
    assert g["lite"] < g["half"] < 5.31 < g["full"]  # 4.54 < 5.16 < yolo26n's 5.31 < 5.80
    assert_class_towers_fuse(half)
    with pytest.raises(ValueError, match="class branch 'dw-conv': choose conv or dw or conv-dw"):
        Model({**half.yaml, "head": half.yaml["head"][:-1] + [[*half.yaml["head"][-1][:3],
                                                                 ["nc", "reg_max", 1.0, ["dw-conv", "dw", "dw"]]]]})

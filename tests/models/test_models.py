"""Model side: block shapes, SPD invertibility, configs, exact YOLOv5 sizes, fuse, errors."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn as nn

from models.blocks import (C3, SPP, SPPF, BottleneckCSP, Bottleneck, Concat, Conv, DilatedConv,
                           DWConv, GroupConv, Upsample)
from models.config import ModelConfigError
from models.extras import ASPP, SE, ConvTranspose, DeformConv, DenseBlock, MBConv
from models.head import Detect
from models.neck import ASFF
from models.stems import Focus, SPDConv, SpaceToDepth, depth_to_space, space_to_depth
from models.yolo import Model, count_gflops, main

CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "models"


@pytest.mark.parametrize("hw", [(32, 32), (48, 80), (64, 96)])
@pytest.mark.parametrize("make,c_out,down", [
    (lambda: Conv(8, 16, 3, 2), 16, 2),
    (lambda: Conv(8, 16, 6, 2, 2), 16, 2),
    (lambda: DWConv(8, 16, 3, 1), 16, 1),
    (lambda: GroupConv(8, 16, 3, 1, 4), 16, 1),
    (lambda: DilatedConv(8, 12, 3, 2), 12, 1),
    (lambda: Bottleneck(8, 8), 8, 1),
    (lambda: C3(8, 16, 2), 16, 1),
    (lambda: BottleneckCSP(8, 16, 2), 16, 1),
    (lambda: SPP(8, 16), 16, 1),
    (lambda: SPPF(8, 16), 16, 1),
    (lambda: Focus(8, 16, 3), 16, 2),
    (lambda: SpaceToDepth(2), 32, 2),
    (lambda: SPDConv(8, 16), 16, 2),
    (lambda: SE(8, 4), 8, 1),
    (lambda: ASPP(8, 16), 16, 1),
    (lambda: DeformConv(8, 16, 3, 2), 16, 2),
    (lambda: MBConv(8, 8), 8, 1),
    (lambda: MBConv(8, 16, 3, 2), 16, 2),
    (lambda: DenseBlock(8, 16, 3, 4), 16, 1),
    (lambda: ConvTranspose(8, 4), 4, 0.5),
    (lambda: Upsample(None, 2, "nearest"), 8, 0.5),
])
def test_block_shapes(make, c_out, down, hw):
    m = make()
    x = torch.randn(2, 8, *hw)
    y = m(x)
    assert y.shape == (2, c_out, int(hw[0] / down), int(hw[1] / down))
    if any(p.requires_grad for p in m.parameters()):
        y.float().mean().backward()
        assert all(p.grad is not None for p in m.parameters() if p.requires_grad)


def test_concat_and_asff_shapes():
    xs = [torch.randn(1, 8, 32, 32), torch.randn(1, 16, 16, 16), torch.randn(1, 32, 8, 8)]
    assert Concat(1)([xs[1], xs[1]]).shape == (1, 32, 16, 16)
    for level, x in enumerate(xs):
        assert ASFF([8, 16, 32], level)(xs).shape == x.shape
    # four levels (P2-P5): downsampling by 8 goes through conv + pooling
    xs4 = [torch.randn(1, 4, 64, 64)] + xs
    assert ASFF([4, 8, 16, 32], 3)(xs4).shape == xs[-1].shape


def test_space_to_depth_is_lossless_and_matches_focus_slicing():
    x = torch.randn(2, 3, 8, 12)
    y = space_to_depth(x)
    assert y.shape == (2, 12, 4, 6)
    assert torch.equal(depth_to_space(y), x)
    # the same channel order as YOLOv5's Focus slicing, so Focus weights stay comparable
    ref = torch.cat([x[..., ::2, ::2], x[..., 1::2, ::2], x[..., ::2, 1::2], x[..., 1::2, 1::2]], 1)
    assert torch.equal(y, ref)
    # every input value appears exactly once
    assert torch.equal(y.flatten().sort().values, x.flatten().sort().values)
    with pytest.raises(ValueError, match="not divisible"):
        space_to_depth(torch.randn(1, 1, 5, 4))


# nc=80 parameter counts of the reference YOLOv5 v6/v7 models
YOLOV5_PARAMS = {"n": 1_872_157, "s": 7_235_389, "m": 21_190_557, "l": 46_563_709, "x": 86_749_405}


@pytest.mark.parametrize("scale", list(YOLOV5_PARAMS))
def test_yolov5_parameter_counts_are_exact(scale):
    m = Model(f"yolov5{scale}.yaml")
    assert sum(p.numel() for p in m.parameters()) == YOLOV5_PARAMS[scale]


@pytest.mark.parametrize("scale,gflops", [("n", 4.5), ("s", 16.5)])
def test_yolov5_gflops(scale, gflops):
    # YOLOv5 reports 4.5 / 16.5 GFLOPs at 640 (thop, 2 x MACs); allow rounding differences
    assert count_gflops(Model(f"yolov5{scale}.yaml"), 640) == pytest.approx(gflops, abs=0.15)


ALL_CONFIGS = [f"yolov5{s}{v}.yaml" for v in ("", "-focus", "-spd", "-asff", "-p2") for s in "ns"]


@pytest.mark.parametrize("cfg", ALL_CONFIGS)
def test_configs_forward_backward(cfg):
    model = Model(cfg, nc=3)
    nl = model.detect.nl
    for h, w in ((64, 64), (96, 160)):
        model.train()
        out = model(torch.randn(2, 3, h, w))
        assert len(out) == nl
        for p, s in zip(out, model.stride.tolist()):
            assert p.shape == (2, 3, h // int(s), w // int(s), 8)
        sum(o.mean() for o in out).backward()
        assert all(p.grad is not None for p in model.parameters())
        model.zero_grad()
    model.eval()
    with torch.no_grad():
        y = model(torch.randn(1, 3, 320, 320))
    n = sum(3 * (320 // int(s)) ** 2 for s in model.stride.tolist())
    assert y.shape == (1, n, 8)
    assert 0 <= y[..., 4:].min() and y[..., 4:].max() <= 1


def test_p2_has_stride_4_and_strides_follow_levels():
    assert Model("yolov5n-p2.yaml", nc=2).stride.tolist() == [4, 8, 16, 32]
    assert Model("yolov5n.yaml", nc=2).stride.tolist() == [8, 16, 32]


def test_detect_decode_matches_formula():
    det = Detect(2, [[10, 20, 30, 40], [50, 60, 70, 80]], [4, 4])
    det.stride = torch.tensor([8.0, 16.0])
    det.eval()
    xs = [torch.randn(1, 4, 3, 5), torch.randn(1, 4, 2, 2)]
    raw = [det.m[i](x).view(1, 2, 7, *x.shape[2:]).permute(0, 1, 3, 4, 2) for i, x in enumerate(xs)]
    y = det(xs)
    # element (level 1, anchor 1, y=1, x=0) by hand
    t = raw[1][0, 1, 1, 0]
    idx = 2 * 3 * 5 + 1 * 2 * 2 + 1 * 2 + 0
    s = torch.sigmoid(t)
    expect = torch.stack([(2 * s[0] - 0.5 + 0) * 16, (2 * s[1] - 0.5 + 1) * 16,
                          (2 * s[2]) ** 2 * 70, (2 * s[3]) ** 2 * 80])
    assert torch.allclose(y[0, idx, :4], expect, atol=1e-4)
    assert torch.allclose(y[0, idx, 4:], s[4:])


def test_detect_any_levels_p2_to_p6():
    cfg = {"nc": 1, "anchors": 3, "backbone": [[-1, 1, Conv, [8, 3, 2]]], "head": []}
    cfg["backbone"] = [[-1, 1, "Conv", [8, 3, 2]]] + [[-1, 1, "Conv", [8, 3, 2]] for _ in range(5)]
    cfg["head"] = [[[1, 2, 3, 4, 5], 1, "Detect", ["nc", "anchors"]]]
    m = Model(cfg)
    assert m.stride.tolist() == [4, 8, 16, 32, 64]
    # default anchors scale with the stride
    assert torch.allclose(m.detect.anchors[1] / m.detect.anchors[0], torch.full((3, 2), 2.0))


@pytest.mark.parametrize("cfg", ["yolov5n.yaml", "yolov5n-spd.yaml", "yolov5n-asff.yaml"])
def test_fuse_keeps_outputs(cfg):
    model = Model(cfg, nc=4)
    for m in model.modules():  # non-trivial BN statistics, or fusing would be a no-op
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.3, 0.3)
    model.eval()
    x = torch.rand(1, 3, 128, 96)
    with torch.no_grad():
        y = model(x)
        model.fuse()
        y2 = model(x)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules() if not isinstance(m, (ASFF,)))
    assert torch.allclose(y, y2, rtol=1e-3, atol=1e-2)


def _write(tmp_path, text):
    p = tmp_path / "bad.yaml"
    p.write_text(text)
    return str(p)


GOOD_HEAD = "head:\n  - [[-1], 1, Detect, [nc, anchors]]\n"


@pytest.mark.parametrize("backbone,match", [
    ("  - [-1, 1, Conv, [16, 3, 2]]\n  - [-1, 1, NoSuchBlock, [16]]\n", r"line 5: unknown module 'NoSuchBlock'"),
    ("  - [-1, 1, Conv, [16, 3, 2]]\n  - [7, 1, Conv, [16]]\n", r"line 5: 'from' index 7"),
    ("  - [-1, 1, Conv, [16, 3, 2]]\n  - [-1, 1, Conv, [16, 3, 2, 1, 1, 1, 1, 1]]\n", r"line 5: bad args"),
    ("  - [-1, 1, Conv]\n", r"line 4: expected \[from, repeats, module, args\]"),
])
def test_bad_yaml_errors_name_file_and_line(tmp_path, backbone, match):
    text = "nc: 2\nanchors: 1\nbackbone:\n" + backbone + GOOD_HEAD
    path = _write(tmp_path, text)
    with pytest.raises(ModelConfigError, match=match) as e:
        Model(path)
    assert "bad.yaml" in str(e.value)


def test_malformed_yaml_and_missing_file(tmp_path):
    with pytest.raises(ModelConfigError, match=r"bad.yaml line \d+: malformed YAML"):
        Model(_write(tmp_path, "nc: 2\nbackbone: [[-1, 1, Conv\nhead: []\n"))
    with pytest.raises(ModelConfigError, match="not found"):
        Model(str(tmp_path / "nope.yaml"))
    with pytest.raises(ModelConfigError, match="scale 'q' not in scales"):
        Model(_write(tmp_path, "nc: 1\nscale: q\nscales: {n: [0.33, 0.25]}\nbackbone: []\nhead: []\n"))


def test_scale_resolution_and_cli(capsys):
    assert Model("yolov5s-spd.yaml").yaml["width_multiple"] == 0.5
    main(["--cfg", "yolov5n.yaml", "--imgsz", "320"])
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last.startswith("params 1,872,157, GFLOPs ")

"""The model zoo: configs built from the literature's blocks (YOLOv4-CSP, SE, EfficientNet, DenseNet,
ASPP, DCN, transposed-conv and depthwise variants) build at n and s, run, train one step through the
real loss, and have the sizes their papers (or a count by hand) say."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn as nn
import torchvision
import yaml

from models.blocks import C3, SPPF, BottleneckCSP, Conv, ConvMish, DWConv, make_act
from models.extras import ASPP, SE, AvgPool, ConvTranspose, DeformConv, DenseBlock, MBConv
from models.yolo import Model, count_gflops
from utils.loss import build_loss
from utils.engine.optim import build_optimizer

ROOT = Path(__file__).resolve().parents[2]
YOLOV5N = 1_872_157  # the reference YOLOv5n count, checked in test_models

# config name with {} for the scale: nc=80 parameter count at n (pinned), GFLOPs@640 at n
ZOO = {
    "yolov4{}-csp.yaml": (1_779_765, 4.76),
    "yolov5{}-se.yaml": (1_884_453, 4.47),
    "yolov5{}-effnet.yaml": (1_877_247, 3.58),
    "yolov5{}-dense.yaml": (1_158_765, 3.15),
    "yolov5{}-dilated.yaml": (2_495_389, 4.94),
    "yolov5{}-dcn.yaml": (1_940_289, 5.09),
    "yolov5{}-tconv.yaml": (1_954_461, 4.57),
    "yolov5{}-dw.yaml": (920_317, 2.35),
}


def n_params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def conv_bn(c1: int, c2: int, k: int = 1, g: int = 1) -> int:
    """Parameters of Conv (bias-free conv + BN) by hand."""
    return c1 // g * c2 * k * k + 2 * c2


@pytest.mark.parametrize("cfg", list(ZOO))
def test_zoo_builds_runs_and_trains_one_step(cfg):
    torch.manual_seed(0)
    model = Model(cfg.format("n"))  # nc=80
    assert n_params(model) == ZOO[cfg][0]
    assert model.stride.tolist() == [8, 16, 32]
    # forward shapes, non-square
    model.train()
    h, w = 64, 96
    out = model(torch.randn(2, 3, h, w))
    assert [tuple(p.shape) for p in out] == [(2, 3, h // s, w // s, 85) for s in (8, 16, 32)]
    model.eval()
    with torch.no_grad():
        y = model(torch.randn(1, 3, 64, 64))
    assert y.shape == (1, 3 * (8 * 8 + 4 * 4 + 2 * 2), 85)

    # one SGD step (the trainer's optimizer) through the real loss on a batch with boxes: every layer's weights move
    hyp = yaml.safe_load((ROOT / "configs" / "hyps" / "default.yaml").read_text()) | {"imgsz": 96}
    loss_fn = build_loss(model, hyp, 96)
    model.train()
    targets = torch.tensor([[0, 3, 30.0, 40.0, 12.0, 16.0], [0, 7, 70.0, 20.0, 40.0, 30.0],
                            [1, 0, 48.0, 48.0, 8.0, 8.0]])  # [batch_idx, cls, cx, cy, w, h] in pixels
    before = {k: v.detach().clone() for k, v in model.state_dict().items() if v.is_floating_point()}
    # the trainer's groups; no decay: only gradients move
    opt = build_optimizer(model, "SGD", lr=0.01, momentum=0.937, decay=0.0)
    loss, items = loss_fn(model(torch.randn(2, 3, 96, 96)), targets)
    assert torch.isfinite(loss) and loss > 0 and items[0] > 0  # a box loss: the targets were matched
    loss.backward()
    opt.step()
    after = model.state_dict()
    for layer in model.model:
        names = [f"model.{layer.i}.{k}" for k, _ in layer.named_parameters()]
        if names:
            assert any(not torch.equal(before[k], after[k]) for k in names), f"layer {layer.i} {layer.type} frozen"


@pytest.mark.parametrize("cfg", list(ZOO))
def test_zoo_s_scale_builds_wider(cfg):
    model = Model(cfg.format("s"), nc=3)
    assert n_params(model) > 3 * ZOO[cfg][0] * 0.9  # ~2x width: ~4x the weights
    model.train()
    out = model(torch.randn(1, 3, 128, 128))
    assert [tuple(p.shape) for p in out] == [(1, 3, 128 // s, 128 // s, 8) for s in (8, 16, 32)]


@pytest.mark.parametrize("cfg", ["yolov4{}-csp.yaml", "yolov5{}-dcn.yaml", "yolov5{}-effnet.yaml"])
def test_zoo_gflops_at_640(cfg):
    assert count_gflops(Model(cfg.format("n")), 640) == pytest.approx(ZOO[cfg][1], abs=0.01)


@pytest.mark.parametrize("cfg", ["yolov4{}-csp.yaml", "yolov5{}-dw.yaml", "yolov5{}-dilated.yaml"])
def test_zoo_fuse_keeps_outputs(cfg):
    torch.manual_seed(0)
    model = Model(cfg.format("n"), nc=2)
    for m in model.modules():  # non-trivial BN statistics, or fusing would be a no-op
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    model.eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        y0 = model(x)
        y1 = model.fuse()(x)
    assert torch.allclose(y0, y1, atol=1e-4, rtol=1e-3)


# --- sizes checked against a reference or a count by hand -------------------------------------------------

def test_effnet_backbone_is_efficientnet_b0_at_s():
    # torchvision's EfficientNet-B0 (stem + 7 MBConv stages, no head conv or classifier), built offline
    ref = torchvision.models.efficientnet_b0().features[:8]
    ours = Model("yolov5s-effnet.yaml").model[:8]
    assert [n_params(m) for m in ours] == [n_params(m) for m in ref]
    assert n_params(ours) == 3_595_388
    # a stage strides in its first block only: P3 (layer 3) at 1/8, P4 (5) at 1/16, P5 (7) at 1/32
    x = torch.zeros(1, 3, 64, 64)
    sizes = []
    for m in ours:
        x = m(x)
        sizes.append(x.shape[-1])
    assert sizes == [32, 32, 16, 8, 4, 4, 2, 2]


def test_dense_blocks_are_densenet121_convs():
    # DenseNet-121 (torchvision): block i + transition i, conv weights (BN order differs: ours is post-act)
    ref = torchvision.models.densenet121().features
    for c1, c2, n, blk, tr in ((64, 128, 6, ref.denseblock1, ref.transition1),
                               (128, 256, 12, ref.denseblock2, ref.transition2),
                               (256, 512, 24, ref.denseblock3, ref.transition3)):
        ours = DenseBlock(c1, c2, n, 32)
        shapes = [tuple(m.weight.shape) for m in ours.modules() if isinstance(m, nn.Conv2d)]
        want = [tuple(m.weight.shape) for m in (*blk.modules(), *tr.modules()) if isinstance(m, nn.Conv2d)]
        assert shapes == want
    # in the config: growth scales with width (32 x 0.25 = 8 at n), block 1 of 6 x 0.33 -> 2 layers
    m = Model("yolov5n-dense.yaml").model[2]
    hand = sum(conv_bn(16 + 8 * i, 32) + conv_bn(32, 8, 3) for i in range(2)) + conv_bn(16 + 2 * 8, 32)
    assert n_params(m) == hand


def test_yolov4_csp_stage_by_hand_and_mish():
    model = Model("yolov4n-csp.yaml")
    stage = model.model[6]  # P3 stage: 64 -> 64 with 8 x 0.33 -> 3 residual blocks, c_ = 32
    c1, c2, n, c_ = 64, 64, 3, 32
    hand = (conv_bn(c1, c_) + c1 * c_ + c_ * c_ + conv_bn(2 * c_, c2) + 2 * 2 * c_
            + n * (conv_bn(c_, c_) + conv_bn(c_, c_, 3)))
    assert isinstance(stage, BottleneckCSP) and len(stage.m) == n and n_params(stage) == hand
    acts = [type(m) for m in model.modules() if isinstance(m, (nn.SiLU, nn.Mish))]
    assert acts and set(acts) == {nn.Mish}  # Mish throughout, as YOLOv4-CSP


def test_se_adds_exactly_its_excitation_weights():
    # yolov5-se = yolov5 + four SE layers; SE(c): c -> max(c // 16, 8) -> c, 1x1 convs with bias
    hand = sum(2 * c * max(c // 16, 8) + max(c // 16, 8) + c for c in (32, 64, 128, 256))
    assert ZOO["yolov5{}-se.yaml"][0] - YOLOV5N == hand == 12_296


def test_variant_sizes_differ_from_yolov5n_by_the_swapped_layers():
    # ASPP(256 -> 256, rates 1-2-3) in place of SPPF(256 -> 256) at n
    aspp = conv_bn(256, 128) + 2 * conv_bn(256, 128, 3) + (256 * 128 + 128) + conv_bn(4 * 128, 256)
    assert n_params(ASPP(256, 256)) == aspp
    assert ZOO["yolov5{}-dilated.yaml"][0] - YOLOV5N == aspp - n_params(SPPF(256, 256))
    # two 2x2 transposed convs (128 and 64 channels) + BN, Upsample has none
    assert ZOO["yolov5{}-tconv.yaml"][0] - YOLOV5N == (128 * 128 * 4 + 256) + (64 * 64 * 4 + 128)
    # DCN: offset branch (2 k^2 = 18 maps, with bias) on the P5 down conv, plus a whole DeformConv on P3
    dcn = (128 * 18 * 9 + 18) + (64 * 18 * 9 + 18) + conv_bn(64, 64, 3)
    assert ZOO["yolov5{}-dcn.yaml"][0] - YOLOV5N == dcn
    # DWConv 16 -> 32, stride 2: groups gcd = 16, so 2 x 9 weights per input channel
    assert n_params(DWConv(16, 32, 3, 2)) == 32 * 9 + 64


# --- block contracts the configs rely on ------------------------------------------------------------------

def test_mbconv_stage_strides_once():
    stage, c2 = MBConv.from_yaml([16], [48, 3, 2, 6], 3, 0.5)
    assert c2 == 24 and [b.dw.conv.stride for b in stage] == [(2, 2), (1, 1), (1, 1)]
    assert [b.add for b in stage] == [False, True, True]
    assert stage(torch.randn(1, 16, 32, 32)).shape == (1, 24, 16, 16)


def test_dense_block_growth_scales_with_width():
    block, c2 = DenseBlock.from_yaml([32], [256, 32], 4, 0.5)
    assert c2 == 128 and block.transition.conv.in_channels == 32 + 4 * 16
    assert block(torch.randn(1, 32, 8, 8)).shape == (1, 128, 8, 8)


def test_avgpool_halves_like_a_stride_2_conv():
    pool, c2 = AvgPool.from_yaml([8], [2], 1, 1.0)
    for hw in (8, 7):  # odd sizes round up, as Conv(k=3, s=2) does
        x = torch.randn(1, 8, hw, hw)
        assert pool(x).shape == Conv(8, 8, 3, 2)(x).shape
    assert c2 == 8 and torch.allclose(pool(torch.ones(1, 8, 4, 4)), torch.ones(1, 8, 2, 2))


def test_activation_option():
    assert isinstance(Conv(4, 4).act, nn.SiLU) and isinstance(Conv(4, 4, act=False).act, nn.Identity)
    assert isinstance(ConvMish(4, 8, 3, 2).act, nn.Mish)
    csp = BottleneckCSP(8, 8, 2, act="mish")
    assert not any(isinstance(m, nn.SiLU) for m in csp.modules())
    assert isinstance(C3(8, 8).cv1.act, nn.SiLU)  # the default stays YOLOv5's
    with pytest.raises(ValueError, match="unknown activation"):
        make_act("swishy")


def test_aspp_trains_at_batch_1():
    # the global-context branch sees a 1x1 map: no BatchNorm there, or batch-1 training fails
    m = ASPP(8, 16).train()
    assert m(torch.randn(1, 8, 8, 8)).shape == (1, 16, 8, 8)


def test_deform_conv_flops_are_counted_as_a_conv():
    # torch's FlopCounterMode knows no torchvision ops: without our formula DeformConv would count 0
    d, c = DeformConv(8, 16, 3, 2), Conv(8, 16, 3, 2)
    offset_conv = 2 * (18 * 8 * 9) * 8 * 8  # the offset branch, a plain conv at the 8x8 output
    assert count_gflops(d, 16, ch=8) * 1e9 == count_gflops(c, 16, ch=8) * 1e9 + offset_conv


def test_se_and_tconv_shapes_in_yaml_contract():
    se, c = SE.from_yaml([32], [16], 1, 0.25)
    assert c == 32 and se.fc1.out_channels == 8
    up, c = ConvTranspose.from_yaml([64], [512, 2, 2], 1, 0.25)
    assert c == 128 and up(torch.randn(1, 64, 4, 6)).shape == (1, 128, 8, 12)

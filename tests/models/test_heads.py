"""The heads on their base class: both decodes against a slow, obvious re-implementation, the grid they cache,
and checkpoints written before the base class (DetectDFL's placeholder anchors buffer) still loading."""
import math

import pytest
import torch

from models.head import Detect, DetectDFL, HeadBase
from models.sizing import weights_mismatch
from models.yolo import Model
from utils.checkpoints.checkpoint import checkpoint_yaml, load_model, save_checkpoint


def sig(v: float) -> float:
    return 1 / (1 + math.exp(-v))


def test_both_heads_are_head_bases_and_dfl_has_no_anchors():
    assert issubclass(Detect, HeadBase) and issubclass(DetectDFL, HeadBase)
    assert not issubclass(DetectDFL, Detect)
    det = Model("yolov5n-dfl.yaml", nc=2).detect
    assert det.anchor_shapes is None and not hasattr(det, "anchors")
    assert not any(k.endswith("anchors") for k in det.state_dict())


def test_anchor_head_decodes_every_position_like_yolov5():
    torch.manual_seed(0)
    anchors = [[10, 13, 16, 30], [30, 61, 62, 45]]
    det = Detect(2, anchors, [4, 4]).eval()
    det.stride.copy_(torch.tensor([8.0, 16.0]))
    xs = [torch.randn(1, 4, 3, 5) * 3, torch.randn(1, 4, 2, 2) * 3]
    with torch.no_grad():
        y = det(xs)[0].tolist()
        maps = [det.m[i](x)[0].view(2, 7, *x.shape[2:]).tolist() for i, x in enumerate(xs)]  # (na, 7, h, w)
    k = 0
    for lvl, (m, s) in enumerate(zip(maps, (8, 16))):
        for a, per_anchor in enumerate(m):
            aw, ah = anchors[lvl][2 * a:2 * a + 2]
            h, w = len(per_anchor[0]), len(per_anchor[0][0])
            for cy in range(h):
                for cx in range(w):
                    t = [sig(per_anchor[c][cy][cx]) for c in range(7)]
                    want = [(2 * t[0] - 0.5 + cx) * s, (2 * t[1] - 0.5 + cy) * s, (2 * t[2]) ** 2 * aw,
                            (2 * t[3]) ** 2 * ah, *t[4:]]
                    assert y[k] == pytest.approx(want, rel=1e-5, abs=1e-4), k
                    k += 1
    assert k == len(y)


def test_dfl_head_decodes_every_position_from_its_bins():
    torch.manual_seed(0)
    det = DetectDFL(3, [8, 8], reg_max=4, bin_width=0.5).eval()
    det.stride.copy_(torch.tensor([8.0, 16.0]))
    xs = [torch.randn(1, 8, 2, 3), torch.randn(1, 8, 1, 2)]
    with torch.no_grad():
        y = det(xs)[0].tolist()
        maps = [torch.cat((det.box[i](x), det.cls[i](x)), 1)[0].tolist() for i, x in enumerate(xs)]  # (C, h, w)
    k = 0
    for m, s in zip(maps, (8, 16)):
        h, w = len(m[0]), len(m[0][0])
        for cy in range(h):
            for cx in range(w):
                v = [m[c][cy][cx] for c in range(len(m))]
                d = []
                for side in range(4):  # the expected bin under a softmax, in cells of 0.5
                    e = [math.exp(z) for z in v[4 * side:4 * side + 4]]
                    d.append(sum(0.5 * b * p for b, p in enumerate(e)) / sum(e) * s)
                px, py = (cx + 0.5) * s, (cy + 0.5) * s
                x1, y1, x2, y2 = px - d[0], py - d[1], px + d[2], py + d[3]
                scores = [sig(z) for z in v[16:]]
                best = max(scores)
                want = [(x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1, best, *[c / best for c in scores]]
                assert y[k] == pytest.approx(want, rel=1e-5, abs=1e-4), k
                k += 1
    assert k == len(y)


def test_anchor_head_decodes_with_anchors_rewritten_in_place():
    """autoanchor rewrites the anchors in place after the head may have cached a grid: the next decode uses
    the new ones (the cache checks them; nothing else has to clear it)."""
    m = Model("yolov5n.yaml", nc=2).eval()
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        before = m(x)
        m.detect.anchors.mul_(2)
        after = m(x)
    torch.testing.assert_close(after[..., 2:4], before[..., 2:4] * 2)
    torch.testing.assert_close(after[..., :2], before[..., :2])


@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning")
def test_a_traced_head_follows_the_input_size():
    """While tracing nothing is cached, so a trace at one size decodes another (export --dynamic)."""
    torch.manual_seed(0)
    det = Detect(2, [[10, 13], [30, 61]], [4, 4]).eval()
    det.stride.copy_(torch.tensor([8.0, 16.0]))
    small = [torch.randn(1, 4, 2, 2), torch.randn(1, 4, 1, 1)]
    big = [torch.randn(1, 4, 4, 6), torch.randn(1, 4, 2, 3)]
    with torch.no_grad():
        det(small)  # a grid cached at the traced size must not be frozen into the trace
        traced = torch.jit.trace(det, (small,), check_trace=False)
        torch.testing.assert_close(traced(big), det(big))


@pytest.mark.parametrize("cfg", ["yolov5n-dfl.yaml", "yolov5n-p2-dfl.yaml"])
def test_dfl_checkpoints_from_before_the_base_class_load(cfg, tmp_path):
    """They hold an unused anchors buffer on the head (ones in converted files, default anchors in trained ones),
    and those anchors in their YAML."""
    torch.manual_seed(0)
    m = Model(cfg, nc=2).eval()
    head = f"model.{len(m.model) - 1}"
    unused = torch.tensor([[10.0, 13.0]]) * m.stride.view(-1, 1, 1) / 8
    old = dict(m.state_dict(), **{f"{head}.anchors": unused})
    yaml = dict(checkpoint_yaml(m), anchors=unused.flatten(1).tolist())
    assert weights_mismatch(yaml, old) is None
    fresh = Model(cfg, nc=2)
    fresh.load_state_dict(old)  # strict
    save_checkpoint({"model": old, "model_yaml": yaml, "names": ["a", "b"], "epoch": -1}, tmp_path / "old.pt")
    back = load_model(tmp_path / "old.pt")
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(back(x), m(x)) and torch.equal(fresh.eval()(x), m(x))
    # other unexpected tensors are still refused
    with pytest.raises(RuntimeError, match="Unexpected key"):
        Model(cfg, nc=2).load_state_dict(dict(old, **{f"{head}.grid": torch.ones(1)}))

"""Box conversions, IoU family and NWD against hand values and independent references."""
import math

import numpy as np
import pytest
import torch
import torchvision.ops as tvops

from utils.boxes import (
    NWD_C,
    aligned_iou,
    box_iou,
    nwd,
    pairwise_nwd,
    wasserstein2,
    wh_iou,
    xywh2xyxy,
    xyxy2xywh,
)


def random_boxes(n: int, gen: torch.Generator, size: float = 50.0) -> torch.Tensor:
    xy = torch.rand(n, 2, generator=gen, dtype=torch.float64) * 100
    wh = torch.rand(n, 2, generator=gen, dtype=torch.float64) * size + 0.5
    return torch.cat((xy, xy + wh), 1)


def test_format_roundtrip_tensor_and_numpy():
    b = torch.tensor([[10.0, 20.0, 4.0, 6.0]])
    assert torch.equal(xywh2xyxy(b), torch.tensor([[8.0, 17.0, 12.0, 23.0]]))
    assert torch.equal(xyxy2xywh(xywh2xyxy(b)), b)
    a = np.array([[8.0, 17.0, 12.0, 23.0]])
    np.testing.assert_array_equal(xyxy2xywh(a), [[10.0, 20.0, 4.0, 6.0]])
    assert xyxy2xywh(a) is not a  # input untouched


def test_iou_family_hand_values():
    b1 = torch.tensor([[0.0, 0.0, 2.0, 2.0]])
    b2 = torch.tensor([[1.0, 1.0, 3.0, 3.0]])
    iou = 1 / 7  # overlap 1, union 4 + 4 - 1
    assert aligned_iou(b1, b2, "iou").item() == pytest.approx(iou, abs=1e-6)
    assert aligned_iou(b1, b2, "giou").item() == pytest.approx(iou - 2 / 9, abs=1e-6)
    # centres 2 apart squared (1^2 + 1^2), enclosing diagonal^2 = 18
    assert aligned_iou(b1, b2, "diou").item() == pytest.approx(iou - 2 / 18, abs=1e-6)
    # same aspect ratio: CIoU == DIoU
    assert aligned_iou(b1, b2, "ciou").item() == pytest.approx(iou - 2 / 18, abs=1e-6)


@pytest.mark.parametrize("kind", ["iou", "giou", "diou", "ciou"])
def test_aligned_matches_torchvision_diagonal(kind):
    gen = torch.Generator().manual_seed(0)
    b1, b2 = random_boxes(200, gen), random_boxes(200, gen)
    ref = box_iou(b1, b2, kind).diagonal()
    assert torch.allclose(aligned_iou(b1, b2, kind), ref, atol=1e-6)
    # broadcasting gives the full pairwise matrix too
    assert torch.allclose(aligned_iou(b1[:, None], b2[None], kind), box_iou(b1, b2, kind),
                          atol=1e-6)


def test_unknown_iou_kind():
    b = torch.zeros(1, 4)
    with pytest.raises(ValueError, match="unknown IoU kind"):
        aligned_iou(b, b, "eiou")
    with pytest.raises(ValueError, match="unknown IoU kind"):
        box_iou(b, b, "eiou")


def _bures_w2(box1: np.ndarray, box2: np.ndarray) -> float:
    """Slow general W2^2 between Gaussians: |m1-m2|^2 + tr(S1 + S2 - 2 (S1^.5 S2 S1^.5)^.5)."""
    def gauss(b):
        m = np.array([(b[0] + b[2]) / 2, (b[1] + b[3]) / 2])
        s = np.diag([((b[2] - b[0]) / 2) ** 2, ((b[3] - b[1]) / 2) ** 2])
        return m, s

    def sqrtm(a):
        w, v = np.linalg.eigh(a)
        return v @ np.diag(np.sqrt(np.clip(w, 0, None))) @ v.T

    m1, s1 = gauss(box1)
    m2, s2 = gauss(box2)
    r1 = sqrtm(s1)
    return float(((m1 - m2) ** 2).sum() + np.trace(s1 + s2 - 2 * sqrtm(r1 @ s2 @ r1)))


def test_wasserstein_matches_general_gaussian_formula():
    gen = torch.Generator().manual_seed(1)
    b1, b2 = random_boxes(50, gen), random_boxes(50, gen)
    ours = wasserstein2(b1, b2)
    ref = torch.tensor([_bures_w2(x.numpy(), y.numpy()) for x, y in zip(b1, b2)],
                       dtype=torch.float64)
    assert torch.allclose(ours, ref, rtol=1e-9, atol=1e-9)


def test_nwd_hand_values_and_properties():
    # shift by 2 px: W2 = 2
    a, b = torch.tensor([0.0, 0.0, 4.0, 4.0]), torch.tensor([2.0, 0.0, 6.0, 4.0])
    assert nwd(a, b).item() == pytest.approx(math.exp(-2 / NWD_C), rel=1e-5)
    # same corner, half size: centre offset (1, 1), half-size offset (1, 1) -> W2 = 2
    c = torch.tensor([0.0, 0.0, 2.0, 2.0])
    assert nwd(c, a, c=4.0).item() == pytest.approx(math.exp(-2 / 4.0), rel=1e-5)
    assert nwd(a, a).item() == pytest.approx(1.0, abs=1e-4)
    # disjoint tiny boxes still get a graded similarity (IoU is 0 for both)
    near, far = torch.tensor([5.0, 0.0, 9.0, 4.0]), torch.tensor([20.0, 0.0, 24.0, 4.0])
    assert aligned_iou(a, near).item() == 0 and aligned_iou(a, far).item() == 0
    assert nwd(a, near) > nwd(a, far) > 0
    # finite gradient at identical boxes
    p = a.clone().requires_grad_(True)
    nwd(p, a).backward()
    assert torch.isfinite(p.grad).all()


def test_pairwise_nwd_matches_loop():
    gen = torch.Generator().manual_seed(2)
    b1, b2 = random_boxes(7, gen), random_boxes(5, gen)
    m = pairwise_nwd(b1, b2, c=8.0)
    for i in range(7):
        for j in range(5):
            assert m[i, j] == pytest.approx(nwd(b1[i], b2[j], c=8.0).item(), rel=1e-12)


def test_wh_iou_equals_iou_of_centred_boxes():
    gen = torch.Generator().manual_seed(3)
    wh1 = torch.rand(6, 2, generator=gen, dtype=torch.float64) * 30 + 1
    wh2 = torch.rand(4, 2, generator=gen, dtype=torch.float64) * 30 + 1
    ref = tvops.box_iou(torch.cat((-wh1 / 2, wh1 / 2), 1), torch.cat((-wh2 / 2, wh2 / 2), 1))
    assert torch.allclose(wh_iou(wh1[:, None], wh2[None]), ref)

"""benchmarks/sahi_compare.py's SAHI adapter: SAHI driving our model must give what our sliced_predict gives
on the same windows, for every merge setting the benchmark compares (skipped without the sahi package)."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

pytest.importorskip("sahi")

from benchmarks.sahi_compare import SETTINGS, _same, run_ours, run_sahi, sahi_model, sahi_windows  # noqa: E402


class SquareModel(torch.nn.Module):
    """A 'detector' of bright squares in its input: a box per blob of red > 0.5, class 1 where green is
    high, scored by its redness and size (a piece cut by a window border scores lower than the whole), so
    that windows and the full-image pass see the same objects with different boxes and scores."""

    def __init__(self):
        super().__init__()
        self.p = torch.nn.Parameter(torch.zeros(1))
        self.stride = torch.tensor([8.0, 16.0, 32.0])

    def forward(self, x):
        out = torch.zeros(x.shape[0], 128, 7)
        for b, im in enumerate(x):
            red = (im[0] > 0.5).numpy().astype(np.uint8)
            n, lab, stats, _ = cv2.connectedComponentsWithStats(red)
            rows = []
            for k, (x0, y0, bw, bh, area) in enumerate(stats[1:n].tolist(), 1):
                blob = torch.from_numpy(lab == k)
                score = float(im[0][blob].mean()) * (0.4 + 0.6 * min(1.0, area / 900))
                cls = float(im[1][blob].mean() > 0.5)
                rows.append([x0 + bw / 2, y0 + bh / 2, bw, bh, score, 1 - cls, cls])
            if rows:
                out[b, :len(rows)] = torch.tensor(rows[:128])
        return out


def _squares(h=150, w=230, n=30, seed=1):
    rng = np.random.default_rng(seed)
    img = np.zeros((h, w, 3), np.uint8)
    for red in rng.permutation(np.arange(130, 256))[:n]:  # distinct redness: distinct scores
        s = int(rng.integers(6, 31))
        x, y = int(rng.integers(0, w - s)), int(rng.integers(0, h - s))
        img[y:y + s, x:x + s] = (0, 255 if rng.random() < 0.5 else 0, int(red))  # BGR
    return img


@pytest.mark.parametrize("name,merge,metric,post,smetric,full", SETTINGS)
def test_sahi_with_our_model_equals_our_sliced_predict(name, merge, metric, post, smetric, full):
    model, img = SquareModel(), _squares()
    size, overlap, conf, iou = 96, 0.25, 0.05, 0.5
    wins = sahi_windows(150, 230, size, overlap)
    assert len(wins) == 6 and all((x2 - x1, y2 - y1) == (96, 96) for x1, y1, x2, y2 in wins)
    sm = sahi_model(model, size, size, conf, iou, 1000, ["a", "b"])
    ours = run_ours(model, img, size, overlap, conf, iou, 1000, merge, metric, full, 4, wins)
    theirs = run_sahi(sm, np.ascontiguousarray(img[..., ::-1]), size, overlap, iou, post, smetric, full, batch=1)
    assert _same(ours, theirs), (name, len(ours), len(theirs))
    assert len(ours) >= 15 and set(ours[:, 5].tolist()) == {0.0, 1.0}
    # the setting matters, so the equality above is not one answer for all: no merge keeps more boxes,
    # and our own (evenly spread) windows give other boxes
    raw = run_ours(model, img, size, overlap, conf, 1.0, 1000, "nms", "iou", full, 4, wins)
    assert len(raw) > len(ours)
    assert not _same(run_ours(model, img, size, overlap, conf, iou, 1000, merge, metric, full, 4, None), theirs)

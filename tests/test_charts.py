"""cv2 chart primitives: tick choice, data-to-pixel placement, files written."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from utils.plots import charts


@pytest.mark.parametrize("lo,hi", [(0, 1), (0, 0.037), (-3, 250), (5, 5), (1e3, 1.7e5)])
def test_nice_ticks_cover_range_with_round_steps(lo, hi):
    t = charts.nice_ticks(lo, hi)
    steps = np.diff(t)
    assert 3 <= len(t) <= 12 and np.allclose(steps, steps[0])
    mantissa = steps[0] / 10 ** np.floor(np.log10(steps[0]))
    assert any(np.isclose(mantissa, m) for m in (1, 2, 2.5, 5))
    assert t[0] >= lo - 1e-9 and t[0] - steps[0] < lo + 1e-9 and t[-1] + steps[0] > (hi if hi > lo else lo + 1)


def test_line_chart_puts_data_where_the_axes_say(tmp_path):
    x = np.linspace(0, 1, 50)
    img = charts.line_chart({"flat": (x, np.full(50, 0.25))}, xlim=(0, 1), ylim=(0, 1), legend="",
                            colors={"flat": (0, 0, 255)}, path=tmp_path / "c.png")
    red = (img[..., 2] > 200) & (img[..., 0] < 80) & (img[..., 1] < 80)
    rows = np.flatnonzero(red.any(1))
    ax = charts._Axes(img, (0, 1), (0, 1))  # same default margins as line_chart
    v = ax.px(0.5, 0.25)[1]
    assert abs(rows.mean() - v) < 1.5 and np.ptp(rows) <= 3
    cols = np.flatnonzero(red.any(0))
    assert abs(cols.min() - ax.x0) <= 2 and abs(cols.max() - ax.x1) <= 2
    assert np.array_equal(cv2.imread(str(tmp_path / "c.png")), img)


def test_bar_hist_heatmap_write_images(tmp_path):
    b = charts.bar_chart(["a", "b", "c"], [0.2, 0.9, 0.0], path=tmp_path / "b.png")
    h = charts.histogram(np.r_[np.full(10, 5.0), np.full(30, 20.0)], bins=[1, 8, 16, 32], marks={"8": 8},
                         path=tmp_path / "h.png")
    m = charts.heatmap(np.array([[1.0, 0.0], [0.25, 0.5]]), ["r0", "r1"], ["c0", "c1"], path=tmp_path / "m.png")
    for img, f in ((b, "b.png"), (h, "h.png"), (m, "m.png")):
        assert img.dtype == np.uint8 and img.ndim == 3 and cv2.imread(str(tmp_path / f)).shape == img.shape
    # the 16-32 bin holds 3x the 1-8 bin: its bar is 3x as tall
    ax = charts._Axes(h, (1, 32), (0, 33))
    bar = (h[..., 0] > 150) & (h[..., 2] < 50)  # palette colour 0 (blue) bars
    col_a, col_b = int(ax.px(4, 0)[0]), int(ax.px(24, 0)[0])
    ha, hb = bar[:, col_a].sum(), bar[:, col_b].sum()
    assert hb == pytest.approx(3 * ha, rel=0.05)

"""Figures: the matplotlib artists carry exactly the data given (lines, bars, histogram bins, heatmap cells),
the written PNGs are the rendered figures, and importing the pipeline does not import matplotlib."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
from matplotlib.colors import to_rgb

from utils.plots import evaluation as ev
from utils.plots.colors import color, mpl_color
from utils.plots.figure import render
from utils.plots.labels import labels_figure, plot_labels
from utils.plots.results import plot_results, results_figure

ROOT = Path(__file__).resolve().parents[2]


def _legend(ax) -> list[str]:
    leg = ax.get_legend()
    return [t.get_text() for t in leg.get_texts()] if leg else []


def _ticks(labels) -> list[str]:
    return [t.get_text() for t in labels]


def test_palette_is_the_same_in_cv2_and_matplotlib():
    for i in (0, 3, 12):
        b, g, r = color(i)
        assert np.allclose(mpl_color(i), (r / 255, g / 255, b / 255))
    assert color(0) == color(10) and color(0) != color(1)  # cycles after 10


def test_pr_curve_lines_are_the_class_precisions_and_their_mean():
    rec = np.linspace(0, 1, 101)
    pr = {0: 1 - rec, 1: np.full(101, 0.6), 2: np.full(101, -1.0)}  # class 2: no ground truth
    fig = ev.pr_curve_figure(pr, {0: 0.5, 1: 0.6}, ["a", "b", "c"])
    ax = fig.axes[0]
    lines = {ln.get_label(): ln for ln in ax.get_lines()}
    assert list(lines) == ["a 0.500", "b 0.600", "all classes 0.550 AP50"]
    assert np.allclose(lines["a 0.500"].get_xdata(), rec) and np.allclose(lines["a 0.500"].get_ydata(), 1 - rec)
    assert np.allclose(lines["all classes 0.550 AP50"].get_ydata(), (1 - rec + 0.6) / 2)
    assert lines["all classes 0.550 AP50"].get_linewidth() > lines["a 0.500"].get_linewidth()
    assert _legend(ax) == list(lines)
    assert (ax.get_xlabel(), ax.get_ylabel(), ax.get_title()) == ("Recall", "Precision", "Precision-Recall (IoU 0.5)")
    assert ax.get_xlim() == (0, 1)


def test_many_classes_are_grey_and_only_the_mean_is_named():
    px = np.linspace(0, 1, 50)
    k = ev.MAX_LEGEND + 1
    y = np.stack([np.full(50, i / k) for i in range(k)])
    fig = ev.conf_curve_figure(px, y, np.ones(k, bool), [f"c{i}" for i in range(k)], "F1", best_conf=0.5)
    ax = fig.axes[0]
    lines = ax.get_lines()
    assert len(lines) == k + 1 and {to_rgb(ln.get_color()) for ln in lines[:-1]} == {to_rgb(ev.GREY)}
    mean = y.mean(0)
    assert np.allclose(lines[-1].get_ydata(), mean)
    assert _legend(ax) == [f"all classes {mean[0]:.2f} at {px[np.argmin(abs(px - 0.5))]:.3f}"]
    assert (ax.get_xlabel(), ax.get_ylabel(), ax.get_title()) == ("Confidence", "F1", "F1-Confidence")


def test_flat_curve_lands_where_the_axes_say(tmp_path):
    """Pixel check of the rendered PNG: a flat 0.25 mean curve is a horizontal red band at the
    y the axes transform gives, spanning the plot from x=0 to x=1."""
    px = np.linspace(0, 1, 200)
    img = ev.plot_conf_curve(px, np.full((1, 200), 0.25), np.array([True]), ["a"], "Recall", tmp_path / "R.png")
    assert np.array_equal(cv2.imread(str(tmp_path / "R.png")), img)
    fig = ev.conf_curve_figure(px, np.full((1, 200), 0.25), np.array([True]), ["a"], "Recall")
    assert np.array_equal(render(fig), img)  # same figure, same pixels: the transform below applies
    ax = fig.axes[0]
    (x0, y0), (x1, _) = ax.transData.transform([(0, 0.25), (1, 0.25)])
    b, g, r = (int(v * 255) for v in to_rgb(ev.MEAN)[::-1])
    red = (np.abs(img.astype(int) - (b, g, r)).sum(2) < 40)
    red[:, :int(x0) - 2] = red[:, int(x1) + 3:] = False  # the plot area only (not the legend sample)
    rows = np.flatnonzero(red.sum(1) > 0.5 * (x1 - x0))
    assert len(rows) and abs(rows.mean() - (img.shape[0] - y0)) < 1.5 and np.ptp(rows) <= 8
    cols = np.flatnonzero(red[rows].any(0))
    assert abs(cols.min() - x0) <= 3 and abs(cols.max() - x1) <= 3


def test_confusion_matrix_cells_are_the_column_normalised_counts():
    m = np.array([[3, 0, 1], [1, 4, 0], [0, 0, 1]])
    fig = ev.confusion_matrix_figure(m, ["cat", "dog"])
    ax = fig.axes[0]
    cells = np.asarray(ax.images[0].get_array())
    assert np.allclose(cells, m / m.sum(0, keepdims=True))
    assert ax.images[0].get_clim() == (0, 1)
    texts = {(round(t.get_position()[1]), round(t.get_position()[0])): t.get_text() for t in ax.texts}
    assert texts == {(0, 0): "0.75", (0, 2): "0.50", (1, 0): "0.25", (1, 1): "1.00", (2, 2): "0.50"}  # zeros blank
    assert _ticks(ax.get_xticklabels()) == _ticks(ax.get_yticklabels()) == ["cat", "dog", "background"]
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("True", "Predicted") and "Confusion matrix" in ax.get_title()
    raw = ev.confusion_matrix_figure(m, ["cat", "dog"], normalize=False).axes[0]
    assert np.allclose(np.asarray(raw.images[0].get_array()), m) and "4" in [t.get_text() for t in raw.texts]
    big = ev.confusion_matrix_figure(np.eye(ev.MAX_ANNOTATED + 1), [f"c{i}" for i in range(ev.MAX_ANNOTATED)])
    assert not big.axes[0].texts  # too many cells for their values to fit


def test_bar_heights_are_the_ap_values():
    ax = ev.ap_by_size_figure({"AP_vt": 0.1, "AP_t": -1.0, "APm": 0.4, "AP": 0.3, "AP50": 0.9}).axes[0]
    assert [p.get_height() for p in ax.patches] == pytest.approx([0.1, 0.0, 0.4, 0.3])
    assert _ticks(ax.get_xticklabels()) == ["<8 px", "8-16 (no gt)", "32-96", "all"]
    assert [t.get_text() for t in ax.texts] == ["0.100", "0.000", "0.400", "0.300"]
    assert ax.get_ylim()[1] == pytest.approx(0.4 * 1.15) and ax.get_ylabel() == "AP"
    names = [f"class{i}" for i in range(25)]
    ax = ev.per_class_ap_figure(names, np.linspace(0, 0.5, 25)).axes[0]
    assert [p.get_height() for p in ax.patches] == pytest.approx(np.linspace(0, 0.5, 25))
    assert _ticks(ax.get_xticklabels()) == names and not ax.texts  # 25 bars: no room for values
    assert ax.get_xticklabels()[0].get_rotation() == 90


def _dataset(imgsz: int = 0) -> SimpleNamespace:
    # 10 boxes of 5 px (class 0), 30 of 20 px (class 1) and one image without boxes
    boxes = [np.array([[0, 0, 0, 5, 5]] * 10 + [[1, 10, 10, 30, 30]] * 30, np.float32), np.zeros((0, 5), np.float32)]
    return SimpleNamespace(names=["a", "b", "c"], boxes=boxes, shapes=np.array([[200, 100], [50, 50]]), imgsz=imgsz,
                           json_path="train.json")


def test_labels_figure_bins_the_boxes():
    fig = labels_figure(_dataset())
    classes, sizes, wh = fig.axes[:3]
    assert [p.get_width() for p in classes.patches] == [10, 30, 0]
    assert _ticks(classes.get_yticklabels()) == ["a", "b", "c"]
    bars = [(p.get_x(), p.get_x() + p.get_width(), p.get_height()) for p in sizes.patches if p.get_height()]
    assert len(bars) == 2 and bars[0][0] <= 5 < bars[0][1] and bars[1][0] <= 20 < bars[1][1]
    assert bars[1][2] == 3 * bars[0][2] == 30  # the 20 px bin holds 3x the 5 px bin
    texts = [t.get_text() for t in sizes.texts]
    for name, n in (("<8", "10"), ("8-16", "0"), ("16-32", "30"), ("32-96", "0"), (">96", "0")):
        assert texts[texts.index(name) + 1] == n  # bucket name, then its count
    assert sizes.get_xscale() == "log" and len(sizes.get_legend_handles_labels()[0]) == 1  # no resized sizes
    cells = wh.collections[0].get_array()
    assert cells.sum() == 40 and sorted(cells) == [10, 30]  # the two box shapes, one hexagon each
    assert (wh.get_xlabel(), wh.get_ylabel()) == ("width", "height")
    assert fig.get_suptitle().startswith("2 images (1 without boxes), 40 boxes, 3 classes")


def test_labels_figure_adds_resized_sizes_and_handles_no_boxes(tmp_path):
    sizes = labels_figure(_dataset(imgsz=100)).axes[1]  # gain 0.5 for the 200 px image
    assert sizes.get_legend_handles_labels()[1] == ["original pixels", "resized to imgsz 100"]
    empty = SimpleNamespace(names=["a"], boxes=[np.zeros((0, 5), np.float32)], shapes=np.array([[50, 50]]), imgsz=64)
    assert Path(plot_labels(empty, str(tmp_path / "l.png"))).is_file()


def test_results_figure_has_one_line_per_column(tmp_path):
    csv = tmp_path / "results.csv"
    csv.write_text("epoch,train/box_loss,metrics/AP,x/lr0\n0,0.5,0.1,0.01\n1,0.4,0.2,0.009\n2,0.3,0.25,0.008\n")
    fig = results_figure(csv, cols=4)
    axs = fig.axes
    assert [ax.get_title() for ax in axs[:2]] == ["train/box_loss", "metrics/AP"]  # lr column skipped
    assert np.allclose(axs[1].get_lines()[0].get_ydata(), [0.1, 0.2, 0.25])
    assert list(axs[0].get_lines()[0].get_xdata()) == [0, 1, 2] and axs[0].get_xlabel() == "epoch"
    assert len(axs) == 4 and not any(ax.axison for ax in axs[2:])  # blank tiles fill the row
    img = plot_results(csv, tmp_path / "results.png")
    assert img.shape == (300, 1680, 3) and cv2.imread(str(tmp_path / "results.png")).shape == img.shape
    (tmp_path / "empty.csv").write_text("epoch,metrics/AP\n")
    assert plot_results(tmp_path / "empty.csv", tmp_path / "e.png") is None and not (tmp_path / "e.png").exists()
    assert plot_results(tmp_path / "missing.csv", tmp_path / "m.png") is None


def test_every_plot_writes_its_rendered_image(tmp_path):
    px = np.linspace(0, 1, 100)
    y = np.stack([px, 1 - px])
    cases = {
        "PR.png": lambda p: ev.plot_pr_curve({0: 1 - np.linspace(0, 1, 101)}, {0: 0.5}, ["a"], p),
        "F1.png": lambda p: ev.plot_conf_curve(px, y, np.array([True, False]), ["a", "b"], "F1", p),
        "cm.png": lambda p: ev.plot_confusion_matrix(np.eye(3), ["a", "b"], p),
        "size.png": lambda p: ev.plot_ap_by_size({"AP_vt": 0.1, "AP": 0.2}, p),
        "cls.png": lambda p: ev.plot_per_class_ap(["a", "b"], [0.1, 0.2], p),
        "sub/labels.png": lambda p: plot_labels(_dataset(64), str(p)),
    }
    for name, plot in cases.items():
        out = plot(tmp_path / name)
        written = cv2.imread(str(tmp_path / name))
        assert written is not None and min(written.shape[:2]) >= 500, name
        assert written.std() > 10, f"{name} is blank"
        if isinstance(out, np.ndarray):
            assert np.array_equal(written, out), name
    assert cv2.imread(str(tmp_path / "PR.png")).shape == (840, 1200, 3)  # 8 x 5.6 in at 150 dpi
    # no class with ground truth, nothing to draw: still a valid (empty) chart
    ev.plot_conf_curve(px, y, np.array([False, False]), ["a", "b"], "F1", tmp_path / "none.png")
    assert cv2.imread(str(tmp_path / "none.png")) is not None


def test_prediction_mosaic_draws_boxes_in_class_colours(tmp_path):
    imgs = np.zeros((2, 3, 64, 64), np.uint8)
    dets = [np.array([[10, 10, 30, 30, 0.9, 1], [40, 40, 50, 50, 0.1, 0]]), np.zeros((0, 6))]
    targets = np.array([[1, 0, 32, 32, 20, 20]])
    img = ev.plot_predictions(imgs, dets, targets, ["a", "b"], tmp_path / "m.jpg", paths=["x/1.jpg", "x/2.jpg"])
    assert img.shape == (640, 640, 3) and cv2.imread(str(tmp_path / "m.jpg")).shape == img.shape
    scale = 5  # 64 px tiles enlarged to 320
    edge = img[16 * scale:28 * scale, 10 * scale]  # left edge of the class-1 box, below its label
    assert (np.abs(edge.astype(int) - color(1)).sum(1) < 30).mean() > 0.9
    assert not (np.abs(img[:320, :320].astype(int) - color(0)).sum(2) < 30).any()  # conf 0.1 < 0.25: not drawn
    green = (img[..., 1] > 150) & (img[..., 0] < 100) & (img[..., 2] < 100)
    assert green[:320, 320:].any() and not green[:320, :320].any()  # ground truth only in image 1


def test_pipeline_imports_no_matplotlib_and_figures_leave_pyplot_alone(tmp_path):
    """train/val/detect import the plot modules only when they plot; the figures never load pyplot
    (its global figure registry and backend selection)."""
    code = ("import sys, numpy as np; import train, val, detect, utils.inference.annotate\n"
            "assert 'matplotlib' not in sys.modules, 'matplotlib imported without plotting'\n"
            "from utils.plots import evaluation as ev\n"
            "ev.plot_ap_by_size({'AP': 0.5}, sys.argv[1])\n"
            "assert 'matplotlib.pyplot' not in sys.modules, 'pyplot imported'\n")
    r = subprocess.run([sys.executable, "-c", code, str(tmp_path / "size.png")], cwd=ROOT,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert cv2.imread(str(tmp_path / "size.png")) is not None

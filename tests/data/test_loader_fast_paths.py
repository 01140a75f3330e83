"""The loader's fast paths against the plain ones they replace: the same draws give the same
batches (bit for bit where the path is exact), or the same box and pixel statistics where it
is not (the axis-aligned mosaic warp run as a resize)."""
from __future__ import annotations

import json
import os
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from tests.augment.test_augment import COLOURS, TOL, extent, scene
from utils.augment import mosaic_affine
from utils.augment.finish import hsv_to_rgb, stack_chw
from utils.augment.mosaic_affine import mosaic4_affine
from utils.augment.transforms import affine_matrix, augment_hsv, mosaic4, random_affine
from utils.data.dataset import CocoDataset, collate_fn

AXIS = dict(translate=0.1, scale=0.5)
AFFINES = [AXIS, dict(degrees=10.0, translate=0.1, scale=0.5, shear=2.0),
           dict(translate=0.1, scale=0.3, perspective=5e-4)]


def mosaic_parts(seed: int, size: int = 160, blur: bool = True):
    """Four scenes of random shapes (some smaller than size / 2, some larger) with their boxes;
    blurred (pixel statistics of smooth images) or sharp (each box's colour extent)."""
    rng = np.random.default_rng(seed)
    ims, bs = [], []
    for _ in range(4):
        h, w = (int(v) for v in rng.integers(size // 3, size + 40, 2))
        img, boxes = scene(h, w, rng, n=3, margin=2, side=(6, 16), gap=6)
        ims.append(cv2.GaussianBlur(img, (3, 3), 0) if blur else img)
        bs.append(boxes.astype(np.float32))
    return ims, bs


def reference(ims, bs, size, seed, **kw):
    rng = np.random.default_rng(seed)
    canvas, boxes = mosaic4(ims, bs, size, rng)
    img, boxes, dropped = random_affine(canvas, boxes, rng, size, **kw)
    return img, boxes, dropped, rng.random()


@pytest.mark.parametrize("kw", AFFINES, ids=["axis", "rotate-shear", "perspective"])
def test_exact_mosaic_affine_is_bit_identical(kw):
    """exact=True paints only the canvas window the warp reads: the rest of the reused canvas is
    poisoned with noise here, so a pixel read from outside the window would show."""
    size = 160
    for seed in range(12):
        ims, bs = mosaic_parts(seed, size)
        shape = (2 * size, 2 * size, 3)
        mosaic_affine._CANVAS[shape] = np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)
        ref_img, ref_boxes, ref_dropped, ref_next = reference(ims, bs, size, seed, **kw)
        rng = np.random.default_rng(seed)
        img, boxes, dropped = mosaic4_affine(ims, bs, size, rng, exact=True, **kw)
        np.testing.assert_array_equal(img, ref_img)
        np.testing.assert_array_equal(boxes, ref_boxes)
        assert dropped == ref_dropped
        assert rng.random() == ref_next  # the same number of draws


def test_resized_mosaic_is_the_warp_of_its_rounded_matrix():
    """The fast path equals warpAffine by the matrix it rounds to (up to the two functions'
    fixed-point rounding), and that matrix is within a pixel of the drawn one."""
    size, s2 = 160, 320
    for seed in range(12):
        ims, bs = mosaic_parts(seed, size)
        rng = np.random.default_rng(seed)
        canvas, _ = mosaic4(ims, bs, size, rng)
        M, _ = affine_matrix((s2, s2), (size, size), rng, **AXIS)
        xc, yc = (int(v) for v in np.random.default_rng(seed).uniform(size * 0.5, size * 1.5, 2))
        places = mosaic_affine._placements([im.shape[:2] for im in ims], xc, yc)
        img, M2, _ = mosaic_affine._resize_window(ims, places, M, size, s2, xc, yc)
        ref = cv2.warpAffine(canvas, M2[:2], (size, size), borderValue=(114, 114, 114))
        d = np.abs(ref.astype(int) - img)  # warpAffine places samples to 1/32 px: a few levels at hard edges
        assert d.mean() < 0.02 and (d > 2).mean() < 1e-3  # half a pixel off would be ~1 on average
        corners = np.array([[0, 0, 1], [s2, s2, 1]], float)
        assert np.abs(corners @ M2.T - corners @ M.T).max() < 1.0 + s2 * 0.5 / (size / 1.5)


def test_resized_mosaic_keeps_boxes_on_pixels_and_the_statistics():
    """Fast and exact paths from the same seeds: boxes sit on their pixels in both, and box
    counts, sizes and pixel statistics agree (the scale is rounded by < 0.4% here, < 0.2% at 640)."""
    size = 160
    fast_wh, ref_wh, fast_px, ref_px = [], [], [], []
    for seed in range(40):
        ims, bs = mosaic_parts(seed, size)
        ref_img, ref_boxes, _, _ = reference(ims, bs, size, seed, **AXIS)
        img, boxes, _ = mosaic4_affine(ims, bs, size, np.random.default_rng(seed), exact=False, **AXIS)
        sharp, _ = mosaic_parts(seed, size, blur=False)
        sharp_img, sharp_boxes, _ = mosaic4_affine(sharp, bs, size, np.random.default_rng(seed), **AXIS)
        for b in sharp_boxes:  # colours repeat across the four images: look only near each box
            x1, y1 = (int(max(v - 3, 0)) for v in b[1:3])
            x2, y2 = (int(np.ceil(v + 3)) for v in b[3:5])
            got = extent(sharp_img[y1:y2, x1:x2], int(b[0]))
            assert got is not None
            np.testing.assert_allclose(got + [x1, y1, x1, y1], b[1:], atol=TOL + 1.0)
        assert abs(len(boxes) - len(ref_boxes)) <= 1  # a box at the area threshold may flip
        fast_wh.append(boxes[:, 3:5] - boxes[:, 1:3])
        ref_wh.append(ref_boxes[:, 3:5] - ref_boxes[:, 1:3])
        fast_px.append(img.reshape(-1, 3).astype(float))
        ref_px.append(ref_img.reshape(-1, 3).astype(float))
    fast_wh, ref_wh = np.concatenate(fast_wh), np.concatenate(ref_wh)
    assert abs(len(fast_wh) - len(ref_wh)) <= 3
    np.testing.assert_allclose(fast_wh.mean(0), ref_wh.mean(0), rtol=0.01)
    fast_px, ref_px = np.concatenate(fast_px), np.concatenate(ref_px)
    np.testing.assert_allclose(fast_px.mean(0), ref_px.mean(0), rtol=0.01)
    np.testing.assert_allclose(fast_px.std(0), ref_px.std(0), rtol=0.01)


@pytest.mark.parametrize("gains", [(0.015, 0.7, 0.4), (0.5, 0.0, 0.0), (0.0, 0.0, 0.0)])
def test_hsv_to_rgb_is_augment_hsv_then_channel_swap(gains):
    img = cv2.GaussianBlur(np.random.default_rng(0).integers(0, 256, (48, 64, 3), dtype=np.uint8), (5, 5), 0)
    for seed in range(5):
        r1, r2 = np.random.default_rng(seed), np.random.default_rng(seed)
        ref = augment_hsv(img.copy(), r1, *gains)[..., ::-1]
        np.testing.assert_array_equal(hsv_to_rgb(img, r2, *gains), ref)
        assert r1.random() == r2.random()


def test_stack_chw_equals_torch_stack():
    rng = np.random.default_rng(0)
    views = [torch.from_numpy(rng.integers(0, 256, (5, 7, 3), dtype=np.uint8)).permute(2, 0, 1) for _ in range(3)]
    items = views + [torch.randint(0, 256, (3, 5, 7), dtype=torch.uint8)]  # a view and a plain tensor
    ref = torch.stack([t.contiguous() for t in items])
    for shared in (False, True):
        out = stack_chw(items, shared=shared)
        assert torch.equal(out, ref) and out.is_shared() == shared
        assert out.is_contiguous(memory_format=torch.channels_last)  # what the trainer moves it to
    with pytest.raises(ValueError, match="differ"):
        stack_chw([items[0], torch.zeros((3, 4, 4), dtype=torch.uint8)])


def write_big_images(root: Path, n: int = 5, size: int = 96, width: int = 130, gray: tuple[int, ...] = ()) -> Path:
    """Images larger than the training size (so tiles are cut from them), as JPEG and PNG; those
    numbered in `gray` as one-channel files."""
    rng = np.random.default_rng(1)
    (root / "img").mkdir(parents=True)
    images, anns = [], []
    for i in range(n):
        img, boxes = scene(size, width, rng, n=4, margin=3, side=(6, 16), gap=6)
        name = f"{i}.{'jpg' if i % 2 else 'png'}"
        img = img + rng.integers(0, 30, img.shape, dtype=np.uint8)
        cv2.imwrite(str(root / "img" / name), cv2.cvtColor(img, cv2.COLOR_BGR2GRAY) if i in gray else img)
        images.append({"id": i + 1, "file_name": name, "width": width, "height": size})
        for k, x1, y1, x2, y2 in boxes.tolist():
            anns.append({"id": len(anns) + 1, "image_id": i + 1, "category_id": int(k) + 1,
                         "bbox": [x1, y1, x2 - x1, y2 - y1], "iscrowd": 0})
    js = root / "instances.json"
    js.write_text(json.dumps({"images": images, "annotations": anns,
                              "categories": [{"id": k + 1, "name": f"c{k}"} for k in range(len(COLOURS))]}))
    return js


def batches(ds: CocoDataset, n: int = 3, batch: int = 4):
    return [collate_fn([ds[(b * batch + k) % len(ds)] for k in range(batch)]) for b in range(n)]


HYP = dict(mosaic=0.7, tile=0.5, scale=0.5, translate=0.1, fliplr=0.5, hsv_h=0.015, hsv_s=0.7, hsv_v=0.4,
           copy_paste=0.3)


def test_ram_and_disk_cache_give_the_same_batches_as_none(tmp_path):
    """Cached copies are what the loader decodes (the reduced-size copy and, for tile sources,
    the native one): for a seed, batches are bit-identical with and without a cache."""
    js = write_big_images(tmp_path / "data")
    before = sorted(p.name for p in (tmp_path / "data").rglob("*"))
    out = {}
    for cache in ("none", "ram", "disk"):
        ds = CocoDataset(str(js), str(tmp_path / "data" / "img"), imgsz=64, augment=True, hyp=HYP, seed=5,
                         stride=32, verbose=False, cache=cache, cache_dir=str(tmp_path / "cache"))
        out[cache] = batches(ds)
        if cache != "none":
            assert len(ds.cache._ram if cache == "ram" else ds.cache._files) == 2 * len(ds)  # + native copies
    for cache in ("ram", "disk"):
        for a, b in zip(out["none"], out[cache]):
            assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    files = sorted(os.listdir(tmp_path / "cache"))
    assert len(files) == 10 and all(f.endswith(".npy") for f in files)
    assert sorted(p.name for p in (tmp_path / "data").rglob("*")) == before  # nothing written beside the data


def test_disk_cache_refuses_a_folder_inside_the_images(tmp_path, monkeypatch):
    """$SMALLDET_CACHE pointed into the image folder: a clear error naming both, and nothing written there."""
    from utils.data.coco import DatasetError
    js = write_big_images(tmp_path / "data", n=2)
    before = sorted(p.name for p in (tmp_path / "data").rglob("*"))
    monkeypatch.setenv("SMALLDET_CACHE", str(tmp_path / "data" / "img" / "sub"))
    with pytest.raises(DatasetError, match=r"lies inside the image folder .*img.*SMALLDET_CACHE"):
        CocoDataset(str(js), str(tmp_path / "data" / "img"), imgsz=64, verbose=False, cache="disk")
    assert sorted(p.name for p in (tmp_path / "data").rglob("*")) == before
    CocoDataset(str(js), str(tmp_path / "data" / "img"), imgsz=64, verbose=False, cache="ram")  # RAM writes nothing


def test_disk_cache_is_reused_and_follows_changed_files(tmp_path):
    js = write_big_images(tmp_path / "data", n=2)
    kw = dict(imgsz=64, augment=True, hyp=HYP, seed=0, verbose=False, cache="disk", cache_dir=str(tmp_path / "c"))
    CocoDataset(str(js), str(tmp_path / "data" / "img"), **kw)
    first = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "c").iterdir()}
    CocoDataset(str(js), str(tmp_path / "data" / "img"), **kw)
    assert {p.name: p.stat().st_mtime_ns for p in (tmp_path / "c").iterdir()} == first  # read, not rewritten
    img = cv2.imread(str(tmp_path / "data" / "img" / "0.png"))
    cv2.imwrite(str(tmp_path / "data" / "img" / "0.png"), 255 - img)
    os.utime(tmp_path / "data" / "img" / "0.png", ns=(1, 1))
    ds = CocoDataset(str(js), str(tmp_path / "data" / "img"), **kw)
    assert len(set(os.listdir(tmp_path / "c")) - set(first)) == 2  # the changed image's two copies
    np.testing.assert_array_equal(ds._read(0, True), 255 - img)


def test_ram_cache_is_never_written_through(tmp_path):
    """With no mosaic, scale or translation an item can be the cached array itself; copy-paste
    writes into its image in place, so it must get a copy, not the cache."""
    js = write_big_images(tmp_path / "data", n=3, size=64, width=64)
    hyp = dict(mosaic=0.0, copy_paste=1.0)
    ds = CocoDataset(str(js), str(tmp_path / "data" / "img"), imgsz=64, augment=True, hyp=hyp, seed=0,
                     verbose=False, cache="ram")
    cached = [ds._read(i, False).copy() for i in range(len(ds))]
    for i in range(6):
        ds[i % len(ds)]
    for i in range(len(ds)):
        np.testing.assert_array_equal(ds._read(i, False), cached[i])


def test_dataset_fast_and_exact_warp_statistics(tmp_path):
    """The whole item path with the resize warp against exact_warp=True, same seed: the same
    box counts and sizes and pixel statistics over the batches."""
    js = write_big_images(tmp_path / "data", n=6, size=96, width=96)
    stats = {}
    for exact in (True, False):
        ds = CocoDataset(str(js), str(tmp_path / "data" / "img"), imgsz=64, augment=True, seed=7, verbose=False,
                         hyp=dict(HYP, tile=0.0, copy_paste=0.0))
        ds.exact_warp = exact
        bs = batches(ds, n=8)
        labels = torch.cat([b[1] for b in bs])
        px = torch.cat([b[0].float().reshape(-1, 3, 64 * 64) for b in bs])
        stats[exact] = (len(labels), labels[:, 4:6].mean(0), px.mean((0, 2)), px.std((0, 2)))
    (n1, wh1, m1, s1), (n2, wh2, m2, s2) = stats[True], stats[False]
    assert abs(n1 - n2) <= 0.03 * n1
    torch.testing.assert_close(wh2, wh1, rtol=0.03, atol=0)
    torch.testing.assert_close(m2, m1, rtol=0.01, atol=0)
    torch.testing.assert_close(s2, s1, rtol=0.01, atol=0)


def test_train_cli_cache_flag():
    from train import parse_opt
    assert parse_opt(["--cache"]).cache == "ram" and parse_opt(["--cache", "disk"]).cache == "disk"
    assert parse_opt(["--cache", "auto"]).cache == "auto"
    assert parse_opt([]).cache is None
    with pytest.raises(SystemExit):
        parse_opt(["--cache", "gpu"])


def test_loader_processes_keep_freed_memory(monkeypatch):
    """glibc's thresholds are raised in a process that makes training samples (a measured ~15% of
    the loader's CPU); not by building a loader whose workers make them."""
    import utils.data.dataset as dataset_module
    from utils.data import malloc
    calls = []
    monkeypatch.setattr(dataset_module, "keep_freed_memory", lambda: calls.append(1) or True)
    split = {"json": None, "images": None}
    monkeypatch.setattr(dataset_module, "CocoDataset", lambda *a, **k: list(range(4)))
    dataset_module.create_dataloader(split, 64, 2, augment=True, workers=0)
    dataset_module.create_dataloader(split, 64, 2, augment=True, workers=1)
    dataset_module.create_dataloader(split, 64, 2, augment=False, workers=0)
    assert calls == [1]
    assert malloc.keep_freed_memory() in (True, False)  # a no-op off glibc, never an error


def test_cache_auto_uses_ram_only_when_it_is_cheap(tmp_path, monkeypatch):
    from utils.data import cache as cache_module
    js = write_big_images(tmp_path / "data", n=3)
    kw = dict(imgsz=64, augment=True, hyp=HYP, seed=0, verbose=False, cache="auto")
    ds = CocoDataset(str(js), str(tmp_path / "data" / "img"), **kw)
    assert ds.cache.mode == "ram" and len(ds.cache._ram) == 6
    monkeypatch.setattr(cache_module, "_free_ram", lambda: 1000)  # a machine with 1 kB free
    ds = CocoDataset(str(js), str(tmp_path / "data" / "img"), **kw)
    assert ds.cache.mode == "" and ds.cache.get(0, ds._variant(0, False)) is None
    assert ds[0][0].shape == (3, 64, 64)  # decoded from the file as without a cache


def test_loader_speed_benchmark_runs_ours_alone(tiny_coco, tmp_path):
    """The harness itself (the peer side needs the peer venv: benchmarks only)."""
    from benchmarks.loader_speed import main
    out = tmp_path / "speed.json"
    args = ["--data", str(tiny_coco), "--imgsz", "64", "--batch-size", "2", "--rounds", "2", "--batches", "1",
            "--workers", "0", "--peer-python", "", "--cache", "ram", "--out", str(out)]
    result = main(args)
    row = result["rows"][0]
    assert row["workers"] == 0 and row["rounds"] == 2 and row["ours_img_per_cpu_s_median"] > 0
    assert json.loads(out.read_text())[0]["cache"] == "ram"


GRAY_HYPS = [HYP, dict(HYP, mosaic=1.0, mixup=0.5, flipud=0.5), dict(HYP, mosaic=0.0, degrees=5.0),
             dict(HYP, hsv_h=0.0, hsv_s=0.0, hsv_v=0.0)]


@pytest.mark.parametrize("hyp", GRAY_HYPS, ids=["default", "mixup", "no-mosaic", "no-hsv"])
@pytest.mark.parametrize("exact", [False, True], ids=["resize", "exact"])
def test_gray_path_gives_the_same_batches(tmp_path, hyp, exact, monkeypatch):
    """One-channel files stay one channel through mosaic, affine, HSV and flips (gray_path): the
    batches are bit-identical to decoding them as BGR, also in mosaics that mix them with colour
    images, with copy-paste between the two kinds, and in evaluation."""
    js = write_big_images(tmp_path / "data", n=6, gray=(0, 1, 2, 4))
    monkeypatch.setattr(CocoDataset, "exact_warp", exact)
    out = {}
    for gray_path in (True, False):
        monkeypatch.setattr(CocoDataset, "gray_path", gray_path)
        ds = CocoDataset(str(js), str(tmp_path / "data" / "img"), imgsz=64, augment=True, hyp=hyp, seed=5,
                         verbose=False, cache="ram")
        assert ds.gray.tolist() == [True, True, True, False, True, False]
        assert ds._read(0, False).ndim == (2 if gray_path else 3)
        ev = CocoDataset(str(js), str(tmp_path / "data" / "img"), imgsz=64, verbose=False)
        out[gray_path] = batches(ds, n=6) + batches(ev, n=2)
    for a, b in zip(out[True], out[False]):
        assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


def test_hsv_to_rgb_of_a_gray_image_is_its_value_table():
    """A grey pixel has hue and saturation 0, which the HSV tables keep: the colour path's output
    of a B = G = R image is the grey path's output in every channel, with the same draws."""
    g = cv2.GaussianBlur(np.random.default_rng(1).integers(0, 256, (40, 56), dtype=np.uint8), (5, 5), 0)
    g[0, :8] = (0, 1, 254, 255, 0, 255, 128, 3)  # the ends of the tables
    for gains in [(0.015, 0.7, 0.4), (0.5, 0.9, 0.9), (0.0, 0.0, 0.0)]:
        for seed in range(5):
            r1, r2 = np.random.default_rng(seed), np.random.default_rng(seed)
            ref = hsv_to_rgb(cv2.cvtColor(g, cv2.COLOR_GRAY2BGR), r1, *gains)
            out = hsv_to_rgb(g, r2, *gains)
            assert out.shape == g.shape and out is not g
            for c in range(3):
                np.testing.assert_array_equal(out, ref[..., c])
            assert r1.random() == r2.random()


def test_gray_path_in_rect_loaders_follows_the_sorted_images(tmp_path, monkeypatch):
    """Rect loaders (validation) sort images by aspect ratio: the grey flags must move with them, or a
    colour image would be decoded grey. A tall colour image listed before a wide grey one swaps places."""
    root = tmp_path / "d"
    (root / "img").mkdir(parents=True)
    rng = np.random.default_rng(0)
    colour = cv2.GaussianBlur(rng.integers(0, 256, (120, 60, 3), dtype=np.uint8), (5, 5), 0)
    cv2.imwrite(str(root / "img" / "g.png"), rng.integers(0, 256, (60, 120), dtype=np.uint8))
    cv2.imwrite(str(root / "img" / "c.png"), colour)
    js = root / "a.json"
    js.write_text(json.dumps({"images": [{"id": 1, "file_name": "c.png", "width": 60, "height": 120},
                                         {"id": 2, "file_name": "g.png", "width": 120, "height": 60}],
                              "annotations": [], "categories": [{"id": 1, "name": "x"}]}))
    out = {}
    for gray_path in (True, False):
        monkeypatch.setattr(CocoDataset, "gray_path", gray_path)
        ds = CocoDataset(str(js), str(root / "img"), imgsz=64, batch_size=1, rect=True, verbose=False)
        assert [Path(f).name for f in ds.files] == ["g.png", "c.png"]
        out[gray_path] = [ds[i] for i in range(2)]
    for a, b in zip(out[True], out[False]):
        assert torch.equal(a[0], b[0])
    assert not torch.equal(out[True][1][0][0], out[True][1][0][1])  # the colour image kept its colours

"""The offline tiler (utils/data/tile.py): clipping on tile borders, the visible-fraction rule, ignore
regions, the empty-tile cap, and tiles + offsets mapping back to the source pixels and boxes."""
from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import cv2
import numpy as np
import pytest

from utils.data.coco import DatasetError
from utils.data.tile import clip_annotation, main, plan_tiles, write_split
from utils.data.windows import slice_windows


def _ann(aid, x, y, w, h, crowd=0, cat=1):
    return {"id": aid, "image_id": 1, "category_id": cat, "bbox": [x, y, w, h], "area": w * h, "iscrowd": crowd}


def test_clip_on_tile_borders_and_min_visible():
    win = (100, 50, 200, 150)
    # straddles the right border: 30 of 40 px wide inside -> 75% visible, clipped and shifted to tile pixels
    c = clip_annotation(_ann(7, 170, 60, 40, 10), win, 0.5)
    assert c["bbox"] == [70, 10, 30, 10] and c["area"] == 300 and c["visible"] == 0.75
    assert c["source_annotation_id"] == 7 and c["category_id"] == 1 and c["iscrowd"] == 0
    # the same box under a stricter rule is dropped, or kept as an ignore region with --cut ignore
    assert clip_annotation(_ann(7, 170, 60, 40, 10), win, 0.8) is None
    ign = clip_annotation(_ann(7, 170, 60, 40, 10), win, 0.8, cut="ignore")
    assert ign["iscrowd"] == 1 and ign["bbox"] == [70, 10, 30, 10]
    # touching the border from outside (no area inside) never reaches the tile
    assert clip_annotation(_ann(8, 200, 60, 10, 10), win, 0.0) is None
    assert clip_annotation(_ann(8, 90, 60, 10, 10), win, 0.0) is None
    # wholly inside: unchanged but for the offset; exactly the min fraction still counts
    assert clip_annotation(_ann(9, 100, 50, 100, 100), win, 1.0)["bbox"] == [0, 0, 100, 100]
    assert clip_annotation(_ann(9, 150, 60, 100, 10), win, 0.5)["visible"] == 0.5


def test_ignore_regions_are_kept_wherever_they_reach():
    win = (0, 0, 100, 100)
    crowd = clip_annotation(_ann(3, 95, 95, 200, 200, crowd=1), win, 0.9)  # 25 of 40000 px inside
    assert crowd is not None and crowd["iscrowd"] == 1 and crowd["bbox"] == [95, 95, 5, 5]
    data = {"images": [{"id": 1, "file_name": "a.png", "width": 300, "height": 100}],
            "annotations": [_ann(3, 10, 10, 250, 80, crowd=1)]}
    plan = plan_tiles(data, 100, 0.0, min_visible=0.5, empty=0.0)
    # every tile holds only the ignore region: all count as empty and --empty 0 drops them
    assert plan.counts["empty tiles dropped"] == 3 and not plan.tiles
    plan = plan_tiles(data, 100, 0.0, min_visible=0.5, empty=1.0)
    assert [t.anns[0]["iscrowd"] for t in plan.tiles] == [1, 1, 1]


def _grid_data(n_images=4, h=200, w=300, boxes_in=(0, 2)):
    """Images whose boxes sit only in the listed images, so most tiles are empty."""
    images = [{"id": i + 1, "file_name": f"{i}.png", "width": w, "height": h} for i in range(n_images)]
    anns = [{"id": k + 1, "image_id": i + 1, "category_id": 1, "bbox": [10 + 30 * k, 20, 12, 12], "iscrowd": 0}
            for i in boxes_in for k in range(2)]
    return {"images": images, "annotations": anns, "categories": [{"id": 1, "name": "car"}]}


def test_empty_tile_cap_fraction_and_seed():
    data = _grid_data(n_images=8)
    every = plan_tiles(data, 100, 0.0, empty=1.0)
    full = sum(not t.empty for t in every.tiles)
    n_empty = len(every.tiles) - full
    assert full == 2 and n_empty == 8 * 6 - 2  # both boxes of an image lie in its top-left tile
    assert plan_tiles(data, 100, 0.0, empty=0.0).counts["tiles"] == full
    for frac in (0.25, 0.5, 0.9):
        p = plan_tiles(data, 100, 0.0, empty=frac, seed=1)
        kept_empty = sum(t.empty for t in p.tiles)
        assert kept_empty == min(n_empty, int(frac * full / (1 - frac))), frac
        assert kept_empty / len(p.tiles) <= frac
    a, b = (plan_tiles(data, 100, 0.0, empty=0.9, seed=s) for s in (1, 1))
    c = plan_tiles(data, 100, 0.0, empty=0.9, seed=2)
    key = lambda p: [(t.image["id"], t.window) for t in p.tiles]  # noqa: E731
    assert key(a) == key(b) and key(a) != key(c)
    with pytest.raises(ValueError, match="--empty"):
        plan_tiles(data, 100, 0.0, empty=1.5)


def _write_source(root: Path, seed=0, n=3, h=230, w=310):
    rng = np.random.default_rng(seed)
    (root / "imgs").mkdir(parents=True)
    images, anns = [], []
    for i in range(n):
        img = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
        cv2.imwrite(str(root / "imgs" / f"im{i}.png"), img)
        images.append({"id": 10 + i, "file_name": f"im{i}.png", "width": w, "height": h})
        for _ in range(12):
            bw, bh = rng.uniform(3, 32, 2)  # <= the 32 px overlap at 128 / 0.25: each fits whole in a tile
            x, y = rng.uniform(0, w - bw), rng.uniform(0, h - bh)
            anns.append({"id": 100 + len(anns), "image_id": 10 + i, "category_id": 5,
                         "bbox": [round(x, 2), round(y, 2), round(bw, 2), round(bh, 2)],
                         "iscrowd": int(rng.random() < 0.15)})
    js = root / "ann.json"
    js.write_text(json.dumps({"images": images, "annotations": anns, "categories": [{"id": 5, "name": "car"}]}))
    return js


def test_tiles_and_offsets_map_back_to_the_source(tmp_path):
    js = _write_source(tmp_path / "src")
    src = json.loads(js.read_text())
    counts = write_split(js, tmp_path / "src" / "imgs", tmp_path / "out", "train", 128, 0.25, min_visible=0.0)
    out = json.loads((tmp_path / "out" / "annotations" / "instances_train.json").read_text())
    assert counts["tiles"] == len(out["images"]) == 3 * len(slice_windows(230, 310, 128, 0.25))
    assert out["tiling"]["size"] == 128 and out["categories"] == src["categories"]
    by_img = {im["id"]: im for im in out["images"]}
    # tile pixels + offset are the source pixels (PNG: lossless)
    for im in out["images"][::5]:
        tile = cv2.imread(str(tmp_path / "out" / "images" / "train" / im["file_name"]))
        source = cv2.imread(str(tmp_path / "src" / "imgs" / im["source_file"]))
        x, y = im["offset"]
        assert tile.shape[:2] == (im["height"], im["width"])
        assert np.array_equal(tile, source[y:y + im["height"], x:x + im["width"]])
    # every source box comes back: the union of its pieces shifted by their offsets, with its class and crowd flag
    pieces = defaultdict(list)
    for a in out["annotations"]:
        im = by_img[a["image_id"]]
        x, y, w, h = a["bbox"]
        ox, oy = im["offset"]
        assert 0 <= x and 0 <= y and x + w <= im["width"] + 1e-9 and y + h <= im["height"] + 1e-9
        pieces[a["source_annotation_id"]].append((im["source_image_id"], x + ox, y + oy, x + ox + w, y + oy + h,
                                                  a["category_id"], a["iscrowd"]))
    assert set(pieces) == {a["id"] for a in src["annotations"]}
    whole = cut = 0
    for a in src["annotations"]:
        p = np.array([r[1:5] for r in pieces[a["id"]]])
        x, y, w, h = a["bbox"]
        np.testing.assert_allclose([p[:, 0].min(), p[:, 1].min(), p[:, 2].max(), p[:, 3].max()],
                                   [x, y, x + w, y + h], atol=1e-9)
        assert {r[0] for r in pieces[a["id"]]} == {a["image_id"]}
        assert {r[5:] for r in pieces[a["id"]]} == {(a["category_id"], a["iscrowd"])}
        whole += any(np.allclose(r, [x, y, x + w, y + h]) for r in p)
        cut += sum(not np.allclose(r, [x, y, x + w, y + h]) for r in p)
    assert whole == len(src["annotations"]) and cut > 5  # cut pieces exist, and their union is the box


def test_refuses_source_folders_and_existing_output(tmp_path):
    js = _write_source(tmp_path / "src", n=1)
    imgs = tmp_path / "src" / "imgs"
    with pytest.raises(DatasetError, match="source folder"):
        write_split(js, imgs, imgs / "tiles", "train", 128, 0.2)
    with pytest.raises(DatasetError, match="source folder"):
        write_split(js, imgs, tmp_path / "src", "train", 128, 0.2)
    write_split(js, imgs, tmp_path / "out", "train", 128, 0.2)
    before = sorted(p.name for p in (tmp_path / "out" / "images" / "train").iterdir())
    with pytest.raises(DatasetError, match="never overwrites"):
        write_split(js, imgs, tmp_path / "out", "train", 64, 0.2)
    assert sorted(p.name for p in (tmp_path / "out" / "images" / "train").iterdir()) == before
    assert sorted(p.name for p in imgs.iterdir()) == ["im0.png"]


def test_cli_auto_takes_the_recipes_window(tmp_path, capsys):
    js = _write_source(tmp_path / "src", n=2, h=400, w=520)  # 4x imgsz 128, most boxes tiny after a resize
    rc = main(["--json", str(js), "--images", str(tmp_path / "src" / "imgs"), "--out", str(tmp_path / "o"),
               "--size", "auto", "--imgsz", "128", "--empty", "0.2"])
    assert rc == 0, capsys.readouterr().err
    out = json.loads((tmp_path / "o" / "annotations" / "instances_train.json").read_text())
    assert out["tiling"]["size"] == 128 and 0.1 <= out["tiling"]["overlap"] <= 0.5
    assert "recipe at imgsz 128: tile 1.0" in capsys.readouterr().out
    # a recipe that does not tile is a clear error, not a silent copy
    rc = main(["--json", str(js), "--images", str(tmp_path / "src" / "imgs"), "--out", str(tmp_path / "o2"),
               "--size", "auto", "--imgsz", "1024"])
    assert rc == 1 and "does not tile" in capsys.readouterr().err


def test_exif_rotated_sources_are_tiled_as_shown(tmp_path):
    """A JPEG stored 96x128 with EXIF Orientation 6 is shown (and labelled) 128x96: its tiles are cut from the
    shown frame, as the json's sizes and boxes are; reading it unrotated skipped the image as mis-sized."""
    from PIL import Image, ImageOps
    img_dir = tmp_path / "src" / "imgs"
    img_dir.mkdir(parents=True)
    stored = np.random.default_rng(0).integers(0, 200, (128, 96, 3), dtype=np.uint8)  # h 128, w 96
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(stored).save(img_dir / "r.jpg", quality=100, exif=exif.tobytes())
    with Image.open(img_dir / "r.jpg") as im:
        shown = cv2.cvtColor(np.asarray(ImageOps.exif_transpose(im).convert("RGB")), cv2.COLOR_RGB2BGR)
    assert shown.shape[:2] == (96, 128)
    data = {"images": [{"id": 1, "file_name": "r.jpg", "width": 128, "height": 96}],
            "annotations": [_ann(1, 10, 10, 20, 20)], "categories": [{"id": 1, "name": "car"}]}
    js = tmp_path / "src" / "a.json"
    js.write_text(json.dumps(data))
    counts = write_split(js, img_dir, tmp_path / "out", "train", 64, 0.0, min_visible=0.0)
    out = json.loads((tmp_path / "out" / "annotations" / "instances_train.json").read_text())
    assert counts["tiles"] == len(out["images"]) == len(slice_windows(96, 128, 64, 0.0)) > 0
    for im in out["images"]:
        tile = cv2.imread(str(tmp_path / "out" / "images" / "train" / im["file_name"])).astype(int)
        x, y = im["offset"]
        ref = shown[y:y + im["height"], x:x + im["width"]].astype(int)
        assert tile.shape == ref.shape and np.abs(tile - ref).mean() < 8  # JPEG re-encoding, same frame

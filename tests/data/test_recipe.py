"""utils/data/recipe.py: tiling, slicing and the P2 advice decided from the sizes in a COCO json (no pixels),
and its uses in val.py --slice auto and detect.py --slice auto (the argument)."""
from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from models.yolo import Model
from train import parse_opt
from utils.data.coco import DatasetError
from utils.data.config import load_data_config
from utils.data.recipe import (P2_ADVICE, Sizes, decide, decide_from_sizes, fit_dfl_bin, image_slice,
                               read_sizes, slice_arg)

ROOT = Path(__file__).resolve().parents[2]


def write_coco(root: Path, images: list[tuple[int, int]], boxes: list[tuple[int, float, float]]) -> dict:
    """A data set of empty image folders and a json: images (w, h), boxes (image index, w, h). Returns the
    loaded data config (the recipe reads sizes only, so no image file is needed)."""
    ims = [{"id": i + 1, "file_name": f"{i}.jpg", "width": w, "height": h} for i, (w, h) in enumerate(images)]
    anns = [{"id": k + 1, "image_id": i + 1, "category_id": 1, "bbox": [1, 1, bw, bh], "area": bw * bh, "iscrowd": 0}
            for k, (i, bw, bh) in enumerate(boxes)]
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "train.json").write_text(json.dumps({"images": ims, "annotations": anns,
                                                 "categories": [{"id": 1, "name": "thing"}]}))
    split = {"json": "train.json", "images": "images"}
    (root / "data.yaml").write_text(yaml.safe_dump({"path": str(root), "train": split, "val": split}))
    return load_data_config(root / "data.yaml")


def test_small_square_images_need_no_tiles_and_no_slicing(tmp_path):
    data = write_coco(tmp_path, [(640, 640)] * 10, [(i % 10, 30 + i, 40) for i in range(30)])
    r = decide(data, 640)
    assert (r.tile, r.slice, r.overlap, r.p2) == (0.0, 0, 0.0, False)
    text = r.summary()
    assert "median 640 px, p90 640 px = 1.0x" in text and "not much larger than imgsz" in text
    assert "10 images, 30 boxes" in text


def test_huge_images_with_tiny_boxes_are_tiled_and_sliced_at_imgsz(tmp_path):
    """3200 px photos at imgsz 640 (5x), 20 px boxes (4 px after the resize): tile, slice 640; the overlap
    fits the 90th percentile of the longer box edge: 9 of 10 boxes are 20x20, one 20x190 -> p90 edge 37 px
    (np.percentile interpolates), 0.06 of 640, raised to the floor 0.1."""
    boxes = [(i % 4, 20, 20) for i in range(36)] + [(i % 4, 20, 190) for i in range(4)]
    data = write_coco(tmp_path, [(3200, 2400)] * 4, boxes)
    r = decide(data, 640)
    assert (r.tile, r.slice, r.overlap, r.p2) == (1.0, 640, 0.1, False)
    text = r.summary()
    assert "= 5.0x / 5.0x imgsz 640" in text  # the image ratio
    assert "100% under 16 px > 50%" in text  # the share the resize would make tiny
    assert "(under 8/16/32 px: 90%/100%/100%)" in text  # at the resized scale: 4 and 12 px
    assert "native crops; under 8/16/32 px: 0%/0%/90%" in text  # as the tiled model sees them
    # longer boxes: p90 edge 190 px -> 0.30 of the window (190/640 = 0.297, rounded up to a tenth)
    data = write_coco(tmp_path, [(3200, 2400)] * 4, [(i % 4, 20, 20) for i in range(8)] + [(0, 30, 190)] * 12)
    r = decide(data, 640)
    assert (r.slice, r.overlap) == (640, 0.3)
    assert "longer edge <= 190 px = 0.30 of the window" in r.summary()


@pytest.mark.parametrize("edge, overlap", [(10.0, 0.1), (128.0, 0.2), (129.0, 0.3), (600.0, 0.5)])
def test_overlap_is_the_p90_box_edge_rounded_up_to_a_tenth_in_its_range(edge, overlap):
    n = 50
    s = Sizes("x.json", np.full(5, 4000.0), np.full(n, 10.0), np.full(n, edge), np.full(n, 4000.0))
    r = decide_from_sizes(s, 640)
    assert (r.tile, r.slice, r.overlap) == (1.0, 640, overlap)


def test_large_images_whose_boxes_stay_large_are_not_tiled_and_p2_advice(tmp_path):
    """640 px boards at imgsz 320 (2x): 40 px boxes stay 20 px after the resize, so whole images; with a third
    of them 28 px (14 px at 320) the P2 head is advised, with the model YAML to use."""
    data = write_coco(tmp_path, [(640, 640)] * 6, [(i % 6, 40, 40) for i in range(30)])
    r = decide(data, 320)
    assert (r.tile, r.slice, r.p2) == (0.0, 0, False)
    assert "the images are 2.0x imgsz, but after the resize most boxes stay >= 16 px (0% under" in r.summary()
    boxes = [(i % 6, 40, 40) for i in range(20)] + [(i % 6, 28, 28) for i in range(10)]
    r = decide(write_coco(tmp_path, [(640, 640)] * 6, boxes), 320)
    assert (r.tile, r.slice, r.p2) == (0.0, 0, True)
    assert "P2 head advised: the model sees 33% of the boxes under 16 px" in r.summary()
    assert f"e.g. {P2_ADVICE}" in r.summary()
    # the advice is flags train.py takes, naming a P2 model that builds with them
    opt = parse_opt(["--data", "x.yaml", *P2_ADVICE.split()])
    model = Model(opt.cfg, nc=1, reg_max=opt.reg_max)
    assert len(model.stride) == 4 and model.stride[0] == 4 and opt.reg_max == 4


def test_sizes_come_from_the_json_or_the_file_header_and_bad_records_are_skipped(tmp_path):
    data = write_coco(tmp_path, [(100, 50)], [(0, 10, 10)])
    js = json.loads(Path(data["train"]["json"]).read_text())
    js["images"].append({"id": 2, "file_name": "real.png"})  # no size in the json: read from the header
    js["images"].append({"id": 3, "file_name": "gone.png"})  # no size and no file: skipped
    cv2.imwrite(str(tmp_path / "images" / "real.png"), np.zeros((30, 700, 3), np.uint8))
    js["annotations"] += [{"id": 9, "image_id": 2, "category_id": 1, "bbox": [0, 0, 5, 4]},
                          {"id": 10, "image_id": 3, "category_id": 1, "bbox": [0, 0, 5, 4]},   # unsized image
                          {"id": 11, "image_id": 1, "category_id": 1, "bbox": [0, 0, 0, 4]},   # zero width
                          {"id": 12, "image_id": 1, "category_id": 1, "bbox": [0, 0, 9, 9], "iscrowd": 1}]
    Path(data["train"]["json"]).write_text(json.dumps(js))
    s = read_sizes(data["train"]["json"], data["train"]["images"])
    assert sorted(s.image_long.tolist()) == [100.0, 700.0] and s.from_headers == 1
    assert s.side.tolist() == [10.0, pytest.approx(20 ** 0.5)] and s.extent.tolist() == [10.0, 5.0]
    assert s.box_long.tolist() == [100.0, 700.0]
    assert "2 images (1 sized from their file headers), 2 boxes" in decide(data, 64).summary()


def test_no_boxes_and_no_sizes(tmp_path):
    r = decide(write_coco(tmp_path, [(4000, 3000)] * 3, []), 640)
    assert (r.tile, r.slice, r.p2) == (0.0, 0, False) and "no boxes" in r.summary()
    (tmp_path / "train.json").write_text(json.dumps({"images": [{"id": 1, "file_name": "a.jpg"}],
                                                     "categories": [{"id": 1, "name": "thing"}]}))
    with pytest.raises(DatasetError, match=r"train\.json: no image with a size"):
        read_sizes(tmp_path / "train.json", tmp_path / "images")
    with pytest.raises(DatasetError, match="d.yaml: the recipe reads the train split's json"):
        decide({"yaml_file": "d.yaml"}, 640)


def test_detect_slices_only_images_much_larger_than_imgsz_and_the_flag():
    assert image_slice((1080, 1920), 640) == 640 and image_slice((640, 960), 640) == 0  # 1.5x is not "much"
    assert image_slice((480, 961), 640) == 640
    assert slice_arg("auto") == "auto" and slice_arg("512") == 512 and slice_arg("0") == 0
    for bad in ("-1", "big", "6.4"):
        with pytest.raises(argparse.ArgumentTypeError, match="a window size in pixels .* or 'auto'"):
            slice_arg(bad)


def test_val_slice_auto_takes_the_recipe_and_keeps_a_given_overlap(tmp_path):
    import val
    yaml_path = tmp_path / "data.yaml"
    write_coco(tmp_path, [(3200, 2400)] * 2, [(i % 2, 20, 20) for i in range(10)])
    assert val.parse_opt(["--weights", "w.pt", "--slice", "auto"]).slice == "auto"
    kw = {"data": str(yaml_path), "imgsz": 640, "verbose": False}
    val._auto_slice(kw)
    assert (kw["slice"], kw["overlap"]) == (640, 0.1) and kw["data"]["yaml_file"] == str(yaml_path)
    kw = {"data": str(yaml_path), "imgsz": 640, "overlap": 0.25, "verbose": False}
    val._auto_slice(kw)
    assert (kw["slice"], kw["overlap"]) == (640, 0.25)  # --overlap given: kept
    kw = {"data": str(yaml_path), "imgsz": 3200, "verbose": False}
    val._auto_slice(kw)
    assert kw["slice"] == 0 and "overlap" not in kw  # whole images at this size: validate's default overlap


DATASETS = Path(os.environ.get("SMALLDET_DATASETS") or ROOT.parent / "shared" / "datasets")


@pytest.mark.slow
@pytest.mark.parametrize("name, imgsz, want", [
    ("deeppcb", 320, (0.0, 0, 0.0, True)),       # hand-picked: tile 0, whole-image val
    ("aerial-cars", 640, (1.0, 640, 0.2, False)),  # hand-picked: tile 1.0, --slice 640 --overlap 0.2
])
def test_auto_picks_the_hand_picked_settings_on_the_real_sets(name, imgsz, want):
    """The settings the measured rows of docs/small-objects.md used (a second or so: json only)."""
    if not (DATASETS / name).is_dir():
        pytest.skip(f"{DATASETS / name} not found (the shared benchmark data sets; set SMALLDET_DATASETS)")
    r = decide(load_data_config(ROOT / "data" / f"{name}.yaml", root=str(DATASETS)), imgsz)
    assert (r.tile, r.slice, r.overlap, r.p2) == want, r.summary()


def test_dfl_bins_reach_the_p99_box_edge_at_the_finest_stride_and_the_largest_at_the_coarsest():
    edges = np.array([10.0] * 98 + [40.0, 80.0])  # in 320 px images: seen as they are at imgsz 320
    s = Sizes("t.json", np.full(100, 320.0), edges, edges, np.full(100, 320.0))
    p99 = float(np.percentile(edges, 99))  # 40.4 px
    width, why = fit_dfl_bin(s, 320, 0.0, [8.0, 16.0, 32.0], 16, 0.0)
    assert width == round(np.ceil(p99 / 8 / 15 / 0.05) * 0.05, 2) == 0.35 and "p99" in why[0]
    # a scale jitter of 0.5 enlarges every box; tiling a 1280 px image keeps its boxes native
    jittered = round(np.ceil(p99 * 1.5 / 8 / 15 / 0.05) * 0.05, 2)
    assert fit_dfl_bin(s, 320, 0.0, [8.0, 16.0, 32.0], 16, 0.5)[0] == jittered
    big = Sizes("t.json", np.full(100, 1280.0), edges, edges, np.full(100, 1280.0))
    # resized 4x smaller: p99 10.1 px is 1.26 cells, under the 2-cell floor (STAL widens tiny boxes that far)
    assert fit_dfl_bin(big, 320, 0.0, [8.0, 16.0, 32.0], 16, 0.0)[0] == round(np.ceil(2 / 15 / 0.05) * 0.05, 2) == 0.15
    assert fit_dfl_bin(big, 320, 1.0, [8.0, 16.0, 32.0], 16, 0.0)[0] == 0.35
    # one huge box: the coarsest level must still reach it; never wider than one cell
    huge = Sizes("t.json", np.full(3, 2000.0), np.array([10.0, 10.0, 1900.0]), np.array([10.0, 10.0, 1900.0]),
                 np.full(3, 2000.0))
    assert fit_dfl_bin(huge, 2000, 0.0, [8.0, 16.0, 32.0], 16, 0.0)[0] == 1.0
    assert fit_dfl_bin(Sizes("t.json", np.full(1, 9.0), np.zeros(0), np.zeros(0), np.zeros(0)), 320, 0.0,
                       [8.0], 16, 0.0)[0] == 1.0

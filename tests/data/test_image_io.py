"""Images are read as they are shown (issue 37.2: EXIF orientation) and 16-bit frames keep their signal
(issue 37.3), in every decode path: training, val --slice, detect.py, the data checker, header sizes.
Each test failed before its fix."""
from __future__ import annotations

import json
import logging
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image, ImageOps

from utils.data.coco import load_coco
from utils.data.config import DatasetError, load_data_config, parse_bit_depth
from utils.data.dataset import CocoDataset, main as check_main
from utils.data import image_io
from utils.data.image_io import read_image, to_bgr8

CATS = [{"id": 1, "name": "car"}]


def _exif(orientation: int) -> bytes:
    e = Image.Exif()
    e[0x0112] = orientation
    return e.tobytes()


def _stored(w: int, h: int, seed: int = 0) -> np.ndarray:
    """RGB pixels with a distinct corner, so that every rotation and mirror differs."""
    a = np.random.default_rng(seed).integers(0, 200, (h, w, 3), dtype=np.uint8)
    a[:12, :20] = (255, 0, 0)
    return a


def _save(path: Path, rgb: np.ndarray, orientation: int) -> Path:
    kw = {"quality": 100} if path.suffix == ".jpg" else {}
    Image.fromarray(rgb).save(path, exif=_exif(orientation), **kw)
    return path


def _shown(path: Path) -> np.ndarray:
    """The independent reference: PIL's own EXIF transpose, as BGR."""
    with Image.open(path) as im:
        return cv2.cvtColor(np.asarray(ImageOps.exif_transpose(im).convert("RGB")), cv2.COLOR_RGB2BGR)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_every_exif_orientation_is_read_as_pil_shows_it(tmp_path, orientation):
    path = _save(tmp_path / "a.png", _stored(96, 128), orientation)
    ref = _shown(path)
    assert np.array_equal(read_image(str(path)), ref)
    assert np.array_equal(read_image(str(path), special=True), ref)  # the 16-bit/alpha path too
    assert np.array_equal(read_image(str(path), orientation=orientation), ref)  # the dataset passes it


def test_reduced_jpeg_decoding_is_rotated_too(tmp_path):
    path = _save(tmp_path / "a.jpg", _stored(96, 128), 6)
    assert read_image(str(path)).shape == (96, 128, 3)
    assert read_image(str(path), reduce=2).shape == (48, 64, 3)
    assert np.array_equal(read_image(str(path)), cv2.imread(str(path)))  # OpenCV's own EXIF handling agrees


def _rotated_set(root: Path, side: tuple[int, int], orientation: int = 6) -> tuple[Path, Path, list]:
    """One JPEG stored w x h = side with an EXIF orientation, labelled on the shown view: a red car box."""
    (root / "images").mkdir(parents=True)
    w, h = side
    shown = np.full((w, h, 3) if orientation in (5, 6, 7, 8) else (h, w, 3), 40, np.uint8)  # RGB, shown frame
    boxes = [[10, 8, 30, 20], [70, 60, 40, 30]]
    for x, y, bw, bh in boxes:
        shown[y:y + bh, x:x + bw] = (255, 0, 0)
    stored = np.asarray(Image.fromarray(shown).transpose(Image.Transpose.ROTATE_90))  # shown = stored turned 90 cw
    _save(root / "images" / "a.jpg", stored, orientation)
    sh, sw = shown.shape[:2]
    js = root / "ann.json"
    js.write_text(json.dumps({"images": [{"id": 1, "file_name": "a.jpg", "width": sw, "height": sh}],
                              "annotations": [{"id": i + 1, "image_id": 1, "category_id": 1, "bbox": b,
                                               "area": b[2] * b[3], "iscrowd": 0} for i, b in enumerate(boxes)],
                              "categories": CATS}))
    return js, root / "images", boxes


@pytest.mark.parametrize("side", [(96, 128), (128, 128)], ids=["96x128", "square"])
@pytest.mark.parametrize("check", ["header", "full"])
def test_exif_rotated_jpeg_trains_on_the_labelled_view(tmp_path, side, check):
    """Stored 96x128 with Orientation 6 (shown 128x96, as the json says): the checker said 'json says 128x96,
    the file is 96x128', dropped and clipped boxes; the square one said 'problems: none' with boxes on background."""
    js, img_dir, boxes = _rotated_set(tmp_path, side)
    split = load_coco(js, img_dir, check=check)
    assert split.report.summary().endswith("problems: none"), split.report.summary()
    assert split.shapes.tolist() == [[side[0], side[1]]]  # (h, w) as shown
    ds = CocoDataset(str(js), str(img_dir), imgsz=128, stride=32, check=check, verbose=False)
    img = ds._read(0, native=True)
    for x, y, bw, bh in boxes:  # each labelled box covers the red car (BGR), not background
        assert img[y + 2:y + bh - 2, x + 2:x + bw - 2, 2].min() > 200, (x, y)


def test_json_with_the_stored_size_is_named_as_such(tmp_path):
    js, img_dir, _ = _rotated_set(tmp_path, (96, 128))
    data = json.loads(js.read_text())
    data["images"][0].update(width=96, height=128)  # a tool that ignored the orientation
    js.write_text(json.dumps(data))
    rep = load_coco(js, img_dir).report
    assert "EXIF orientation 6 shows it as 128x96" in rep.summary()


def test_detect_outputs_are_in_the_shown_frame(tmp_path):
    from tests.e2e.test_bad_input import _untrained_weights
    from utils.inference.runner import run_detection
    _, img_dir, _ = _rotated_set(tmp_path / "set", (96, 128))
    w = _untrained_weights(tmp_path / "w.pt")
    res = run_detection(weights=str(w), source=str(img_dir), imgsz=64, device="cpu", project=str(tmp_path / "runs"),
                        verbose=False)
    assert res[0].shape == (96, 128)
    assert cv2.imread(str(tmp_path / "runs" / "exp" / "a.jpg")).shape[:2] == (96, 128)  # the drawn image too


def test_header_sizes_for_recipes_and_converters_are_shown_sizes(tmp_path):
    from utils.data.convert.common import image_size
    from utils.data.recipe import _header_hw
    path = _save(tmp_path / "a.jpg", _stored(96, 128), 6)
    assert image_size(path) == (128, 96)
    assert _header_hw(tmp_path, "a.jpg") == (96, 128)


# ---------------------------------------------------------------- 16-bit frames
def _ir_frame(top: int = 1023) -> np.ndarray:
    """A 10-bit infrared frame: background ~200, a small hot target at `top`."""
    f = np.random.default_rng(0).integers(150, 250, (64, 80)).astype(np.uint16)
    f[30:34, 40:44] = top
    return f


def test_a_10_bit_frame_is_not_black(tmp_path):
    """Values 0..1023 became 0..3 after the fixed >> 8 (max 3/255: a black image, no warning)."""
    path = tmp_path / "ir.tif"
    cv2.imwrite(str(path), _ir_frame())
    img = read_image(str(path), special=True)
    assert img[31, 41].tolist() == [255] * 3 and 37 <= img[0, 0, 0] <= 62  # 1023 >> 2, ~200 >> 2


def test_bit_depth_settings_scale_and_warn():
    f = _ir_frame()
    assert to_bgr8(f, 10)[0][31, 41, 0] == 255 and to_bgr8(f, 12)[0][31, 41, 0] == 63
    img, problem = to_bgr8(f, 16)  # a wrong setting: the frame goes black, and says so
    assert img.max() <= 3 and "contrast is lost" in problem
    assert "exceed bit_depth 9" in to_bgr8(f, 9)[1]  # clipped
    lo = to_bgr8(f, "minmax")[0]
    assert lo.min() == 0 and lo.max() == 255
    kelvin = np.linspace(290, 310, 64 * 80, dtype=np.float32).reshape(64, 80)  # a radiometric float frame
    img, problem = to_bgr8(kelvin)
    assert img.min() == 0 and img.max() == 255 and not problem  # was clipped to 255 everywhere
    offset = (30000 + _ir_frame(400)).astype(np.uint16)  # full 16-bit range in use, little contrast
    assert "contrast is lost" in to_bgr8(offset)[1] and not to_bgr8(offset, "minmax")[1]


def test_bit_depth_comes_from_the_data_yaml_and_the_checker_names_lost_frames(tmp_path, capsys, caplog,
                                                                              monkeypatch):
    monkeypatch.setattr(image_io, "_warned", set())  # warnings are limited per process
    root = tmp_path / "ir"
    for split in ("train", "val"):
        (root / "images" / split).mkdir(parents=True)
        cv2.imwrite(str(root / "images" / split / "f.tif"), _ir_frame())
        (root / f"{split}.json").write_text(json.dumps({
            "images": [{"id": 1, "file_name": "f.tif", "width": 80, "height": 64}],
            "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [40, 30, 4, 4], "area": 16,
                             "iscrowd": 0}], "categories": CATS}))
    yaml_text = "path: .\ntrain: {json: train.json, images: images/train}\nval: {json: val.json, images: images/val}\n"
    (root / "auto.yaml").write_text(yaml_text)
    (root / "wrong.yaml").write_text(yaml_text + "bit_depth: 16\n")
    (root / "bad.yaml").write_text(yaml_text + "bit_depth: 17\n")
    assert check_main([str(root / "auto.yaml")]) == 0
    assert "signal lost" not in capsys.readouterr().out
    check_main([str(root / "wrong.yaml")])
    out = capsys.readouterr().out
    assert "signal lost in conversion 1" in out and "f.tif" in out and "became 0..3" in out
    data = load_data_config(root / "wrong.yaml")
    assert data["train"]["bit_depth"] == 16
    ds = CocoDataset(data["train"]["json"], data["train"]["images"], imgsz=64, stride=32, verbose=False,
                     bit_depth=data["train"]["bit_depth"])
    log = logging.getLogger("smalldet")
    log.addHandler(caplog.handler)
    try:
        assert ds._read(0, native=True).max() <= 3  # what the user asked for, with a warning naming the file
    finally:
        log.removeHandler(caplog.handler)
    assert any("f.tif" in r.message and "contrast is lost" in r.message for r in caplog.records)
    with pytest.raises(DatasetError, match=r"bad.yaml: bit_depth: 17 is not a bit depth"):
        load_data_config(root / "bad.yaml")
    assert parse_bit_depth("12", "x") == 12 and parse_bit_depth("MinMax", "x") == "minmax"


def test_16_bit_colour_images_take_the_scaled_path(tmp_path):
    """PIL opens a 48-bit RGB PNG/TIFF as mode 'RGB', so it was decoded as an 8-bit image (OpenCV's >> 8):
    10-bit colour values came out black whatever bit_depth said."""
    (tmp_path / "images").mkdir()
    c = np.full((32, 48, 3), 200, np.uint16)
    c[8:16, 8:16] = 1023
    for ext in ("png", "tif"):
        cv2.imwrite(str(tmp_path / "images" / f"c.{ext}"), c)
    js = tmp_path / "ann.json"
    js.write_text(json.dumps({"images": [{"id": i + 1, "file_name": f"c.{e}", "width": 48, "height": 32}
                                         for i, e in enumerate(("png", "tif"))], "annotations": [],
                              "categories": CATS}))
    ds = CocoDataset(str(js), str(tmp_path / "images"), imgsz=64, stride=32, verbose=False)
    assert ds.report.converted["RGB;16"] == 2
    for i in range(2):
        img = ds._read(i, native=True)
        assert img[10, 10].tolist() == [255] * 3 and img[0, 0].tolist() == [50] * 3  # 1023 >> 2, 200 >> 2


@pytest.mark.parametrize("suffix", [".png", ".jpg"])
@pytest.mark.parametrize("orientation", [1, 6])
def test_gray_files_read_as_one_channel_equal_the_bgr_reading(tmp_path, suffix, orientation):
    """gray=True (the dataset passes it for one-channel files) returns (h, w): each BGR channel
    of the plain reading, also rotated by EXIF and decoded at a reduced size."""
    path = tmp_path / f"a{suffix}"
    g = cv2.cvtColor(_stored(96, 128), cv2.COLOR_RGB2GRAY)
    Image.fromarray(g).save(path, exif=_exif(orientation), **({"quality": 90} if suffix == ".jpg" else {}))
    with Image.open(path) as im:
        assert im.mode == "L"
    for reduce in (1, 2) if suffix == ".jpg" else (1,):
        bgr = read_image(str(path), reduce=reduce)
        one = read_image(str(path), reduce=reduce, gray=True)
        assert one.ndim == 2 and one.shape == bgr.shape[:2]
        for c in range(3):
            np.testing.assert_array_equal(one, bgr[..., c])


def test_gray_high_bit_depth_frames_stay_one_channel(tmp_path):
    path = tmp_path / "ir.tif"
    cv2.imwrite(str(path), _ir_frame())
    bgr, one = read_image(str(path), special=True), read_image(str(path), special=True, gray=True)
    assert one.ndim == 2
    for c in range(3):
        np.testing.assert_array_equal(one, bgr[..., c])
    coco = load_coco_with(tmp_path, "ir.tif", 64, 80)
    assert coco.gray.tolist() == [True] and coco.convert.tolist() == [True]


def load_coco_with(root: Path, name: str, h: int, w: int, check: str = "header"):
    js = root / "one.json"
    js.write_text(json.dumps({"images": [{"id": 1, "file_name": name, "width": w, "height": h}],
                              "annotations": [], "categories": CATS}))
    return load_coco(str(js), str(root), check=check)


def test_gray_flags_follow_the_header_mode(tmp_path):
    cv2.imwrite(str(tmp_path / "g.png"), np.zeros((8, 9), np.uint8))
    cv2.imwrite(str(tmp_path / "c.png"), np.zeros((8, 9, 3), np.uint8))
    assert load_coco_with(tmp_path, "g.png", 8, 9).gray.tolist() == [True]
    assert load_coco_with(tmp_path, "c.png", 8, 9).gray.tolist() == [False]
    assert load_coco_with(tmp_path, "g.png", 8, 9, check="none").gray.tolist() == [False]  # modes unknown

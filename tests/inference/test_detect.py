"""detect.py: every source kind, the saved outputs agree with the returned detections, bad input
(unreadable image skipped, missing source / bad video a clear error), outputs kept on failure."""
from __future__ import annotations

import json
import logging
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

import detect
from utils.inference import runner  # the engine behind detect.py: monkeypatch targets
from utils.inference.sources import SourceError, SourceReader, parse_source

CONF = 0.2


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    """A tiny untrained yolov5n whose objectness bias is raised so that it reports boxes."""
    from models.yolo import Model
    from utils.checkpoints.checkpoint import checkpoint_yaml, save_checkpoint
    torch.manual_seed(0)
    m = Model("yolov5n.yaml", nc=2)
    for conv in m.detect.m:
        b = conv.bias.detach().view(m.detect.na, -1)
        b[:, 4] += 6.0
        conv.bias.data = b.view(-1)
    m.names, m.cat_ids = ["square", "disc"], [3, 7]
    path = tmp_path_factory.mktemp("w") / "w.pt"
    save_checkpoint({"model_yaml": checkpoint_yaml(m), "model": m.state_dict(), "names": m.names,
                     "cat_ids": m.cat_ids}, path)
    return path


def _video(path: Path, n: int = 7, fourcc: str = "mp4v", size=(96, 72)) -> Path:
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), 10, size)
    assert w.isOpened()
    rng = np.random.default_rng(1)
    for _ in range(n):
        w.write(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8))
    w.release()
    return path


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("media")
    rng = np.random.default_rng(0)
    (root / "imgs").mkdir()
    for name, (h, w) in (("a.jpg", (90, 120)), ("b.png", (64, 50)), ("7.png", (40, 80))):
        cv2.imwrite(str(root / "imgs" / name), rng.integers(0, 255, (h, w, 3), dtype=np.uint8))
    (root / "imgs" / "notes.json").write_text("{}")  # not media: ignored in folders
    _video(root / "clip.mp4")
    _video(root / "clip.avi", 5, "MJPG")
    (root / "list.txt").write_text("# my images\nimgs/a.jpg\n\nclip.avi\n")
    return root


def _run(weights, source, tmp_path, **kw):
    kw = {"imgsz": 64, "conf_thres": CONF, "device": "cpu", "project": str(tmp_path), "verbose": False, **kw}
    return detect.run(weights=str(weights), source=str(source), **kw)


def test_parse_source_kinds(media, tmp_path):
    assert parse_source("0").stream == 0 and parse_source(3).stream == 3
    assert parse_source("rtsp://cam.local/1").stream == "rtsp://cam.local/1"
    folder = parse_source(media / "imgs")
    assert [Path(f).name for f in folder.files] == ["7.png", "a.jpg", "b.png"] and not folder.is_stream
    assert [Path(f).name for f in parse_source(str(media / "imgs" / "*.png")).files] == ["7.png", "b.png"]
    assert [Path(f).name for f in parse_source(str(media / "**" / "*.jpg")).files] == ["a.jpg"]
    assert [Path(f).name for f in parse_source(media / "list.txt").files] == ["a.jpg", "clip.avi"]
    assert parse_source(media / "clip.mp4").files == [str(media / "clip.mp4")]
    with pytest.raises(FileNotFoundError, match="nope.jpg: no such file"):
        parse_source(tmp_path / "nope.jpg")
    with pytest.raises(FileNotFoundError, match=r"\*.gif: no image or video"):
        parse_source(str(media / "*.gif"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(SourceError, match="empty: folder holds no images"):
        parse_source(tmp_path / "empty")
    with pytest.raises(SourceError, match="unsupported file type '.json'"):
        parse_source(media / "imgs" / "notes.json")
    (tmp_path / "bad.txt").write_text(f"{media / 'imgs' / 'a.jpg'}\nmissing.png\n")
    with pytest.raises(FileNotFoundError, match=r"missing.png \(listed in .*bad.txt line 2\)"):
        parse_source(tmp_path / "bad.txt")
    with pytest.raises(SourceError, match="vid-stride"):
        SourceReader(media / "clip.mp4", vid_stride=0)


def test_image_folder_glob_and_list_give_the_same_detections(weights, media, tmp_path):
    single = _run(weights, media / "imgs" / "a.jpg", tmp_path, name="single")
    assert len(single) == 1 and single[0].frame == 0 and single[0].shape == (90, 120)
    det = single[0].det
    assert det.dtype == np.float32 and det.shape[1] == 6 and len(det) > 0, "raise CONF's margin: no boxes"
    assert (det[:, 4] >= CONF).all() and (np.diff(det[:, 4]) <= 0).all()
    assert (det[:, [0, 1]] >= 0).all() and (det[:, 2] <= 120).all() and (det[:, 3] <= 90).all()  # original px
    assert (tmp_path / "single" / "a.jpg").is_file()
    folder = _run(weights, media / "imgs", tmp_path, name="folder")
    assert [Path(r.path).name for r in folder] == ["7.png", "a.jpg", "b.png"]
    assert [r.shape for r in folder] == [(40, 80), (90, 120), (64, 50)]
    np.testing.assert_array_equal(folder[1].det, det)
    for name in ("7.png", "a.jpg", "b.png"):
        assert cv2.imread(str(tmp_path / "folder" / name)).shape[:2] == cv2.imread(str(media / "imgs" / name)).shape[:2]
    glob_res = _run(weights, str(media / "imgs" / "*.jpg"), tmp_path, name="glob")
    np.testing.assert_array_equal(glob_res[0].det, det)
    listed = _run(weights, media / "list.txt", tmp_path, name="list")
    assert [(Path(r.path).name, r.frame) for r in listed] == [("a.jpg", 0)] + [("clip.avi", i) for i in range(5)]
    np.testing.assert_array_equal(listed[0].det, det)
    assert (tmp_path / "list" / "clip.mp4").is_file()
    # filters
    only1 = _run(weights, media / "imgs" / "a.jpg", tmp_path, name="cls", classes=[1], max_det=3, nosave=True)
    assert len(only1[0].det) <= 3 and set(only1[0].det[:, 5].tolist()) <= {1.0}
    assert not list((tmp_path / "cls").glob("*.jpg"))  # --nosave


@pytest.mark.parametrize("name, n", [("clip.mp4", 7), ("clip.avi", 5)])
def test_video_source_with_stride_writes_an_mp4(weights, media, tmp_path, name, n):
    res = _run(weights, media / name, tmp_path, vid_stride=2, save_txt=True)
    want = list(range(0, n, 2))
    assert [r.frame for r in res] == want and all(r.shape == (72, 96) for r in res)
    out = tmp_path / "exp" / (Path(name).stem + ".mp4")
    cap = cv2.VideoCapture(str(out))
    frames = 0
    while cap.read()[0]:
        frames += 1
    assert frames == len(want) and cap.get(cv2.CAP_PROP_FRAME_WIDTH) == 96
    cap.release()
    assert sorted(p.name for p in (tmp_path / "exp" / "labels").iterdir()) == sorted(
        f"clip_{i}.txt" for i in want)


def test_txt_json_and_crops_agree_with_returned_detections(weights, media, tmp_path):
    res = _run(weights, media / "imgs", tmp_path, save_txt=True, save_json=True, save_crop=True, nosave=True)
    save = tmp_path / "exp"
    preds = json.loads((save / "predictions.json").read_text())
    assert len(preds) == sum(len(r.det) for r in res)
    crops = list((save / "crops").rglob("*.jpg"))
    assert len(crops) == len(preds)
    for r in res:
        stem, (h, w) = Path(r.path).stem, r.shape
        rows = np.loadtxt(save / "labels" / f"{stem}.txt", ndmin=2)
        assert rows.shape == (len(r.det), 6)
        d = r.det.astype(np.float64)
        want = np.stack((d[:, 5], (d[:, 0] + d[:, 2]) / 2 / w, (d[:, 1] + d[:, 3]) / 2 / h, (d[:, 2] - d[:, 0]) / w,
                         (d[:, 3] - d[:, 1]) / h, d[:, 4]), 1)
        np.testing.assert_allclose(rows, want, atol=2e-5)
        image_id = int(stem) if stem.isdigit() else stem  # 7.png -> 7: COCO image ids are ints
        mine = [p for p in preds if p["image_id"] == image_id]
        assert len(mine) == len(d) and all(p["file_name"] == Path(r.path).name for p in mine)
        for p, row in zip(mine, d):
            assert p["category_id"] == [3, 7][int(row[5])] and p["score"] == pytest.approx(row[4], abs=1e-5)
            np.testing.assert_allclose(p["bbox"], [row[0], row[1], row[2] - row[0], row[3] - row[1]], atol=2e-3)
        for k, row in enumerate(d):
            crop = cv2.imread(str(save / "crops" / ["square", "disc"][int(row[5])] / f"{stem}_{k}.jpg"))
            x1, y1, x2, y2 = np.floor(row[0]), np.floor(row[1]), np.ceil(row[2]), np.ceil(row[3])
            assert crop.shape[:2] == (max(int(min(y2, h) - y1), 1), max(int(min(x2, w) - x1), 1))


def test_unreadable_image_is_skipped_with_a_warning(weights, media, tmp_path, caplog):
    src = tmp_path / "src"
    src.mkdir()
    (src / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    cv2.imwrite(str(src / "ok.png"), cv2.imread(str(media / "imgs" / "a.jpg")))
    logger = logging.getLogger("smalldet")
    logger.propagate = True  # let caplog see it
    try:
        with caplog.at_level(logging.WARNING, logger="smalldet"):
            res = _run(weights, src, tmp_path, save_txt=True)
    finally:
        logger.propagate = False
    assert [Path(r.path).name for r in res] == ["ok.png"]
    assert "broken.jpg: image could not be read" in caplog.text
    assert (tmp_path / "exp" / "ok.png").is_file() and (tmp_path / "exp" / "labels" / "ok.txt").is_file()


def test_missing_source_and_bad_video_are_clear_errors(weights, media, tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere/x.jpg: no such file"):
        _run(weights, tmp_path / "nowhere" / "x.jpg", tmp_path / "runs")
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"\x00" * 64)
    with pytest.raises(SystemExit, match="broken.mp4: video could not be opened"):
        detect.main(["--weights", str(weights), "--source", str(bad), "--project", str(tmp_path / "runs"),
                     "--device", "cpu"])
    with pytest.raises(SystemExit, match="missing.pt: weights file not found"):
        detect.main(["--weights", str(tmp_path / "missing.pt"), "--source", str(media / "imgs"), "--project",
                     str(tmp_path / "runs")])
    assert not (tmp_path / "runs").exists()  # nothing half-made for a run that could not start


def test_outputs_survive_a_failure_mid_video(weights, media, tmp_path, monkeypatch):
    real, calls = runner.predict_image, []

    def flaky(*a, **k):
        calls.append(1)
        if len(calls) == 4:
            raise RuntimeError("out of memory (simulated)")
        return real(*a, **k)

    monkeypatch.setattr(runner, "predict_image", flaky)
    with pytest.raises(RuntimeError, match="simulated"):
        _run(weights, media / "clip.mp4", tmp_path, save_txt=True, save_json=True)
    save = tmp_path / "exp"
    cap = cv2.VideoCapture(str(save / "clip.mp4"))  # finalised in `finally`: the 3 frames done are playable
    frames = 0
    while cap.read()[0]:
        frames += 1
    cap.release()
    assert frames == 3
    assert len(list((save / "labels").glob("*.txt"))) == 3 and (save / "predictions.json").is_file()


def test_sliced_detection_cli(weights, media, tmp_path):
    img = tmp_path / "big.png"
    cv2.imwrite(str(img), np.random.default_rng(3).integers(0, 255, (150, 260, 3), dtype=np.uint8))
    res = detect.main(["--weights", str(weights), "--source", str(img), "--imgsz", "64", "--slice", "64",
                       "--overlap", "0.25", "--slice-full", "--slice-merge", "wbf", "--conf-thres", str(CONF),
                       "--device", "cpu", "--project", str(tmp_path), "--save-txt", "--hide-conf"])
    d = res[0].det
    assert len(d) and (d[:, :2] >= 0).all() and (d[:, 2] <= 260).all() and (d[:, 3] <= 150).all()
    assert (tmp_path / "exp" / "big.png").is_file() and (tmp_path / "exp" / "labels" / "big.txt").is_file()
    with pytest.raises(ValueError, match="slice-merge"):
        _run(weights, img, tmp_path, slice=64, slice_merge="avg")


def _letterbox_back(box_net: tuple[float, float, float, float], h: int, w: int, imgsz: int,
                    stride: int = 32) -> np.ndarray:
    """Where a box in network pixels lies in the original image, by hand: scale to imgsz on the
    long side, pad the short side to the next stride multiple, centred, then undo both."""
    r = imgsz / max(h, w)
    nw, nh = round(w * r), round(h * r)
    left, top = ((imgsz - nw) % stride) // 2, ((imgsz - nh) % stride) // 2
    cx, cy, bw, bh = box_net
    xyxy = np.array([(cx - bw / 2 - left) / (nw / w), (cy - bh / 2 - top) / (nh / h),
                     (cx + bw / 2 - left) / (nw / w), (cy + bh / 2 - top) / (nh / h)])
    return np.clip(xyxy, 0, [w, h, w, h])


@pytest.mark.parametrize("h, w", [(151, 233), (97, 61), (64, 64)])
def test_detect_run_maps_a_known_box_back_to_original_pixels(tmp_path, monkeypatch, h, w):
    """A stand-in model reports one box at a fixed place of its input: detect.run must return it
    in the original image's pixels, for odd image sizes too, and write it to the txt labels."""
    from tests.inference.test_slicing import OneBoxModel

    model = OneBoxModel(box=(40.0, 30.0, 22.0, 14.0))
    model.names, model.cat_ids = ["square", "disc"], [3, 7]
    monkeypatch.setattr(runner, "load_model", lambda weights, device, fuse=False: model)
    cv2.imwrite(str(tmp_path / "odd.png"), np.full((h, w, 3), 90, np.uint8))
    res = _run("unused.pt", tmp_path / "odd.png", tmp_path, imgsz=96, save_txt=True)
    assert len(res) == 1 and res[0].det.shape == (1, 6)
    want = _letterbox_back(model.box, h, w, 96)
    np.testing.assert_allclose(res[0].det[0, :4], want, atol=1.0)
    assert res[0].det[0, 4] == pytest.approx(0.81) and res[0].det[0, 5] == 0  # obj 0.9 x cls 0.9
    net_h, net_w = model.inputs[-1].shape[2:]
    assert max(net_h, net_w) == 96 and net_h % 32 == 0 and net_w % 32 == 0  # long side imgsz, stride-padded
    txt = (tmp_path / "exp" / "labels" / "odd.txt").read_text().split()
    cx, cy, bw, bh = (float(v) for v in txt[1:5])
    np.testing.assert_allclose([cx * w, cy * h, bw * w, bh * h],
                               [(want[0] + want[2]) / 2, (want[1] + want[3]) / 2, want[2] - want[0],
                                want[3] - want[1]], atol=1.0)


@pytest.mark.parametrize("h, w, slice_, imgsz", [(77, 141, 50, 64), (131, 97, 64, 64), (45, 45, 64, 96)])
def test_sliced_detect_returns_the_known_box_of_every_window(tmp_path, monkeypatch, h, w, slice_, imgsz):
    """With --slice every window reports the stand-in's box: each must come back at its window's
    offset plus the box scaled by slice / imgsz, within a pixel, on odd image sizes."""
    from tests.inference.test_slicing import OneBoxModel
    from utils.inference.slicing import slice_windows

    model = OneBoxModel(box=(12.0, 10.0, 8.0, 6.0))
    model.names, model.cat_ids = ["square", "disc"], [3, 7]
    monkeypatch.setattr(runner, "load_model", lambda weights, device, fuse=False: model)
    cv2.imwrite(str(tmp_path / "odd.png"), np.full((h, w, 3), 90, np.uint8))
    res = _run("unused.pt", tmp_path / "odd.png", tmp_path, imgsz=imgsz, slice=slice_, overlap=0.2)
    win = min(slice_, max(h, w))
    wins = slice_windows(h, w, win, 0.2)
    cx, cy, bw, bh = model.box
    want = []
    for x1, y1, x2, y2 in wins:
        g = imgsz / win  # the zoom of a window for the network
        gx, gy = round((x2 - x1) * g) / (x2 - x1), round((y2 - y1) * g) / (y2 - y1)
        want.append([min(x1 + (cx - bw / 2) / gx, x2), min(y1 + (cy - bh / 2) / gy, y2),
                     min(x1 + (cx + bw / 2) / gx, x2), min(y1 + (cy + bh / 2) / gy, y2)])
    got = sorted(res[0].det[:, :4].tolist())
    want = sorted(want)
    assert len(got) == len(wins)  # one box per window, none merged away (they do not overlap)
    np.testing.assert_allclose(np.array(got), np.array(want), atol=1.0)


def test_slice_auto_slices_only_the_images_much_larger_than_imgsz(tmp_path, monkeypatch, caplog):
    """--slice auto decides per image: a 200x100 image at imgsz 64 (over 1.5 x 64) runs in 64 px windows
    (one stand-in box each), an 80x60 one whole (one box)."""
    from tests.inference.test_slicing import OneBoxModel
    from utils.inference.slicing import slice_windows

    model = OneBoxModel(box=(12.0, 10.0, 8.0, 6.0))
    model.names, model.cat_ids = ["square", "disc"], [3, 7]
    monkeypatch.setattr(runner, "load_model", lambda weights, device, fuse=False: model)
    (tmp_path / "src").mkdir()
    cv2.imwrite(str(tmp_path / "src" / "big.png"), np.full((100, 200, 3), 90, np.uint8))
    cv2.imwrite(str(tmp_path / "src" / "small.png"), np.full((60, 80, 3), 90, np.uint8))
    with caplog.at_level(logging.INFO, logger="smalldet"):
        res = _run("unused.pt", tmp_path / "src", tmp_path, imgsz=64, slice="auto", overlap=0.2, verbose=True)
    n = {Path(r.path).name: len(r.det) for r in res}
    assert n == {"big.png": len(slice_windows(100, 200, 64, 0.2)), "small.png": 1} and n["big.png"] > 1
    assert "--slice auto: 1 sliced in 64px windows" in caplog.text
    assert detect.parse_opt(["--weights", "w", "--source", "s", "--slice", "auto"]).slice == "auto"
    with pytest.raises(ValueError, match="--slice big must be >= 0 or 'auto'"):
        _run("unused.pt", tmp_path / "src", tmp_path, slice="big")


def test_detect_flags_default_to_the_settings_and_settings_combine_with_names(weights, media, tmp_path, monkeypatch):
    """DetectSettings owns detect.py's defaults; run_detection takes settings and/or fields by name."""
    from dataclasses import replace

    from utils.inference.settings import DetectSettings
    opt = vars(detect.parse_opt(["--weights", "w.pt", "--source", "x.jpg"]))
    defaults = DetectSettings.defaults()
    for k, v in opt.items():
        if k not in ("weights", "source", "save_conf"):
            assert v == defaults[k], k
    monkeypatch.setattr(DetectSettings.__dataclass_fields__["conf_thres"], "default", 0.3)
    assert detect.parse_opt(["--weights", "w.pt", "--source", "x.jpg"]).conf_thres == 0.3
    monkeypatch.undo()
    s = replace(DetectSettings(), imgsz=64, conf_thres=CONF, device="cpu", project=str(tmp_path), verbose=False)
    a = detect.run(str(weights), str(media / "imgs"), s, name="a")
    b = detect.run(weights=str(weights), source=str(media / "imgs"), settings=replace(s, conf_thres=0.9), name="b",
                   conf_thres=CONF)  # a name overrides the settings
    assert [len(r.det) for r in a] == [len(r.det) for r in b] and sum(len(r.det) for r in a) > 0
    with pytest.raises(TypeError, match="conf"):
        detect.run(weights=str(weights), source=str(media / "imgs"), conf=0.1)

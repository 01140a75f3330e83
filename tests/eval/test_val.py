"""val.py: printed/returned AP equals pycocotools on predictions.json, boxes come back to original
pixels through letterboxing, fast path vs COCO, bad input, run-dir naming."""
from __future__ import annotations

import ast
import contextlib
import io
import json
import logging
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

import val
from utils.paths import increment_path

CATS = [{"id": 3, "name": "square"}, {"id": 7, "name": "disc"}]
SIZES = [(37, 101), (90, 50), (64, 64), (121, 33), (45, 77), (80, 80)]  # (h, w), odd on purpose
IMGSZ = 64


@pytest.fixture(scope="module")
def odd_coco(tmp_path_factory) -> Path:
    """A small COCO json over odd-sized images (only the json and sizes matter to the stand-in loader)."""
    root = tmp_path_factory.mktemp("odd_coco")
    rng = np.random.default_rng(0)
    images, anns = [], []
    for i, (h, w) in enumerate(SIZES):
        images.append({"id": 10 + i, "file_name": f"{i}.png", "width": w, "height": h})
        cv2.imwrite(str(root / f"{i}.png"), np.zeros((h, w, 3), np.uint8))
        for _ in range(int(rng.integers(2, 6))):
            bw, bh = int(rng.integers(3, max(4, w // 2))), int(rng.integers(3, max(4, h // 2)))
            x, y = int(rng.integers(0, w - bw)), int(rng.integers(0, h - bh))
            anns.append({"id": len(anns) + 1, "image_id": 10 + i, "category_id": CATS[int(rng.integers(0, 2))]["id"],
                         "bbox": [x, y, bw, bh], "area": bw * bh, "iscrowd": 0})
    path = root / "instances_val.json"
    path.write_text(json.dumps({"images": images, "annotations": anns, "categories": CATS}))
    return path


class StandInDataset:
    """The interface of utils/data/dataset.py, enough for val.run: attributes and letterbox metas."""

    def __init__(self, json_path: Path):
        d = json.loads(json_path.read_text())
        self.json_path, self.names, self.cat_ids = str(json_path), [c["name"] for c in CATS], [c["id"] for c in CATS]
        self.images = d["images"]
        self.anns = {im["id"]: [a for a in d["annotations"] if a["image_id"] == im["id"]] for im in self.images}

    def __len__(self) -> int:
        return len(self.images)

    def item(self, i: int):
        im = self.images[i]
        h0, w0 = im["height"], im["width"]
        r = min(IMGSZ / h0, IMGSZ / w0)
        w, h = round(w0 * r), round(h0 * r)
        pw, ph = (IMGSZ - w) / 2, (IMGSZ - h) / 2
        meta = {"image_id": im["id"], "orig_shape": (h0, w0), "ratio": (w / w0, h / h0), "pad": (pw, ph)}
        labels = []
        for a in self.anns[im["id"]]:
            x, y, bw, bh = a["bbox"]
            cls = self.cat_ids.index(a["category_id"])
            cx, cy = (x + bw / 2) * meta["ratio"][0] + pw, (y + bh / 2) * meta["ratio"][1] + ph
            labels.append([cls, cx, cy, bw * meta["ratio"][0], bh * meta["ratio"][1]])
        img = torch.full((3, IMGSZ, IMGSZ), 114, dtype=torch.uint8)
        return img, torch.tensor(labels, dtype=torch.float32).reshape(-1, 5), im["file_name"], meta


class StandInLoader:
    def __init__(self, dataset: StandInDataset, batch_size: int = 4):
        self.dataset, self.bs = dataset, batch_size

    def __len__(self) -> int:
        return (len(self.dataset) + self.bs - 1) // self.bs

    def __iter__(self):
        for s in range(0, len(self.dataset), self.bs):
            items = [self.dataset.item(i) for i in range(s, min(s + self.bs, len(self.dataset)))]
            targets = torch.cat([torch.cat((torch.full((len(it[1]), 1), float(b)), it[1]), 1)
                                 for b, it in enumerate(items)])
            yield torch.stack([it[0] for it in items]), targets, tuple(it[2] for it in items), \
                tuple(it[3] for it in items)


class OracleModel(torch.nn.Module):
    """Eval-mode output (B, N, 5 + nc) built from the batch's labels: jittered true boxes with random
    confidences, optional wrong-class and random false boxes. Replays one batch per call."""

    def __init__(self, loader: StandInLoader, nc: int = 2, jitter: float = 0.0, extra: int = 0, seed: int = 0):
        super().__init__()
        self.p = torch.nn.Parameter(torch.zeros(1))
        self.nc, self.names, self.stride = nc, [c["name"] for c in CATS][:nc], torch.tensor([8.0, 16.0, 32.0])
        g = torch.Generator().manual_seed(seed)
        self.outputs = []
        for imgs, targets, _, _ in loader:
            rows = []
            for b in range(len(imgs)):
                t = targets[targets[:, 0] == b, 1:]
                xywh = t[:, 1:5] + jitter * torch.randn(len(t), 4, generator=g) * t[:, 3:5].repeat(1, 2)
                cls = torch.full((len(t), nc), 0.02)
                cls[torch.arange(len(t)), t[:, 0].long()] = 0.95
                obj = 0.05 + 0.95 * torch.rand(len(t), 1, generator=g)
                fp = torch.cat((torch.rand(extra, 2, generator=g) * IMGSZ, 2 + torch.rand(extra, 2, generator=g) * 20,
                                torch.rand(extra, 1 + nc, generator=g)), 1)
                pad = torch.zeros(12 - len(t), 5 + nc)  # same N for every image of the batch
                rows.append(torch.cat((torch.cat((xywh, obj, cls), 1), fp, pad)))
            self.outputs.append(torch.stack(rows))
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.outputs[self.calls % len(self.outputs)]
        self.calls += 1
        assert out.shape[0] == x.shape[0]
        return out


def _cocoeval_file(gt_json: Path, pred_json: Path) -> np.ndarray:
    """pycocotools on the files, the documented way."""
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(gt_json))
        ev = COCOeval(gt, gt.loadRes(str(pred_json)), "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return np.array(ev.stats)


@pytest.fixture()
def log_text():
    buf = io.StringIO()
    h = logging.StreamHandler(buf)
    logging.getLogger("smalldet").addHandler(h)
    yield buf
    logging.getLogger("smalldet").removeHandler(h)


def _run(odd_coco: Path, tmp_path: Path, model_kw: dict | None = None, **kw) -> dict:
    loader = StandInLoader(StandInDataset(odd_coco))
    model = OracleModel(loader, **(model_kw or {}))
    data = {"names": loader.dataset.names, "cat_ids": loader.dataset.cat_ids, "val": {}}
    return val.run(data=data, model=model, dataloader=loader, project=str(tmp_path), imgsz=IMGSZ, **kw)


def test_printed_ap_equals_pycocotools_on_predictions_json(odd_coco, tmp_path, log_text):
    res = _run(odd_coco, tmp_path, dict(jitter=0.15, extra=4))
    save = Path(res["save_dir"])
    ref = _cocoeval_file(odd_coco, save / "predictions.json")
    assert [res[k] for k in ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100")] == \
        ref[[0, 1, 2, 3, 4, 5, 6, 7, 8]].tolist()
    assert 0.1 < res["AP"] < 0.9
    printed = log_text.getvalue()
    assert f"AP {ref[0]:.3f}, AP50 {ref[1]:.3f}, AP75 {ref[2]:.3f}, APs {ref[3]:.3f}" in printed
    assert "Speed:" in printed and "AP_vt" in printed
    preds = json.loads((save / "predictions.json").read_text())
    assert {p["category_id"] for p in preds} == {3, 7}  # original category ids, not class indices
    assert {p["image_id"] for p in preds} == {10 + i for i in range(len(SIZES))}
    metrics = json.loads((save / "metrics.json").read_text())
    assert metrics["AP"] == ref[0] and metrics["fitness"] == pytest.approx(0.1 * ref[1] + 0.9 * ref[0])
    for f in ("PR_curve.png", "F1_curve.png", "P_curve.png", "R_curve.png", "confusion_matrix.png",
              "AP_by_size.png", "AP_per_class.png", "val_batch0_pred.jpg"):
        assert cv2.imread(str(save / f)) is not None, f
    assert {r["name"] for r in res["per_class"]} == {"square", "disc"}
    assert res["AP_fast"] == pytest.approx(res["AP"], abs=0.01)  # in-memory matching vs pycocotools


def test_perfect_predictions_come_back_to_original_pixels(odd_coco, tmp_path):
    """True boxes in letterboxed pixels, scaled back through odd-sized letterbox metas: AP must be 1."""
    res = _run(odd_coco, tmp_path, save_txt=True)
    assert res["AP"] == 1.0 and res["AP75"] == 1.0
    preds = json.loads((Path(res["save_dir"]) / "predictions.json").read_text())
    for a in json.loads(odd_coco.read_text())["annotations"]:  # every true box is back, to the rounding
        assert any(p["image_id"] == a["image_id"] and p["category_id"] == a["category_id"]
                   and np.allclose(p["bbox"], a["bbox"], atol=2e-3) for p in preds), a
    lines = (Path(res["save_dir"]) / "labels" / "0.txt").read_text().splitlines()
    assert lines and len(lines[0].split()) == 6


def test_fast_path_and_fitness(odd_coco, tmp_path):
    full = _run(odd_coco, tmp_path, dict(jitter=0.1, extra=3, seed=1), name="full")
    fast = _run(odd_coco, tmp_path, dict(jitter=0.1, extra=3, seed=1), fast=True, plots=False, save_json=False,
                verbose=False)
    assert fast["save_dir"] == ""
    for k in ("AP", "AP50", "APs"):
        assert fast[k] == pytest.approx(full[k], abs=0.01), k
    assert fast["fitness"] == pytest.approx(0.1 * fast["AP50"] + 0.9 * fast["AP"])
    assert set(fast["speed"]) >= {"preprocess", "inference", "nms"}


def test_bad_input_errors(odd_coco, tmp_path):
    with pytest.raises(ValueError, match=r"predicts 3 classes.*has 2"):
        _run(odd_coco, tmp_path, dict(nc=3))
    empty = StandInDataset(odd_coco)
    empty.images = []
    with pytest.raises(ValueError, match="no images"):
        val.run(data={"names": ["square", "disc"], "val": {}}, model=OracleModel(StandInLoader(empty)),
                dataloader=StandInLoader(empty), project=str(tmp_path))
    with pytest.raises(ValueError, match="weights="):
        val.run(data={"names": ["a"]}, project=str(tmp_path))
    with pytest.raises(ValueError, match="task"):
        val.run(data={"names": ["a"]}, task="train")
    from utils.checkpoints.checkpoint import CheckpointError
    with pytest.raises(CheckpointError, match="not found"):
        val.run(data={"names": ["a"]}, weights=str(tmp_path / "missing.pt"), device="cpu")
    bad = tmp_path / "corrupt.pt"
    bad.write_bytes(b"\x80\x02 definitely not a checkpoint")
    with pytest.raises(SystemExit, match="corrupt.pt"):
        val.main(["--data", "x.yaml", "--weights", str(bad), "--device", "cpu"])


def test_increment_path(tmp_path):
    base = tmp_path / "runs" / "exp"
    assert increment_path(base) == base
    base.mkdir(parents=True)
    assert increment_path(base) == tmp_path / "runs" / "exp2"
    assert increment_path(base, exist_ok=True) == base
    (tmp_path / "runs" / "exp7").mkdir()
    (tmp_path / "runs" / "expfoo").mkdir()
    assert increment_path(base, mkdir=True) == tmp_path / "runs" / "exp8" and (tmp_path / "runs" / "exp8").is_dir()
    f = tmp_path / "r.txt"
    f.write_text("")
    assert increment_path(f) == tmp_path / "r2.txt"


@pytest.mark.slow
def test_cli_with_real_model_and_loader(tiny_coco, tmp_path, log_text):
    """The real chain: checkpoint -> load_model -> create_dataloader -> val.py CLI."""
    from models.yolo import Model
    from utils.checkpoints.checkpoint import checkpoint_yaml, save_checkpoint
    torch.manual_seed(0)
    for nc, name in ((2, "ok"), (3, "bad")):
        m = Model("yolov5n.yaml", nc=nc)
        for conv in m.detect.m:  # raise objectness so that the untrained model reports boxes
            b = conv.bias.detach().view(m.detect.na, -1)
            b[:, 4] += 6.0
            conv.bias.data = b.view(-1)
        m.names, m.cat_ids = ["square", "disc", "x"][:nc], [3, 7, 9][:nc]
        save_checkpoint({"model_yaml": checkpoint_yaml(m), "model": m.state_dict(), "names": m.names,
                         "cat_ids": m.cat_ids}, tmp_path / f"{name}.pt")
    res = val.main(["--data", str(tiny_coco), "--weights", str(tmp_path / "ok.pt"), "--imgsz", "64", "--device", "cpu",
                    "--project", str(tmp_path), "--batch-size", "2", "--workers", "0"])
    save = Path(res["save_dir"])
    assert (save / "metrics.json").is_file() and (save / "predictions.json").is_file()
    preds = json.loads((save / "predictions.json").read_text())
    assert preds  # the raised objectness guarantees boxes, so the cross-check below always runs
    gt_json = json.loads(Path(tiny_coco).parent.joinpath("annotations/instances_val.json").read_text())
    assert {p["category_id"] for p in preds} <= {3, 7}
    assert {p["image_id"] for p in preds} <= {im["id"] for im in gt_json["images"]}
    ref = _cocoeval_file(Path(tiny_coco).parent / "annotations/instances_val.json", save / "predictions.json")
    assert res["AP"] == ref[0] and res["AP50"] == ref[1]
    with pytest.raises(SystemExit, match=r"3 classes.*2"):
        val.main(["--data", str(tiny_coco), "--weights", str(tmp_path / "bad.pt"), "--imgsz", "64", "--device", "cpu",
                  "--project", str(tmp_path), "--workers", "0"])


# ---------------------------------------------------------------- engine options and the AI-TOD protocol

def test_training_options_equal_the_fast_flag(odd_coco, tmp_path):
    """build.py runs the Validator with ValSettings.training: the same figures val.run(fast=True) gives."""
    from utils.eval.settings import ValSettings
    from utils.eval.validator import Validator
    kw = dict(plots=False, save_json=False, verbose=False)
    fast = _run(odd_coco, tmp_path, dict(jitter=0.1, extra=3, seed=2), fast=True, **kw)
    loader = StandInLoader(StandInDataset(odd_coco))
    data = {"names": loader.dataset.names, "cat_ids": loader.dataset.cat_ids, "val": {}}
    settings = ValSettings.training(data=data, project=str(tmp_path), imgsz=IMGSZ, **kw)
    lib = Validator(settings, loader)(OracleModel(loader, jitter=0.1, extra=3, seed=2))
    for k in ("AP", "AP50", "AP75", "APs", "AR100", "precision", "recall", "fitness"):
        assert lib[k] == fast[k], k
    assert "AP_fast" not in lib  # no COCOeval ran


def test_aitod_protocol_equals_cocoeval_configured_by_hand(odd_coco, tmp_path, log_text):
    from tests.eval.test_metrics import aitod_cocoeval, at_1500
    res = _run(odd_coco, tmp_path, dict(jitter=0.15, extra=4), protocol="aitod", plots=False)
    save = Path(res["save_dir"])
    ev = aitod_cocoeval(json.loads(odd_coco.read_text()), json.loads((save / "predictions.json").read_text()))
    assert [res[k] for k in ("AP50", "AP75", "AP_s16", "AP_m32", "AR100", "AR300", "AR1500")] == \
        [ev.stats[i] for i in (1, 2, 3, 4, 6, 7, 8)]
    assert [res[k] for k in ("AP", "AP_vt", "AP_t")] == [at_1500(ev, True, a) for a in ("all", "verytiny", "tiny")]
    assert 0.1 < res["AP"] < 0.9 and "APs" not in res
    printed = log_text.getvalue()
    assert "pycocotools (AI-TOD, maxDets 1500)" in printed and "AR1500" in printed
    assert "AP_vt (very tiny, <8px)" in printed and "AP_m32 (medium, >=32px)" in printed
    metrics = json.loads((save / "metrics.json").read_text())
    assert metrics["protocol"] == "aitod" and metrics["max_det"] == 1500
    assert metrics["eval_max_dets"] == [100, 300, 1500]
    assert metrics["area_ranges_px2"] == {"all": [0.0, 1e10], "vt": [0.0, 64.0], "t": [64.0, 256.0],
                                          "s16": [256.0, 1024.0], "m32": [1024.0, 1e10]}
    with pytest.raises(ValueError, match="aitod is scored by pycocotools"):
        _run(odd_coco, tmp_path, protocol="aitod", fast=True, plots=False, save_json=False, verbose=False)


class GridModel(torch.nn.Module):
    """1,024 separate 1.5 px boxes per image (a 32 x 32 grid), each confident for both classes: NMS keeps
    them all, so only max_det limits how many reach the evaluation."""

    def __init__(self):
        super().__init__()
        self.p = torch.nn.Parameter(torch.zeros(1))
        self.nc, self.names, self.stride = 2, [c["name"] for c in CATS], torch.tensor([8.0, 16.0, 32.0])
        c = torch.arange(32, dtype=torch.float32) * 2 + 1
        cy, cx = torch.meshgrid(c, c, indexing="ij")
        n = cx.numel()
        obj = torch.linspace(0.1, 0.9, n)[:, None]
        self.out = torch.cat((cx.reshape(-1, 1), cy.reshape(-1, 1), torch.full((n, 2), 1.5), obj,
                              torch.full((n, 2), 0.9)), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out.expand(x.shape[0], -1, -1)


def test_aitod_keeps_1500_detections_per_image(odd_coco, tmp_path):
    loader = StandInLoader(StandInDataset(odd_coco))
    data = {"names": loader.dataset.names, "cat_ids": loader.dataset.cat_ids, "val": {}}
    counts = {}
    for protocol in ("coco", "aitod"):
        res = val.run(data=data, model=GridModel(), dataloader=loader, project=str(tmp_path), name=protocol,
                      imgsz=IMGSZ, protocol=protocol, plots=False, verbose=False)
        preds = json.loads((Path(res["save_dir"]) / "predictions.json").read_text())
        counts[protocol] = {p["image_id"] for p in preds}, len(preds)
    n_img = len(SIZES)
    assert counts["coco"] == ({10 + i for i in range(n_img)}, 300 * n_img)  # YOLOv5's max_det
    assert counts["aitod"] == ({10 + i for i in range(n_img)}, 1500 * n_img)  # all that AI-TOD scores


# ---------------------------------------------------------------- layering: the library never imports a CLI

CLI_SCRIPTS = {"train", "val", "detect", "export"}


def _cli_imports(path: Path) -> list[str]:
    """Imports of a top-level CLI script in one source file: import x, from x import y, import_module('x')."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names if a.name.split(".")[0] in CLI_SCRIPTS]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module.split(".")[0] in CLI_SCRIPTS:
                found.append(node.module)
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) in (
                "import_module", "__import__") and node.args and isinstance(node.args[0], ast.Constant):
            if str(node.args[0].value).split(".")[0] in CLI_SCRIPTS:
                found.append(str(node.args[0].value))
    return found


def test_library_never_imports_a_cli_script(tmp_path):
    root = Path(__file__).resolve().parents[2]
    files = sorted(p for d in ("utils", "models") for p in (root / d).rglob("*.py"))
    assert len(files) > 20 and all((root / f"{s}.py").is_file() for s in CLI_SCRIPTS)
    offenders = {str(p.relative_to(root)): found for p in files if (found := _cli_imports(p))}
    assert not offenders, f"library modules import CLI scripts (call utils/ instead): {offenders}"
    bad = tmp_path / "bad.py"  # the scan itself sees every form
    bad.write_text("import val as v\nfrom detect import run\nimport importlib\nimportlib.import_module('train')\n"
                   "def f():\n    import export.x\n")
    assert sorted(_cli_imports(bad)) == ["detect", "export.x", "train", "val"]

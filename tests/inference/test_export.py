"""export.py and the inference backends (utils/inference/backends.py): exported ONNX / TorchScript models give PyTorch's
outputs for every model config, carry their metadata, run through detect.py and val.py (sliced too), and bad
input fails with one line naming the file or flag.

Tolerance of the parity checks: an export may differ from PyTorch's float32 output by 3x as much as PyTorch's
float32 output itself differs from the exact answer (the same model in float64) on the same input, plus a floor
(1e-3 px, 1e-6 on scores). ONNX Runtime (MLAS) and PyTorch (oneDNN) order their sums differently, so each is a
rounding error away from the exact result: on these models (activations growing to std ~70 in the neck, head
logits of std ~1.5, so large sums cancel) that is up to ~2e-3 relative on boxes, ~0.05 px, and the export sits
about as far from PyTorch again. A broken export (a grid frozen at one size, a wrong stride or op) moves boxes by
whole cells, 4 px or more. TorchScript runs PyTorch's own kernels and comes out identical.
"""
from __future__ import annotations

import copy
import json
import re
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

import export
from models.yolo import Model
from utils.inference.backends import OnnxModel, TorchScriptModel, load_model
from utils.checkpoints.checkpoint import CheckpointError, checkpoint_yaml, save_checkpoint
from utils.inference.postprocess import non_max_suppression

ROOT = Path(__file__).resolve().parents[2]
# every config in configs/models at the n scale ('yolov5-dfl.yaml' -> 'yolov5n-dfl.yaml'); the heads and stems of
# the first seven run on every test run, the other blocks (SE, DCN, dense, ...) with the slow tests
CORE = ("yolov5.yaml", "yolov5-dfl.yaml", "yolov5-p2.yaml", "yolov5-p2-dfl.yaml", "yolov5-asff.yaml",
        "yolov5-spd.yaml", "yolov5-focus.yaml")
ALL = sorted(p.name for p in (ROOT / "configs/models").glob("*.yaml"))
CFGS = [pytest.param(re.sub(r"^(yolov\d+)", r"\1n", c), id=c[:-5], marks=() if c in CORE else pytest.mark.slow)
        for c in sorted(ALL, key=lambda c: c not in CORE)]
LOGIT_CAP = 8.0  # lively_model: sigmoid(8 + bias) stays below 1.0 in float32 (ties at exactly 1.0 break NMS)
CONF = 0.5  # well inside the spread of the scores below: many boxes pass, many do not


def _head_convs(det: torch.nn.Module) -> list[torch.nn.Conv2d]:
    return [s[-1] for s in (*det.box, *det.cls)] if hasattr(det, "box") else list(det.m)


def lively_model(cfg: str, seed: int = 0) -> Model:
    """An untrained model made to behave like a trained one numerically. With the stock init the features
    shrink ~10x per layer (1e-7 at the head: fp16 underflows, the biases alone decide the output and a broken
    backbone would pass). So: BatchNorm statistics from one pass over random images (each layer then feeds the
    next unit-variance features), and head convs rescaled to logits of std ~1.5, giving scores from ~0 to ~1
    (NMS has real work), and deformable convs given offsets that sample off the grid."""
    torch.manual_seed(seed)
    m = Model(cfg, nc=2)
    m.names, m.cat_ids = ["square", "disc"], [3, 7]
    g = torch.Generator().manual_seed(seed + 1)
    for mod in m.modules():
        if isinstance(getattr(mod, "offset", None), torch.nn.Conv2d):
            mod.offset.weight.data = torch.randn(mod.offset.weight.shape, generator=g) * 0.05
            mod.offset.bias.data = torch.randn(mod.offset.bias.shape, generator=g)
    bns = [b for b in m.modules() if isinstance(b, torch.nn.BatchNorm2d)]
    for b in bns:
        b.momentum = 1.0  # the running statistics become this one batch's
    with torch.no_grad():
        m.train()(torch.rand(4, 3, 64, 64, generator=g))
    for b in bns:
        b.momentum = 0.03
    m.eval()
    convs, stds = _head_convs(m.detect), {}
    hooks = [c.register_forward_pre_hook(lambda mod, a: stds.__setitem__(mod, a[0].std().item())) for c in convs]
    with torch.no_grad():
        m(torch.rand(1, 3, 64, 64, generator=g))
    for h in hooks:
        h.remove()
    for c in convs:
        c.weight.data = torch.randn(c.weight.shape, generator=g) * (1.5 / (stds[c] * c.weight[0].numel() ** 0.5))
        c.bias.data = torch.randn(c.bias.shape, generator=g) * 0.5
    # heavy-tailed features still push a few class logits past ~17, where float32 sigmoid is exactly 1.0; DetectDFL
    # scores a box by that one sigmoid (the anchor head multiplies two), so NMS may keep either of two tied boxes:
    # cap each of its class convs' largest logit (without bias) at LOGIT_CAP
    cls_convs, peaks = [s[-1] for s in getattr(m.detect, "cls", [])], {}
    hooks = [c.register_forward_hook(lambda mod, a, out: peaks.__setitem__(mod, (out - mod.bias.view(1, -1, 1, 1))
                                                                            .abs().max().item())) for c in cls_convs]
    with torch.no_grad():
        m(torch.rand(4, 3, 64, 96, generator=g))
    for h in hooks:
        h.remove()
    for c in cls_convs:
        c.weight.data *= min(1.0, LOGIT_CAP / peaks[c])
    return m


def save_weights(m: Model, path: Path) -> Path:
    save_checkpoint({"model_yaml": checkpoint_yaml(m), "model": m.state_dict(), "names": m.names,
                     "cat_ids": m.cat_ids}, path)
    return path


@pytest.fixture(scope="module", params=CFGS)
def exported(request, tmp_path_factory):
    """Per config: the fused PyTorch model and its dynamic ONNX / TorchScript exports at 64 px."""
    model = lively_model(request.param)
    files = export.run(save_weights(model, tmp_path_factory.mktemp("exp") / "w.pt"), imgsz=64, dynamic=True)
    return model.fuse(), files


def reference(model: torch.nn.Module, x: torch.Tensor, exact_model: torch.nn.Module | None = None
              ) -> tuple[torch.Tensor, float, float]:
    """model's output on x and the tolerances (boxes px, scores): 10x the model's own rounding error, its
    distance from the exact answer (exact_model, default model itself, run in float64), plus a floor."""
    with torch.no_grad():
        want = model(x.to(next(model.parameters()).dtype)).float()
        exact = copy.deepcopy(exact_model or model).double()(x.double())
    err = (want.double() - exact).abs()
    return want, 10 * err[..., :4].max().item() + 1e-3, 10 * err[..., 4:].max().item() + 1e-6


def _assert_same_boxes(got: torch.Tensor, want: torch.Tensor, box_tol: float, score_tol: float) -> None:
    """Same NMS output up to order: scores within score_tol may swap places."""
    assert got.shape == want.shape
    if not len(want):
        return
    d = (got[None, :, :5] - want[:, None, :5]).abs()  # (want, got, 5)
    d[..., 4] *= box_tol / score_tol  # one scale for coordinates and scores
    match = d.amax(-1).argmin(1)
    assert len(set(match.tolist())) == len(want)  # one to one
    torch.testing.assert_close(got[match, :4], want[:, :4], atol=box_tol, rtol=0)
    torch.testing.assert_close(got[match, 4], want[:, 4], atol=score_tol, rtol=0)
    assert torch.equal(got[match, 5], want[:, 5])


def _assert_same_output(got: torch.Tensor, want: torch.Tensor, box_tol: float, score_tol: float) -> None:
    """Boxes, objectness and the class scores NMS ranks by (obj * cls). Not the class columns alone: DetectDFL
    writes them as cls / best, which for a cell whose best score is ~1e-4 magnifies onnxruntime's ~5e-8 sigmoid
    error far in the tail (logits ~ -14) past any fp32 tolerance, in a score of ~1e-7 that NMS never sees."""
    assert got.shape == want.shape
    torch.testing.assert_close(got[..., :4], want[..., :4], atol=box_tol, rtol=0)
    torch.testing.assert_close(got[..., 4], want[..., 4], atol=score_tol, rtol=0)
    torch.testing.assert_close(got[..., 4:5] * got[..., 5:], want[..., 4:5] * want[..., 5:], atol=score_tol, rtol=0)


def test_exports_match_pytorch_raw_and_after_nms(exported):
    """All boxes of all anchors, then the NMS output, at another batch size and shape than exported."""
    model, files = exported
    x = torch.rand(2, 3, 96, 64, generator=torch.Generator().manual_seed(3))
    want, box_tol, score_tol = reference(model, x)
    # PyTorch's own fp32 error is small: the tolerance stays under a P3 cell (8 px) and 1% of the largest box
    assert box_tol < min(8.0, 0.01 * want[..., 2:4].max().item()) and score_tol < 1e-2
    want_det = non_max_suppression(want, CONF, 0.45)
    assert all(len(d) >= 5 for d in want_det), [len(d) for d in want_det]  # the comparison means something
    for fmt, path in files.items():
        backend = load_model(path, "cpu")
        got = backend(x)
        _assert_same_output(got, want, box_tol, score_tol)
        for g, w in zip(non_max_suppression(got, CONF, 0.45), want_det):
            _assert_same_boxes(g, w, box_tol, score_tol)


def test_metadata_travels_with_the_files(exported):
    import onnx

    model, files = exported
    proto = onnx.load(str(files["onnx"]))
    onnx.checker.check_model(proto, full_check=True)
    assert proto.opset_import[0].version >= 17
    dims = [d.dim_param or d.dim_value for d in proto.graph.input[0].type.tensor_type.shape.dim]
    assert dims == ["batch", 3, "height", "width"]
    for backend in (load_model(files["onnx"]), load_model(files["torchscript"])):
        assert isinstance(backend, (OnnxModel, TorchScriptModel))
        m = backend.meta
        assert (backend.names, backend.cat_ids, backend.nc) == (["square", "disc"], [3, 7], 2)
        assert torch.equal(backend.stride, model.stride)
        assert m["imgsz"] == [64, 64] and m["dynamic"] and not m["half"] and m["batch"] == 1
        assert m["head"] == type(model.detect).__name__
        if model.detect.anchor_free:  # no anchor shapes, so none in the file
            assert "anchors" not in m
        else:
            np.testing.assert_allclose(m["anchors"], model.detect.anchors.flatten(1).numpy())


@pytest.fixture(scope="module")
def n_weights(tmp_path_factory) -> Path:
    return save_weights(lively_model("yolov5n.yaml"), tmp_path_factory.mktemp("n") / "n.pt")


def test_fixed_shape_onnx_pads_the_input_and_splits_the_batch(n_weights, tmp_path):
    """A batch-2 64x64 export runs 3 images of 64x32: they are padded (bottom / right, grey) to 64x64 and run
    as two batches; the result is PyTorch's on the padded input. A larger input is a clear error."""
    w = Path(tmp_path / "fixed.pt")
    w.write_bytes(n_weights.read_bytes())
    path = export.run(w, include=["onnx"], imgsz=64, batch_size=2)["onnx"]
    backend = load_model(path)
    assert isinstance(backend, OnnxModel) and backend.fixed == [2, 64, 64]
    x = torch.rand(3, 3, 64, 32, generator=torch.Generator().manual_seed(4))
    padded = torch.cat((x, torch.full((3, 3, 64, 32), 114 / 255)), 3)
    _assert_same_output(backend(x), *reference(load_model(w, fuse=True), padded))
    with pytest.raises(ValueError, match=r"fixed.onnx.*fixed 64x64 input but got 96x64.*--dynamic"):
        backend(torch.rand(1, 3, 96, 64))


def test_half_and_simplified_exports_stay_close(n_weights, tmp_path):
    """--half (fp16 backbone and neck, fp32 head) within fp16's tolerance, --simplify (onnxslim) exactly as
    close as the plain export; both pass export.py's own check against PyTorch."""
    pytest.importorskip("onnxslim")
    w = Path(tmp_path / "h.pt")
    w.write_bytes(n_weights.read_bytes())
    x = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(5))
    want, box_tol, score_tol = reference(load_model(w, fuse=True), x)
    slim = export.run(w, include=["onnx"], imgsz=64, simplify=True)["onnx"]
    _assert_same_output(load_model(slim)(x), want, box_tol, score_tol)
    half = export.run(w, include=["onnx", "torchscript"], imgsz=64, half=True)
    # the reference is PyTorch running the same fp16 model; the tolerance 10x its own fp16 error
    want, box_tol, score_tol = reference(export.prepare_model(w, torch.device("cpu"), half=True), x,
                                         load_model(w, fuse=True))
    for path in half.values():
        backend = load_model(path)
        assert backend.meta["half"]
        got = backend(x)
        assert got.dtype == torch.float32
        _assert_same_output(got, want, box_tol, score_tol)


# ---------------------------------------------------------------- bad input: one line naming the file or flag
def _export_error(argv: list[str]) -> str:
    with pytest.raises(SystemExit) as e:
        export.main(argv)
    msg = str(e.value.code)
    assert msg.startswith("export.py: error: ") and "\n" not in msg and "Traceback" not in msg
    return msg


def test_missing_weights_and_unsupported_format(n_weights, tmp_path):
    assert "nope.pt: weights file not found" in _export_error(["--weights", str(tmp_path / "nope.pt")])
    msg = _export_error(["--weights", str(n_weights), "--include", "onnx", "tflite"])
    assert "--include tflite" in msg and "onnx, torchscript" in msg


def test_an_export_failing_the_checker_is_named_and_replaces_nothing(n_weights, tmp_path, monkeypatch):
    import onnx

    w = Path(tmp_path / "c.pt")
    w.write_bytes(n_weights.read_bytes())
    w.with_suffix(".onnx").write_bytes(b"the previous export")

    def fail(*a, **k):
        raise onnx.checker.ValidationError("Node (Conv_0) has input size 5 not in range [min=2, max=3].")

    monkeypatch.setattr(onnx.checker, "check_model", fail)
    msg = _export_error(["--weights", str(w), "--include", "onnx", "--imgsz", "64"])
    assert re.search(r"c\.onnx.*fails onnx\.checker: Node \(Conv_0\)", msg), msg
    assert w.with_suffix(".onnx").read_bytes() == b"the previous export"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.onnx", "c.pt"]  # no temporary file left


def test_backend_errors_name_the_file(tmp_path):
    with pytest.raises(CheckpointError, match=r"gone.onnx: weights file not found"):
        load_model(tmp_path / "gone.onnx")
    (tmp_path / "junk.torchscript").write_bytes(b"not a zip")
    with pytest.raises(CheckpointError, match=r"junk.torchscript: not a readable TorchScript model"):
        load_model(tmp_path / "junk.torchscript")
    (tmp_path / "junk.onnx").write_bytes(b"not protobuf")
    with pytest.raises(CheckpointError, match=r"junk.onnx: not a readable ONNX model"):
        load_model(tmp_path / "junk.onnx")
    foreign = tmp_path / "foreign.onnx"  # a valid ONNX model that export.py did not write
    torch.onnx.export(torch.nn.Conv2d(3, 7, 1).eval(), (torch.zeros(1, 3, 8, 8),), str(foreign), dynamo=False)
    with pytest.raises(CheckpointError, match=r"foreign.onnx: not a smalldet export"):
        load_model(foreign)


# ---------------------------------------------------------------- end to end through the CLIs
@pytest.fixture(scope="module")
def cli_exports(n_weights) -> dict[str, Path]:
    files = export.main(["--weights", str(n_weights), "--include", "onnx", "torchscript", "--imgsz", "64",
                         "--dynamic"])
    return {"pt": n_weights, **files}


@pytest.fixture(scope="module")
def image(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("img") / "odd.png"
    cv2.imwrite(str(path), np.random.default_rng(0).integers(0, 255, (90, 150, 3), dtype=np.uint8))
    return path


@pytest.mark.slow
@pytest.mark.parametrize("slice_", [0, 64])
def test_detect_gives_the_same_boxes_from_pt_onnx_and_torchscript(cli_exports, image, tmp_path, slice_):
    import detect

    dets = {}
    for fmt, w in cli_exports.items():
        argv = ["--weights", str(w), "--source", str(image), "--imgsz", "64", "--conf-thres", "0.25",
                "--project", str(tmp_path), "--name", fmt, "--save-txt", "--nosave", "--slice", str(slice_),
                "--slice-batch", "3"]
        (res,) = detect.main(argv)
        dets[fmt] = res.det
    assert len(dets["pt"]) >= 3
    for fmt in ("onnx", "torchscript"):  # within a pixel; equal scores may come in another order
        _assert_same_boxes(torch.from_numpy(dets[fmt]), torch.from_numpy(dets["pt"]), 1.0, 1e-3)


@pytest.mark.slow
def test_val_scores_exported_models_like_the_checkpoint(cli_exports, tiny_coco, tmp_path):
    import val

    res = {fmt: val.run(data=str(tiny_coco), weights=str(w), imgsz=64, batch_size=3, device="cpu", plots=False,
                        project=str(tmp_path), name=fmt, verbose=False, workers=0)
           for fmt, w in cli_exports.items()}
    for fmt in ("onnx", "torchscript"):
        for k in ("AP", "AP50", "precision", "recall"):
            assert res[fmt][k] == pytest.approx(res["pt"][k], abs=1e-3), (fmt, k)
        n_pt = len(json.loads((Path(res["pt"]["save_dir"]) / "predictions.json").read_text()))
        n = len(json.loads((Path(res[fmt]["save_dir"]) / "predictions.json").read_text()))
        assert n_pt > 0 and abs(n - n_pt) <= 0.01 * n_pt, (fmt, n, n_pt)  # boxes right at conf 0.001 may flip


def test_detect_and_val_name_a_missing_export(tmp_path, image):
    import detect
    import val

    with pytest.raises(SystemExit, match=r"detect.py: error: .*none.onnx: weights file not found"):
        detect.main(["--weights", str(tmp_path / "none.onnx"), "--source", str(image)])
    with pytest.raises(SystemExit, match=r"val.py: error: .*none.torchscript: weights file not found"):
        val.main(["--weights", str(tmp_path / "none.torchscript")])


@pytest.mark.slow
def test_docs_example_runs_onnx_without_torch(cli_exports, image, tmp_path):
    """docs/export.md's onnxruntime-only example, run with torch made unimportable, finds detect.py's boxes."""
    import detect

    page = (ROOT / "docs" / "export.md").read_text()
    section = page.split("## Running an `.onnx` without torch", 1)[1].split("\n## ", 1)[0]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    script = tmp_path / "onnx_detect.py"
    script.write_text("import sys\nsys.modules['torch'] = None  # any 'import torch' now fails\n" + code)
    out = subprocess.run([sys.executable, str(script), str(cli_exports["onnx"]), str(image)], capture_output=True,
                         text=True, timeout=300, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    rows = [ln.split() for ln in out.stdout.strip().splitlines()]
    got = torch.tensor([[float(v) for v in r[:5]] + [["square", "disc"].index(r[5])] for r in rows])
    (want,) = detect.run(weights=str(cli_exports["onnx"]), source=str(image), imgsz=64, conf_thres=0.25,
                         project=str(tmp_path), nosave=True, verbose=False)
    assert len(want.det) >= 3
    _assert_same_boxes(got, torch.from_numpy(want.det), 1.0, 1e-3)  # printed to 0.1 px and 4 digits


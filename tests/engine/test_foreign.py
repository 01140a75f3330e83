"""Checkpoints of ultralytics/yolov5 and the Ultralytics package: read without running their code, mapped onto
our models, outputs equal to the originals' on the shared fixtures (../shared/fixtures, skipped when absent)."""
from __future__ import annotations

import io
import os
import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from utils.engine.checkpoint import CheckpointError, model_from_checkpoint, read_checkpoint
from utils.engine.foreign import ForeignCheckpointError, load_foreign
from utils.engine.unpickle import RestrictedUnpickler, UnsafePickleError

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = Path(os.environ.get("SMALLDET_FIXTURES") or ROOT.parent / "shared" / "fixtures")


def fixture(name: str) -> Path:
    path = FIXTURES / name
    if not path.is_file():
        pytest.skip(f"{path} not found (the shared checkpoint fixtures; set SMALLDET_FIXTURES)")
    return path


class _Payload:
    """Unpickling this calls os.system: the attack a checkpoint file can carry."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


class _EvalPayload:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return eval, (f"open({str(self.marker)!r}, 'w').close()",)


@pytest.mark.parametrize("payload", [_Payload, _EvalPayload])
def test_malicious_pickle_is_refused_and_never_run(tmp_path, payload):
    marker = tmp_path / "pwned"
    path = tmp_path / "yolov5s.pt"
    torch.save({"model": payload(marker), "epoch": 3}, path)  # a torch zip file, as the real ones are
    with pytest.raises(CheckpointError, match=r"refused to load global (posix|os|builtins|__builtin__)\.(system|eval)"):
        read_checkpoint(path)
    with pytest.raises(ForeignCheckpointError, match="refused"):
        load_foreign(path)
    assert not marker.exists()
    # the raw unpickler too, on a plain pickle stream
    with pytest.raises(UnsafePickleError):
        RestrictedUnpickler(io.BytesIO(pickle.dumps(payload(marker)))).load()
    assert not marker.exists()


def test_model_classes_become_inert_stubs():
    """A pickled 'models.common.C3' loads as a Stub holding its state, whatever its module would do on import."""
    # a stream naming a model class by hand: GLOBAL models.common C3, NEWOBJ, BUILD with {"n": 3}
    stream = (b"\x80\x02cmodels.common\nC3\n)\x81}(X\x01\x00\x00\x00nK\x03ub.")
    obj = RestrictedUnpickler(io.BytesIO(stream)).load()
    assert type(obj).__name__ == "C3" and obj.n == 3 and obj._qualname == "models.common.C3"
    with pytest.raises(UnsafePickleError, match="models.common._private"):
        RestrictedUnpickler(io.BytesIO(b"\x80\x02cmodels.common\n_private\n.")).load()


@pytest.mark.parametrize("protocol", [2, 4])
def test_numpy_values_of_unstripped_checkpoints_load(protocol):
    """A last.pt written mid-run keeps best_fitness and metrics as numpy values: allowed, rebuilt by numpy."""
    obj = {"best_fitness": np.array([0.3]), "fitness": np.float64(0.5), "n": np.int64(3), "b": b"\x00\xff",
           "o": np.array(["x", None], dtype=object)}
    out = RestrictedUnpickler(io.BytesIO(pickle.dumps(obj, protocol=protocol))).load()
    assert out["fitness"] == 0.5 and out["best_fitness"].tolist() == [0.3] and out["b"] == b"\x00\xff"
    assert out["o"].tolist() == ["x", None] and out["n"] == 3


def test_garbage_and_foreign_non_models_get_one_line_errors(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        read_checkpoint(bad)
    zf = tmp_path / "trunc.pt"
    with zipfile.ZipFile(zf, "w") as z:
        z.writestr("archive/data.pkl", b"\x80\x02}q\x00.")
    with pytest.raises(CheckpointError):
        read_checkpoint(zf)


def _their_output(name: str) -> np.ndarray:
    return np.load(fixture(f"{name}.output.npy"))


def _our_output(ckpt: dict) -> torch.Tensor:
    model = model_from_checkpoint(ckpt).eval()
    x = torch.from_numpy(np.load(fixture("input.npy"))).float() / 255
    with torch.no_grad():
        return model(x)


def test_yolov5_checkpoint_gives_the_originals_outputs():
    ck = read_checkpoint(fixture("yolov5n-shapes.pt"))
    assert ck["converted_from"]["code"] == "ultralytics/yolov5" and ck["converted_from"]["config"] == "yolov5.yaml"
    y = ck["model_yaml"]
    assert (y["depth_multiple"], y["width_multiple"], y["nc"]) == (0.33, 0.25, 4)
    assert ck["names"] == ["circle", "square", "triangle", "cross"]
    assert all(v.dtype != torch.float16 for v in ck["model"].values())
    ref = _their_output("yolov5n-shapes")  # (4, 4032, 9): xywh px, obj, cls
    ours = _our_output(ck).numpy()
    assert ours.shape == ref.shape
    np.testing.assert_allclose(ours[..., :4], ref[..., :4], rtol=0, atol=1e-3)  # pixels up to 256: fp32 rounding
    np.testing.assert_allclose(ours[..., 4:], ref[..., 4:], rtol=0, atol=1e-5)


def test_ultralytics_checkpoint_gives_the_originals_outputs():
    ck = read_checkpoint(fixture("yolov5nu-shapes.pt"))
    assert ck["converted_from"]["code"] == "Ultralytics" and ck["converted_from"]["config"] == "yolov5-dfl.yaml"
    ref = _their_output("yolov5nu-shapes").transpose(0, 2, 1)  # (4, 1344, 8): xywh px, class scores
    y = _our_output(ck)
    ours = torch.cat((y[..., :4], y[..., 4:5] * y[..., 5:]), -1).numpy()  # our column 4 is the best score
    assert ours.shape == ref.shape
    np.testing.assert_allclose(ours[..., :4], ref[..., :4], rtol=0, atol=1e-3)
    np.testing.assert_allclose(ours[..., 4:], ref[..., 4:], rtol=0, atol=1e-5)


def test_convert_cli_writes_a_plain_checkpoint(tmp_path):
    from utils.engine.convert import convert, main

    out = tmp_path / "y5n.pt"
    main([str(fixture("yolov5n-shapes.pt")), str(out)])
    ck = torch.load(out, weights_only=True)  # no pickled classes left
    assert ck["model_yaml"]["nc"] == 4 and ck["names"][0] == "circle"
    with pytest.raises(ForeignCheckpointError, match="already exists"):
        convert(fixture("yolov5n-shapes.pt"), out)


def test_unmappable_file_names_the_first_tensor_that_does_not_fit(tmp_path, monkeypatch):
    """A yolov5 checkpoint whose C3 has a tensor of another width: the error names that tensor."""
    import utils.engine.foreign as foreign
    from utils.engine.unpickle import restricted_load

    raw = restricted_load(fixture("yolov5n-shapes.pt"))
    conv = raw["model"].__dict__["_modules"]["model"].__dict__["_modules"]["8"].__dict__["_modules"]["cv1"]
    w = conv.__dict__["_modules"]["conv"].__dict__["_parameters"]["weight"]
    conv.__dict__["_modules"]["conv"].__dict__["_parameters"]["weight"] = torch.zeros(w.shape[0] + 1, *w.shape[1:])
    monkeypatch.setattr(foreign, "read_foreign", lambda path: raw)
    with pytest.raises(ForeignCheckpointError, match=r"tensor model\.8\.cv1\.conv\.weight \(129, 256, 1, 1\) "
                                                     r"does not fit our model\.8\.cv1\.conv\.weight"):
        load_foreign("edited.pt")


def test_other_model_kinds_are_named(monkeypatch):
    """A segmentation (or classification) checkpoint of their codes: refused with the class it holds."""
    import utils.engine.foreign as foreign
    from utils.engine.unpickle import stub_class

    seg = stub_class("models.yolo", "SegmentationModel")()
    monkeypatch.setattr(foreign, "read_foreign", lambda path: {"model": seg})
    with pytest.raises(ForeignCheckpointError, match=r"seg\.pt: not a smalldet.*it holds a models\.yolo\.Segmentation"):
        load_foreign("seg.pt")

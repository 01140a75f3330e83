"""utils/config.py: one precedence (flag > hyp file > data YAML defaults: > default), checked values."""
from __future__ import annotations

import pytest
import yaml

import train
from utils.config import FIELDS, TrainConfig, default_hyp, field_default, resolve


def _data(tmp_path, **defaults) -> dict:
    return {"yaml_file": str(tmp_path / "d.yaml"), "defaults": defaults}


def _hyp_file(tmp_path, **keys) -> str:
    p = tmp_path / "h.yaml"
    p.write_text(yaml.safe_dump({"lr0": 0.01, **keys}))
    return str(p)


def test_hyperparameter_precedence(tmp_path):
    base = default_hyp()
    # default.yaml alone
    assert resolve({}, _data(tmp_path)).hyp_values["cls"] == base["cls"]
    # data defaults: beat default.yaml
    assert resolve({}, _data(tmp_path, cls=2.0)).hyp_values["cls"] == 2.0
    # the hyp file beats the data defaults, for the keys it holds; others still come from the data YAML
    hyp = _hyp_file(tmp_path, cls=1.5)
    got = resolve({"hyp": hyp}, _data(tmp_path, cls=2.0, obj=0.7)).hyp_values
    assert (got["cls"], got["obj"], got["lr0"]) == (1.5, 0.7, 0.01)
    # --hyp-set beats everything
    got = resolve({"hyp": hyp, "hyp_set": ["cls=3"]}, _data(tmp_path, cls=2.0)).hyp_values
    assert got["cls"] == 3.0
    assert resolve({"label_smoothing": 0.1}, _data(tmp_path)).hyp_values["label_smoothing"] == 0.1
    assert set(got) == set(base)  # complete, no key added or lost


def test_run_setting_precedence(tmp_path):
    cfg = resolve({}, _data(tmp_path))
    assert (cfg.epochs, cfg.imgsz, cfg.batch_size) == (field_default("epochs"), field_default("imgsz"),
                                                       field_default("batch_size"))
    cfg = resolve({}, _data(tmp_path, epochs=7, imgsz=320))
    assert (cfg.epochs, cfg.imgsz) == (7, 320)
    cfg = resolve({"epochs": 3}, _data(tmp_path, epochs=7, imgsz=320))
    assert (cfg.epochs, cfg.imgsz) == (3, 320)


def test_optimizer_and_assigner_are_decided_once(tmp_path):
    hyp = _hyp_file(tmp_path, optimizer="AdamW", assigner="atss")
    cfg = resolve({"hyp": hyp}, _data(tmp_path))
    assert (cfg.optimizer, cfg.assigner) == ("AdamW", "atss")
    cfg = resolve({"hyp": hyp, "optimizer": "SGD", "assigner": "iou"}, _data(tmp_path))
    assert (cfg.optimizer, cfg.assigner, cfg.hyp_values["assigner"]) == ("SGD", "iou", "iou")
    assert resolve({}, _data(tmp_path)).assigner is None  # then the model YAML decides


@pytest.mark.parametrize("defaults, match", [
    ({"epoch": 3}, r"d\.yaml: defaults: unknown key 'epoch' \(did you mean 'epochs'\?\)"),
    ({"mosiac": 1.0}, r"d\.yaml: defaults: unknown key 'mosiac' \(did you mean 'mosaic'\?\)"),
    ({"imgsz": 16}, r"d\.yaml: defaults: imgsz: expected a whole number >= 32"),
    ({"fliplr": 2.0}, r"d\.yaml: defaults: fliplr: fliplr: 2.0 is outside \[0, 1\]"),
])
def test_data_defaults_are_checked(tmp_path, defaults, match):
    with pytest.raises(ValueError, match=match):
        resolve({}, _data(tmp_path, **defaults))


def test_flags_are_checked(tmp_path):
    with pytest.raises(ValueError, match="--epochs: expected a whole number >= 1"):
        resolve({"epochs": 0}, _data(tmp_path))
    with pytest.raises(ValueError, match="--optimizer: 'Adagrad' is not one of SGD, Adam, AdamW"):
        resolve({"optimizer": "Adagrad"}, _data(tmp_path))
    with pytest.raises(TypeError, match="unknown options"):
        resolve({"epohcs": 3}, _data(tmp_path))


def test_every_option_is_a_flag_with_its_one_default(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "300")  # one line per option in --help
    opt = train.parse_opt([])
    flags = set(vars(opt))
    assert flags == set(FIELDS) - {"save_dir"}
    assert all(v is None for v in vars(opt).values())  # unset: the config decides, not argparse
    with pytest.raises(SystemExit):
        train.parse_opt(["--help"])
    out = capsys.readouterr().out
    assert "(default: 'yolov5n.yaml')" in out and "(default: 100)" in out
    opt = train.parse_opt(["--img", "320", "--noval", "--hyp-set", "cls=2", "tile=0"])
    assert (opt.imgsz, opt.noval, opt.hyp_set) == (320, True, ["cls=2", "tile=0"])


def test_config_round_trips_through_a_checkpoint_dict(tmp_path):
    cfg = resolve({"epochs": 3, "name": "x"}, _data(tmp_path))
    again = TrainConfig(**cfg.as_dict(), hyp_values=cfg.hyp_values)
    assert again == cfg
    assert "hyp_values" not in cfg.as_dict()


def test_assigner_settings_owned_by_their_class_can_be_set(tmp_path):
    """iou_mode, atss_nwd, tal_alpha... keep their defaults on the assigner class; hyp files may set them."""
    got = resolve({"hyp_set": ["atss_nwd=true", "iou_mode=iou", "tal_beta=4"]}, _data(tmp_path)).hyp_values
    assert (got["atss_nwd"], got["iou_mode"], got["tal_beta"]) == (True, "iou", 4.0)
    assert "atss_nwd" not in resolve({}, _data(tmp_path)).hyp_values  # not set: the class default applies
    hyp = _hyp_file(tmp_path, atss_force_positive=False)
    assert resolve({"hyp": hyp}, _data(tmp_path)).hyp_values["atss_force_positive"] is False
    with pytest.raises(ValueError, match="atss_nwd: expected true or false, got 1"):
        resolve({"hyp_set": ["atss_nwd=1"]}, _data(tmp_path))
    with pytest.raises(ValueError, match="iou_mode: expected a name"):
        resolve({"hyp_set": ["iou_mode=3"]}, _data(tmp_path))

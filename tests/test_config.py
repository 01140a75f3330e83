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
    for bad in ("fit", "0", "-1", "5"):
        with pytest.raises(ValueError, match=r"--dfl-bin \(or auto\): expected a DFL bin width .* in \(0, 4\]"):
            resolve({"dfl_bin": bad}, _data(tmp_path))
    assert resolve({"dfl_bin": "0.5"}, _data(tmp_path)).dfl_bin == 0.5
    assert resolve({"dfl_bin": "auto"}, _data(tmp_path)).dfl_bin == "auto"
    assert resolve({}, _data(tmp_path)).dfl_bin is None
    with pytest.raises(ValueError, match="--reg-max: expected a whole number >= 2, got 1"):
        resolve({"reg_max": 1}, _data(tmp_path))


def test_every_option_is_a_flag_with_its_one_default(capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("COLUMNS", "300")  # one line per option in --help
    opt = train.parse_opt([])
    flags = set(vars(opt))
    assert flags == set(FIELDS) - {"save_dir", "data_hash"}  # set by the run, not flags
    assert all(v is None for v in vars(opt).values())  # unset: the config decides, not argparse
    with pytest.raises(SystemExit):
        train.parse_opt(["--help"])
    out = capsys.readouterr().out
    assert "(default: 'yolov5n.yaml')" in out and "(default: 100)" in out
    opt = train.parse_opt(["--img", "320", "--noval", "--hyp-set", "cls=2", "tile=0"])
    assert (opt.imgsz, opt.noval, opt.hyp_set) == (320, True, ["cls=2", "tile=0"])
    # a whole-number option without a default is still parsed as one, then checked by resolve
    opt = train.parse_opt(["--reg-max", "4", "--dfl-bin", "auto"])
    assert (opt.reg_max, opt.dfl_bin) == (4, "auto") and resolve(vars(opt), _data(tmp_path)).reg_max == 4


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


def test_recipe_auto_fills_tile_and_final_slicing_below_everything_set_by_hand(tmp_path):
    """--recipe auto stands at the data YAML defaults: level: it fills the hyp tile and the final validation's
    slice/overlap, and a flag, --hyp-set, hyp file or defaults: entry wins (per key), said in the notes."""
    from tests.data.test_recipe import write_coco
    data = write_coco(tmp_path, [(3200, 2400)] * 4, [(i % 4, 20, 20) for i in range(20)])  # tile 1.0, slice 640
    cfg = resolve({"imgsz": 640}, data)  # recipe none (the default): nothing changes
    assert (cfg.recipe, cfg.hyp_values["tile"], cfg.slice, cfg.overlap, cfg.recipe_notes) == \
        ("none", default_hyp()["tile"], 0, 0.2, [])
    cfg = resolve({"imgsz": 640, "recipe": "auto"}, data)
    assert (cfg.hyp_values["tile"], cfg.slice, cfg.overlap) == (1.0, 640, 0.1)
    notes = "\n".join(cfg.recipe_notes)
    assert "recipe at imgsz 640: tile 1.0, val/detect --slice 640 --overlap 0.1" in notes
    assert "5.0x > 1.5x" in notes and "100% under 16 px" in notes  # the reasons carry the numbers
    assert "used: hyp tile 1.0 (the recipe's)" in notes
    assert "used: final validation --slice 640 --overlap 0.1 (the recipe)" in notes
    # --hyp-set and flags win
    cfg = resolve({"imgsz": 640, "recipe": "auto", "hyp_set": ["tile=0"], "slice": 0}, data)
    assert (cfg.hyp_values["tile"], cfg.slice) == (0.0, 0)
    notes = "\n".join(cfg.recipe_notes)
    assert "used: hyp tile 0.0 from --hyp-set (the recipe's 1.0 is not used)" in notes
    assert "used: final validation whole image (--slice)" in notes
    cfg = resolve({"imgsz": 640, "recipe": "auto", "overlap": 0.3}, data)
    assert (cfg.slice, cfg.overlap) == (640, 0.3)
    assert "(--overlap, the rest the recipe's)" in cfg.recipe_notes[-1]
    # a hyp file that holds tile wins; one that does not leaves it to the recipe
    cfg = resolve({"imgsz": 640, "recipe": "auto", "hyp": _hyp_file(tmp_path, tile=0.5)}, data)
    assert cfg.hyp_values["tile"] == 0.5
    assert any("from --hyp" in n and "the recipe's 1.0 is not used" in n for n in cfg.recipe_notes)
    assert resolve({"imgsz": 640, "recipe": "auto", "hyp": _hyp_file(tmp_path)}, data).hyp_values["tile"] == 1.0
    # the data YAML's defaults: win over the recipe too
    cfg = resolve({"imgsz": 640, "recipe": "auto"}, {**data, "defaults": {"tile": 0.25, "slice": 800}})
    assert (cfg.hyp_values["tile"], cfg.slice, cfg.overlap) == (0.25, 800, 0.1)
    # the run's settings keep what was decided (opt.yaml, checkpoints, --resume)
    again = TrainConfig(**cfg.as_dict(), hyp_values=cfg.hyp_values)
    assert again == cfg


def test_recipe_p2_advice_never_changes_the_model(tmp_path):
    from tests.data.test_recipe import write_coco
    boxes = [(i % 3, 40, 40) for i in range(6)] + [(i % 3, 28, 28) for i in range(3)]  # a third 14 px at 320
    data = write_coco(tmp_path, [(640, 640)] * 3, boxes)
    cfg = resolve({"imgsz": 320, "recipe": "auto"}, data)
    assert (cfg.cfg, cfg.hyp_values["tile"], cfg.slice) == (field_default("cfg"), 0.0, 0)
    notes = "\n".join(cfg.recipe_notes)
    assert "P2 head advised" in notes and "--cfg yolov5n-p2-dfl.yaml" in notes
    assert f"used: --cfg {field_default('cfg')} as given" in notes


def test_slice_overlap_and_recipe_flags(tmp_path):
    opt = train.parse_opt(["--recipe", "auto", "--slice", "640", "--overlap", "0.25"])
    assert (opt.recipe, opt.slice, opt.overlap) == ("auto", 640, 0.25)
    with pytest.raises(ValueError, match=r"--overlap: expected a fraction in \[0.0, 0.9\], got 1.5"):
        resolve({"overlap": 1.5}, _data(tmp_path))
    with pytest.raises(ValueError, match="--slice: expected a whole number >= 0"):
        resolve({"slice": -1}, _data(tmp_path))
    with pytest.raises(ValueError, match="--recipe: 'yes' is not one of none, auto"):
        resolve({"recipe": "yes"}, _data(tmp_path))
    with pytest.raises(ValueError, match=r"d\.yaml: defaults: overlap: expected a fraction"):
        resolve({}, _data(tmp_path, overlap=2))


def test_train_prints_the_recipe_before_the_run_is_built(tmp_path, monkeypatch, caplog):
    import logging

    import utils.engine.build as build
    from tests.data.test_recipe import write_coco

    class Built(Exception):
        pass

    def stop(*args, **kwargs):
        raise Built

    write_coco(tmp_path, [(3200, 2400)] * 2, [(i % 2, 20, 20) for i in range(10)])
    monkeypatch.setattr(build, "build_run", stop)  # no run: only what main() prints before building it
    argv = ["--data", str(tmp_path / "data.yaml"), "--recipe", "auto", "--imgsz", "640", "--device", "cpu"]
    with caplog.at_level(logging.INFO, logger="smalldet"), pytest.raises(Built):
        train.main(train.parse_opt(argv))
    assert "recipe at imgsz 640: tile 1.0, val/detect --slice 640 --overlap 0.1" in caplog.text
    assert "5.0x > 1.5x" in caplog.text and "used: hyp tile 1.0 (the recipe's)" in caplog.text

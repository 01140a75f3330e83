"""One owner for each default (issue 39): TrainConfig's fields (run settings), configs/hyps/default.yaml
(hyperparameters) and each assigner class's optional_hyp. The engine and train.py read the resolved
TrainConfig and never write a default of their own; the repository root is written once (utils/paths.py)."""
from __future__ import annotations

import argparse
import ast
import dataclasses

import pytest

import train
from utils.checkpoints.checkpoint import save_checkpoint
from utils.config import FIELDS, TrainConfig, default_hyp, field_default, optional_hyp
from utils.paths import ROOT

# the code that reads a run's settings: it must take their values from the TrainConfig, not default them
READERS = sorted((ROOT / "utils" / "engine").glob("*.py")) + [ROOT / "train.py"]
# parameters named like a config key that mean something else there: autoanchor's k-means seed is fixed
# (YOLOv5's), not the run's --seed
OTHER_MEANING = {"seed"}


def config_keys() -> set[str]:
    return ({f.name for f in dataclasses.fields(TrainConfig)} | set(default_hyp()) | set(optional_hyp()))


def _literal(node: ast.AST | None) -> bool:
    """A value written in the source: 100, -1, 'SGD', None, (1, 2), [..], {..} of such."""
    if isinstance(node, ast.Constant):
        return True
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        return _literal(node.operand)
    if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
        return all(_literal(e) for e in node.elts)
    return False


def _key(node: ast.AST) -> str | None:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


def literal_defaults(source: str, keys: set[str]) -> list[tuple[int, str]]:
    """(line, code) of each place in source that writes a default for one of keys:
    x.get(KEY, lit), x.pop(KEY, lit), x.setdefault(KEY, lit), getattr(x, KEY, lit), a parameter KEY=lit
    (not None: 'not given'), {KEY: lit} (not an optimizer's param group, whose 'weight_decay': 0.0 is that
    group's own setting) and argparse's add_argument(..., default=lit) (not None)."""
    found = []
    for n in ast.walk(ast.parse(source)):
        hit = False
        if isinstance(n, ast.Call):
            f = n.func
            if isinstance(f, ast.Attribute) and f.attr in ("get", "pop", "setdefault") and len(n.args) == 2:
                hit = _key(n.args[0]) in keys and _literal(n.args[1])
            elif isinstance(f, ast.Name) and f.id == "getattr" and len(n.args) == 3:
                hit = _key(n.args[1]) in keys and _literal(n.args[2])
            if isinstance(f, ast.Attribute) and f.attr == "add_argument":
                hit = hit or any(k.arg == "default" and _literal(k.value) and
                                 not (isinstance(k.value, ast.Constant) and k.value.value is None) for k in n.keywords)
        elif isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            a = n.args
            pos = a.posonlyargs + a.args
            pairs = [*zip(pos[len(pos) - len(a.defaults):], a.defaults), *zip(a.kwonlyargs, a.kw_defaults)]
            hit = any(arg.arg in keys and arg.arg not in OTHER_MEANING and _literal(d)
                      and not (isinstance(d, ast.Constant) and d.value is None) for arg, d in pairs)
        elif isinstance(n, ast.Dict) and "params" not in map(_key, n.keys):  # not a torch param group
            hit = any(_key(k) in keys and _literal(v) for k, v in zip(n.keys, n.values) if k is not None)
        if hit:
            found.append((n.lineno, ast.unparse(n)[:100]))
    return found


def test_the_engine_and_train_py_write_no_default_of_a_setting():
    keys = config_keys()
    found = [f"{p.relative_to(ROOT)}:{line}: {code}" for p in READERS for line, code in
             literal_defaults(p.read_text(), keys)]
    assert not found, ("defaults written outside their owner (TrainConfig / configs/hyps/default.yaml); read "
                       "the resolved TrainConfig instead:\n" + "\n".join(found))


@pytest.mark.parametrize("code", [
    'patience = self.opt.get("patience", 100) or math.inf',
    'nbs = int(hyp.get("nbs", 64))',
    'x = getattr(opt, "save_period", -1)',
    'hyp.setdefault("grad_clip", 10.0)',
    'def step(model, momentum=0.937): ...',
    'def f(*, imgsz: int = 640): ...',
    'OPT = {"epochs": 3, "batch_size": 2}',
    'p.add_argument("--epochs", type=int, default=100)',
])
def test_a_reintroduced_duplicate_is_found(code):
    assert literal_defaults(code, config_keys())


@pytest.mark.parametrize("code", [
    'patience = self.cfg.patience or math.inf',
    'n = hyp.get("nbs")',  # a lookup, no default written
    'x = getattr(loss_fn, "item_names", ("box", "obj", "cls"))',  # not a setting
    'def f(model, reg_max: int | None = None): ...',  # None: not given
    'def kmeans(wh, seed: int = 0): ...',  # OTHER_MEANING
    'opt.add_param_group({"params": norms, "weight_decay": 0.0})',
    'p.add_argument("--epochs", type=int, default=None)',
])
def test_reading_a_setting_is_not_a_duplicate(code):
    assert not literal_defaults(code, config_keys())


def test_each_default_has_one_owner():
    hyp, extra = default_hyp(), optional_hyp()
    # a run setting that is also a hyperparameter (label_smoothing) only overrides it: its field default must
    # be None ("not given"), or the two files would each hold a default for it
    both = sorted(set(FIELDS) & (set(hyp) | set(extra)))
    assert both, "the check below would check nothing"
    assert {k: field_default(k) for k in both} == dict.fromkeys(both), both
    # the assigner classes own their optional keys: default.yaml must not repeat them
    assert not set(extra) & set(hyp)
    from utils.assign import ASSIGNERS
    owners = [k for cls in ASSIGNERS.values() for k in cls.optional_hyp]
    assert len(owners) == len(set(owners)), "an optional hyperparameter owned by two assigner classes"


def test_the_repository_root_is_written_once():
    """utils/paths.ROOT; the benchmarks' scripts compute it to put the project on sys.path before any import."""
    files = [*ROOT.glob("*.py"), *(ROOT / "utils").rglob("*.py"), *(ROOT / "models").rglob("*.py")]
    found = []
    for p in files:
        for n in ast.walk(ast.parse(p.read_text())):
            if isinstance(n, ast.Name) and n.id == "__file__" and p != ROOT / "utils" / "paths.py":
                found.append(f"{p.relative_to(ROOT)}:{n.lineno}")
    assert not found, f"use utils.paths.ROOT: {found}"


def test_from_dict_fills_what_saved_settings_leave_out_from_the_owner(tmp_path):
    cfg = TrainConfig.from_dict({"epochs": 3, "save_dir": str(tmp_path)}, {"lr0": 0.02})
    assert cfg.patience == field_default("patience") and cfg.epochs == 3
    assert cfg.hyp_values == {**default_hyp(), "lr0": 0.02}
    assert cfg.optimizer == "SGD"  # resolved as a new run's: the hyp names none
    assert TrainConfig.from_dict({}, {"optimizer": "AdamW"}).optimizer == "AdamW"
    with pytest.raises(TypeError, match="unknown run settings.*pateince"):
        TrainConfig.from_dict({"pateince": 3})


def test_resume_of_an_older_run_takes_new_keys_from_their_owner(tmp_path):
    """A checkpoint saved before a setting or hyperparameter existed: --resume goes on with its default."""
    run = tmp_path / "old"
    saved = {k: v for k, v in TrainConfig(epochs=5, patience=7, save_dir=str(run)).as_dict().items()
             if k not in ("save_period", "recipe")}  # keys that an older version did not have
    hyp = {k: v for k, v in default_hyp().items() if k not in ("grad_clip", "close_mosaic")}
    hyp["lr0"] = 0.02
    last = run / "weights" / "last.pt"
    last.parent.mkdir(parents=True)
    save_checkpoint({"model": {}, "model_yaml": {}, "raw_model": {}, "optimizer": {}, "epoch": 1,
                     "opt": saved, "hyp": hyp}, last)
    opt = argparse.Namespace(**{**dict.fromkeys(FIELDS), "resume": str(run)})
    cfg, _ = train._resumed_config(opt)
    assert (cfg.epochs, cfg.patience, cfg.save_dir) == (5, 7, str(run))
    assert cfg.save_period == field_default("save_period") and cfg.recipe == field_default("recipe")
    assert cfg.hyp_values == {**default_hyp(), "lr0": 0.02}


def test_the_trainer_takes_its_run_folder_from_the_config():
    import torch

    from utils.engine.trainer import Trainer
    with pytest.raises(ValueError, match="cfg.save_dir is empty"):  # else it would write weights/ into the cwd
        Trainer(torch.nn.Conv2d(3, 4, 1), None, [], None, TrainConfig.from_dict({}), torch.device("cpu"))


def test_resume_may_change_what_only_changes_speed(tmp_path):
    """--cache (like --device and --workers) changes no batch and no weight: a run that ran out of memory
    with the default cache resumes with --cache none; a setting that changes training is still refused."""
    run = tmp_path / "r"
    last = run / "weights" / "last.pt"
    last.parent.mkdir(parents=True)
    save_checkpoint({"model": {}, "model_yaml": {}, "raw_model": {}, "optimizer": {}, "epoch": 1,
                     "opt": TrainConfig(epochs=5, save_dir=str(run)).as_dict(), "hyp": default_hyp()}, last)
    opt = argparse.Namespace(**{**dict.fromkeys(FIELDS), "resume": str(run), "cache": "none", "workers": 0})
    cfg, _ = train._resumed_config(opt)
    assert (cfg.cache, cfg.workers, cfg.epochs) == ("none", 0, 5)
    opt.epochs = 9
    with pytest.raises(ValueError, match="--epochs 9"):
        train._resumed_config(opt)

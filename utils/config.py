"""The settings of a training run, resolved once with one precedence and checked once.

Two kinds of setting, each with one owner for its defaults:
- run settings (the train.py flags: data, model, epochs, imgsz, ...): the fields of TrainConfig below;
- hyperparameters (learning rate, loss gains, augmentation, ...): configs/hyps/default.yaml, which owns
  the set of keys and their defaults. A key it lacks is a typo (the run would silently train with the
  default), so it is an error naming the file and the key.

Precedence, the same for both kinds: command-line flag (or train.run keyword, --hyp-set) > hyp file
(--hyp) > the data YAML's `defaults:` block > the default. resolve() applies it and returns a checked
TrainConfig whose `hyp` is a complete dict. With --recipe auto, the recipe (utils/data/recipe.py) fills the
hyp `tile` and the final validation's --slice / --overlap at the level just below the data YAML's `defaults:`.
"""
from __future__ import annotations

import dataclasses
import difflib
import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from utils.paths import ROOT

if TYPE_CHECKING:
    from utils.data.recipe import Recipe

DEFAULT_HYP = ROOT / "configs" / "hyps" / "default.yaml"
TEXT_KEYS = {"optimizer", "assigner"}  # the only non-numeric keys a hyp file may hold
# probabilities and fractions; every other numeric key must be >= 0
UNIT = {"hsv_h", "hsv_s", "hsv_v", "translate", "flipud", "fliplr", "mosaic", "mixup", "copy_paste", "tile",
        "nwd", "label_smoothing", "momentum", "warmup_momentum", "iou_t", "crowd_ignore"}
POSITIVE = {"lr0", "nbs", "atss_topk", "tal_topk", "anchor_t", "nwd_c", "grad_clip"}
OPTIMIZERS = ("SGD", "Adam", "AdamW")
ASSIGNERS = ("iou", "atss", "tal")
RECIPES = ("none", "auto")
FREEZE_PARTS = ("backbone", "neck", "head")  # --freeze by name: the YAML's backbone, its head less Detect, Detect
FRACTIONS = {"overlap": (0.0, 0.9)}  # float run settings, their range (windows must advance: < 1)


def _opt(default: Any, help: str = "", least: int | None = None, choices: tuple | None = None,
         flag: str | None = None) -> Any:
    """A TrainConfig field: its default, its --help text and its check, written once."""
    return field(default=default, metadata={"help": help, "least": least, "choices": choices, "flag": flag})


@dataclass
class TrainConfig:
    """Every train.py option (flag --batch-size is field batch_size) and its default."""
    data: str = _opt("data/shapes.yaml", "data YAML (the demo set by default)")
    cfg: str = _opt("yolov5n.yaml", "model YAML, e.g. yolov5s-spd.yaml")
    weights: str = _opt("", "initial weights (.pt) to fine-tune from")
    hyp: str = _opt("", f"hyperparameter YAML (keys it leaves out: data YAML defaults:, then {DEFAULT_HYP.name})")
    epochs: int = _opt(100, "epochs (a data YAML's defaults: comes first)", least=1)
    batch_size: int = _opt(16, "total batch size over all processes (a data YAML's defaults: comes first)", least=1)
    imgsz: int = _opt(640, "train/val image size in pixels (a data YAML's defaults: comes first)", least=32,
                      flag="--imgsz --img")
    device: str = _opt("", "cuda device (0 or 0,1) or cpu")
    workers: int = _opt(2, "dataloader workers per process", least=0)
    project: str = _opt("runs/train")
    name: str = _opt("exp")
    exist_ok: bool = _opt(False, "reuse project/name instead of incrementing")
    resume: Any = _opt(False, "resume the latest run, a run dir or a last.pt")
    patience: int = _opt(100, "early stop after this many epochs without improvement", least=0)
    cache: Any = _opt("auto", "decode each image once: --cache (ram) keeps them in RAM, --cache disk as memory-mapped "
                              "files under $SMALLDET_CACHE or ~/.cache/smalldet, auto in RAM when they take <= 1/4 of "
                              "the free memory, none decodes every time (docs/loader.md)")
    optimizer: str | None = _opt(None, "the hyp's optimizer: if it names one, else SGD", choices=OPTIMIZERS)
    cos_lr: bool = _opt(False, "cosine LR schedule")
    label_smoothing: float | None = _opt(None, "overrides the hyp's label_smoothing")
    freeze: int | str = _opt(0, "freeze the first N layers, or parts by name: backbone, neck, head (comma-separated)")
    single_cls: bool = _opt(False, "train all classes as one")
    multi_scale: bool = _opt(False, "vary image size +/- 50%%")
    seed: int = _opt(0)
    save_period: int = _opt(-1, "also save weights every N epochs")
    sync_bn: bool = _opt(False, "SyncBatchNorm under DDP")
    assigner: str | None = _opt(None, "override the hyp's and the model YAML's assigner (atss: either head, the "
                                      "anchor configs' default; iou: anchor head, YOLOv5's rule; tal: DetectDFL, "
                                      "its default)", choices=ASSIGNERS)
    dfl_bin: float | str | None = _opt(None, "DetectDFL heads: grid cells per DFL bin, a number or auto (fitted "
                                             "to the train split's box sizes, utils/data/recipe.py); default "
                                             "the model YAML's dfl_bin")
    reg_max: int | None = _opt(None, "DetectDFL heads: DFL bins per box side (default the model YAML's reg_max, 16)",
                               least=2)
    noautoanchor: bool = _opt(False, "keep the config's anchors")
    noplots: bool = _opt(False)
    no_amp: bool = _opt(False, "disable mixed precision on CUDA")
    data_root: str | None = _opt(None, "folder holding the data sets (overrides the data YAML)")
    noval: bool = _opt(False, "validate only after the last epoch (best.pt = last.pt)")
    slice: int = _opt(0, "final validation of best.pt in windows of this many px, as val.py --slice "
                         "(0 = whole image; per-epoch validation stays whole-image)", least=0)
    overlap: float = _opt(0.2, "window overlap fraction for --slice")
    recipe: str = _opt("none", "auto: pick the hyp tile and the final --slice/--overlap from the train split's "
                               "image and box sizes (utils/data/recipe.py) where no flag, --hyp-set, hyp file "
                               "or data YAML defaults: sets them", choices=RECIPES)
    hyp_set: list | None = _opt(None, "override hyperparameters, e.g. --hyp-set tile=0 nwd=1.0")
    save_dir: str = _opt("", "set by the run (its folder); not a flag", flag="")
    data_hash: str = _opt("", "set by the run: sha256 of its annotation files, checked by --resume; not a flag",
                          flag="")
    hyp_values: dict = field(default_factory=dict, metadata={"flag": "", "help": ""})  # resolved hyperparameters
    # what --recipe auto decided, why, and what was used: printed at the start, kept in opt.yaml
    recipe_notes: list = field(default_factory=list, metadata={"flag": "", "help": ""})

    def as_dict(self) -> dict[str, Any]:
        """The run settings as plain values (for opt.yaml and checkpoints), without the hyperparameters."""
        return {k: v for k, v in dataclasses.asdict(self).items() if k != "hyp_values"}

    @classmethod
    def from_dict(cls, settings: dict[str, Any], hyp: dict[str, Any] | None = None) -> TrainConfig:
        """Saved or hand-made settings (a checkpoint's opt and hyp, a test's few keys) -> a TrainConfig. What
        they leave out comes from its one owner: a field's default here, a hyperparameter's in default.yaml
        (a run saved before a key existed resumes with that default); the optimizer is resolved as a new
        run's is. Unknown run settings are an error naming them."""
        unknown = set(settings) - {f.name for f in dataclasses.fields(cls)} - {"hyp_values"}
        if unknown:
            raise TypeError(f"unknown run settings {sorted(unknown)}")
        hyp_values = {**default_hyp(), **(hyp or {})}
        cfg = cls(**settings, hyp_values=hyp_values)
        cfg.optimizer = resolve_optimizer(cfg.optimizer, hyp_values, cfg.hyp or DEFAULT_HYP.name)
        return cfg


NOT_OPTIONS = ("hyp_values", "recipe_notes")  # filled by resolve(), never given
FIELDS = {f.name: f for f in dataclasses.fields(TrainConfig) if f.name not in NOT_OPTIONS}
# the run settings a data YAML's defaults: may give
RUN_DATA_KEYS = ("epochs", "batch_size", "imgsz", "slice", "overlap")


def field_default(name: str) -> Any:
    return FIELDS[name].default


# ------------------------------------------------------------------ hyperparameters
@functools.lru_cache(maxsize=1)
def _default_hyp_text() -> str:
    return DEFAULT_HYP.read_text()


def default_hyp() -> dict[str, Any]:
    """A fresh dict of configs/hyps/default.yaml (read from disk once per process)."""
    return yaml.safe_load(_default_hyp_text())


def did_you_mean(key: str, choices: Any) -> str:
    """' (did you mean 'mosaic'?)' for a near miss among choices, else ''."""
    close = difflib.get_close_matches(key, list(choices), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def optional_hyp() -> dict[str, Any]:
    """Assigner settings that default.yaml leaves out (iou_mode, atss_nwd, tal_alpha, ...): each assigner
    class owns its own defaults (``optional_hyp``); a hyp file or --hyp-set may still set them."""
    from utils.assign import ASSIGNERS

    return {k: v for cls in ASSIGNERS.values() for k, v in cls.optional_hyp.items()}


def _known_keys() -> dict[str, Any]:
    return {**optional_hyp(), **default_hyp()}


def check_value(key: str, value: Any, default: Any, where: str) -> Any:
    """The value for key, as a number of the default's type, or a ValueError naming where and key."""
    if key in TEXT_KEYS or isinstance(default, str):
        if not isinstance(value, str):
            raise ValueError(f"{where}: {key}: expected a name, got {value!r}")
        return value
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ValueError(f"{where}: {key}: expected true or false, got {value!r}")
        return value
    if isinstance(value, str):  # YAML 1.1 reads 1e-3 (no dot) as a string
        try:
            value = float(value)
        except ValueError:
            raise ValueError(f"{where}: {key}: expected a number, got {value!r}") from None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{where}: {key}: expected a number, got {value!r}")
    if isinstance(default, int) and not isinstance(default, bool):
        if value != int(value):
            raise ValueError(f"{where}: {key}: expected a whole number, got {value!r}")
        value = int(value)
    else:
        value = float(value)
    if key in UNIT and not 0 <= value <= 1:
        raise ValueError(f"{where}: {key}: {value} is outside [0, 1]")
    if key in POSITIVE and not value > 0:
        raise ValueError(f"{where}: {key}: {value} must be > 0")
    if value < 0:
        raise ValueError(f"{where}: {key}: {value} must be >= 0")
    return value


def _known(key: str, known: Any, where: str) -> None:
    if key not in known and key not in TEXT_KEYS:
        raise ValueError(f"{where}: unknown hyperparameter {key!r}{did_you_mean(key, known)}; the known ones are "
                         f"in {DEFAULT_HYP.name}")


def repo_path(path: str) -> str:
    """A relative path that does not exist from here is looked up from the repo root, so the
    CLIs work from any working directory."""
    p = Path(path)
    return str(ROOT / p) if path and not p.exists() and (ROOT / p).exists() else path


def read_hyp_file(path: str) -> dict[str, Any]:
    """A hyp YAML as written (not completed), checked; errors name the file."""
    p = Path(repo_path(path))
    try:
        raw = yaml.safe_load(p.read_text())
    except FileNotFoundError:
        raise ValueError(f"--hyp {path}: file not found") from None
    except yaml.YAMLError as e:
        raise ValueError(f"--hyp {path}: malformed YAML: {e}") from None
    if not isinstance(raw, dict) or "lr0" not in raw:
        raise ValueError(f"--hyp {path}: expected a mapping with at least lr0")
    known = _known_keys()
    for key in raw:
        _known(key, known, f"--hyp {path}")
    return {k: check_value(k, v, known.get(k), f"--hyp {path}") for k, v in raw.items()}


def load_hyp(path: str) -> dict[str, Any]:
    """Hyperparameter YAML -> a complete, checked dict, with errors that name the file."""
    return {**default_hyp(), **read_hyp_file(path)}


def parse_hyp_set(items: list[str], hyp: dict[str, Any], source: str) -> dict[str, Any]:
    """['tile=0', 'nwd=1.0'] -> {'tile': 0.0, 'nwd': 1.0}; keys must exist in the hyp file (typos fail
    loudly instead of training with a setting nobody reads), values are checked like the file's."""
    out = {}
    known = {**optional_hyp(), **hyp}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--hyp-set {item!r}: expected KEY=VALUE")
        if key not in known:
            raise ValueError(f"--hyp-set {item!r}: {source} has no hyperparameter {key!r} "
                             f"(known: {', '.join(sorted(known))})")
        out[key] = check_value(key, yaml.safe_load(value), known[key], f"--hyp-set {item!r}")
    return out


def resolve_optimizer(flag: str | None, hyp: dict[str, Any], hyp_path: str) -> str:
    """--optimizer if given, else the hyp's `optimizer:` (a file tuned for one optimizer's lr0, such as
    small-objects-dfl.yaml, names it), else SGD."""
    name = flag or hyp.get("optimizer") or "SGD"
    if name not in OPTIMIZERS:
        raise ValueError(f"--hyp {hyp_path}: optimizer {name!r}: choose SGD, Adam or AdamW")
    return name


# ------------------------------------------------------------------ one resolution
def _check_run_value(name: str, value: Any, source: str) -> Any:
    meta = FIELDS[name].metadata
    least, choices = meta["least"], meta["choices"]
    if least is not None and value is not None and (isinstance(value, bool) or not isinstance(value, int)
                                                    or value < least):
        raise ValueError(f"{source}: expected a whole number >= {least}, got {value!r}")
    if choices and value is not None and value not in choices:
        raise ValueError(f"{source}: {value!r} is not one of {', '.join(choices)}")
    if name == "freeze":
        value = check_freeze(value, source)
    if name == "dfl_bin" and value is not None and value != "auto":
        from models.head import check_bin_width
        value = check_bin_width(value, f"{source} (or auto)")
    if name in FRACTIONS:
        lo, hi = FRACTIONS[name]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not lo <= value <= hi:
            raise ValueError(f"{source}: expected a fraction in [{lo}, {hi}], got {value!r}")
        value = float(value)
    return value


def check_freeze(value: Any, source: str) -> int | str:
    """--freeze: a layer count (>= 0), or comma-separated part names (FREEZE_PARTS), normalised."""
    text = str(value).strip()
    if not isinstance(value, bool) and text.isdigit():
        return int(text)
    parts = [p.strip() for p in text.split(",") if p.strip()]
    bad = [p for p in parts if p not in FREEZE_PARTS]
    if isinstance(value, bool) or not parts or bad:
        raise ValueError(f"{source}: expected a layer count or part names ({', '.join(FREEZE_PARTS)}), got {value!r}")
    return ",".join(parts)


def split_data_defaults(data: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """A data YAML's `defaults:` -> (run settings, hyperparameters); any other key is an error naming it."""
    hints = dict(data.get("defaults") or {})
    where = f"{data.get('yaml_file', 'data YAML')}: defaults:"
    known_hyp = _known_keys()
    run, hyp = {}, {}
    for k, v in hints.items():
        if k in RUN_DATA_KEYS:
            run[k] = _check_run_value(k, v, f"{where} {k}")
        elif k in known_hyp or k in TEXT_KEYS:
            hyp[k] = check_value(k, v, known_hyp.get(k), f"{where} {k}")
        else:
            hint = did_you_mean(k, [*RUN_DATA_KEYS, *known_hyp])
            raise ValueError(f"{where} unknown key {k!r}{hint}; it may hold {', '.join(RUN_DATA_KEYS)} and the "
                             f"hyperparameters of {DEFAULT_HYP.name}")
    return run, hyp


def _recipe_notes(recipe: Recipe, values: dict[str, Any], hyp: dict[str, Any], tile_from: str,
                  slice_from: str) -> list[str]:
    """What --recipe auto decided and why, then what the run uses and from where (a hand-set value wins)."""
    notes = recipe.summary().splitlines()
    if tile_from:
        agree = "agrees" if hyp["tile"] == recipe.tile else f"{recipe.tile} is not used"
        notes.append(f"used: hyp tile {hyp['tile']} from {tile_from} (the recipe's {agree})")
    else:
        notes.append(f"used: hyp tile {hyp['tile']} (the recipe's)")
    final = f"--slice {values['slice']} --overlap {values['overlap']}" if values["slice"] else "whole image"
    notes.append(f"used: final validation {final} ({slice_from or 'the recipe'})")
    if recipe.p2:
        notes.append(f"used: --cfg {values['cfg']} as given: the P2 advice is printed, never applied (a P2-P5 "
                     f"model trains about 2x slower)")
    return notes


def resolve(given: dict[str, Any], data: dict[str, Any]) -> TrainConfig:
    """Options given on the command line or to train.run (None = not given) + the data YAML -> TrainConfig.

    Run settings: flag > data YAML defaults: > (--recipe auto: slice, overlap) > field default.
    Hyperparameters: --hyp-set and --label-smoothing > --hyp file > data YAML defaults: > (--recipe auto:
    tile) > default.yaml."""
    unknown = set(given) - set(FIELDS)
    if unknown:
        raise TypeError(f"unknown options {sorted(unknown)}")
    data_run, data_hyp = split_data_defaults(data)
    where = f"{data.get('yaml_file', 'data YAML')}: defaults:"
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}  # name -> where a value given by hand came from
    for name in FIELDS:
        v = given.get(name)
        source = f"--{name.replace('_', '-')}"
        if v is None and name in data_run:
            v, source = data_run[name], f"{where} {name}"
        if v is None:
            v, source = field_default(name), ""
        values[name] = _check_run_value(name, v, source or f"--{name.replace('_', '-')}")
        sources[name] = source
    if values["weights"] and not sources["cfg"]:
        values["cfg"] = ""  # --weights alone: the checkpoint's own architecture (as YOLOv5's train.py)
    recipe = None
    if values["recipe"] == "auto":
        from utils.data.recipe import decide  # reads the train json: sizes only, well under a second
        recipe = decide(data, values["imgsz"])
        # The recipe is a guess from the data, so it stands just below the data YAML's defaults: and fills
        # only what nobody set by hand (per key); a flag, --hyp-set, hyp file or defaults: entry wins.
        for name in ("slice", "overlap"):
            if not sources[name] and recipe.slice:
                values[name] = getattr(recipe, name)
    hyp = {**default_hyp(), **({"tile": recipe.tile} if recipe else {}), **data_hyp}
    hyp_file = read_hyp_file(values["hyp"]) if values["hyp"] else {}
    hyp.update(hyp_file)
    hyp_set = parse_hyp_set(values["hyp_set"], hyp, values["hyp"] or DEFAULT_HYP.name) if values["hyp_set"] else {}
    hyp.update(hyp_set)
    if values["label_smoothing"] is not None:
        hyp["label_smoothing"] = check_value("label_smoothing", values["label_smoothing"], 0.0, "--label-smoothing")
    values["optimizer"] = resolve_optimizer(values["optimizer"], hyp, values["hyp"] or DEFAULT_HYP.name)
    if values["assigner"] is None and hyp.get("assigner"):
        values["assigner"] = _check_run_value("assigner", hyp["assigner"], f"--hyp {values['hyp']}: assigner")
    elif values["assigner"] is not None and "assigner" in hyp:
        hyp["assigner"] = values["assigner"]  # the flag wins everywhere the hyp is read (the losses)
    notes = []
    if recipe:
        tile_from = ("--hyp-set" if "tile" in hyp_set else f"--hyp {values['hyp']}" if "tile" in hyp_file
                     else f"{where} tile" if "tile" in data_hyp else "")
        # whole image: only --slice's source matters (an overlap means nothing without windows)
        by_hand = [sources[n] for n in (("slice", "overlap") if values["slice"] else ("slice",)) if sources[n]]
        rest = len(by_hand) == 1 and recipe.slice and values["slice"]
        slice_from = " and ".join(by_hand) + (", the rest the recipe's" if rest else "")
        notes = _recipe_notes(recipe, values, hyp, tile_from, slice_from)
    return TrainConfig(**values, hyp_values=hyp, recipe_notes=notes)

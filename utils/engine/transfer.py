"""Start a model from another model's weights (train.py --weights with another --cfg or class count).

Layers are paired by what they compute, not by index, so that a model with layers inserted (a P2-P5 model
from a P3-P5 checkpoint) still finds its backbone and neck:
1. a layer pairs with the source layer that computes the same thing from the image: same module, args and
   repeats, fed by paired layers (the backbone, and the neck up to the first changed layer);
2. walking back from the detect head, each level's input pairs with the source level of the same stride, and
   their inputs pair in turn while the modules agree (the bottom-up path of the neck that a P2 level shifts);
3. head levels pair by stride; a level the source lacks (stride 4) starts from the source's finest level (P3).
Every tensor of a paired layer whose shape fits is copied; the rest keep the new model's initialisation, and
the report says which were left out and why.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from models.yolo import Model


@dataclass
class TransferReport:
    """What transfer() copied: counts, and for each tensor left out, its reason."""
    copied: list[str] = field(default_factory=list)
    left_out: dict[str, str] = field(default_factory=dict)  # our tensor -> why it keeps its new initialisation
    unused: list[str] = field(default_factory=list)         # source tensors no layer of ours took
    total: int = 0

    def summary(self, source: str, show: int = 12) -> str:
        """'transferred N/M tensors from X', then what was left out and why: a line per layer, or per tensor
        where only some of a layer's tensors were left out (a shape that changed with the class count)."""
        lines = [f"transferred {len(self.copied)}/{self.total} tensors from {source}"]
        if self.left_out:
            kinds = Counter(r.split(":")[0] for r in self.left_out.values())
            lines.append("left out, so initialised as in a new model: " +
                         ", ".join(f"{n} ({k})" for k, n in kinds.most_common()))
            by_layer: dict[str, list[str]] = {}
            for name in self.left_out:
                by_layer.setdefault(".".join(name.split(".")[:2]), []).append(name)
            rows = []
            for layer, names in by_layer.items():
                reasons = {self.left_out[n] for n in names}
                if len(reasons) == 1 and not next(iter(reasons)).startswith("shape"):
                    rows.append(f"  {layer} ({len(names)} tensors): {reasons.pop()}")
                else:
                    rows += [f"  {n}: {self.left_out[n]}" for n in names]
            lines += rows[:show] + ([f"  ... and {len(rows) - show} more"] if len(rows) > show else [])
        if self.unused:
            lines.append(f"not used from the source: {len(self.unused)} tensors (e.g. {', '.join(self.unused[:3])})")
        return "\n".join(lines)

def _froms(row: dict) -> list[int]:
    f = row["f"]
    return [x if x >= 0 else row["i"] + x for x in (f if isinstance(f, list) else [f])]


def _signatures(model: Model) -> list[Any]:
    """Per layer, a value equal for two layers that compute the same function of the image (up to width/depth)."""
    sigs: list[Any] = []
    for row in model.table:
        inputs = tuple("image" if x < 0 else sigs[x] for x in _froms(row)) if row["i"] else ("image",)
        sigs.append((row["module"], repr(row["args"]), row["n"], inputs))
    return sigs


def pair_layers(model: Model, src: Model) -> dict[int, int]:
    """Our layer index -> the source layer index it starts from (the detect head included)."""
    ours, theirs = _signatures(model), _signatures(src)
    by_sig = {s: j for j, s in enumerate(theirs[:-1])}
    pairs = {i: by_sig[s] for i, s in enumerate(ours[:-1]) if s in by_sig}
    # walk back from each head input to the source's head input of the same stride
    mine, other = model.table, src.table
    stack = []
    levels = _strides(src)
    for k, s in enumerate(_strides(model)):
        if s in levels:
            stack.append((_froms(mine[-1])[k], _froms(other[-1])[levels.index(s)]))
    while stack:
        i, j = stack.pop()
        if i in pairs or mine[i]["module"] != other[j]["module"]:
            continue
        pairs[i] = j
        fi, fj = _froms(mine[i]), _froms(other[j])
        if len(fi) == len(fj):
            stack.extend(zip(fi, fj))
    pairs[len(mine) - 1] = len(other) - 1
    return pairs


def _level_pairs(model: Model, src: Model) -> dict[int, int]:
    """Our head level -> the source level: same stride, else the source's finest (a new P2 level from P3)."""
    theirs = _strides(src)
    finest = theirs.index(min(theirs))
    return {k: theirs.index(s) if s in theirs else finest for k, s in enumerate(_strides(model))}


def _strides(model: Model) -> list[int]:
    return [round(s) for s in model.stride.tolist()]


def _head_name(rest: str, levels: dict[int, int]) -> str | None:
    """'m.0.weight' / 'box.1.0.conv.weight' of our head -> the source head's name for its paired level."""
    parts = rest.split(".")
    if parts[0] in ("m", "box", "cls") and len(parts) > 1 and parts[1].isdigit():
        k = int(parts[1])
        return ".".join([parts[0], str(levels[k]), *parts[2:]]) if k in levels else None
    return rest


def transfer(model: Model, src: Model) -> TransferReport:
    """Copy into model every tensor of src that a paired layer holds with the same shape (in place)."""
    pairs, levels = pair_layers(model, src), _level_pairs(model, src)
    mine, theirs = model.state_dict(), src.state_dict()
    head_i = len(model.table) - 1
    same_head = type(model.detect) is type(src.detect)
    rep, new, used = TransferReport(total=len(mine)), {}, set()
    for name, t in mine.items():
        _, idx, rest = name.split(".", 2)
        i = int(idx)
        if i not in pairs:
            rep.left_out[name] = "new layer: no counterpart in the source model"
            continue
        j = pairs[i]
        if i == head_i:
            if rest == "stride":  # set by the model's own dry run: not a weight
                rep.total -= 1
                continue
            if not same_head:
                kinds = type(model.detect).__name__, type(src.detect).__name__
                rep.left_out[name] = f"other head: {kinds[0]}, the source has {kinds[1]}"
                continue
            if rest == "anchors":  # per level, where the source has the same stride (a new level keeps its own)
                a = t.clone()
                for k, lv in levels.items():
                    if _strides(model)[k] == _strides(src)[lv] and a[k].shape == theirs[f"model.{j}.anchors"][lv].shape:
                        a[k] = theirs[f"model.{j}.anchors"][lv]
                new[name] = a
                used.add(f"model.{j}.anchors")
                rep.copied.append(name)
                continue
            rest = _head_name(rest, levels) or rest
        key = f"model.{j}.{rest}"
        if key not in theirs:
            rep.left_out[name] = f"no tensor: the source's layer {j} has no {rest}"
        elif theirs[key].shape != t.shape:
            rep.left_out[name] = f"shape: ours {tuple(t.shape)}, the source's {key} {tuple(theirs[key].shape)}"
        else:
            new[name] = theirs[key]
            used.add(key)
            rep.copied.append(name)
    model.load_state_dict(new, strict=False)
    rep.unused = [k for k in theirs if k not in used and not k.endswith((".stride", "num_batches_tracked"))]
    return rep


def transfer_state(model: Model, ckpt: dict[str, Any], source: str) -> TransferReport:
    """transfer() from a checkpoint dict (ours, or a converted YOLOv5/Ultralytics one)."""
    from utils.engine.checkpoint import model_from_checkpoint
    return transfer(model, model_from_checkpoint(ckpt, "model", source))


"""Size a model from its YAML before allocating it.

A checkpoint's model YAML is untrusted input: `width_multiple: 64`, `depth_multiple: 20` or `nc: 10000000` in a
21 MB file asks for hundreds of GB. The layers are built on the meta device (shapes, no memory) and their
state-dict shapes compared with the weights the file holds; Model's 256 px build pass is run there too and
its activations counted. Only a YAML that fits its own weights is then built for real.
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn

from models.config import load_model_config
from models.yolo import Model, parse_model

# elements of all layer outputs in Model's 256 px build pass (4 GiB as float32): the zoo's largest needs ~0.1e9
TEST_PASS_LIMIT = 2 ** 30


def _repeats(cfg: dict[str, Any]) -> int:
    """Modules parse_model would make, counted from the YAML alone (what depth_multiple multiplies)."""
    gd, total = cfg.get("depth_multiple", 1.0), 0
    for entry in list(cfg.get("backbone") or []) + list(cfg.get("head") or []):
        n = entry[1] if isinstance(entry, list) and len(entry) == 4 and isinstance(entry[1], int) else 1
        total += max(round(n * gd), 1) if n > 1 else 1
    return total


def meta_shapes(cfg: dict[str, Any] | str, ch: int = 3) -> tuple[dict[str, tuple[int, ...]], int]:
    """(state-dict shapes of Model(cfg), elements of every layer's output in its 256 px build pass), found
    on the meta device: nothing is allocated, whatever the YAML asks for."""
    m, acts = _meta_model(cfg, ch)
    return {k: tuple(v.shape) for k, v in m.state_dict().items()}, acts


def _meta_model(cfg: dict[str, Any] | str, ch: int = 3) -> tuple[nn.Module, int]:
    """Model(cfg)'s layers on the meta device, and the activations of its build pass (see meta_shapes)."""
    y = load_model_config(cfg)
    acts = [0]

    def count(_m: nn.Module, _i: Any, out: Any) -> None:
        for t in out if isinstance(out, (list, tuple)) else [out]:
            if isinstance(t, torch.Tensor):
                acts[0] += t.numel()

    with torch.device("meta"):
        m = Model.__new__(Model)  # the layers and forward of Model, without its real-memory build steps
        nn.Module.__init__(m)
        m.model, m.save, _ = parse_model(y, ch)
        hooks = [layer.register_forward_hook(count) for layer in m.model]
        try:
            with torch.no_grad():
                Model.forward(m, torch.zeros(1, ch, 256, 256))
        except RuntimeError:
            pass  # a layer that fails on its input: Model() names the line; the shapes built so far still count
        finally:
            for h in hooks:
                h.remove()
    return m, acts[0]


def _n(shapes: Any) -> int:
    total = 0
    for s in shapes:
        k = 1
        for d in s:
            k *= int(d)
        total += k
    return total


def weights_mismatch(cfg: dict[str, Any], state: Any) -> str | None:
    """Why Model(cfg) must not be built for these weights (a state dict), or None when it fits them exactly."""
    cfg = load_model_config(cfg)
    if state is None:
        return "the weights are missing"
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        return "the weights are not a state dict of tensors"
    have = {k: tuple(v.shape) for k, v in state.items()}
    scale = f"depth_multiple {cfg.get('depth_multiple', 1.0)}, width_multiple {cfg.get('width_multiple', 1.0)}"
    repeats = _repeats(cfg)
    if repeats > len(have) + len(cfg.get("backbone") or []) + len(cfg.get("head") or []):
        return (f"model_yaml asks for {repeats} layer repeats ({scale}), but its weights hold only {len(have)} "
                f"tensors")
    m, acts = _meta_model(cfg)
    want = {k: tuple(v.shape) for k, v in m.state_dict().items()}
    head = m.model[-1]  # drops the buffers its older checkpoints hold when loading them (HeadBase.legacy_buffers)
    legacy = {f"model.{len(m.model) - 1}.{name}" for name in getattr(head, "legacy_buffers", ())}
    have = {k: v for k, v in have.items() if k not in legacy}
    if want != have:
        diff = sorted(set(want) ^ set(have)) or [k for k in want if want[k] != have[k]]
        k = diff[0]
        return (f"model_yaml (nc {cfg.get('nc')}, {scale}) asks for {_n(want.values()) / 1e6:,.1f}M parameters, "
                f"its weights hold {_n(have.values()) / 1e6:,.1f}M (first difference: {k} "
                f"{want.get(k, 'absent')} in the YAML, {have.get(k, 'absent')} in the weights)")
    if acts > TEST_PASS_LIMIT:
        return f"model_yaml's layers need {acts / 1e9:,.1f}G activation values for one 256 px image"
    return None

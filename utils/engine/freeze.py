"""--freeze: keep some layers' weights fixed while training (fine-tuning a checkpoint on little data)."""
from __future__ import annotations

from models.yolo import Model


def layers_to_freeze(model: Model, spec: int | str) -> list[int]:
    """Layer indices for a count N (layers 0..N-1) or part names (utils.config.FREEZE_PARTS, comma-separated):
    backbone = the YAML's backbone section, neck = its head section less the detect layer, head = that layer."""
    n = len(model.model)
    if isinstance(spec, int):
        return list(range(min(spec, n)))
    nb = len(model.yaml["backbone"])
    parts = {"backbone": range(nb), "neck": range(nb, n - 1), "head": range(n - 1, n)}
    return sorted({i for p in str(spec).split(",") for i in parts[p.strip()]})


def freeze(model: Model, spec: int | str) -> str:
    """Turn off gradients of those layers (BatchNorm statistics still update in train mode, as in YOLOv5);
    returns the log line."""
    idx = layers_to_freeze(model, spec)
    for i in idx:
        for p in model.model[i].parameters():
            p.requires_grad_(False)
    frozen = sum(p.numel() for i in idx for p in model.model[i].parameters())
    total = sum(p.numel() for p in model.parameters())
    what = f"--freeze {spec}" if isinstance(spec, str) else f"--freeze {spec} (the first {spec} layers)"
    span = f"layers {idx[0]}-{idx[-1]}" if idx == list(range(idx[0], idx[-1] + 1)) else f"layers {idx}" if idx else \
        "no layers"
    return f"{what}: froze {span}, {frozen:,} of {total:,} parameters"

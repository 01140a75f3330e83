"""A checkpoint's inference part alone, for carrying weights to a device under its size limit.

    python -m benchmarks.strip_weights IN.pt OUT.pt

Keeps what utils.inference.backends.load_model reads (the model's YAML, its EMA weights, names, category
ids and the run's settings); drops the optimizer, the raw (non-EMA) weights, the AMP scaler and the RNG
state. OUT is not resumable. Never overwrites IN.
"""
from __future__ import annotations

import sys
from pathlib import Path

from utils.checkpoints.checkpoint import read_checkpoint, save_checkpoint

DROP = ("optimizer", "raw_model", "scaler", "rng")


def strip(src: str | Path, dst: str | Path) -> dict[str, int]:
    """Write src without DROP's entries to dst; returns both sizes in bytes."""
    if Path(src).resolve() == Path(dst).resolve():
        raise SystemExit(f"strip_weights: {dst} is the input; write the stripped copy elsewhere")
    ckpt = read_checkpoint(src)
    save_checkpoint({k: v for k, v in ckpt.items() if k not in DROP}, dst)
    return {"in": Path(src).stat().st_size, "out": Path(dst).stat().st_size}


if __name__ == "__main__":
    if len(sys.argv) != 3:
        raise SystemExit(__doc__)
    sizes = strip(sys.argv[1], sys.argv[2])
    print(f"{sys.argv[2]}: {sizes['out'] / 2**20:.1f} MiB (from {sizes['in'] / 2**20:.1f} MiB)")

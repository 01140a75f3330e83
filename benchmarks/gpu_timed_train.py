"""One training run with its batches time-stamped: the in-process side of benchmarks/gpu_suite.py.

    python -m benchmarks.gpu_timed_train ours --stamps S.json [--probe-batches N] -- <train.py args>
    PEER_PY benchmarks/gpu_timed_train.py peer --peer ../shared/bench/peer.py --workers 8 \
        --stamps S.json [--probe-batches N] [--train-kw cache=ram ...] -- <peer.py args>

Both sides are stamped alike: a new list at each epoch's start and a time.perf_counter() per batch (ours when
the batch reaches the trainer, the package's at its batch end: in the steady state both are one batch period
apart), so gpu_suite.py computes one steady-state img/s for both. S.json also gets the training call's seconds
(`train_s`: model.train() / train.main(), final validation included), the CUDA allocator's peak memory and
the worker count used. --probe-batches N stops the run after N batches (no validation, nothing scored): the
worker-count probe.

`peer` runs under the peer's interpreter and imports nothing of this project. peer.py always trains with
workers=0; this wrapper passes --workers to the package's model.train() instead, as a user on a GPU would.
Where polars is not installed (the device machine: its wheel alone is ~40 MB), a stand-in module lets
the package's read_results_csv() fail into its own `except` (only a checkpoint's `train_results` metadata is
lost; nothing measured depends on it). Its AMP check is skipped with AMP kept on (offline it would first try to
download a model, inside the timed training call).
"""
from __future__ import annotations

import argparse
import json
import runpy
import sys
import time
import types
from pathlib import Path
from typing import Any, Callable


class ProbeDone(Exception):
    """Raised from the batch hook after --probe-batches batches: the probe has what it needs."""


class Stamps:
    """Per-epoch lists of batch time stamps; `batch()` raises ProbeDone once `limit` batches are stamped."""

    def __init__(self, limit: int = 0):
        self.epochs: list[list[float]] = []
        self.limit, self.count = limit, 0

    def epoch(self) -> None:
        self.epochs.append([])

    def batch(self) -> None:
        if not self.epochs:
            self.epoch()
        self.epochs[-1].append(time.perf_counter())
        self.count += 1
        if self.limit and self.count >= self.limit:
            raise ProbeDone


def cuda_peaks() -> dict[str, float | None]:
    import torch
    if not torch.cuda.is_available() or not torch.cuda.is_initialized():
        return {"torch_alloc_gib": None, "torch_reserved_gib": None}
    return {"torch_alloc_gib": round(torch.cuda.max_memory_allocated() / 2 ** 30, 3),
            "torch_reserved_gib": round(torch.cuda.max_memory_reserved() / 2 ** 30, 3)}


def timed(call: Callable[[], Any], stamps: Stamps) -> dict[str, Any]:
    t0 = time.perf_counter()
    probe_done = False
    try:
        call()
    except ProbeDone:
        probe_done = True
    except SystemExit as e:  # peer.py ends with sys.exit(main())
        if e.code not in (None, 0):
            raise
    return {"train_s": round(time.perf_counter() - t0, 2), "probe_done": probe_done, "batches": stamps.count,
            "epochs": stamps.epochs, **cuda_peaks()}


def run_ours(argv: list[str], stamps: Stamps) -> dict[str, Any]:
    import train
    from utils.engine.trainer import Trainer

    if not hasattr(Trainer, "preprocess"):  # the hook point; a refactor that drops it must update this file
        raise SystemExit("gpu_timed_train: utils.engine.trainer.Trainer.preprocess is gone; update the batch hook")
    original = Trainer.preprocess

    def preprocess(self: Any, imgs: Any) -> Any:  # once per batch, right after the loader hands it over
        if not stamps.epochs or len(stamps.epochs[-1]) >= self.nb:
            stamps.epoch()
        stamps.batch()
        return original(self, imgs)

    Trainer.preprocess = preprocess  # type: ignore[method-assign]
    opt = train.parse_opt(argv)
    holder: dict[str, Any] = {}
    out = timed(lambda: holder.update(result=train.main(opt)), stamps)
    res = holder.get("result") or {}
    out.update(save_dir=res.get("save_dir"), workers=opt.workers,
               metrics={k: v for k, v in (res.get("metrics") or {}).items() if isinstance(v, (int, float))})
    return out


def polars_stand_in() -> None:
    """An importable `polars` whose read_csv raises: the package calls it inside try/except (read_results_csv)."""
    try:
        import polars  # noqa: F401
        return
    except ImportError:
        pass
    mod = types.ModuleType("polars")

    def read_csv(*_: Any, **__: Any) -> Any:
        raise RuntimeError("polars is not installed (gpu_timed_train stand-in)")

    mod.read_csv = read_csv  # type: ignore[attr-defined]
    mod.__stand_in__ = True  # type: ignore[attr-defined]
    sys.modules["polars"] = mod


def keyword(kv: str) -> tuple[str, Any]:
    """'cache=ram' -> ('cache', 'ram'); numbers, true/false and null as JSON reads them."""
    k, sep, v = kv.partition("=")
    if not sep or not k:
        raise SystemExit(f"gpu_timed_train: --train-kw {kv!r}: expected KEY=VALUE")
    try:
        return k, json.loads(v)
    except json.JSONDecodeError:
        return k, v


def run_peer(peer_py: Path, workers: int, argv: list[str], stamps: Stamps,
             extra: dict[str, Any] | None = None) -> dict[str, Any]:
    here = Path(__file__).resolve().parent  # run as a script: keep benchmarks/*.py from shadowing any module
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != here]
    polars_stand_in()
    import ultralytics.engine.trainer as peer_trainer
    from ultralytics.engine.model import Model

    amp_check: dict[str, Any] = {}

    def check_amp(model: Any, *_: Any, **__: Any) -> bool:
        """Offline, the package's AMP check tries to download yolo26n.pt first and then keeps AMP on (a failed
        download, even a slow one, counts in its training time): keep AMP on at once, as the check does online
        when it passes."""
        if next(model.parameters()).device.type != "cuda":
            amp_check["called"] = True
            return original_check(model)  # CPU / MPS: False at once
        amp_check["skipped"] = True
        return True

    original_check = peer_trainer.check_amp
    peer_trainer.check_amp = check_amp

    original = Model.train

    def train_with(self: Any, *args: Any, **kwargs: Any) -> Any:
        kwargs.update(extra or {}, workers=workers)
        if stamps.limit:
            kwargs["val"] = False
        self.add_callback("on_train_epoch_start", lambda _t: stamps.epoch())
        self.add_callback("on_train_batch_end", lambda _t: stamps.batch())
        return original(self, *args, **kwargs)

    Model.train = train_with  # type: ignore[method-assign]
    sys.argv = [str(peer_py), *argv]
    out = timed(lambda: runpy.run_path(str(peer_py), run_name="__main__"), stamps)
    out["workers"] = workers
    out["amp_check"] = ("skipped: AMP on (offline the check cannot download its model)" if amp_check.get("skipped")
                        else "the package's own" if amp_check else None)
    out["polars_stand_in"] = bool(getattr(sys.modules.get("polars"), "__stand_in__", False))
    return out


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    rest: list[str] = []
    if "--" in argv:
        i = argv.index("--")
        argv, rest = argv[:i], argv[i + 1:]
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("side", choices=["ours", "peer"])
    ap.add_argument("--stamps", type=Path, required=True, help="JSON written here")
    ap.add_argument("--probe-batches", type=int, default=0, help="stop after N batches (worker probe)")
    ap.add_argument("--peer", type=Path, help="peer.py (side peer)")
    ap.add_argument("--workers", type=int, default=8, help="loader workers for the peer (ours: train.py --workers)")
    ap.add_argument("--train-kw", action="append", default=[], metavar="KEY=VALUE",
                    help="more keywords for the peer's model.train(), e.g. cache=ram")
    a = ap.parse_args(argv)
    stamps = Stamps(a.probe_batches)
    if a.side == "ours":
        out = run_ours(rest, stamps)
    else:
        if a.peer is None:
            ap.error("peer: --peer PATH/peer.py is required")
        out = run_peer(a.peer, a.workers, rest, stamps, dict(keyword(kv) for kv in a.train_kw))
    a.stamps.write_text(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""What gpu_suite.py reads off a run: nvidia-smi samples, steady-state img/s from batch stamps, and the merge of
result files written by several device calls. Pure functions plus one background sampler; no torch import."""
from __future__ import annotations

import shutil
import statistics
import subprocess
import threading
import time
from typing import Any

SMI_QUERY = "index,utilization.gpu,memory.used"


def parse_smi_line(line: str) -> tuple[int, float, float] | None:
    """One line of `nvidia-smi --query-gpu=index,utilization.gpu,memory.used --format=csv,noheader,nounits`
    -> (gpu index, utilisation %, memory used MiB); None for anything else ('[N/A]', a warning, a blank)."""
    parts = [p.strip() for p in line.split(",")]
    if len(parts) != 3:
        return None
    try:
        return int(parts[0]), float(parts[1]), float(parts[2])
    except ValueError:
        return None


def util_stats(samples: list[tuple[float, int, float, float]], gpu: int, t0: float | None = None,
               t1: float | None = None) -> dict[str, Any] | None:
    """Mean and median utilisation, peak memory of one GPU's samples (time, index, util %, MiB), optionally only
    those taken in [t0, t1]; None when there are none."""
    sel = [s for s in samples if s[1] == gpu and (t0 is None or s[0] >= t0) and (t1 is None or s[0] <= t1)]
    if not sel:
        return None
    util = [s[2] for s in sel]
    return {"mean": round(statistics.fmean(util), 1), "median": round(statistics.median(util), 1),
            "samples": len(sel), "mem_used_max_mib": max(s[3] for s in sel)}


class SmiSampler:
    """`nvidia-smi ... -lms INTERVAL` in the background; each line is stamped with time.perf_counter() on arrival
    (CLOCK_MONOTONIC on Linux: the same clock as the training processes' batch stamps). Where the looping mode
    ends by itself without a sample (a driver or VM without it), one nvidia-smi call per interval instead."""

    def __init__(self, interval_s: float = 0.5):
        self.interval_s = interval_s
        self.samples: list[tuple[float, int, float, float]] = []
        self.note: str | None = None
        self.exe = shutil.which("nvidia-smi")
        self.proc: subprocess.Popen | None = None
        self.thread: threading.Thread | None = None
        self.stop = threading.Event()

    def query(self, loop: bool) -> list[str]:
        assert self.exe is not None
        return [self.exe, f"--query-gpu={SMI_QUERY}", "--format=csv,noheader,nounits",
                *(["-lms", str(int(self.interval_s * 1000))] if loop else [])]

    def __enter__(self) -> SmiSampler:
        if self.exe is None:
            self.note = "nvidia-smi not found: no utilisation samples"
            return self
        self.proc = subprocess.Popen(self.query(True), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()
        return self

    def _add(self, line: str) -> None:
        s = parse_smi_line(line)
        if s is not None:
            self.samples.append((time.perf_counter(), *s))

    def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for line in self.proc.stdout:
            self._add(line)
        if self.samples or self.stop.is_set():
            return
        self.note = "nvidia-smi -lms gave nothing: polled once per interval"
        while not self.stop.wait(self.interval_s):
            r = subprocess.run(self.query(False), capture_output=True, text=True)
            for line in r.stdout.splitlines():
                self._add(line)

    def __exit__(self, *_: Any) -> None:
        self.stop.set()
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
            if self.thread is not None:
                self.thread.join(timeout=5)
            if not self.samples:
                self.note = "nvidia-smi gave no samples"


def steady_img_per_s(epochs: list[list[float]], batch: int) -> float | None:
    """Steady-state training images/s from per-epoch batch stamps, as peer.py counts it: per epoch the mean batch
    period between its second and last stamp ((t[-1] - t[1]) / (n - 2): loader start-up and the first step
    excluded), the median over epochs from the second on (all epochs when there is only one); batch / period."""
    usable = [e for e in epochs if len(e) > 2]
    steady = [e for e in epochs[1:] if len(e) > 2] or usable
    if not steady:
        return None
    period = statistics.median((e[-1] - e[1]) / (len(e) - 2) for e in steady)
    return round(batch / period, 2) if period > 0 else None


def probe_img_per_s(epochs: list[list[float]], batch: int) -> float | None:
    """The worker probe's throughput: batches from the first stamp of the second epoch to the last stamp, epoch
    boundaries included (a loader's restart at each epoch costs a whole run too). One epoch only: from its
    second stamp."""
    stamps = [t for e in epochs[1:] for t in e] if len(epochs) > 1 else (epochs[0][1:] if epochs else [])
    if len(stamps) < 2 or stamps[-1] <= stamps[0]:
        return None
    return round(batch * (len(stamps) - 1) / (stamps[-1] - stamps[0]), 2)


def merge_results(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """One card's results from several device calls: runs and probes by key (the newer `finished` wins), the
    calls' records appended once each; the rest of the file is the newer one's."""
    if old.get("card") and new.get("card") and old["card"] != new["card"]:
        raise ValueError(f"cannot merge results of two cards: {old['card']!r} and {new['card']!r}")
    out = {**old, **new}
    for key in ("runs", "probes"):
        merged = dict(old.get(key) or {})
        for k, v in (new.get(key) or {}).items():
            if k not in merged or str(v.get("finished", "")) >= str(merged[k].get("finished", "")):
                merged[k] = v
        out[key] = merged
    seen = {c.get("started") for c in old.get("calls") or []}
    out["calls"] = [*(old.get("calls") or []), *(c for c in new.get("calls") or [] if c.get("started") not in seen)]
    return out


def pair_summary(runs: dict[str, Any]) -> list[dict[str, Any]]:
    """Each of our finished runs against each finished peer run of the same budget: the training call's time
    ratio (issue 40's goal: <= 0.8 at equal model size), wall and steady img/s ratios, and the AP difference."""
    done = [r for r in runs.values() if r.get("side") and r.get("rc") == 0 and r.get("train_s")]

    def ratio(o: dict, p: dict, k: str) -> float | None:
        return round(o[k] / p[k], 3) if o.get(k) and p.get(k) else None

    rows = []
    for o in (r for r in done if r["side"] == "ours"):
        for p in (r for r in done if r["side"] == "peer" and r["budget"] == o["budget"]):
            rows.append({"ours": o["name"], "peer": p["name"], "budget": o["budget"],
                         "train_s_ratio": ratio(o, p, "train_s"), "wall_ratio": ratio(o, p, "wall_s"),
                         "img_per_s_ratio": ratio(o, p, "steady_img_per_s"),
                         "AP_diff": (round(o["AP"] - p["AP"], 4) if o.get("AP") is not None
                                     and p.get("AP") is not None else None)})
    return rows

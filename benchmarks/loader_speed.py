"""Training loader throughput, ours against the Ultralytics package's, side by side on one core each.

    python -m benchmarks.loader_speed [--data data/deeppcb.yaml] [--hyp configs/hyps/default.yaml]
        [--imgsz 640] [--batch-size 16] [--workers 0 1] [--rounds 5] [--batches 10]
        [--cache none|ram|disk] [--peer-cache none|ram|disk] [--tile P] [--hsv-on-device]
        [--peer-python PYTHON] [--out FILE]

For each worker count both loaders are built once (ours in this process, the peer's in a
subprocess running benchmarks/peer_loader.py under the peer venv), warmed up by one batch, and
then timed in alternating rounds of --batches batches (ours, peer, ours, peer, ...), so that
whatever else runs on the machine hits both alike. Every side runs one torch/OpenCV thread.

Per core is images per CPU second: the CPU time (/proc, user + system) the loading process and
its workers spent since that side's previous round. On a shared machine this is far steadier
than wall time, and with workers it is the only fair count: a worker keeps prefetching while the
other side has its turn, so wall time would credit it with work done off the clock. Wall-clock
images/s is reported too (its ratio only for workers 0). One row per worker count: medians over
the rounds, and the median, min and max of the per-round ratios (ours / peer).
`--peer-python ''` times ours alone.

The peer keeps its own defaults (mosaic 1.0, HSV, fliplr, scale 0.5, translate 0.1 and its recent
image buffer for mosaic partners); it has no native-resolution tiles, so on large images it decodes
and shrinks the whole photo where ours (hyp tile > 0) cuts a crop. `--cache` is passed to both
(the peer's `cache=ram|disk`) unless --peer-cache says otherwise. Without a cache the peer still
keeps up to batch * 8 recently decoded images in RAM (its mosaic partners come from them): on a
set of fewer images (aerial-cars: 94) that is all of them after the first epoch.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import cv2
import torch
import yaml

from utils.data.dataset import create_dataloader, load_data_config

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_PEER = "/tmp/peer-venv/bin/python"


def cpu_seconds(pids: list[int]) -> float:
    """CPU time (user + system) so far of these processes."""
    total = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime in clock ticks
    return total / os.sysconf("SC_CLK_TCK")


class OurLoader:
    def __init__(self, split: dict, hyp: dict, imgsz: int, batch_size: int, workers: int, cache: str, seed: int,
                 hsv_on_device: bool = False):
        t0 = time.perf_counter()
        self.loader, self.ds = create_dataloader(split, imgsz, batch_size, hyp=hyp, augment=True, cache=cache,
                                                 workers=workers, shuffle=True, seed=seed)
        self.ds.hsv_on_device = hsv_on_device  # as train.py sets it on a GPU: before the workers start
        self.setup_s = time.perf_counter() - t0
        self.it = iter(self.loader)
        self.next()  # warm-up: worker start, first decodes

    def next(self) -> int:
        try:
            imgs, *_ = next(self.it)
        except StopIteration:  # the end of an epoch: start another (workers persist)
            self.it = iter(self.loader)
            imgs, *_ = next(self.it)
        return len(imgs)

    def cpu_s(self) -> float:
        workers = getattr(getattr(self.loader, "_iterator", None), "_workers", [])
        return cpu_seconds([os.getpid()] + [w.pid for w in workers])

    def time(self, batches: int) -> tuple[int, float, float]:
        n, t0 = 0, time.perf_counter()
        for _ in range(batches):
            n += self.next()
        return n, time.perf_counter() - t0, self.cpu_s()

    def close(self) -> None:
        del self.it, self.loader  # stops persistent workers before the next configuration starts its own


class PeerLoader:
    def __init__(self, python: str, coco_dir: Path, split: str, imgsz: int, batch_size: int, workers: int,
                 cache: str, seed: int, workdir: Path):
        cmd = [python, str(ROOT / "benchmarks" / "peer_loader.py"), "--coco", str(coco_dir), "--split", split,
               "--imgsz", str(imgsz), "--batch", str(batch_size), "--workers", str(workers), "--seed", str(seed),
               "--workdir", str(workdir)] + (["--cache", cache] if cache != "none" else [])
        env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                     text=True, env=env)
        self.info = self._reply()
        if not self.info.get("ready"):
            raise RuntimeError(f"peer loader did not start: {self.info}")

    def _reply(self) -> dict:
        while True:
            line = self.proc.stdout.readline()
            if not line:
                raise RuntimeError(f"peer loader exited (status {self.proc.wait()}); run it alone to see why: "
                                   f"{' '.join(self.proc.args)}")
            if line.startswith("@loader "):  # the package prints its own lines too
                return json.loads(line[8:])

    def cpu_s(self) -> float:
        return self.info["cpu_s"]

    def time(self, batches: int) -> tuple[int, float, float]:
        self.proc.stdin.write(f"{batches}\n")
        self.proc.stdin.flush()
        r = self._reply()
        return r["images"], r["s"], r["cpu_s"]

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=60)


def compare(data: dict, split: str, hyp: dict, opt: argparse.Namespace, workers: int) -> dict:
    ours = OurLoader(data[split], hyp, opt.imgsz, opt.batch_size, workers, opt.cache, opt.seed, opt.hsv_on_device)
    peer = None
    if opt.peer_python:
        coco_dir = Path(data[split]["images"]).resolve().parents[1]  # <set>/images/<split>
        peer_cache = opt.peer_cache or opt.cache
        peer = PeerLoader(opt.peer_python, coco_dir, split, opt.imgsz, opt.batch_size, workers, peer_cache, opt.seed,
                          Path(opt.workdir) / f"{Path(data['yaml_file']).stem}-w{workers}")
    rounds = []
    sides = {"ours": ours, **({"peer": peer} if peer else {})}
    cpu = {k: side.time(opt.batches)[2] for k, side in sides.items()}  # an untimed round: prefetch queues fill
    for _ in range(opt.rounds):
        row = {}
        for k, side in sides.items():
            n, s, c = side.time(opt.batches)
            # per core: images per CPU second of the loading process and its workers, counted from the
            # end of this side's last round (workers prefetch while the other side runs)
            row[f"{k}_img_per_cpu_s"] = n / max(c - cpu[k], 1e-9)
            row[f"{k}_img_s_wall"] = n / s
            cpu[k] = c
        if peer:
            row["ratio"] = row["ours_img_per_cpu_s"] / row["peer_img_per_cpu_s"]
            if not workers:
                row["ratio_wall"] = row["ours_img_s_wall"] / row["peer_img_s_wall"]
        rounds.append(row)
    ours.close()
    if peer:
        peer.close()
    out = {"workers": workers, "rounds": len(rounds), "batches_per_round": opt.batches}
    for k in rounds[0]:
        out[f"{k}_median"] = round(statistics.median(r[k] for r in rounds), 3)
        out[f"{k}_min"], out[f"{k}_max"] = (round(f(r[k] for r in rounds), 3) for f in (min, max))
    out["per_round"] = [{k: round(v, 2) for k, v in r.items()} for r in rounds]
    out["ours_setup_s"] = round(ours.setup_s, 2)
    return out


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="data/deeppcb.yaml")
    p.add_argument("--split", default="train")
    p.add_argument("--imgsz", type=int, default=640)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--rounds", type=int, default=5, help="alternating timed rounds per side and worker count")
    p.add_argument("--batches", type=int, default=10, help="batches per timed round")
    p.add_argument("--workers", type=int, nargs="+", default=[0, 1])
    p.add_argument("--hyp", default=str(ROOT / "configs" / "hyps" / "default.yaml"))
    p.add_argument("--mosaic", type=float, default=1.0, help="overrides the hyp's mosaic probability")
    p.add_argument("--tile", type=float, default=None, help="overrides the hyp's tile probability (ours only)")
    p.add_argument("--cache", default="none", choices=["none", "ram", "disk"], help="image cache, both sides")
    p.add_argument("--peer-cache", default="", choices=["", "none", "ram", "disk"], help="the peer's, if not --cache")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--hsv-on-device", action="store_true",
                   help="ours as it loads for a GPU run: colour samples leave the HSV pixel work to the device")
    p.add_argument("--peer-python", default=DEFAULT_PEER if Path(DEFAULT_PEER).exists() else "",
                   help="the peer venv's interpreter ('' = ours only)")
    p.add_argument("--workdir", default="/tmp/loader-speed-peer", help="the peer's converted copy of the set")
    p.add_argument("--out", default="", help="also write the results as JSON here (a list: each run is appended)")
    opt = p.parse_args(argv)
    torch.set_num_threads(1)
    cv2.setNumThreads(0)
    data = load_data_config(opt.data)
    hyp = {**yaml.safe_load(Path(opt.hyp).read_text()), "mosaic": opt.mosaic}
    if opt.tile is not None:
        hyp["tile"] = opt.tile
    print(f"{data['yaml_file']} {opt.split}: imgsz {opt.imgsz}, batch {opt.batch_size}, mosaic {hyp['mosaic']}, "
          f"tile {hyp.get('tile', 0)}, cache {opt.cache} (peer {opt.peer_cache or opt.cache}), {opt.rounds} rounds x "
          f"{opt.batches} batches per side")
    rows = [compare(data, opt.split, hyp, opt, w) for w in opt.workers]
    cols = [c for c in ("workers", "ours_img_per_cpu_s_median", "peer_img_per_cpu_s_median", "ratio_median",
                        "ratio_min", "ratio_max", "ratio_wall_median") if c in rows[0] or c in rows[-1]]
    print("| " + " | ".join(cols) + " |")
    print("|" + "---|" * len(cols))
    for r in rows:
        print("| " + " | ".join(f"{r[c]:.2f}" if isinstance(r.get(c), float) else str(r.get(c, "")) for c in cols)
              + " |")
    result = {"command": "python -m benchmarks.loader_speed " + " ".join(argv if argv is not None else sys.argv[1:]),
              "data": data["yaml_file"], "hyp": opt.hyp, "imgsz": opt.imgsz, "batch": opt.batch_size,
              "cache": opt.cache, "peer_cache": opt.peer_cache or opt.cache, "seed": opt.seed,
              "threads": "1 torch / 1 OpenCV thread per side",
              "tile": hyp.get("tile", 0.0), "peer": opt.peer_python or None, "hsv_on_device": opt.hsv_on_device,
              "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores (shared with other "
                         f"jobs: compare ratios within a run)",
              "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "rows": rows}
    if opt.out:
        out = Path(opt.out)
        doc = json.loads(out.read_text()) if out.exists() else []
        if isinstance(doc, dict):  # a results file with a summary: its runs go under "runs"
            doc["runs"].append(result)
        else:
            doc.append(result)
        out.write_text(json.dumps(doc, indent=1))
    return result


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    main()

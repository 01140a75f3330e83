"""GPU whole runs, ours against the Ultralytics package, one after another on one GPU: the driver that
benchmarks/gpu_suite.sh starts (read its header for the device recipe and the budget split).

    python -m benchmarks.gpu_suite --runs dfl yolov5nu --epochs 20 --imgsz 640 --batch 64 --device 0

Each run is a subprocess (benchmarks/gpu_timed_train.py) with nvidia-smi sampled every 0.5 s beside it. Per run
it records wall time, the training call's time, steady-state img/s (batch stamps, the same rule on both sides),
GPU utilisation (mean and median, over the whole run and over the training epochs), peak GPU memory, and AP /
AP50 / APs by pycocotools' COCOeval on the run's val predictions. The result file holds one card; a run is keyed
by name and budget, so files from several calls merge (gpu_sampling.merge_results). Every flag's default comes
from the environment variable named in its help, so the shell script passes the budget through.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import shutil
import socket
import subprocess
import sys
import tarfile
import time
from pathlib import Path
from typing import Any

from benchmarks.gpu_sampling import (SmiSampler, merge_results, pair_summary, probe_img_per_s,
                                     steady_img_per_s, util_stats)

ROOT = Path(__file__).resolve().parents[1]
STAGE = ROOT / ".gpu-suite"  # what gpu_suite.sh prepare stages for the device: data, peer.py, wheels
# name: (side, model arguments). Ours: the deeppcb recipe of the ablation's dfl-stal / dfl-half-r4 rows.
CATALOGUE: dict[str, tuple[str, list[str]]] = {
    "dfl": ("ours", ["--cfg", "yolov5n-dfl.yaml"]),
    "dfl-half-r4": ("ours", ["--cfg", "yolov5n-dfl-half.yaml", "--reg-max", "4"]),
    "yolov5nu": ("peer", ["--model", "yolov5nu.yaml"]),
    "yolo26n": ("peer", ["--model", "yolo26n.yaml"]),
}
OUR_RECIPE = ["--data", "data/deeppcb.yaml", "--hyp", "configs/hyps/small-objects-dfl.yaml", "--assigner", "tal",
              "--hyp-set", "tile=0", "tal_stal=true", "--noplots"]
DEFAULT_WORKERS = 8
DDP_EXPECTED_S = 90  # two processes' start-up, one epoch at 320 and its validation, on a GPU


def env(name: str, default: str) -> str:
    return os.environ.get(name) or default


def now() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def card_name(device: str) -> tuple[str, int]:
    """(the GPU's name by nvidia-smi, the number of GPUs) or ('cpu', 0)."""
    if device == "cpu" or shutil.which("nvidia-smi") is None:
        return "cpu", 0
    out = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True,
                         text=True).stdout.split("\n")
    names = [n.strip() for n in out if n.strip()]
    return (names[0] if names else "unknown-gpu"), len(names)


def gpu_facts(device: str) -> dict[str, Any]:
    """Driver and memory of the GPUs, as nvidia-smi reports them (nothing on the CPU)."""
    if device == "cpu" or shutil.which("nvidia-smi") is None:
        return {}
    out = subprocess.run(["nvidia-smi", "--query-gpu=driver_version,memory.total", "--format=csv,noheader"],
                         capture_output=True, text=True).stdout.strip().splitlines()
    return {"nvidia_smi": out}


def git_commit() -> str | None:
    """The checkout's commit where it is a git checkout (the device's copy may not be one)."""
    r = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=ROOT)
    return (r.stdout.strip() or None) if r.returncode == 0 else None


def slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def version(python: str, module: str) -> str | None:
    code = f"import importlib.metadata as m; print(m.version('{module}'))"
    r = subprocess.run([python, "-c", code], capture_output=True, text=True)
    return (r.stdout.strip() or None) if r.returncode == 0 else None


def make_subset(src: Path, dst: Path, n: int) -> Path:
    """The first n images of each split of a COCO set (images symlinked, annotations cut): the CPU check's data."""
    if dst.exists():
        shutil.rmtree(dst)
    for split in ("train", "val"):
        js = json.loads((src / "annotations" / f"instances_{split}.json").read_text())
        js["images"] = js["images"][:n]
        ids = {im["id"] for im in js["images"]}
        js["annotations"] = [a for a in js["annotations"] if a["image_id"] in ids]
        (dst / "annotations").mkdir(parents=True, exist_ok=True)
        (dst / "annotations" / f"instances_{split}.json").write_text(json.dumps(js))
        (dst / "images" / split).mkdir(parents=True)
        for im in js["images"]:
            (dst / "images" / split / im["file_name"]).symlink_to((src / "images" / split / im["file_name"]).resolve())
    return dst


def coco_scores(gt_json: Path, predictions: Path) -> dict[str, float]:
    """AP, AP50, APs by pycocotools' COCOeval on a predictions file (the peer's peer.py scores the same way)."""
    from utils.eval.coco import coco_eval
    res = coco_eval(gt_json, json.loads(predictions.read_text()), evaluator="pycocotools")
    return {k: round(float(res[k]), 4) for k in ("AP", "AP50", "APs")}


class Suite:
    def __init__(self, a: argparse.Namespace):
        self.a = a
        # one folder per call: its logs (copied into $OUT) are this call's alone
        self.work = Path(a.workdir) / dt.datetime.now(dt.timezone.utc).strftime("%Y%m%d-%H%M%S")
        self.logs = self.work / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.t_start = time.perf_counter()
        self.card, self.n_gpus = card_name(a.device)
        self.out = Path(a.out) if a.out else ROOT / "benchmarks" / "results" / f"gpu-suite-{slug(self.card)}.json"
        self.data_root = Path(a.data_root).resolve()
        if a.max_images:
            make_subset(self.data_root / "deeppcb", self.work / "data" / "deeppcb", a.max_images)
            self.data_root = self.work / "data"
        for p in sorted((self.data_root / "deeppcb").rglob("*")):  # the page cache: no run reads the disk cold
            if p.is_file():
                p.read_bytes()
        self.results: dict[str, Any] = json.loads(self.out.read_text()) if self.out.exists() else {}
        self.call: dict[str, Any] = {
            "started": now(), "host": socket.gethostname(), "cpu_count": os.cpu_count(), "gpus": self.n_gpus,
            "python": platform.python_version(), "torch": version(a.python, "torch"), **gpu_facts(a.device),
            "commit": git_commit(),
            "ultralytics": version(a.peer_python, "ultralytics"),
            "env": {k: os.environ[k] for k in sorted(os.environ) if k.startswith(("GPU_SUITE_", "OMP_", "CUDA_"))},
            "argv": sys.argv[1:], "notes": []}
        self.new: dict[str, Any] = {"card": self.card, "runs": {}, "probes": {}, "calls": [self.call]}
        self.walls: list[float] = []

    # ----------------------------------------------------------------- commands
    def budget(self) -> dict[str, Any]:
        a = self.a
        extra = {"tag": a.tag, "ours_args": a.ours_args, "peer_kw": a.peer_kw} if a.tag else {}
        return {"data": "deeppcb" + (f" (first {a.max_images} images a split)" if a.max_images else ""),
                "epochs": a.epochs, "imgsz": a.imgsz, "batch": a.batch, "seed": a.seed, **extra}

    def key(self, name: str) -> str:
        a = self.a
        sub = f"-sub{a.max_images}" if a.max_images else ""
        tag = f"+{a.tag}" if a.tag else ""
        return f"{name}@{a.epochs}ep-{a.imgsz}-b{a.batch}-s{a.seed}{sub}{tag}"

    def command(self, name: str, workers: int, stamps: Path, probe_batches: int = 0) -> list[str]:
        a = self.a
        side, model = CATALOGUE[name]
        tag = self.key(name) + (f"-probe-w{workers}" if probe_batches else "")
        probe = ["--probe-batches", str(probe_batches)] if probe_batches else []
        if side == "ours":
            return [a.python, "-m", "benchmarks.gpu_timed_train", "ours", "--stamps", str(stamps), *probe, "--",
                    *OUR_RECIPE, *model, "--data-root", str(self.data_root), "--epochs", str(a.epochs),
                    "--imgsz", str(a.imgsz), "--batch-size", str(a.batch), "--device", a.device,
                    "--workers", str(workers), "--seed", str(a.seed), "--project", str(self.work / "runs"),
                    "--name", tag, "--exist-ok", *(["--noval"] if probe_batches else []), *a.ours_args.split()]
        return [a.peer_python, str(ROOT / "benchmarks" / "gpu_timed_train.py"), "peer", "--peer",
                str(Path(a.peer_bench) / "peer.py"), "--workers", str(workers), "--stamps", str(stamps), *probe,
                *(x for kv in a.peer_kw.split() for x in ("--train-kw", kv)),
                "--", "--coco", str(self.data_root / "deeppcb"), *model, "--epochs", str(a.epochs),
                "--imgsz", str(a.imgsz), "--batch", str(a.batch), "--device", a.device, "--seed", str(a.seed),
                "--threads", str(a.threads or os.cpu_count()), "--workdir", str(self.work / f"peer-{tag}"),
                "--out", str(self.work / f"{tag}.peer.json")]

    @staticmethod
    def show(cmd: list[str]) -> str:
        """The command as recorded: the interpreter by name, paths in this checkout relative to it."""
        return " ".join([Path(cmd[0]).name, *cmd[1:]]).replace(f"{ROOT}/", "")

    def execute(self, cmd: list[str], log: Path) -> tuple[int, float, SmiSampler]:
        t0 = time.perf_counter()
        with SmiSampler(self.a.smi_interval) as smi, log.open("w") as f:
            rc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, cwd=ROOT).returncode
        wall = time.perf_counter() - t0
        if rc != 0:
            tail = log.read_text(errors="replace").splitlines()[-40:]
            print(f"FAILED rc={rc}: {' '.join(cmd)}\n" + "\n".join(tail), flush=True)
        return rc, wall, smi

    # ----------------------------------------------------------------- steps
    def workers_for(self, side: str) -> tuple[int, str]:
        if self.a.workers != "auto":
            return int(self.a.workers), "given"
        probe = self.new["probes"].get(side) or (self.results.get("probes") or {}).get(side)
        if probe and probe.get("best") is not None:
            return int(probe["best"]), f"probe of {probe['finished']}"
        return DEFAULT_WORKERS, "default (no probe recorded)"

    def probe(self, side: str, name: str, counts: list[int]) -> None:
        rates: dict[str, float | None] = {}
        for w in counts:
            stamps = self.work / f"probe-{side}-w{w}.json"
            cmd = self.command(name, w, stamps, self.a.probe_batches)
            rc, wall, _ = self.execute(cmd, self.logs / f"probe-{side}-w{w}.log")
            st = json.loads(stamps.read_text()) if rc == 0 and stamps.exists() else {}
            rates[str(w)] = probe_img_per_s(st.get("epochs") or [], self.a.batch)
            print(f"probe {side} ({name}) workers {w}: {rates[str(w)]} img/s ({wall:.0f} s)", flush=True)
        ok = {w: r for w, r in rates.items() if r}
        self.new["probes"][side] = {
            "model": name, "counts_img_per_s": rates, "best": int(max(ok, key=ok.__getitem__)) if ok else None,
            "batches": self.a.probe_batches, "budget": self.budget(), "finished": now(),
            "rule": "img/s over the batches from the second epoch on, epoch boundaries included (no validation)"}
        self.save()

    def run(self, name: str) -> None:
        a, key = self.a, self.key(name)
        side = CATALOGUE[name][0]
        expected = ((self.results.get("runs") or {}).get(key) or {}).get("wall_s") or max(self.walls, default=0)
        elapsed = time.perf_counter() - self.t_start
        if a.deadline_s and elapsed + expected > a.deadline_s:
            note = (f"{key}: skipped, {elapsed:.0f} s elapsed + {expected:.0f} s expected > deadline "
                    f"{a.deadline_s} s (run it in another call)")
            print(note, flush=True)
            self.call["notes"].append(note)
            return
        workers, why = self.workers_for(side)
        stamps = self.work / f"{key}.stamps.json"
        cmd = self.command(name, workers, stamps)
        print(f"run {key} (workers {workers}, {why})", flush=True)
        started = now()
        rc, wall, smi = self.execute(cmd, self.logs / f"{key}.log")
        self.walls.append(wall)
        st = json.loads(stamps.read_text()) if stamps.exists() else {}
        epochs = st.get("epochs") or []
        gpu = 0 if a.device in ("", "cpu") else int(a.device.split(",")[0])
        first = epochs[0][0] if epochs and epochs[0] else None
        last = epochs[-1][-1] if epochs and epochs[-1] else None
        rec: dict[str, Any] = {
            "name": name, "side": side, "budget": self.budget(), "workers": workers, "workers_from": why,
            "cmd": self.show(cmd), "rc": rc,
            "started": started, "finished": now(), "wall_s": round(wall, 1), "train_s": st.get("train_s"),
            "steady_img_per_s": steady_img_per_s(epochs, a.batch), "epochs_stamped": len(epochs),
            "gpu_util": util_stats(smi.samples, gpu),
            "gpu_util_train": util_stats(smi.samples, gpu, first, last) if first is not None else None,
            "gpu_mem": {"torch_alloc_gib": st.get("torch_alloc_gib"),
                        "torch_reserved_gib": st.get("torch_reserved_gib"),
                        "smi_used_max_mib": (util_stats(smi.samples, gpu) or {}).get("mem_used_max_mib")},
            **({"note": smi.note} if smi.note else {})}
        rec.update(self.scores(name, side, key, st))
        # a failed run is kept beside, never in place of, a finished one of the same key from an earlier call
        self.new["runs"][key if rc == 0 else f"{key}!failed-{started}"] = rec
        print(json.dumps({k: rec[k] for k in ("wall_s", "train_s", "steady_img_per_s", "gpu_util", "AP", "AP50",
                                              "APs") if k in rec}), flush=True)
        self.save()

    def scores(self, name: str, side: str, key: str, st: dict[str, Any]) -> dict[str, Any]:
        gt = self.data_root / "deeppcb" / "annotations" / "instances_val.json"
        if side == "ours":
            preds = Path(st.get("save_dir") or "/nonexistent") / "val" / "predictions.json"
            if not preds.exists():
                return {"AP": None, "score_note": f"no {preds}"}
            own = st.get("metrics") or {}
            return {**coco_scores(gt, preds), "AP_own_evaluator": own.get("AP"),
                    "scored": "pycocotools COCOeval on the final evaluation's predictions.json (best.pt)"}
        peer_out = self.work / f"{key}.peer.json"
        if not peer_out.exists():
            return {"AP": None, "score_note": f"no {peer_out}"}
        p = json.loads(peer_out.read_text())
        return {"AP": p.get("AP"), "AP50": p.get("AP50"), "APs": p.get("APs"),
                "peer_py_train_img_per_s": p.get("train_img_per_s"), "polars_stand_in": st.get("polars_stand_in"),
                "amp_check": st.get("amp_check"),
                "scored": "peer.py: pycocotools COCOeval on best.pt's predictions (conf 0.001, IoU 0.6, 300)"}

    def ddp_smoke(self) -> None:
        """Two CUDA processes of train.py under torch.distributed.run (nccl), as train.py's docstring launches
        DDP; one short epoch. Needs 2+ GPUs unless --ddp force (then on the given device, gloo on CPU)."""
        a = self.a
        if a.ddp == "off" or (a.ddp == "auto" and self.n_gpus < 2):
            note = f"DDP smoke skipped: {self.n_gpus} GPU(s) visible, needs 2+" if a.ddp == "auto" else "DDP off"
            self.call["notes"].append(note)
            print(note, flush=True)
            return
        elapsed = time.perf_counter() - self.t_start
        if a.deadline_s and elapsed + DDP_EXPECTED_S > a.deadline_s:
            note = f"DDP smoke skipped: {elapsed:.0f} s elapsed + ~{DDP_EXPECTED_S} s > deadline {a.deadline_s} s"
            self.call["notes"].append(note)
            print(note, flush=True)
            return
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        device = "0,1" if self.n_gpus >= 2 else a.device
        cmd = [a.python, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(port),
               "train.py", *OUR_RECIPE, *CATALOGUE["dfl"][1], "--data-root", str(self.data_root), "--epochs", "1",
               "--imgsz", str(min(a.imgsz, 320)), "--batch-size", str(a.batch), "--device", device,
               "--workers", "4", "--seed", str(a.seed), "--project", str(self.work / "runs"), "--name", "ddp-smoke",
               "--exist-ok"]
        rc, wall, smi = self.execute(cmd, self.logs / "ddp-smoke.log")
        metrics = self.work / "runs" / "ddp-smoke" / "val" / "metrics.json"
        m = json.loads(metrics.read_text()) if metrics.exists() else {}
        self.new["runs"]["ddp-smoke"] = {
            "name": "ddp-smoke", "cmd": self.show(cmd), "rc": rc, "wall_s": round(wall, 1), "finished": now(),
            "device": device, "AP": m.get("AP"), "gpus_sampled": sorted({s[1] for s in smi.samples}),
            "what": "2 processes, 1 epoch: it runs and scores; no speed or accuracy claim"}
        print(f"DDP smoke rc={rc} wall {wall:.0f} s AP {m.get('AP')}", flush=True)
        self.save()

    # ----------------------------------------------------------------- output
    def save(self) -> None:
        merged = merge_results(self.results, self.new)
        merged["what"] = ("deeppcb whole runs on one GPU, ours against the Ultralytics package, one after another "
                          "(benchmarks/gpu_suite.sh); runs keyed name@budget; train_s: the training call, final "
                          "validation included; steady_img_per_s: median over epochs 2.. of the mean batch period; "
                          "gpu_util: nvidia-smi samples over the whole run, gpu_util_train: those from the first to "
                          "the last training batch (per-epoch validation included)")
        merged["summary"] = pair_summary(merged["runs"])
        self.out.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.out.with_suffix(".tmp")
        tmp.write_text(json.dumps(merged, indent=1))
        tmp.replace(self.out)
        if os.environ.get("OUT"):  # the device tool brings $OUT back, also after a call stopped at its limit
            shutil.copy(self.out, Path(os.environ["OUT"]) / self.out.name)
            with tarfile.open(Path(os.environ["OUT"]) / "gpu-suite-logs.tgz", "w:gz") as tar:
                tar.add(self.logs, arcname="logs")


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    stage_data = STAGE / "datasets"
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", nargs="+", default=env("GPU_SUITE_RUNS", "dfl yolov5nu dfl-half-r4 yolo26n").split(),
                    choices=list(CATALOGUE), help="GPU_SUITE_RUNS")
    ap.add_argument("--epochs", type=int, default=int(env("GPU_SUITE_EPOCHS", "20")), help="GPU_SUITE_EPOCHS")
    ap.add_argument("--imgsz", type=int, default=int(env("GPU_SUITE_IMGSZ", "640")), help="GPU_SUITE_IMGSZ")
    ap.add_argument("--batch", type=int, default=int(env("GPU_SUITE_BATCH", "64")), help="GPU_SUITE_BATCH")
    ap.add_argument("--seed", type=int, default=int(env("GPU_SUITE_SEED", "0")), help="GPU_SUITE_SEED")
    ap.add_argument("--device", default=env("GPU_SUITE_DEVICE", "0"), help="GPU_SUITE_DEVICE (cpu for the check)")
    ap.add_argument("--workers", default=env("GPU_SUITE_WORKERS", "auto"),
                    help=f"GPU_SUITE_WORKERS: a count, or auto (the probe's best for the side, else {DEFAULT_WORKERS})")
    ap.add_argument("--probe", nargs="*", type=int, default=[int(x) for x in env("GPU_SUITE_PROBE", "").split()],
                    help="GPU_SUITE_PROBE: worker counts to try per side (on its first model) before the runs")
    ap.add_argument("--probe-batches", type=int, default=int(env("GPU_SUITE_PROBE_BATCHES", "40")),
                    help="GPU_SUITE_PROBE_BATCHES")
    ap.add_argument("--max-images", type=int, default=int(env("GPU_SUITE_MAX_IMAGES", "0")),
                    help="GPU_SUITE_MAX_IMAGES: first N images of each split (the CPU check)")
    ap.add_argument("--data-root", default=env("GPU_SUITE_DATA_ROOT", str(stage_data if stage_data.is_dir()
                                                                           else ROOT.parent / "shared" / "datasets")),
                    help="GPU_SUITE_DATA_ROOT: holds deeppcb/")
    ap.add_argument("--peer-bench", default=env("GPU_SUITE_PEER_BENCH", str(
        STAGE / "bench" if (STAGE / "bench" / "peer.py").exists() else ROOT.parent / "shared" / "bench")),
        help="GPU_SUITE_PEER_BENCH: holds peer.py")
    ap.add_argument("--python", default=env("GPU_SUITE_PY", sys.executable), help="GPU_SUITE_PY")
    ap.add_argument("--peer-python", default=env("GPU_SUITE_PEER_PY", "/tmp/peer-venv/bin/python"
                                                 if Path("/tmp/peer-venv/bin/python").exists() else sys.executable),
                    help="GPU_SUITE_PEER_PY")
    ap.add_argument("--threads", type=int, default=int(env("GPU_SUITE_THREADS", "0")),
                    help="GPU_SUITE_THREADS: peer.py --threads (CPU only; 0: all cores)")
    ap.add_argument("--deadline-s", type=float, default=float(env("GPU_SUITE_DEADLINE_S", "450")),
                    help="GPU_SUITE_DEADLINE_S: start no run expected to end past this (0: none)")
    ap.add_argument("--ddp", default=env("GPU_SUITE_DDP", "auto"), choices=["auto", "off", "force"],
                    help="GPU_SUITE_DDP: the 2-process smoke run (auto: with 2+ GPUs)")
    ap.add_argument("--ours-args", default=env("GPU_SUITE_OURS_ARGS", ""),
                    help="GPU_SUITE_OURS_ARGS: more train.py flags for our runs, e.g. '--cache ram' (needs --tag)")
    ap.add_argument("--peer-kw", default=env("GPU_SUITE_PEER_KW", ""),
                    help="GPU_SUITE_PEER_KW: more model.train() keywords for the peer, e.g. 'cache=ram' (needs --tag)")
    ap.add_argument("--tag", default=env("GPU_SUITE_TAG", ""),
                    help="GPU_SUITE_TAG: names a variant of the recipe; part of the run keys and the budget")
    ap.add_argument("--smi-interval", type=float, default=0.5)
    ap.add_argument("--workdir", default=env("GPU_SUITE_WORKDIR", "/tmp/gpu-suite"),
                    help="GPU_SUITE_WORKDIR: a folder per call under it (runs, logs, stamps)")
    ap.add_argument("--out", default=env("GPU_SUITE_OUT", ""),
                    help="GPU_SUITE_OUT (default benchmarks/results/gpu-suite-<card>.json)")
    a = ap.parse_args(argv)
    if (a.ours_args or a.peer_kw) and not a.tag:
        ap.error("--ours-args / --peer-kw change the recipe: name the variant with --tag (GPU_SUITE_TAG)")
    return a


def main(argv: list[str] | None = None) -> int:
    a = parse(argv)
    suite = Suite(a)
    print(f"card {suite.card} ({suite.n_gpus} GPU), out {suite.out}, data {suite.data_root}", flush=True)
    sides: dict[str, str] = {}
    for name in a.runs:  # each side's first model in --runs: the loader is the side's, not the model's
        sides.setdefault(CATALOGUE[name][0], name)
    for side, name in sides.items():
        if a.probe:
            suite.probe(side, name, a.probe)
    for name in a.runs:
        suite.run(name)
    suite.ddp_smoke()
    suite.call["finished"] = now()
    suite.save()
    print(json.dumps(pair_summary(merge_results(suite.results, suite.new)["runs"]), indent=1))
    failed = [k for k, r in suite.new["runs"].items() if r.get("rc")]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

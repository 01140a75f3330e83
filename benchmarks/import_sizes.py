"""Checkpoint import across sizes and layouts: the original codes build random-init models (yolov5s/m/x and the
hub's yolov5-p2 of ultralytics/yolov5; yolov5su/xu, and yolov8n / yolo11n that must be refused, of the Ultralytics
package), save them as their train.py does (pickled model objects, fp16) with their eval-mode outputs for one
input; then ours reads each file and compares outputs.

    python -m benchmarks.import_sizes --peer-python /tmp/peer-venv/bin/python --yolov5 /tmp/yolov5

Needs ../shared/bench's peer venv (the Ultralytics package) and an ultralytics/yolov5 snapshot; their code runs in
that venv only, never in ours, and nothing they write leaves the temporary folder. Writes
results/import-sizes.json. The shipped fixtures (../shared/fixtures) are what the tests use.
"""
from __future__ import annotations

import argparse
import json
import platform
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
MODELS_YOLOV5 = [("models/yolov5s.yaml", 80), ("models/yolov5m.yaml", 3), ("models/yolov5x.yaml", 5),
                 ("models/hub/yolov5-p2.yaml", 2)]
MODELS_ULTRALYTICS = [("yolov5su.yaml", 80), ("yolov5xu.yaml", 3), ("yolov8n.yaml", 2), ("yolo11n.yaml", 2)]

# run by the peer python: build, perturb (so that no weight is at its init value), save fp16, record outputs
GENERATE = r"""
import sys, torch, numpy as np
out, code, models = sys.argv[1], sys.argv[2], eval(sys.argv[3])
if code == "yolov5":
    sys.path.insert(0, sys.argv[4])
    from models.yolo import DetectionModel
else:
    from ultralytics.nn.tasks import DetectionModel
torch.manual_seed(0)
x = torch.rand(1, 3, 256, 320)
np.save(f"{out}/x.npy", x.numpy())
for cfg, nc in models:
    m = DetectionModel(cfg, nc=nc).eval()
    with torch.no_grad():
        for n, p in m.named_parameters():
            if "dfl" not in n:
                p.add_(torch.randn_like(p) * 0.02)
        for b in m.buffers():
            if b.is_floating_point() and b.dim() == 1 and b.numel() > 3:
                b.uniform_(0.5, 1.5)
    m.half()
    name = cfg.split("/")[-1].replace(".yaml", "") + f"-{nc}"
    torch.save({"epoch": -1, "model": m, "ema": None, "optimizer": None}, f"{out}/{name}.pt")
    with torch.no_grad():
        y = m.float()(x)
    np.save(f"{out}/{name}.out.npy", (y[0] if isinstance(y, (list, tuple)) else y).numpy())
"""


def compare(pt: Path) -> dict:
    from utils.engine.checkpoint import CheckpointError, model_from_checkpoint, read_checkpoint
    try:
        ck = read_checkpoint(pt)
    except CheckpointError as e:
        return {"refused": str(e).replace(str(pt.parent) + "/", "")}
    model = model_from_checkpoint(ck).eval()
    with torch.no_grad():
        y = model(torch.from_numpy(np.load(pt.parent / "x.npy")))
    ref = np.load(pt.with_name(pt.stem + ".out.npy"))
    if ref.shape[1] != y.shape[1]:  # Ultralytics: (1, 4 + nc, N) xywh + class scores
        ref = ref.transpose(0, 2, 1)
        y = torch.cat((y[..., :4], y[..., 4:5] * y[..., 5:]), -1)
    d = np.abs(y.numpy() - ref)
    src = ck["converted_from"]
    return {"config": src["config"], "scale": src["scale"], "nc": len(ck["names"]), "outputs": list(ref.shape),
            "max_abs_diff_xywh_px": float(d[..., :4].max()), "max_abs_diff_scores": float(d[..., 4:].max())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--peer-python", default="/tmp/peer-venv/bin/python", help="python of the Ultralytics venv")
    ap.add_argument("--yolov5", default="/tmp/yolov5", help="an ultralytics/yolov5 snapshot")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "import-sizes.json")
    a = ap.parse_args()
    res = {"command": f"python -m benchmarks.import_sizes --peer-python {a.peer_python} --yolov5 {a.yolov5}",
           "input": "torch.manual_seed(0); torch.rand(1, 3, 256, 320); weights random init + N(0, 0.02), fp16",
           "machine": f"{platform.machine()} CPU, torch {torch.__version__}", "files": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for code, models in (("yolov5", MODELS_YOLOV5), ("ultralytics", MODELS_ULTRALYTICS)):
            cmd = [a.peer_python, "-c", GENERATE, tmp, code, repr(models), a.yolov5]
            subprocess.run(cmd, check=True, cwd=a.yolov5 if code == "yolov5" else tmp, capture_output=True)
        for pt in sorted(Path(tmp).glob("*.pt")):
            res["files"][pt.name] = compare(pt)
            print(pt.name, res["files"][pt.name])
    a.out.write_text(json.dumps(res, indent=1) + "\n")
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()

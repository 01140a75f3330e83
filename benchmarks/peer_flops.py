"""Params and GFLOPs of the Ultralytics peer models, as trained and as deployed (fused), for the equal-compute tables.

Runs in the peer's venv (bash ../shared/bench/setup_peer.sh /tmp/peer-venv makes it), not in ours:

    /tmp/peer-venv/bin/python -m benchmarks.peer_flops --imgsz 320 --nc 6 --out benchmarks/results/peer-flops-320.json

YOLO26 trains two heads (one-to-many and one-to-one) and keeps one for inference, so its deployed model costs
less than its training graph; the equal-compute tables compare deployed models. Counted by the package's own
ultralytics.utils.torch_utils.get_flops.
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
from pathlib import Path


def measure(model_yaml: str, imgsz: int, nc: int) -> dict[str, float]:
    from ultralytics.nn.tasks import DetectionModel
    from ultralytics.utils.torch_utils import get_flops

    model = DetectionModel(model_yaml, nc=nc, verbose=False)
    row = {"params_M_training": sum(p.numel() for p in model.parameters()) / 1e6,
           "GFLOPs_training_graph": get_flops(model, imgsz)}
    model.eval().fuse()
    row |= {"params_M": sum(p.numel() for p in model.parameters()) / 1e6, "GFLOPs": get_flops(model, imgsz)}
    return {k: round(v, 3) for k, v in row.items()}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=["yolov5nu", "yolo11n", "yolo26n", "yolo26n-p2"])
    ap.add_argument("--imgsz", type=int, default=320)
    ap.add_argument("--nc", type=int, default=6)
    ap.add_argument("--out", type=Path)
    opt = ap.parse_args(argv)
    import ultralytics

    result = {"what": f"params and GFLOPs at {opt.imgsz} px for {opt.nc} classes; GFLOPs, params_M: the fused "
                      "model as deployed (YOLO26: one head); *_training: the graph that trains",
              "command": "/tmp/peer-venv/bin/python -m benchmarks.peer_flops " + " ".join(sys.argv[1:] if argv is None
                                                                                        else argv),
              "machine": f"{platform.machine()}, ultralytics {ultralytics.__version__}",
              "models": {m: measure(f"{m}.yaml", opt.imgsz, opt.nc) for m in opt.models}}
    print(json.dumps(result, indent=1))
    if opt.out:
        opt.out.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()

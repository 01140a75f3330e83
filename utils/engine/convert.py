"""Convert a checkpoint written by ultralytics/yolov5 or the Ultralytics package (YOLOv5u) into a smalldet one.

    python -m utils.engine.convert yolov5s.pt yolov5s-smalldet.pt
    python -m utils.engine.convert yolov5nu.pt                      # writes yolov5nu-smalldet.pt beside it

The file is read without running any of its code (utils/engine/unpickle.py). ``--weights`` in train.py, val.py,
detect.py and export.py converts such files on the fly as well; a saved conversion loads faster and is a plain
tensor file that any torch.load(weights_only=True) reads.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from utils.engine.checkpoint import save_checkpoint
from utils.engine.foreign import ForeignCheckpointError, load_foreign


def convert(src: str | Path, dst: str | Path | None = None) -> Path:
    """Read src (a YOLOv5/Ultralytics checkpoint), write ours to dst; returns dst. Never overwrites a file."""
    src = Path(src)
    if not src.is_file():
        raise ForeignCheckpointError(f"{src}: weights file not found")
    dst = Path(dst) if dst else src.with_name(f"{src.stem}-smalldet.pt")
    if dst.exists():
        raise ForeignCheckpointError(f"{dst}: already exists; give another output path")
    save_checkpoint(load_foreign(src), dst)
    return dst


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("src", help="checkpoint written by ultralytics/yolov5 (v6.x/v7.0) or the Ultralytics package")
    ap.add_argument("dst", nargs="?", default=None, help="output path (default: SRC-smalldet.pt beside SRC)")
    opt = ap.parse_args(argv)
    try:
        dst = convert(opt.src, opt.dst)
    except (ForeignCheckpointError, OSError) as e:
        sys.exit(f"convert: error: {e}")
    from utils.engine.checkpoint import read_checkpoint
    ck = read_checkpoint(dst)
    src = ck["converted_from"]
    print(f"{opt.src} ({src['code']}, {src['class']}) -> {dst}: {src['config']} scale {src['scale']}, "
          f"nc={len(ck['names'])} {ck['names'][:10]}")


if __name__ == "__main__":
    main()

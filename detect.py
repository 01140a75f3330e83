"""Run a detector on images, folders, globs, .txt lists, videos, a webcam or a stream.

    python detect.py --weights best.pt --source img.jpg        # or dir/, 'imgs/*.png', list.txt, clip.mp4, 0
    python detect.py --weights best.pt --source aerial/ --slice 640 --overlap 0.2 --save-txt --save-json
    python detect.py --weights best.onnx --source img.jpg       # or best.torchscript (made by export.py)
    python detect.py --weights best.pt --source imgs/ --slice auto  # slice only images much larger than --imgsz

Outputs go to runs/detect/exp{,2,...}: drawn images and one mp4 per video (unless --nosave),
labels/<stem>.txt (--save-txt: cls cx cy w h conf, normalised; video frames <stem>_<frame>.txt),
predictions.json (--save-json: COCO results) and crops/<class>/<stem>_<k>.jpg (--save-crop).
The engine is utils/inference/runner.py; this script parses flags and calls it. ``run(**kwargs)``
(= ``utils.inference.runner.run_detection``, options: utils/inference/settings.py DetectSettings) returns
one FrameResult (path, frame, det, shape) per frame.
"""
from __future__ import annotations

import argparse
import sys

from utils.data.recipe import slice_arg
from utils.checkpoints.checkpoint import CheckpointError
from utils.inference.runner import FrameResult, run_detection
from utils.inference.settings import DetectSettings
from utils.inference.slicing import MERGE_MODES
from utils.inference.sources import STREAM_PREFIXES

__all__ = ["FrameResult", "main", "parse_opt", "run"]

run = run_detection  # the Python entry point: run(weights, source, **DetectSettings fields)


def parse_opt(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    a = p.add_argument
    D = DetectSettings.defaults()  # the settings own the defaults
    a("--weights", type=str, required=True, help="checkpoint .pt, or .onnx / .torchscript from export.py")
    a("--source", type=str, required=True, help="image, folder, glob, .txt list, video, webcam index or URL")
    a("--imgsz", "--img", "--img-size", type=int, default=D["imgsz"], help="inference size (long side, pixels)")
    a("--conf-thres", type=float, default=D["conf_thres"], help="confidence threshold")
    a("--iou-thres", type=float, default=D["iou_thres"], help="NMS IoU threshold (also for merging slices)")
    a("--max-det", type=int, default=D["max_det"], help="maximum detections per image")
    a("--device", default=D["device"], help="'' (auto), cpu, 0, cuda:0")
    a("--classes", nargs="+", type=int, help="keep only these class indices, e.g. --classes 0 2")
    a("--agnostic-nms", action="store_true", help="class-agnostic NMS")
    a("--vid-stride", type=int, default=D["vid_stride"], help="use every n-th video frame")
    a("--save-txt", action="store_true", help="labels/<stem>.txt: cls cx cy w h conf (normalised)")
    a("--save-conf", action="store_true", help="accepted for YOLOv5 compatibility: --save-txt always has conf")
    a("--save-json", action="store_true", help="predictions.json in the COCO results format")
    a("--save-crop", action="store_true", help="crops/<class>/<stem>_<k>.jpg per detection")
    a("--nosave", action="store_true", help="do not save drawn images / videos")
    a("--line-thickness", type=int, default=D["line_thickness"],
      help="box line width in pixels (default: from image size)")
    a("--hide-labels", action="store_true", help="boxes only")
    a("--hide-conf", action="store_true", help="labels without confidences")
    a("--project", default=D["project"])
    a("--name", default=D["name"])
    a("--exist-ok", action="store_true", help="reuse project/name instead of incrementing it")
    a("--half", action="store_true", help="fp16 autocast on CUDA")
    a("--slice", type=slice_arg, default=D["slice"], help="sliced inference on windows of this size in pixels "
      "(0 = off); auto: --imgsz windows for each image whose long side is over 1.5x --imgsz, the others whole")
    a("--overlap", type=float, default=D["overlap"], help="overlap fraction of neighbouring windows for --slice")
    a("--slice-batch", type=int, default=D["slice_batch"], help="windows per forward pass")
    a("--slice-full", action="store_true", help="also run the whole image at --imgsz and merge it in")
    a("--slice-merge", default=D["slice_merge"], choices=MERGE_MODES, help="duplicate removal across windows")
    a("--bit-depth", default=D["bit_depth"], help="16-bit/float images to 8 bits: auto, minmax or 9..16; use the "
      "training data YAML's bit_depth (docs/bit_depth.md)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> list[FrameResult]:
    opt = vars(parse_opt(argv))
    opt.pop("save_conf")
    src = str(opt["source"]).strip()
    opt["keep_results"] = not (src.isdigit() or src.lower().startswith(STREAM_PREFIXES))  # streams run for hours
    try:
        return run(**opt)
    except (CheckpointError, ValueError, OSError) as e:  # SourceError is a ValueError
        raise SystemExit(f"detect.py: error: {e}") from None
    except KeyboardInterrupt:  # Ctrl-C on a stream is how it ends: the outputs so far are written and closed
        print("detect.py: interrupted; the outputs written so far are kept", file=sys.stderr)
        raise SystemExit(130) from None


if __name__ == "__main__":
    main()

"""Run a detector on images, folders, globs, .txt lists, videos, a webcam or a stream.

    python detect.py --weights best.pt --source img.jpg        # or dir/, 'imgs/*.png', list.txt, clip.mp4, 0
    python detect.py --weights best.pt --source aerial/ --slice 640 --overlap 0.2 --save-txt --save-json
    python detect.py --weights best.onnx --source img.jpg       # or best.torchscript (made by export.py)

Outputs go to runs/detect/exp{,2,...}: drawn images and one mp4 per video (unless --nosave),
labels/<stem>.txt (--save-txt: cls cx cy w h conf, normalised; video frames <stem>_<frame>.txt),
predictions.json (--save-json: COCO results) and crops/<class>/<stem>_<k>.jpg (--save-crop).
``run(**kwargs)`` returns one FrameResult (path, frame, det, shape) per frame for Python use.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import NamedTuple, Sequence

import numpy as np
import torch
from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from utils.inference.backends import load_model
from utils.engine.checkpoint import CheckpointError
from utils.inference.writer import DetectionWriter
from utils.inference.predict import check_imgsz, model_stride, predict_image
from utils.logger import LOG
from utils.paths import increment_path
from utils.inference.slicing import MERGE_MODES, sliced_predict
from utils.inference.sources import STREAM_PREFIXES, SourceReader
from utils.torch_utils import select_device

ROOT = Path(__file__).resolve().parent


class FrameResult(NamedTuple):
    path: str              # image file, video file, or 'webcam0' / URL
    frame: int             # frame number in the video (0 for images)
    det: np.ndarray        # (n, 6) float32 [x1, y1, x2, y2, conf, cls] in original pixels, best first
    shape: tuple[int, int]  # the frame's (h, w)


def run(weights: str | Path, source: str | int | Path, imgsz: int = 640, conf_thres: float = 0.25,
        iou_thres: float = 0.45, max_det: int = 1000, device: str = "", classes: Sequence[int] | None = None,
        agnostic_nms: bool = False, vid_stride: int = 1, save_txt: bool = False, save_json: bool = False,
        save_crop: bool = False, nosave: bool = False, line_thickness: int | None = None, hide_labels: bool = False,
        hide_conf: bool = False, project: str | Path = "runs/detect", name: str = "exp", exist_ok: bool = False,
        half: bool = False, slice: int = 0, overlap: float = 0.2, slice_batch: int = 4, slice_full: bool = False,
        slice_merge: str = "nms", keep_results: bool = True, verbose: bool = True) -> list[FrameResult]:
    """Detect on every frame of source and write the outputs as it goes (see the module doc).
    Returns the per-frame detections (empty list when keep_results is False, e.g. for webcams)."""
    if slice_merge not in MERGE_MODES:
        raise ValueError(f"--slice-merge must be one of {MERGE_MODES}, got {slice_merge!r}")
    if slice < 0 or not 0 <= overlap < 1:
        raise ValueError(f"--slice {slice} must be >= 0 and --overlap {overlap} in [0, 1)")
    dev = select_device(device)
    if half and dev.type != "cuda":
        LOG.warning("WARNING --half needs CUDA; running in fp32 on CPU")
        half = False
    reader = SourceReader(source, vid_stride)  # a missing source or bad video fails here, before any work
    model = load_model(weights, dev, fuse=True)
    imgsz = check_imgsz(imgsz, model_stride(model))
    save_dir = increment_path(Path(project) / name, exist_ok, mkdir=True)
    writer = DetectionWriter(save_dir, model.names, model.cat_ids, save_img=not nosave, save_txt=save_txt,
                             save_json=save_json, save_crop=save_crop, line_thickness=line_thickness,
                             hide_labels=hide_labels, hide_conf=hide_conf, vid_stride=vid_stride)
    kw = dict(conf_thres=conf_thres, iou_thres=iou_thres, classes=classes, max_det=max_det, agnostic=agnostic_nms,
              half=half)
    results: list[FrameResult] = []
    n_frames = n_det = 0
    t_inf = 0.0
    frames = iter(reader)
    bar = tqdm(total=reader.total, unit="frame", disable=not verbose, bar_format="{l_bar}{bar:20}{r_bar}")
    try:
        with torch.inference_mode(), logging_redirect_tqdm([LOG]):  # warnings print above the bar
            for fr in frames:
                t0 = time.perf_counter()
                if slice:
                    det = sliced_predict(model, fr.img, slice, overlap, imgsz=imgsz, batch=slice_batch,
                                         full=slice_full, merge=slice_merge, **kw)
                else:
                    det = predict_image(model, fr.img, imgsz, **kw)
                t_inf += time.perf_counter() - t0
                d = det.numpy().astype(np.float32)
                shape = fr.img.shape[:2]  # before drawing: the writer draws on fr.img in place
                writer.write(fr, d)
                n_frames, n_det = n_frames + 1, n_det + len(d)
                if keep_results:
                    results.append(FrameResult(fr.path, fr.index, d, shape))
                bar.set_postfix_str(f"{Path(fr.path).name[-24:]}: {len(d)} det", refresh=False)
                bar.update()
    finally:  # whatever happened, the open video is finalised, the capture released and the JSON written
        if reader.total:
            bar.total = reader.total - len(reader.skipped)  # skipped images are not pending work
            bar.refresh()
        bar.close()
        frames.close()
        writer.close()
    if reader.skipped:
        LOG.warning(f"WARNING {len(reader.skipped)} unreadable image(s) skipped: {', '.join(reader.skipped[:5])}"
                    f"{' ...' if len(reader.skipped) > 5 else ''}")
    if verbose:
        how = f"sliced {slice}px, overlap {overlap}" + (" + full image" if slice_full else "") if slice else \
            f"imgsz {imgsz}"
        LOG.info(f"{n_frames} frames, {n_det} detections, {1e3 * t_inf / max(n_frames, 1):.1f} ms/frame "
                 f"inference + NMS ({how}, {dev})\nResults saved to {save_dir}")
    return results


def parse_opt(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    a = p.add_argument
    a("--weights", type=str, required=True, help="checkpoint .pt, or .onnx / .torchscript from export.py")
    a("--source", type=str, required=True, help="image, folder, glob, .txt list, video, webcam index or URL")
    a("--imgsz", "--img", "--img-size", type=int, default=640, help="inference size (long side, pixels)")
    a("--conf-thres", type=float, default=0.25, help="confidence threshold")
    a("--iou-thres", type=float, default=0.45, help="NMS IoU threshold (also for merging slices)")
    a("--max-det", type=int, default=1000, help="maximum detections per image")
    a("--device", default="", help="'' (auto), cpu, 0, cuda:0")
    a("--classes", nargs="+", type=int, help="keep only these class indices, e.g. --classes 0 2")
    a("--agnostic-nms", action="store_true", help="class-agnostic NMS")
    a("--vid-stride", type=int, default=1, help="use every n-th video frame")
    a("--save-txt", action="store_true", help="labels/<stem>.txt: cls cx cy w h conf (normalised)")
    a("--save-conf", action="store_true", help="accepted for YOLOv5 compatibility: --save-txt always has conf")
    a("--save-json", action="store_true", help="predictions.json in the COCO results format")
    a("--save-crop", action="store_true", help="crops/<class>/<stem>_<k>.jpg per detection")
    a("--nosave", action="store_true", help="do not save drawn images / videos")
    a("--line-thickness", type=int, default=None, help="box line width in pixels (default: from image size)")
    a("--hide-labels", action="store_true", help="boxes only")
    a("--hide-conf", action="store_true", help="labels without confidences")
    a("--project", default="runs/detect")
    a("--name", default="exp")
    a("--exist-ok", action="store_true", help="reuse project/name instead of incrementing it")
    a("--half", action="store_true", help="fp16 autocast on CUDA")
    a("--slice", type=int, default=0, help="sliced inference on windows of this size in pixels (0 = off)")
    a("--overlap", type=float, default=0.2, help="overlap fraction of neighbouring windows for --slice")
    a("--slice-batch", type=int, default=4, help="windows per forward pass")
    a("--slice-full", action="store_true", help="also run the whole image at --imgsz and merge it in")
    a("--slice-merge", default="nms", choices=MERGE_MODES, help="duplicate removal across windows")
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


if __name__ == "__main__":
    main()

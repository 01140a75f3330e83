"""The detection engine behind detect.py: every frame of a source (images, folders, globs, .txt lists,
videos, webcams, streams) through the model, plain or sliced, with outputs written as it goes.

Outputs go to project/name (incremented): drawn images and one mp4 per video (unless nosave),
labels/<stem>.txt (save_txt: cls cx cy w h conf, normalised; video frames <stem>_<frame>.txt),
predictions.json (save_json: COCO results) and crops/<class>/<stem>_<k>.jpg (save_crop), all by
utils/inference/writer.py. ``run_detection`` returns one FrameResult per frame; its options are
DetectSettings' fields (utils/inference/settings.py).
"""
from __future__ import annotations

import time
from pathlib import Path
from dataclasses import replace
from typing import Any, NamedTuple

import numpy as np
import torch
from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from utils.data.recipe import LARGE, image_slice
from utils.inference.backends import load_model
from utils.inference.settings import DetectSettings
from utils.inference.predict import check_imgsz, model_stride, predict_image
from utils.inference.slicing import MERGE_MODES, sliced_predict
from utils.inference.sources import SourceReader
from utils.inference.writer import DetectionWriter
from utils.logger import LOG
from utils.data.config import parse_bit_depth
from utils.run_lock import claim_run_dir
from utils.torch_utils import select_device


class FrameResult(NamedTuple):
    path: str              # image file, video file, or 'webcam0' / URL
    frame: int             # frame number in the video (0 for images)
    det: np.ndarray        # (n, 6) float32 [x1, y1, x2, y2, conf, cls] in original pixels, best first
    shape: tuple[int, int]  # the frame's (h, w)


def run_detection(weights: str | Path, source: str | int | Path, settings: DetectSettings | None = None,
                  **kwargs: Any) -> list[FrameResult]:
    """Detect on every frame of source and write the outputs as it goes (see the module doc). The options are
    DetectSettings' fields (utils/inference/settings.py), as settings and/or by name (a name overrides).
    Raises SourceError (a ValueError) for a missing source or unreadable video, CheckpointError for bad weights,
    TypeError for an unknown option. Returns the per-frame detections (empty list when keep_results is False,
    e.g. for webcams). slice="auto": frames much larger than imgsz (utils/data/recipe.image_slice) run in imgsz
    windows, others whole."""
    s = replace(settings or DetectSettings(), **kwargs)
    slice, overlap, imgsz, half, verbose = s.slice, s.overlap, s.imgsz, s.half, s.verbose
    if s.slice_merge not in MERGE_MODES:
        raise ValueError(f"--slice-merge must be one of {MERGE_MODES}, got {s.slice_merge!r}")
    auto = slice == "auto"
    if (not auto and (not isinstance(slice, int) or slice < 0)) or not 0 <= overlap < 1:
        raise ValueError(f"--slice {slice} must be >= 0 or 'auto' and --overlap {overlap} in [0, 1)")
    dev = select_device(s.device)
    if half and dev.type != "cuda":
        LOG.warning("WARNING --half needs CUDA; running in fp32 on CPU")
        half = False
    # a missing source, a bad video or a bad --bit-depth fails here, before any work
    reader = SourceReader(source, s.vid_stride, parse_bit_depth(s.bit_depth, "--bit-depth"))
    model = load_model(weights, dev, fuse=True)
    imgsz = check_imgsz(imgsz, model_stride(model))
    if auto and verbose:
        LOG.info(f"--slice auto: frames with a long side over {LARGE * imgsz:.0f} px ({LARGE}x --imgsz {imgsz}) run "
                 f"in {imgsz} px windows, overlap {overlap}; smaller ones whole")
    save_dir, lock = claim_run_dir(Path(s.project) / s.name, s.exist_ok)  # one writer per folder
    writer = DetectionWriter(save_dir, model.names, model.cat_ids, save_img=not s.nosave, save_txt=s.save_txt,
                             save_json=s.save_json, save_crop=s.save_crop, line_thickness=s.line_thickness,
                             hide_labels=s.hide_labels, hide_conf=s.hide_conf, vid_stride=s.vid_stride)
    kw = dict(conf_thres=s.conf_thres, iou_thres=s.iou_thres, classes=s.classes, max_det=s.max_det,
              agnostic=s.agnostic_nms, half=half)
    results: list[FrameResult] = []
    n_frames = n_det = n_sliced = 0
    t_inf = 0.0
    frames = iter(reader)
    bar = tqdm(total=reader.total, unit="frame", disable=not verbose, bar_format="{l_bar}{bar:20}{r_bar}")
    try:
        with torch.inference_mode(), logging_redirect_tqdm([LOG]):  # warnings print above the bar
            for fr in frames:
                t0 = time.perf_counter()
                win = image_slice(fr.img.shape[:2], imgsz) if auto else slice  # auto: decided per frame
                n_sliced += bool(win)
                if win:
                    det = sliced_predict(model, fr.img, win, overlap, imgsz=imgsz, batch=s.slice_batch,
                                         full=s.slice_full, merge=s.slice_merge, **kw)
                else:
                    det = predict_image(model, fr.img, imgsz, **kw)
                t_inf += time.perf_counter() - t0
                d = det.numpy().astype(np.float32)
                shape = fr.img.shape[:2]  # before drawing: the writer draws on fr.img in place
                writer.write(fr, d)
                n_frames, n_det = n_frames + 1, n_det + len(d)
                if s.keep_results:
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
        lock.release()
    if reader.skipped:
        LOG.warning(f"WARNING {len(reader.skipped)} unreadable image(s) skipped: {', '.join(reader.skipped[:5])}"
                    f"{' ...' if len(reader.skipped) > 5 else ''}")
    if verbose:
        full = " + full image" if s.slice_full else ""
        how = (f"--slice auto: {n_sliced} sliced in {imgsz}px windows, overlap {overlap}{full}, the others whole"
               if auto else f"sliced {slice}px, overlap {overlap}{full}" if slice else f"imgsz {imgsz}")
        LOG.info(f"{n_frames} frames, {n_det} detections, {1e3 * t_inf / max(n_frames, 1):.1f} ms/frame "
                 f"inference + NMS ({how}, {dev})\nResults saved to {save_dir}")
    return results

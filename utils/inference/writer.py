"""detect.py's outputs, written frame by frame so an interrupted run keeps what it has done:
drawn images, one mp4 per video or stream, YOLO txt labels, crops and COCO-results JSON."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np
import torch

from utils.inference.annotate import draw_detections, save_crops
from utils.logger import LOG
from utils.paths import UniqueStems
from utils.inference.postprocess import to_coco_results
from utils.inference.sources import Frame

SAVE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")  # others are saved as .png


class DetectionWriter:
    """Writes under save_dir: <stem>.<ext> / <stem>.mp4 (unless save_img is False), labels/<stem>.txt
    (cls cx cy w h conf, normalised to the image; video frames <stem>_<frame>.txt), crops/<class>/
    <stem>_<k>.jpg and predictions.json. Two sources with the same file name get distinct stems."""

    def __init__(self, save_dir: str | Path, names: Sequence[str], cat_ids: Sequence[int], save_img: bool = True,
                 save_txt: bool = False, save_json: bool = False, save_crop: bool = False,
                 line_thickness: int | None = None, hide_labels: bool = False, hide_conf: bool = False,
                 vid_stride: int = 1):
        self.dir = Path(save_dir)
        self.names, self.cat_ids = list(names), list(cat_ids)
        self.save_img, self.save_txt, self.save_json, self.save_crop = save_img, save_txt, save_json, save_crop
        self.draw_kw = dict(line_thickness=line_thickness, hide_labels=hide_labels, hide_conf=hide_conf)
        self.vid_stride = vid_stride
        self.stems = UniqueStems()
        self.jdict: list[dict] = []
        self.writer: cv2.VideoWriter | None = None
        self.writer_src = ""
        self.videos: list[Path] = []
        self.dir.mkdir(parents=True, exist_ok=True)
        if save_txt:
            (self.dir / "labels").mkdir(exist_ok=True)

    def stem(self, path: str) -> str:
        """A safe file-name stem for path, unique within this run."""
        return self.stems(path)

    def write(self, frame: Frame, det: np.ndarray) -> None:
        """All outputs of one frame; det (n, 6) [x1, y1, x2, y2, conf, cls] in the frame's pixels."""
        stem = self.stem(frame.path)
        name = stem if frame.kind == "image" else f"{stem}_{frame.index}"
        if self.save_txt:
            write_txt(det, {"orig_shape": frame.img.shape[:2]}, self.dir / "labels" / f"{name}.txt")
        if self.save_json:
            image_id = int(name) if name.isdigit() else name  # COCO ids are ints when the file names are
            for r in to_coco_results(det, 0, self.cat_ids):
                r["image_id"] = image_id
                r["file_name"] = Path(frame.path).name
                if frame.kind != "image":
                    r["frame"] = frame.index
                self.jdict.append(r)
        if self.save_crop:
            save_crops(frame.img, det, self.names, self.dir / "crops", name)
        if not self.save_img:
            return
        img = draw_detections(frame.img, det, self.names, **self.draw_kw)
        if frame.kind == "image":
            ext = Path(frame.path).suffix.lower()
            out = self.dir / (stem + (ext if ext in SAVE_EXTS else ".png"))
            if not cv2.imwrite(str(out), img):
                raise OSError(f"{out}: cv2 could not write the image")
        else:
            self._video_frame(frame, stem, img)

    def _video_frame(self, frame: Frame, stem: str, img: np.ndarray) -> None:
        if self.writer is None or self.writer_src != frame.path:
            self._release()
            out = self.dir / f"{stem}.mp4"
            fps = max(frame.fps / self.vid_stride, 1.0)  # dropped frames keep the clip at real-time speed
            self.writer = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*"mp4v"), fps, img.shape[1::-1])
            if not self.writer.isOpened():
                raise OSError(f"{out}: cv2 could not open a video writer (mp4v)")
            self.writer_src = frame.path
            self.videos.append(out)
        self.writer.write(img)

    def _release(self) -> None:
        if self.writer is not None:
            self.writer.release()
            self.writer = None

    def close(self) -> None:
        """Finish the open video and write predictions.json (also after an error or Ctrl-C)."""
        self._release()
        if self.save_json:
            path = self.dir / "predictions.json"
            path.write_text(json.dumps(self.jdict))
            LOG.info(f"{len(self.jdict)} COCO results written to {path}")


def write_txt(det: torch.Tensor | np.ndarray, meta: dict, path: Path) -> None:
    """One line per detection: cls cx cy w h conf, normalised by the original image size."""
    d = det.detach().cpu().numpy() if isinstance(det, torch.Tensor) else np.asarray(det)
    h0, w0 = meta["orig_shape"]
    with open(path, "w") as f:
        for x1, y1, x2, y2, conf, c in d.tolist():
            f.write(f"{int(c)} {(x1 + x2) / 2 / w0:.6f} {(y1 + y2) / 2 / h0:.6f} {(x2 - x1) / w0:.6f} "
                    f"{(y2 - y1) / h0:.6f} {conf:.5f}\n")

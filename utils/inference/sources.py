"""Inference sources for detect.py: an image, a folder, a glob, a .txt list of paths, a video file,
a webcam index or a stream URL, read as one sequence of BGR frames.

Problems the user can fix before the run (a missing path, an empty folder, a video OpenCV cannot
open) raise at once, naming the path; an image that fails to decode during the run is skipped with
a warning and counted, so one bad file never stops a long run.
"""
from __future__ import annotations

import glob
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

from utils.data.image_io import read_image
from utils.logger import LOG

IMG_EXTS = (".bmp", ".jpg", ".jpeg", ".png", ".tif", ".tiff", ".webp", ".pfm", ".ppm", ".pgm", ".jp2")
VID_EXTS = (".mp4", ".avi", ".mkv", ".mov", ".m4v", ".mpg", ".mpeg", ".wmv", ".webm", ".ts", ".asf")
STREAM_PREFIXES = ("rtsp://", "rtmp://", "http://", "https://")


class SourceError(ValueError):
    """A source that cannot be used: unsupported type, empty folder, unreadable video."""


@dataclass
class Source:
    """What --source names: a list of image / video files, or one live stream (webcam index or URL)."""
    files: list[str]
    stream: int | str | None = None

    @property
    def is_stream(self) -> bool:
        return self.stream is not None


@dataclass
class Frame:
    path: str          # the file, or 'webcam0' / the URL for streams
    index: int         # frame number in the video or stream (0 for an image)
    img: np.ndarray    # BGR uint8 (h, w, 3)
    kind: str          # 'image', 'video' or 'stream'
    fps: float = 0.0   # the video's frame rate (0 for images)


def is_image(path: str | Path) -> bool:
    return Path(path).suffix.lower() in IMG_EXTS


def is_video(path: str | Path) -> bool:
    return Path(path).suffix.lower() in VID_EXTS


def _media(paths: list[str]) -> list[str]:
    return [p for p in paths if Path(p).is_file() and (is_image(p) or is_video(p))]


def _expand(entry: str, where: str = "") -> list[str]:
    """One path, folder or glob -> sorted media files; where says which list named it."""
    if any(c in entry for c in "*?["):
        files = _media(sorted(glob.glob(entry, recursive=True)))
        if not files:
            raise FileNotFoundError(f"{entry}{where}: no image or video files match this pattern")
        return files
    p = Path(entry)
    if p.is_dir():
        files = _media(sorted(str(f) for f in p.iterdir()))
        if not files:
            raise SourceError(f"{entry}{where}: folder holds no images ({' '.join(IMG_EXTS)}) or videos "
                              f"({' '.join(VID_EXTS)})")
        return files
    if not p.exists():
        raise FileNotFoundError(f"{entry}{where}: no such file or directory")
    if not (is_image(p) or is_video(p)):
        raise SourceError(f"{entry}{where}: unsupported file type '{p.suffix}'; images {' '.join(IMG_EXTS)}, "
                          f"videos {' '.join(VID_EXTS)}, or a .txt list of paths")
    return [entry]


def _read_list(path: Path) -> list[str]:
    """A .txt of paths, one per line (blank lines and # comments ignored); relative paths are taken
    from the working directory, else from the list's folder."""
    files = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        entry = line.strip()
        if not entry or entry.startswith("#"):
            continue
        if not Path(entry).is_absolute() and not Path(entry).exists() and (path.parent / entry).exists():
            entry = str(path.parent / entry)
        files += _expand(entry, f" (listed in {path} line {n})")
    if not files:
        raise SourceError(f"{path}: the list names no files")
    return files


def parse_source(source: str | int | Path) -> Source:
    """--source -> Source. Digits are a webcam index, rtsp/http URLs a stream, a .txt a list."""
    s = str(source).strip()
    if not s:
        raise SourceError("--source is empty; give an image, folder, glob, .txt list, video or webcam index")
    if s.isdigit():
        return Source([], int(s))
    if s.lower().startswith(STREAM_PREFIXES):
        return Source([], s)
    if s.lower().endswith(".txt") and Path(s).is_file():
        return Source(_read_list(Path(s)))
    return Source(_expand(s))


def _open(src: str | int) -> cv2.VideoCapture:
    cap = cv2.VideoCapture(src)
    if not cap.isOpened():
        cap.release()
        raise SourceError(f"{f'webcam {src}' if isinstance(src, int) else src}: could not be opened by OpenCV")
    return cap


def _probe_video(path: str) -> int:
    """Frame count of a video, after checking that OpenCV can open and decode it."""
    cap = cv2.VideoCapture(path)
    try:
        if not cap.isOpened() or not cap.read()[0]:
            raise SourceError(f"{path}: video could not be opened or decoded by OpenCV (corrupt file or codec)")
        return max(int(cap.get(cv2.CAP_PROP_FRAME_COUNT)), 1)
    finally:
        cap.release()


class SourceReader:
    """Iterates Frames over a parsed source; every vid_stride-th frame of videos and streams.
    `total` is the number of frames to expect (None for a live stream) for the progress bar;
    `skipped` lists the images that could not be decoded. Single use: iterate once."""

    def __init__(self, source: str | int | Path, vid_stride: int = 1, bit_depth: int | str = "auto"):
        self.bit_depth = bit_depth  # 16-bit / float images: how they become 8 bits (utils/data/image_io.py)
        if int(vid_stride) < 1:
            raise SourceError(f"--vid-stride must be >= 1, got {vid_stride}")
        self.vid_stride = int(vid_stride)
        self.source = parse_source(source)
        self.skipped: list[str] = []
        self.total: int | None = None
        self._cap: cv2.VideoCapture | None = None
        if self.source.is_stream:  # opened now so that a missing camera fails before any output is made
            self._cap = _open(self.source.stream)
        else:  # open every video now: a bad one fails before any work is done
            self.total = sum(math.ceil(_probe_video(f) / self.vid_stride) if is_video(f) else 1
                             for f in self.source.files)

    def __iter__(self) -> Iterator[Frame]:
        if self.source.is_stream:
            yield from self._frames(self.source.stream, "stream")
            return
        for f in self.source.files:
            if is_video(f):
                yield from self._frames(f, "video")
                continue
            try:  # special=True: grey, RGBA and 16-bit files convert exactly as in training
                img = read_image(f, special=True, bit_depth=self.bit_depth)
            except OSError:
                LOG.warning(f"WARNING {f}: image could not be read (corrupt or unsupported), skipped")
                self.skipped.append(f)
                continue
            yield Frame(f, 0, img, "image")

    def _frames(self, src: str | int, kind: str) -> Iterator[Frame]:
        cap, self._cap = self._cap or _open(src), None
        name = f"webcam{src}" if isinstance(src, int) else str(src)
        try:
            expected = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) if kind == "video" else 0
            fps = cap.get(cv2.CAP_PROP_FPS) or 30.0
            fps = fps if math.isfinite(fps) and 0 < fps < 1000 else 30.0  # webcams may report 0 or nonsense
            i = 0
            while True:
                if i % self.vid_stride:  # grab() skips decoding of the frames we drop
                    if not cap.grab():
                        break
                else:
                    ok, img = cap.read()
                    if not ok:
                        break
                    yield Frame(name, i, img, kind, fps)
                i += 1
            if i == 0:
                raise SourceError(f"{name}: no frame could be read")
            if 0 < i < expected:  # a truncated or damaged file: say so rather than end quietly
                LOG.warning(f"WARNING {name}: only {i} of its {expected} frames could be read (truncated or "
                            f"corrupt video); the rest were skipped")
        finally:
            cap.release()

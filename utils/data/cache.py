"""Decode each image once: `--cache ram` keeps the decoded arrays in memory, `--cache disk` keeps
them as .npy files in a cache folder and memory-maps them, `--cache auto` uses RAM when the copies
take at most a quarter of the available memory and caches nothing otherwise.

Without a cache a mosaic decodes four JPEGs per sample, and a native-resolution tile of a
4000x2250 photo decodes all 27 MB of it to use 1.2 MB. What is stored is exactly what the loader
would decode: the image at the size training reads it (long side imgsz, from the same reduced
JPEG decode and resize) and, for images that tiles are cut from, the native-resolution image as
well, so batches are bit-identical with and without a cache. A memory-mapped native image lets a
tile read only its window's pages, and the OS page cache shares them between loader workers.

The disk cache lives outside the data folder: $SMALLDET_CACHE, else $XDG_CACHE_HOME/smalldet
(~/.cache/smalldet), in images/<sha1>.npy named for the file's path, size and modification time,
the variant stored and DECODE_VERSION, so a changed file is decoded again; nothing there is ever loaded as
pickled objects (np.load with allow_pickle=False). Delete the folder to reclaim the space.
"""
from __future__ import annotations

import hashlib
import logging
import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
from tqdm import tqdm

from utils.data.coco import DatasetError

LOG = logging.getLogger("smalldet")
CACHE_MODES = ("ram", "disk", "auto")
AUTO_RAM_SHARE = 0.25  # --cache auto caches in RAM when the copies take at most this share of the available memory
DECODE_VERSION = 1  # part of every disk copy's name: bump it when decoding changes (utils/data/image_io.py)


def cache_mode(cache: bool | str | None) -> str:
    """'' (no cache), 'ram', 'disk' or 'auto' from a --cache value (True = 'ram'; False, None, '', 'none' = '')."""
    if cache is True:
        return "ram"
    if cache in (False, None, "", "none"):
        return ""
    if cache not in CACHE_MODES:
        raise ValueError(f"--cache {cache!r}: choose ram, disk or auto (or leave it out)")
    return str(cache)


ENV_CACHE = "SMALLDET_CACHE"


def cache_root() -> Path:
    """smalldet's one cache folder (disk image copies, converted label sets): $SMALLDET_CACHE, else
    $XDG_CACHE_HOME/smalldet, else ~/.cache/smalldet."""
    if os.environ.get(ENV_CACHE):
        return Path(os.environ[ENV_CACHE]).expanduser().resolve()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache").resolve() / "smalldet"


def refuse_inside(folder: Path, data_dirs: Iterable[Path], what: str, kind: str = "data folder") -> None:
    """DatasetError when folder (a cache of what: its description) is one of data_dirs or lies in one:
    smalldet never writes into a user's data."""
    resolved = folder.resolve()
    for d in data_dirs:
        d = Path(d).resolve()
        if resolved == d or d in resolved.parents:
            raise DatasetError(f"{what} {folder} lies inside the {kind} {d}; set {ENV_CACHE} to a folder outside "
                               f"it (smalldet never writes into your data)")


def _free_ram() -> int:
    """Bytes of memory available (MemAvailable: free + reclaimable page cache), else free pages."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 1 << 62


class ImageCache:
    """Decoded images keyed (index, variant). get() returns the stored array, or None when the
    image is not stored (it failed to decode when the cache was built: the loader's own path
    then reads it again and reports it)."""

    def __init__(self, mode: str, folder: Path | None = None):
        self.mode, self.folder = mode, folder
        self._ram: dict[tuple[int, str], np.ndarray] = {}
        self._files: dict[tuple[int, str], Path] = {}
        self._maps: dict[tuple[int, str], np.ndarray] = {}  # memory maps opened in this process
        self.nbytes = 0

    def get(self, i: int, variant: str) -> np.ndarray | None:
        key = (i, variant)
        if self.mode == "ram":
            return self._ram.get(key)
        m = self._maps.get(key)
        if m is None and key in self._files:
            m = self._maps[key] = np.asarray(np.load(self._files[key], mmap_mode="r", allow_pickle=False))
        return m

    def __getstate__(self) -> dict:  # spawned workers re-open their own memory maps
        return {**self.__dict__, "_maps": {}}

    def fill(self, items: list[tuple[int, str, str]], decode: Callable[[int, str], np.ndarray],
             expected_bytes: int, desc: str) -> None:
        """Store decode(i, variant) for each (i, variant, file identity) in items; a decode that
        raises OSError is left out. RAM: refused with a warning when it would not fit."""
        t0 = time.perf_counter()
        if self.mode == "auto":  # RAM when it is cheap, else nothing (never the disk unasked)
            # DDP: every process on this machine caches its own copy, all deciding at about the same time
            procs = max(int(os.environ.get("LOCAL_WORLD_SIZE", "1") or 1), 1)
            fits = expected_bytes * procs <= AUTO_RAM_SHARE * _free_ram()
            LOG.info(f"{desc}: --cache auto: {'RAM' if fits else 'no cache'} (~{expected_bytes / 1e9:.1f} GB"
                     f"{f' x {procs} processes' if procs > 1 else ''} of {_free_ram() / 1e9:.1f} GB available)")
            self.mode = "ram" if fits else ""
            if not fits:
                return
        if self.mode == "ram" and expected_bytes > 0.8 * _free_ram():
            LOG.warning(f"WARNING {desc}: --cache ram needs ~{expected_bytes / 1e9:.1f} GB but "
                        f"{_free_ram() / 1e9:.1f} GB are free: not caching (try --cache disk)")
            return
        if self.mode == "disk":
            self.folder.mkdir(parents=True, exist_ok=True)

        def one(item: tuple[int, str, str]) -> tuple[tuple[int, str], np.ndarray | Path | None]:
            i, variant, ident = item
            if self.mode == "disk":
                key = f"{ident}|{variant}|decode v{DECODE_VERSION}"
                path = self.folder / (hashlib.sha1(key.encode()).hexdigest() + ".npy")
                if path.exists():
                    return (i, variant), path
            try:
                img = decode(i, variant)
            except OSError:
                return (i, variant), None
            if self.mode == "ram":
                img.flags.writeable = False  # an augmentation writing in place must not change the cache
                return (i, variant), img
            tmp = path.with_name(f"{path.stem}.{os.getpid()}.tmp.npy")
            np.save(tmp, np.ascontiguousarray(img), allow_pickle=False)
            os.replace(tmp, path)  # atomic: another process building the same cache never sees half a file
            return (i, variant), path

        with ThreadPoolExecutor(min(8, os.cpu_count() or 1)) as ex:  # decoding releases the GIL
            for key, val in tqdm(ex.map(one, items), total=len(items), desc=f"caching ({self.mode})",
                                 unit="img", leave=False, disable=len(items) < 200):
                if val is None:
                    continue
                if self.mode == "ram":
                    self._ram[key] = val
                    self.nbytes += val.nbytes
                else:
                    self._files[key] = val
                    self.nbytes += val.stat().st_size
        where = "RAM" if self.mode == "ram" else f"{self.folder}"
        LOG.info(f"{desc}: cached {len(self._ram) + len(self._files)} images ({self.nbytes / 1e9:.2f} GB) in "
                 f"{where}, {time.perf_counter() - t0:.1f} s")


def file_identity(path: str) -> str:
    """What names a file's decoded copy: its absolute path, size and modification time."""
    st = os.stat(path)
    return f"{os.path.abspath(path)}|{st.st_size}|{st.st_mtime_ns}"

"""COCO-json detection dataset, batches and loaders.

    python -m utils.data.dataset data/deeppcb.yaml [--imgsz 640] [--check full]

prints one validation summary per split and exits non-zero when a split cannot be used.

Items follow docs/interfaces.md: (img uint8 (3, H, W) RGB, labels float (n, 5) [cls, cx, cy, w, h]
in pixels of img, path, meta{image_id, orig_shape, ratio, pad}) with
original = (letterboxed - pad) / ratio. In training, labels also hold the image's ignore regions
(COCO iscrowd=1) as rows of class IGNORE_CLASS (-1): docs/ignore-regions.md.
"""
from __future__ import annotations

import argparse
import logging
import math
import os
import sys
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, get_worker_info


from utils.augment.finish import draw_hsv_tables, hsv_to_rgb, stack_chw
from utils.augment.mosaic_affine import mosaic4_affine
from utils.augment.transforms import PAD_VALUE, flip_lr, flip_ud, letterbox, mixup, random_affine, xyxy_to_cxcywh
from utils.data.cache import ImageCache, cache_mode, cache_root, file_identity, refuse_inside
from utils.data.malloc import keep_freed_memory
from utils.data.coco import DatasetError, load_coco
from utils.augment.copy_paste import copy_paste_small
from utils.data.image_io import read_image
from utils.data.config import load_data_config
from utils.augment.crops import class_balance_weights, crop_boxes, tile_window
from utils.boxes import IGNORE_CLASS

__all__ = ["CocoDataset", "DatasetError", "collate_fn", "create_dataloader", "load_data_config", "read_image"]
LOG = logging.getLogger("smalldet")
# OpenCV's own thread pool and forked DataLoader workers do not mix: a pool made in the parent is
# unusable in the child, and touching it there (even cv2.setNumThreads) can hang the worker.
# Loader workers are the parallelism, so OpenCV runs single-threaded everywhere.
cv2.setNumThreads(0)
STAT_SLOTS = 65  # one row of box counters per DataLoader worker (+ the main process): no locks needed
STAT_KEYS = ("kept", "dropped_small", "dropped_cut", "unreadable_images")
LOAD_RETRIES = 10  # training replaces an image that fails to decode by a random other one, this many times


class CocoDataset(Dataset):
    """One split of a COCO data set, validated on construction (see `report`)."""

    exact_warp = False  # True: mosaics warp bit for bit as mosaic4 + random_affine (slower; see load_mosaic)
    # one-channel files stay one channel until the sample's last step (3x less work and cache; the
    # same pixels: docs/loader.md); False decodes them to BGR as every other image
    gray_path = True
    # training on a GPU: colour samples leave the HSV pixel work to the device (utils/augment/hsv_device.py),
    # their tables ride in meta['hsv']; utils/engine/build.py sets it
    hsv_on_device = False

    def __init__(self, json_path: str, img_dir: str, imgsz: int = 640, batch_size: int = 16, stride: int = 32,
                 hyp: dict | None = None, augment: bool = False, rect: bool = False, cache: bool | str = False,
                 names: list[str] | None = None, single_cls: bool = False, seed: int = 0, check: str = "header",
                 split: str = "", verbose: bool = True, bit_depth: int | str = "auto", rect_pad: float = 0.0,
                 cache_dir: str | None = None):
        coco = load_coco(json_path, img_dir, names=names, check=check, split=split, bit_depth=bit_depth)
        self.report = coco.report
        if verbose:
            LOG.info(self.report.summary())
        self.names, self.cat_ids = coco.names, coco.cat_ids
        self.json_path, self.img_dir = coco.json_path, coco.img_dir
        self.files, self.image_ids, self.shapes = coco.files, coco.image_ids, coco.shapes
        self.boxes, self.ann_ids, self.special = coco.boxes, coco.ann_ids, coco.convert
        # how read_image decodes (utils/data/image_io.py); orientation 0: not known, read_image reads it
        self.orientation = coco.orientation if coco.orientation is not None else np.zeros(len(coco.files), np.int64)
        self.bit_depth = bit_depth
        self.gray = coco.gray if coco.gray is not None else np.zeros(len(coco.files), bool)
        self.ignore = coco.ignore or [np.zeros((0, 4), np.float32)] * len(self.files)
        if imgsz % stride:
            raise ValueError(f"imgsz {imgsz} must be a multiple of the model stride {stride}")
        self.imgsz, self.stride, self.batch_size = int(imgsz), int(stride), int(batch_size)
        self.augment, self.rect, self.single_cls = augment, rect, single_cls
        self.hyp = dict(hyp or {})
        hp = self.hyp if augment else {}
        self.mosaic_p = 0.0 if rect else float(hp.get("mosaic", 0.0))  # rect batches need whole images
        self.tile_p = float(hp.get("tile", 0.0))
        self.tile_balance = float(hp.get("tile_balance", 0.0))
        # boxes per class over the split: how rare a class is when a tile centre is drawn
        self.class_counts = np.bincount(np.concatenate([b[:, 0] for b in self.boxes] + [np.zeros(0)]).astype(np.int64),
                                        minlength=len(self.names))
        self.min_box_px = float(self.hyp.get("min_box_px", 1.0))
        # training carries iscrowd=1 regions as label rows of IGNORE_CLASS (the loss skips their cells);
        # hyp crowd_ignore=0 drops them (their cells are background), evaluation never sees them
        self.with_ignore = augment and bool(hp.get("crowd_ignore", 1.0)) and any(len(r) for r in self.ignore)
        self.rng = np.random.default_rng(seed)
        self.stats = torch.zeros((STAT_SLOTS, len(STAT_KEYS)), dtype=torch.int64).share_memory_()
        self._stats_np = self.stats.numpy()  # the same shared memory: a numpy += costs ~1 us, torch's ~40
        self.batch_shapes = None
        self.rect_pad = float(rect_pad)  # rect batch shapes grow by this many strides (YOLOv5's val.py: 0.5)
        self._bad: set[int] = set()  # indices that failed to decode in this process (warned once each)
        if rect:
            self._sort_for_rect()
        self.cache: ImageCache | None = None
        if cache_mode(cache):
            self.cache_images(cache_mode(cache), cache_dir)
        elif verbose and self.tile_p and (self.shapes.max(1) > 2 * self.imgsz).any():
            LOG.info(f"{self.json_path}: tiles decode their whole native image each time; --cache ram or "
                     f"--cache disk decodes each image once (docs/loader.md)")

    def __len__(self) -> int:
        return len(self.files)

    # ---- counters ---------------------------------------------------------------------------
    def box_stats(self) -> dict[str, int]:
        """Boxes kept and dropped by augmentation so far (all workers): dropped_small are boxes
        still in view but below hyp min_box_px; dropped_cut were pushed mostly out of the frame.
        unreadable_images: loads that failed to decode (replaced in training, left out in evaluation)."""
        return dict(zip(STAT_KEYS, self.stats.sum(0).tolist()))

    @property
    def dropped_boxes(self) -> int:
        return int(self.stats[:, 1].sum())

    def _count(self, kept: int, small: int, cut: int, unreadable: int = 0) -> None:
        info = get_worker_info()
        self._stats_np[(info.id % (STAT_SLOTS - 1)) + 1 if info else 0] += (kept, small, cut, unreadable)

    # ---- rectangular batches ----------------------------------------------------------------
    def _sort_for_rect(self) -> None:
        """Order images by aspect ratio so a batch shares one shape with little padding (YOLOv5)."""
        ar = self.shapes[:, 0] / self.shapes[:, 1]  # h / w
        order = np.argsort(ar, kind="stable")
        self.files = [self.files[i] for i in order]
        self.boxes = [self.boxes[i] for i in order]
        self.ann_ids = [self.ann_ids[i] for i in order]
        self.ignore = [self.ignore[i] for i in order]
        self.image_ids, self.shapes, self.special = self.image_ids[order], self.shapes[order], self.special[order]
        self.orientation, self.gray = self.orientation[order], self.gray[order]
        ar = ar[order]
        nb = math.ceil(len(ar) / self.batch_size)
        shapes = np.ones((nb, 2))
        for b in range(nb):
            a = ar[b * self.batch_size:(b + 1) * self.batch_size]
            if a.max() < 1:  # all landscape: h shrinks
                shapes[b] = (a.max(), 1.0)
            elif a.min() > 1:  # all portrait
                shapes[b] = (1.0, 1.0 / a.min())
        self.batch_shapes = (np.ceil(shapes * self.imgsz / self.stride + self.rect_pad) * self.stride).astype(np.int64)

    # ---- loading ----------------------------------------------------------------------------
    def _keep_native(self, i: int) -> bool:
        return self.tile_p > 0 and self.shapes[i].max() > self.imgsz

    def _variant(self, i: int, native: bool) -> str:
        """Names what _decode(i, native) makes, for the cache: native, or the training-size copy."""
        h, w = self._resized_hw(i)
        # read_image's decode options
        how = f"{int(self.special[i])}-{self.bit_depth}-{int(self.orientation[i])}{'-gray' if self._gray(i) else ''}"
        return f"native-{how}" if native else f"{h}x{w}-{'aug' if self.augment else 'eval'}-{how}"

    def _gray(self, i: int) -> bool:
        return self.gray_path and bool(self.gray[i])

    def _read(self, i: int, native: bool) -> np.ndarray:
        """Image i from the cache or disk: native resolution, or resized so the long side is imgsz.
        BGR (h, w, 3), or (h, w) for a one-channel file (gray_path)."""
        img = self.cache.get(i, self._variant(i, native)) if self.cache is not None else None
        return img if img is not None else self._decode(i, native)

    def _decode(self, i: int, native: bool) -> np.ndarray:
        h0, w0 = (int(v) for v in self.shapes[i])
        r = self.imgsz / max(h0, w0)
        reduce = 1 if native or self.special[i] else max([f for f in (1, 2, 4, 8) if f * r <= 1] or [1])
        try:
            img = read_image(self.files[i], bool(self.special[i]), reduce, int(self.orientation[i]) or None,
                             self.bit_depth, gray=self._gray(i))
        except OSError as e:
            raise OSError(f"{self.json_path}: image id {self.image_ids[i]}: {e}") from None
        if img.shape[:2] != (h0, w0) and reduce == 1:
            raise OSError(f"{self.files[i]}: decoded as {img.shape[1]}x{img.shape[0]} but validated as "
                          f"{w0}x{h0} (file changed since the dataset was loaded?)")
        if native or img.shape[:2] == self._resized_hw(i):
            return img
        interp = cv2.INTER_LINEAR if self.augment or img.shape[0] < self._resized_hw(i)[0] else cv2.INTER_AREA
        h, w = self._resized_hw(i)
        return cv2.resize(img, (w, h), interpolation=interp)

    def _resized_hw(self, i: int) -> tuple[int, int]:
        h0, w0 = (int(v) for v in self.shapes[i])
        r = self.imgsz / max(h0, w0)
        return max(int(round(h0 * r)), 1), max(int(round(w0 * r)), 1)

    def cache_images(self, mode: str = "ram", folder: str | None = None) -> None:
        """Decode every image once (utils/data/cache.py): the training-size copy, and the native
        one where tiles are cut from it. mode ram or disk (folder: default cache_root())."""
        items, nbytes = [], 0
        for i in range(len(self)):
            ident = file_identity(self.files[i]) if os.path.exists(self.files[i]) else self.files[i]
            for native in (False, True) if self._keep_native(i) else (False,):
                v = self._variant(i, native)
                items.append((i, v, ident))
                px = int(np.prod(self.shapes[i])) if native else int(np.prod(self._resized_hw(i)))
                nbytes += px * (1 if self._gray(i) else 3)
        where = Path(folder) if folder else cache_root() / "images"
        if mode == "disk":
            refuse_inside(where, [Path(self.img_dir)], "--cache disk: the cache folder", "image folder")
        cache = ImageCache(mode, where)
        cache.fill(items, lambda i, v: self._decode(i, v.startswith("native")), nbytes, str(self.json_path))
        self.cache = cache

    def load_item(self, i: int, tile: bool | None = None) -> tuple[np.ndarray, np.ndarray, tuple, tuple]:
        """Image i either resized (long side imgsz) or, when tiling, an imgsz crop at native
        resolution. Returns (img BGR or grey, boxes [cls, x1, y1, x2, y2] px of img, ratio, offset) where
        img px = original px * ratio - offset * ratio."""
        if tile is None:
            tile = self._keep_native(i) and self.rng.random() < self.tile_p
        b = self.boxes[i]
        if self.with_ignore and len(self.ignore[i]):
            b = np.concatenate((b, np.insert(self.ignore[i], 0, IGNORE_CLASS, axis=1)))
        if tile:
            img = self._read(i, native=True)
            obj = self.boxes[i]  # tiles are centred on objects, never on ignore regions
            w = class_balance_weights(obj[:, 0], self.class_counts, self.tile_balance) if self.tile_balance else None
            win = tile_window(img.shape[:2], obj[:, 1:5], self.imgsz, self.rng, weights=w)
            boxes, small, cut = crop_boxes(b, win, self.min_box_px)
            self._count(0, small, cut)
            return img[win[1]:win[3], win[0]:win[2]], boxes, (1.0, 1.0), (float(win[0]), float(win[1]))
        img = self._read(i, native=False)
        h0, w0 = (int(v) for v in self.shapes[i])
        rw, rh = img.shape[1] / w0, img.shape[0] / h0
        boxes = b.copy()
        boxes[:, [1, 3]] *= rw
        boxes[:, [2, 4]] *= rh
        return img, boxes, (rw, rh), (0.0, 0.0)

    def _affine(self, img: np.ndarray, boxes: np.ndarray, out: int | None) -> tuple[np.ndarray, np.ndarray]:
        h = self.hyp
        img, boxes, (small, cut) = random_affine(
            img, boxes, self.rng, out, degrees=h.get("degrees", 0.0), translate=h.get("translate", 0.0),
            scale=h.get("scale", 0.0), shear=h.get("shear", 0.0), perspective=h.get("perspective", 0.0),
            min_box_px=self.min_box_px)
        self._count(0, small, cut)
        return img, boxes

    def load_mosaic(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """mosaic4 + random_affine in one pass (utils/augment/mosaic_affine.py); exact_warp keeps
        warpAffine's pixels bit for bit, else an axis-aligned warp runs as a ~5x faster resize."""
        idx = [i, *self.rng.integers(0, len(self), 3)]
        parts = [self.load_item(int(j)) for j in idx]
        h = self.hyp
        img, boxes, (small, cut) = mosaic4_affine(
            same_channels([p[0] for p in parts]), [p[1] for p in parts], self.imgsz, self.rng,
            degrees=h.get("degrees", 0.0), translate=h.get("translate", 0.0), scale=h.get("scale", 0.0),
            shear=h.get("shear", 0.0), perspective=h.get("perspective", 0.0), min_box_px=self.min_box_px,
            exact=self.exact_warp)
        self._count(0, small, cut)
        return img, boxes

    def __getitem__(self, index: int):
        """Item `index`. An image that passed the header check but fails to decode now (corrupt
        data, file changed) is replaced by a random other one in training, with a warning naming
        it and a count in box_stats(). In evaluation it becomes a blank placeholder whose meta says
        `unreadable`: val leaves it out and counts it, rather than losing the whole epoch."""
        i, last = int(index), ""
        for _ in range(LOAD_RETRIES):
            try:
                return self._get(i)
            except OSError as e:
                last = str(e)
                self._count(0, 0, 0, 1)
                if i not in self._bad:
                    self._bad.add(i)
                    LOG.warning(f"{last}; " + ("replaced by another image for this sample" if self.augment
                                               else "left out of the evaluation"))
                if not self.augment:
                    return self._placeholder(i)
                i = self._other_index()
        raise OSError(f"{self.json_path}: {LOAD_RETRIES} images in a row could not be read; last: {last}")

    def _placeholder(self, i: int):
        """A padding-grey image of the shape item i would have had, no labels, meta unreadable."""
        shape = tuple(self.batch_shapes[i // self.batch_size]) if self.rect else (self.imgsz, self.imgsz)
        img = torch.full((3, *(int(v) for v in shape)), PAD_VALUE, dtype=torch.uint8)
        meta = {"image_id": int(self.image_ids[i]), "orig_shape": tuple(int(v) for v in self.shapes[i]),
                "ratio": (1.0, 1.0), "pad": (0.0, 0.0), "unreadable": True}
        return img, torch.zeros((0, 5)), self.files[i], meta

    def _other_index(self) -> int:
        """A random index, avoiding images this process already failed to read."""
        for _ in range(100):
            j = int(self.rng.integers(len(self)))
            if j not in self._bad:
                break
        return j

    def _get(self, i: int):
        h0, w0 = (int(v) for v in self.shapes[i])
        hyp, rng = self.hyp, self.rng
        if self.augment and self.mosaic_p and rng.random() < self.mosaic_p:
            img, boxes = self.load_mosaic(i)
            ratio, pad = (1.0, 1.0), (0.0, 0.0)  # a mosaic has no single original frame
            if hyp.get("mixup", 0) and rng.random() < hyp["mixup"]:
                img2, boxes2 = self.load_mosaic(int(rng.integers(len(self))))
                img, img2 = same_channels([img, img2])
                img, boxes = mixup(img, boxes, img2, boxes2, rng)
        else:
            img, boxes, r0, off = self.load_item(i, tile=None if self.augment else False)
            shape = tuple(self.batch_shapes[i // self.batch_size]) if self.rect else self.imgsz
            img, r1, p1 = letterbox(img, shape, scaleup=self.augment)
            boxes = boxes.copy()
            boxes[:, [1, 3]] = boxes[:, [1, 3]] * r1[0] + p1[0]
            boxes[:, [2, 4]] = boxes[:, [2, 4]] * r1[1] + p1[1]
            ratio = (r0[0] * r1[0], r0[1] * r1[1])
            pad = (p1[0] - off[0] * ratio[0], p1[1] - off[1] * ratio[1])
            if self.augment:
                img, boxes = self._affine(img, boxes, None)
        tables = None  # HSV tables left to the device (hsv_on_device)
        if self.augment:
            if hyp.get("copy_paste", 0) and rng.random() < hyp["copy_paste"]:
                donor, dboxes, _, _ = self.load_item(int(rng.integers(len(self))))
                img, donor = same_channels([img, donor])
                if not img.flags.writeable:  # still the cached image itself (read-only): paste into a copy
                    img = img.copy()
                img, boxes = copy_paste_small(img, boxes, donor, dboxes, rng, min_box_px=self.min_box_px)
            gains = hyp.get("hsv_h", 0.0), hyp.get("hsv_s", 0.0), hyp.get("hsv_v", 0.0)
            if self.hsv_on_device and img.ndim == 3:  # same draws; a flip commutes with the per-pixel map
                tables = draw_hsv_tables(rng, *gains)
                img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
            else:
                img = hsv_to_rgb(img, rng, *gains)
            if hyp.get("fliplr", 0) and rng.random() < hyp["fliplr"]:
                img, boxes = flip_lr(img, boxes)
            if hyp.get("flipud", 0) and rng.random() < hyp["flipud"]:
                img, boxes = flip_ud(img, boxes)
            self._count(int((boxes[:, 0] != IGNORE_CLASS).sum()), 0, 0)
        elif img.ndim == 3:
            img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
        if img.ndim == 2:  # a grey sample's three equal channels, made in its last step
            img = cv2.cvtColor(img, cv2.COLOR_GRAY2RGB)
        labels = xyxy_to_cxcywh(boxes.reshape(-1, 5))
        if self.single_cls:
            labels[labels[:, 0] != IGNORE_CLASS, 0] = 0
        meta = {"image_id": int(self.image_ids[i]), "orig_shape": (h0, w0), "ratio": ratio, "pad": pad}
        if tables is not None:
            meta["hsv"] = tables
        # (3, H, W) as a view of the HWC pixels: collate_fn writes the planes into the batch in one pass
        img = torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1)
        return img, torch.from_numpy(labels), self.files[i], meta


def to_bgr(img: np.ndarray) -> np.ndarray:
    """A grey (h, w) image as the BGR image it stands for; BGR images as they are."""
    return cv2.cvtColor(img, cv2.COLOR_GRAY2BGR) if img.ndim == 2 else img


def same_channels(images: list[np.ndarray]) -> list[np.ndarray]:
    """Images combined into one: all grey stay grey, else all BGR."""
    return images if all(im.ndim == 2 for im in images) or all(im.ndim == 3 for im in images) else \
        [to_bgr(im) for im in images]


def collate_fn(batch: list) -> tuple[torch.Tensor, torch.Tensor, tuple, tuple]:
    """Items -> (imgs uint8 (B, 3, H, W), targets (M, 6) [batch_idx, cls, cx, cy, w, h], paths, metas)."""
    imgs, labels, paths, metas = zip(*batch)
    targets = torch.cat([torch.cat((torch.full((len(lb), 1), float(b)), lb.float()), 1)
                         for b, lb in enumerate(labels)]) if labels else torch.zeros((0, 6))
    return stack_chw(imgs, shared=get_worker_info() is not None), targets.reshape(-1, 6), paths, metas


def _worker_init(worker_id: int) -> None:
    """Each worker draws its own augmentations: torch seeds workers base_seed + id, and base_seed
    comes from the loader's seeded generator, so a run is reproducible for a given seed."""
    info = get_worker_info()
    info.dataset.rng = np.random.default_rng(torch.initial_seed() % 2**63)
    keep_freed_memory()  # a worker only makes samples: reuse their buffers rather than page-fault them again


def create_dataloader(split: dict, imgsz: int, batch_size: int, stride: int = 32, hyp: dict | None = None,
                      augment: bool = False, rect: bool = False, cache: bool | str = False, workers: int = 0,
                      shuffle: bool = False, seed: int = 0, rank: int = -1, names: list[str] | None = None,
                      single_cls: bool = False, check: str = "header", rect_pad: float = 0.0,
                      cache_dir: str | None = None) -> tuple[DataLoader, CocoDataset]:
    """split: {'json': path, 'images': folder[, 'name']} (one entry of load_data_config).
    cache: False, 'ram' (or True) or 'disk' (in cache_dir, default utils.data.cache.cache_root()).
    Under DDP (rank >= 0) a DistributedSampler splits the data; call loader.sampler.set_epoch."""
    if rect and shuffle:
        LOG.warning("create_dataloader: rect=True keeps images sorted by aspect ratio; shuffle ignored")
        shuffle = False
    dataset = CocoDataset(split["json"], split["images"], imgsz, batch_size, stride, hyp, augment, rect, cache,
                          names, single_cls, seed + max(rank, 0), check, split.get("name", ""),
                          verbose=rank in (-1, 0), bit_depth=split.get("bit_depth", "auto"), rect_pad=rect_pad,
                          cache_dir=cache_dir)
    sampler = DistributedSampler(dataset, shuffle=shuffle, seed=seed) if rank != -1 else None
    nw = max(min(workers, os.cpu_count() or 1, len(dataset)), 0)
    if augment and nw == 0:  # this process makes the training samples itself (see utils/data/malloc.py)
        keep_freed_memory()
    gen = torch.Generator()
    gen.manual_seed(seed + 1000 * max(rank, 0))
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=shuffle and sampler is None, sampler=sampler,
                        num_workers=nw, collate_fn=collate_fn, pin_memory=torch.cuda.is_available(),
                        worker_init_fn=_worker_init if nw else None, generator=gen,
                        persistent_workers=nw > 0)
    return loader, dataset


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Validate a data YAML's splits and print their summaries.")
    p.add_argument("data", help="data YAML")
    p.add_argument("--data-root", default=None, help="folder holding the data sets (overrides the YAML)")
    p.add_argument("--imgsz", type=int, default=0, help="also bucket box sizes as seen at this training size")
    p.add_argument("--check", default="full", choices=["full", "header", "none"],
                   help="decode every image (full), read headers only, or trust the json")
    p.add_argument("--max-problems", type=int, default=20, help="problem messages printed per split")
    opt = p.parse_args(argv)
    from utils.data.coco import load_coco as _load
    try:
        data = load_data_config(opt.data, opt.data_root)
    except DatasetError as e:
        print(f"ERROR {e}")
        return 2
    bad = 0
    print(f"{data['yaml_file']}: {data['nc']} classes {data['names']} (category ids {data['cat_ids']})")
    for split in ("train", "val", "test"):
        if split not in data:
            continue
        try:
            s = _load(data[split]["json"], data[split]["images"], names=data["names"], check=opt.check, split=split,
                      bit_depth=data[split].get("bit_depth", "auto"))
        except DatasetError as e:
            print(f"{split}: UNUSABLE: {e}")
            bad += 1
            continue
        for msg in data[split].get("notes", ()):  # a converted split (YOLO or a set's own format): what it skipped
            s.report.add("noted in conversion", msg)
        sides = None
        if opt.imgsz:
            gain = opt.imgsz / s.shapes.max(1)
            sides = np.concatenate([np.sqrt((b[:, 3] - b[:, 1]) * (b[:, 4] - b[:, 2])) * g
                                    for b, g in zip(s.boxes, gain)]) if len(s.boxes) else np.zeros(0)
        print(s.report.summary(opt.max_problems, sides, opt.imgsz))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())

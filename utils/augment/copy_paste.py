"""Copy-paste of small objects: more tiny positives per image, on new backgrounds.

Without instance masks, an object is carried with a small margin of its own background whose
edge is faded into the target image, so the patch has no hard rectangular border for the
detector to learn. Patches go only where they do not overlap an existing box or ignore region, and
ignore regions (class IGNORE_CLASS) are never pasted.
"""
from __future__ import annotations

import numpy as np

from utils.boxes import IGNORE_CLASS

MARGIN = 2  # px of context carried around each object and faded out


def _feather(h: int, w: int, margin: int) -> np.ndarray:
    """(h, w, 1) alpha: 1 inside, ramping to ~0 over `margin` px at the border."""
    ry = np.minimum(np.arange(h) + 1, np.arange(h)[::-1] + 1) / (margin + 1)
    rx = np.minimum(np.arange(w) + 1, np.arange(w)[::-1] + 1) / (margin + 1)
    return np.minimum.outer(ry, rx).clip(0, 1)[..., None].astype(np.float32)


def _free(box: np.ndarray, others: np.ndarray) -> bool:
    if len(others) == 0:
        return True
    return not ((box[0] < others[:, 2]) & (box[2] > others[:, 0]) &
                (box[1] < others[:, 3]) & (box[3] > others[:, 1])).any()


def copy_paste_small(img: np.ndarray, boxes: np.ndarray, donor: np.ndarray, donor_boxes: np.ndarray,
                     rng: np.random.Generator, max_side: float = 32.0, max_objects: int = 8,
                     min_box_px: float = 1.0, tries: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """Paste up to max_objects of the donor's objects no larger than max_side px (both sides)
    into img at random free places, each flipped left-right at random. Boxes are
    [cls, x1, y1, x2, y2]; returns (img, boxes + pasted boxes). img is modified in place."""
    if len(donor_boxes) == 0:
        return img, boxes
    wh = donor_boxes[:, 3:5] - donor_boxes[:, 1:3]
    ok = (wh.max(1) <= max_side) & (wh.min(1) >= max(min_box_px, 1.0)) & (donor_boxes[:, 0] != IGNORE_CLASS)
    cand = donor_boxes[ok]
    if len(cand) == 0:
        return img, boxes
    H, W = img.shape[:2]
    dh, dw = donor.shape[:2]
    n = int(rng.integers(1, min(len(cand), max_objects) + 1))
    occupied = boxes[:, 1:5].astype(np.float32) if len(boxes) else np.zeros((0, 4), np.float32)
    added = []
    for c in cand[rng.permutation(len(cand))[:n]]:
        # integer patch around the object, MARGIN px of context where the donor has it
        px1, py1 = max(int(np.floor(c[1])) - MARGIN, 0), max(int(np.floor(c[2])) - MARGIN, 0)
        px2, py2 = min(int(np.ceil(c[3])) + MARGIN, dw), min(int(np.ceil(c[4])) + MARGIN, dh)
        ph, pw = py2 - py1, px2 - px1
        if ph >= H or pw >= W:
            continue
        patch = donor[py1:py2, px1:px2]
        rel = np.array([c[1] - px1, c[2] - py1, c[3] - px1, c[4] - py1], np.float32)
        if rng.random() < 0.5:
            patch = patch[:, ::-1]
            rel[[0, 2]] = pw - rel[[2, 0]]
        for _ in range(tries):
            x, y = int(rng.integers(0, W - pw + 1)), int(rng.integers(0, H - ph + 1))
            nb = rel + np.array([x, y, x, y], np.float32)
            if _free(nb, occupied):
                a = _feather(ph, pw, MARGIN)
                region = img[y:y + ph, x:x + pw]
                if region.ndim == 2:  # grey: the same blend as each channel of its BGR copy
                    a = a[..., 0]
                region[:] = (patch * a + region * (1 - a) + 0.5).astype(np.uint8)
                occupied = np.concatenate((occupied, nb[None]))
                added.append(np.concatenate(([c[0]], nb)))
                break
    if added:
        boxes = np.concatenate((boxes.reshape(-1, 5), np.asarray(added, np.float32))).astype(np.float32)
    return img, boxes

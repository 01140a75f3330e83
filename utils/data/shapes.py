"""Built-in demo data: small coloured shapes on textured backgrounds, in COCO format.

    python -m utils.data.shapes [--out data/shapes] [--force]

Loading data/shapes.yaml calls `ensure()`, which writes the set on first use (a few seconds):
400 train + 100 val images of 256x256 px, 4 classes (circle, square, triangle, cross), objects
6-40 px (the longer side of each box), 0-12 per image. Each image is drawn from its own seeded
generator, so the output is identical on every machine and run. Colours per class are distinct
(with varied shade) so that a nano model learns the set in minutes on a CPU; sizes stay small,
so it is still a test of small-object detection.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
from pathlib import Path

import cv2
import numpy as np

from utils.paths import ROOT

CLASSES = ("circle", "square", "triangle", "cross")
HUES = (0, 60, 120, 28)        # OpenCV hue (0-179): red, green, blue, yellow
SPLITS = {"train": 400, "val": 100}
SIZE = 256
SIDE_RANGE = (6, 40)           # longest box side in px (log-uniform, so most are small)
MAX_OBJECTS = 12
EMPTY_FRACTION = 0.06          # images without objects (negatives)
VERSION = 2                    # bump when the generator changes: the set is rebuilt (2: boxes exactly 6-40 px)


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """Low-saturation colour field + blurry blobs + fine noise + faint lines: a texture, not a flat colour."""
    base = rng.uniform(60, 170)
    tint = rng.uniform(-18, 18, 3)
    # coarse blobs mostly in brightness, a little in colour, so the coloured shapes stand out
    grid = rng.normal(0, 22, (5, 5, 1)) + rng.normal(0, 8, (5, 5, 3))
    coarse = cv2.resize(grid.astype(np.float32), (size, size), interpolation=cv2.INTER_CUBIC)
    mid = cv2.resize(rng.normal(0, 10, (24, 24, 1)).astype(np.float32), (size, size),
                     interpolation=cv2.INTER_LINEAR)[..., None]
    img = base + tint + coarse + mid
    for _ in range(int(rng.integers(0, 6))):  # faint grey streaks: clutter with no colour
        p1, p2 = rng.integers(0, size, 2), rng.integers(0, size, 2)
        shade = float(rng.uniform(-25, 25))
        layer = np.zeros((size, size), np.float32)
        cv2.line(layer, (int(p1[0]), int(p1[1])), (int(p2[0]), int(p2[1])), 1.0, int(rng.integers(1, 3)), cv2.LINE_AA)
        img += layer[..., None] * shade
    img += rng.normal(0, 6, (size, size, 3))
    return img


def _shape_mask(kind: int, side: float, ang: float) -> np.ndarray:
    """Anti-aliased float mask (side+6)^2 of one shape (inside a circle of diameter ~side), at angle ang."""
    m = int(np.ceil(side)) + 6
    mask = np.zeros((m, m), np.float32)
    c, r = (m - 1) / 2, side / 2
    if kind == 0:
        cv2.circle(mask, (m // 2 * 16, m // 2 * 16), int(r * 16), 1.0, -1, cv2.LINE_AA, 4)
        return mask
    if kind == 1:  # square inscribed in the circle of radius r
        pts = [(r * np.cos(ang + k * np.pi / 2), r * np.sin(ang + k * np.pi / 2)) for k in range(4)]
    elif kind == 2:
        pts = [(r * np.cos(ang + k * 2 * np.pi / 3), r * np.sin(ang + k * 2 * np.pi / 3)) for k in range(3)]
    else:
        t = max(side / 6, 1.0)  # arm half-thickness
        arm = [(-r, -t), (-t, -t), (-t, -r), (t, -r), (t, -t), (r, -t), (r, t), (t, t), (t, r), (-t, r), (-t, t),
               (-r, t)]
        ca, sa = np.cos(ang), np.sin(ang)
        pts = [(x * ca - y * sa, x * sa + y * ca) for x, y in arm]
    poly = np.array([[(c + x) * 16, (c + y) * 16] for x, y in pts], np.int32)
    cv2.fillPoly(mask, [poly], 1.0, cv2.LINE_AA, 4)
    return mask


def _fitted_mask(kind: int, target: int, ang: float) -> np.ndarray | None:
    """Mask whose box (pixels > 0.5) has its longer side equal to target px where possible: a
    rotated triangle or cross spans less or more than its nominal size, so the size is corrected
    twice. None when the box still falls outside SIDE_RANGE."""
    side = float(target)
    for _ in range(3):
        mask = _shape_mask(kind, side, ang)
        ys, xs = np.nonzero(mask > 0.5)
        longest = max(xs.max() - xs.min(), ys.max() - ys.min()) + 1 if len(xs) else 0
        if longest == target or not longest:
            break
        side *= target / longest
    return mask if SIDE_RANGE[0] <= longest <= SIDE_RANGE[1] else None


def _colour(kind: int, rng: np.random.Generator) -> np.ndarray:
    hsv = np.array([[[(HUES[kind] + rng.integers(-6, 7)) % 180, rng.integers(150, 256), rng.integers(150, 256)]]],
                   np.uint8)
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)[0, 0].astype(np.float32)


def draw_image(seed: tuple[int, ...], size: int = SIZE) -> tuple[np.ndarray, list[tuple[int, list[int]]]]:
    """One image and its objects [(class index, [x, y, w, h])] from its own seed."""
    rng = np.random.default_rng(list(seed))
    img = _background(rng, size)
    n = 0 if rng.random() < EMPTY_FRACTION else int(rng.integers(1, MAX_OBJECTS + 1))
    objects, taken = [], []
    for _ in range(n):
        kind = int(rng.integers(len(CLASSES)))
        target = int(round(np.exp(rng.uniform(np.log(SIDE_RANGE[0]), np.log(SIDE_RANGE[1])))))
        mask = _fitted_mask(kind, target, float(rng.uniform(0, 2 * np.pi)))
        if mask is None:
            continue
        ys, xs = np.nonzero(mask > 0.5)
        m = mask.shape[0]
        for _try in range(20):  # a free spot, 3 px apart from the others
            x0, y0 = (int(v) for v in rng.integers(0, size - m + 1, 2))
            box = (x0 + xs.min(), y0 + ys.min(), x0 + xs.max() + 1, y0 + ys.max() + 1)
            if all(box[0] >= t[2] + 3 or box[2] + 3 <= t[0] or box[1] >= t[3] + 3 or box[3] + 3 <= t[1] for t in taken):
                break
        else:
            continue
        a = mask[..., None]
        img[y0:y0 + m, x0:x0 + m] = img[y0:y0 + m, x0:x0 + m] * (1 - a) + _colour(kind, rng) * a
        taken.append(box)
        objects.append((kind, [int(box[0]), int(box[1]), int(box[2] - box[0]), int(box[3] - box[1])]))
    img = cv2.GaussianBlur(img, (3, 3), 0.6) + rng.normal(0, 3, img.shape)  # camera softness + sensor noise
    return np.clip(img + 0.5, 0, 255).astype(np.uint8), objects


def generate(out: str | Path, seed: int = 0, splits: dict[str, int] | None = None, size: int = SIZE) -> Path:
    """Write images/{split}/*.jpg and annotations/instances_{split}.json under out."""
    out = Path(out)
    cats = [{"id": k + 1, "name": n, "supercategory": "shape"} for k, n in enumerate(CLASSES)]
    for s_idx, (split, count) in enumerate((splits or SPLITS).items()):
        (out / "images" / split).mkdir(parents=True, exist_ok=True)
        images, anns = [], []
        for i in range(count):
            img, objects = draw_image((seed, VERSION, s_idx, i), size)
            name = f"{split}_{i:04d}.jpg"
            cv2.imwrite(str(out / "images" / split / name), img, [cv2.IMWRITE_JPEG_QUALITY, 95])
            image_id = s_idx * 100000 + i + 1
            images.append({"id": image_id, "file_name": name, "width": size, "height": size})
            for kind, bb in objects:
                anns.append({"id": len(anns) + 1 + s_idx * 1000000, "image_id": image_id, "category_id": kind + 1,
                             "bbox": bb, "area": bb[2] * bb[3], "iscrowd": 0})
        (out / "annotations").mkdir(exist_ok=True)
        (out / "annotations" / f"instances_{split}.json").write_text(json.dumps(
            {"info": {"description": "smalldet shapes demo", "version": VERSION, "seed": seed},
             "images": images, "annotations": anns, "categories": cats}))
    (out / "VERSION").write_text(f"{VERSION} {seed}\n")
    return out


def _made_here(out: Path) -> bool:
    """True if `out` is a set this generator wrote (any version or seed): its VERSION marker reads
    'VERSION SEED'. Only such a folder may be replaced; anything else is the user's."""
    try:
        words = (out / "VERSION").read_text().split()
    except OSError:
        return False
    return len(words) >= 2 and all(w.lstrip("-").isdigit() for w in words[:2])


def _check_replaceable(out: Path) -> None:
    if out.exists() and not _made_here(out) and (not out.is_dir() or any(out.iterdir())):
        raise FileExistsError(
            f"{out} exists and is not a shapes demo set made by this program (no VERSION marker): "
            f"refusing to replace it. Point 'path:' at a new or empty folder.")


def ensure(out: str | Path, seed: int = 0) -> Path:
    """Generate the set at `out` unless a complete one of this VERSION is there. Built in a
    temporary sibling folder and renamed into place, so concurrent callers (DDP ranks, parallel
    tests) never see a half-written set."""
    out = Path(out)
    marker = out / "VERSION"
    if marker.is_file() and marker.read_text().split()[:2] == [str(VERSION), str(seed)]:
        return out
    _check_replaceable(out)  # before any work: never delete what this program did not create
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    tmp.chmod(0o755)  # mkdtemp makes it private; the renamed set should read like any other folder
    try:
        generate(tmp, seed)
        if out.exists() and not (marker.is_file() and marker.read_text().split()[:2] == [str(VERSION), str(seed)]):
            _check_replaceable(out)  # again: the folder may have changed while we generated
            if _made_here(out):
                shutil.rmtree(out, ignore_errors=True)  # an older version or another seed of ours
            else:
                out.rmdir()  # empty: rename needs it gone
        try:
            os.rename(tmp, out)
        except OSError:
            if not (out / "VERSION").is_file():  # someone else's rename did not win either
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=str(ROOT / "data" / "shapes"))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--force", action="store_true", help="regenerate even if present")
    a = ap.parse_args()
    if a.force and Path(a.out).exists():
        _check_replaceable(Path(a.out))
        if _made_here(Path(a.out)):
            shutil.rmtree(a.out)
    print(f"shapes demo data at {ensure(a.out, a.seed)}")

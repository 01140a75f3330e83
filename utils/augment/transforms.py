"""Image + box augmentation: letterbox, mosaic, random affine/perspective, HSV, flips, mixup.

All functions take BGR uint8 images (H, W, 3) and boxes as float (n, 5) [cls, x1, y1, x2, y2] in
pixels of that image, and return the same. Rows of class IGNORE_CLASS are ignore regions: they move
with the pixels like boxes, and the box filters keep them while any part is in view. Random draws
come from a numpy Generator passed in, so each DataLoader worker (seeded apart) makes its own choices
reproducibly.
"""
from __future__ import annotations


import cv2
import numpy as np

from utils.boxes import IGNORE_CLASS

PAD_VALUE = 114  # YOLOv5's grey for letterbox and mosaic borders


def _as_hw(shape: int | tuple[int, int] | list[int]) -> tuple[int, int]:
    return (int(shape), int(shape)) if isinstance(shape, (int, np.integer)) else (int(shape[0]), int(shape[1]))


def letterbox(img: np.ndarray, new_shape: int | tuple[int, int] = 640, color: int = PAD_VALUE, auto: bool = False,
              scaleup: bool = True, stride: int = 32,
              interpolation: int | None = None) -> tuple[np.ndarray, tuple[float, float], tuple[float, float]]:
    """Resize keeping the aspect ratio, then pad to new_shape (h, w).
    auto=True pads only to the next multiple of stride. Returns (img, ratio=(rw, rh), pad=(left, top))
    with integer padding, so that original = (letterboxed - pad) / ratio holds exactly."""
    h0, w0 = img.shape[:2]
    nh, nw = _as_hw(new_shape)
    r = min(nh / h0, nw / w0)
    if not scaleup:
        r = min(r, 1.0)
    w, h = max(int(round(w0 * r)), 1), max(int(round(h0 * r)), 1)
    if (w, h) != (w0, h0):
        interp = interpolation if interpolation is not None else (cv2.INTER_AREA if r < 1 else cv2.INTER_LINEAR)
        img = cv2.resize(img, (w, h), interpolation=interp)
    dw, dh = nw - w, nh - h
    if auto:
        dw, dh = dw % stride, dh % stride
    left, top = dw // 2, dh // 2
    if dw or dh:
        img = cv2.copyMakeBorder(img, top, dh - top, left, dw - left, cv2.BORDER_CONSTANT, value=(color,) * 3)
    return img, (w / w0, h / h0), (float(left), float(top))


def classify_kept(new: np.ndarray, before_wh: np.ndarray, gain: float, min_box_px: float, area_thr: float = 0.1,
                  ar_thr: float = 100.0, ignore: np.ndarray | None = None) -> tuple[np.ndarray, int, int]:
    """Which transformed + clipped boxes to keep. new: (n, 4) xyxy after clipping; before_wh: (n, 2)
    sizes before the transform; gain: the transform's scale. Returns (keep mask, dropped_small,
    dropped_cut): 'small' are boxes still in view but narrower or shorter than min_box_px,
    'cut' are boxes mostly pushed out of the frame (visible area <= area_thr) or reduced to slivers.
    ignore: (n,) bool, rows that are ignore regions (IGNORE_CLASS): kept while any of them is in view,
    never counted (whatever part of a region is left still holds unlabelled objects)."""
    w, h = new[:, 2] - new[:, 0], new[:, 3] - new[:, 1]
    was_visible = (before_wh[:, 0] > 0) & (before_wh[:, 1] > 0)  # boxes cut away earlier are not counted again
    visible = w.clip(0) * h.clip(0) / (before_wh[:, 0] * before_wh[:, 1] * gain * gain + 1e-9)
    in_view = was_visible & (w > 0) & (h > 0) & (visible > area_thr)
    big_enough = (w >= min_box_px) & (h >= min_box_px)
    ar = np.maximum(w / (h + 1e-9), h / (w + 1e-9))
    keep = in_view & big_enough & (ar < ar_thr)
    small = in_view & ~big_enough
    cut = was_visible & ~keep & ~small
    if ignore is not None and ignore.any():
        keep = np.where(ignore, was_visible & (w > 0) & (h > 0), keep)
        small, cut = small & ~ignore, cut & ~ignore
    return keep, int(small.sum()), int(cut.sum())


def affine_matrix(in_shape: tuple[int, int], out_shape: tuple[int, int], rng: np.random.Generator,
                  degrees: float = 0.0, translate: float = 0.0, scale: float = 0.0, shear: float = 0.0,
                  perspective: float = 0.0) -> tuple[np.ndarray, float]:
    """3x3 matrix mapping input pixels to output pixels: centre, perspective, rotate+scale, shear,
    then translate to the output centre +/- translate. Returns (M, scale gain)."""
    ih, iw = in_shape
    oh, ow = out_shape
    C = np.eye(3)
    C[0, 2], C[1, 2] = -iw / 2, -ih / 2
    P = np.eye(3)
    P[2, 0], P[2, 1] = rng.uniform(-perspective, perspective, 2) if perspective else (0.0, 0.0)
    angle = rng.uniform(-degrees, degrees) if degrees else 0.0
    gain = rng.uniform(1 - scale, 1 + scale) if scale else 1.0
    R = np.eye(3)
    R[:2] = cv2.getRotationMatrix2D((0, 0), angle, gain)
    S = np.eye(3)
    if shear:
        S[0, 1], S[1, 0] = np.tan(np.deg2rad(rng.uniform(-shear, shear, 2)))
    T = np.eye(3)
    tx, ty = rng.uniform(0.5 - translate, 0.5 + translate, 2) if translate else (0.5, 0.5)
    T[0, 2], T[1, 2] = tx * ow, ty * oh
    return T @ S @ R @ P @ C, gain


def _clip_polygon(pts: list[tuple[float, float]], w: float, h: float) -> list[tuple[float, float]]:
    """The part of a convex polygon inside [0, w] x [0, h] (Sutherland-Hodgman, one frame edge at a time)."""
    for axis, bound, below in ((0, 0.0, False), (0, w, True), (1, 0.0, False), (1, h, True)):
        out: list[tuple[float, float]] = []
        for k in range(len(pts)):
            p, q = pts[k - 1], pts[k]
            p_in = p[axis] <= bound if below else p[axis] >= bound
            q_in = q[axis] <= bound if below else q[axis] >= bound
            if p_in != q_in:  # the edge crosses the frame line: keep the crossing point
                t = (bound - p[axis]) / (q[axis] - p[axis])
                out.append((p[0] + t * (q[0] - p[0]), p[1] + t * (q[1] - p[1])))
            if q_in:
                out.append(q)
        pts = out
        if not pts:
            break
    return pts


def transform_boxes(xyxy: np.ndarray, M: np.ndarray, clip: tuple[float, float] | None = None) -> np.ndarray:
    """Axis-aligned boxes enclosing the transformed corners of each box (n, 4). clip=(w, h) clips
    to that frame; under rotation, shear or perspective a box's corners make a tilted
    quadrilateral, and the part of it inside the frame can span much less than the clipped
    enclosing box, so those quadrilaterals are clipped before their extent is taken."""
    n = len(xyxy)
    if n == 0:
        return np.zeros((0, 4), np.float32)
    pts = np.ones((n * 4, 3))
    pts[:, :2] = xyxy[:, [0, 1, 2, 1, 2, 3, 0, 3]].reshape(n * 4, 2)  # corners in order around each box
    pts = pts @ M.T
    xy = pts[:, :2] / pts[:, 2:3] if (M[2, :2] != 0).any() else pts[:, :2]
    xy = xy.reshape(n, 8)
    xs, ys = xy[:, 0::2], xy[:, 1::2]
    out = np.stack((xs.min(1), ys.min(1), xs.max(1), ys.max(1)), 1)
    if clip is None:
        return out.astype(np.float32)
    w, h = clip
    tilted = M[0, 1] != 0 or M[1, 0] != 0 or (M[2, :2] != 0).any()
    if tilted:
        cut = np.nonzero((out[:, 0] < 0) | (out[:, 1] < 0) | (out[:, 2] > w) | (out[:, 3] > h))[0]
        for i in cut:  # only boxes crossing the frame edge: few per image
            poly = _clip_polygon(list(zip(xs[i].tolist(), ys[i].tolist())), w, h)
            if poly:
                px, py = zip(*poly)
                out[i] = (min(px), min(py), max(px), max(py))
            else:  # the enclosing box touches the frame, the quadrilateral does not
                out[i] = 0.0
    out[:, [0, 2]] = out[:, [0, 2]].clip(0, w)
    out[:, [1, 3]] = out[:, [1, 3]].clip(0, h)
    return out.astype(np.float32)


def random_affine(img: np.ndarray, boxes: np.ndarray, rng: np.random.Generator, out_shape: int | tuple | None = None,
                  degrees: float = 0.0, translate: float = 0.0, scale: float = 0.0, shear: float = 0.0,
                  perspective: float = 0.0, min_box_px: float = 1.0,
                  area_thr: float = 0.1) -> tuple[np.ndarray, np.ndarray, tuple[int, int]]:
    """Random rotation, scale, shear, translation and perspective, output out_shape (h, w)
    (default: the input size). Boxes follow the pixels; returns (img, boxes, (dropped_small, dropped_cut))."""
    ih, iw = img.shape[:2]
    oh, ow = _as_hw(out_shape) if out_shape is not None else (ih, iw)
    M, gain = affine_matrix((ih, iw), (oh, ow), rng, degrees, translate, scale, shear, perspective)
    identity = np.allclose(M, np.array([[1, 0, (ow - iw) / 2], [0, 1, (oh - ih) / 2], [0, 0, 1]]))
    if identity and (oh, ow) == (ih, iw):
        pass  # nothing to warp
    elif perspective:
        img = cv2.warpPerspective(img, M, (ow, oh), borderValue=(PAD_VALUE,) * 3)
    else:
        img = cv2.warpAffine(img, M[:2], (ow, oh), borderValue=(PAD_VALUE,) * 3)
    return (img, *affine_boxes(boxes, M, gain, (ow, oh), min_box_px, area_thr))


def affine_boxes(boxes: np.ndarray, M: np.ndarray, gain: float, out_wh: tuple[int, int], min_box_px: float = 1.0,
                 area_thr: float = 0.1) -> tuple[np.ndarray, tuple[int, int]]:
    """random_affine's boxes: moved by M, clipped to out_wh and filtered (see classify_kept).
    Returns (boxes, (dropped_small, dropped_cut))."""
    if len(boxes) == 0:
        return boxes.reshape(0, 5).astype(np.float32), (0, 0)
    new = transform_boxes(boxes[:, 1:5], M, clip=out_wh)
    keep, small, cut = classify_kept(new, boxes[:, 3:5] - boxes[:, 1:3], gain, min_box_px, area_thr,
                                     ignore=boxes[:, 0] == IGNORE_CLASS)
    return np.concatenate((boxes[keep, :1], new[keep]), 1).astype(np.float32), (small, cut)


def mosaic4(images: list[np.ndarray], boxes: list[np.ndarray], size: int,
            rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Four images around a random centre of a (2*size)^2 grey canvas: top-left, top-right,
    bottom-left, bottom-right, each touching the centre and cut at the canvas edge. Boxes are
    shifted and clipped (not filtered: random_affine, which follows, filters and counts).
    The loader runs both as mosaic_affine.mosaic4_affine; this pair is its reference."""
    s2 = 2 * size
    xc, yc = (int(v) for v in rng.uniform(size * 0.5, size * 1.5, 2))
    canvas = np.full((s2, s2, 3), PAD_VALUE, dtype=np.uint8)
    out = []
    for k, (im, b) in enumerate(zip(images, boxes)):
        h, w = im.shape[:2]
        # destination rectangle on the canvas, the image's corner at the centre
        x1 = xc - w if k in (0, 2) else xc
        y1 = yc - h if k in (0, 1) else yc
        dx1, dy1, dx2, dy2 = max(x1, 0), max(y1, 0), min(x1 + w, s2), min(y1 + h, s2)
        if dx2 <= dx1 or dy2 <= dy1:
            continue
        canvas[dy1:dy2, dx1:dx2] = im[dy1 - y1:dy2 - y1, dx1 - x1:dx2 - x1]
        if len(b):
            nb = b.astype(np.float32).copy()
            nb[:, [1, 3]] += x1
            nb[:, [2, 4]] += y1
            out.append(nb)
    allb = np.concatenate(out) if out else np.zeros((0, 5), np.float32)
    allb[:, [1, 3]] = allb[:, [1, 3]].clip(0, s2)
    allb[:, [2, 4]] = allb[:, [2, 4]].clip(0, s2)
    return canvas, allb


def augment_hsv(img: np.ndarray, rng: np.random.Generator, hgain: float = 0.0, sgain: float = 0.0,
                vgain: float = 0.0) -> np.ndarray:
    """Random hue/saturation/value gains through lookup tables (in place, also returned). The loader
    runs finish.hsv_to_rgb, which equals this followed by BGR -> RGB."""
    if not (hgain or sgain or vgain):
        return img
    r = rng.uniform(-1, 1, 3) * (hgain, sgain, vgain) + 1
    hue, sat, val = cv2.split(cv2.cvtColor(img, cv2.COLOR_BGR2HSV))
    x = np.arange(256, dtype=np.float32)
    lut_h = ((x * r[0]) % 180).astype(np.uint8)  # OpenCV hue runs 0..179 and wraps
    lut_s = np.clip(x * r[1], 0, 255).astype(np.uint8)
    lut_v = np.clip(x * r[2], 0, 255).astype(np.uint8)
    hsv = cv2.merge((cv2.LUT(hue, lut_h), cv2.LUT(sat, lut_s), cv2.LUT(val, lut_v)))
    cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR, dst=img)
    return img


def flip_lr(img: np.ndarray, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    w = img.shape[1]
    boxes = boxes.copy()
    boxes[:, [1, 3]] = w - boxes[:, [3, 1]]
    return cv2.flip(img, 1), boxes  # ~10x faster than numpy's copy of a reversed view


def flip_ud(img: np.ndarray, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    h = img.shape[0]
    boxes = boxes.copy()
    boxes[:, [2, 4]] = h - boxes[:, [4, 2]]
    return cv2.flip(img, 0), boxes


def mixup(img: np.ndarray, boxes: np.ndarray, img2: np.ndarray, boxes2: np.ndarray,
          rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Blend two same-size images (ratio ~ Beta(32, 32), about 0.5) and keep both label sets."""
    r = rng.beta(32.0, 32.0)
    out = cv2.addWeighted(img, r, img2, 1 - r, 0.0)
    return out, np.concatenate((boxes, boxes2)).astype(np.float32)


def xyxy_to_cxcywh(boxes: np.ndarray) -> np.ndarray:
    """[cls, x1, y1, x2, y2] -> [cls, cx, cy, w, h]."""
    out = np.empty_like(boxes, dtype=np.float32)
    out[:, 0] = boxes[:, 0]
    out[:, 1] = (boxes[:, 1] + boxes[:, 3]) / 2
    out[:, 2] = (boxes[:, 2] + boxes[:, 4]) / 2
    out[:, 3] = boxes[:, 3] - boxes[:, 1]
    out[:, 4] = boxes[:, 4] - boxes[:, 2]
    return out


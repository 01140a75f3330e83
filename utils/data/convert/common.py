"""Shared pieces of the label converters (utils/data/convert/cli.py): class names, image listing, problem
collection and assembling / writing a COCO detection json."""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from utils.data.coco import DatasetError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
MAX_LISTED = 20  # problems shown in a ConvertError message; all are counted


class ConvertError(DatasetError):
    """Malformed converter input; the message names each file and line or record that is wrong."""


class Problems:
    """Collects every problem of one conversion, so that one run reports them all."""

    def __init__(self, what: str):
        self.what = what
        self.items: list[str] = []

    def add(self, message: str) -> None:
        self.items.append(message)

    def raise_if_any(self) -> None:
        if self.items:
            shown = "\n  ".join(self.items[:MAX_LISTED])
            more = f"\n  ... and {len(self.items) - MAX_LISTED} more" if len(self.items) > MAX_LISTED else ""
            raise ConvertError(f"{self.what}: {len(self.items)} problem(s), nothing written:\n  {shown}{more}")


def parse_names(spec: str | list[str] | None) -> list[str] | None:
    """Class names from a list, 'a,b,c', or a text file with one name per line (blank lines ignored)."""
    if spec is None or isinstance(spec, list):
        return spec
    p = Path(spec)
    if p.is_file():
        names = [ln.strip() for ln in p.read_text(encoding="utf-8").splitlines() if ln.strip()]
        src = str(p)
    else:
        names = [n.strip() for n in spec.split(",") if n.strip()]
        src = f"--names {spec!r}"
    if not names:
        raise ConvertError(f"{src}: no class names")
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ConvertError(f"{src}: class names repeated: {dup}")
    return names


def list_images(folder: str | Path) -> list[Path]:
    """Image files under folder (recursively), sorted so that ids are the same on every run."""
    root = Path(folder)
    if not root.is_dir():
        raise ConvertError(f"image folder {root} not found")
    return sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


def image_size(path: Path) -> tuple[int, int]:
    """(width, height) from the file header, as shown (EXIF orientation applied, as training reads it);
    raises ConvertError naming the file."""
    from PIL import Image  # reads the header only

    from utils.data.image_io import shown_size
    try:
        with Image.open(path) as im:
            return shown_size(im)
    except Exception as e:  # PIL raises many types for corrupt files
        raise ConvertError(f"{path}: cannot read image size ({type(e).__name__}: {e})") from None


class CocoBuilder:
    """Accumulates images and boxes; category ids are class index + 1 (COCO's ids start at 1)."""

    def __init__(self, names: list[str]):
        self.names = list(names)
        self.images: list[dict] = []
        self.annotations: list[dict] = []

    def add_image(self, file_name: str, width: int, height: int) -> int:
        image_id = len(self.images) + 1
        self.images.append({"id": image_id, "file_name": file_name, "width": int(width), "height": int(height)})
        return image_id

    def add_box(self, image_id: int, cls: int, x: float, y: float, w: float, h: float, **extra) -> None:
        self.annotations.append({"id": len(self.annotations) + 1, "image_id": image_id, "category_id": cls + 1,
                                 "bbox": [x, y, w, h], "area": w * h, "iscrowd": 0, **extra})

    def document(self, description: str) -> dict:
        cats = [{"id": k + 1, "name": n, "supercategory": ""} for k, n in enumerate(self.names)]
        return {"info": {"description": description}, "images": self.images, "annotations": self.annotations,
                "categories": cats}


def add_image_file(build: CocoBuilder, img: Path, file_name: str, probs: Problems) -> tuple[int, int, int] | None:
    """Register img as file_name with its shown size: (image id, w, h); an unreadable header is noted in
    probs and gives None (the image is left out)."""
    try:
        w, h = image_size(img)
    except ConvertError as e:
        probs.add(str(e))
        return None
    return build.add_image(file_name, w, h), w, h


def write_json(doc: dict, out: str | Path) -> Path:
    """Write via a temporary file and rename, so a failed run never leaves half a json."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}-", dir=out.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(doc, f)
        os.replace(tmp, out)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return out


def images_by_stem(folder: str | Path, probs: Problems) -> dict[str, Path]:
    """Image files under folder keyed by their path relative to it without the suffix ('sub/0001');
    two images with one key (a.jpg and a.png) are a problem, since a label file could mean either."""
    out: dict[str, Path] = {}
    root = Path(folder)
    for p in list_images(root):
        key = p.relative_to(root).with_suffix("").as_posix()
        if key in out:
            probs.add(f"{p}: same name as {out[key]}; a label file {key}.* could mean either")
        out[key] = p
    return out


def paired_label_files(labels: Path, images: Path, probs: Problems) -> tuple[dict, dict, list[str]]:
    """Label txts and images paired by their path under each folder, without suffix: (txt by key, image by
    key, warnings for txts without an image). Those are listed, not fatal: sets ship their images in parts."""
    files = {p.relative_to(labels).with_suffix("").as_posix(): p for p in label_files(labels, ".txt")}
    imgs = images_by_stem(images, probs)
    orphans = [f"{txt}: no image {key}.* under {images}; skipped" for key, txt in files.items() if key not in imgs]
    return files, imgs, orphans


def label_files(folder: str | Path, suffix: str) -> list[Path]:
    """Label files under folder (recursively), sorted; ConvertError if there are none."""
    root = Path(folder)
    if not root.is_dir():
        raise ConvertError(f"label folder {root} not found")
    files = sorted(p for p in root.rglob(f"*{suffix}") if p.is_file())
    if not files:
        raise ConvertError(f"no {suffix} files under {root}")
    return files


def read_lines(path: Path, probs: Problems) -> list[str]:
    """A label file's lines; an unreadable file (permissions, not UTF-8) is a problem naming it."""
    try:
        return path.read_text(encoding="utf-8-sig").splitlines()  # -sig: a BOM some editors add is not data
    except (OSError, UnicodeDecodeError) as e:
        probs.add(f"{path}: cannot read ({type(e).__name__}: {e})")
        return []

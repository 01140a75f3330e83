"""xView geojson -> COCO json.

xView ships one GeoJSON FeatureCollection for all images. Each feature's `properties` hold
`image_id` (the image's file name, e.g. "1036.tif"), `type_id` (the class, one of 60 ids between
11 and 94) and `bounds_imcoords` ("x1,y1,x2,y2" in pixels). The COCO category ids are the xView
type_ids themselves, so predictions keep xView's numbering.

Features of images not under --images are skipped (convert a train/val split of the images with
the one geojson); type_ids outside the 60 classes (the release has a few, e.g. 75 and 82) are
skipped; boxes are clipped to the image and dropped when no area is left. All three are counted
and listed in info['warnings']. Malformed features are errors naming the feature.
"""
from __future__ import annotations

import math
from collections import Counter
from pathlib import Path

from utils.data.convert.common import CocoBuilder, ConvertError, Problems, add_image_file, list_images
from utils.data.coco import read_json

CLASSES = {
    11: "Fixed-wing Aircraft", 12: "Small Aircraft", 13: "Cargo Plane", 15: "Helicopter", 17: "Passenger Vehicle",
    18: "Small Car", 19: "Bus", 20: "Pickup Truck", 21: "Utility Truck", 23: "Truck", 24: "Cargo Truck",
    25: "Truck w/Box", 26: "Truck Tractor", 27: "Trailer", 28: "Truck w/Flatbed", 29: "Truck w/Liquid",
    32: "Crane Truck", 33: "Railway Vehicle", 34: "Passenger Car", 35: "Cargo Car", 36: "Flat Car", 37: "Tank car",
    38: "Locomotive", 40: "Maritime Vessel", 41: "Motorboat", 42: "Sailboat", 44: "Tugboat", 45: "Barge",
    47: "Fishing Vessel", 49: "Ferry", 50: "Yacht", 51: "Container Ship", 52: "Oil Tanker", 53: "Engineering Vehicle",
    54: "Tower crane", 55: "Container Crane", 56: "Reach Stacker", 57: "Straddle Carrier", 59: "Mobile Crane",
    60: "Dump Truck", 61: "Haul Truck", 62: "Scraper/Tractor", 63: "Front loader/Bulldozer", 64: "Excavator",
    65: "Cement Mixer", 66: "Ground Grader", 71: "Hut/Tent", 72: "Shed", 73: "Building", 74: "Aircraft Hangar",
    76: "Damaged Building", 77: "Facility", 79: "Construction Site", 83: "Vehicle Lot", 84: "Helipad",
    86: "Storage Tank", 89: "Shipping container lot", 91: "Shipping Container", 93: "Pylon", 94: "Tower"}


def _parse_feature(f) -> tuple[str, int, list[float]] | str:
    """(image file name, type_id, [x1, y1, x2, y2]) or what is wrong."""
    props = f.get("properties") if isinstance(f, dict) else None
    if not isinstance(props, dict):
        return "no 'properties' object"
    name, tid, bounds = props.get("image_id"), props.get("type_id"), props.get("bounds_imcoords")
    if not isinstance(name, str) or not name:
        return f"image_id {name!r:.40} is not a file name"
    try:
        tid_i = int(tid)
    except (TypeError, ValueError):
        return f"type_id {tid!r:.40} is not an integer"
    if isinstance(tid, float) and not tid.is_integer():
        return f"type_id {tid!r} is not an integer"
    try:
        box = [float(v) for v in str(bounds).split(",")]
    except ValueError:
        box = []
    if len(box) != 4 or not all(math.isfinite(v) for v in box):
        return f"bounds_imcoords {bounds!r:.60} is not 'x1,y1,x2,y2'"
    return name, tid_i, box


def xview_to_coco(geojson: str | Path, images: str | Path) -> dict:
    """COCO dict for every image under `images` with the boxes the geojson gives it."""
    geojson, images = Path(geojson), Path(images)
    data = read_json(geojson)
    feats = data.get("features")
    if data.get("type") != "FeatureCollection" or not isinstance(feats, list):
        raise ConvertError(f"{geojson}: expected a GeoJSON FeatureCollection with a 'features' list")
    probs = Problems(f"xView geojson {geojson}")
    by_image: dict[str, list[tuple[int, int, list[float]]]] = {}
    for i, f in enumerate(feats):
        got = _parse_feature(f)
        if isinstance(got, str):
            fid = f.get("properties", {}).get("feature_id") if isinstance(f, dict) and isinstance(
                f.get("properties"), dict) else None
            probs.add(f"{geojson}: features[{i}]" + (f" (feature_id {fid})" if fid is not None else "") + f": {got}")
            continue
        by_image.setdefault(got[0], []).append((i, got[1], got[2]))
    probs.raise_if_any()
    type_ids = sorted(CLASSES)
    index = {t: k for k, t in enumerate(type_ids)}
    build = CocoBuilder([CLASSES[t] for t in type_ids])
    files = list_images(images)
    if not files:
        raise ConvertError(f"no images under {images}")
    unknown: Counter = Counter()
    clipped = dropped = 0
    for img in files:
        added = add_image_file(build, img, img.relative_to(images).as_posix(), probs)
        if added is None:
            continue
        image_id, w, h = added
        for i, tid, (x1, y1, x2, y2) in by_image.pop(img.name, []):
            if tid not in index:
                unknown[tid] += 1
                continue
            cx1, cy1, cx2, cy2 = max(min(x1, x2), 0.0), max(min(y1, y2), 0.0), min(max(x1, x2), w), min(max(y1, y2), h)
            if cx2 <= cx1 or cy2 <= cy1:
                dropped += 1
                continue
            clipped += (cx1, cy1, cx2, cy2) != (x1, y1, x2, y2)
            build.add_box(image_id, index[tid], cx1, cy1, cx2 - cx1, cy2 - cy1, xview_feature=i)
    probs.raise_if_any()
    doc = build.document(f"converted from xView geojson {geojson}")
    for c, t in zip(doc["categories"], type_ids):  # keep xView's type_ids as the category ids
        c["id"] = t
    for a in doc["annotations"]:
        a["category_id"] = type_ids[a["category_id"] - 1]
    warnings = []
    if by_image:
        warnings.append(f"{sum(map(len, by_image.values()))} feature(s) of {len(by_image)} image(s) not under "
                        f"{images} skipped (e.g. {sorted(by_image)[:3]})")
    if unknown:
        warnings.append(f"{sum(unknown.values())} feature(s) with a type_id outside the 60 classes skipped: "
                        f"{dict(sorted(unknown.items()))}")
    if dropped:
        warnings.append(f"{dropped} box(es) with no area inside their image dropped")
    if clipped:
        warnings.append(f"{clipped} box(es) clipped to their image")
    doc["info"]["warnings"] = warnings
    return doc

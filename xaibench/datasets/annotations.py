"""Ground truth from users' annotation files: COCO-format JSON (boxes, polygon and RLE masks) and
folders of PNG masks, read into per-image objects in original pixels; errors name file and entry.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import DataError, did_you_mean

COCO_INSTALL = "COCO polygon and RLE masks need pycocotools: `pip install 'xaibench[coco]'` (or `pip install pycocotools`)"


@dataclass
class CocoObject:
    """One COCO annotation: category id, xyxy box in original pixels, segmentation (or None), crowd flag."""

    category: int
    box: np.ndarray
    segmentation: object = None
    crowd: bool = False


@dataclass
class CocoImage:
    """One COCO image entry and its objects."""

    id: int
    file_name: str
    width: int
    height: int
    objects: list[CocoObject] = field(default_factory=list)


@dataclass
class CocoFile:
    """A COCO-format annotation file: images by id, category names by id (sorted by id)."""

    path: Path
    images: dict[int, CocoImage]
    categories: dict[int, str]
    has_masks: bool

    def by_name(self) -> dict[str, CocoImage]:
        """Images by `file_name` as written (a relative path or a bare name)."""
        return {im.file_name.replace("\\", "/"): im for im in self.images.values()}

    def mask(self, image: CocoImage, objects: list[CocoObject]) -> np.ndarray:
        """(H,W) bool union of the objects' segmentations (an object without one: its box)."""
        out = np.zeros((image.height, image.width), dtype=bool)
        for i, obj in enumerate(objects):
            if obj.segmentation is None:
                x0, y0, x1, y1 = np.round(obj.box).astype(int)
                out[max(y0, 0):max(y1, 0), max(x0, 0):max(x1, 0)] = True
            else:
                out |= decode_segmentation(obj.segmentation, image, f"{self.path}: {image.file_name}, object {i}")
        return out


def _load_json(path: Path) -> dict:
    if not path.is_file():
        raise DataError(f"annotation file not found: {path}")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise DataError(f"{path}, line {e.lineno}: not valid JSON: {e.msg}") from e
    except OSError as e:
        raise DataError(f"cannot read {path}: {e}") from e
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        raise DataError(f"{path}: not a COCO annotation file (expected a JSON object with 'images', "
                        "'annotations' and 'categories' lists)")
    return data


def read_coco(path: Path) -> CocoFile:
    """Parse a COCO-format JSON file. Boxes ([x, y, w, h]) become xyxy; a box outside its image is
    clipped with a warning; an unknown category or image id, or a malformed entry, is a DataError
    naming the file and the entry (`annotations[i]`)."""
    data = _load_json(path)
    categories: dict[int, str] = {}
    for i, cat in enumerate(data.get("categories") or []):
        try:
            categories[int(cat["id"])] = str(cat.get("name", cat["id"]))
        except (KeyError, TypeError, ValueError) as e:
            raise DataError(f"{path}: categories[{i}] needs an integer 'id' ({e})") from e
    images: dict[int, CocoImage] = {}
    for i, im in enumerate(data["images"]):
        try:
            images[int(im["id"])] = CocoImage(int(im["id"]), str(im["file_name"]), int(im["width"]), int(im["height"]))
        except (KeyError, TypeError, ValueError) as e:
            raise DataError(f"{path}: images[{i}] needs 'id', 'file_name', 'width' and 'height' ({e!r})") from e
    has_masks = False
    for i, ann in enumerate(data.get("annotations") or []):
        where = f"{path}: annotations[{i}]" + (f" (id {ann['id']})" if isinstance(ann, dict) and "id" in ann else "")
        try:
            image_id, cat = int(ann["image_id"]), int(ann["category_id"])
            x, y, w, h = (float(v) for v in ann["bbox"])
        except (KeyError, TypeError, ValueError) as e:
            raise DataError(f"{where}: needs 'image_id', 'category_id' and 'bbox' [x, y, width, height] ({e!r})") from e
        if image_id not in images:
            raise DataError(f"{where}: image_id {image_id} is not in 'images'")
        if cat not in categories:
            valid = ", ".join(f"{k} ({v})" for k, v in sorted(categories.items()))
            raise DataError(f"{where}: unknown category_id {cat}. Valid: {valid}")
        if w < 0 or h < 0:
            raise DataError(f"{where}: bbox {ann['bbox']} has a negative width or height")
        image = images[image_id]
        box = clip_box(np.array([x, y, x + w, y + h]), image.width, image.height, f"{where} ({image.file_name})")
        seg = ann.get("segmentation") or None
        has_masks = has_masks or seg is not None
        image.objects.append(CocoObject(cat, box, seg, bool(ann.get("iscrowd", 0))))
    return CocoFile(path, images, dict(sorted(categories.items())), has_masks)


def clip_box(box: np.ndarray, width: int, height: int, where: str) -> np.ndarray:
    """`box` (xyxy) clipped to the image, with a warning naming `where` when it reached outside."""
    clipped = np.clip(box, 0, [width, height, width, height])
    if not np.array_equal(clipped, box):
        warnings.warn(f"{where}: box {box.tolist()} reaches outside the {width}×{height} image; clipped to "
                      f"{clipped.tolist()}", stacklevel=2)
    return clipped


def decode_segmentation(seg: object, image: CocoImage, where: str) -> np.ndarray:
    """(H,W) bool mask of a COCO segmentation: polygons [[x0,y0,x1,y1,…], …], or RLE
    {'size': [h, w], 'counts': list or compressed string}; an RLE of another size is a DataError."""
    try:
        from pycocotools import mask as cocomask
    except ImportError:
        raise DataError(f"{where}: {COCO_INSTALL}") from None
    h, w = image.height, image.width
    try:
        if isinstance(seg, list):
            polygons = [[float(v) for v in p] for p in seg if len(p) >= 6]
            if not polygons:
                raise DataError(f"{where}: a polygon needs at least 3 points (6 numbers)")
            rle = cocomask.merge(cocomask.frPyObjects(polygons, h, w))
        elif isinstance(seg, dict) and "counts" in seg and "size" in seg:
            if [int(v) for v in seg["size"]] != [h, w]:
                raise DataError(f"{where}: RLE mask of size {seg['size']} (h, w) for an image of {h}×{w}")
            rle = cocomask.frPyObjects(seg, h, w) if isinstance(seg["counts"], list) else seg
        else:
            raise DataError(f"{where}: segmentation must be a list of polygons or an RLE {{'size', 'counts'}}")
        return cocomask.decode(rle).astype(bool)
    except DataError:
        raise
    except Exception as e:  # noqa: BLE001 - malformed numbers or counts
        raise DataError(f"{where}: malformed segmentation ({type(e).__name__}: {e})") from e


def read_png_mask(path: Path, size: tuple[int, int], image: Path) -> np.ndarray:
    """(H,W) bool mask from a PNG (non-zero = object), of the image's (width, height) `size`, or a
    DataError naming both files."""
    try:
        with Image.open(path) as im:
            im.load()
            arr = np.asarray(im.convert("L"))
    except Exception as e:  # noqa: BLE001
        raise DataError(f"cannot read mask {path}: {type(e).__name__}: {e}") from e
    if (arr.shape[1], arr.shape[0]) != tuple(size):
        raise DataError(f"mask {path} is {arr.shape[1]}×{arr.shape[0]} but its image {image} is {size[0]}×{size[1]}")
    return arr > 0


def mask_box(mask: np.ndarray) -> np.ndarray | None:
    """(1,4) xyxy box around the mask's pixels, or None for an empty mask."""
    ys, xs = np.nonzero(mask)
    if len(xs) == 0:
        return None
    return np.array([[xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]], dtype=np.float64)


def match_names(files: list[str], coco: CocoFile) -> dict[str, CocoImage]:
    """Dataset file (relative path) → COCO image, by its relative path or, failing that, its file
    name (a file name that several COCO images share is a DataError)."""
    entries = coco.by_name()
    by_base: dict[str, list[CocoImage]] = {}
    for name, im in entries.items():
        by_base.setdefault(Path(name).name, []).append(im)
    out = {}
    for f in files:
        if f in entries:
            out[f] = entries[f]
            continue
        same = by_base.get(Path(f).name, [])
        if len(same) > 1:
            raise DataError(f"{coco.path}: {len(same)} images are named {Path(f).name}; write file_name as the path "
                            f"relative to the class folders (e.g. {f})")
        if same:
            out[f] = same[0]
    if files and not out:
        raise DataError(f"{coco.path}: no image file_name matches a dataset file (e.g. {files[0]}"
                        f"{did_you_mean(Path(files[0]).name, [Path(n).name for n in entries])})")
    return out

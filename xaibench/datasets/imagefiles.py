"""Reading images for the real datasets and the shared geometry: shorter side to size/0.875 then a
centre crop (the ImageNet evaluation convention), with boxes transformed and clipped the same way.

A file that cannot be read never raises: it becomes a Sample with `error` set (the runner skips it).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..errors import DataError
from .base import Sample

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".webp", ".gif")
CROP_FRACTION = 0.875
FILTERS = {"nearest": Image.NEAREST, "bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC,
           "lanczos": Image.LANCZOS, "box": Image.BOX, "hamming": Image.HAMMING}


def require_dir(path: Path, what: str) -> Path:
    """`path` if it is a folder, else a DataError naming it."""
    if not path.is_dir():
        raise DataError(f"{what} not found: {path}")
    return path


def require_root(root: str | None, dataset: str) -> Path:
    if not root:
        raise DataError(f"dataset '{dataset}' needs `dataset.root`: the folder that holds its files")
    return require_dir(Path(root).expanduser(), f"{dataset} root folder")


def read_rgb(path: Path) -> tuple[Image.Image | None, str | None]:
    """The image as RGB, or (None, "<file>: <reason>") if it cannot be decoded."""
    try:
        with Image.open(path) as im:
            im.load()
            return im.convert("RGB"), None
    except Exception as e:  # noqa: BLE001 - any decoding failure is recorded, never raised
        return None, f"{path}: {type(e).__name__}: {e}"


def read_image_file(path: Path, size: int) -> torch.Tensor:
    """(3,size,size) pixels of one image file (shorter side resized, centre crop), or a DataError
    naming the file when it is missing or cannot be decoded."""
    if not path.is_file():
        raise DataError(f"image not found: {path}")
    im, err = read_rgb(path)
    if im is None:
        raise DataError(err or str(path))
    return resize_crop(im, size)[0]


def error_sample(error: str, label: int, id: str, size: int) -> Sample:
    """The placeholder for an unreadable image: zero pixels, the error recorded."""
    return Sample(image=torch.zeros(3, size, size), label=label, id=id, error=error)


def to_tensor(im: Image.Image) -> torch.Tensor:
    """PIL RGB image → (3,H,W) float32 in [0,1]."""
    return torch.from_numpy(np.asarray(im, dtype=np.uint8).copy()).permute(2, 0, 1).float().div_(255)


def crop_geometry(w: int, h: int, size: int, crop_fraction: float) -> tuple[int, int, int, int]:
    """(resized width, resized height, left, top) of the shorter-side resize to round(size /
    crop_fraction) and the centre size×size crop."""
    short = round(size / crop_fraction)
    scale = short / min(w, h)
    nw, nh = max(size, round(w * scale)), max(size, round(h * scale))
    return nw, nh, (nw - size) // 2, (nh - size) // 2


def filter_of(interpolation: str) -> int:
    """The PIL resampling filter named `interpolation` (DataError listing the names)."""
    if interpolation not in FILTERS:
        raise DataError(f"unknown interpolation '{interpolation}'. Valid: {', '.join(FILTERS)}")
    return FILTERS[interpolation]


def resize_crop(
    im: Image.Image, size: int, boxes: np.ndarray | None = None, crop_fraction: float = CROP_FRACTION,
    interpolation: str = "bilinear",
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Resize the shorter side to round(size / crop_fraction) (filter `interpolation`), centre-crop
    size×size; the boxes (K,4) xyxy in original pixels are scaled, shifted and clipped to the crop
    (boxes left with no area are dropped)."""
    w, h = im.size
    nw, nh, left, top = crop_geometry(w, h, size, crop_fraction)
    im = im.resize((nw, nh), filter_of(interpolation)).crop((left, top, left + size, top + size))
    return to_tensor(im), transform_boxes(boxes, nw / w, nh / h, left, top, size)


def resize_crop_mask(mask: np.ndarray, size: int, crop_fraction: float = CROP_FRACTION) -> torch.Tensor:
    """An (H,W) bool mask through the geometry of `resize_crop` (nearest neighbour) → (size,size) bool."""
    h, w = mask.shape
    nw, nh, left, top = crop_geometry(w, h, size, crop_fraction)
    im = Image.fromarray(mask.astype(np.uint8) * 255).resize((nw, nh), Image.NEAREST)
    return torch.from_numpy(np.asarray(im.crop((left, top, left + size, top + size))) > 127)


def transform_boxes(
    boxes: np.ndarray | None, sx: float, sy: float, left: float, top: float, size: int
) -> torch.Tensor | None:
    if boxes is None:
        return None
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4) * np.array([sx, sy, sx, sy])
    b = np.clip(b - np.array([left, top, left, top]), 0, size)
    keep = (b[:, 2] > b[:, 0]) & (b[:, 3] > b[:, 1])
    return torch.from_numpy(b[keep].astype(np.float32))


def list_images(folder: Path) -> list[Path]:
    """Image files directly in `folder`, sorted by name."""
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)


def parse_voc_xml(path: Path) -> list[tuple[str, np.ndarray]]:
    """The (name, [xmin, ymin, xmax, ymax]) of each <object> of a PASCAL-VOC-format XML file
    (the format of both VOC and the ILSVRC bbox files); DataError naming the file if malformed."""
    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError) as e:
        raise DataError(f"cannot read annotation {path}: {e}") from e
    objects = []
    for i, obj in enumerate(root.iter("object")):
        name = (obj.findtext("name") or "").strip()
        box = obj.find("bndbox")
        try:
            if not name or box is None:
                raise ValueError("missing <name> or <bndbox>")
            xyxy = np.array([float(box.findtext(k)) for k in ("xmin", "ymin", "xmax", "ymax")])  # type: ignore[arg-type]
        except (TypeError, ValueError) as e:
            raise DataError(f"malformed annotation {path}: object {i}: {e}") from e
        if not (xyxy[2] >= xyxy[0] and xyxy[3] >= xyxy[1]):
            raise DataError(f"malformed annotation {path}: object {i} has xmax < xmin or ymax < ymin")
        objects.append((name, xyxy))
    if not objects:
        raise DataError(f"malformed annotation {path}: no <object> with a box")
    return objects

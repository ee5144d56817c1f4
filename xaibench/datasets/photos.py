"""`photos`: real photographs that ship inside installed packages (scikit-image, scikit-learn, matplotlib),
with ImageNet-1k labels and hand-annotated object boxes kept in `photos.json` — an offline ImageNet-style set.
"""

from __future__ import annotations

import importlib.util
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from torch.utils.data import Dataset

from ..errors import DataError
from ..registry import check_fields, param
from .base import CROP_HELP, DATASETS, IMAGE_SIZE_HELP, Sample

ANNOTATIONS = Path(__file__).with_name("photos.json")


def imagenet_class_names() -> list[str]:
    """The 1000 ImageNet-1k category names in class-index order (torchvision's list, no download)."""
    from torchvision.models import ResNet50_Weights

    return list(ResNet50_Weights.IMAGENET1K_V1.meta["categories"])


def package_file(package: str, relative: str) -> Path | None:
    """The path of `relative` inside an installed package (found without importing it), or None."""
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / relative
    return path if path.is_file() else None


def read_annotations(path: str | Path) -> list[dict[str, Any]]:
    """The photo entries of an annotation file in the `photos.json` format, checked."""
    p = Path(path).expanduser()
    try:
        entries = json.loads(p.read_text())["photos"]
    except FileNotFoundError:
        raise DataError(f"photos annotation file not found: {p}") from None
    except (json.JSONDecodeError, KeyError, TypeError) as e:
        raise DataError(f"{p} is not a photos annotation file (a JSON object with a 'photos' list): {e}") from None
    for i, e in enumerate(entries):
        missing = {"id", "package", "file", "label", "boxes"} - set(e)
        if missing:
            raise DataError(f"{p}: photo #{i} lacks {', '.join(sorted(missing))}")
        if not 0 <= int(e["label"]) < 1000:
            raise DataError(f"{p}: photo '{e['id']}' has label {e['label']}, not an ImageNet-1k index 0..999")
    return entries


def resize_crop_boxes(
    boxes: Tensor, scale_xy: tuple[float, float], offset_xy: tuple[float, float], size: int
) -> Tensor:
    """Map xyxy boxes through a resize (scale) then a crop (offset), clipped to the (size×size) image;
    boxes left with no area are dropped."""
    sx, sy = scale_xy
    ox, oy = offset_xy
    out = boxes * torch.tensor([sx, sy, sx, sy]) - torch.tensor([ox, oy, ox, oy])
    out = out.clamp(0, size)
    keep = (out[:, 2] > out[:, 0]) & (out[:, 3] > out[:, 1])
    return out[keep]


@DATASETS.register("photos")
@dataclass
class Photos(Dataset):
    """Photographs bundled with scikit-image, scikit-learn and matplotlib, labelled with ImageNet-1k classes
    and boxed by hand (`xaibench/datasets/photos.json`). Preprocessing as for ImageNet evaluation
    (Krizhevsky et al. 2012; the 0.875 crop of the TF and torchvision reference pipelines): resize the
    shorter side to image_size / crop_fraction, then centre-crop image_size². `root`: another annotation
    file in the same format (default: the bundled one). `only_lite0_correct`: keep the photos that
    efficientnet_lite0 classifies correctly."""

    root: str | None = param(None, help="annotation file in the photos.json format; null: the bundled one")
    split: str = param("test", help="test (the only split)")
    image_size: int = param(224, help=IMAGE_SIZE_HELP, ge=8)
    crop_fraction: float = param(0.875, help=CROP_HELP, gt=0, le=1)
    only_lite0_correct: bool = param(False, help="keep only the photos efficientnet_lite0 classifies correctly")
    entries: list[dict[str, Any]] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        check_fields(self)
        if self.split != "test":
            raise DataError(f"photos has only the split 'test' (got '{self.split}')")
        entries = read_annotations(self.root or ANNOTATIONS)
        if self.only_lite0_correct:
            entries = [e for e in entries if e.get("lite0_correct")]
        self.entries = entries
        self.class_names = imagenet_class_names()
        self.num_classes = 1000

    def __len__(self) -> int:
        return len(self.entries)

    def source(self, i: int) -> Path | None:
        """The file photo `i` is read from (None when its package is not installed)."""
        e = self.entries[i]
        return package_file(e["package"], e["file"])

    def original(self, i: int) -> tuple[Tensor, Tensor]:
        """Photo `i` before resizing: the (3,H,W) float image in [0,1] (its region, if any) and its
        boxes (K,4) in that image's pixels."""
        e = self.entries[i]
        path = self.source(i)
        if path is None:
            raise DataError(f"photo '{e['id']}' needs the package '{e['package']}' (file {e['file']}): pip install it")
        with Image.open(path) as im:
            rgb = np.asarray(im.convert("RGB"))
        image = torch.from_numpy(rgb.copy()).permute(2, 0, 1).float().div_(255)
        boxes = torch.tensor(e["boxes"], dtype=torch.float32).reshape(-1, 4)
        if "region" in e:
            x0, y0, x1, y1 = (int(v) for v in e["region"])
            image = image[:, y0:y1, x0:x1]
            boxes = boxes - torch.tensor([x0, y0, x0, y0], dtype=torch.float32)
            boxes = torch.minimum(boxes.clamp(min=0), torch.tensor([x1 - x0, y1 - y0] * 2, dtype=torch.float32))
        return image, boxes

    def __getitem__(self, i: int) -> Sample:
        e = self.entries[i]
        s = self.image_size
        try:
            image, boxes = self.original(i)
        except (DataError, OSError) as err:
            return Sample(torch.zeros(3, s, s), int(e["label"]), str(e["id"]), None, None, error=str(err))
        h, w = image.shape[-2:]
        short = int(round(s / self.crop_fraction))
        new_h, new_w = (short, int(short * w / h)) if h <= w else (int(short * h / w), short)
        import torchvision.transforms.functional as TF  # lazily: importing torchvision costs ~2 s of CLI start-up

        image = TF.resize(image, [new_h, new_w], antialias=True).clamp_(0, 1)
        top, left = int(round((new_h - s) / 2.0)), int(round((new_w - s) / 2.0))
        image = image[:, top : top + s, left : left + s].contiguous()
        boxes = resize_crop_boxes(boxes, (new_w / w, new_h / h), (left, top), s)
        return Sample(image, int(e["label"]), str(e["id"]), boxes=boxes)

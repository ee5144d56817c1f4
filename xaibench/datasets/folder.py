"""The `imagefolder` dataset: images sorted into one sub-folder per class (torchvision's
ImageFolder layout), class names = the sorted sub-folder names, optional ground truth from a COCO
JSON file or a folder of PNG masks."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from ..errors import DataError
from ..registry import check_fields, param
from .annotations import CocoFile, CocoImage, mask_box, match_names, read_coco, read_png_mask
from .base import CROP_HELP, DATASETS, IMAGE_SIZE_HELP, Sample
from .imagefiles import (
    CROP_FRACTION,
    error_sample,
    filter_of,
    list_images,
    read_rgb,
    require_root,
    resize_crop,
    resize_crop_mask,
)


def find_path(path: str, root: Path) -> Path:
    """`path` as given (absolute, or relative to the current folder), else relative to `root`."""
    p = Path(path).expanduser()
    if p.exists() or p.is_absolute():
        return p
    return root / p if (root / p).exists() else p


@DATASETS.register("imagefolder")
@dataclass
class ImageFolderDataset(Dataset):
    """Images in `root/<class>/*.jpg` (or `root/<split>/<class>/...` when that folder exists),
    labels = index of the class folder in sorted order. Images are resized (shorter side to
    image_size/crop_fraction) and centre-cropped. `annotations`: ground truth for the localization
    metrics — a COCO-format JSON file (images matched by file_name: the path under the class
    folders or the bare file name; boxes and polygon/RLE masks of the objects whose category name
    is the image's class, or of every object when no category is named like a class) or a folder
    of PNG masks named like the images (`<class>/<stem>.png` or `<stem>.png`, non-zero = object)."""

    root: str | None = param(None, help="folder of <class>/<image> files (or of <split>/<class>/<image>)")
    split: str = param("test", help="sub-folder of root read when it exists, else root itself")
    image_size: int = param(224, help=IMAGE_SIZE_HELP, ge=1)
    crop_fraction: float = param(CROP_FRACTION, help=CROP_HELP, gt=0, le=1)
    interpolation: str = param("bilinear", help="resize filter: nearest, bilinear, bicubic, lanczos, box or hamming")
    annotations: str | None = param(None, help="COCO-format JSON file or folder of PNG masks (relative to cwd or root)")

    def __post_init__(self) -> None:
        check_fields(self)
        base = require_root(self.root, "imagefolder")
        filter_of(self.interpolation)
        self.folder = base / self.split if (base / self.split).is_dir() else base
        classes = sorted(p.name for p in self.folder.iterdir() if p.is_dir() and not p.name.startswith("."))
        if not classes:
            raise DataError(f"imagefolder: no class sub-folders in {self.folder} (expected <root>/<class>/<image>)")
        self.class_names = classes
        self.num_classes = len(classes)
        self.files: list[tuple[Path, int]] = [
            (path, label) for label, name in enumerate(classes) for path in list_images(self.folder / name)
        ]
        if not self.files:
            raise DataError(f"imagefolder: no image files under the class folders of {self.folder}")
        self.coco: CocoFile | None = None
        self.mask_dir: Path | None = None
        self.matched: dict[str, CocoImage] = {}
        if self.annotations:
            source = find_path(self.annotations, base)
            if source.is_dir():
                self.mask_dir = source
            elif source.is_file():
                self.coco = read_coco(source)
                self.matched = match_names([self.sample_id(p) for p, _ in self.files], self.coco)
            else:
                raise DataError(f"imagefolder: annotations not found: {source} (a COCO JSON file or a folder of PNG masks)")

    def __len__(self) -> int:
        return len(self.files)

    def sample_id(self, path: Path) -> str:
        return path.relative_to(self.folder).as_posix()

    def objects(self, sample_id: str, label: int, size: tuple[int, int], path: Path):
        """(boxes (K,4) xyxy or None, mask (H,W) or None) in original pixels for one image."""
        if self.mask_dir is not None:
            rel = Path(sample_id).with_suffix(".png")
            mask_path = self.mask_dir / rel if (self.mask_dir / rel).is_file() else self.mask_dir / rel.name
            if not mask_path.is_file():
                return None, np.zeros((size[1], size[0]), dtype=bool)  # no mask: an empty one (skipped)
            mask = read_png_mask(mask_path, size, path)
            return mask_box(mask), mask
        if self.coco is None:
            return None, None
        entry = self.matched.get(sample_id)
        if entry is None:
            return None, (np.zeros((size[1], size[0]), dtype=bool) if self.coco.has_masks else None)
        if (entry.width, entry.height) != tuple(size):
            raise DataError(f"{self.coco.path}: image {entry.file_name} is {entry.width}×{entry.height} there but "
                            f"{path} is {size[0]}×{size[1]}")
        named = set(self.coco.categories.values()) & set(self.class_names)
        objs = [o for o in entry.objects if not named or self.coco.categories[o.category] == self.class_names[label]]
        boxes = np.stack([o.box for o in objs]) if objs else None
        return boxes, (self.coco.mask(entry, objs) if self.coco.has_masks else None)

    def __getitem__(self, index: int) -> Sample:
        path, label = self.files[index]
        sample_id = self.sample_id(path)
        im, error = read_rgb(path)
        if im is None:
            failed = error_sample(error or str(path), label, sample_id, self.image_size)
            if self.mask_dir is not None or (self.coco is not None and self.coco.has_masks):
                failed.mask = torch.zeros(self.image_size, self.image_size, dtype=torch.bool)  # batches keep masks
            return failed
        boxes, mask = self.objects(sample_id, label, im.size, path)
        image, tboxes = resize_crop(im, self.image_size, boxes, self.crop_fraction, self.interpolation)
        tmask = resize_crop_mask(mask, self.image_size, self.crop_fraction) if mask is not None else None
        return Sample(image=image, label=label, id=sample_id, boxes=tboxes, mask=tmask)

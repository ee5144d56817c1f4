"""The `coco` dataset: COCO-layout data (an images folder and an instances JSON): each image's label
is one chosen object's category, its ground truth the boxes and masks of that category.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from torch.utils.data import Dataset

from ..errors import DataError
from ..registry import check_fields, param
from .annotations import CocoImage, CocoObject, read_coco
from .base import CROP_HELP, DATASETS, IMAGE_SIZE_HELP, Sample
from .folder import find_path
from .imagefiles import CROP_FRACTION, error_sample, filter_of, read_rgb, require_root, resize_crop, resize_crop_mask


@DATASETS.register("coco")
@dataclass
class CocoDataset(Dataset):
    """COCO-format data (Lin et al., ECCV 2014): `root/annotations/instances_<split>.json` (or
    `instances_<split>2017.json`, or `annotations` given) and the images in `root/<split>2017/`,
    `root/images/<split>/`, `root/images/` or `images_dir`. Classes are the JSON's categories sorted by
    id (label = position in that order, 0…K−1; COCO's 80 ids 1…90 become 0…79). An image's label is the
    category of its `label_object`: `largest` (the non-crowd object with the largest box area, ties:
    the first listed) or `first` (the first non-crowd object); images without one are left out. Ground
    truth: every box and mask (polygon or RLE) of that category in the image, crowd regions included."""

    root: str | None = param(None, help="COCO folder (images and annotations/instances_<split>.json)")
    split: str = param("val", help="split: the instances file and images folder read")
    image_size: int = param(224, help=IMAGE_SIZE_HELP, ge=1)
    crop_fraction: float = param(CROP_FRACTION, help=CROP_HELP, gt=0, le=1)
    interpolation: str = param("bilinear", help="resize filter: nearest, bilinear, bicubic, lanczos, box or hamming")
    annotations: str | None = param(None, help="the instances JSON; null: root/annotations/instances_<split>[2017].json")
    images_dir: str | None = param(None, help="the images folder; null: found in the usual layouts")
    label_object: Literal["largest", "first"] = param("largest", help="which object's category is the image's label")

    def __post_init__(self) -> None:
        check_fields(self)
        base = require_root(self.root, "coco")
        filter_of(self.interpolation)
        names = [f"annotations/instances_{self.split}.json", f"annotations/instances_{self.split}2017.json"]
        path = find_path(self.annotations, base) if self.annotations else next(
            (base / n for n in names if (base / n).is_file()), base / names[0])
        self.coco = read_coco(path)
        folders = [self.images_dir] if self.images_dir else [f"{self.split}2017", f"images/{self.split}", "images", "."]
        found = [find_path(f, base) for f in folders]
        self.image_dir = next((f for f in found if f.is_dir()), None)
        if self.image_dir is None:
            raise DataError(f"coco: images folder not found (tried {', '.join(str(f) for f in found)}); set images_dir")
        self.category_ids = list(self.coco.categories)
        self.class_names = list(self.coco.categories.values())
        self.num_classes = len(self.class_names)
        self.items: list[tuple[CocoImage, CocoObject]] = []
        for image in self.coco.images.values():
            chosen = self.choose(image)
            if chosen is None:
                continue
            if not (self.image_dir / image.file_name).is_file():
                raise DataError(f"{self.coco.path}: image {image.file_name} (id {image.id}) not found in {self.image_dir}")
            self.items.append((image, chosen))
        if not self.items:
            raise DataError(f"{self.coco.path}: no image has a non-crowd object to take its label from")

    def choose(self, image: CocoImage) -> CocoObject | None:
        objs = [o for o in image.objects if not o.crowd]
        if not objs:
            return None
        if self.label_object == "first":
            return objs[0]
        areas = [float((o.box[2] - o.box[0]) * (o.box[3] - o.box[1])) for o in objs]
        return objs[int(np.argmax(areas))]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> Sample:
        image, chosen = self.items[index]
        label = self.category_ids.index(chosen.category)
        path = self.image_dir / image.file_name
        im, error = read_rgb(path)
        if im is None:
            failed = error_sample(error or str(path), label, image.file_name, self.image_size)
            failed.mask = torch.zeros(self.image_size, self.image_size, dtype=torch.bool) if self.coco.has_masks else None
            return failed
        if im.size != (image.width, image.height):
            raise DataError(f"{self.coco.path}: image {image.file_name} is {image.width}×{image.height} there but "
                            f"{path} is {im.size[0]}×{im.size[1]}")
        objs = [o for o in image.objects if o.category == chosen.category]
        boxes = np.stack([o.box for o in objs])
        tensor, tboxes = resize_crop(im, self.image_size, boxes, self.crop_fraction, self.interpolation)
        mask = None
        if self.coco.has_masks:
            mask = resize_crop_mask(self.coco.mask(image, objs), self.image_size, self.crop_fraction)
        return Sample(image=tensor, label=label, id=image.file_name, boxes=tboxes, mask=mask)

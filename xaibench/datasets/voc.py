"""The `voc` dataset: PASCAL VOC images with their XML boxes (JPEGImages/, Annotations/,
ImageSets/Main/<split>.txt); label = the first object's class, boxes = every box of that class."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from torch.utils.data import Dataset

from ..errors import DataError, unknown
from ..registry import check_fields, param
from .base import CROP_HELP, DATASETS, IMAGE_SIZE_HELP, Sample
from .imagefiles import CROP_FRACTION, error_sample, parse_voc_xml, read_rgb, require_dir, require_root, resize_crop

VOC_CLASSES = (
    "aeroplane",
    "bicycle",
    "bird",
    "boat",
    "bottle",
    "bus",
    "car",
    "cat",
    "chair",
    "cow",
    "diningtable",
    "dog",
    "horse",
    "motorbike",
    "person",
    "pottedplant",
    "sheep",
    "sofa",
    "train",
    "tvmonitor",
)


def voc_folder(base: Path) -> Path:
    """`base` if it holds Annotations/, else its single VOC<year> sub-folder (VOCdevkit layout)."""
    if (base / "Annotations").is_dir():
        return base
    years = sorted(p for p in base.glob("VOC*") if (p / "Annotations").is_dir())
    if len(years) == 1:
        return years[0]
    found = f" (found {', '.join(p.name for p in years)}: point root at one)" if years else ""
    raise DataError(f"voc: no Annotations/ folder in {base}{found}")


@DATASETS.register("voc")
@dataclass
class VOCDataset(Dataset):
    """PASCAL VOC (Everingham et al., IJCV 2010) classification with boxes. Boxes are VOC's 1-based
    inclusive pixel indices converted to 0-based end-exclusive xyxy (xmin-1, ymin-1, xmax, ymax)."""

    root: str | None = param(None, help="a VOC<year> folder (with Annotations/), or the VOCdevkit holding one")
    split: str = param("val", help="a split file of ImageSets/Main: train, val, trainval, …")
    image_size: int = param(224, help=IMAGE_SIZE_HELP, ge=1)
    crop_fraction: float = param(CROP_FRACTION, help=CROP_HELP, gt=0, le=1)

    class_names = VOC_CLASSES
    num_classes = len(VOC_CLASSES)

    def __post_init__(self) -> None:
        check_fields(self)
        self.folder = voc_folder(require_root(self.root, "voc"))
        sets = require_dir(self.folder / "ImageSets" / "Main", "voc ImageSets/Main folder")
        split_file = sets / f"{self.split}.txt"
        if not split_file.is_file():
            valid = [p.stem for p in sets.glob("*.txt") if "_" not in p.stem]
            raise DataError(f"voc: split file not found: {split_file}. " + unknown("split", self.split, valid))
        self.ids = [line.split()[0] for line in split_file.read_text().splitlines() if line.strip()]
        if not self.ids:
            raise DataError(f"voc: the split file {split_file} lists no images")
        require_dir(self.folder / "JPEGImages", "voc JPEGImages folder")
        missing = [i for i in self.ids if not (self.folder / "Annotations" / f"{i}.xml").is_file()]
        if missing:
            raise DataError(f"voc: annotation not found: {self.folder / 'Annotations' / (missing[0] + '.xml')}")

    def __len__(self) -> int:
        return len(self.ids)

    def annotation(self, index: int) -> tuple[int, np.ndarray]:
        """(label, all boxes of the first object's class, 0-based end-exclusive)."""
        xml = self.folder / "Annotations" / f"{self.ids[index]}.xml"
        objects = parse_voc_xml(xml)
        name = objects[0][0]
        if name not in VOC_CLASSES:
            raise DataError(f"malformed annotation {xml}: unknown class '{name}' (valid: {', '.join(VOC_CLASSES)})")
        boxes = np.stack([box for n, box in objects if n == name]) - np.array([1.0, 1.0, 0.0, 0.0])
        return VOC_CLASSES.index(name), boxes

    def __getitem__(self, index: int) -> Sample:
        image_id = self.ids[index]
        label, boxes = self.annotation(index)
        path = self.folder / "JPEGImages" / f"{image_id}.jpg"
        im, error = read_rgb(path)
        if im is None:
            return error_sample(error or str(path), label, image_id, self.image_size)
        image, tboxes = resize_crop(im, self.image_size, boxes, self.crop_fraction)
        return Sample(image=image, label=label, id=image_id, boxes=tboxes)

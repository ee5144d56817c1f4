"""The `imagenet` dataset: ILSVRC-2012 validation images with their per-image bounding-box XML
files and a synset mapping (`LOC_synset_mapping.txt` style: "n01440764 tench, Tinca tinca")."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from torch.utils.data import Dataset

from ..errors import DataError
from ..registry import check_fields, param
from .base import CROP_HELP, DATASETS, IMAGE_SIZE_HELP, Sample
from .imagefiles import (
    CROP_FRACTION,
    error_sample,
    list_images,
    parse_voc_xml,
    read_rgb,
    require_root,
    resize_crop,
)

# Where the three parts live in the usual layouts (Kaggle ILSVRC LOC, the ILSVRC-2012 tarballs, flat).
IMAGE_DIRS = ("ILSVRC/Data/CLS-LOC/val", "val", "ILSVRC2012_img_val", "images", ".")
BOX_DIRS = ("ILSVRC/Annotations/CLS-LOC/val", "ILSVRC2012_bbox_val_v3/val", "bbox/val", "bbox", "annotations", "val")
SYNSET_FILES = ("LOC_synset_mapping.txt", "synset_mapping.txt", "synsets.txt")


def read_synsets(path: Path) -> tuple[list[str], list[str]]:
    """The wnids (class index = line number) and human-readable names of a synset mapping file."""
    wnids, names = [], []
    try:
        lines = path.read_text().splitlines()
    except OSError as e:
        raise DataError(f"cannot read the synset mapping {path}: {e}") from e
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        wnid, _, name = line.strip().partition(" ")
        if not (wnid.startswith("n") and wnid[1:].isdigit()):
            raise DataError(f"malformed synset mapping {path}, line {n}: expected 'n<digits> name', got {line!r}")
        wnids.append(wnid)
        names.append(name.split(",")[0].strip() or wnid)
    if not wnids:
        raise DataError(f"the synset mapping {path} is empty")
    return wnids, names


def first_existing(base: Path, candidates: tuple[str, ...], given: str | None, what: str, want_dir: bool) -> Path:
    if given:
        path = base / given
        if path.is_dir() if want_dir else path.is_file():
            return path
        raise DataError(f"imagenet: {what} not found: {path}")
    for c in candidates:
        path = base / c
        if path.is_dir() if want_dir else path.is_file():
            return path
    raise DataError(f"imagenet: no {what} in {base} (looked for {', '.join(candidates)}); name it explicitly")


@DATASETS.register("imagenet")
@dataclass
class ImageNetValDataset(Dataset):
    """ILSVRC-2012 validation set (Russakovsky et al., IJCV 2015) with localization boxes: label =
    the synset of the image's XML annotation (index in the synset mapping), boxes = every box of
    that synset. Folders are found in the common layouts or named by `images_dir`, `boxes_dir`,
    `synset_file` (relative to root). Boxes are taken as given in pixels (xmin, ymin, xmax, ymax).
    `split` val or test (the config default) both read the validation set: ILSVRC test labels are not public."""

    root: str | None = param(None, help="folder of the ILSVRC-2012 validation images, bbox XMLs and synset mapping")
    split: str = param("val", help="val or test: both read the validation set (the test labels are not public)")
    image_size: int = param(224, help=IMAGE_SIZE_HELP, ge=1)
    crop_fraction: float = param(CROP_FRACTION, help=CROP_HELP, gt=0, le=1)
    images_dir: str | None = param(None, help="image folder relative to root; null: found in the common layouts")
    boxes_dir: str | None = param(None, help="bbox XML folder relative to root; null: found in the common layouts")
    synset_file: str | None = param(None, help="synset mapping file relative to root; null: found in the common "
                                               "layouts")

    def __post_init__(self) -> None:
        check_fields(self)
        if self.split not in ("val", "test"):
            raise DataError(
                f"imagenet: split '{self.split}' has no per-image boxes. Valid: val, test (both read the "
                "ILSVRC-2012 validation set: the test labels are not public)"
            )
        base = require_root(self.root, "imagenet")
        self.synset_path = first_existing(base, SYNSET_FILES, self.synset_file, "synset mapping file", False)
        self.wnids, self.class_names = read_synsets(self.synset_path)
        self.num_classes = len(self.wnids)
        self.index_of = {w: i for i, w in enumerate(self.wnids)}
        self.image_folder = first_existing(base, IMAGE_DIRS, self.images_dir, "image folder", True)
        self.box_folder = first_existing(base, BOX_DIRS, self.boxes_dir, "bbox XML folder", True)
        self.files = list_images(self.image_folder)
        if not self.files:
            raise DataError(f"imagenet: no images in {self.image_folder}")
        xmls = {p.stem for p in self.box_folder.glob("*.xml")}
        missing = [p for p in self.files if p.stem not in xmls]
        if missing:
            raise DataError(
                f"imagenet: {len(missing)} image(s) have no bbox XML in {self.box_folder}, "
                f"e.g. {self.box_folder / (missing[0].stem + '.xml')}"
            )

    def __len__(self) -> int:
        return len(self.files)

    def annotation(self, index: int) -> tuple[int, np.ndarray]:
        """(label, boxes of that class in original pixels) from the image's XML file."""
        xml = self.box_folder / f"{self.files[index].stem}.xml"
        objects = parse_voc_xml(xml)
        wnid = objects[0][0]
        if wnid not in self.index_of:
            raise DataError(f"malformed annotation {xml}: synset '{wnid}' is not in {self.synset_path}")
        return self.index_of[wnid], np.stack([box for name, box in objects if name == wnid])

    def __getitem__(self, index: int) -> Sample:
        path = self.files[index]
        label, boxes = self.annotation(index)
        im, error = read_rgb(path)
        if im is None:
            return error_sample(error or str(path), label, path.stem, self.image_size)
        image, tboxes = resize_crop(im, self.image_size, boxes, self.crop_fraction)
        return Sample(image=image, label=label, id=path.stem, boxes=tboxes)

"""The `imagefolder` dataset: images sorted into one sub-folder per class (torchvision's
ImageFolder layout), class names = the sorted sub-folder names."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from torch.utils.data import Dataset

from ..errors import DataError
from ..registry import check_fields, param
from .base import CROP_HELP, DATASETS, IMAGE_SIZE_HELP, Sample
from .imagefiles import CROP_FRACTION, error_sample, list_images, read_rgb, require_root, resize_crop


@DATASETS.register("imagefolder")
@dataclass
class ImageFolderDataset(Dataset):
    """Images in `root/<class>/*.jpg` (or `root/<split>/<class>/...` when that folder exists),
    labels = index of the class folder in sorted order; no boxes or masks. Images are resized
    (shorter side to image_size/crop_fraction) and centre-cropped."""

    root: str | None = param(None, help="folder of <class>/<image> files (or of <split>/<class>/<image>)")
    split: str = param("test", help="sub-folder of root read when it exists, else root itself")
    image_size: int = param(224, help=IMAGE_SIZE_HELP, ge=1)
    crop_fraction: float = param(CROP_FRACTION, help=CROP_HELP, gt=0, le=1)

    def __post_init__(self) -> None:
        check_fields(self)
        base = require_root(self.root, "imagefolder")
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

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> Sample:
        path, label = self.files[index]
        sample_id = path.relative_to(self.folder).as_posix()
        im, error = read_rgb(path)
        if im is None:
            return error_sample(error or str(path), label, sample_id, self.image_size)
        image, _ = resize_crop(im, self.image_size, crop_fraction=self.crop_fraction)
        return Sample(image=image, label=label, id=sample_id)

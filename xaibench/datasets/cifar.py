"""The `cifar10` dataset: the CIFAR-10 "python version" batch files (data_batch_1..5, test_batch,
batches.meta) in a local folder, read with a restricted unpickler (no arbitrary code)."""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from ..errors import DataError, unknown
from ..registry import check_fields, param
from .base import DATASETS, IMAGE_SIZE_HELP, Sample
from .imagefiles import require_root

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
BATCHES = {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]}
ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("copyreg", "_reconstructor"),
    ("builtins", "object"),
}


class BatchUnpickler(pickle.Unpickler):
    """Unpickles only plain containers and numpy arrays (the content of the CIFAR batch files)."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in ALLOWED_GLOBALS:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}")


def load_batch(path: Path) -> dict[str, Any]:
    """A CIFAR batch file as a dict with str keys; DataError naming the file if it is not one."""
    if not path.is_file():
        raise DataError(f"cifar10: batch file not found: {path}")
    try:
        with path.open("rb") as f:
            raw = BatchUnpickler(f, encoding="bytes").load()
    except Exception as e:  # noqa: BLE001 - truncated or foreign pickles are all "not a batch file"
        raise DataError(f"cifar10: cannot read batch file {path}: {type(e).__name__}: {e}") from e
    if not isinstance(raw, dict):
        raise DataError(f"cifar10: {path} is not a CIFAR batch (expected a dict)")
    return {k.decode() if isinstance(k, bytes) else k: v for k, v in raw.items()}


@DATASETS.register("cifar10")
@dataclass
class CIFAR10Dataset(Dataset):
    """CIFAR-10 (Krizhevsky, 2009) from the python batch files in `root` (or
    `root/cifar-10-batches-py`); split `train` (50,000) or `test` (10,000); images resized from
    32×32 to image_size (bilinear, no crop); no boxes or masks."""

    root: str | None = param(None, help="folder of the CIFAR-10 python batch files (or of cifar-10-batches-py)")
    split: str = param("test", help="train (50,000 images) or test (10,000)")
    image_size: int = param(32, help=IMAGE_SIZE_HELP + "; resized bilinearly from 32", ge=1)

    def __post_init__(self) -> None:
        check_fields(self)
        if self.split not in BATCHES:
            raise DataError("cifar10: " + unknown("split", self.split, BATCHES))
        base = require_root(self.root, "cifar10")
        folder = base / "cifar-10-batches-py" if (base / "cifar-10-batches-py").is_dir() else base
        images, labels = [], []
        for name in BATCHES[self.split]:
            path = folder / name
            batch = load_batch(path)
            try:
                data = np.asarray(batch["data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
                lab = np.asarray(batch["labels"], dtype=np.int64).reshape(-1)
            except (KeyError, ValueError) as e:
                raise DataError(f"cifar10: malformed batch file {path}: {type(e).__name__}: {e}") from e
            if len(data) != len(lab) or (len(lab) and not 0 <= lab.min() <= lab.max() < 10):
                raise DataError(f"cifar10: malformed batch file {path}: {len(data)} images, {len(lab)} labels in 0..9")
            images.append(data)
            labels.append(lab)
        self.images = torch.from_numpy(np.concatenate(images))
        self.labels = torch.from_numpy(np.concatenate(labels))
        self.class_names = list(CIFAR10_CLASSES)
        meta = folder / "batches.meta"
        if meta.is_file():
            names = load_batch(meta).get("label_names")
            if names is not None and len(names) == 10:
                self.class_names = [n.decode() if isinstance(n, bytes) else str(n) for n in names]
        self.num_classes = len(self.class_names)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> Sample:
        image = self.images[index].float().div(255)
        if self.image_size != 32:
            image = torch.nn.functional.interpolate(
                image[None], size=(self.image_size, self.image_size), mode="bilinear", align_corners=False
            )[0].clamp_(0, 1)
        return Sample(image=image, label=int(self.labels[index]), id=f"cifar10-{self.split}-{index:05d}")

"""The sample and batch types every dataset yields, the collate function, and the registry.

Images are float32 pixel tensors in [0,1] of shape (3,H,W); boxes are (K,4) xyxy pixel
coordinates; masks are (H,W) bool. Missing annotations are None.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor
from torch.utils.data import Dataset

from ..registry import Registry

IMAGE_SIZE_HELP = "side of the square images returned, px (set as dataset.image_size)"
CROP_HELP = "centre-crop side over the resized shorter side (ImageNet evaluation: 0.875)"


@dataclass
class Sample:
    """One image with its label and optional exact annotations."""

    image: Tensor  # (3,H,W) float32 in [0,1]
    label: int
    id: str
    boxes: Tensor | None = None  # (K,4) float32 xyxy pixels
    mask: Tensor | None = None  # (H,W) bool
    error: str | None = None  # set when the image could not be read (the runner skips it)


@dataclass
class Batch:
    """A collated batch: images (B,3,H,W), labels (B,), ids, boxes per image, masks (B,H,W)."""

    images: Tensor
    labels: Tensor
    ids: list[str]
    index: Tensor  # (B,) position of each sample in the dataset
    boxes: list[Tensor | None]
    masks: Tensor | None
    errors: list[str | None]

    def to(self, device: torch.device | str) -> Batch:
        return Batch(
            self.images.to(device),
            self.labels.to(device),
            self.ids,
            self.index,
            [b.to(device) if b is not None else None for b in self.boxes],
            self.masks.to(device) if self.masks is not None else None,
            self.errors,
        )


class IndexedDataset(Dataset):
    """Wraps a dataset of `Sample`s so the loader also yields each sample's index."""

    def __init__(self, base: Dataset, indices: list[int] | None = None):
        self.base = base
        self.indices = list(range(len(base))) if indices is None else list(indices)  # type: ignore[arg-type]

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> tuple[int, Sample]:
        return self.indices[i], self.base[self.indices[i]]


def collate(items: list[tuple[int, Sample]]) -> Batch:
    """Stack samples into a `Batch` (masks only when every sample has one)."""
    idx, samples = zip(*items)
    masks = [s.mask for s in samples]
    return Batch(
        images=torch.stack([s.image for s in samples]),
        labels=torch.tensor([s.label for s in samples], dtype=torch.long),
        ids=[s.id for s in samples],
        index=torch.tensor(idx, dtype=torch.long),
        boxes=[s.boxes for s in samples],
        masks=torch.stack(masks) if all(m is not None for m in masks) else None,
        errors=[s.error for s in samples],
    )


DATASETS: Registry[Dataset] = Registry("dataset")

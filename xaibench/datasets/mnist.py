"""`mnist`: the IDX files shared by MNIST, Fashion-MNIST and KMNIST, read from a local folder (gzipped or not);
by default Fashion-MNIST where Debian's `dataset-fashion-mnist` package installs it.
"""

from __future__ import annotations

import gzip
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import Dataset

from ..errors import DataError
from ..registry import check_fields, param
from .base import DATASETS, IMAGE_SIZE_HELP, Sample

DEBIAN_FASHION_MNIST = "/usr/share/datasets/fashion-mnist"  # apt-get install dataset-fashion-mnist
CLASS_NAMES = {
    "fashion": [
        "T-shirt/top",
        "Trouser",
        "Pullover",
        "Dress",
        "Coat",
        "Sandal",
        "Shirt",
        "Sneaker",
        "Bag",
        "Ankle boot",
    ],
    "digits": [str(d) for d in range(10)],
    "kmnist": ["o", "ki", "su", "tsu", "na", "ha", "ma", "ya", "re", "wo"],
}
SPLIT_PREFIX = {"train": "train", "test": "t10k"}
# IDX type codes (LeCun et al., "The MNIST database", file format section) -> big-endian numpy dtypes
IDX_DTYPES = {
    0x08: np.dtype("u1"),
    0x09: np.dtype("i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


def read_idx(path: str | Path) -> np.ndarray:
    """Read one IDX file (optionally gzipped): magic 0x0000, a type code, the number of dimensions,
    the big-endian int32 sizes, then the data."""
    p = Path(path)
    raw = gzip.decompress(p.read_bytes()) if p.suffix == ".gz" else p.read_bytes()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in IDX_DTYPES:
        raise DataError(f"{p} is not an IDX file (bad magic number {raw[:4].hex()})")
    dtype, ndim = IDX_DTYPES[raw[2]], raw[3]
    header = 4 + 4 * ndim
    shape = tuple(int(v) for v in np.frombuffer(raw, dtype=">i4", count=ndim, offset=4))
    expected = int(np.prod(shape)) * dtype.itemsize
    if len(raw) - header != expected:
        raise DataError(f"{p}: header says shape {shape} ({expected} bytes) but the file holds {len(raw) - header}")
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape)


def find_idx(root: Path, prefix: str, kind: str, ndim: int) -> Path:
    """The file `{prefix}-{kind}-idx{ndim}-ubyte` (or `.idx` with a dot, or `.gz`) in `root`."""
    names = [f"{prefix}-{kind}-idx{ndim}-ubyte", f"{prefix}-{kind}.idx{ndim}-ubyte"]
    for name in names:
        for candidate in (root / name, root / f"{name}.gz"):
            if candidate.is_file():
                return candidate
    hint = " (Fashion-MNIST: apt-get install dataset-fashion-mnist)" if str(root) == DEBIAN_FASHION_MNIST else ""
    raise DataError(
        f"no {names[0]}[.gz] in {root}{hint}; an MNIST-format folder holds "
        f"train/t10k-images-idx3-ubyte and train/t10k-labels-idx1-ubyte, gzipped or not"
    )


@DATASETS.register("mnist")
@dataclass
class MNIST(Dataset):
    """MNIST-format data (LeCun et al. 1998; Fashion-MNIST, Xiao et al. 2017; KMNIST, Clanuwat et al. 2018)
    from the IDX files in `root` (default: Fashion-MNIST from Debian's dataset-fashion-mnist,
    /usr/share/datasets/fashion-mnist). Grey images are repeated to `channels` channels and resized
    bilinearly to `image_size`. `classes` names the labels (`auto`: from the folder name)."""

    root: str | None = param(None, help="folder of the IDX files; null: Debian's Fashion-MNIST "
                                        "(/usr/share/datasets/fashion-mnist)")
    split: Literal["train", "test"] = param("test", help="train or test")
    image_size: int = param(28, help=IMAGE_SIZE_HELP + "; resized bilinearly from 28", ge=4)
    channels: int = param(3, help="1 (grey) or 3 (grey repeated)")
    classes: Literal["auto", "fashion", "digits", "kmnist"] = param("auto", help="label names: auto (from the folder "
                                                                                 "name), fashion, digits or kmnist")
    images: Tensor = field(init=False, repr=False)  # (N,28,28) uint8
    labels: Tensor = field(init=False, repr=False)  # (N,) int64

    def __post_init__(self) -> None:
        check_fields(self)
        if self.split not in SPLIT_PREFIX:
            raise DataError(f"mnist split must be one of {', '.join(SPLIT_PREFIX)}, got '{self.split}'")
        if self.channels not in (1, 3):
            raise DataError(f"mnist.channels must be 1 or 3, got {self.channels}")
        root = Path(self.root or DEBIAN_FASHION_MNIST).expanduser()
        if not root.is_dir():
            hint = " (apt-get install dataset-fashion-mnist)" if self.root is None else ""
            raise DataError(f"mnist folder not found: {root}{hint}")
        prefix = SPLIT_PREFIX[self.split]
        images = read_idx(find_idx(root, prefix, "images", 3))
        labels = read_idx(find_idx(root, prefix, "labels", 1))
        if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
            raise DataError(f"{root}: images {images.shape} and labels {labels.shape} do not match (N,H,W) and (N,)")
        self.images = torch.from_numpy(images.astype(np.uint8, copy=True))
        self.labels = torch.from_numpy(labels.astype(np.int64))
        kind = self.classes
        if kind == "auto":
            name = root.name.lower()
            kind = "fashion" if (self.root is None or "fashion" in name) else "kmnist" if "kmnist" in name else "digits"
        n = int(self.labels.max()) + 1 if len(self.labels) else 10
        self.class_names = CLASS_NAMES[kind] if n <= 10 else [str(i) for i in range(n)]
        self.num_classes = len(self.class_names)

    def __len__(self) -> int:
        return len(self.labels)

    def pixels(self, index: Tensor | slice) -> Tensor:
        """Images `index` as a float batch (B,channels,image_size,image_size) in [0,1]."""
        x = self.images[index].float().div_(255).unsqueeze(1)
        if x.shape[-1] != self.image_size or x.shape[-2] != self.image_size:
            x = F.interpolate(
                x,
                size=(self.image_size, self.image_size),
                mode="bilinear",
                align_corners=False,
                antialias=self.image_size < x.shape[-1],
            ).clamp_(0, 1)
        return x.expand(-1, self.channels, -1, -1).contiguous()

    def __getitem__(self, i: int) -> Sample:
        return Sample(self.pixels(slice(i, i + 1))[0], int(self.labels[i]), f"{self.split}-{i:05d}")

"""The `synthetic` dataset: shapes of 10 classes pasted on crops of real photographs, with
exact object masks and boxes, generated deterministically from a seed and cached on disk.

Each image's random stream is seeded from (seed, split, index), so any subset is reproducible
and the splits never share an image. Colour, position, scale and rotation are drawn
independently of the class; only the shape tells the class. Non-class clutter (lines, zigzags,
dot clusters, open arcs) never touches the object (kept ≥ 2 px away).
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import ClassVar, Literal

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from ..errors import ConfigError, DataError, unknown
from ..registry import check_fields, param
from .base import DATASETS, IMAGE_SIZE_HELP, Sample
from .shapes import CLASS_NAMES, clutter_mask, dilate, object_mask, pixel_grid

VERSION = 1  # bump whenever the generator changes: the cache key includes it
SPLITS = {"train": 0, "val": 1, "test": 2}
DEFAULT_SIZES = {"train": 5000, "val": 1000, "test": 1000}
# Real photographs shipped inside the scikit-image wheel (read from its package folder, never downloaded).
PHOTOS = (
    "astronaut.png",
    "chelsea.png",
    "coffee.png",
    "rocket.jpg",
    "motorcycle_left.png",
    "motorcycle_right.png",
    "hubble_deep_field.jpg",
    "ihc.png",
    "retina.jpg",
    "camera.png",
    "coins.png",
    "moon.png",
    "grass.png",
    "gravel.png",
    "brick.png",
)
MIN_CONTRAST = 90.0  # minimum RGB distance between the object colour and the background it covers


def default_cache_dir() -> Path:
    """`$XAIBENCH_CACHE/synthetic`, else `~/.cache/xaibench/synthetic`."""
    base = os.environ.get("XAIBENCH_CACHE")
    return (Path(base).expanduser() if base else Path.home() / ".cache" / "xaibench") / "synthetic"


@lru_cache(maxsize=4)
def bundled_photos(max_side: int) -> tuple[np.ndarray, ...]:
    """The scikit-image sample photographs as RGB uint8 arrays, shrunk so the short side ≤ `max_side`."""
    import skimage.data

    folder = Path(skimage.data.__file__).parent
    photos = []
    for name in PHOTOS:
        path = folder / name
        if not path.is_file():
            continue
        with Image.open(path) as im:
            im = im.convert("RGB")
            short = min(im.size)
            if short > max_side:
                w, h = im.size
                im = im.resize((round(w * max_side / short), round(h * max_side / short)), Image.BILINEAR)
            photos.append(np.asarray(im, dtype=np.uint8))
    if not photos:
        raise DataError(f"no scikit-image sample photographs found in {folder} (expected e.g. {PHOTOS[0]})")
    return tuple(photos)


def image_rng(seed: int, split: str, index: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, SPLITS[split], index, VERSION]))


def background_crop(rng: np.random.Generator, photos: tuple[np.ndarray, ...], size: int) -> np.ndarray:
    """A random square crop (25–100 % of the short side) of a random photograph, resized to size²."""
    photo = photos[rng.integers(len(photos))]
    h, w = photo.shape[:2]
    side = int(rng.uniform(0.25, 1.0) * min(h, w))
    y0, x0 = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
    crop = Image.fromarray(photo[y0 : y0 + side, x0 : x0 + side]).resize((size, size), Image.BILINEAR)
    out = np.array(crop, dtype=np.uint8)
    return out[:, ::-1].copy() if rng.random() < 0.5 else out


def contrasting_colour(rng: np.random.Generator, under: np.ndarray) -> np.ndarray:
    """A uniform random RGB colour at least MIN_CONTRAST from the mean of `under` (N,3) (class-blind)."""
    mean = under.reshape(-1, 3).mean(0)
    for _ in range(32):
        colour = rng.uniform(0, 255, 3)
        if np.linalg.norm(colour - mean) >= MIN_CONTRAST:
            return colour
    return np.where(mean > 127.5, 0.0, 255.0)  # a saturated corner far from the background


def render(seed: int, split: str, index: int, size: int = 128) -> dict[str, np.ndarray | int]:
    """Generate image `index` of `split`: returns image (H,W,3) uint8, mask (H,W) bool, label, and
    the layers it was composed from — `background` (photo crop + clutter, before the object) and
    `fill` (the object's colour field) — so that image == where(mask, fill, background) exactly —
    plus the union of the clutter masks and the object's centre, radius and angle."""
    rng = image_rng(seed, split, index)
    label = index % len(CLASS_NAMES)  # balanced classes for any prefix of the split
    radius = rng.uniform(0.16, 0.3) * size
    margin = radius + 2
    cx, cy = rng.uniform(margin, size - 1 - margin, 2)
    angle = rng.uniform(0, 2 * np.pi)
    mask = object_mask(label, size, cx, cy, radius, angle)  # the mask first, at full resolution

    image = background_crop(rng, bundled_photos(4 * size), size)
    keep_off = dilate(mask, 2)
    clutter_union = np.zeros_like(mask)
    for _ in range(int(rng.integers(1, 5))):
        for _attempt in range(10):
            clutter = clutter_mask(rng, size)
            if clutter.any() and not (clutter & keep_off).any():
                image[clutter] = rng.uniform(0, 255, 3).astype(np.uint8)
                clutter_union |= clutter
                break

    colour = contrasting_colour(rng, image[mask])
    x, y = pixel_grid(size)
    phi, amplitude = rng.uniform(0, 2 * np.pi), rng.uniform(0, 30)
    shade = amplitude * ((x - cx) * np.cos(phi) + (y - cy) * np.sin(phi)) / radius
    fill = np.clip(np.rint(colour + shade[..., None]), 0, 255).astype(np.uint8)
    background = image
    image = np.where(mask[..., None], fill, background)  # the object is drawn exactly through its mask
    return dict(
        image=image,
        mask=mask,
        label=label,
        background=background,
        fill=fill,
        clutter=clutter_union,
        centre=np.array([cx, cy]),
        radius=radius,
        angle=angle,
    )


def mask_box(mask: np.ndarray) -> np.ndarray:
    """The bounding box (x1, y1, x2, y2) of a mask, end-exclusive: pixel columns x1 ≤ x < x2."""
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    return np.array([cols[0], rows[0], cols[-1] + 1, rows[-1] + 1], dtype=np.float32)


def generate(seed: int, split: str, n_images: int, size: int) -> dict[str, np.ndarray]:
    """All `n_images` images of a split as arrays: images (N,H,W,3) uint8, masks (N,H,W) bool,
    labels (N,) int64, boxes (N,4) float32."""
    images = np.empty((n_images, size, size, 3), dtype=np.uint8)
    masks = np.empty((n_images, size, size), dtype=bool)
    labels = np.empty(n_images, dtype=np.int64)
    for i in range(n_images):
        r = render(seed, split, i, size)
        images[i], masks[i], labels[i] = r["image"], r["mask"], r["label"]
    boxes = np.stack([mask_box(m) for m in masks]) if n_images else np.zeros((0, 4), np.float32)
    return dict(images=images, masks=masks, labels=labels, boxes=boxes)


def load_cache(path: Path, n_images: int, size: int) -> dict[str, np.ndarray] | None:
    """The arrays cached in `path`, or None if it is missing, unreadable or does not match."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            data = {k: z[k] for k in ("images", "masks", "labels", "boxes")}
        masks = np.unpackbits(data["masks"], axis=-1, count=size).astype(bool)
        data["masks"] = masks
    except Exception:  # noqa: BLE001 - a corrupt cache is simply regenerated
        return None
    shapes_ok = (
        data["images"].shape == (n_images, size, size, 3)
        and data["masks"].shape == (n_images, size, size)
        and data["labels"].shape == (n_images,)
        and data["boxes"].shape == (n_images, 4)
    )
    return data if shapes_ok else None


def save_cache(path: Path, data: dict[str, np.ndarray]) -> None:
    """Write atomically (temporary file, then rename), so a crash never leaves a half file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp.npz")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(
                f,
                images=data["images"],
                masks=np.packbits(data["masks"], axis=-1),
                labels=data["labels"],
                boxes=data["boxes"],
            )
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@DATASETS.register("synthetic")
@dataclass
class SyntheticShapes(Dataset):
    """Synthetic shapes with exact masks (xaibench's controlled ground truth): 10 classes
    (circle … heart) of random position, scale, rotation and colour on crops of the photographs
    bundled with scikit-image, with clutter distractors. `n_images` defaults per split
    (train 5000, val 1000, test 1000); `cache: false` generates in memory only."""

    root: str | None = param(None, help="cache folder; null: $XAIBENCH_CACHE/synthetic, else ~/.cache/xaibench/synthetic")
    split: Literal["train", "val", "test"] = param("test", help="train, val or test (independent random streams)")
    image_size: int = param(128, help=IMAGE_SIZE_HELP, ge=32)
    n_images: int | None = param(None, help="images in the split; null: train 5000, val 1000, test 1000", ge=1)
    seed: int = param(0, help="seed of the generator", ge=0)
    cache: bool = param(True, help="keep the generated images in the cache folder")

    class_names: ClassVar[tuple[str, ...]] = CLASS_NAMES
    num_classes: ClassVar[int] = len(CLASS_NAMES)

    def __post_init__(self) -> None:
        check_fields(self)
        if self.split not in SPLITS:
            raise ConfigError("synthetic dataset: " + unknown("split", str(self.split), SPLITS))
        n = DEFAULT_SIZES[self.split] if self.n_images is None else self.n_images
        self.n_images = n
        folder = Path(self.root).expanduser() if self.root else default_cache_dir()
        self.cache_file = folder / f"synthetic-v{VERSION}-{self.split}-seed{self.seed}-{self.image_size}px-{n}.npz"
        data = load_cache(self.cache_file, n, self.image_size) if self.cache else None
        if data is None:
            data = generate(self.seed, self.split, n, self.image_size)
            if self.cache:
                try:
                    save_cache(self.cache_file, data)
                except OSError as e:
                    raise DataError(f"cannot write the synthetic cache {self.cache_file}: {e}") from e
        self.images = torch.from_numpy(data["images"])
        self.masks = torch.from_numpy(data["masks"])
        self.labels = torch.from_numpy(data["labels"])
        self.boxes = torch.from_numpy(data["boxes"])

    def __len__(self) -> int:
        return int(self.n_images)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> Sample:
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} images")
        return Sample(
            image=self.images[index].permute(2, 0, 1).float().div_(255),
            label=int(self.labels[index]),
            id=f"synthetic-{self.split}-{index:05d}",
            boxes=self.boxes[index : index + 1].clone(),
            mask=self.masks[index].clone(),
        )

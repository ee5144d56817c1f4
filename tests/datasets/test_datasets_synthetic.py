"""The synthetic dataset: exact masks and boxes, determinism, disjoint splits, cache, errors."""

import hashlib

import numpy as np
import pytest
import torch

from xaibench.datasets import DATASETS
from xaibench.datasets import synthetic as syn
from xaibench.datasets.shapes import CLASS_NAMES, dilate
from xaibench.errors import ConfigError


@pytest.fixture(scope="module")
def test_set(tmp_path_factory):
    return syn.SyntheticShapes(root=str(tmp_path_factory.mktemp("syn")), split="test", n_images=40)


def test_sample_types_and_ranges(test_set):
    s = test_set[3]
    assert s.image.shape == (3, 128, 128) and s.image.dtype == torch.float32
    assert 0.0 <= float(s.image.min()) and float(s.image.max()) <= 1.0
    assert s.mask.shape == (128, 128) and s.mask.dtype == torch.bool
    assert s.boxes.shape == (1, 4) and s.boxes.dtype == torch.float32
    assert s.label == 3 and s.id == "synthetic-test-00003" and s.error is None
    assert len(test_set) == 40 and test_set.num_classes == len(test_set.class_names) >= 10
    assert sorted(int(test_set[i].label) for i in range(20)) == sorted(list(range(10)) * 2)


@pytest.mark.parametrize("index", [0, 7, 13, 28])
def test_object_is_drawn_exactly_through_its_mask(index):
    r = syn.render(0, "test", index)
    image, mask, fill, background = r["image"], r["mask"], r["fill"], r["background"]
    np.testing.assert_array_equal(image, np.where(mask[..., None], fill, background))
    np.testing.assert_array_equal(image[~mask], background[~mask])  # nothing drawn outside the mask
    changed = (image != background).any(-1)
    assert changed[mask].mean() > 0.97  # and the object really covers (almost) every mask pixel
    assert not (r["clutter"] & dilate(mask, 2)).any()  # clutter keeps ≥ 2 px off the object


def test_circle_and_square_masks_match_their_geometry():
    y, x = np.mgrid[0:128, 0:128]
    circle = syn.render(0, "test", 0)  # label 0 = circle, radius 0.9·scale
    (cx, cy), r = circle["centre"], 0.9 * circle["radius"]
    np.testing.assert_array_equal(circle["mask"], (x - cx) ** 2 + (y - cy) ** 2 <= r * r)
    square = syn.render(0, "test", 1)  # label 1 = square, half side 0.68·scale
    side = 2 * 0.68 * square["radius"]
    assert CLASS_NAMES[1] == "square"
    assert abs(square["mask"].sum() / side**2 - 1) < 0.05


def test_box_is_the_mask_bounding_box(test_set):
    for i in range(0, 40, 9):
        s = test_set[i]
        rows, cols = np.flatnonzero(s.mask.any(1).numpy()), np.flatnonzero(s.mask.any(0).numpy())
        assert s.boxes[0].tolist() == [cols[0], rows[0], cols[-1] + 1, rows[-1] + 1]


def test_deterministic_and_subset_reproducible(test_set):
    again = syn.SyntheticShapes(split="test", n_images=12, cache=False)
    for i in (0, 5, 11):
        assert torch.equal(again[i].image, test_set[i].image) and torch.equal(again[i].mask, test_set[i].mask)
    assert not torch.equal(test_set[0].image, test_set[10].image)  # same class, different image
    other_seed = syn.render(1, "test", 0)
    assert not np.array_equal(other_seed["image"], syn.render(0, "test", 0)["image"])


def test_splits_are_disjoint():
    def digests(split):
        return {hashlib.sha1(syn.render(0, split, i, 64)["image"].tobytes()).hexdigest() for i in range(15)}

    train, val, test = digests("train"), digests("val"), digests("test")
    assert len(train) == len(val) == len(test) == 15
    assert not (train & val) and not (train & test) and not (val & test)


def test_colour_does_not_reveal_the_class():
    """A nearest-centroid classifier on the mean object colour stays near chance (10 %)."""
    renders = [syn.render(0, "val", i, 64) for i in range(200)]
    colours = np.stack([r["image"][r["mask"]].mean(0) for r in renders])
    labels = np.array([r["label"] for r in renders])
    centroids = np.stack([colours[:100][labels[:100] == c].mean(0) for c in range(10)])
    pred = np.argmin(((colours[100:, None] - centroids[None]) ** 2).sum(-1), 1)
    assert (pred == labels[100:]).mean() < 0.3


def test_cache_is_reused_and_a_corrupt_file_regenerated(tmp_path, monkeypatch):
    first = syn.SyntheticShapes(root=str(tmp_path), split="val", n_images=6, image_size=64)
    assert first.cache_file.is_file() and first.cache_file.parent == tmp_path

    def fail(*a, **k):
        raise AssertionError("regenerated although the cache was valid")

    with monkeypatch.context() as m:
        m.setattr(syn, "generate", fail)
        cached = syn.SyntheticShapes(root=str(tmp_path), split="val", n_images=6, image_size=64)
    assert torch.equal(cached.images, first.images) and torch.equal(cached.masks, first.masks)
    first.cache_file.write_bytes(b"not an npz file")
    repaired = syn.SyntheticShapes(root=str(tmp_path), split="val", n_images=6, image_size=64)
    assert torch.equal(repaired.images, first.images)
    assert syn.load_cache(first.cache_file, 6, 64) is not None  # rewritten


def test_cache_folder_from_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("XAIBENCH_CACHE", str(tmp_path))
    ds = syn.SyntheticShapes(split="val", n_images=2, image_size=48)
    assert ds.cache_file.parent == tmp_path / "synthetic" and ds.cache_file.is_file()


def test_bad_parameters_raise_config_errors():
    with pytest.raises(ConfigError, match="split.*'tset'.*Did you mean 'test'.*train, val"):
        syn.SyntheticShapes(split="tset", cache=False)
    with pytest.raises(ConfigError, match="n_images"):
        syn.SyntheticShapes(n_images=0, cache=False)
    with pytest.raises(ConfigError, match="image_size"):
        syn.SyntheticShapes(image_size=8, cache=False)
    with pytest.raises(ConfigError, match="train"):
        DATASETS.build("synthetic", split="training")
    assert isinstance(DATASETS.build("synthetic", n_images=3, image_size=48, cache=False), syn.SyntheticShapes)

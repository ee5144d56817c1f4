"""The `mnist` IDX loader on fixture files written here (gz and raw), and on Debian's Fashion-MNIST when installed."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from xaibench.datasets.base import DATASETS
from xaibench.datasets.mnist import DEBIAN_FASHION_MNIST, MNIST, read_idx
from xaibench.errors import DataError


def write_idx(path: Path, array: np.ndarray, gz: bool) -> None:
    """IDX writer following LeCun's format description (independent of the reader under test)."""
    code = {np.dtype("u1"): 0x08, np.dtype(">i4"): 0x0C}[array.dtype]
    header = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    data = header + array.tobytes()
    if gz:
        path = path.with_name(path.name + ".gz")
        data = gzip.compress(data)
    path.write_bytes(data)


def make_folder(root: Path, gz: bool, n_train: int = 6, n_test: int = 4, name: str = "digits") -> dict[str, np.ndarray]:
    folder = root / name
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    arrays = {}
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        labels = (np.arange(n) % 10).astype(np.uint8)
        write_idx(folder / f"{prefix}-images-idx3-ubyte", images, gz)
        write_idx(folder / f"{prefix}-labels-idx1-ubyte", labels, gz)
        arrays[prefix] = (images, labels)
    return {"root": str(folder), **arrays}


@pytest.mark.parametrize("gz", [True, False])
def test_reads_fixture_idx_files(tmp_path, gz):
    fx = make_folder(tmp_path, gz)
    for split, prefix in (("train", "train"), ("test", "t10k")):
        data = MNIST(root=fx["root"], split=split, image_size=28, channels=1)
        images, labels = fx[prefix]
        assert len(data) == len(labels)
        torch.testing.assert_close(data.images, torch.from_numpy(images))
        for i in range(len(data)):
            s = data[i]
            assert s.label == int(labels[i]) and s.id == f"{split}-{i:05d}"
            torch.testing.assert_close(s.image[0], torch.from_numpy(images[i]).float() / 255)
    assert data.class_names == [str(d) for d in range(10)]


def test_grey_is_expanded_to_three_channels_and_resized(tmp_path):
    fx = make_folder(tmp_path, gz=True)
    data = MNIST(root=fx["root"], image_size=32)
    s = data[1]
    assert s.image.shape == (3, 32, 32)
    assert torch.equal(s.image[0], s.image[1]) and torch.equal(s.image[0], s.image[2])
    x = torch.from_numpy(fx["t10k"][0][1]).float()[None, None] / 255
    ref = torch.nn.functional.interpolate(x, size=(32, 32), mode="bilinear", align_corners=False)[0, 0]
    torch.testing.assert_close(s.image[0], ref)
    assert 0 <= float(s.image.min()) and float(s.image.max()) <= 1
    batch = data.pixels(torch.tensor([0, 2, 3]))
    assert batch.shape == (3, 3, 32, 32)
    torch.testing.assert_close(batch[1], data[2].image)


def test_read_idx_other_dtypes_and_bad_files(tmp_path):
    a = np.arange(24, dtype=">i4").reshape(2, 3, 4)
    write_idx(tmp_path / "ints", a, gz=False)
    np.testing.assert_array_equal(read_idx(tmp_path / "ints"), a)
    (tmp_path / "bad").write_bytes(b"\x01\x02\x08\x01" + b"\x00" * 8)
    with pytest.raises(DataError, match="not an IDX file"):
        read_idx(tmp_path / "bad")
    (tmp_path / "short").write_bytes(bytes([0, 0, 8, 1]) + struct.pack(">I", 10) + b"\x00" * 3)
    with pytest.raises(DataError, match="holds 3"):
        read_idx(tmp_path / "short")


def test_user_errors(tmp_path):
    with pytest.raises(DataError, match="not found"):
        MNIST(root=str(tmp_path / "missing"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="t10k-images-idx3-ubyte"):
        MNIST(root=str(tmp_path / "empty"))
    fx = make_folder(tmp_path, gz=False)
    with pytest.raises(DataError, match="channels must be 1 or 3"):
        MNIST(root=fx["root"], channels=2)
    (Path(fx["root"]) / "t10k-labels-idx1-ubyte").write_bytes(
        bytes([0, 0, 8, 1]) + struct.pack(">I", 3) + b"\x00\x01\x02")
    with pytest.raises(DataError, match="do not match"):
        MNIST(root=fx["root"])


def test_class_names_follow_the_folder(tmp_path):
    fx = make_folder(tmp_path, gz=True, name="fashion-mnist")
    assert MNIST(root=fx["root"]).class_names[9] == "Ankle boot"
    fx = make_folder(tmp_path / "k", gz=True, name="kmnist")
    assert MNIST(root=fx["root"]).class_names[0] == "o"
    assert MNIST(root=fx["root"], classes="digits").class_names[0] == "0"
    assert DATASETS.build("mnist", root=fx["root"], split="train").num_classes == 10


def test_debian_fashion_mnist():
    if not Path(DEBIAN_FASHION_MNIST).is_dir():
        pytest.skip(f"Fashion-MNIST not installed at {DEBIAN_FASHION_MNIST} (apt-get install dataset-fashion-mnist)")
    test = MNIST()
    assert len(test) == 10_000 and test.class_names[0] == "T-shirt/top"
    assert torch.equal(torch.bincount(test.labels), torch.full((10,), 1000))  # Fashion-MNIST's test set is balanced
    assert test[0].image.shape == (3, 28, 28)
    assert len(MNIST(split="train")) == 60_000

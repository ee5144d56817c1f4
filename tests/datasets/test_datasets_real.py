"""The real-data loaders (imagefolder, imagenet, voc, cifar10) on tiny fixtures built here."""

import pickle

import numpy as np
import pytest
import torch
from PIL import Image

from xaibench.datasets import DATASETS
from xaibench.datasets.imagefiles import resize_crop
from xaibench.datasets.voc import VOC_CLASSES
from xaibench.errors import DataError


def save_image(path, w, h, colour=(255, 0, 0), box=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    a = np.zeros((h, w, 3), np.uint8)
    if box is None:
        a[:] = colour
    else:
        x1, y1, x2, y2 = box
        a[y1:y2, x1:x2] = colour
    Image.fromarray(a).save(path)


def voc_xml(path, objects, w=64, h=48):
    path.parent.mkdir(parents=True, exist_ok=True)
    body = "".join(
        f"<object><name>{n}</name><bndbox><xmin>{b[0]}</xmin><ymin>{b[1]}</ymin>"
        f"<xmax>{b[2]}</xmax><ymax>{b[3]}</ymax></bndbox></object>"
        for n, b in objects
    )
    path.write_text(f"<annotation><size><width>{w}</width><height>{h}</height></size>{body}</annotation>")


def test_resize_crop_transforms_pixels_and_boxes_alike():
    a = np.zeros((100, 200, 3), np.uint8)
    a[25:75, 50:150] = 255  # a white box [50,25,150,75] on black
    image, boxes = resize_crop(Image.fromarray(a), 56, np.array([[50, 25, 150, 75]]))
    # shorter side 100 → 64 (= 56 / 0.875): 128×64, crop offset (36, 4): box → [-4,12,60,44] → clipped
    assert image.shape == (3, 56, 56)
    assert boxes.tolist() == [[0.0, 12.0, 56.0, 44.0]]
    white = image[0] > 0.5
    rows, cols = np.flatnonzero(white.any(1).numpy()), np.flatnonzero(white.any(0).numpy())
    assert (rows[0], rows[-1] + 1, cols[0], cols[-1] + 1) == (12, 44, 0, 56)
    _, gone = resize_crop(Image.fromarray(a), 56, np.array([[0, 0, 20, 100]]))  # entirely cropped away
    assert gone.shape == (0, 4)


def test_imagefolder(tmp_path):
    save_image(tmp_path / "cat" / "a.png", 30, 20, (255, 0, 0))
    save_image(tmp_path / "dog" / "b.png", 20, 20, (0, 0, 255))
    (tmp_path / "dog" / "c.jpg").write_bytes(b"this is not a jpeg")
    (tmp_path / "dog" / "notes.txt").write_text("ignored")
    ds = DATASETS.build("imagefolder", root=str(tmp_path), image_size=16)
    assert ds.class_names == ["cat", "dog"] and len(ds) == 3
    a, b, c = ds[0], ds[1], ds[2]
    assert (a.label, b.label, c.label) == (0, 1, 1) and a.id == "cat/a.png"
    assert a.image.shape == (3, 16, 16) and torch.allclose(a.image[:, 8, 8], torch.tensor([1.0, 0, 0]))
    assert a.error is None and a.boxes is None and a.mask is None
    assert c.error is not None and "c.jpg" in c.error and float(c.image.abs().sum()) == 0
    assert c.image.shape == (3, 16, 16)


def test_imagefolder_errors(tmp_path):
    with pytest.raises(DataError, match="needs `dataset.root`"):
        DATASETS.build("imagefolder")
    with pytest.raises(DataError, match=str(tmp_path / "nowhere")):
        DATASETS.build("imagefolder", root=str(tmp_path / "nowhere"))
    with pytest.raises(DataError, match="no class sub-folders"):
        DATASETS.build("imagefolder", root=str(tmp_path))


def make_imagenet(root):
    (root / "LOC_synset_mapping.txt").write_text(
        "n01440764 tench, Tinca tinca\nn01443537 goldfish, Carassius auratus\nn01484850 great white shark\n"
    )
    save_image(root / "val" / "ILSVRC2012_val_00000001.JPEG", 64, 48, (0, 255, 0), box=(8, 4, 40, 36))
    voc_xml(
        root / "bbox" / "ILSVRC2012_val_00000001.xml",
        [("n01443537", (8, 4, 40, 36)), ("n01440764", (0, 0, 10, 10)), ("n01443537", (50, 30, 60, 40))],
    )
    (root / "val" / "ILSVRC2012_val_00000002.JPEG").write_bytes(b"\xff\xd8 truncated")
    voc_xml(root / "bbox" / "ILSVRC2012_val_00000002.xml", [("n01484850", (1, 2, 3, 4))])


def test_imagenet(tmp_path):
    make_imagenet(tmp_path)
    ds = DATASETS.build("imagenet", root=str(tmp_path), image_size=42)  # short side 48 → 48, crop 42
    assert len(ds) == 2 and ds.class_names == ["tench", "goldfish", "great white shark"]
    s = ds[0]
    assert s.label == 1 and s.id == "ILSVRC2012_val_00000001" and s.error is None
    # scale 1, crop offset ((64-42)//2, (48-42)//2) = (11, 3): boxes of the labelled synset only
    assert s.boxes.tolist() == [[0.0, 1.0, 29.0, 33.0], [39.0, 27.0, 42.0, 37.0]]
    assert float(s.image[1, 10, 10]) > 0.95 and float(s.image[1, 40, 35]) < 0.05  # JPEG: nearly exact
    bad = ds[1]
    assert bad.label == 2 and "ILSVRC2012_val_00000002.JPEG" in bad.error and bad.image.shape == (3, 42, 42)


def test_imagenet_errors(tmp_path):
    make_imagenet(tmp_path)
    xml = tmp_path / "bbox" / "ILSVRC2012_val_00000001.xml"
    xml.write_text("<annotation><object><name>n01443537</name></object")  # truncated XML
    ds = DATASETS.build("imagenet", root=str(tmp_path))
    with pytest.raises(DataError, match="ILSVRC2012_val_00000001.xml"):
        ds[0]
    voc_xml(xml, [("n99999999", (1, 1, 2, 2))])
    with pytest.raises(DataError, match="n99999999"):
        ds[0]
    xml.unlink()
    with pytest.raises(DataError, match="ILSVRC2012_val_00000001.xml"):
        DATASETS.build("imagenet", root=str(tmp_path))
    with pytest.raises(DataError, match="split 'train'.*Valid: val, test"):
        DATASETS.build("imagenet", root=str(tmp_path), split="train")
    (tmp_path / "LOC_synset_mapping.txt").unlink()
    with pytest.raises(DataError, match="synset mapping"):
        DATASETS.build("imagenet", root=str(tmp_path))


def make_voc(root):
    year = root / "VOCdevkit" / "VOC2012"
    (year / "ImageSets" / "Main").mkdir(parents=True)
    (year / "ImageSets" / "Main" / "val.txt").write_text("2008_000001\n2008_000002\n")
    (year / "ImageSets" / "Main" / "dog_val.txt").write_text("2008_000001  1\n")
    save_image(year / "JPEGImages" / "2008_000001.jpg", 64, 48, (255, 255, 255), box=(10, 5, 30, 25))
    voc_xml(
        year / "Annotations" / "2008_000001.xml",
        [("dog", (11, 6, 30, 25)), ("cat", (59, 1, 64, 10)), ("person", (1, 1, 64, 48)), ("dog", (40, 10, 64, 48))],
    )
    (year / "JPEGImages" / "2008_000002.jpg").write_bytes(b"corrupt")
    voc_xml(year / "Annotations" / "2008_000002.xml", [("cat", (1, 1, 5, 5))])
    return year


def test_voc(tmp_path):
    year = make_voc(tmp_path)
    ds = DATASETS.build("voc", root=str(tmp_path / "VOCdevkit"), image_size=48, crop_fraction=1.0)
    assert ds.folder == year and len(ds) == 2
    s = ds[0]
    assert s.label == VOC_CLASSES.index("dog") and s.id == "2008_000001"
    # 1-based inclusive → 0-based exclusive, then crop offset (8, 0); every object's box with its class
    # (issue 16: TorchRay scores each annotated class), the cat outside the crop dropped with its class
    assert s.boxes.tolist() == [[2.0, 5.0, 22.0, 25.0], [0.0, 0.0, 48.0, 48.0], [31.0, 9.0, 48.0, 48.0]]
    assert [VOC_CLASSES[c] for c in s.box_labels.tolist()] == ["dog", "person", "dog"]
    bad = ds[1]
    assert bad.label == VOC_CLASSES.index("cat") and "2008_000002.jpg" in bad.error


def test_voc_errors(tmp_path):
    year = make_voc(tmp_path)
    with pytest.raises(DataError, match=r"train\.txt.*Valid: val"):
        DATASETS.build("voc", root=str(year), split="train")
    voc_xml(year / "Annotations" / "2008_000002.xml", [("unicorn", (1, 1, 5, 5))])
    with pytest.raises(DataError, match="2008_000002.xml.*unicorn"):
        DATASETS.build("voc", root=str(year))[1]
    (year / "Annotations" / "2008_000002.xml").write_text("<annotation><object><name>cat</name></object></annotation>")
    with pytest.raises(DataError, match="2008_000002.xml"):
        DATASETS.build("voc", root=str(year))[1]
    with pytest.raises(DataError, match="Annotations"):
        DATASETS.build("voc", root=str(tmp_path))


def write_batch(path, data, labels):
    with path.open("wb") as f:
        pickle.dump({b"batch_label": b"x", b"data": data, b"labels": labels}, f)


def test_cifar10(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    data = np.random.default_rng(0).integers(0, 256, (4, 3072), dtype=np.uint8)
    write_batch(folder / "test_batch", data, [3, 1, 4, 1])
    with (folder / "batches.meta").open("wb") as f:
        pickle.dump({b"label_names": [n.encode() for n in "a b c d e f g h i j".split()]}, f)
    ds = DATASETS.build("cifar10", root=str(tmp_path))
    assert len(ds) == 4 and ds.class_names[3] == "d"
    s = ds[2]
    assert s.label == 4 and s.id == "cifar10-test-00002"
    assert torch.equal(s.image, torch.from_numpy(data[2].reshape(3, 32, 32)).float() / 255)
    big = DATASETS.build("cifar10", root=str(folder), image_size=64)[0].image
    assert big.shape == (3, 64, 64) and 0 <= float(big.min()) and float(big.max()) <= 1


def test_cifar10_errors(tmp_path):
    write_batch(tmp_path / "data_batch_1", np.zeros((1, 3072), np.uint8), [0])
    with pytest.raises(DataError, match="data_batch_2"):
        DATASETS.build("cifar10", root=str(tmp_path), split="train")
    with pytest.raises(DataError, match="split 'tran'.*Did you mean 'train'"):
        DATASETS.build("cifar10", root=str(tmp_path), split="tran")

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    with (tmp_path / "test_batch").open("wb") as f:
        pickle.dump({b"data": Evil()}, f)
    with pytest.raises(DataError, match="test_batch.*refusing"):
        DATASETS.build("cifar10", root=str(tmp_path))
    write_batch(tmp_path / "test_batch", np.zeros((2, 100), np.uint8), [0, 1])
    with pytest.raises(DataError, match="malformed batch file .*test_batch"):
        DATASETS.build("cifar10", root=str(tmp_path))

"""Users' ground truth: COCO JSON (boxes, polygons, RLE) and PNG masks for `imagefolder`, the `coco`
and `csv` datasets, and the errors that name the file and the entry or line."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from xaibench.datasets import DATASETS
from xaibench.datasets.annotations import read_coco
from xaibench.errors import DataError

W, H = 60, 40  # image size; at image_size 40 with crop_fraction 1 the resize is the identity on the height


def write_images(root, names):
    rng = np.random.default_rng(0)
    for name in names:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (H, W, 3), dtype=np.uint8)).save(path)


def coco_json(path, images, annotations, categories=((1, "cat"), (2, "dog"))):
    path.write_text(json.dumps({
        "images": [{"id": i + 1, "file_name": n, "width": W, "height": H} for i, n in enumerate(images)],
        "annotations": annotations,
        "categories": [{"id": c, "name": n} for c, n in categories],
    }))
    return path


def rle_counts(mask: np.ndarray) -> list[int]:
    """Uncompressed COCO RLE (column-major runs starting with zeros)."""
    flat = mask.flatten(order="F").astype(np.uint8)
    runs, current, n = [], 0, 0
    for v in flat:
        if v != current:
            runs.append(n)
            current, n = v, 0
        n += 1
    return runs + [n]


def test_imagefolder_with_coco_boxes_polygons_and_rle(tmp_path):
    write_images(tmp_path / "data", ["cat/a.png", "dog/b.png", "dog/c.png"])
    rle_mask = np.zeros((H, W), dtype=bool)
    rle_mask[4:10, 30:50] = True
    ann = coco_json(tmp_path / "coco.json", ["cat/a.png", "b.png"], [
        {"id": 1, "image_id": 1, "category_id": 1, "bbox": [10, 8, 20, 16],
         "segmentation": [[10, 8, 30, 8, 30, 24, 10, 24]]},
        {"id": 2, "image_id": 1, "category_id": 2, "bbox": [40, 0, 10, 10]},  # a dog in the cat image: not its class
        {"id": 3, "image_id": 2, "category_id": 2, "bbox": [30, 4, 20, 6],
         "segmentation": {"size": [H, W], "counts": rle_counts(rle_mask)}},
    ])
    ds = DATASETS.build("imagefolder", root=str(tmp_path / "data"), image_size=H, crop_fraction=1.0,
                        annotations=str(ann))
    a, b, c = (ds[i] for i in range(3))
    assert (a.id, b.id, c.id) == ("cat/a.png", "dog/b.png", "dog/c.png")
    # the centre crop of the 60×40 image starts at x = 10
    assert torch.equal(a.boxes, torch.tensor([[0.0, 8.0, 20.0, 24.0]]))
    want = torch.zeros(H, H, dtype=torch.bool)
    want[8:24, 0:20] = True  # the polygon's pixels [10, 30) × [8, 24), cropped
    assert torch.equal(a.mask, want)
    assert torch.equal(b.mask, torch.from_numpy(rle_mask[:, 10:50]))  # RLE decoded exactly, then cropped
    assert not c.mask.any() and c.boxes is None  # no annotation: an empty mask, skipped by the metrics


def test_coco_errors_name_file_and_entry_and_clip_boxes(tmp_path):
    bad_cat = coco_json(tmp_path / "a.json", ["a.png"], [{"id": 7, "image_id": 1, "category_id": 9, "bbox": [0, 0, 1, 1]}])
    with pytest.raises(DataError, match=r"a.json: annotations\[0\] \(id 7\): unknown category_id 9. Valid: 1 \(cat\), 2 \(dog\)"):
        read_coco(bad_cat)
    outside = coco_json(tmp_path / "b.json", ["a.png"], [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [50, 30, 20, 20]}])
    with pytest.warns(UserWarning, match=r"b.json: annotations\[0\].*reaches outside the 60×40 image; clipped to \[50.0, 30.0, 60.0, 40.0\]"):
        coco = read_coco(outside)
    assert coco.images[1].objects[0].box.tolist() == [50, 30, 60, 40]
    wrong = coco_json(tmp_path / "c.json", ["a.png"], [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 5, 5],
                                                        "segmentation": {"size": [10, 10], "counts": [0, 100]}}])
    coco = read_coco(wrong)
    with pytest.raises(DataError, match=r"c.json: a.png, object 0: RLE mask of size \[10, 10\] \(h, w\) for an image of 40×60"):
        coco.mask(coco.images[1], coco.images[1].objects)
    (tmp_path / "d.json").write_text('{"images": [\n  {"id": 1,}\n]}')
    with pytest.raises(DataError, match=r"d.json, line 2: not valid JSON"):
        read_coco(tmp_path / "d.json")


def test_imagefolder_with_png_masks_and_size_check(tmp_path):
    write_images(tmp_path / "data", ["cat/a.png", "dog/b.png"])
    (tmp_path / "masks" / "cat").mkdir(parents=True)
    m = np.zeros((H, W), dtype=np.uint8)
    m[10:20, 15:35] = 255
    Image.fromarray(m).save(tmp_path / "masks" / "cat" / "a.png")
    Image.fromarray(np.zeros((10, 10), dtype=np.uint8)).save(tmp_path / "masks" / "b.png")  # wrong size
    ds = DATASETS.build("imagefolder", root=str(tmp_path / "data"), image_size=H, crop_fraction=1.0,
                        annotations=str(tmp_path / "masks"))
    a = ds[0]
    assert torch.equal(a.mask, torch.from_numpy(m[:, 10:50] > 0))
    assert torch.equal(a.boxes, torch.tensor([[5.0, 10.0, 25.0, 20.0]]))  # the mask's bounding box, cropped
    with pytest.raises(DataError, match=r"mask .*masks/b.png is 10×10 but its image .*dog/b.png is 60×40"):
        ds[1]


def test_coco_dataset_labels_by_the_largest_object(tmp_path):
    write_images(tmp_path / "val2017", ["1.png", "2.png", "3.png"])
    (tmp_path / "annotations").mkdir()
    coco_json(tmp_path / "annotations" / "instances_val2017.json", ["1.png", "2.png", "3.png"], [
        {"id": 1, "image_id": 1, "category_id": 5, "bbox": [0, 0, 5, 5]},
        {"id": 2, "image_id": 1, "category_id": 9, "bbox": [10, 10, 20, 20]},  # largest: category 9
        {"id": 3, "image_id": 1, "category_id": 9, "bbox": [40, 0, 5, 5]},
        {"id": 4, "image_id": 2, "category_id": 5, "bbox": [0, 0, 50, 30], "iscrowd": 1},  # crowd only: left out
    ], categories=((9, "zebra"), (5, "bird")))
    ds = DATASETS.build("coco", root=str(tmp_path), split="val", image_size=H, crop_fraction=1.0)
    assert len(ds) == 1 and ds.class_names == ["bird", "zebra"] and ds.num_classes == 2  # sorted by id
    s = ds[0]
    assert s.label == 1 and s.id == "1.png"
    assert torch.equal(s.boxes, torch.tensor([[0.0, 10.0, 20.0, 30.0], [30.0, 0.0, 35.0, 5.0]]))
    first = DATASETS.build("coco", root=str(tmp_path), split="val", image_size=H, label_object="first")
    assert first[0].label == 0


def test_csv_table_with_boxes_names_and_line_errors(tmp_path):
    write_images(tmp_path, ["img/a.png", "img/b.png"])
    table = tmp_path / "labels.csv"
    table.write_text("path,label,x0,y0,x1,y1\nimg/a.png,dog,12,4,22,14\nimg/a.png,dog,30,20,70,30\nimg/b.png,cat,0,0,5,5\n")
    with pytest.warns(UserWarning, match=r"labels.csv, line 3: box \[30.0, 20.0, 70.0, 30.0\] reaches outside"):
        ds = DATASETS.build("csv", root=str(tmp_path), image_size=H, crop_fraction=1.0)
        a = ds[0]
    assert ds.class_names == ["cat", "dog"] and a.label == 1 and a.id == "img/a.png"
    assert torch.equal(a.boxes, torch.tensor([[2.0, 4.0, 12.0, 14.0], [20.0, 20.0, 40.0, 30.0]]))
    cases = {
        "img/a.png,0\nimg/missing.png,1\n": r"labels.csv, line 2: image not found: .*img/missing.png",
        "img/a.png,0,5,5,1,9\n": r"labels.csv, line 1: box \['5', '5', '1', '9'\] needs x1 > x0",
        "img/a.png,0\nimg/a.png,1\n": r"labels.csv, line 2: img/a.png has label 1 here but 0 on line 1",
        "img/a.png,0,1\n": r"labels.csv, line 1: 3 columns",
        "img/a.png,-1\n": r"labels.csv, line 1: label -1 is not a class index",
    }
    for text, message in cases.items():
        table.write_text(text)
        with pytest.raises(DataError, match=message):
            DATASETS.build("csv", root=str(table), image_size=H)
    table.write_text("img/a.png,zebra\n")
    with pytest.raises(DataError, match=r"line 1: unknown class 'zebra'. Valid: cat, dog"):
        DATASETS.build("csv", root=str(table), image_size=H, classes=["cat", "dog"])

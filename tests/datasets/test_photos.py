"""The `photos` dataset: bundled photographs, annotation sanity, exact box geometry, lite0 correctness as recorded."""

from __future__ import annotations

import json

import pytest
import torch

from xaibench.datasets.base import DATASETS, IndexedDataset, collate
from xaibench.datasets.photos import ANNOTATIONS, Photos, imagenet_class_names, resize_crop_boxes
from xaibench.errors import DataError


@pytest.fixture(scope="module")
def photos():
    return Photos(image_size=224)


def test_annotation_file_is_consistent(photos):
    names = imagenet_class_names()
    ids = [e["id"] for e in photos.entries]
    assert len(ids) == len(set(ids))
    for e in photos.entries:
        assert names[e["label"]] == e["label_name"], e["id"]
        assert e["label"] in e["accepted"]
        assert photos.source(photos.entries.index(e)) is not None, f"{e['id']}: {e['package']}/{e['file']} missing"
    assert sum(e["lite0_correct"] for e in photos.entries) >= 10


def test_boxes_lie_inside_their_images_with_area(photos):
    for i, e in enumerate(photos.entries):
        image, boxes = photos.original(i)
        h, w = image.shape[-2:]
        raw = torch.tensor(e["boxes"], dtype=torch.float32)
        if "region" in e:
            x0, y0, x1, y1 = e["region"]
            assert (raw[:, 0] >= x0).all() and (raw[:, 2] <= x1).all() and (raw[:, 1] >= y0).all() and (raw[:, 3] <= y1).all(), e["id"]
        assert (boxes[:, 0] >= 0).all() and (boxes[:, 1] >= 0).all(), e["id"]
        assert (boxes[:, 2] <= w).all() and (boxes[:, 3] <= h).all(), e["id"]
        assert (boxes[:, 2] > boxes[:, 0]).all() and (boxes[:, 3] > boxes[:, 1]).all(), e["id"]


def test_samples_are_square_pixels_with_clipped_boxes(photos):
    for i in range(len(photos)):
        s = photos[i]
        assert s.error is None
        assert s.image.shape == (3, 224, 224) and s.image.dtype == torch.float32
        assert 0 <= float(s.image.min()) and float(s.image.max()) <= 1
        assert s.boxes is not None and len(s.boxes) >= 1
        assert (s.boxes >= 0).all() and (s.boxes <= 224).all()
        assert (s.boxes[:, 2] > s.boxes[:, 0]).all() and (s.boxes[:, 3] > s.boxes[:, 1]).all()


def test_box_geometry_known_answer(photos):
    """coffee is 600×400: shorter side → 256 (scale 0.64, width 384), centre crop 224 → left 80, top 16."""
    i = [e["id"] for e in photos.entries].index("coffee")
    s = photos[i]
    x0, y0, x1, y1 = photos.entries[i]["boxes"][0]
    expected = torch.tensor([[x0 * 0.64 - 80, y0 * 0.64 - 16, x1 * 0.64 - 80, y1 * 0.64 - 16]])
    torch.testing.assert_close(s.boxes, expected.clamp(0, 224))
    # the image is the same resize and crop of the original
    import torchvision.transforms.functional as TF

    original, _ = photos.original(i)
    ref = TF.center_crop(TF.resize(original, 256, antialias=True), 224).clamp(0, 1)
    torch.testing.assert_close(s.image, ref)


def test_resize_crop_boxes_clips_and_drops():
    boxes = torch.tensor([[10.0, 10.0, 50.0, 50.0], [0.0, 0.0, 4.0, 4.0], [90.0, 20.0, 200.0, 30.0]])
    out = resize_crop_boxes(boxes, (2.0, 1.0), (10.0, 5.0), 100)
    # the first survives; the second is cropped away; the third starts past the right edge
    torch.testing.assert_close(out, torch.tensor([[10.0, 5.0, 90.0, 45.0]]))


def test_regions_crop_the_file(photos):
    i = [e["id"] for e in photos.entries].index("motorcycle_disk_brake")
    image, boxes = photos.original(i)
    x0, y0, x1, y1 = photos.entries[i]["region"]
    assert image.shape[-2:] == (y1 - y0, x1 - x0)
    bx = photos.entries[i]["boxes"][0]
    torch.testing.assert_close(boxes[0], torch.tensor([bx[0] - x0, bx[1] - y0, bx[2] - x0, bx[3] - y0], dtype=torch.float32))


def test_lite0_predictions_match_the_annotation(photos):
    from xaibench.models.zoo import load_model

    model = load_model("efficientnet_lite0")
    batch = collate([IndexedDataset(photos)[i] for i in range(len(photos))])
    with torch.no_grad():
        p = model(model.normalize(batch.images)).softmax(-1)
    prob, top1 = p.max(-1)
    for j, e in enumerate(photos.entries):
        assert model.class_names[int(top1[j])] == e["lite0_top1"], e["id"]
        assert abs(float(prob[j]) - e["lite0_prob"]) < 0.01, e["id"]
        assert (int(top1[j]) in e["accepted"]) == e["lite0_correct"], e["id"]
    coffee = [e["id"] for e in photos.entries].index("coffee")
    assert int(top1[coffee]) == 967 and float(prob[coffee]) > 0.5


def test_registry_options_and_errors(tmp_path):
    data = DATASETS.build("photos", image_size=96, only_lite0_correct=True)
    assert len(data) == sum(e["lite0_correct"] for e in json.loads(ANNOTATIONS.read_text())["photos"])
    assert data[0].image.shape == (3, 96, 96) and data.num_classes == 1000
    with pytest.raises(DataError, match="only the split 'test'"):
        Photos(split="train")
    with pytest.raises(DataError, match="not found"):
        Photos(root=str(tmp_path / "none.json"))
    custom = tmp_path / "mine.json"
    custom.write_text(json.dumps({"photos": [
        {"id": "gone", "package": "no_such_package_xyz", "file": "a.png", "label": 1, "boxes": [[0, 0, 1, 1]]}]}))
    s = Photos(root=str(custom))[0]
    assert s.error is not None and "no_such_package_xyz" in s.error and s.image.shape == (3, 224, 224)
    custom.write_text(json.dumps({"photos": [{"id": "x", "package": "skimage", "file": "data/coffee.png", "label": 1000, "boxes": []}]}))
    with pytest.raises(DataError, match="not an ImageNet-1k index"):
        Photos(root=str(custom))

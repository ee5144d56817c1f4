"""EfficientNet-Lite0's top-1 on the bundled `photos` (the README's count): per photo the label, the
prediction, and whether it is the label itself or an accepted synonym (ImageNet-ReaL style).

    .venv/bin/python scripts/photos_top1.py
"""

from __future__ import annotations

import torch

from xaibench.datasets import DATASETS, collate
from xaibench.datasets.base import IndexedDataset
from xaibench.models.zoo import load_model


def main() -> None:
    model = load_model("efficientnet_lite0")
    photos = DATASETS.build("photos", image_size=model.input_size[0])
    batch = collate([IndexedDataset(photos)[i] for i in range(len(photos))])
    with torch.no_grad():
        prob, top1 = model(model.normalize(batch.images)).softmax(-1).max(-1)
    exact = accepted = 0
    for j, e in enumerate(photos.entries):
        pred = int(top1[j])
        exact += pred == e["label"]
        accepted += pred in e["accepted"]
        print(f"{e['id']:<24} label {e['label']:>4} {e['label_name']:<18} top-1 {pred:>4} "
              f"{model.class_names[pred]:<18} p={float(prob[j]):.3f}"
              f"{'' if pred == e['label'] else '  (accepted synonym)' if pred in e['accepted'] else '  (wrong)'}")
    print(f"top-1 = label: {exact} of {len(photos)}; top-1 among the accepted classes: {accepted} of {len(photos)}")


if __name__ == "__main__":
    main()

"""Does feature purity rise with training (Chen, Cong & Huang 2021, §3.5, Table 3)? Purity per layer
of the shipped Fashion-MNIST model (`fashion-mnist-vgg`) with its trained weights against the
same architecture at seeded random initializations, on the first Fashion-MNIST test images
(τ = 0.5, min-max normalization, predicted class: the probe's defaults).

    .venv/bin/python bench/purity_training.py [--images 2000] [--seeds 0 1 2] [--layers auto]
"""

from __future__ import annotations

import argparse
import time

import torch
from common import markdown

from xaibench.datasets.base import Batch
from xaibench.datasets.mnist import MNIST
from xaibench.models.zoo import load_model
from xaibench.probes.purity import FeaturePurity


def test_batches(images: int, batch: int = 250) -> list[Batch]:
    """The first `images` Fashion-MNIST test images (Debian's dataset-fashion-mnist) as batches."""
    data = MNIST(split="test", image_size=28)
    out = []
    for start in range(0, min(images, len(data)), batch):
        idx = torch.arange(start, min(start + batch, images))
        out.append(Batch(data.pixels(idx), data.labels[idx], [str(i) for i in idx.tolist()], idx, [None] * len(idx),
                         None, [None] * len(idx)))
    return out


def purity_row(weights: str, seed: int, data: list[Batch], layers: str) -> dict:
    """Purity of every layer and the two summaries for one set of weights (`none` = init from `seed`)."""
    torch.manual_seed(seed)
    model = load_model("fashion-mnist-vgg", weights=weights)
    out = FeaturePurity(layers=layers, sweep=[])(model, data)
    summary = out["summary"].set_index("summary").purity
    row = dict(weights="trained" if weights == "default" else f"init (seed {seed})",
               last_layer=float(summary["last_layer"]), stage_mean=float(summary["stage_mean"]))
    row.update({r.layer: float(r.purity) for r in out["purity"].itertuples()})
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--images", type=int, default=2000)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--layers", default="auto")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    data = test_batches(args.images)
    rows = [purity_row("none", s, data, args.layers) for s in args.seeds] + [purity_row("default", 0, data, args.layers)]
    print(f"fashion-mnist-vgg, first {args.images} Fashion-MNIST test images, layers {args.layers}, τ = 0.5, "
          f"{time.perf_counter() - t0:.0f} s")
    print(markdown(rows, list(rows[-1])))


if __name__ == "__main__":
    main()

"""Layer pruning guided by neuron similarity on the Fashion-MNIST model (the neuron-similarity
thesis §5.1, Table/Fig. 5-2 and 5-3): find the layer where the class-mean similarity curve peaks,
cut the network there, add global average pooling and a linear head, train the head on the
Fashion-MNIST training set (frozen features, seeded, seconds on a CPU), and compare its test
accuracy with the full model's. Every conv block is cut and reported; the peak of the chosen
curve (`--average`, `--method`) is marked, and the peaks of all six curves are printed.

Usage: python scripts/layer_pruning.py [--probe-images 1000] [--train-images 60000] [--epochs 20]
           [--average simple] [--method 1] [--seed 0] [--out table.csv]
"""

from __future__ import annotations

import argparse
import time

import pandas as pd
import torch

from xaibench.datasets.base import Batch
from xaibench.datasets.mnist import MNIST
from xaibench.models.layers import conv_block_layers
from xaibench.models.zoo import load_model
from xaibench.probes.layer_pruning import head_accuracy, parameter_count, peak_layer, pooled_features, train_head
from xaibench.probes.neuron_similarity import NeuronSimilarity
from xaibench.probes.pruning import accuracy


def batches(split: str, limit: int | None, size: int = 500) -> list[Batch]:
    """The first `limit` images of a Fashion-MNIST split (Debian's dataset-fashion-mnist) as batches."""
    data = MNIST(split=split, image_size=28)
    n = len(data) if limit is None else min(limit, len(data))
    out = []
    for start in range(0, n, size):
        idx = torch.arange(start, min(start + size, n))
        out.append(Batch(data.pixels(idx), data.labels[idx], [str(i) for i in idx.tolist()], idx, [None] * len(idx),
                         None, [None] * len(idx)))
    return out


def markdown(table: pd.DataFrame) -> str:
    """The table as a Markdown table (floats to 4 digits)."""
    lines = ["| " + " | ".join(table.columns) + " |", "|" + "---|" * len(table.columns)]
    for row in table.itertuples(index=False):
        lines.append("| " + " | ".join(f"{v:.4f}" if isinstance(v, float) else str(v) for v in row) + " |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--probe-images", type=int, default=1000, help="test images of the neuron-similarity curves")
    ap.add_argument("--train-images", type=int, default=None, help="training images of the heads (default: all)")
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--lr", type=float, default=0.01)
    ap.add_argument("--average", default="simple", help="class average of the curve (simple, data-max, data-min)")
    ap.add_argument("--method", type=int, default=1, help="similarity method of the curve (1 or 2)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=None, help="write the table as CSV")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    model = load_model("fashion-mnist-vgg")
    kinds = ["simple", "data-max", "data-min"]
    probe = NeuronSimilarity(averages=kinds, methods=[1, 2], grid_classes=0, prune=False)
    curves = probe(model, batches("test", args.probe_images))["curves"]
    peaks = {(a, m): peak_layer(curves, a, m) for a in kinds for m in (1, 2)}
    peak = peaks[(args.average, args.method)]
    chosen = curves[(curves.scope == "mean") & (curves.average == args.average) & (curves.method == args.method)]
    mean_curve = chosen.set_index("layer")["mean"]
    layers = [b.name for b in conv_block_layers(model)]
    train_feats, train_labels = pooled_features(model, batches("train", args.train_images), layers)
    test_data = batches("test", None)
    test_feats, test_labels = pooled_features(model, test_data, layers)
    full = accuracy(model, test_data)
    rows = []
    for name in layers:
        head = train_head(train_feats[name], train_labels, 10, epochs=args.epochs, lr=args.lr, seed=args.seed)
        rows.append(dict(layer=name, channels=train_feats[name].shape[1], similarity=float(mean_curve[name]),
                         peak=name == peak, parameters=parameter_count(model, name, head),
                         head_accuracy=head_accuracy(head, test_feats[name], test_labels),
                         full_accuracy=full, full_parameters=sum(p.numel() for p in model.module.parameters())))
    table = pd.DataFrame(rows)
    print(f"fashion-mnist-vgg: similarity curve from {args.probe_images} test images (average {args.average}, "
          f"method {args.method}), peak at {peak}; heads trained on {len(train_labels)} training images, "
          f"{args.epochs} epochs, seed {args.seed}; accuracy on {len(test_labels)} test images; "
          f"{time.perf_counter() - t0:.0f} s")
    print("peak of each class-mean similarity curve: " + ", ".join(f"{a}/method {m}: {layer}"
                                                                   for (a, m), layer in peaks.items()))
    print(markdown(table))
    if args.out:
        table.to_csv(args.out, index=False)


if __name__ == "__main__":
    main()

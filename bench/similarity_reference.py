"""How much method 1 of neuron similarity depends on which tensor is the class-average image
(docs/methods.md §Neuron similarity, `reference`): per layer, the Spearman rank correlation
between the channels' similarities (averaged over classes) with `reference: model_input` and with
`reference: pixels`, on the shipped Fashion-MNIST model and the first Fashion-MNIST test images.

    .venv/bin/python bench/similarity_reference.py [--images 500] [--average simple] [--objective activation]
"""

from __future__ import annotations

import argparse
import time

import torch
from common import markdown
from purity_training import test_batches

from xaibench.models.zoo import load_model
from xaibench.probes.neuron_similarity import NeuronSimilarity


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--images", type=int, default=500)
    ap.add_argument("--average", default="simple")
    ap.add_argument("--objective", default="activation")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    model = load_model("fashion-mnist-vgg")
    data = test_batches(args.images)
    means = {}
    for reference in ("model_input", "pixels"):
        probe = NeuronSimilarity(averages=[args.average], methods=[1], objective=args.objective, reference=reference,
                                 grid_classes=0, prune=False)
        table = probe(model, data)["similarity"]
        means[reference] = table.groupby(["order", "layer", "channel"]).similarity.mean()
    rows = []
    for (order, layer), a in means["model_input"].groupby(level=["order", "layer"]):
        b = means["pixels"].loc[(order, layer)]
        rows.append(dict(layer=layer, channels=len(a), spearman=float(a.droplevel([0, 1]).rank().corr(b.rank())),
                         mean_model_input=float(a.mean()), mean_pixels=float(b.mean())))
    print(f"fashion-mnist-vgg, first {args.images} test images, average {args.average}, method 1, objective "
          f"{args.objective}: Spearman of the class-mean channel similarities, model_input vs pixels "
          f"({time.perf_counter() - t0:.0f} s)")
    print(markdown(rows, list(rows[0])))


if __name__ == "__main__":
    main()

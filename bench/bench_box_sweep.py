"""MaxBoxAcc's largest-component sweep: seconds per image of the union-find/dense hybrid at several
`dense_share` values against labelling every thresholded plane (dense_share 0), on the saliency maps of
bench_new_metrics.py and on the same maps smoothed (few components, large planes), 100 thresholds.

    .venv/bin/python bench/bench_box_sweep.py --repeats 5
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from common import builtin_synthetic_batch, markdown, median_seconds

from xaibench.metrics.component_sweep import largest_component_boxes_by_cut
from xaibench.metrics.wsol import quantized_cuts
from xaibench.saliency import EXPLAINERS

SHARES = [0.0, 0.01, 0.02, 0.05, 0.1, 0.2, float("inf")]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--images", type=int, default=32)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    model, _, x, target = builtin_synthetic_batch(args.images, args.size)
    with model.inference():
        saliency = EXPLAINERS.build("saliency", reduce="abs_max")(model, x, target)
    kinds = {"saliency": saliency,
             "saliency, 9x9 mean": torch.nn.functional.avg_pool2d(saliency[:, None], 9, 1, 4)[:, 0],
             "saliency, 16x16 pooled and upsampled (CAM-like)": torch.nn.functional.interpolate(
                 torch.nn.functional.avg_pool2d(saliency[:, None], 16), size=args.size, mode="bilinear")[:, 0]}
    rows = []
    for kind, maps in kinds.items():
        quant, cuts = quantized_cuts(maps, 100)
        quant, cuts = quant.numpy(), cuts.long().numpy()
        dense = largest_component_boxes_by_cut(quant, cuts, dense_share=0.0)
        row = {"maps": kind}
        for share in SHARES:
            assert np.array_equal(largest_component_boxes_by_cut(quant, cuts, dense_share=share), dense)
            seconds = median_seconds(lambda s=share: largest_component_boxes_by_cut(quant, cuts, dense_share=s),
                                     args.repeats)
            row[f"ms/image at {share:g}"] = 1e3 * seconds / len(quant)
        rows.append(row)
    print(f"{args.images} maps of {args.size}², 100 thresholds, medians of {args.repeats}; dense_share 0 labels "
          f"every plane, inf none")
    print(markdown(rows, list(rows[0])))


if __name__ == "__main__":
    main()

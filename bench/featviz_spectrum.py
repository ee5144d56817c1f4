"""Spectral share per pyramid mode (docs/methods.md §Pyramid activation maximization "Outputs"): for the same targets, seed and
steps, the share of each visualization's power below a quarter of Nyquist, the objective reached,
the final class probability, and the time per step as a ratio to the model's forward+backward.

    .venv/bin/python bench/featviz_spectrum.py [--model builtin:synthetic-cnn] [--targets 0 1 2 ...]
                                               [--steps 256] [--seed 0] [--lr A ...] [--octaves N ...]
                                               [--modes both laplacian ...] [--threads 1]
"""

from __future__ import annotations

import argparse
import time

import torch
from common import forward_backward_floor, markdown, median_seconds

from xaibench import load_model
from xaibench.featviz import FeatvizParams, visualize
from xaibench.featviz.pyramid import PYRAMID_MODES


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", default="builtin:synthetic-cnn")
    ap.add_argument("--targets", type=int, nargs="*", default=[])
    ap.add_argument("--steps", type=int, default=256)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--lr", type=float, nargs="+", default=[FeatvizParams.lr], help="step sizes α to compare")
    ap.add_argument("--octaves", type=int, nargs="+", default=[FeatvizParams.octaves], help="octave counts to compare")
    ap.add_argument("--modes", nargs="+", default=list(PYRAMID_MODES), choices=PYRAMID_MODES)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model = load_model(args.model)
    rows = []
    runs = [(mode, lr, octaves) for mode in args.modes for lr in args.lr for octaves in args.octaves]
    for mode, lr, octaves in runs:
        t0 = time.perf_counter()
        r = visualize(model, args.targets, steps=args.steps, pyramid=mode, seed=args.seed, lr=lr, octaves=octaves)
        seconds = time.perf_counter() - t0
        rows.append(dict(
            pyramid=mode, lr=lr, octaves=octaves,
            low_freq_share=float(r.low_freq_share.mean()),
            share_min=float(r.low_freq_share.min()),
            share_max=float(r.low_freq_share.max()),
            final_logit=float(r.final_objective.mean()),
            final_prob=float(r.final_prob.mean()),
            prob_min=float(r.final_prob.min()),
            top1_is_target=float((r.final_pred == torch.tensor(r.targets)).float().mean()),
            seconds=seconds,
            targets=len(r.targets),
        ))
    x = model.normalize(torch.rand(len(r.targets), 3, *model.input_size))
    floor = median_seconds(forward_backward_floor(model, x, torch.tensor(r.targets)), repeats=3)
    for row in rows:
        row["step_over_fwd_bwd"] = row["seconds"] / args.steps / floor
    print(f"model {args.model}, {len(r.targets)} class targets, {args.steps} steps, seed {args.seed}, "
          f"{args.threads} thread(s); share = power below 1/4 Nyquist (DC excluded), mean [min, max] over targets")
    print(markdown(rows, ["pyramid", "lr", "octaves", "low_freq_share", "share_min", "share_max", "final_logit", "final_prob",
                          "prob_min", "top1_is_target", "seconds", "step_over_fwd_bwd"]))


if __name__ == "__main__":
    main()

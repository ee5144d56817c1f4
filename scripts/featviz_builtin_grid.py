"""Class visualizations of the built-in model (docs/methods.md §Pyramid activation maximization, default settings): one image
per class, written as a captioned grid to docs/figures/featviz_builtin.png, plus the full outputs
(PNGs, history.csv, summary.csv) under --outdir.

    .venv/bin/python scripts/featviz_builtin_grid.py [--steps 256] [--pyramid both] [--seed 0]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from xaibench import load_model
from xaibench.featviz import FeatvizParams, run_visualize
from xaibench.featviz.output import captions_of, image_grid

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", default="builtin:synthetic-cnn")
    ap.add_argument("--steps", type=int, default=256)
    ap.add_argument("--pyramid", default=FeatvizParams.pyramid)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--figure", type=Path, default=ROOT / "docs" / "figures" / "featviz_builtin.png")
    ap.add_argument("--outdir", type=Path, default=ROOT / "results" / "featviz_builtin")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model = load_model(args.model)
    params = FeatvizParams.from_dict(dict(steps=args.steps, pyramid=args.pyramid, seed=args.seed))
    result = run_visualize(model, params, args.outdir)
    args.figure.parent.mkdir(parents=True, exist_ok=True)
    grid = image_grid(result.images, captions_of(result), columns=5)
    grid.quantize(colors=256).save(args.figure, optimize=True)  # a palette PNG keeps the committed file small
    for name, prob, share in zip(result.names, result.final_prob.tolist(), result.low_freq_share.tolist()):
        print(f"{name:>10}: p={prob:.3f} low-frequency share={share:.3f}")
    print(f"grid: {args.figure}\noutputs: {args.outdir}")


if __name__ == "__main__":
    main()

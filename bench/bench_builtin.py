"""The default model and data: builtin:synthetic-cnn forward time per batch, and the time to
generate / load 1,000 synthetic images.

    .venv/bin/python bench/bench_builtin.py [--batch 32] [--repeats 5] [--images 1000] [--threads 2]
"""

from __future__ import annotations

import argparse
import tempfile
import time

import torch
from common import forward_backward_floor, forward_floor, markdown, median_seconds

from xaibench import load_model
from xaibench.datasets.synthetic import SyntheticShapes


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--images", type=int, default=1000)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model = load_model("builtin:synthetic-cnn")
    x = model.normalize(torch.rand(args.batch, 3, *model.input_size))
    target = torch.zeros(args.batch, dtype=torch.long)
    fwd = median_seconds(forward_floor(model, x), args.repeats)
    fwd_bwd = median_seconds(forward_backward_floor(model, x, target), args.repeats)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        SyntheticShapes(root=tmp, split="test", n_images=args.images)
        generate = time.perf_counter() - t0
        t0 = time.perf_counter()
        SyntheticShapes(root=tmp, split="test", n_images=args.images)
        load = time.perf_counter() - t0
    rows = [
        dict(what=f"forward, batch {args.batch}", seconds=fwd, per_image_ms=1e3 * fwd / args.batch),
        dict(
            what=f"forward+backward to input, batch {args.batch}",
            seconds=fwd_bwd,
            per_image_ms=1e3 * fwd_bwd / args.batch,
        ),
        dict(
            what=f"generate {args.images} synthetic images (+ write cache)",
            seconds=generate,
            per_image_ms=1e3 * generate / args.images,
        ),
        dict(
            what=f"load {args.images} synthetic images from cache", seconds=load, per_image_ms=1e3 * load / args.images
        ),
    ]
    print(f"torch threads: {torch.get_num_threads()}")
    print(markdown(rows, ["what", "seconds", "per_image_ms"]))


if __name__ == "__main__":
    main()

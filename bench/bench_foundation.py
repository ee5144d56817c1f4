"""Images per second of Grad-CAM and of deletion+insertion on a model, each as a ratio to the
model's own forward(+backward) time at the same batch size, measured in the same run.

    .venv/bin/python bench/bench_foundation.py [--model builtin:synthetic-cnn] [--batch 32] [--repeats 5]
"""

from __future__ import annotations

import argparse

import torch
from common import add_model_args, forward_backward_floor, forward_floor, markdown, median_seconds, model_and_inputs

from xaibench import evaluate, explain


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    add_model_args(ap)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--steps", type=int, default=32, help="deletion/insertion steps")
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    model, x, target = model_and_inputs(args, args.batch)
    size = x.shape[-1]
    fb = median_seconds(forward_backward_floor(model, x, target), args.repeats)
    fwd = median_seconds(forward_floor(model, x), args.repeats)
    maps = explain(model, x, target, "gradcam")
    gc = median_seconds(lambda: explain(model, x, target, "gradcam"), args.repeats)
    chunk = 64

    def faithfulness():
        evaluate(model, x, maps, target, "deletion", steps=args.steps, chunk_size=chunk)
        evaluate(model, x, maps, target, "insertion", steps=args.steps, chunk_size=chunk)

    di = median_seconds(faithfulness, max(1, args.repeats // 2))
    xc = model.normalize(torch.rand(chunk, 3, size, size))
    fwd_chunk = median_seconds(forward_floor(model, xc), args.repeats)
    passes = 2 * (args.steps + 1)
    rows = [
        dict(what="forward+backward (floor)", images_per_s=args.batch / fb, ratio_to_floor=1.0),
        dict(what="gradcam", images_per_s=args.batch / gc, ratio_to_floor=gc / fb),
        dict(what="forward (floor)", images_per_s=args.batch / fwd, ratio_to_floor=1.0),
        dict(what=f"deletion+insertion ({args.steps} steps, {passes} forwards/image)", images_per_s=args.batch / di,
             ratio_to_floor=di / (passes * args.batch / chunk * fwd_chunk)),
    ]
    print(f"model {args.model} at {size}x{size}, batch {args.batch}, median of {args.repeats}, "
          f"torch threads {torch.get_num_threads()}")
    print("ratio: gradcam vs one forward+backward at the same batch; deletion+insertion vs "
          f"{passes} forwards of the same images at the chunk's batch size ({chunk})")
    print(markdown(rows, ["what", "images_per_s", "ratio_to_floor"]))


if __name__ == "__main__":
    main()

"""`chunk_size: auto` for speed: the throughput probe's seconds per image at each batch size, its
choice within the memory budget, and the perturbation loops (occlusion, RISE, Score-CAM,
deletion + insertion) at the fixed default chunk of 64 against the chosen chunk, in one run.

    .venv/bin/python bench/bench_chunks.py --model torchvision:resnet50 --weights none --size 224 --threads 1
    .venv/bin/python bench/bench_chunks.py                      # built-in model at 128²

Rounds run the fixed and the chosen chunk back to back; ratios are taken within a round, the
table shows medians over rounds.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from common import add_model_args, markdown, median_seconds, model_and_inputs

from xaibench.memory import build_sized
from xaibench.metrics.base import METRICS
from xaibench.saliency.base import EXPLAINERS


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_model_args(ap)
    ap.add_argument("--images", type=int, default=2)
    ap.add_argument("--fixed", type=int, default=64, help="the fixed chunk to compare with (the plug-ins' default)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--methods", default="occlusion,rise,scorecam,deletion+insertion")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    model, x, target = model_and_inputs(args, args.images)
    size = x.shape[-1]
    shape = tuple(x.shape[1:])
    maps = torch.rand(args.images, size, size)
    win = max(8, size // 4)
    params = {"occlusion": {"window": win, "stride": win // 2}, "rise": {"n_masks": 128}, "scorecam": {},
              "deletion": {"steps": 16}, "insertion": {"steps": 16}}

    t0 = time.perf_counter()
    chosen = {name: build_sized(METRICS if name in ("deletion", "insertion") else EXPLAINERS, name,
                                {**p, "chunk_size": "auto"}, model, shape, name not in ("deletion", "insertion"))
              for name, p in params.items()}
    probe_s = time.perf_counter() - t0
    fixed = {name: (METRICS if name in ("deletion", "insertion") else EXPLAINERS).build(name, **p, chunk_size=args.fixed)
             for name, p in params.items()}

    def call(plugins, name):
        if name == "deletion+insertion":
            return lambda: (plugins["deletion"](model, x, maps, target), plugins["insertion"](model, x, maps, target))
        return lambda: plugins[name](model, x, target)

    rows = []
    for name in args.methods.split(","):
        a, b = call(fixed, name), call(chosen, name)
        a(), b()  # warm-up
        ta, tb = [], []
        for _ in range(args.repeats):
            ta.append(median_seconds(a, 1, warmup=0))
            tb.append(median_seconds(b, 1, warmup=0))
        chunk = chosen["deletion" if name == "deletion+insertion" else name].chunk_size
        rows.append(dict(method=name, fixed_chunk=args.fixed, fixed_s=statistics.median(ta), auto_chunk=chunk,
                         auto_s=statistics.median(tb), speedup=statistics.median([p / q for p, q in zip(ta, tb)])))
        print(rows[-1], flush=True)
    probe = model.__dict__["_forward_probe"][shape]["times"]  # what the choices above measured
    print(f"\n{args.model} ({args.weights}) at {size}², {args.images} images, torch threads {torch.get_num_threads()}; "
          f"probe {probe_s:.3g} s (once per model and input shape); seconds per image of a forward by batch size: "
          + ", ".join(f"{n}: {t * 1e3:.3g} ms" for n, t in sorted(probe.items())))
    print(markdown(rows, ["method", "fixed_chunk", "fixed_s", "auto_chunk", "auto_s", "speedup"]))


if __name__ == "__main__":
    main()

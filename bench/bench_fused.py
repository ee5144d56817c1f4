"""Fused inference before/after: the perturbation loops (Score-CAM, RISE, deletion + insertion) with
the model's torch.fx BatchNorm-folded copy (models/fused.py, now), with the TorchScript frozen copy
(jit.trace + freeze + optimize_for_inference, before; deprecated by PyTorch), and unfused (the
model itself, channels-last), measured in one run.

    .venv/bin/python bench/bench_fused.py                                        # built-in model, 128²
    .venv/bin/python bench/bench_fused.py --model torchvision:resnet50 --weights none --size 224 \
        --images 2 --rise-masks 64 --steps 16 --methods rise,deletion+insertion --repeats 3
    .venv/bin/python bench/bench_fused.py --model torchvision:resnet50 --weights none --size 112 \
        --images 1 --methods scorecam --repeats 3         # 2,048 channels: 2,048 forwards per image

Rounds run the three back to back per method, so machine load hits all alike; ratios are taken
within a round, medians over rounds. Build time of each copy is timed separately (once per
parameter state in a run).
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings

import torch
from common import add_model_args, markdown, median_seconds, model_and_inputs

from xaibench.metrics.base import METRICS
from xaibench.models.fused import FusedInference, bit_sums, fold_for_inference, has_hooks, version_key
from xaibench.models.outputs import LogitsOf
from xaibench.saliency.base import EXPLAINERS


class TorchScriptInference(FusedInference):
    """The previous fused copy: traced, frozen and optimized by TorchScript (conv+BN folded,
    conv+ReLU/add fused by oneDNN), rebuilt per parameter state and input shape."""

    def module_for(self, x):
        if not self.enabled or has_hooks(self.module):
            return None
        key = (version_key(self.module), x.shape[1:], x.dtype)  # as before: no .data edits seen
        if key != self._key:
            self._key, self._folded = key, torchscript_copy(self.module, x[:1])
        return self._folded

    def forward(self, x):
        frozen = self.module_for(x)
        return None if frozen is None else frozen(x)


def torchscript_copy(module, image):
    example = image.expand(2, *image.shape[1:]).contiguous()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(module, example, check_trace=False)
        return torch.jit.optimize_for_inference(torch.jit.freeze(traced.eval()))


class Unfused(FusedInference):
    def forward(self, x):
        return None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_model_args(ap)
    ap.add_argument("--images", type=int, default=8)
    ap.add_argument("--chunk", type=int, default=64)
    ap.add_argument("--rise-masks", type=int, default=256)
    ap.add_argument("--steps", type=int, default=32, help="deletion/insertion steps")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--methods", default="scorecam,rise,deletion+insertion")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default); 1 gives stable "
                    "ratios on a loaded machine")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    model, x, target = model_and_inputs(args, args.images)
    size = x.shape[-1]
    maps = torch.rand(args.images, size, size)
    c = args.chunk
    scorecam = EXPLAINERS.build("scorecam", chunk_size=c)
    rise = EXPLAINERS.build("rise", n_masks=args.rise_masks, chunk_size=c)
    dele = METRICS.build("deletion", steps=args.steps, chunk_size=c)
    ins = METRICS.build("insertion", steps=args.steps, chunk_size=c)
    methods = {
        "scorecam": lambda: scorecam(model, x, target),
        "rise": lambda: rise(model, x, target),
        "deletion+insertion": lambda: (dele(model, x, maps, target), ins(model, x, maps, target)),
    }
    methods = {k: v for k, v in methods.items() if k in args.methods.split(",")}
    copies = {"fx (now)": FusedInference(LogitsOf(model.module)),  # as ModelAdapter builds it
              "torchscript (before)": TorchScriptInference(model.module),
              "unfused": Unfused(model.module)}
    builds = {}
    image = x[:1]
    for name, fn in (("fx (now)", lambda: fold_for_inference(model.module, image)),
                     ("torchscript (before)", lambda: torchscript_copy(model.module, image))):
        builds[name] = median_seconds(fn, 3, warmup=0)
    rows = []
    for mname, fn in methods.items():
        times: dict[str, list[float]] = {k: [] for k in copies}
        for cp in copies.values():  # warm-up: builds every copy once
            model.fused = cp
            fn()
        for _ in range(args.repeats):
            for key, cp in copies.items():
                model.fused = cp
                times[key].append(median_seconds(fn, 1, warmup=0))
        fx, ts, un = (times[k] for k in copies)
        rows.append(dict(method=mname, fx_s=statistics.median(fx), torchscript_s=statistics.median(ts),
                         unfused_s=statistics.median(un),
                         fx_over_torchscript=statistics.median([a / b for a, b in zip(fx, ts)]),
                         fx_over_unfused=statistics.median([a / b for a, b in zip(fx, un)])))
        print(rows[-1], flush=True)
    model.fused = copies["fx (now)"]
    t0 = time.perf_counter()
    bit_sums(model.module)
    fp = time.perf_counter() - t0
    print(f"\n{args.model} ({args.weights}) at {size}², {args.images} images, chunk {c}, RISE {args.rise_masks} masks, "
          f"deletion/insertion {args.steps} steps, torch threads {torch.get_num_threads()}; seconds per call, "
          f"medians of {args.repeats} rounds; build once per parameter state: fx {builds['fx (now)']:.3g} s, "
          f"TorchScript {builds['torchscript (before)']:.3g} s; parameter bit sums (once per fused_inference block) {fp * 1e3:.3g} ms")
    print(markdown(rows, ["method", "fx_s", "torchscript_s", "unfused_s", "fx_over_torchscript", "fx_over_unfused"]))


if __name__ == "__main__":
    main()

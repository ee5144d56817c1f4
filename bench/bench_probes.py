"""Speed of the model-level probes on the built-in model (docs/methods.md §Feature purity, §4).

Feature purity: time per image versus one plain forward+backward (logits → input) at the same
batch size (target ≤ 1.3×). Neuron similarity: guided-backprop channel visualizations per second,
batched over channels (one forward of the image, one vmapped backward for all channels), versus
the one-at-a-time loops (a forward stopped at the layer + a backward per channel; a whole
forward+backward per channel) and versus the floor: one backward per channel on a retained
forward graph, no forward at all (issue target: batched ≥ 5× the loop; on a CPU the floor
itself bounds that ratio, since a batch-1 backward is already compute-bound).

    .venv/bin/python bench/bench_probes.py [--model builtin:synthetic-cnn] [--batch 32] [--repeats 3]
"""

from __future__ import annotations

import argparse
import time

import torch

from xaibench.datasets.base import Batch
from xaibench.models.relu_rules import guided_relu
from xaibench.models.zoo import load_model
from xaibench.probes.neuron_similarity import channel_visualizations
from xaibench.probes.purity import FeaturePurity


def best_of(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def forward_backward(model, x: torch.Tensor) -> None:
    with torch.enable_grad():
        xg = x.clone().requires_grad_(True)
        logits = model(xg)
        torch.autograd.grad(logits.gather(1, logits.argmax(1, keepdim=True)).sum(), xg)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="builtin:synthetic-cnn")
    ap.add_argument("--weights", default="default")
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--channels", type=int, default=64, help="channels visualized per measurement")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    try:
        model = load_model(args.model, weights=args.weights)
    except Exception:  # noqa: BLE001 - an untrained checkpoint times the same
        model = load_model(args.model, weights="none")
    torch.manual_seed(0)
    b, s = args.batch, args.size
    pixels = torch.rand(b, 3, s, s)
    x = model.normalize(pixels)
    batch = Batch(pixels, torch.zeros(b, dtype=torch.long), ["x"] * b, torch.arange(b), [None] * b, None, [None] * b)
    print(f"model {args.model} at {s}x{s}, batch {b}, threads {torch.get_num_threads()}")

    probe = FeaturePurity()
    from xaibench.models.layers import select_layers
    layers = select_layers(model, probe.layers)
    t_fb = best_of(lambda: forward_backward(model, x), args.repeats)
    t_pur = best_of(lambda: probe.fire_counts(model, [batch], layers), args.repeats)
    print(f"feature_purity ({len(layers)} layers): {1e3 * t_pur / b:.2f} ms/image; forward+backward "
          f"{1e3 * t_fb / b:.2f} ms/image; ratio {t_pur / t_fb:.2f} (target <= 1.3)")

    for layer in (layers[0].name, layers[len(layers) // 2].name, layers[-1].name):
        c = min(args.channels, dict((bl.name, bl.channels) for bl in layers)[layer])
        channels = torch.arange(c)
        t_batched = best_of(lambda: channel_visualizations(model, x[:1], layer, channels), args.repeats)

        def loop():  # one forward stopped at the layer and one backward per channel
            for k in range(c):
                channel_visualizations(model, x[:1], layer, channels[k:k + 1])

        def loop_full_forward():  # the textbook loop: a whole forward and a backward per channel
            acts = {}
            with torch.enable_grad(), guided_relu(model.module):  # hook after the rule's own hooks
                h = model.module_of(layer).register_forward_hook(lambda m, i, o: acts.__setitem__("a", o))
                try:
                    for k in range(c):
                        xg = x[:1].clone().requires_grad_(True)
                        model(xg)
                        torch.autograd.grad(acts["a"][:, k].sum(), xg)
                finally:
                    h.remove()

        def retained():  # one forward, one backward per channel on the retained graph
            acts = {}
            with torch.enable_grad(), guided_relu(model.module):
                h = model.module_of(layer).register_forward_hook(lambda m, i, o: acts.__setitem__("a", o))
                try:
                    xg = x[:1].clone().requires_grad_(True)
                    model(xg)
                    for k in range(c):
                        torch.autograd.grad(acts["a"][:, k].sum(), xg, retain_graph=True)
                finally:
                    h.remove()

        reps = max(1, args.repeats - 1)
        t_loop = best_of(loop, reps)
        t_full = best_of(loop_full_forward, reps)
        t_ret = best_of(retained, reps)
        print(f"neuron_similarity {layer} ({c} channels): batched {c / t_batched:.1f} vis/s; "
              f"one-at-a-time truncated loop {c / t_loop:.1f} vis/s (×{t_loop / t_batched:.1f}); "
              f"full forward+backward loop {c / t_full:.1f} vis/s (×{t_full / t_batched:.1f}); "
              f"one backward per channel, retained graph {c / t_ret:.1f} vis/s (×{t_ret / t_batched:.1f})")


if __name__ == "__main__":
    main()

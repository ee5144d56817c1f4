"""Gradient, perturbation and relevance explainers: seconds per image, counted passes per image,
the ratio to the model's own cost for those passes (the floor, measured at the batch size the
model actually sees, in the same run), and Captum's implementation of the same method side by side.

    .venv/bin/python bench/bench_gradient.py                       # builtin model, its input size
    .venv/bin/python bench/bench_gradient.py --model torchvision:resnet50 --size 224 --batch 2 \
        --steps 16 --samples 16 --rise-masks 128 --window 56 --stride 28 --repeats 3

Floors: gradient/LRP methods — one forward+backward at batch B; integrated gradients and
SmoothGrad/VarGrad — `steps` (`samples`) forward+backward passes per image at batch `chunk`;
occlusion and RISE — their forwards per image at batch `chunk`; CF-CAM — one forward+backward at
batch B plus its forwards per image at batch `chunk`.
"""

from __future__ import annotations

import argparse
import math
import statistics

import torch
from common import forward_backward_floor, forward_floor, markdown, median_seconds

from xaibench.models.zoo import load_model
from xaibench.saliency.base import EXPLAINERS


def captum_runner(name: str, model, x, target, args):
    """The same method in Captum on the same inputs, batched as ours (None when Captum has none)."""
    from captum import attr as ca

    net = model.module
    chunk = args.chunk
    if name == "saliency":
        return lambda: ca.Saliency(net).attribute(x, target=target)
    if name == "inputxgrad":
        return lambda: ca.InputXGradient(net).attribute(x, target=target)
    if name == "guided_backprop":
        return lambda: ca.GuidedBackprop(net).attribute(x, target=target)
    if name == "deconvnet":
        return lambda: ca.Deconvolution(net).attribute(x, target=target)
    if name == "integrated_gradients":
        return lambda: ca.IntegratedGradients(net).attribute(
            x, baselines=torch.zeros_like(x), target=target, n_steps=args.steps, method="gausslegendre",
            internal_batch_size=chunk)
    if name in ("smoothgrad", "vargrad"):
        per = max(1, chunk // x.shape[0])
        return lambda: ca.NoiseTunnel(ca.Saliency(net)).attribute(
            x, nt_type=name, nt_samples=args.samples, nt_samples_batch_size=per, stdevs=0.15, target=target)
    if name == "occlusion":
        per = max(1, chunk // x.shape[0])
        return lambda: ca.Occlusion(net).attribute(
            x, sliding_window_shapes=(3, args.window, args.window), strides=(3, args.stride, args.stride),
            target=target, baselines=0.0, perturbations_per_eval=per)
    if name == "guided_gradcam":
        layer = dict(net.named_modules())[model.resolve_layer("auto")]
        return lambda: ca.GuidedGradCam(net, layer).attribute(x, target=target)
    return None


def params_for(name: str, args) -> dict:
    c = {"chunk_size": args.chunk}
    return {
        "integrated_gradients": {"steps": args.steps, **c},
        "smoothgrad": {"n_samples": args.samples, **c},
        "vargrad": {"n_samples": args.samples, **c},
        "occlusion": {"window": args.window, "stride": args.stride, **c},
        "rise": {"n_masks": args.rise_masks, "cell_size": args.cell, **c},
        "cfcam": {**c},
    }.get(name, {})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="builtin:synthetic-cnn")
    ap.add_argument("--weights", default="default", help="`none` for random weights (timing does not depend on them)")
    ap.add_argument("--size", type=int, default=None)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--chunk", type=int, default=64, help="images per model call inside an explainer")
    ap.add_argument("--steps", type=int, default=32, help="integrated gradients steps")
    ap.add_argument("--samples", type=int, default=16, help="SmoothGrad/VarGrad samples")
    ap.add_argument("--window", type=int, default=32)
    ap.add_argument("--stride", type=int, default=16)
    ap.add_argument("--rise-masks", type=int, default=256)
    ap.add_argument("--cell", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--methods", default="saliency,inputxgrad,guided_backprop,deconvnet,guided_gradcam,"
                    "integrated_gradients,smoothgrad,vargrad,occlusion,rise,lrp,clrp,relevancecam,cfcam")
    ap.add_argument("--no-captum", action="store_true")
    args = ap.parse_args()

    torch.manual_seed(0)
    try:
        model = load_model(args.model, args.weights)
    except Exception as e:  # noqa: BLE001 - a missing shipped checkpoint: time the architecture untrained
        print(f"({e}; using random weights)")
        model = load_model(args.model, "none")
    size = args.size or model.input_size[0]
    b = args.batch
    x = model.normalize(torch.rand(b, 3, size, size))
    with torch.no_grad():
        target = model(x).argmax(1)
    xc = model.normalize(torch.rand(args.chunk, 3, size, size))
    tc = torch.zeros(args.chunk, dtype=torch.long)
    floors = {  # seconds per image of the model's own passes
        "fb_b": (forward_backward_floor(model, x, target), b),
        "fb_c": (forward_backward_floor(model, xc, tc), args.chunk),
        "fw_c": (forward_floor(model, xc), args.chunk),
    }
    seen = {k: [] for k in floors}
    for fn, _ in floors.values():
        fn()  # warm-up

    rows = []
    for name in args.methods.split(","):
        explainer = EXPLAINERS.build(name, **params_for(name, args))
        before = model.counter.snapshot()
        explainer(model, x, target)  # also the warm-up
        used = model.counter.since(before)
        fwd_pi, bwd_pi = used["forward_images"] / b, used["backward_images"] / b
        if name in ("integrated_gradients", "smoothgrad", "vargrad"):
            n = args.steps if name == "integrated_gradients" else args.samples
            parts, floor_what = {"fb_c": n}, f"{n}× fwd+bwd @{args.chunk}"
        elif name in ("occlusion", "rise"):
            parts, floor_what = {"fw_c": fwd_pi}, f"{fwd_pi:g}× fwd @{args.chunk}"
        elif name == "cfcam":
            parts, floor_what = {"fb_b": 1, "fw_c": fwd_pi - 1}, f"fwd+bwd @{b} + {fwd_pi - 1:g}× fwd @{args.chunk}"
        else:
            parts, floor_what = {"fb_b": bwd_pi}, f"{bwd_pi:g}× fwd+bwd @{b}"
        run = None if args.no_captum else captum_runner(name, model, x, target, args)
        if run is not None:
            run()  # warm-up
        # rounds: the floor, ours and Captum's back to back, so a changing machine load hits all alike
        ours_t, ratios, speedups, captum_t = [], [], [], []
        for _ in range(args.repeats):
            floor = 0.0
            for key, times in parts.items():
                fn, per = floors[key]
                t = median_seconds(fn, 1, warmup=0) / per
                seen[key].append(t)
                floor += times * t
            t_ours = median_seconds(lambda: explainer(model, x, target), 1, warmup=0) / b
            ours_t.append(t_ours)
            ratios.append(t_ours / floor)
            if run is not None:
                t_cap = median_seconds(run, 1, warmup=0) / b
                captum_t.append(t_cap)
                speedups.append(t_cap / t_ours)
        row = dict(method=name, fwd_per_image=fwd_pi, bwd_per_image=bwd_pi, s_per_image=statistics.median(ours_t),
                   floor=floor_what, ratio_to_floor=statistics.median(ratios), captum_s_per_image="-",
                   speedup_vs_captum="-")
        if run is not None:
            row.update(captum_s_per_image=statistics.median(captum_t), speedup_vs_captum=statistics.median(speedups))
        rows.append(row)
        print(f"{name}: {row['s_per_image']:.4g} s/image, passes {fwd_pi:g} fwd + {bwd_pi:g} bwd, ratio to floor "
              f"{row['ratio_to_floor']:.3g}, speedup vs Captum {row['speedup_vs_captum']}", flush=True)
    fb_b, fb_c, fw_c = (statistics.median(seen[k]) if seen[k] else float("nan") for k in ("fb_b", "fb_c", "fw_c"))

    n_win = (math.ceil((size - args.window) / args.stride) + 1) ** 2
    print(f"\nmodel {args.model} at {size}x{size}, batch {b}, chunk {args.chunk}, medians of {args.repeats} rounds "
          "(floor, ours, Captum back to back; ratios taken per round), "
          f"torch threads {torch.get_num_threads()}; floors per image: fwd+bwd@{b} {fb_b:.4g}s, "
          f"fwd+bwd@{args.chunk} {fb_c:.4g}s, fwd@{args.chunk} {fw_c:.4g}s")
    print(f"formulas: occlusion 1 + {n_win} windows = {1 + n_win} forwards/image; RISE {args.rise_masks} forwards/image; "
          "CF-CAM 1 fwd+bwd + non-constant channels + 1 forwards/image\n")
    print(markdown(rows, ["method", "fwd_per_image", "bwd_per_image", "s_per_image", "floor", "ratio_to_floor",
                          "captum_s_per_image", "speedup_vs_captum"]))


if __name__ == "__main__":
    main()

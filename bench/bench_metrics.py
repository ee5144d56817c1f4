"""Deletion + insertion cost: seconds per image, counted forwards per image (2×(steps+1)), the
ratio to that many forwards of the model at the chunk's batch size (the floor, same run), and
Quantus' PixelFlipping / RegionPerturbation on the same maps side by side; medians over repeats.

    .venv/bin/python bench/bench_metrics.py                        # resnet18 (random), 96², 8 images
    .venv/bin/python bench/bench_metrics.py --size 224 --steps 224 --images 4 --repeats 3

Quantus needs `features_in_step` (= 3 channels × pixels per step) to divide H·W, so the default
size 96 with 96 steps (96 px a step, 288 features) lets both flip whole pixels in the same steps.
"""

from __future__ import annotations

import argparse

import torch
from common import forward_floor, markdown, median_seconds

from xaibench.metrics.base import METRICS
from xaibench.models.zoo import load_model


def counted(model, fn):
    """Run fn once, return the forward images it cost."""
    before = model.counter.snapshot()
    fn()
    return model.counter.since(before)["forward_images"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="torchvision:resnet18")
    ap.add_argument("--size", type=int, default=96)
    ap.add_argument("--steps", type=int, default=96)
    ap.add_argument("--images", type=int, default=8)
    ap.add_argument("--chunk", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--no-quantus", action="store_true")
    args = ap.parse_args()

    torch.manual_seed(0)
    model = load_model(args.model, weights="none").eval()  # Quantus checks model.training
    b, s = args.images, args.size
    x = torch.randn(b, 3, s, s)
    maps = torch.nn.functional.interpolate(torch.rand(b, 1, s // 8, s // 8), size=(s, s), mode="bilinear")[:, 0]
    with torch.inference_mode():
        target = model(x).argmax(1)

    print("measuring the floor ...", flush=True)
    floor = median_seconds(forward_floor(model, torch.randn(args.chunk, 3, s, s)), args.repeats) / args.chunk
    rows = []

    def add(name, fn, passes):
        t = median_seconds(fn, args.repeats, warmup=0) / b
        rows.append(dict(method=name, passes_per_image=passes / b, s_per_image=t,
                         ratio_to_floor=t / (passes / b * floor)))
        print(f"  {name}: {t:.3g} s per image, {passes / b:g} forwards per image", flush=True)
        return t

    dele = METRICS.build("deletion", steps=args.steps, chunk_size=args.chunk)
    ins = METRICS.build("insertion", steps=args.steps, chunk_size=args.chunk)
    both = lambda: (dele(model, x, maps, target), ins(model, x, maps, target))  # noqa: E731
    ours_del = add("xaibench deletion", lambda: dele(model, x, maps, target), counted(model, lambda: dele(model, x, maps, target)))
    add("xaibench insertion", lambda: ins(model, x, maps, target), counted(model, lambda: ins(model, x, maps, target)))
    ours_both = add("xaibench deletion+insertion", both, counted(model, both))

    if not args.no_quantus:
        print("importing quantus ...", flush=True)
        import quantus

        step_px = -(-s * s // args.steps)
        xn, yn, an = x.numpy(), target.numpy(), maps[:, None].numpy()
        pf = quantus.PixelFlipping(features_in_step=3 * step_px, perturb_baseline="black", disable_warnings=True)
        run_pf = lambda: pf(model=model, x_batch=xn, y_batch=yn, a_batch=an, softmax=True, device="cpu",  # noqa: E731
                            channel_first=True, batch_size=b)
        t_pf = add("quantus PixelFlipping", run_pf, counted(model, run_pf))
        rp = quantus.RegionPerturbation(patch_size=8, regions_evaluation=args.steps, perturb_baseline="black",
                                        disable_warnings=True)
        run_rp = lambda: rp(model=model, x_batch=xn, y_batch=yn, a_batch=an, softmax=True, device="cpu",  # noqa: E731
                            channel_first=True, batch_size=b)
        t_rp = add("quantus RegionPerturbation", run_rp, counted(model, run_rp))
        rows.append(dict(method="quantus PixelFlipping / xaibench deletion", passes_per_image="", s_per_image="",
                         ratio_to_floor=t_pf / ours_del))
        rows.append(dict(method="quantus RegionPerturbation / xaibench deletion", passes_per_image="", s_per_image="",
                         ratio_to_floor=t_rp / ours_del))
    print(f"{args.model} (random weights) at {s}², {b} images, steps {args.steps}, chunk {args.chunk}; "
          f"floor = {floor * 1e3:.3g} ms per image-forward at batch {args.chunk}; torch threads {torch.get_num_threads()}")
    print(markdown(rows, ["method", "passes_per_image", "s_per_image", "ratio_to_floor"]))
    print(f"deletion+insertion: {ours_both:.3g} s per image = {2 * (args.steps + 1)} forwards per image expected")


if __name__ == "__main__":
    main()

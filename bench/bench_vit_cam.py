"""Speed of token-layer CAMs on a vision transformer against their floor (one forward and one
backward to the layer at the same batch size) and beside pytorch-grad-cam's token Grad-CAM (its
`reshape_transform`) on the same model, in one run.

    python bench/bench_vit_cam.py --model vit_tiny_patch16_224 --images 8 --repeats 5
    python bench/bench_vit_cam.py --model deit_tiny_distilled_patch16_224 --images 4
    python bench/bench_vit_cam.py --model builtin:synthetic-vit --images 32
    python bench/bench_vit_cam.py --model torchvision:vit_b_16 --weights none --images 2

A bare name is a timm model with random weights (no download) on random images; a name with a
family (`builtin:`, `torchvision:`, `timm:`, … as in `xai list models`) goes through the model zoo
with `--weights`, a built-in model on the synthetic images it was trained for. Prints a markdown table: method, s/image (median over repeats), ratio to the floor, and
Pearson agreement (min over images) with pytorch-grad-cam's map.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from common import (
    builtin_synthetic_batch,
    layer_floor,
    markdown,
    pearson_min,
    randomize_zero_weights,
    token_cam_reference,
)
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

from xaibench.models.adapter import ModelAdapter
from xaibench.models.zoo import load_model
from xaibench.saliency import EXPLAINERS

ORACLES = ("gradcam", "layercam")


def interleaved_medians(fns: dict, repeats: int) -> dict[str, float]:
    """Median seconds of each function, timed in turn within every round (one warm-up round), so
    that load from other processes hits all of them alike."""
    times: dict[str, list[float]] = {k: [] for k in fns}
    for r in range(repeats + 1):
        for k, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            if r:
                times[k].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in times.items()}


def vision_transformer(name: str, weights: str) -> ModelAdapter:
    """A zoo model for a name with a family, else timm's `name` with random weights (10 classes)."""
    torch.manual_seed(0)
    if ":" in name:
        model = load_model(name, weights)
        randomize_zero_weights(model.module)
        return model
    import timm

    return ModelAdapter.wrap(timm.create_model(name, pretrained=False, num_classes=10).eval(), input_size=224, name=name)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="vit_tiny_patch16_224",
                    help="a timm model name (random weights) or a zoo name such as builtin:synthetic-vit")
    ap.add_argument("--weights", default="default", help="weights of a zoo model (none: random)")
    ap.add_argument("--images", type=int, default=8, help="images = the batch size")
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    model = vision_transformer(args.model, args.weights)
    layer = model.resolve_layer("auto")
    h, w = model.input_size
    if args.model.startswith("builtin:"):  # a trained built-in model: the synthetic test images it was made for
        _, _, x, _ = builtin_synthetic_batch(args.images, h, args.model)
    else:
        x = torch.randn(args.images, 3, h, w, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        target = model(x).argmax(1)
    n = args.images
    targets = [ClassifierOutputTarget(int(c)) for c in target]
    refs = {name: token_cam_reference(name, model, layer, model.patch.grid(h, w)) for name in ORACLES}
    timed = {f"floor (forward + backward to {layer})": layer_floor(model, x, target, layer)}
    for name in ORACLES:
        ours = EXPLAINERS.build(name, layer=layer)
        timed[f"xaibench {name}"] = lambda ours=ours: ours(model, x, target)
        timed[f"pytorch-grad-cam {name}"] = lambda cam=refs[name]: cam(x, targets)
    times = interleaved_medians(timed, args.repeats)
    floor = times[next(iter(timed))]
    rows = []
    for label, t in times.items():
        name = label.split()[-1]
        agree = ""
        if label.startswith("xaibench"):
            ours, ref = timed[label](), torch.from_numpy(refs[name](x, targets))
            flat = ours.flatten(1).cpu()
            constant = int((flat == flat[:, :1]).all(1).sum())
            agree = f"{pearson_min(ours, ref):.4f}" + (f" ({constant} of {n} maps constant)" if constant else "")
        rows.append({"method": label, "s/image": t / n, "× floor": t / floor, "pearson vs pytorch-grad-cam": agree})
    for cam in refs.values():
        cam.activations_and_grads.release()
    print(f"{model.name}, {h}×{w} px, batch {n}, medians of {args.repeats}, layer {layer}, torch threads "
          f"{torch.get_num_threads()}")
    print(markdown(rows, ["method", "s/image", "× floor", "pearson vs pytorch-grad-cam"]))


if __name__ == "__main__":
    main()

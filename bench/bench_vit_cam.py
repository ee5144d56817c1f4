"""Speed of token-layer CAMs on a vision transformer against their floor (one forward and one
backward to the layer at the same batch size) and beside pytorch-grad-cam's token Grad-CAM (its
`reshape_transform`) on the same model, in one run.

    python bench/bench_vit_cam.py --model vit_tiny_patch16_224 --images 8 --repeats 5
    python bench/bench_vit_cam.py --model deit_tiny_distilled_patch16_224 --images 4

Random weights (timm, no download). Prints a markdown table: method, s/image (median over repeats),
ratio to the floor, and Pearson agreement (min over images) with pytorch-grad-cam's map.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import timm
import torch
from common import markdown, pearson_min
from pytorch_grad_cam import GradCAM, LayerCAM
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

from xaibench.models.adapter import ModelAdapter
from xaibench.saliency import EXPLAINERS
from xaibench.tensorops import target_scores

ORACLES = {"gradcam": GradCAM, "layercam": LayerCAM}


def layer_floor(model: ModelAdapter, x: torch.Tensor, target: torch.Tensor, layer: str):
    """One forward with the layer's raw output kept, one backward of the target logits to it."""
    module = model.layers()[layer]

    def fn():
        box = {}

        def hook(mod, inp, out):
            box["out"] = out if out.requires_grad else out.detach().requires_grad_(True)
            return box["out"]

        handle = module.register_forward_hook(hook)
        try:
            with torch.enable_grad():
                score = target_scores(model(x), target).sum()
                return torch.autograd.grad(score, box["out"])
        finally:
            handle.remove()

    return fn


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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="vit_tiny_patch16_224", help="a timm model name (random weights)")
    ap.add_argument("--images", type=int, default=8, help="images = the batch size")
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    torch.manual_seed(0)
    net = timm.create_model(args.model, pretrained=False, num_classes=10).eval()
    model = ModelAdapter.wrap(net, input_size=224, name=args.model)
    layer = model.resolve_layer("auto")
    x = torch.randn(args.images, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        target = model(x).argmax(1)
    prefix, grid = net.num_prefix_tokens, model.patch.grid(224, 224)

    def reshape(t):
        return t[:, prefix:].reshape(t.shape[0], *grid, t.shape[2]).permute(0, 3, 1, 2)

    ref_net = copy.deepcopy(net)
    for i, p in enumerate(ref_net.parameters()):
        p.requires_grad_(i == 0)  # pytorch-grad-cam calls loss.backward(): one trainable input-end parameter
    n = args.images
    targets = [ClassifierOutputTarget(int(c)) for c in target]
    refs = {name: ORACLES[name](ref_net, [dict(ref_net.named_modules())[layer]], reshape_transform=reshape)
            for name in ORACLES}
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
        agree = (f"{pearson_min(timed[label](), torch.from_numpy(refs[name](x, targets))):.4f}"
                 if label.startswith("xaibench") else "")
        rows.append({"method": label, "s/image": t / n, "× floor": t / floor, "pearson vs pytorch-grad-cam": agree})
    for cam in refs.values():
        cam.activations_and_grads.release()
    print(f"{args.model}, 224 px, batch {n}, medians of {args.repeats}, layer {layer}, torch threads "
          f"{torch.get_num_threads()}")
    print(markdown(rows, ["method", "s/image", "× floor", "pearson vs pytorch-grad-cam"]))


if __name__ == "__main__":
    main()

"""Shared benchmark helpers: medians over repeats and the floor (the model's own forward or
forward+backward at the same batch size), so every figure is a ratio taken in the same run.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch

from xaibench.models.adapter import ModelAdapter
from xaibench.models.zoo import load_model
from xaibench.tensorops import target_scores

# Lighter settings for the costliest explainers, named presets shared by the benches:
# `quickstart` as in configs/quickstart.yaml (bench_memory), `stress` lighter still so that
# 2,000 images × every explainer fit in minutes (stress.py). Each bench prints the one it used.
LIGHT_SETTINGS = {
    "quickstart": {"sscam": {"num_samples": 2}, "cameras": {"max_size": 384}, "rise": {"n_masks": 256},
                   "occlusion": {"window": 16, "stride": 8}, "integrated_gradients": {"steps": 32},
                   "smoothgrad": {"n_samples": 16}, "vargrad": {"n_samples": 16}},
    "stress": {"sscam": {"num_samples": 2}, "cameras": {"max_size": 128}, "rise": {"n_masks": 200},
               "occlusion": {"window": 16, "stride": 8}, "integrated_gradients": {"steps": 16},
               "smoothgrad": {"n_samples": 8}, "vargrad": {"n_samples": 8}},
}


def median_seconds(fn: Callable[[], object], repeats: int = 5, warmup: int = 1) -> float:
    """Median wall time of `fn()` over `repeats` runs after `warmup` runs (CUDA synchronized)."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def forward_floor(model: ModelAdapter, x: torch.Tensor) -> Callable[[], object]:
    """One inference forward of the batch."""

    def fn():
        with torch.inference_mode():
            return model(x)

    return fn


def forward_backward_floor(model: ModelAdapter, x: torch.Tensor, target: torch.Tensor) -> Callable[[], object]:
    """One forward and one backward of the target logits to the input (no parameter gradients)."""

    def fn():
        with torch.enable_grad():
            xg = x.detach().requires_grad_(True)
            return torch.autograd.grad(target_scores(model(xg), target).sum(), xg)

    return fn


def layer_floor(model: ModelAdapter, x: torch.Tensor, target: torch.Tensor, layer: str) -> Callable[[], object]:
    """One forward with the layer's raw output kept, one backward of the target logits to it: the
    floor of a gradient CAM at `layer`."""
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


def randomize_zero_weights(module: torch.nn.Module, std: float = 0.02) -> None:
    """Give every all-zero Linear weight N(0, std²) values: torchvision's ViT head starts at zero, so on
    random weights every gradient (and every gradient map) would be 0 and any agreement vacuous."""
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, torch.nn.Linear) and not m.weight.any():
                torch.nn.init.normal_(m.weight, std=std)


def token_cam_reference(method: str, model: ModelAdapter, layer: str, grid: tuple[int, int]):
    """pytorch-grad-cam's `method` ("gradcam", "layercam") on a copy of the ViT at `layer`, with the
    `reshape_transform` its users write: drop the prefix tokens (however many precede the
    rows·cols patch tokens), tokens to a (B, C, rows, cols) grid. Call it as `cam(x, targets)`;
    release with `cam.activations_and_grads.release()`."""
    import copy

    from pytorch_grad_cam import GradCAM, LayerCAM

    rows, cols = grid

    def reshape(t):
        return t[:, t.shape[1] - rows * cols:].reshape(t.shape[0], rows, cols, t.shape[2]).permute(0, 3, 1, 2)

    net = copy.deepcopy(model.module)
    for i, p in enumerate(net.parameters()):
        p.requires_grad_(i == 0)  # pytorch-grad-cam calls loss.backward(): one trainable input-end parameter
    cam = {"gradcam": GradCAM, "layercam": LayerCAM}[method]
    return cam(net, [dict(net.named_modules())[layer]], reshape_transform=reshape)


def pearson_min(a, b) -> float:
    """The smallest per-image Pearson correlation of two batches of maps (agreement with a reference);
    an image whose two maps are the same constant (e.g. both all zero) agrees (1), a constant map
    beside a varying one gives NaN."""
    a = torch.as_tensor(a, dtype=torch.float64).flatten(1)
    b = torch.as_tensor(b, dtype=torch.float64).flatten(1)
    same = (a == b).all(1)
    a, b = a - a.mean(1, keepdim=True), b - b.mean(1, keepdim=True)
    r = (a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1))
    return float(torch.where(same, 1.0, r).min())


def markdown(rows: list[dict], columns: list[str]) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for r in rows:
        lines.append("| " + " | ".join(f"{r[c]:.4g}" if isinstance(r[c], float) else str(r[c]) for c in columns) + " |")
    return "\n".join(lines)


def add_model_args(ap: argparse.ArgumentParser) -> None:
    """The model options every bench shares: --model, --weights, --size (default: the model's input size)."""
    ap.add_argument("--model", default="builtin:synthetic-cnn")
    ap.add_argument("--weights", default="default")
    ap.add_argument("--size", type=int, default=None)


def builtin_synthetic_batch(n: int, size: int, model_name: str = "builtin:synthetic-cnn"
                            ) -> tuple[ModelAdapter, list, torch.Tensor, torch.Tensor]:
    """A built-in model (seed 0; the CNN unless `model_name` says otherwise), the first n synthetic
    images at `size` (with their boxes and masks), the normalized batch and the labels as targets."""
    from xaibench.datasets.base import DATASETS

    torch.manual_seed(0)
    model = load_model(model_name).eval()
    ds = DATASETS.build("synthetic", n_images=n, image_size=size)
    samples = [ds[i] for i in range(n)]
    return model, samples, model.normalize(torch.stack([s.image for s in samples])), \
        torch.tensor([s.label for s in samples])


def model_and_inputs(args: argparse.Namespace, n: int) -> tuple[ModelAdapter, torch.Tensor, torch.Tensor]:
    """The model of `args`, n random images (seed 0) at --size and their top-1 classes as targets."""
    torch.manual_seed(0)
    model = load_model(args.model, args.weights)
    size = args.size or model.input_size[0]
    x = model.normalize(torch.rand(n, 3, size, size))
    with torch.no_grad():
        target = model(x).argmax(1)
    return model, x, target

"""Attention explainers' and token Grad-CAM's speed on a vision transformer, as ratios to the model's
own passes at the same batch size, with torchcam's LeGrad and pytorch-grad-cam's token Grad-CAM on the
same ViT in the same run.

    .venv/bin/python bench/bench_attention.py                      # torchvision ViT-S/16 shape, 224², batch 8
    .venv/bin/python bench/bench_attention.py --arch timm --batch 8  # timm vit_small_patch16_224 (random)
    .venv/bin/python bench/bench_attention.py --arch builtin --batch 32  # builtin:synthetic-vit (trained), 128²

- fwd: one inference forward (the model's own attention: PyTorch's fused MHA path / timm's
  scaled_dot_product_attention); fb: forward + backward of the target logits to the input; layer fb:
  forward + backward of the target logits to the token layer of the CAM (`layer: auto`).
- raw_attention and attention_rollout against fwd (issue 19: rollout ≤ 1.2×); gradient rollout,
  LeGrad, AttnLRP and torchcam's LeGrad against fb (≤ 1.3×); token Grad-CAM, ours and
  pytorch-grad-cam's (with the `reshape_transform` its users write), against layer fb (≤ 1.15×).
  torchcam's LeGrad runs on torchvision ViTs (`--arch torchvision`, `builtin`).
Rounds interleave every row so a changing machine load hits all alike; each ratio is taken within a
round, the table shows medians over rounds.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from common import (
    builtin_synthetic_batch,
    forward_backward_floor,
    forward_floor,
    layer_floor,
    markdown,
    randomize_zero_weights,
    token_cam_reference,
)

from xaibench.models.adapter import ModelAdapter
from xaibench.models.zoo import load_model
from xaibench.saliency import EXPLAINERS


def vit(arch: str) -> ModelAdapter:
    torch.manual_seed(0)
    if arch == "builtin":
        return load_model("builtin:synthetic-vit")
    if arch == "timm":
        import timm

        net = timm.create_model("vit_small_patch16_224", pretrained=False, num_classes=1000)
    else:
        from torchvision.models.vision_transformer import VisionTransformer

        net = VisionTransformer(image_size=224, patch_size=16, num_layers=12, num_heads=6, hidden_dim=384,
                                mlp_dim=1536, num_classes=1000)
        randomize_zero_weights(net)  # torchvision's zero head gives zero gradients
    return ModelAdapter.wrap(net.eval(), input_size=224, name=f"{arch}-vit-s16")


def torchcam_legrad(model: ModelAdapter, x: torch.Tensor, target: torch.Tensor):
    from torchcam.methods import LeGrad

    net = model.module

    def fn():
        with LeGrad(net, list(net.encoder.layers)) as extractor, torch.enable_grad():
            return extractor(target.tolist(), net(x))[0]

    return fn


def pytorch_grad_cam_gradcam(model: ModelAdapter, x: torch.Tensor, target: torch.Tensor, layer: str):
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    cam = token_cam_reference("gradcam", model, layer, model.patch.grid(*x.shape[-2:]))
    targets = [ClassifierOutputTarget(int(c)) for c in target]
    return lambda: cam(x, targets)


def seconds(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--arch", choices=["torchvision", "timm", "builtin"], default="torchvision")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=7)
    args = ap.parse_args()
    model = vit(args.arch)
    h, w = model.input_size
    if args.arch == "builtin":  # the trained model on the synthetic images it was made for
        _, _, x, _ = builtin_synthetic_batch(args.batch, h, "builtin:synthetic-vit")
    else:
        x = model.normalize(torch.rand(args.batch, 3, h, w, generator=torch.Generator().manual_seed(0)))
    with torch.no_grad():
        target = model(x).argmax(1)
    layer = model.resolve_layer("auto")
    floors = {"fwd": forward_floor(model, x), "fb": forward_backward_floor(model, x, target),
              "layer fb": layer_floor(model, x, target, layer)}
    rows = {name: (lambda e=EXPLAINERS.build(name): e(model, x, target))
            for name in ("raw_attention", "attention_rollout", "attention_gradient_rollout", "legrad", "attnlrp")}
    rows["attention_rollout (max, discard 0.9)"] = (
        lambda e=EXPLAINERS.build("attention_rollout", head_fusion="max", discard_ratio=0.9): e(model, x, target))
    if args.arch != "timm":
        rows["torchcam LeGrad"] = torchcam_legrad(model, x, target)
    rows["gradcam (token layer)"] = lambda e=EXPLAINERS.build("gradcam", layer=layer): e(model, x, target)
    rows["pytorch-grad-cam gradcam (reshape_transform)"] = pytorch_grad_cam_gradcam(model, x, target, layer)
    floor_of = {name: "layer fb" if "gradcam" in name else
                "fwd" if "rollout" in name and "gradient" not in name or name == "raw_attention" else "fb"
                for name in rows}
    every = {**floors, **rows}
    for fn in every.values():  # warm-up
        fn()
    times: dict[str, list[float]] = {k: [] for k in every}
    for _ in range(args.rounds):
        for k, fn in every.items():
            times[k].append(seconds(fn))
    ratios = {k: statistics.median(t / times[floor_of[k]][i] for i, t in enumerate(times[k])) for k in rows}
    table = [{"method": k, "floor": floor_of[k], "median s": statistics.median(times[k]),
              "floor median s": statistics.median(times[floor_of[k]]), "ratio to floor": ratios[k]} for k in rows]
    print(f"{model.name}, batch {args.batch}, {h}×{w}, {args.rounds} rounds, CAM layer {layer}, "
          f"torch threads {torch.get_num_threads()}")
    print(markdown(table, ["method", "floor", "median s", "floor median s", "ratio to floor"]))


if __name__ == "__main__":
    main()

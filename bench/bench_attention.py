"""Attention explainers' speed on a ViT-S/16-shaped model (random weights), as ratios to the model's
own passes at the same batch size, with torchcam's LeGrad on the same torchvision ViT in the same run.

    .venv/bin/python bench/bench_attention.py                      # torchvision ViT-S/16 shape, 224², batch 8
    .venv/bin/python bench/bench_attention.py --arch timm --batch 8  # timm vit_small_patch16_224 (random)

- fwd: one inference forward (the model's own attention: PyTorch's fused MHA path / timm's
  scaled_dot_product_attention); fb: forward + backward of the target logits to the input.
- raw_attention and attention_rollout against fwd (issue 19: rollout ≤ 1.2×); gradient rollout,
  LeGrad, AttnLRP and torchcam's LeGrad against fb (≤ 1.3×).
Rounds interleave every row so a changing machine load hits all alike; each ratio is taken within a
round, the table shows medians over rounds.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from common import forward_backward_floor, forward_floor, markdown

from xaibench.models.adapter import ModelAdapter
from xaibench.saliency import EXPLAINERS


def vit(arch: str) -> ModelAdapter:
    torch.manual_seed(0)
    if arch == "timm":
        import timm

        net = timm.create_model("vit_small_patch16_224", pretrained=False, num_classes=1000)
    else:
        from torchvision.models.vision_transformer import VisionTransformer

        net = VisionTransformer(image_size=224, patch_size=16, num_layers=12, num_heads=6, hidden_dim=384,
                                mlp_dim=1536, num_classes=1000)
        torch.nn.init.normal_(net.heads.head.weight, std=0.02)  # torchvision's zero head gives zero gradients
    return ModelAdapter.wrap(net.eval(), input_size=224, name=f"{arch}-vit-s16")


def torchcam_legrad(model: ModelAdapter, x: torch.Tensor, target: torch.Tensor):
    from torchcam.methods import LeGrad

    net = model.module

    def fn():
        with LeGrad(net, list(net.encoder.layers)) as extractor, torch.enable_grad():
            return extractor(target.tolist(), net(x))[0]

    return fn


def seconds(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--arch", choices=["torchvision", "timm"], default="torchvision")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=7)
    args = ap.parse_args()
    model = vit(args.arch)
    x = model.normalize(torch.rand(args.batch, 3, 224, 224, generator=torch.Generator().manual_seed(0)))
    with torch.no_grad():
        target = model(x).argmax(1)
    floors = {"fwd": forward_floor(model, x), "fb": forward_backward_floor(model, x, target)}
    rows = {name: (lambda e=EXPLAINERS.build(name): e(model, x, target))
            for name in ("raw_attention", "attention_rollout", "attention_gradient_rollout", "legrad", "attnlrp")}
    rows["attention_rollout (max, discard 0.9)"] = (
        lambda e=EXPLAINERS.build("attention_rollout", head_fusion="max", discard_ratio=0.9): e(model, x, target))
    if args.arch == "torchvision":
        rows["torchcam LeGrad"] = torchcam_legrad(model, x, target)
    floor_of = {name: "fwd" if "rollout" in name and "gradient" not in name or name == "raw_attention" else "fb"
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
    print(f"{model.name}, batch {args.batch}, 224², {args.rounds} rounds, torch threads {torch.get_num_threads()}")
    print(markdown(table, ["method", "floor", "median s", "floor median s", "ratio to floor"]))


if __name__ == "__main__":
    main()

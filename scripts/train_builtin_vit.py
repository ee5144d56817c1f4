"""Retrain the built-in vision transformer `builtin:synthetic-vit` on the `synthetic` dataset, on CPU.

Writes xaibench/models/builtin/synthetic-vit.pt (state dict) and synthetic-vit.json (architecture,
classes, mean/std, measured test accuracy, the commands). Usage: python scripts/train_builtin_vit.py
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from train_builtin import (  # the CNN's script: same data, same class-preserving flips
    accuracy,
    as_tensors,
    augment,
    earlier_stages,
    provenance,
)

from xaibench.datasets.synthetic import SyntheticShapes
from xaibench.models.builtin import HERE, synthetic_vit


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--train-images", type=int, default=16000, help="procedurally generated training images")
    p.add_argument("--val-images", type=int, default=1000)
    p.add_argument("--epochs", type=int, default=40)
    p.add_argument("--stop-after", type=int, default=None,
                   help="stop after this many epochs (the learning-rate schedule still spans --epochs)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=5e-4, help="peak AdamW learning rate (linear warmup, then cosine)")
    p.add_argument("--warmup", type=float, default=0.05, help="fraction of the steps spent warming up")
    p.add_argument("--weight-decay", type=float, default=0.05)
    p.add_argument("--label-smoothing", type=float, default=0.1)
    p.add_argument("--shift", type=int, default=16, help="random translation up to ± this many pixels (reflect pad)")
    p.add_argument("--patch-size", type=int, default=16)
    p.add_argument("--hidden-dim", type=int, default=96)
    p.add_argument("--num-layers", type=int, default=4)
    p.add_argument("--num-heads", type=int, default=3)
    p.add_argument("--mlp-ratio", type=int, default=4)
    p.add_argument("--conv-stem", type=int, nargs="*", default=[16, 32, 64, 128],
                   help="channels of a convolutional stem (3×3 stride-2 conv + BatchNorm + ReLU each, then a 1×1 "
                        "conv; Xiao et al. 2021) replacing the patchify convolution, log2(patch size) of them; "
                        "none given: the plain patchify ViT")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1, help="torch threads (1 on a shared machine)")
    p.add_argument("--out", type=Path, default=HERE, help="folder for synthetic-vit.pt/.json")
    p.add_argument("--init", type=Path, default=None, help="start from this state dict (fine-tuning) instead of random")
    p.add_argument("--no-augment", action="store_true", help="no flips, rotations, channel permutations or shifts")
    return p.parse_args()


def shift(x: torch.Tensor, pixels: int, g: torch.Generator) -> torch.Tensor:
    """Translate each image by its own random (dx, dy) ∈ [−pixels, pixels]², reflect-padding the border."""
    if pixels <= 0:
        return x
    size = x.shape[-1]
    padded = F.pad(x, (pixels,) * 4, mode="reflect")
    offsets = torch.randint(0, 2 * pixels + 1, (x.shape[0], 2), generator=g).tolist()
    return torch.stack([padded[i, :, dy : dy + size, dx : dx + size] for i, (dy, dx) in enumerate(offsets)])


def main() -> None:
    args = parse()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    torch.use_deterministic_algorithms(True)
    start = time.time()
    train_x, train_y = as_tensors(
        SyntheticShapes(split="train", n_images=args.train_images, seed=args.seed)
    )
    val_x, val_y = as_tensors(SyntheticShapes(split="val", n_images=args.val_images, seed=args.seed))
    print(f"generated {len(train_x)} train + {len(val_x)} val images in {time.time() - start:.0f}s", flush=True)
    pixels = train_x[:10000].float().div(255)
    mean = pixels.mean((0, 2, 3)).view(1, 3, 1, 1)
    std = pixels.std((0, 2, 3)).view(1, 3, 1, 1)
    mean, std = torch.round(mean * 1e4) / 1e4, torch.round(std * 1e4) / 1e4
    del pixels

    arch = dict(
        image_size=SyntheticShapes.image_size,
        patch_size=args.patch_size,
        num_layers=args.num_layers,
        num_heads=args.num_heads,
        hidden_dim=args.hidden_dim,
        mlp_dim=args.mlp_ratio * args.hidden_dim,
        conv_stem=args.conv_stem,
    )
    model = synthetic_vit({"classes": SyntheticShapes.class_names, **arch})
    params = sum(p.numel() for p in model.parameters())
    print(f"VisionTransformer {arch}: {params} parameters", flush=True)
    commands, earlier_seconds = earlier_stages("scripts/train_builtin_vit.py", args.init)
    if args.init is not None:
        model.load_state_dict(torch.load(args.init, map_location="cpu", weights_only=True))
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and "pos_embedding" not in n]
    no_decay = [p for n, p in model.named_parameters() if not (p.ndim >= 2 and "pos_embedding" not in n)]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": args.weight_decay}, {"params": no_decay, "weight_decay": 0.0}], lr=args.lr
    )
    steps_per_epoch = len(train_x) // args.batch_size
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=args.lr, total_steps=args.epochs * steps_per_epoch, pct_start=args.warmup, anneal_strategy="cos",
        cycle_momentum=False, div_factor=25, final_div_factor=1e3,
    )
    g = torch.Generator().manual_seed(args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    ckpt = args.out / "synthetic-vit.pt"
    val_acc = 0.0
    for epoch in range(args.epochs):
        model.train()
        order = torch.randperm(len(train_x), generator=g)
        total, correct, loss_sum = 0, 0, 0.0
        for step, i in enumerate(range(0, len(order) - args.batch_size + 1, args.batch_size)):
            idx = order[i : i + args.batch_size]
            x = train_x[idx].float() / 255
            x = x if args.no_augment else shift(augment(x, g), args.shift, g)
            x, y = (x - mean) / std, train_y[idx]
            logits = model(x)
            loss = F.cross_entropy(logits, y, label_smoothing=args.label_smoothing)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            total += len(y)
            correct += int((logits.argmax(1) == y).sum())
            loss_sum += float(loss.detach()) * len(y)
            if step % 100 == 99:
                print(f"  step {step + 1}/{steps_per_epoch}: loss {loss_sum / total:.4f} train acc {correct / total:.4f} "
                      f"({time.time() - start:.0f}s)", flush=True)
        val_acc = accuracy(model, val_x, val_y, mean, std)
        torch.save(model.state_dict(), ckpt)
        print(f"epoch {epoch + 1}/{args.epochs}: loss {loss_sum / total:.4f} train acc {correct / total:.4f} "
              f"val acc {val_acc:.4f} ({time.time() - start:.0f}s)", flush=True)
        if args.stop_after is not None and epoch + 1 >= args.stop_after:
            break
    train_seconds = time.time() - start

    test_x, test_y = as_tensors(SyntheticShapes(split="test", seed=0))  # the benchmark's 1000 test images
    test_acc = accuracy(model, test_x, test_y, mean, std)
    print(f"test accuracy {test_acc:.4f} on {len(test_x)} synthetic test images (seed 0)", flush=True)
    meta = dict(
        arch="synthetic-vit",
        model="torchvision.models.vision_transformer.VisionTransformer",
        classes=list(SyntheticShapes.class_names),
        mean=[round(v, 4) for v in mean.flatten().tolist()],
        std=[round(v, 4) for v in std.flatten().tolist()],
        **arch,
        parameters=params,
        test_accuracy=round(test_acc, 4),
        test_images=len(test_x),
        val_accuracy=round(val_acc, 4),
        val_images=len(val_x),
        train_images=len(train_x),
        epochs=args.epochs,
        stopped_after=epoch + 1,
        batch_size=args.batch_size,
        lr=args.lr,
        augment=not args.no_augment,
        seed=args.seed,
        **provenance(args.init, train_seconds, earlier_seconds, args.threads, commands),
    )
    (args.out / "synthetic-vit.json").write_text(json.dumps(meta, indent=2) + "\n")
    print(f"wrote {ckpt} ({ckpt.stat().st_size / 1e6:.2f} MB) and {args.out / 'synthetic-vit.json'}")


if __name__ == "__main__":
    main()

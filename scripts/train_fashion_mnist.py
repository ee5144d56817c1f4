"""Train the `fashion-mnist-vgg` model on Fashion-MNIST on CPU (a few minutes) and write its checkpoint and test accuracy.

Usage: python scripts/train_fashion_mnist.py [--root /usr/share/datasets/fashion-mnist] [--epochs 2]
           [--out xaibench/models/fashion_mnist_vgg.pt]   (writes the .pt and a .json beside it)
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from xaibench.datasets.mnist import MNIST
from xaibench.models.fashion import CHECKPOINT, FASHION_MEAN, FASHION_STD, INPUT_SIZE, FashionVGG


def evaluate(model: FashionVGG, data: MNIST, batch_size: int = 1000) -> float:
    """Top-1 accuracy of `model` on all of `data`."""
    model.eval()
    mean, std = FASHION_MEAN[0], FASHION_STD[0]
    correct = 0
    with torch.inference_mode():
        for start in range(0, len(data), batch_size):
            idx = slice(start, start + batch_size)
            logits = model((data.pixels(idx) - mean) / std)
            correct += int((logits.argmax(1) == data.labels[idx]).sum())
    return correct / len(data)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", default=None, help="MNIST-format folder (default: Debian's dataset-fashion-mnist)")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--limit", type=int, default=None, help="train on the first N images only (smoke tests)")
    ap.add_argument("--out", default=str(CHECKPOINT))
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    train = MNIST(root=args.root, split="train", image_size=INPUT_SIZE)
    test = MNIST(root=args.root, split="test", image_size=INPUT_SIZE)
    n = len(train) if args.limit is None else min(args.limit, len(train))
    mean, std = FASHION_MEAN[0], FASHION_STD[0]
    model = FashionVGG()
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=5e-4)
    steps = args.epochs * ((n + args.batch_size - 1) // args.batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=args.lr, total_steps=steps)
    gen = torch.Generator().manual_seed(args.seed)
    t0 = time.perf_counter()
    for epoch in range(args.epochs):
        model.train()
        order = torch.randperm(n, generator=gen)
        total, seen = 0.0, 0
        for start in range(0, n, args.batch_size):
            idx = order[start : start + args.batch_size]
            x = (train.pixels(idx) - mean) / std
            flip = torch.rand(len(idx), generator=gen) < 0.5  # left-right flips keep every Fashion-MNIST class
            x = torch.where(flip[:, None, None, None], x.flip(-1), x)
            loss = F.cross_entropy(model(x), train.labels[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach()) * len(idx)
            seen += len(idx)
        print(f"epoch {epoch + 1}/{args.epochs}: train loss {total / seen:.4f} ({time.perf_counter() - t0:.0f} s)", flush=True)
    seconds = time.perf_counter() - t0
    accuracy = evaluate(model, test)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save({k: v.contiguous() for k, v in model.state_dict().items()}, out)
    info = {
        "model": "fashion-mnist-vgg",
        "dataset": "Fashion-MNIST",
        "test_accuracy": round(accuracy, 4),
        "test_images": len(test),
        "train_images": n,
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "lr": args.lr,
        "seed": args.seed,
        "threads": args.threads,
        "train_seconds": round(seconds, 1),
        "torch": torch.__version__,
        "machine": platform.machine(),
        "command": "python scripts/train_fashion_mnist.py" + (f" --epochs {args.epochs}" if args.epochs != 2 else ""),
    }
    out.with_suffix(".json").write_text(json.dumps(info, indent=2) + "\n")
    print(f"test accuracy {accuracy:.4f} on {len(test)} images; wrote {out} and {out.with_suffix('.json')}")


if __name__ == "__main__":
    main()

"""Retrain the built-in model `builtin:synthetic-cnn` on the `synthetic` dataset, reproducibly on CPU.

Writes xaibench/models/builtin/synthetic-cnn.pt (state dict) and synthetic-cnn.json (classes,
mean/std, image size, measured test accuracy, this command). Usage: python scripts/train_builtin.py
"""

from __future__ import annotations

import argparse
import json
import platform
import shlex
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from xaibench.datasets.synthetic import VERSION, SyntheticShapes
from xaibench.models.builtin import HERE
from xaibench.models.builtin.net import SyntheticCNN


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--train-images", type=int, default=10000)
    p.add_argument("--val-images", type=int, default=500)
    p.add_argument(
        "--low-res-epochs", type=int, default=16, help="first epochs at --low-res pixels (progressive resizing)"
    )
    p.add_argument("--low-res", type=int, default=64)
    p.add_argument("--epochs", type=int, default=3, help="then epochs at the full 128x128")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1, help="torch threads (≤ 2 on a shared machine)")
    p.add_argument("--out", type=Path, default=HERE, help="folder for synthetic-cnn.pt/.json")
    p.add_argument("--init", type=Path, default=None, help="start from this state dict (fine-tuning) instead of random")
    p.add_argument("--no-augment", action="store_true", help="no flips, 90° rotations or channel permutations")
    return p.parse_args()


def augment(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Class-preserving augmentation, batched: random h/v flips, 90° rotations and colour-channel
    permutations (every shape class is closed under these, and colour carries no class)."""
    b = x.shape[0]
    flip_h = torch.rand(b, generator=g) < 0.5
    x = torch.where(flip_h.view(-1, 1, 1, 1), x.flip(-1), x)
    k = torch.randint(0, 4, (b,), generator=g)
    x = rot90_each(x, k)
    perm = torch.argsort(torch.rand(b, 3, generator=g), dim=1)
    return torch.gather(x, 1, perm.view(b, 3, 1, 1).expand_as(x))


def rot90_each(x: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """Rotate image i of the batch by k[i]·90° (one batched rot90 per k value)."""
    out = x.clone()
    for r in range(1, 4):
        sel = k == r
        if sel.any():
            out[sel] = x[sel].rot90(r, (-2, -1))
    return out


@torch.inference_mode()
def accuracy(model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor, mean, std) -> float:
    model.eval()
    correct = 0
    for i in range(0, len(images), 100):
        x = (images[i : i + 100].float() / 255 - mean) / std
        correct += int((model(x).argmax(1) == labels[i : i + 100]).sum())
    return correct / len(images)


def downsample(images: torch.Tensor, size: int) -> torch.Tensor:
    """uint8 (N,3,H,W) → uint8 (N,3,size,size), antialiased bilinear, in chunks."""
    out = [
        F.interpolate(c.float(), size=(size, size), mode="bilinear", antialias=True).round().clamp(0, 255).byte()
        for c in images.split(500)
    ]
    return torch.cat(out)


def as_tensors(ds: SyntheticShapes) -> tuple[torch.Tensor, torch.Tensor]:
    return ds.images.permute(0, 3, 1, 2).contiguous(), ds.labels


def earlier_stages(script: str, init: Path | None) -> tuple[list[str], float]:
    """This stage's command line and, when it fine-tunes `init`, the commands and training seconds of the
    stages recorded in init's JSON: (commands, earlier seconds)."""
    commands = ["python " + " ".join(shlex.quote(a) for a in [script, *sys.argv[1:]])]
    previous = init.with_suffix(".json") if init is not None else None  # the stage that produced init
    if previous is None or not previous.is_file():
        return commands, 0
    prev = json.loads(previous.read_text())
    return prev.get("commands", [prev["command"]]) + commands, prev.get("training_seconds_total",
                                                                        prev.get("training_seconds", 0))


def provenance(init: Path | None, train_seconds: float, earlier_seconds: float, threads: int,
               commands: list[str]) -> dict:
    """The tail of a checkpoint's JSON: init, dataset version, seconds, threads, versions, commands."""
    return dict(
        init=None if init is None else init.name,
        dataset_version=VERSION,
        training_seconds=round(train_seconds),
        training_seconds_total=round(train_seconds + earlier_seconds),
        threads=threads,
        torch=torch.__version__,
        machine=platform.machine(),
        command=" && ".join(commands),
        commands=commands,
    )


def main() -> None:
    args = parse()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    torch.use_deterministic_algorithms(True)
    start = time.time()
    train_x, train_y = as_tensors(
        SyntheticShapes(split="train", n_images=args.train_images, seed=args.seed, cache=False)
    )
    val_x, val_y = as_tensors(SyntheticShapes(split="val", n_images=args.val_images, seed=args.seed, cache=False))
    print(f"generated {len(train_x)} train + {len(val_x)} val images in {time.time() - start:.0f}s", flush=True)
    pixels = train_x.float().div(255)
    mean = pixels.mean((0, 2, 3)).view(1, 3, 1, 1)
    std = pixels.std((0, 2, 3)).view(1, 3, 1, 1)
    mean, std = torch.round(mean * 1e4) / 1e4, torch.round(std * 1e4) / 1e4
    del pixels

    model = SyntheticCNN(num_classes=SyntheticShapes.num_classes)
    commands, earlier_seconds = earlier_stages("scripts/train_builtin.py", args.init)
    if args.init is not None:
        model.load_state_dict(torch.load(args.init, map_location="cpu", weights_only=True))
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=5e-4)
    steps = (args.low_res_epochs + args.epochs) * (len(train_x) // args.batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=args.lr, total_steps=steps, pct_start=0.2)
    g = torch.Generator().manual_seed(args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    ckpt = args.out / "synthetic-cnn.pt"
    val_acc = 0.0
    low_x, low_val = (
        (downsample(train_x, args.low_res), downsample(val_x, args.low_res)) if args.low_res_epochs else (None, None)
    )
    total_epochs = args.low_res_epochs + args.epochs
    for epoch in range(total_epochs):
        model.train()
        images, val_images = (low_x, low_val) if epoch < args.low_res_epochs else (train_x, val_x)
        order = torch.randperm(len(train_x), generator=g)
        total, correct, loss_sum = 0, 0, 0.0
        for i in range(0, len(order) - args.batch_size + 1, args.batch_size):
            idx = order[i : i + args.batch_size]
            x = images[idx].float() / 255
            x = x if args.no_augment else augment(x, g)
            x, y = (x - mean) / std, train_y[idx]
            logits = model(x)
            loss = F.cross_entropy(logits, y, label_smoothing=0.05)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += len(y)
            correct += int((logits.argmax(1) == y).sum())
            loss_sum += float(loss.detach()) * len(y)
        val_acc = accuracy(model, val_images, val_y, mean, std)
        torch.save(model.state_dict(), ckpt)
        print(
            f"epoch {epoch + 1}/{total_epochs} ({images.shape[-1]}px): loss {loss_sum / total:.4f} train acc {correct / total:.4f} "
            f"val acc {val_acc:.4f} ({time.time() - start:.0f}s)",
            flush=True,
        )
    train_seconds = time.time() - start

    test = SyntheticShapes(split="test", seed=0)  # the benchmark's default data: 1000 test images
    test_x, test_y = as_tensors(test)
    test_acc = accuracy(model, test_x, test_y, mean, std)
    print(f"test accuracy {test_acc:.4f} on {len(test_x)} synthetic test images (seed 0)", flush=True)
    meta = dict(
        arch="synthetic-cnn",
        classes=list(SyntheticShapes.class_names),
        mean=[round(v, 4) for v in mean.flatten().tolist()],
        std=[round(v, 4) for v in std.flatten().tolist()],
        image_size=SyntheticShapes.image_size,
        widths=list(model.widths),
        strides=[1, 2, 2, 1],
        blocks=1,
        test_accuracy=round(test_acc, 4),
        test_images=len(test_x),
        val_accuracy=round(val_acc, 4),
        train_images=len(train_x),
        low_res_epochs=args.low_res_epochs,
        low_res=args.low_res,
        epochs=args.epochs,
        seed=args.seed,
        **provenance(args.init, train_seconds, earlier_seconds, args.threads, commands),
    )
    (args.out / "synthetic-cnn.json").write_text(json.dumps(meta, indent=2) + "\n")
    print(f"wrote {ckpt} ({ckpt.stat().st_size / 1e6:.2f} MB) and {args.out / 'synthetic-cnn.json'}")


if __name__ == "__main__":
    main()

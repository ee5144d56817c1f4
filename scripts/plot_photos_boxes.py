"""Draw the `photos` dataset with its annotated boxes and efficientnet_lite0's top-1 class, to check the boxes by eye.

Usage: python scripts/plot_photos_boxes.py [--out docs/figures/photos_boxes.png] [--original]
"""

from __future__ import annotations

import argparse

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from xaibench.datasets.photos import Photos  # noqa: E402
from xaibench.models.zoo import load_model  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="docs/figures/photos_boxes.png")
    ap.add_argument("--original", action="store_true", help="draw the original files (before resize and crop)")
    args = ap.parse_args()
    torch.set_num_threads(2)
    data = Photos()
    model = load_model("efficientnet_lite0")
    samples = [data[i] for i in range(len(data))]
    with torch.no_grad():
        probs = model(model.normalize(torch.stack([s.image for s in samples]))).softmax(-1)
    p, top1 = probs.max(-1)
    cols = 4
    rows = (len(samples) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 3.9 * rows))
    for i, (ax, s) in enumerate(zip(axes.flat, samples)):
        image, boxes = data.original(i) if args.original else (s.image, s.boxes)
        ax.imshow(image.permute(1, 2, 0).numpy())
        for x0, y0, x1, y1 in boxes.tolist():
            ax.add_patch(plt.Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, ec="red", lw=2))
        ok = int(top1[i]) in data.entries[i].get("accepted", [s.label])
        ax.set_title(
            f"{s.id}\nlabel: {data.class_names[s.label]}\nlite0: {model.class_names[int(top1[i])]} {float(p[i]):.2f}",
            fontsize=8,
            color="darkgreen" if ok else "darkred",
        )
        ax.axis("off")
    for ax in list(axes.flat)[len(samples) :]:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(args.out, dpi=56)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

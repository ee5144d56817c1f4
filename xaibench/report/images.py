"""Pictures inlined in a report: map overlays as small data URIs (JPEG or PNG, whichever is smaller)
with the ground truth outlined, and matplotlib figures as inline SVG.
"""

from __future__ import annotations

import base64
import io

import numpy as np
from PIL import Image

OUTLINE = np.array([0, 255, 0], dtype=np.uint8)  # ground-truth outline colour (lime, as in figures/)


def display(m: np.ndarray) -> np.ndarray:
    """A map scaled to [0,1] for display (NaN → 0; a constant map → 0)."""
    m = np.nan_to_num(m.astype(np.float32))
    lo, hi = float(m.min()), float(m.max())
    return (m - lo) / (hi - lo) if hi > lo else np.zeros_like(m)


def resize_map(m: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A 2-D map resampled (bilinear) to (h, w)."""
    if m.shape == size:
        return m
    return np.asarray(Image.fromarray(m.astype(np.float32), mode="F").resize(size[::-1], Image.BILINEAR))


def outline(mask: np.ndarray) -> np.ndarray:
    """The boundary pixels of a boolean mask (inside pixels with an outside 4-neighbour)."""
    m = np.pad(mask, 1, constant_values=False)
    inner = m[1:-1, 1:-1] & m[:-2, 1:-1] & m[2:, 1:-1] & m[1:-1, :-2] & m[1:-1, 2:]
    return mask & ~inner


def overlay(image: np.ndarray, saliency: np.ndarray | None, truth: np.ndarray | None = None,
            alpha: float = 0.5) -> np.ndarray:
    """(h,w,3) uint8: the map (scaled for display, jet colours) blended over the image, the
    ground-truth outline drawn on top; the image alone when `saliency` is None."""
    from matplotlib import colormaps

    out = image.astype(np.float32)
    if saliency is not None and np.isfinite(saliency).any():
        heat = colormaps["jet"](display(resize_map(saliency, image.shape[:2])))[..., :3] * 255
        out = (1 - alpha) * out + alpha * heat
    out = out.round().clip(0, 255).astype(np.uint8)
    if truth is not None and truth.any():
        out[outline(truth)] = OUTLINE
    return out


def data_uri(pixels: np.ndarray, quality: int = 85, png_colours: int = 4096) -> str:
    """An (h,w,3) uint8 image as a data URI: JPEG, or PNG when that encodes smaller. PNG is only tried
    for images of at most `png_colours` colours (flat synthetic images, outlines), where it can win;
    on a heat map or a photograph JPEG always does, and PNG would cost ten times the encoding time."""
    img = Image.fromarray(pixels)
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=quality)
    best, mime = buf.getvalue(), "image/jpeg"
    packed = pixels.reshape(-1, 3).astype(np.uint32) @ np.array([1 << 16, 1 << 8, 1], dtype=np.uint32)
    if len(np.unique(packed)) <= png_colours:
        buf = io.BytesIO()
        img.save(buf, format="PNG")
        if buf.tell() < len(best):
            best, mime = buf.getvalue(), "image/png"
    return f"data:{mime};base64,{base64.b64encode(best).decode()}"


def png_file_uri(data: bytes) -> str:
    """A PNG file's bytes as a data URI."""
    return f"data:image/png;base64,{base64.b64encode(data).decode()}"


def svg(fig) -> str:
    """A matplotlib figure as inline SVG markup (the figure is closed)."""
    import matplotlib.pyplot as plt

    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight")
    plt.close(fig)
    text = buf.getvalue()
    return text[text.index("<svg"):]


def curve_bands_svg(curves: dict[str, dict[str, np.ndarray]], kinds: tuple[str, ...] = ("deletion", "insertion")
                    ) -> str | None:
    """Mean deletion/insertion curves per explainer with a 95 % band (mean ± 1.96 standard errors
    over images), AUC in the legend, as SVG; None when the run has no such curves."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    present = [k for k in kinds if any(k in c for c in curves.values())]
    if not present:
        return None
    plt.rcParams["svg.fonttype"] = "none"  # text stays text: smaller, searchable
    fig, axes = plt.subplots(1, len(present), figsize=(5.2 * len(present), 3.8), squeeze=False)
    styles = ("-", "--", ":")
    for ax, kind in zip(axes[0], present):
        for i, (e, per) in enumerate(curves.items()):
            if kind not in per:
                continue
            c = per[kind][np.isfinite(per[kind]).all(1)]
            if not len(c):
                continue
            mean = c.mean(0)
            half = 1.96 * c.std(0, ddof=1) / np.sqrt(len(c)) if len(c) > 1 else np.zeros_like(mean)
            x = np.linspace(0, 1, len(mean))
            (line,) = ax.plot(x, mean, styles[(i // 10) % 3], lw=1.2, label=f"{e} ({np.trapezoid(mean, x):.3f})")
            ax.fill_between(x, mean - half, mean + half, color=line.get_color(), alpha=0.12, lw=0)
        better = "lower" if kind == "deletion" else "higher"
        ax.set_title(f"{kind} (AUC in legend; {better} is better)", fontsize=9)
        ax.set_xlabel("fraction of pixels " + ("removed" if kind == "deletion" else "inserted"), fontsize=8)
        ax.set_ylabel("score of the target class", fontsize=8)
        ax.legend(fontsize=6, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=3, frameon=False)
    return svg(fig)

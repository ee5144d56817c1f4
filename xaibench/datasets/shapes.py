"""Exact rasterization of the synthetic dataset's object classes and clutter distractors.

Every shape is a point-in-shape test evaluated at pixel centres (vectorized numpy), so a mask
pixel is set exactly where the shape covers the pixel centre — no anti-aliasing, no approximation.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

# Object classes, in label order. Each is defined in a unit frame (u, v) with the shape inside
# the unit disc, then placed with a similarity transform (centre, scale = radius in px, angle).
CLASS_NAMES: tuple[str, ...] = (
    "circle",
    "square",
    "triangle",
    "star",
    "cross",
    "ring",
    "hexagon",
    "crescent",
    "arrow",
    "heart",
)


def regular_polygon(n: int, radius: float = 1.0, phase: float = 0.0) -> np.ndarray:
    """Vertices (n,2) of a regular n-gon of circumradius `radius`."""
    t = phase + 2 * np.pi * np.arange(n) / n
    return np.stack([radius * np.cos(t), radius * np.sin(t)], axis=1)


def star_polygon(points: int = 5, outer: float = 1.0, inner: float = 0.42) -> np.ndarray:
    t = -np.pi / 2 + np.pi * np.arange(2 * points) / points
    r = np.where(np.arange(2 * points) % 2 == 0, outer, inner)
    return np.stack([r * np.cos(t), r * np.sin(t)], axis=1)


ARROW = np.array([[-0.95, -0.22], [0.15, -0.22], [0.15, -0.6], [0.95, 0.0], [0.15, 0.6], [0.15, 0.22], [-0.95, 0.22]])
TRIANGLE = regular_polygon(3, 1.0, -np.pi / 2)
HEXAGON = regular_polygon(6, 0.95)
STAR = star_polygon()


def inside_polygon(u: np.ndarray, v: np.ndarray, vertices: np.ndarray) -> np.ndarray:
    """Even-odd point-in-polygon test of the points (u, v) (any shape) against `vertices` (n,2)."""
    inside = np.zeros(np.broadcast(u, v).shape, dtype=bool)
    x0, y0 = vertices[:, 0], vertices[:, 1]
    x1, y1 = np.roll(x0, -1), np.roll(y0, -1)
    for a, b, c, d in zip(x0, y0, x1, y1):  # loop over the few edges; each step is a whole-grid op
        crosses = (b > v) != (d > v)
        with np.errstate(divide="ignore", invalid="ignore"):
            x_at = a + (v - b) * (c - a) / (d - b)
        inside ^= crosses & (u < x_at)
    return inside


def unit_shape(label: int, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Point-in-shape test of class `label` in the unit frame."""
    r2 = u * u + v * v
    name = CLASS_NAMES[label]
    if name == "circle":
        return r2 <= 0.9**2
    if name == "square":
        return (np.abs(u) <= 0.68) & (np.abs(v) <= 0.68)
    if name == "triangle":
        return inside_polygon(u, v, TRIANGLE)
    if name == "star":
        return inside_polygon(u, v, STAR)
    if name == "cross":
        return ((np.abs(u) <= 0.28) & (np.abs(v) <= 0.95)) | ((np.abs(v) <= 0.28) & (np.abs(u) <= 0.95))
    if name == "ring":
        return (r2 <= 0.95**2) & (r2 >= 0.55**2)
    if name == "hexagon":
        return inside_polygon(u, v, HEXAGON)
    if name == "crescent":
        return (r2 <= 0.95**2) & ((u - 0.5) ** 2 + v * v > 0.8**2)
    if name == "arrow":
        return inside_polygon(u, v, ARROW)
    if name == "heart":
        x, y = 1.15 * u, -1.15 * v + 0.1
        return (x * x + y * y - 1) ** 3 - x * x * y**3 <= 0
    raise ValueError(f"no shape for label {label}")


@lru_cache(maxsize=8)
def pixel_grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates (x = column, y = row) of a size×size image (read-only arrays)."""
    y, x = np.mgrid[0:size, 0:size].astype(np.float64)
    x.flags.writeable = False
    y.flags.writeable = False
    return x, y


def object_mask(label: int, size: int, cx: float, cy: float, scale: float, angle: float) -> np.ndarray:
    """(size,size) bool mask of class `label` centred at (cx, cy) px, radius `scale` px, rotated by `angle`."""
    x, y = pixel_grid(size)
    dx, dy = (x - cx) / scale, (y - cy) / scale
    c, s = np.cos(angle), np.sin(angle)
    u, v = c * dx + s * dy, -s * dx + c * dy  # inverse rotation into the unit frame
    return unit_shape(label, u, v)


def segment_distance(x: np.ndarray, y: np.ndarray, p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Distance of every point (x, y) to the segment p–q."""
    d = q - p
    t = np.clip(((x - p[0]) * d[0] + (y - p[1]) * d[1]) / max(float(d @ d), 1e-9), 0.0, 1.0)
    return np.hypot(x - p[0] - t * d[0], y - p[1] - t * d[1])


CLUTTER_KINDS: tuple[str, ...] = ("line", "zigzag", "dots", "arc")


def paint_window(mask: np.ndarray, lo: np.ndarray, hi: np.ndarray, inside) -> None:
    """OR into `mask` the test `inside(x, y)` evaluated only on the pixels of the box lo–hi (x, y)."""
    size = mask.shape[0]
    x0, y0 = (max(0, int(np.floor(c))) for c in lo)
    x1, y1 = (min(size, int(np.ceil(c)) + 1) for c in hi)
    if x0 >= x1 or y0 >= y1:
        return
    y, x = np.mgrid[y0:y1, x0:x1].astype(np.float64)
    mask[y0:y1, x0:x1] |= inside(x, y)


def clutter_mask(rng: np.random.Generator, size: int) -> np.ndarray:
    """A random non-class distractor: a thin line, a zigzag, a cluster of dots or an open thin arc."""
    mask = np.zeros((size, size), dtype=bool)
    kind = CLUTTER_KINDS[rng.integers(len(CLUTTER_KINDS))]
    width = rng.uniform(0.8, 1.8) * size / 128
    if kind in ("line", "zigzag"):
        p = rng.uniform(0, size, 2)
        if kind == "line":
            angle, length = rng.uniform(0, 2 * np.pi), rng.uniform(0.25, 0.6) * size
            points = [p, p + length * np.array([np.cos(angle), np.sin(angle)])]
        else:
            heading, step = rng.uniform(0, 2 * np.pi), rng.uniform(0.06, 0.12) * size
            points = [p]
            for i in range(int(rng.integers(3, 6))):
                turn = (1 if i % 2 == 0 else -1) * rng.uniform(0.6, 1.2)
                points.append(points[-1] + step * np.array([np.cos(heading + turn), np.sin(heading + turn)]))
        for a, b in zip(points[:-1], points[1:]):
            paint_window(
                mask,
                np.minimum(a, b) - width,
                np.maximum(a, b) + width,
                lambda x, y, a=a, b=b: segment_distance(x, y, a, b) <= width,
            )
        return mask
    if kind == "dots":
        n = int(rng.integers(3, 7))
        centre = rng.uniform(0.1, 0.9, 2) * size
        pts = centre + rng.normal(0, 0.06 * size, (n, 2))
        radii = rng.uniform(1.2, 2.5, n) * size / 128
        for (px, py), r in zip(pts, radii):
            paint_window(
                mask,
                np.array([px, py]) - r,
                np.array([px, py]) + r,
                lambda x, y, px=px, py=py, r=r: (x - px) ** 2 + (y - py) ** 2 <= r * r,
            )
        return mask
    # arc: a thin open circular arc (never closed, so it cannot read as a ring or crescent)
    centre = rng.uniform(0.1, 0.9, 2) * size
    radius = rng.uniform(0.08, 0.2) * size
    start, span = rng.uniform(0, 2 * np.pi), rng.uniform(0.5, 1.6) * np.pi / 2

    def on_arc(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        r = np.hypot(x - centre[0], y - centre[1])
        theta = np.mod(np.arctan2(y - centre[1], x - centre[0]) - start, 2 * np.pi)
        return (np.abs(r - radius) <= width) & (theta <= span)

    paint_window(mask, centre - radius - width, centre + radius + width, on_arc)
    return mask


def dilate(mask: np.ndarray, pixels: int) -> np.ndarray:
    """Binary dilation by a (2p+1)² square, by shifting (exact, no scipy needed)."""
    out = mask.copy()
    for axis in (0, 1):
        grown = out.copy()
        for shift in range(1, pixels + 1):
            fwd = np.zeros_like(out)
            bwd = np.zeros_like(out)
            if axis == 0:
                fwd[shift:] = out[:-shift]
                bwd[:-shift] = out[shift:]
            else:
                fwd[:, shift:] = out[:, :-shift]
                bwd[:, :-shift] = out[:, shift:]
            grown |= fwd | bwd
        out = grown
    return out

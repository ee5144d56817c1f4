"""Gaussian and Laplacian image pyramids (Burt & Adelson 1983), batched, on the input's device,
and the gradient preconditioners built on them (SEED_METHODS.md §5 step 2, paper eq. 8).
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import ConfigError

PyramidMode = Literal["laplacian", "gaussian", "both", "none"]
PYRAMID_MODES: tuple[str, ...] = ("laplacian", "gaussian", "both", "none")

# Burt & Adelson's 5-tap generating kernel with a = 0.375: [1, 4, 6, 4, 1] / 16.
_BINOMIAL5 = (1.0, 4.0, 6.0, 4.0, 1.0)


def _kernel1d(x: Tensor, taps: tuple[float, ...] | Tensor) -> Tensor:
    k = torch.as_tensor(taps, dtype=x.dtype, device=x.device)
    return k / k.sum()


def separable_conv(x: Tensor, kernel1d: Tensor) -> Tensor:
    """Per-channel 2-D convolution of (B,C,H,W) `x` with the outer product of a 1-D kernel,
    reflect padding (size kept)."""
    b, c, h, w = x.shape
    r = kernel1d.numel() // 2
    if r == 0:
        return x
    if r >= h or r >= w:
        raise ConfigError(f"a {2 * r + 1}-tap filter needs images larger than {r} px per side, got {h}x{w}")
    y = x.reshape(b * c, 1, h, w)
    y = F.conv2d(F.pad(y, (r, r, 0, 0), mode="reflect"), kernel1d.view(1, 1, 1, -1))
    y = F.conv2d(F.pad(y, (0, 0, r, r), mode="reflect"), kernel1d.view(1, 1, -1, 1))
    return y.reshape(b, c, h, w)


def reduce(x: Tensor) -> Tensor:
    """Burt–Adelson REDUCE: binomial blur, then keep every second row and column
    (H×W → ceil(H/2)×ceil(W/2))."""
    return separable_conv(x, _kernel1d(x, _BINOMIAL5))[..., ::2, ::2]


def expand(x: Tensor, size: tuple[int, int]) -> Tensor:
    """Burt–Adelson EXPAND to `size`: insert zeros between samples, then blur with 4× the
    binomial kernel (2× per axis), so a constant stays constant away from the borders."""
    b, c, h, w = x.shape
    up = x.new_zeros(b, c, 2 * h, 2 * w)
    up[..., ::2, ::2] = x
    up = up[..., : size[0], : size[1]]
    return separable_conv(up, 2 * _kernel1d(x, _BINOMIAL5))


def _check_levels(x: Tensor, levels: int) -> None:
    if levels < 1:
        raise ConfigError(f"pyramid levels must be >= 1, got {levels}")
    h, w = x.shape[-2:]
    filtered = [min(h, w)]  # sizes of the levels that get REDUCEd (all but the coarsest)
    while filtered[-1] >= 3:
        filtered.append((filtered[-1] + 1) // 2)
    most = len(filtered)  # the 5-tap filter needs >= 3 px, so at most this many levels
    if levels > most:
        raise ConfigError(f"{levels} pyramid levels are too many for {h}x{w} images (a level under 3 px "
                          f"would be filtered); use at most {most}")


def gaussian_pyramid(x: Tensor, levels: int) -> list[Tensor]:
    """[G_0 = x, G_1 = REDUCE(G_0), …, G_{K-1}], each (B,C,h_k,w_k)."""
    _check_levels(x, levels)
    out = [x]
    for _ in range(levels - 1):
        out.append(reduce(out[-1]))
    return out


def laplacian_pyramid(x: Tensor, levels: int) -> list[Tensor]:
    """Band-pass levels L_k = G_k − EXPAND(G_{k+1}) for k < K−1, and the low-pass residual
    L_{K−1} = G_{K−1} (Burt & Adelson 1983). `laplacian_reconstruct` inverts it exactly."""
    gauss = gaussian_pyramid(x, levels)
    bands = [g - expand(g_next, g.shape[-2:]) for g, g_next in zip(gauss[:-1], gauss[1:])]
    return bands + [gauss[-1]]


def laplacian_reconstruct(bands: list[Tensor]) -> Tensor:
    """Invert `laplacian_pyramid`: G_k = L_k + EXPAND(G_{k+1}), from the coarsest level up."""
    x = bands[-1]
    for band in reversed(bands[:-1]):
        x = band + expand(x, band.shape[-2:])
    return x


def expand_to(x: Tensor, size: tuple[int, int]) -> Tensor:
    """Repeated EXPAND of a pyramid level back to full `size` (each step doubles, then crops)."""
    sizes = [tuple(size)]
    while sizes[-1][0] > x.shape[-2] or sizes[-1][1] > x.shape[-1]:
        h, w = sizes[-1]
        sizes.append(((h + 1) // 2, (w + 1) // 2))
    for s in reversed(sizes[:-1]):
        x = expand(x, s)
    return x


def _std(x: Tensor) -> Tensor:
    return x.flatten(1).std(dim=1).view(-1, *([1] * (x.dim() - 1)))


def laplacian_normalize(g: Tensor, levels: int, eps: float = 1e-8) -> Tensor:
    """Divide each Laplacian band of `g` by its own per-image std and recombine (SEED_METHODS.md
    §5 step 2 `laplacian`): every band gets equal energy, which lifts the weak low frequencies."""
    bands = laplacian_pyramid(g, levels)
    return laplacian_reconstruct([band / (_std(band) + eps) for band in bands])


def gaussian_recombine(g: Tensor, levels: int) -> Tensor:
    """Σ_k EXPAND^k(G_k): the sum of the K Gaussian levels of `g`, each brought back to full size
    (SEED_METHODS.md §5 step 2 `gaussian`); low frequencies count K times, fine detail once."""
    size = tuple(g.shape[-2:])
    return sum(expand_to(level, size) for level in gaussian_pyramid(g, levels))


def precondition(g: Tensor, mode: str, levels: int = 4, eps: float = 1e-8) -> Tensor:
    """Reshape the spectrum of a (B,C,H,W) gradient: `laplacian`, `gaussian`, `both` (their sum,
    the paper's r(x) = Σ_k LP_k + GP_k, eq. 8) or `none` (Tao et al. 2017; SEED_METHODS.md §5)."""
    if mode == "none":
        return g
    if mode == "laplacian":
        return laplacian_normalize(g, levels, eps)
    if mode == "gaussian":
        return gaussian_recombine(g, levels)
    if mode == "both":
        return laplacian_normalize(g, levels, eps) + gaussian_recombine(g, levels)
    raise ConfigError(f"unknown pyramid mode '{mode}'. Valid: {', '.join(PYRAMID_MODES)}")

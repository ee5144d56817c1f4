"""Gaussian and Laplacian image pyramids (Burt & Adelson 1983), batched, on the input's device,
and the gradient preconditioners built on them (docs/methods.md §Pyramid activation maximization step 2, paper eq. 8).
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import ConfigError

PyramidMode = Literal["laplacian", "gaussian", "both", "none"]
PYRAMID_MODES: tuple[str, ...] = ("laplacian", "gaussian", "both", "none")

# Burt & Adelson's 5-tap generating kernel with a = 0.375: [1, 4, 6, 4, 1] / 16. Both operators
# below are written polyphase (strided slices, only the kept samples computed), which on CPU is
# several times faster than a depthwise conv2d with a 1×5 kernel and gives the same numbers.
_BINOMIAL5 = (1 / 16, 4 / 16, 6 / 16, 4 / 16, 1 / 16)


def _slice(dim: int, start: int, stop: int, step: int = 1) -> tuple:
    return (Ellipsis, slice(start, stop, step)) + (slice(None),) * (-1 - dim)


def _pad(x: Tensor, r: int, dim: int) -> Tensor:
    return F.pad(x, (r, r, 0, 0) if dim == -1 else (0, 0, r, r), mode="reflect")


def _reduce_axis(x: Tensor, dim: int) -> Tensor:
    """Binomial blur along `dim` (-1 or -2; reflect padding), keeping samples 0, 2, 4, …"""
    n_out = (x.shape[dim] + 1) // 2
    xp = _pad(x, 2, dim)
    return sum(tap * xp[_slice(dim, i, i + 2 * n_out - 1, 2)] for i, tap in enumerate(_BINOMIAL5))


def _expand_axis(x: Tensor, n: int, dim: int) -> Tensor:
    """Zero-insertion upsampling along `dim` to length `n`, filtered by 2× the binomial kernel:
    even outputs (x[m−1] + 6x[m] + x[m+1]) / 8, odd outputs (x[m] + x[m+1]) / 2 (x reflect-padded
    by one sample)."""
    m = x.shape[dim]
    xp = _pad(x, 1, dim)
    left, mid, right = xp[_slice(dim, 0, m)], xp[_slice(dim, 1, m + 1)], xp[_slice(dim, 2, m + 2)]
    even = (left + 6 * mid + right) / 8
    odd = (mid + right) / 2
    interleaved = torch.stack([even, odd], dim=dim).flatten(dim - 1, dim) if dim == -1 else \
        torch.stack([even, odd], dim=-2).flatten(-3, -2)  # (…, m, 2) → (…, 2m) along `dim`
    return interleaved[_slice(dim, 0, n)]


def reduce(x: Tensor) -> Tensor:
    """Burt–Adelson REDUCE of (B,C,H,W): binomial blur, then keep every second row and column
    (H×W → ceil(H/2)×ceil(W/2))."""
    return _reduce_axis(_reduce_axis(x, -1), -2)


def expand(x: Tensor, size: tuple[int, int]) -> Tensor:
    """Burt–Adelson EXPAND of (B,C,h,w) to `size` (each side 2h or 2h−1): zero insertion, then the
    binomial kernel ×4 (×2 per axis), so a constant stays exactly constant."""
    return _expand_axis(_expand_axis(x, size[1], -1), size[0], -2)


def max_levels(x: Tensor) -> int:
    """The most pyramid levels a (…,H,W) image allows: every level but the coarsest is REDUCEd by
    the 5-tap filter, which needs at least 3 px."""
    filtered = [min(x.shape[-2:])]  # sizes of the levels that get REDUCEd (all but the coarsest)
    while filtered[-1] >= 3:
        filtered.append((filtered[-1] + 1) // 2)
    return len(filtered)


def _check_levels(x: Tensor, levels: int) -> None:
    if levels < 1:
        raise ConfigError(f"pyramid levels must be >= 1, got {levels}")
    h, w = x.shape[-2:]
    most = max_levels(x)
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
    """Divide each Laplacian band of `g` by its own per-image std and recombine (docs/methods.md
    §Pyramid activation maximization step 5 `laplacian`; Tao et al. 2017 eq. 8): every band gets equal energy, which lifts the weak low frequencies."""
    bands = laplacian_pyramid(g, levels)
    return laplacian_reconstruct([band / (_std(band) + eps) for band in bands])


def gaussian_recombine(g: Tensor, levels: int) -> Tensor:
    """Σ_k EXPAND^k(G_k): the sum of the K Gaussian levels of `g`, each brought back to full size
    (docs/methods.md §Pyramid activation maximization step 2 `gaussian`); low frequencies count K times, fine detail once."""
    size = tuple(g.shape[-2:])
    return sum(expand_to(level, size) for level in gaussian_pyramid(g, levels))


def precondition(g: Tensor, mode: str, levels: int = 4, eps: float = 1e-8) -> Tensor:
    """Reshape the spectrum of a (B,C,H,W) gradient: `laplacian`, `gaussian`, `both` (their sum,
    the paper's r(x) = Σ_k LP_k + GP_k, eq. 8) or `none` (Tao et al. 2017; docs/methods.md §Pyramid activation maximization)."""
    if mode == "none":
        return g
    if mode == "laplacian":
        return laplacian_normalize(g, levels, eps)
    if mode == "gaussian":
        return gaussian_recombine(g, levels)
    if mode == "both":
        return laplacian_normalize(g, levels, eps) + gaussian_recombine(g, levels)
    raise ConfigError(f"unknown pyramid mode '{mode}'. Valid: {', '.join(PYRAMID_MODES)}")

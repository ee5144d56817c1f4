"""The spectral quality check of docs/methods.md §Pyramid activation maximization "Outputs": the share of an image's power that
lies below a cut-off frequency (pyramid preconditioning should raise it versus `none`).
"""

from __future__ import annotations

import torch
from torch import Tensor


def radial_frequency(h: int, w: int, device: torch.device | None = None) -> Tensor:
    """(H,W) |f| in cycles per pixel of each FFT bin (Nyquist = 0.5)."""
    fy = torch.fft.fftfreq(h, device=device).view(-1, 1)
    fx = torch.fft.fftfreq(w, device=device).view(1, -1)
    return torch.sqrt(fy**2 + fx**2)


def low_frequency_share(images: Tensor, cutoff: float = 0.25) -> Tensor:
    """(B,) share of the power of (B,C,H,W) images at radial frequency below `cutoff` × Nyquist,
    with each channel's mean removed (the DC term would otherwise dominate); power is summed over
    channels. A constant image has no power and gets NaN. (Van der Schaaf & van Hateren 1996's
    power spectrum, used as the numeric check of Tao et al. 2017; docs/methods.md §Pyramid activation maximization.)"""
    x = images.double()
    x = x - x.mean(dim=(-2, -1), keepdim=True)
    power = torch.fft.fft2(x).abs().pow(2).sum(1)  # (B,H,W)
    low = radial_frequency(*x.shape[-2:], device=x.device) < cutoff * 0.5
    total = power.flatten(1).sum(1)
    share = (power * low).flatten(1).sum(1) / total
    return torch.where(total > 0, share, torch.full_like(share, float("nan"))).float().cpu()

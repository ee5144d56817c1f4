"""Small image operations shared by explainers and metrics (blurred baselines and the like).

Batched, on the input's device, differentiable; no numpy round trips.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from .errors import ConfigError


def check_odd_kernel(kernel: int, key: str = "blur_kernel") -> None:
    """A plug-in's Gaussian kernel size, checked at construction (its bound >= 1 is the field's):
    `gaussian_blur` needs an odd number of taps."""
    if kernel % 2 == 0:
        raise ConfigError(f"{key} must be a positive odd number of pixels, got {kernel}")


def gaussian_kernel1d(kernel: int, sigma: float, device=None, dtype=torch.float32) -> Tensor:
    """Normalized 1-D Gaussian of `kernel` taps (torchvision's `gaussian_blur` kernel)."""
    half = (kernel - 1) * 0.5
    t = torch.linspace(-half, half, kernel, device=device, dtype=dtype)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    return k / k.sum()


def reflect_pad(x: Tensor, pad_h: int, pad_w: int) -> Tensor:
    """Reflect padding of (B,C,H,W) by (pad_h, pad_w) on each side; pads wider than the image
    reflect repeatedly (the mirror extension), so any kernel works on any image size."""
    while pad_h > 0 or pad_w > 0:
        step_h = min(pad_h, x.shape[-2] - 1)
        step_w = min(pad_w, x.shape[-1] - 1)
        if step_h <= 0 and step_w <= 0:  # a 1-pixel image: reflecting is replicating
            return F.pad(x, (pad_w, pad_w, pad_h, pad_h), mode="replicate")
        x = F.pad(x, (max(step_w, 0),) * 2 + (max(step_h, 0),) * 2, mode="reflect")
        pad_h -= max(step_h, 0)
        pad_w -= max(step_w, 0)
    return x


def gaussian_blur(x: Tensor, kernel: int, sigma: float) -> Tensor:
    """2-D Gaussian blur of a (B,C,H,W) or (C,H,W) batch, per channel, reflect padding (the
    `blur(x, k, s)` of docs/methods.md; same kernel as torchvision's `gaussian_blur`).
    Separable: one horizontal and one vertical depthwise convolution."""
    if int(kernel) != kernel or kernel < 1 or kernel % 2 == 0:
        raise ConfigError(f"blur kernel must be a positive odd integer, got {kernel}")
    if not sigma > 0:
        raise ConfigError(f"blur sigma must be > 0, got {sigma}")
    kernel = int(kernel)
    squeeze = x.dim() == 3
    if squeeze:
        x = x.unsqueeze(0)
    if x.dim() != 4:
        raise ConfigError(f"gaussian_blur needs (B,C,H,W) or (C,H,W) images, got shape {tuple(x.shape)}")
    if kernel == 1:
        return x.squeeze(0) if squeeze else x
    c = x.shape[1]
    dtype = x.dtype if x.is_floating_point() else torch.float32
    k = gaussian_kernel1d(kernel, float(sigma), device=x.device, dtype=dtype)
    pad = kernel // 2
    y = reflect_pad(x.to(dtype), pad, pad)
    y = F.conv2d(y, k.view(1, 1, 1, kernel).expand(c, 1, 1, kernel), groups=c)
    y = F.conv2d(y, k.view(1, 1, kernel, 1).expand(c, 1, kernel, 1), groups=c)
    return y.squeeze(0) if squeeze else y

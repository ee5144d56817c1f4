"""Gaussian blur: agreement with torchvision, mirror extension for wide kernels, constants kept."""

import pytest
import torch
import torchvision.transforms.functional as TF

from xaibench.errors import ConfigError
from xaibench.imageops import gaussian_blur


@pytest.mark.parametrize("kernel,sigma", [(3, 1.0), (11, 5.0), (51, 50.0)])
def test_gaussian_blur_matches_torchvision(kernel, sigma):
    torch.manual_seed(0)
    x = torch.randn(2, 3, 40, 36)
    ref = TF.gaussian_blur(x, [kernel, kernel], [sigma, sigma])
    assert torch.allclose(gaussian_blur(x, kernel, sigma), ref, atol=1e-5)
    assert torch.allclose(gaussian_blur(x[0], kernel, sigma), ref[0], atol=1e-5)


def test_gaussian_blur_wide_kernel_on_small_image_is_mirror_extension():
    torch.manual_seed(0)
    x = torch.randn(1, 2, 8, 8)
    # the mirror extension of period 2*(8-1): reflect-pad a tiled-reflected image, then crop
    big = torch.nn.functional.pad(x, (7, 7, 7, 7), mode="reflect")
    big = torch.nn.functional.pad(big, (7, 7, 7, 7), mode="reflect")
    ref = TF.gaussian_blur(big, [21, 21], [3.0, 3.0])[..., 14:22, 14:22]
    assert torch.allclose(gaussian_blur(x, 21, 3.0), ref, atol=1e-5)
    const = torch.full((1, 3, 5, 5), 0.7)
    assert torch.allclose(gaussian_blur(const, 51, 50.0), const, atol=1e-6)


def test_gaussian_blur_bad_parameters():
    with pytest.raises(ConfigError, match="odd"):
        gaussian_blur(torch.zeros(1, 1, 4, 4), 4, 1.0)
    with pytest.raises(ConfigError, match="sigma"):
        gaussian_blur(torch.zeros(1, 1, 4, 4), 3, 0.0)

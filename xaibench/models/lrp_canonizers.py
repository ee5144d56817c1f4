"""Zennit's canonizers for our LRP rule layers (models/lrp_rules.py): BatchNorm merged into the linear
layer whose output it reads, and torchvision's residual blocks with their addition under the Norm rule.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from .lrp_rules import stabilize


class _ResidualSum(torch.autograd.Function):
    """identity + branch, relevance split in proportion (Zennit's `Sum` with the Norm rule)."""

    @staticmethod
    def forward(ctx, identity: Tensor, branch: Tensor, stabilizer: float) -> Tensor:
        z = identity + branch
        ctx.stabilizer = stabilizer
        ctx.save_for_backward(identity, branch, z)
        return z

    @staticmethod
    def backward(ctx, rel: Tensor):
        identity, branch, z = ctx.saved_tensors
        s = rel / stabilize(z, ctx.stabilizer)
        return identity * s, branch * s, None


def residual_sum(identity: Tensor, branch: Tensor, stabilizer: float) -> Tensor:
    if torch.is_grad_enabled() and (identity.requires_grad or branch.requires_grad):
        return _ResidualSum.apply(identity, branch, stabilizer)
    return identity + branch


def basic_block_forward(block: nn.Module, stabilizer: float) -> Callable[[Tensor], Tensor]:
    """torchvision's BasicBlock with its residual addition under the Norm rule (Zennit's canonizer)."""

    def forward(x: Tensor) -> Tensor:
        out = block.relu(block.bn1(block.conv1(x)))
        out = block.bn2(block.conv2(out))
        identity = block.downsample(x) if block.downsample is not None else x
        return block.relu(residual_sum(identity, out, stabilizer))

    return forward


def bottleneck_forward(block: nn.Module, stabilizer: float) -> Callable[[Tensor], Tensor]:
    """torchvision's Bottleneck with its residual addition under the Norm rule (Zennit's canonizer)."""

    def forward(x: Tensor) -> Tensor:
        out = block.relu(block.bn1(block.conv1(x)))
        out = block.relu(block.bn2(block.conv2(out)))
        out = block.bn3(block.conv3(out))
        identity = block.downsample(x) if block.downsample is not None else x
        return block.relu(residual_sum(identity, out, stabilizer))

    return forward


def merge_batchnorm(linear: nn.Module, bn: nn.Module) -> tuple[Tensor, Tensor]:
    """(weight, bias) of `linear` with the eval-mode BatchNorm `bn` that reads its output merged
    in, computed as Zennit's MergeBatchNorm does."""
    weight = linear.weight.detach()
    bias = linear.bias.detach() if linear.bias is not None else torch.zeros(1, dtype=weight.dtype, device=weight.device)
    scale = bn.weight.detach() / (bn.running_var + bn.eps) ** 0.5
    transposed = isinstance(linear, nn.modules.conv._ConvTransposeNd)
    index = (None, slice(None), *((None,) * (weight.dim() - 2))) if transposed else \
        (slice(None), *((None,) * (weight.dim() - 1)))
    return weight * scale[index], (bias - bn.running_mean) * scale + bn.bias.detach()

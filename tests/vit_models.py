"""Small random-weight vision transformers shared by the token-layer tests (not a test file):
torchvision and timm ViTs, a DeiT with a distillation token, a ViT with register tokens and a
Swin, re-initialized so that attention is peaked and gradients vary by patch position."""

from __future__ import annotations

import math

import timm
import torch
import torchvision
from timm.models.vision_transformer import VisionTransformer

from xaibench.models.adapter import ModelAdapter


def sharpened(net: torch.nn.Module, seed: int = 0, head_gain: float = 1.0) -> torch.nn.Module:
    """Every Linear weight ~ N(0, gain²/fan_in) with a large gain on the attention's qkv (peaked
    attention: the class token reads few patches, so gradients differ by position) and LayerNorm
    affine parameters drawn around 1 / 0; torchvision's zero-initialized head gets weights too.
    `head_gain` scales the classifier, so gradients are well above pytorch-grad-cam's ε (1e-6 in
    Grad-CAM++'s α) and the oracle computes the formula, not its ε."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, m in net.named_modules():
            if isinstance(m, torch.nn.Linear):
                gain = 3.0 if "qkv" in name else head_gain if name.startswith(("head", "heads")) else 1.0
                m.weight.copy_(torch.randn(m.weight.shape, generator=g) * gain / math.sqrt(m.in_features))
                if m.bias is not None:
                    m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)
            elif isinstance(m, torch.nn.LayerNorm) and m.weight is not None:
                m.weight.copy_(1 + 0.3 * torch.randn(m.weight.shape, generator=g))
                m.bias.copy_(0.3 * torch.randn(m.bias.shape, generator=g))
            elif isinstance(m, torch.nn.MultiheadAttention):
                m.in_proj_weight.copy_(torch.randn(m.in_proj_weight.shape, generator=g) * 3.0 / math.sqrt(m.embed_dim))
        for name, p in net.named_parameters():
            if any(k in name for k in ("cls_token", "class_token", "dist_token", "reg_token", "pos_embed", "pos_embedding")):
                p.copy_(torch.randn(p.shape, generator=g) * 0.5)
    return net.eval()


def tv_vit() -> tuple[ModelAdapter, int, str]:
    """torchvision VisionTransformer, 96 px, patch 8: a 12×12 grid with a class token."""
    torch.manual_seed(0)
    net = torchvision.models.VisionTransformer(image_size=96, patch_size=8, num_layers=2, num_heads=2, hidden_dim=32,
                                               mlp_dim=64, num_classes=10)
    return ModelAdapter.wrap(sharpened(net), input_size=96, name="tv_vit"), 96, "encoder.layers.encoder_layer_1.ln_1"


def tv_vit_conv_stem() -> tuple[ModelAdapter, int, str]:
    """torchvision VisionTransformer with a convolutional stem (three 3×3 stride-2 convs + BatchNorm + ReLU,
    then a 1×1 conv; Xiao et al. 2021) in place of the patchify conv, 96 px: a 12×12 grid, class token."""
    from torchvision.models.vision_transformer import ConvStemConfig

    torch.manual_seed(0)
    stem = [ConvStemConfig(out_channels=c, kernel_size=3, stride=2) for c in (8, 16, 32)]
    net = torchvision.models.VisionTransformer(image_size=96, patch_size=8, num_layers=2, num_heads=2, hidden_dim=32,
                                               mlp_dim=64, num_classes=10, conv_stem_configs=stem)
    return ModelAdapter.wrap(sharpened(net).eval(), input_size=96, name="tv_vit_conv_stem"), 96, \
        "encoder.layers.encoder_layer_1.ln_1"


def timm_vit(reg_tokens: int = 0) -> tuple[ModelAdapter, int, str]:
    """timm VisionTransformer, 64 px, patch 8 (8×8 grid), a class token and `reg_tokens` registers."""
    torch.manual_seed(0)
    net = VisionTransformer(img_size=64, patch_size=8, embed_dim=32, depth=2, num_heads=2, num_classes=10,
                            reg_tokens=reg_tokens)
    return ModelAdapter.wrap(sharpened(net), input_size=64, name=f"timm_vit_reg{reg_tokens}"), 64, "blocks.1.norm1"


def deit_distilled() -> tuple[ModelAdapter, int, str]:
    """DeiT with class and distillation tokens (timm's deit_tiny_distilled_patch16_224, small), 112 px: 7×7."""
    torch.manual_seed(0)
    net = timm.create_model("deit_tiny_distilled_patch16_224", pretrained=False, img_size=112, embed_dim=32, depth=2,
                            num_heads=2, num_classes=10)
    return ModelAdapter.wrap(sharpened(net), input_size=112, name="deit_distilled"), 112, "blocks.1.norm1"


def swin(head_gain: float = 100.0) -> tuple[ModelAdapter, int, str]:
    """timm Swin-T shape, small: 224 px, patch 4, stages 56→28→14→7 (channels-last outputs)."""
    torch.manual_seed(0)
    net = timm.create_model("swin_tiny_patch4_window7_224", pretrained=False, embed_dim=24, depths=(1, 1, 2, 1),
                            num_heads=(1, 1, 1, 1), num_classes=10)
    return ModelAdapter.wrap(sharpened(net, head_gain=head_gain), input_size=224, name="swin"), 224, "layers.2"


def token_reshape(prefix: int, grid: tuple[int, int]):
    """pytorch-grad-cam's `reshape_transform` for (B, prefix + rows·cols, C) tokens, written for the oracle."""
    def reshape(t: torch.Tensor) -> torch.Tensor:
        return t[:, prefix:, :].reshape(t.shape[0], grid[0], grid[1], t.shape[2]).permute(0, 3, 1, 2)
    return reshape


def channels_last_reshape(t: torch.Tensor) -> torch.Tensor:
    """pytorch-grad-cam's `reshape_transform` for (B, H, W, C) outputs (Swin in timm ≥ 0.9)."""
    return t.permute(0, 3, 1, 2)

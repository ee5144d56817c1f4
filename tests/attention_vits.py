"""Small random-weight vision transformers for the attention-explainer tests (not a test file):
torchvision's VisionTransformer and timm's ViT (with register tokens) and DeiT (distillation token),
with weights drawn wide enough that attention is peaked and heads, blocks and classes differ."""

from __future__ import annotations

import torch
from torch import nn
from torchvision.models.vision_transformer import VisionTransformer

from xaibench.models.adapter import ModelAdapter

SIZE = 64  # 8×8 grid of 8-pixel patches


def sharpen(net: nn.Module, seed: int) -> nn.Module:
    """Redraw every weight but LayerNorms' (linear and conv weights N(0, (1.5/√fan_in)²), biases
    N(0, 0.1²), class/register/distillation tokens and position embeddings N(0, 1)): attention rows
    are peaked, not uniform, and the classifier is not torchvision's zero init."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.LayerNorm):
                continue
            for name, p in m.named_parameters(recurse=False):
                if name == "bias":
                    p.copy_(torch.randn(p.shape, generator=g) * 0.1)
                elif name == "weight" or name == "in_proj_weight":
                    p.copy_(torch.randn(p.shape, generator=g) * 1.5 / p[0].numel() ** 0.5)
                else:
                    p.copy_(torch.randn(p.shape, generator=g))
    return net.eval()


def torchvision_vit(layers: int = 3, seed: int = 0) -> ModelAdapter:
    torch.manual_seed(seed)
    net = VisionTransformer(image_size=SIZE, patch_size=8, num_layers=layers, num_heads=4, hidden_dim=48,
                            mlp_dim=96, num_classes=6)
    return ModelAdapter.wrap(sharpen(net, seed), input_size=SIZE, name="tv-vit")


def timm_vit(kind: str = "registers", layers: int = 3, seed: int = 0) -> ModelAdapter:
    """`registers`: timm ViT with a class token and 2 register tokens (3 prefix tokens);
    `deit`: DeiT with class and distillation tokens (2 prefix tokens)."""
    from timm.models.deit import VisionTransformerDistilled
    from timm.models.vision_transformer import VisionTransformer as TimmViT

    torch.manual_seed(seed)
    kw = dict(img_size=SIZE, patch_size=8, embed_dim=48, depth=layers, num_heads=4, num_classes=6, qkv_bias=True)
    net = VisionTransformerDistilled(**kw) if kind == "deit" else TimmViT(reg_tokens=2, **kw)
    return ModelAdapter.wrap(sharpen(net, seed), input_size=SIZE, name=f"timm-{kind}")


def images(n: int, seed: int = 1) -> torch.Tensor:
    return torch.randn(n, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(seed))

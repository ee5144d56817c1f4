"""The built-in vision transformer `builtin:synthetic-vit`: torchvision's VisionTransformer
(Dosovitskiy et al., ICLR 2021) in miniature (a convolutional stem optional), built from its JSON metadata.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from torchvision.models.vision_transformer import VisionTransformer

# The shipped dimensions (used when the JSON is absent): 8×8 patches of 16 px + a class token at 128 px.
DEFAULT_DIMS = dict(image_size=128, patch_size=16, num_layers=4, num_heads=3, hidden_dim=96, mlp_dim=384)


def synthetic_vit(meta: dict[str, Any]) -> VisionTransformer:
    """A torchvision `VisionTransformer` (class token, pre-norm encoder blocks, linear head; Dosovitskiy
    et al. 2021) with the dimensions in `meta` (image_size, patch_size, num_layers, num_heads,
    hidden_dim, mlp_dim), one output per entry of `meta["classes"]`, and `meta["conv_stem"]`: the
    channels of a convolutional stem (Xiao et al., "Early convolutions help transformers see better",
    NeurIPS 2021; torchvision's `conv_stem_configs`) in place of the patchify convolution, [] for none."""
    from torchvision.models.vision_transformer import ConvStemConfig, VisionTransformer  # lazily: CLI start-up

    dims = {k: int(meta.get(k, v)) for k, v in DEFAULT_DIMS.items()}
    stem = [ConvStemConfig(out_channels=int(c), kernel_size=3, stride=2) for c in meta.get("conv_stem") or []]
    if stem and 2 ** len(stem) != dims["patch_size"]:
        raise ValueError(f"a conv stem of {len(stem)} stride-2 convolutions makes {2 ** len(stem)}-px patches, "
                         f"not {dims['patch_size']}")
    return VisionTransformer(**dims, num_classes=len(meta["classes"]), conv_stem_configs=stem or None)

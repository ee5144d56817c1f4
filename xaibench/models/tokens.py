"""Token models (vision transformers): where the patch grid comes from and how many prefix tokens
(class, distillation, register) precede the patch tokens — read from the model, never guessed from √N.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor, nn

from ..errors import LayerError


@dataclass(frozen=True)
class PatchEmbedding:
    """The convolution that cuts the image into patches (kernel = stride): torchvision ViT's
    `conv_proj`, timm's `patch_embed.proj`, Swin's first conv, HF's `patch_embeddings.projection`."""

    name: str
    kernel: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, int]

    def grid(self, height: int, width: int) -> tuple[int, int]:
        """The patch grid (rows, columns) for an input of height × width."""
        rows = (height + 2 * self.padding[0] - self.kernel[0]) // self.stride[0] + 1
        cols = (width + 2 * self.padding[1] - self.kernel[1]) // self.stride[1] + 1
        return rows, cols


def _pair(v: int | tuple[int, ...]) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else (int(v[0]), int(v[1]))


def patch_embedding(module: nn.Module) -> PatchEmbedding | None:
    """The first Conv2d (in registration order) whose stride equals its kernel and is > 1 — a
    patchify stem — or None when the model has none (a CNN with an overlapping stem)."""
    for name, m in module.named_modules():
        if isinstance(m, nn.Conv2d):
            k, s = _pair(m.kernel_size), _pair(m.stride)
            if k == s and max(k) > 1:
                return PatchEmbedding(name, k, s, _pair(m.padding) if not isinstance(m.padding, str) else (0, 0))
    return None


def declared_prefix_tokens(module: nn.Module) -> int | None:
    """The prefix-token count the model declares: timm's `num_prefix_tokens` (class + distillation
    + registers), torchvision ViT's `class_token` (1); None when it declares none."""
    n = getattr(module, "num_prefix_tokens", None)
    if isinstance(n, int):
        return n
    if isinstance(getattr(module, "class_token", None), nn.Parameter):
        return 1
    return None


def prefix_tokens(module: nn.Module, tokens: int, grid: tuple[int, int], layer: str = "") -> int:
    """How many of `tokens` (a layer's N) precede the grid's patch tokens: N − rows·cols, checked
    against the count the model declares. A LayerError when the layer's tokens do not fit the grid
    (a pooled or merged layer: choose a block of the encoder)."""
    prefix = tokens - grid[0] * grid[1]
    declared = declared_prefix_tokens(module)
    if prefix < 0 or (declared is not None and prefix != declared):
        expected = f"{declared} prefix token(s) + " if declared is not None else ""
        raise LayerError(
            f"layer '{layer}' has {tokens} tokens, which does not fit the model's {grid[0]}×{grid[1]} patch grid "
            f"({expected}{grid[0] * grid[1]} patches); choose an encoder block whose output is (B, N, C) tokens"
        )
    return prefix


def tokens_to_grid(t: Tensor, grid: tuple[int, int], prefix: int) -> Tensor:
    """(B, prefix + rows·cols, C) tokens → (B, C, rows, cols) patch features (prefix tokens dropped)."""
    b, n, c = t.shape
    return t[:, prefix:].transpose(1, 2).reshape(b, c, grid[0], grid[1])

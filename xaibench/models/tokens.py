"""Token models (vision transformers): where the patch grid comes from and how many prefix tokens
(class, distillation, register) precede the patch tokens — read from the model, never guessed from √N.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ..errors import LayerError


@dataclass(frozen=True)
class PatchEmbedding:
    """The convolution that cuts the image into patches (kernel = stride): torchvision ViT's
    `conv_proj`, timm's `patch_embed.proj`, Swin's first conv, HF's `patch_embeddings.projection`;
    or the first convolution of a convolutional stem (torchvision's `conv_stem_configs`; Xiao et al.
    2021), the stem's further convolutions in `more` as (kernel, stride, padding)."""

    name: str
    kernel: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, int]
    more: tuple[tuple[tuple[int, int], tuple[int, int], tuple[int, int]], ...] = ()

    def grid(self, height: int, width: int) -> tuple[int, int]:
        """The patch grid (rows, columns) for an input of height × width."""
        rows, cols = height, width
        for kernel, stride, padding in ((self.kernel, self.stride, self.padding), *self.more):
            rows = (rows + 2 * padding[0] - kernel[0]) // stride[0] + 1
            cols = (cols + 2 * padding[1] - kernel[1]) // stride[1] + 1
        return rows, cols


def _pair(v: int | tuple[int, ...]) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else (int(v[0]), int(v[1]))


def patch_embedding(module: nn.Module) -> PatchEmbedding | None:
    """The first Conv2d (in registration order) whose stride equals its kernel and is > 1 — a
    patchify stem —, torchvision ViT's convolutional stem (a `conv_proj` Sequential: all its
    convolutions), or None when the model has none (a CNN with an overlapping stem)."""
    stem = getattr(module, "conv_proj", None)
    if isinstance(stem, nn.Sequential) and isinstance(getattr(module, "class_token", None), nn.Parameter):
        convs = [(n, m) for n, m in stem.named_modules() if isinstance(m, nn.Conv2d)]
        specs = [(_pair(m.kernel_size), _pair(m.stride), _pair(m.padding)) for _, m in convs]
        if specs and not any(isinstance(m.padding, str) for _, m in convs):
            return PatchEmbedding(f"conv_proj.{convs[0][0]}", *specs[0], more=tuple(specs[1:]))
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


def declares_channels_last(module: nn.Module) -> bool:
    """True when the model says its feature maps are (B,H,W,C): timm's `output_fmt` 'NHWC' (Swin)."""
    return str(getattr(module, "output_fmt", "")).upper().endswith("NHWC")


def stage_grids(grid: tuple[int, int], levels: int = 6) -> list[tuple[int, int]]:
    """The patch grid and the grids of hierarchical stages after it (each patch merging halves
    rows and columns, rounding up as Swin's padding does): [(r, c), (⌈r/2⌉, ⌈c/2⌉), …]."""
    out = [grid]
    for _ in range(levels - 1):
        r, c = out[-1]
        if r == 1 and c == 1:
            break
        out.append(((r + 1) // 2, (c + 1) // 2))
    return out


@dataclass(frozen=True)
class GridLayout:
    """How a token layer's output maps to a (B, C, rows, cols) feature map: `tokens` (B, prefix +
    rows·cols, C) or `channels_last` (B, rows, cols, C). `to_grid` is a view (gradients flow
    through it); `from_grid` builds the layer's own layout back (prefix tokens in front)."""

    kind: str  # "tokens" | "channels_last"
    grid: tuple[int, int]
    prefix: int = 0

    def to_grid(self, out: Tensor) -> Tensor:
        if self.kind == "tokens":
            return tokens_to_grid(out, self.grid, self.prefix)
        return out.permute(0, 3, 1, 2)

    def prefix_of(self, out: Tensor) -> Tensor | None:
        """The layer output's prefix tokens (B, prefix, C), or None when it has none."""
        return out[:, : self.prefix] if self.kind == "tokens" and self.prefix else None

    def from_grid(self, acts: Tensor, prefix: Tensor | None = None) -> Tensor:
        """(B, C, rows, cols) → the layer's layout; `prefix` (B, prefix, C) goes in front of the
        patch tokens (needed when the layout has prefix tokens)."""
        if self.kind == "channels_last":
            return acts.permute(0, 2, 3, 1).contiguous()
        patches = acts.flatten(2).transpose(1, 2)
        if not self.prefix:
            return patches.contiguous()
        if prefix is None or prefix.shape[:2] != (acts.shape[0], self.prefix):
            got = None if prefix is None else tuple(prefix.shape)
            raise ValueError(f"{self.prefix} prefix token(s) per image are needed to rebuild the tokens, got {got}")
        return torch.cat([prefix.to(patches.dtype), patches], dim=1)


def output_layout(module: nn.Module, patch: PatchEmbedding | None, shape: tuple[int, ...],
                  input_hw: tuple[int, int], layer: str = "") -> GridLayout | None:
    """The layout of a layer output of `shape` for an input of `input_hw`, or None for an NCHW
    map or any other output (left as it is). The grids are the patch embedding's for this input
    size and its halvings (hierarchical stages); never √N.

    - (B, N, C): tokens. N − rows·cols prefix tokens at the patch grid (checked against what the
      model declares), or exactly rows·cols at a stage grid; a LayerError when N fits no grid.
    - (B, d1, d2, d3): channels-last when (d1, d2) is a grid and (d2, d3) is not; NCHW when only
      (d2, d3) is one (or neither); when both are (C equals the grid's width) the model decides
      (timm's `output_fmt` 'NHWC'), else NCHW."""
    if len(shape) not in (3, 4):
        return None
    if patch is None:
        if len(shape) == 3:
            raise LayerError(f"layer '{layer}' outputs {tuple(shape)} tokens but the model has no patch embedding "
                             "(a convolution with kernel = stride) to place them on a grid; choose a (B,C,h,w) layer")
        return None
    grids = stage_grids(patch.grid(*input_hw))
    if len(shape) == 4:
        d1, d2, d3 = shape[1:]
        nhwc, nchw = (d1, d2) in grids, (d2, d3) in grids
        if nhwc and (not nchw or declares_channels_last(module)):
            return GridLayout("channels_last", (d1, d2))
        return None
    n = shape[1]
    declared = declared_prefix_tokens(module)
    rows, cols = grids[0]
    extra = n - rows * cols
    if (declared is None and 0 <= extra < rows * cols) or (declared is not None and extra == declared):
        return GridLayout("tokens", grids[0], extra)
    for g in grids[1:]:
        if n == g[0] * g[1]:
            return GridLayout("tokens", g, 0)
    prefix_tokens(module, n, grids[0], layer)  # raises its LayerError (tokens that fit no grid)
    raise LayerError(f"layer '{layer}' has {n} tokens, which fit neither the {rows}×{cols} patch grid nor a stage "
                     f"grid {grids[1:]}; choose an encoder block whose output is (B, N, C) tokens")

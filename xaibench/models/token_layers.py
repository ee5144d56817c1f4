"""Layer walks over token models (vision transformers): which layers are tokens on the patch grid,
the `auto` layer (the last encoder block's first norm; a hierarchical model's last norm) and the
encoder blocks the probes walk.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from torch import Tensor, nn

from ..errors import LayerError
from .tokens import GridLayout

if TYPE_CHECKING:
    from .adapter import ModelAdapter

_CONTAINERS = (nn.Sequential, nn.ModuleList, nn.ModuleDict)


@dataclass
class Traced:
    """One layer's output in execution order: its name, shape (without the batch), its layout
    (None: an NCHW map or no map) and whether the layer contains a convolution."""

    name: str
    shape: tuple[int, ...]
    layout: GridLayout | None
    has_conv: bool


def is_norm(m: nn.Module) -> bool:
    """A normalization layer: LayerNorm/GroupNorm, or a class named …Norm… (timm's RmsNorm, LayerNorm2d)."""
    return isinstance(m, (nn.LayerNorm, nn.GroupNorm)) or "norm" in type(m).__name__.lower()


def trace(model: ModelAdapter) -> list[Traced]:
    """Every layer's first output, in execution order, from one dry run at the model's input size
    (tokens that fit no grid, like a pooled head's, count as no map)."""
    seen: dict[str, Traced] = {}
    hooks = []
    for n, m in model.layers().items():
        conv = any(isinstance(s, nn.Conv2d) for s in m.modules())

        def hook(mod, inp, out, n=n, conv=conv):
            if n in seen or not isinstance(out, Tensor):
                return
            try:
                layout = model.layout(n, out, model.input_size)
            except LayerError:
                layout = None
            seen[n] = Traced(n, tuple(out.shape[1:]), layout, conv)
        hooks.append((m, hook))
    model.dry_run(hooks)
    return list(seen.values())


def is_token_model(traced: list[Traced]) -> bool:
    """True when a token layer (tokens or channels-last on the patch grid) runs after the last
    convolutional NCHW map with spatial size > 1 (the patch embedding of a vision transformer)."""
    last_conv = max((i for i, t in enumerate(traced) if t.has_conv and t.layout is None and len(t.shape) == 3
                     and t.shape[-1] * t.shape[-2] > 1), default=-1)
    last_grid = max((i for i, t in enumerate(traced) if t.layout is not None), default=-1)
    return last_grid > last_conv


def encoder_blocks(model: ModelAdapter, traced: list[Traced]) -> list[Traced]:
    """The token layers that are elements of a Sequential/ModuleList (the encoder blocks, Swin's
    stages), outermost only, in execution order."""
    modules = model.layers()
    blocks = []
    for t in traced:
        parent = t.name.rpartition(".")[0]
        if t.layout is not None and parent and isinstance(modules.get(parent), _CONTAINERS):
            blocks.append(t)
    names = {b.name for b in blocks}
    return [b for b in blocks if not any(b.name.startswith(f"{o}.") for o in names)]


def token_auto_layer(model: ModelAdapter, traced: list[Traced]) -> str:
    """`layer: auto` of a token model. Plain (ViT, DeiT: every token layer on the patch grid):
    the first norm of the last encoder block — timm's `blocks[-1].norm1`, torchvision's
    `encoder.layers[-1].ln_1` — the literature's choice: the final norm's patch tokens get no
    gradient when the class token is read out. Hierarchical (Swin: grids shrink): the last norm
    on a grid, the last stage's norm (`norm`)."""
    grid = [t for t in traced if t.layout is not None]
    modules = model.layers()
    patch_grid = grid[0].layout.grid
    if any(t.layout.grid != patch_grid for t in grid):
        norms = [t for t in grid if is_norm(modules[t.name])]
        return (norms or grid)[-1].name
    blocks = encoder_blocks(model, traced)
    if not blocks:
        raise LayerError(f"model '{model.name}' is a token model but no encoder block (an element of a Sequential "
                         "or ModuleList with token output) was found: name a `layer` explicitly (xai list layers)")
    last = blocks[-1].name
    inside = [t for t in grid if t.name.startswith(f"{last}.") and is_norm(modules[t.name])]
    return inside[0].name if inside else last

"""Layer walks over a model: the default layer of layer-based explainers (the last conv block),
every conv block's output or every convolution's output, and the last layer of each resolution
stage marked C1…Cn (the probes).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from torch import Tensor, nn

from ..errors import ConfigError, LayerError
from .token_layers import encoder_blocks, is_token_model, token_auto_layer, trace

if TYPE_CHECKING:
    from .adapter import ModelAdapter

# Modules that keep a conv's output shape and are part of its block (conv → norm → activation).
_ELEMENTWISE = (
    nn.modules.batchnorm._BatchNorm,
    nn.GroupNorm,
    nn.LocalResponseNorm,
    nn.ReLU,
    nn.ReLU6,
    nn.LeakyReLU,
    nn.PReLU,
    nn.ELU,
    nn.SELU,
    nn.CELU,
    nn.GELU,
    nn.SiLU,
    nn.Hardswish,
    nn.Hardtanh,
    nn.Mish,
    nn.Sigmoid,
    nn.Tanh,
    nn.Dropout,
    nn.Dropout2d,
    nn.Identity,
)
_CONTAINERS = (nn.Sequential, nn.ModuleList, nn.ModuleDict)


@dataclass
class BlockLayer:
    """A conv block output: its layer name, output shape (C,h,w) and stage mark ("C3" or "")."""

    name: str
    channels: int
    height: int
    width: int
    stage: str = ""


def _has_conv(m: nn.Module) -> bool:
    return any(isinstance(s, nn.Conv2d) for s in m.modules())


def last_conv_block(model: ModelAdapter) -> str:
    """The default layer: the outermost module containing a convolution whose 4-D output with
    spatial size > 1 is produced last (`layer4` of a ResNet, `features` of VGG/DenseNet/
    EfficientNet); for a token model (a vision transformer) `token_layers.token_auto_layer` (the
    last encoder block's first norm; Swin: the last stage's norm). A LayerError for a model with
    token layers but no patch embedding to place them on a grid."""
    traced = trace(model)
    if is_token_model(traced):
        return token_auto_layer(model, traced)
    order: list[str] = []
    tokens: list[tuple[str, int]] = []  # (layer, position in `order`) of weighted layers with (B,N,D) outputs
    hooks = []
    for n, m in model.layers().items():
        if _has_conv(m):
            def hook(mod, inp, out, n=n):
                if isinstance(out, Tensor) and out.dim() == 4 and out.shape[-1] * out.shape[-2] > 1:
                    order.append(n)
            hooks.append((m, hook))
        elif isinstance(m, nn.Linear):
            def token_hook(mod, inp, out, n=n):
                if isinstance(out, Tensor) and out.dim() == 3 and out.shape[1] > 1:
                    tokens.append((n, len(order)))
            hooks.append((m, token_hook))
    model.dry_run(hooks)
    after = [n for n, pos in tokens if pos == len(order)]  # token layers after the last conv block
    if after:
        raise LayerError(
            f"model '{model.name}' works on (B,N,D) tokens after its last convolution "
            f"{('(' + order[-1] + ') ') if order else ''}(e.g. '{after[-1]}'), but it has no patch embedding (a "
            "convolution with kernel = stride) whose grid the tokens fit, so no token layer can be a map; use a "
            "layer-free explainer: saliency, inputxgrad, integrated_gradients, smoothgrad, vargrad, occlusion, rise"
        )
    if not order:
        raise LayerError(f"model '{model.name}' has no convolutional layer: name a `layer` explicitly")
    return order[-1]


def _candidate_names(root: nn.Module) -> list[str]:
    """Block outputs by structure: a plain container is opened; a bare conv extends over the
    shape-keeping siblings that follow it (VGG's conv → ReLU gives the ReLU); any other module
    holding a conv (a ResNet BasicBlock, an MBConv, a Conv2dNormActivation) is one block."""
    out: list[str] = []

    def visit(module: nn.Module, prefix: str) -> None:
        children = list(module.named_children())
        i = 0
        while i < len(children):
            name, child = children[i]
            full = f"{prefix}{name}"
            if not _has_conv(child):
                i += 1
                continue
            if isinstance(child, nn.Conv2d):
                last = full
                j = i + 1
                while j < len(children) and isinstance(children[j][1], _ELEMENTWISE):
                    last = f"{prefix}{children[j][0]}"
                    j += 1
                out.append(last)
                i = j
                continue
            if type(child) in _CONTAINERS:
                visit(child, f"{full}.")
            else:
                out.append(full)
            i += 1

    visit(root, "")
    return out


def _traced(model: ModelAdapter, names: list[str]) -> list[BlockLayer]:
    """The (C,h,w) output of each named module in execution order (a module run twice is listed
    at its first run), with the last layer of each resolution stage (consecutive layers with the
    same spatial size) marked C1, C2, … (Chen, Cong & Huang 2021, §3.4 and Table 1)."""
    modules = model.layers()
    seen: dict[str, tuple[int, ...]] = {}
    hooks = []
    for n in names:
        def hook(mod, inp, out, n=n):
            if isinstance(out, Tensor) and out.dim() == 4 and n not in seen:
                seen[n] = tuple(out.shape[1:])
        hooks.append((modules[n], hook))
    model.dry_run(hooks)
    if not seen:
        raise LayerError(f"model '{model.name}' has no convolutional layer: name the `layers` explicitly")
    return mark_stages([BlockLayer(n, *shape) for n, shape in seen.items()])  # dict order = execution order


def mark_stages(blocks: list[BlockLayer]) -> list[BlockLayer]:
    """Mark the last layer of each resolution stage (consecutive layers with the same spatial size) C1, C2, …"""
    stage = 0
    for i, b in enumerate(blocks):
        nxt = blocks[i + 1] if i + 1 < len(blocks) else None
        if nxt is None or (nxt.height, nxt.width) != (b.height, b.width):
            stage += 1
            b.stage = f"C{stage}"
    return blocks


def conv_block_layers(model: ModelAdapter) -> list[BlockLayer]:
    """Every conv block output in execution order, with the last block of each resolution stage
    marked C1, C2, … (Chen, Cong & Huang 2021, §3.4); for a token model its encoder blocks (Swin:
    its stages) as (C,h,w) maps of their grid, marked the same way."""
    traced = trace(model)
    if is_token_model(traced):
        blocks = [BlockLayer(t.name, t.shape[-1], *t.layout.grid) for t in encoder_blocks(model, traced)]
        return mark_stages(blocks)
    return _traced(model, _candidate_names(model.module))


def conv_layers(model: ModelAdapter) -> list[BlockLayer]:
    """Every Conv2d module's own output in execution order (a ResNet's `layer1.1.conv1`,
    `layer1.1.conv2`, its downsample convs), stage-marked like the blocks: the granularity of the
    per-layer purity figures of Chen, Cong & Huang 2021 (Fig. 3, Fig. 4)."""
    return _traced(model, [n for n, m in model.layers().items() if isinstance(m, nn.Conv2d)])


def select_layers(model: ModelAdapter, layers: str | list[str]) -> list[BlockLayer]:
    """`auto` (or `blocks`) = every conv block, `convs` = every convolution, `stages` = the C-marked
    blocks only, or a list of layer names (a listed name that is also a stage block keeps its
    mark)."""
    if isinstance(layers, str) and layers in ("auto", "blocks", "stages", "convs"):
        if layers == "convs":
            return conv_layers(model)
        blocks = conv_block_layers(model)
        return [b for b in blocks if b.stage] if layers == "stages" else blocks
    names = [layers] if isinstance(layers, str) else list(layers)
    if not names:
        raise ConfigError("layers: give 'auto', 'blocks', 'convs', 'stages' or a non-empty list of layer names")
    names = [model.resolve_layer(n) for n in names]
    try:
        marks = {b.name: b.stage for b in conv_block_layers(model)}
    except LayerError:
        marks = {}
    shapes: dict[str, tuple[int, ...]] = {}
    modules = model.layers()
    hooks = []
    for n in dict.fromkeys(names):
        def hook(mod, inp, out, n=n):
            if isinstance(out, Tensor) and n not in shapes:
                layout = model.layout(n, out, model.input_size)  # a token layer: its (C,h,w) map
                shapes[n] = tuple((out if layout is None else layout.to_grid(out)).shape[1:])
        hooks.append((modules[n], hook))
    model.dry_run(hooks)
    out = []
    for n in names:
        shape = shapes.get(n)
        if shape is None or len(shape) != 3:
            raise LayerError(f"layer '{n}' does not output a (B,C,h,w) feature map or tokens on the patch grid "
                             f"(got {shape}); choose a conv layer or an encoder block")
        out.append(BlockLayer(n, *shape, stage=marks.get(n, "")))
    return out

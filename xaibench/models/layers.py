"""Layer walks over a model: the default layer of layer-based explainers (the last conv block),
every conv block's output and the last block of each resolution stage marked C1…Cn (the probes).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from torch import Tensor, nn

from ..errors import ConfigError, LayerError

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
    """The outermost module containing a convolution whose 4-D output with spatial size > 1 is
    produced last: `layer4` of a ResNet, `features` of VGG/DenseNet/EfficientNet. A LayerError
    for a token model (a vision transformer: layers with weights turn (B,N,D) tokens after it)."""
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
            f"model '{model.name}' is a token model (a vision transformer): after its last convolution "
            f"{('(' + order[-1] + ') ') if order else ''}its layers (e.g. '{after[-1]}') work on (B,N,D) tokens. "
            "CAMs on token layers are not supported yet (they need a token-to-grid reshape); use a layer-free "
            "explainer: saliency, inputxgrad, integrated_gradients, smoothgrad, vargrad, occlusion, rise"
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


def conv_block_layers(model: ModelAdapter) -> list[BlockLayer]:
    """Every conv block output in execution order, with the last block of each resolution stage
    (consecutive blocks with the same spatial size) marked C1, C2, … (Chen et al. 2021, §3)."""
    names = _candidate_names(model.module)
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
        raise LayerError(f"model '{model.name}' has no convolutional block: name the `layers` explicitly")
    blocks = [BlockLayer(n, *shape) for n, shape in seen.items()]  # dict order = execution order
    stage = 0
    for i, b in enumerate(blocks):
        nxt = blocks[i + 1] if i + 1 < len(blocks) else None
        if nxt is None or (nxt.height, nxt.width) != (b.height, b.width):
            stage += 1
            b.stage = f"C{stage}"
    return blocks


def select_layers(model: ModelAdapter, layers: str | list[str]) -> list[BlockLayer]:
    """`auto` = every conv block, `stages` = the C-marked blocks only, or a list of layer names
    (a listed name that is also a stage block keeps its mark)."""
    if isinstance(layers, str) and layers in ("auto", "stages"):
        blocks = conv_block_layers(model)
        return blocks if layers == "auto" else [b for b in blocks if b.stage]
    names = [layers] if isinstance(layers, str) else list(layers)
    if not names:
        raise ConfigError("layers: give 'auto', 'stages' or a non-empty list of layer names")
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
                shapes[n] = tuple(out.shape[1:])
        hooks.append((modules[n], hook))
    model.dry_run(hooks)
    out = []
    for n in names:
        shape = shapes.get(n)
        if shape is None or len(shape) != 3:
            raise LayerError(f"layer '{n}' does not output a (B,C,h,w) feature map (got {shape}); choose a conv layer")
        out.append(BlockLayer(n, *shape, stage=marks.get(n, "")))
    return out

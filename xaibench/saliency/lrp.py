"""Layer-wise relevance propagation: LRP, contrastive LRP and Relevance-CAM, plus the relevance at an
intermediate layer that CF-CAM reuses. Zennit's composites and canonizers, computed by our own rule
layers (models/lrp_rules.py) that are swapped in around each call; Zennit is the tests' oracle.
"""

from __future__ import annotations

import contextlib
import weakref
from dataclasses import dataclass
from dataclasses import field as dc_field
from typing import ClassVar, Literal

import torch
from torch import Tensor, nn

from ..errors import ConfigError, ModelError
from ..models import lrp_canonizers as canonizers
from ..models import lrp_rules as rules
from ..models.adapter import ModelAdapter
from ..models.attention import has_self_attention
from ..models.fused import state_key
from ..registry import param
from ..tensorops import assemble_cam
from .base import EXPLAINERS, LAYER_HELP, REDUCE_HELP, Explainer, Reduce
from .gradient import InputAttribution

CompositeName = Literal[
    "epsilon_plus_flat", "epsilon_plus", "epsilon_alpha2_beta1", "epsilon_alpha2_beta1_flat", "epsilon_gamma_box",
    "epsilon",
]
CanonizerName = Literal["auto", "none", "merge_batchnorm", "resnet"]
OutputRelevance = Literal["logit", "one"]
COMPOSITE_HELP = "Zennit rule composite: ε for dense layers, z⁺ / α2β1 / γ for convolutions, flat or box first layer"
CANONIZER_HELP = "model canonizer: auto (resnet for torchvision ResNets, else merge_batchnorm), none, merge_batchnorm, resnet"
EPSILON_HELP = "stabilizer ε of the epsilon rule"


_TRACED_PAIRS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def batchnorm_pairs(model: ModelAdapter, x: Tensor) -> list[tuple[tuple[str], str]]:
    """(linear layer, BatchNorm) name pairs where the BatchNorm's input *is* the linear layer's
    output tensor, found by tracing one forward of one image (cached per model). Zennit's
    SequentialMergeBatchNorm pairs by module order instead, which is wrong for DenseNet (a
    dense layer's conv is followed in module order by the next layer's BatchNorm, which reads
    the concatenation); tracing the data flow is exact for any model."""
    from zennit.types import BatchNorm as BatchNormTypes
    from zennit.types import Linear as LinearTypes

    net = model.module
    if net in _TRACED_PAIRS:
        return _TRACED_PAIRS[net]
    names = {m: n for n, m in net.named_modules()}
    produced: dict[int, tuple[str, Tensor]] = {}
    pairs: list[tuple[tuple[str], str]] = []

    def linear_hook(mod, inp, out):
        produced[id(out)] = (names[mod], out)  # the tensor is kept, so its id is not reused

    def batchnorm_hook(mod, inp, out):
        hit = produced.get(id(inp[0]))
        if hit is not None and hit[1] is inp[0]:
            pairs.append(((hit[0],), names[mod]))

    handles = []
    for m in net.modules():
        if isinstance(m, LinearTypes):
            handles.append(m.register_forward_hook(linear_hook))
        elif isinstance(m, BatchNormTypes):
            handles.append(m.register_forward_hook(batchnorm_hook))
    try:
        with torch.no_grad():
            net(x[:1].detach())
    finally:
        for h in handles:
            h.remove()
    _TRACED_PAIRS[net] = pairs
    return pairs


RULES_BY_COMPOSITE = {  # composite: (first linear layer's rule, convolutions' rule); dense layers: ε
    "epsilon_plus_flat": ("flat", "zplus"), "epsilon_plus": (None, "zplus"),
    "epsilon_alpha2_beta1": (None, "alpha_beta"), "epsilon_alpha2_beta1_flat": ("flat", "alpha_beta"),
    "epsilon_gamma_box": ("zbox", "gamma"), "epsilon": (None, "epsilon"),
}


@dataclass
class Composite:
    """Which LRP rule each layer of a model gets (Zennit's composites by name; Montavon et al. 2019,
    "Layer-wise relevance propagation: an overview"): ε for dense layers and z⁺ / α2β1 / γ for
    convolutions, the flat rule or the z^B box rule (bounds: pixel values 0 and 1, normalized) for
    the first layer, `epsilon` the ε rule everywhere; activations and BatchNorm pass relevance on,
    average pooling and residual sums normalize it. `canonizer`: `merge_batchnorm` merges every
    BatchNorm that reads a linear layer's output into it (pairs found by tracing), `resnet` that
    plus torchvision's residual blocks, whose addition gets its own rule, `none`."""

    name: str
    epsilon: float = 1e-6
    gamma: float = 0.25
    canonizer: str = "merge_batchnorm"
    pairs: list = dc_field(default_factory=list)
    low: Tensor | None = None
    high: Tensor | None = None
    stabilizer: float = 1e-6

    def rule(self, kind: str) -> rules.Rule:
        eps = self.stabilizer
        return {"flat": lambda: rules.Flat(eps), "zplus": lambda: rules.ZPlus(eps),
                "alpha_beta": lambda: rules.AlphaBeta(2.0, 1.0, eps), "gamma": lambda: rules.Gamma(self.gamma, eps),
                "zbox": lambda: rules.ZBox(self.low, self.high, eps), "epsilon": lambda: rules.Epsilon(self.epsilon)}[kind]()

    def forwards(self, root: nn.Module) -> dict[nn.Module, object]:
        """Every module that gets a rule → its RuleLayer; residual blocks → their canonical forward."""
        from torchvision.models.resnet import BasicBlock, Bottleneck
        from zennit import types as zt

        modules = dict(root.named_modules())
        merged_into = {}  # linear module → its BatchNorm
        for linears, bn_name in self.pairs:
            bn = modules[bn_name]
            if getattr(bn, "running_mean", None) is not None:
                merged_into.setdefault(modules[linears[0]], bn)
        merged_bns = set(merged_into.values())
        first, conv_rule = RULES_BY_COMPOSITE[self.name]
        first_types = zt.Convolution if first == "zbox" else zt.Linear
        out: dict[nn.Module, object] = {}
        for m in modules.values():
            if isinstance(m, (zt.Activation, zt.BatchNorm)):
                out[m] = rules.RuleLayer(m, rules.Pass(), merged_bn=m in merged_bns)
            elif isinstance(m, zt.AvgPool):
                out[m] = rules.RuleLayer(m, rules.Norm(self.stabilizer))
            elif isinstance(m, (zt.Convolution, nn.Linear)) or (first and isinstance(m, first_types)):
                if first and isinstance(m, first_types):
                    kind, first = first, None
                else:
                    kind = conv_rule if isinstance(m, zt.Convolution) else "epsilon"
                weight, bias = (canonizers.merge_batchnorm(m, merged_into[m]) if m in merged_into
                                else (m.weight.detach(), m.bias.detach() if m.bias is not None else None))
                out[m] = rules.RuleLayer(m, self.rule(kind), weight=weight, bias=bias)
        if self.canonizer == "resnet":
            for m in modules.values():
                if isinstance(m, Bottleneck):
                    out[m] = canonizers.bottleneck_forward(m, self.stabilizer)
                elif isinstance(m, BasicBlock):
                    out[m] = canonizers.basic_block_forward(m, self.stabilizer)
        return out

    def key(self) -> tuple:
        bounds = tuple((tuple(t.shape), float(t.sum())) for t in (self.low, self.high) if t is not None)
        return (self.name, self.epsilon, self.gamma, self.canonizer, tuple(map(tuple, self.pairs)), self.stabilizer,
                bounds)

    def context(self, model: ModelAdapter):
        """Inside the block the model's forward computes relevance by these rules in its backward.
        The rule layers (merged and clamped weights) are kept for the model's last composite and
        reused while its parameters are unchanged (models/fused.py's fingerprint)."""
        root = model.module
        key = (self.key(), state_key(root))
        kept = _PREPARED.get(root)
        if kept is None or kept[0] != key:
            if has_self_attention(root):  # checked when the rule layers are made, not at every call
                raise ModelError(LRP_ON_ATTENTION)
            kept = _PREPARED[root] = (key, self.forwards(root))
        return rules.relevance_rules(kept[1])


_PREPARED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # module → (key, forwards)


def resolve_canonizer(model: ModelAdapter, kind: str) -> str:
    """`auto` → `resnet` when the model has torchvision Bottleneck/BasicBlock modules, else
    `merge_batchnorm`."""
    from torchvision.models.resnet import BasicBlock, Bottleneck

    if kind == "auto":
        return "resnet" if any(isinstance(m, (BasicBlock, Bottleneck)) for m in model.module.modules()) \
            else "merge_batchnorm"
    if kind not in ("resnet", "merge_batchnorm", "none"):
        raise ConfigError(f"unknown canonizer '{kind}'. Valid: auto, none, merge_batchnorm, resnet")
    return kind


def make_composite(name: str, model: ModelAdapter, x: Tensor, epsilon: float, gamma: float, canonizer: str) -> Composite:
    """The composite `name` for `model` (see Composite), its BatchNorm pairs traced on `x`."""
    if name not in RULES_BY_COMPOSITE:
        raise ConfigError(f"unknown LRP composite '{name}'. Valid: {', '.join(CompositeName.__args__)}")
    kind = resolve_canonizer(model, canonizer)
    pairs = batchnorm_pairs(model, x) if kind != "none" else []
    low = high = None
    if name == "epsilon_gamma_box":
        low, high = model.normalize(torch.zeros_like(x[:1])), model.normalize(torch.ones_like(x[:1]))
    return Composite(name, epsilon, gamma, kind, pairs, low, high)


def output_relevance(logits: Tensor, target: Tensor, contrastive: bool, scale: str) -> Tensor:
    """(B,K) relevance put on the logits. Plain: the target's logit (`scale=logit`) or 1.
    Contrastive (CLRP, Gu et al., ACCV 2018): target 1 minus the dual, all other classes
    weighted equally (1/(K−1) each). LRP is linear in this vector (every rule's backward is), so
    R_c − R_dual is one backward pass of their difference — exact."""
    onehot = torch.zeros_like(logits).scatter_(1, target.view(-1, 1), 1.0)
    if contrastive:
        k = logits.shape[1]
        if k < 2:
            raise ModelError("contrastive LRP needs a model with at least two classes")
        return onehot - (1 - onehot) / (k - 1)
    return onehot * logits.detach() if scale == "logit" else onehot


LRP_ON_ATTENTION = (
    "LRP composites (and CLRP, Relevance-CAM and CF-CAM, which use them) have rules for convolutions, dense "
    "layers and BatchNorm only, not for self-attention, LayerNorm and GELU, so on a vision transformer their "
    "relevance would be a plain gradient there; use attnlrp (AttnLRP's rules for transformers) or the attention "
    "explainers (attention_rollout, attention_gradient_rollout, legrad)"
)


def relevance(
    model: ModelAdapter,
    x: Tensor,
    target: Tensor,
    composite,
    contrastive: bool = False,
    scale: str = "logit",
    layer: str | None = None,
) -> tuple[Tensor, Tensor | None]:
    """One forward and one modified backward inside the composite's context: (relevance at the
    input (B,C,H,W) — or at `layer`'s output when given — and the layer's activations or None).
    The modified gradient arriving at a tensor *is* its relevance (each rule layer's backward
    returns a_i·Σ_j w_ij R_j / z_j, or its rule's variant, as its input gradient)."""
    target = target.to(x.device)
    model.require_hooks("LRP")  # the rule layers replace module forwards
    with contextlib.ExitStack() as stack:
        stack.enter_context(torch.enable_grad())
        stack.enter_context(composite.context(model))
        cap = stack.enter_context(model.capture(layer)) if layer is not None else None
        xg = x.detach().requires_grad_(layer is None)
        logits = model(xg)
        wrt = cap.activation if cap is not None else xg
        if not wrt.requires_grad:
            raise ModelError(f"no gradient reaches layer '{layer}'")
        (rel,) = torch.autograd.grad(logits, wrt, grad_outputs=output_relevance(logits, target, contrastive, scale))
    return rel.detach(), (cap.activation.detach() if cap is not None else None)


@dataclass
class LRPBase(InputAttribution):
    needs: ClassVar[frozenset[str]] = frozenset({"hooks", "lrp_rules"})
    composite: CompositeName = param("epsilon_plus_flat", help=COMPOSITE_HELP)
    canonizer: CanonizerName = param("auto", help=CANONIZER_HELP)
    epsilon: float = param(1e-6, help=EPSILON_HELP, ge=0)
    gamma: float = param(0.25, help="γ of the gamma rule (composite epsilon_gamma_box only)", ge=0)

    def composite_for(self, model: ModelAdapter, x: Tensor):
        return make_composite(self.composite, model, x, self.epsilon, self.gamma, self.canonizer)


@EXPLAINERS.register("lrp")
@dataclass
class LRP(LRPBase):
    """Layer-wise relevance propagation (Bach et al., PLoS ONE 2015) with a Zennit composite
    (`epsilon_plus_flat` default; Montavon et al. 2019): relevance of the target logit
    (`output: logit`; or 1) conserved down to the input pixels. 1 forward + 1 backward."""

    reduce: Reduce = param("sum", help=REDUCE_HELP)
    output: OutputRelevance = param("logit", help="relevance put on the target class: its logit, or one")

    def attribute(self, model: ModelAdapter, x: Tensor, target: Tensor) -> Tensor:
        return relevance(model, x, target, self.composite_for(model, x), scale=self.output)[0]


@EXPLAINERS.register("clrp")
@dataclass
class CLRP(LRPBase):
    """Contrastive LRP (Gu, Yang & Tresp, ACCV 2018): R = ReLU(R_c − R_dual) at the input, the
    dual being all other classes weighted equally. 1 forward + 1 backward (by linearity)."""

    reduce: Reduce = param("sum", help=REDUCE_HELP)

    def attribute(self, model: ModelAdapter, x: Tensor, target: Tensor) -> Tensor:
        return torch.relu(relevance(model, x, target, self.composite_for(model, x), contrastive=True)[0])


def layer_relevance(
    model: ModelAdapter, x: Tensor, target: Tensor, layer: str, composite, contrastive: bool = True
) -> tuple[Tensor, Tensor]:
    """(activations A, relevance R) at `layer` (both (B,K,h,w)); R = ReLU(R_c − R_dual) when
    `contrastive` (CLRP; docs/methods.md §CF-CAM step 3), else the target's relevance."""
    rel, acts = relevance(model, x, target, composite, contrastive=contrastive, scale="one", layer=layer)
    if acts.dim() != 4:
        raise ModelError(f"layer '{layer}' outputs shape {tuple(acts.shape)}; a relevance CAM needs (B,K,h,w)")
    return acts, (torch.relu(rel) if contrastive else rel)


@EXPLAINERS.register("relevancecam")
@dataclass
class RelevanceCAM(Explainer):
    """Relevance-CAM (Lee et al., CVPR 2021): α_k = mean over (i,j) of the relevance R_k at
    `layer`, map = ReLU(Σ_k α_k A_k) upsampled bilinearly. R is the contrastive relevance CF-CAM
    uses (docs/methods.md §CF-CAM: z⁺ for convolutions, ε for the final linear layer);
    `contrastive: false` keeps the target's own relevance. 1 forward + 1 backward to the layer."""

    needs: ClassVar[frozenset[str]] = frozenset({"lrp_rules"})
    layer: str = param("auto", help=LAYER_HELP)
    composite: CompositeName = param("epsilon_plus", help=COMPOSITE_HELP)
    canonizer: CanonizerName = param("auto", help=CANONIZER_HELP)
    contrastive: bool = param(True, help="relevance of the target minus the other classes (CLRP); false: the target's own")
    epsilon: float = param(1e-6, help=EPSILON_HELP, ge=0)

    def explain(self, model: ModelAdapter, x: Tensor, target: Tensor) -> Tensor:
        layer = model.resolve_layer(self.layer)
        comp = make_composite(self.composite, model, x, self.epsilon, 0.25, self.canonizer)
        acts, rel = layer_relevance(model, x, target, layer, comp, self.contrastive)
        return assemble_cam(rel.mean(dim=(2, 3), keepdim=True), acts, x.shape[-2:])

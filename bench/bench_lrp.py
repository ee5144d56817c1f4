"""LRP family speed: the floor of rule-based LRP, ours, and the same composite through Zennit's hooks
(the implementation before models/lrp_rules.py), all measured in one run.

    .venv/bin/python bench/bench_lrp.py                                   # built-in model, 128², batch 16
    .venv/bin/python bench/bench_lrp.py --model torchvision:resnet50 --weights none --size 224 --batch 4

Rows: `lrp` and `clrp` (relevance to the input, composite epsilon_plus_flat) and the relevance pass of
Relevance-CAM and CF-CAM (contrastive relevance to the CAM layer, composite epsilon_plus).
- fb: the model's own forward + backward (to the input, or stopped at the layer), same batch.
- floor: fb + for every layer the backward reaches, the work its rule needs beyond the plain input
  gradient it replaces — t(the rule's backward on the layer's recorded input and output) minus
  t(the layer's plain input gradient), each timed alone on the same tensors (the modified forwards
  z⁺, the second gradient of a rule with two terms, the stabilized division). Activations and
  BatchNorm pass relevance unchanged (extra 0). Plus the canonized forward the rules run on (Zennit's
  BatchNorm merge gives each merged convolution a bias, which oneDNN runs ~5-10 % slower on this
  CPU; its identity-statistics BatchNorm stays) minus the model's own forward.
- ours: the explainer's pass; zennit: the same composite and canonizers through Zennit.
Rounds interleave fb, ours and zennit so a changing machine load hits all alike; every ratio is
taken within a round, the tables show medians over rounds. Everything runs inside one
`model.inference()` block, as in a run (the rule layers' parameter fingerprint is taken per block).
"""

from __future__ import annotations

import argparse
import contextlib
import statistics

import torch
from common import add_model_args, markdown, median_seconds, model_and_inputs

from xaibench.models import lrp_rules as rules
from xaibench.saliency.lrp import batchnorm_pairs, layer_relevance, make_composite, output_relevance, relevance


def zennit_relevance(model, x, target, name, contrastive, scale, layer):
    """The previous implementation: Zennit's composite with the traced BatchNorm merges and the
    ResNet canonizers around the adapter's forward."""
    from zennit.canonizers import NamedMergeBatchNorm
    from zennit.composites import EpsilonPlus, EpsilonPlusFlat
    from zennit.torchvision import ResNetBasicBlockCanonizer, ResNetBottleneckCanonizer

    can = [NamedMergeBatchNorm(batchnorm_pairs(model, x)), ResNetBottleneckCanonizer(), ResNetBasicBlockCanonizer()]
    comp = (EpsilonPlusFlat if name == "epsilon_plus_flat" else EpsilonPlus)(canonizers=can)
    with contextlib.ExitStack() as stack:
        stack.enter_context(torch.enable_grad())
        stack.enter_context(comp.context(model.module))
        cap = stack.enter_context(model.capture(layer)) if layer is not None else None
        xg = x.detach().clone().requires_grad_(layer is None)
        logits = model(xg)
        wrt = cap.activation if cap is not None else xg
        (rel,) = torch.autograd.grad(logits, wrt, grad_outputs=output_relevance(logits, target, contrastive, scale))
    return rel


def fb_pass(model, x, target, layer):
    """The model's forward + backward of the target logits, to the input or stopped at `layer`."""
    with contextlib.ExitStack() as stack:
        stack.enter_context(torch.enable_grad())
        cap = stack.enter_context(model.capture(layer)) if layer is not None else None
        xg = x.detach().requires_grad_(layer is None)
        logits = model(xg)
        wrt = cap.activation if cap is not None else xg
        return torch.autograd.grad(logits.gather(1, target[:, None]).sum(), wrt)


def rule_extra_seconds(model, x, target, composite, layer, repeats: int) -> float:
    """Σ over the layers the backward reaches of t(rule backward) − t(plain input gradient)."""
    calls = []
    forwards = composite.forwards(model.module)
    layers = {m: f for m, f in forwards.items() if isinstance(f, rules.RuleLayer) and not isinstance(f.rule, rules.Pass)}

    def record(mod, inp, out):
        if inp[0].requires_grad:
            calls.append((layers[mod], inp[0].detach(), out.detach()))

    handles = [m.register_forward_hook(record) for m in layers]
    try:
        with torch.enable_grad(), rules.relevance_rules(forwards), contextlib.ExitStack() as stack:
            cap = stack.enter_context(model.capture(layer)) if layer is not None else None
            model(x.detach().requires_grad_(layer is None))
            del cap
    finally:
        for h in handles:
            h.remove()
    extra = 0.0
    for rl, xi, out in calls:
        rel = torch.rand_like(out)
        t_rule = median_seconds(lambda: rl.rule.backward(rl, xi, out, rel), repeats)
        if rl.op is not None:
            t_plain = median_seconds(lambda: rl.op.input_grad(xi, rl.weight, rel), repeats)
        else:  # a parameter-free layer (pooling): its plain gradient through autograd
            def plain():
                with torch.enable_grad():
                    xg = xi.detach().requires_grad_(True)
                    return torch.autograd.grad(rl.original(xg), xg, rel)
            t_plain = median_seconds(plain, repeats)
        extra += t_rule - t_plain
    return extra + canonized_forward_extra(model, x, forwards, 3 * repeats)


def canonized_forward_extra(model, x, forwards, rounds: int) -> float:
    """t(the model's forward as the rules run it: BatchNorm merged into the linear layers, which then
    have a bias, the merged BatchNorm an identity-statistics one, residual sums canonized) minus t(its
    own forward), no gradient, median of the per-round differences over interleaved rounds."""
    def canonized():
        with torch.no_grad(), rules.relevance_rules(forwards):
            return model(x)

    def own():
        with torch.no_grad():
            return model(x)

    canonized(), own()
    return statistics.median(median_seconds(canonized, 1, warmup=0) - median_seconds(own, 1, warmup=0)
                             for _ in range(rounds))


def measure(model, x, target, repeats: int, name: str, comp_name: str, contrastive: bool, scale: str, layer):
    """One row: fb, floor, ours and Zennit's seconds per batch and their ratios, medians over rounds."""
    comp = make_composite(comp_name, model, x, 1e-6, 0.25, "auto")

    def ours(comp=comp, contrastive=contrastive, scale=scale, layer=layer):
        if layer is None:
            return relevance(model, x, target, comp, contrastive=contrastive, scale=scale)[0]
        return layer_relevance(model, x, target, layer, comp, contrastive=contrastive)[1]

    def zen(comp_name=comp_name, contrastive=contrastive, scale=scale, layer=layer):
        rel = zennit_relevance(model, x, target, comp_name, contrastive, scale, layer)
        return rel if layer is None else torch.relu(rel)

    a, b = ours(), zen()
    agree = float((a - b).abs().max() / b.abs().max())
    extra = rule_extra_seconds(model, x, target, comp, layer, 5)
    t_fb, t_ours, t_zen, r_floor, r_fb, r_zen = [], [], [], [], [], []
    for _ in range(repeats):
        fb = median_seconds(lambda layer=layer: fb_pass(model, x, target, layer), 1, warmup=0)
        o = median_seconds(ours, 1, warmup=0)
        z = median_seconds(zen, 1, warmup=0)
        t_fb.append(fb), t_ours.append(o), t_zen.append(z)
        r_floor.append(o / (fb + extra)), r_fb.append(o / fb), r_zen.append(z / fb)
    fb, o = statistics.median(t_fb), statistics.median(t_ours)
    return dict(method=name, fb_s=fb, floor_s=fb + extra, ours_s=o, zennit_s=statistics.median(t_zen),
                ours_over_floor=statistics.median(r_floor), ours_over_fb=statistics.median(r_fb),
                zennit_over_fb=statistics.median(r_zen), max_diff_vs_zennit=f"{agree:.1e}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_model_args(ap)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=5, help="rounds of fb / ours / zennit")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default); 1 gives stable "
                    "ratios on a loaded machine")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    model, x, target = model_and_inputs(args, args.batch)
    size = x.shape[-1]
    cam_layer = model.resolve_layer("auto")
    cases = [  # name, composite, contrastive, output scale, layer
        ("lrp", "epsilon_plus_flat", False, "logit", None),
        ("clrp", "epsilon_plus_flat", True, "one", None),
        ("relevancecam / cfcam relevance pass", "epsilon_plus", True, "one", cam_layer),
    ]
    rows = []
    with model.inference():  # as the runner does: one block for the whole run
        for case in cases:
            rows.append(measure(model, x, target, args.repeats, *case))
            print(rows[-1], flush=True)
    print(f"\n{args.model} ({args.weights}) at {size}², batch {args.batch}, CAM layer {cam_layer}, "
          f"torch threads {torch.get_num_threads()}; seconds per batch, medians of {args.repeats} rounds; "
          "max_diff_vs_zennit = max|ours − zennit| / max|zennit|")
    print(markdown(rows, ["method", "fb_s", "floor_s", "ours_s", "zennit_s", "ours_over_floor", "ours_over_fb",
                          "zennit_over_fb", "max_diff_vs_zennit"]))


if __name__ == "__main__":
    main()

"""The activation-maximization loop of docs/methods.md §Pyramid activation maximization: jitter, normalized gradient, pyramid
preconditioning, penalties, momentum ascent, scheduled blur, clipping, optional CAM restriction.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import ConfigError
from ..imageops import gaussian_blur
from ..models.adapter import ModelAdapter
from ..models.gradients import layer_activations_and_gradients
from ..tensorops import assemble_cam, chunks, minmax
from .objectives import check_targets, objective_values, target_count
from .params import FeatvizParams
from .pyramid import precondition
from .spectrum import low_frequency_share


@dataclass
class VizResult:
    """What `visualize` returns. Tensors are on the CPU; T = number of targets."""

    images: Tensor  # (T,3,H,W) pixel space [0,1]
    history: Tensor  # (steps,T) objective φ at each step's (jittered) input, before the update
    final_objective: Tensor  # (T,) φ of the final, un-jittered image
    final_prob: Tensor  # (T,) softmax probability of the target class (NaN for channel/unit objectives)
    final_pred: Tensor  # (T,) top-1 class of the final image
    low_freq_share: Tensor  # (T,) share of the image's power below a quarter of Nyquist (DC excluded)
    targets: list[int]
    objective: str
    layer: str | None
    params: FeatvizParams
    names: list[str] = field(default_factory=list)  # a label per target (class name or layer:channel)

    def arrays(self) -> dict:
        """For a run store: `summary` and `history` DataFrames (as in summary.csv/history.csv) and
        `images` as a (T,3,H,W) uint8 array."""
        from .output import history_table, summary_table, to_uint8

        return {"summary": summary_table(self), "history": history_table(self),
                "images": to_uint8(self.images).transpose(0, 3, 1, 2)}


def penalty_gradient(pixels: Tensor, centre: Tensor, params: FeatvizParams) -> Tensor:
    """∂/∂x of λ_p·R_p + λ_tv·R_TV, both summed over pixels (HW × the paper's averages eqs. 5–6,
    with the range B = 1 of pixel space), so a weight of 1 weighs a penalty like the unit-std
    objective direction. R_p is taken on the image centred on the model's mean pixel
    (Mahendran & Vedaldi 2015; docs/methods.md §Pyramid activation maximization step 3)."""
    with torch.enable_grad():
        x = pixels.detach().requires_grad_(True)
        total = x.new_zeros(())
        if params.p_norm_weight > 0:
            sq = (x - centre).pow(2).sum(1)
            total = total + params.p_norm_weight * (sq + 1e-12).pow(params.p_norm_p / 2).sum()
        if params.tv_weight > 0:
            dx = x[..., :-1, 1:] - x[..., :-1, :-1]
            dy = x[..., 1:, :-1] - x[..., :-1, :-1]
            total = total + params.tv_weight * (dx.pow(2) + dy.pow(2) + 1e-8).pow(params.tv_beta / 2).sum()
        (grad,) = torch.autograd.grad(total, x)
    return grad


def cam_masks(model: ModelAdapter, pixels: Tensor, targets: Tensor, layer: str) -> Tensor:
    """(B,1,H,W) Grad-CAM of each target class at the start image, upsampled to the input size and
    min-max normalized to [0,1] (the paper's §3.3 restriction; docs/methods.md §Pyramid activation maximization step 5)."""
    acts, grads, _ = layer_activations_and_gradients(model, model.normalize(pixels), targets, layer)
    maps = assemble_cam(grads.mean(dim=(2, 3), keepdim=True), acts, pixels.shape[-2:])
    return minmax(maps.float()).unsqueeze(1)


def start_images(model: ModelAdapter, count: int, params: FeatvizParams, generator: torch.Generator,
                 init_images: Tensor | None) -> Tensor:
    """(count,3,H,W) pixel-space starts: the model's mean pixel plus N(0, init_std²) noise (the same
    draw for every target), or the given images (one, or one per target; resized if needed)."""
    h, w = model.input_size
    device = model.device
    if init_images is None and params.init == "image":
        if not params.init_image:
            raise ConfigError("featviz.init = 'image' needs featviz.init_image (an image file) or init_images=")
        from .output import read_image
        init_images = read_image(params.init_image)
    if init_images is None:
        noise = torch.randn((1, model.channels, h, w), generator=generator).to(device)
        centre = model.denormalize(torch.zeros(1, model.channels, 1, 1, device=device))
        return (centre + params.init_std * noise).clamp(0, 1).expand(count, -1, -1, -1).clone()
    imgs = torch.as_tensor(init_images, dtype=torch.float32).to(device)
    if imgs.dim() == 3:
        imgs = imgs.unsqueeze(0)
    if imgs.dim() != 4 or imgs.shape[1] != model.channels or imgs.shape[0] not in (1, count):
        raise ConfigError(f"init_images must be (1 or {count}, {model.channels}, H, W) pixel images in [0,1], "
                          f"got shape {tuple(imgs.shape)}")
    if tuple(imgs.shape[-2:]) != (h, w):
        imgs = F.interpolate(imgs, size=(h, w), mode="bilinear", align_corners=False)
    return imgs.clamp(0, 1).expand(count, -1, -1, -1).clone()


def ascend(model: ModelAdapter, x: Tensor, targets: Tensor, params: FeatvizParams, layer: str | None,
           shifts: Tensor, mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Run `params.steps` iterations on the pixel batch `x` (B,3,H,W), row b maximizing target b.
    Returns (final pixels, (steps,B) history). Each step: roll by shifts[t] (jitter) → φ and
    g = ∂φ/∂x → g/(std(g)+δ) → pyramid preconditioning → minus penalty gradients →
    v ← μv + α g' → x ← clip(x + m⊙v) → every n steps x ← x + m⊙(blur_σ(t)(x) − x), with m the
    CAM mask (or 1), so pixels where m = 0 never change (Tao et al. 2017; docs/methods.md §Pyramid activation maximization)."""
    p = params
    centre = model.denormalize(torch.zeros(1, x.shape[1], 1, 1, device=x.device))
    velocity = torch.zeros_like(x)
    history = torch.empty(p.steps, x.shape[0])
    dims = (-2, -1)
    for t in range(p.steps):
        dy, dx = (int(s) for s in shifts[t])
        with torch.enable_grad():
            rolled = torch.roll(x, (dy, dx), dims).requires_grad_(True)
            phi, _ = objective_values(model, model.normalize(rolled), targets, p.objective, layer, p.class_score)
            (grad,) = torch.autograd.grad(phi.sum(), rolled)
        history[t] = phi.detach().float().cpu()
        grad = torch.roll(grad, (-dy, -dx), dims)
        grad = grad / (grad.flatten(1).std(dim=1).view(-1, 1, 1, 1) + p.grad_eps)
        grad = precondition(grad, p.pyramid, p.levels, p.grad_eps)
        if p.p_norm_weight > 0 or p.tv_weight > 0:
            grad = grad - penalty_gradient(x, centre, p)
        velocity = p.momentum * velocity + p.lr * grad
        x = (x + velocity if mask is None else x + mask * velocity).clamp(0, 1)
        if p.blur_every and (t + 1) % p.blur_every == 0:
            sigma = p.blur_sigma0 + (p.blur_sigma1 - p.blur_sigma0) * t / max(p.steps - 1, 1)
            if sigma > 0:
                change = gaussian_blur(x, 2 * math.ceil(3 * sigma) + 1, sigma) - x
                x = x + (change if mask is None else mask * change)
    return x, history


def optimize(model: ModelAdapter, params: FeatvizParams, init_images: Tensor | None = None) -> VizResult:
    """Activation maximization for every target in `params.targets`, `params.batch_size` targets per
    optimization batch (Tao et al. 2017; docs/methods.md §Pyramid activation maximization). Seeded: the start noise and the jitter
    sequence come from `params.seed` and are shared by all targets, so a target's image does not
    depend on which other targets share its batch."""
    count, layer = target_count(model, params.objective, params.layer)
    targets = check_targets(list(params.targets), count, params.objective, layer)
    generator = torch.Generator().manual_seed(params.seed)
    start = start_images(model, len(targets), params, generator, init_images)
    shifts = torch.randint(-params.jitter, params.jitter + 1, (params.steps, 2), generator=generator)
    device = model.device
    cam_layer = model.resolve_layer(params.cam_layer) if params.cam_restrict else None
    images, histories, objectives, probs, preds = [], [], [], [], []
    for sl in chunks(len(targets), params.batch_size):
        tb = torch.tensor(targets[sl], device=device)
        x0 = start[sl]
        mask = cam_masks(model, x0, tb, cam_layer) if cam_layer else None
        x, hist = ascend(model, x0, tb, params, layer, shifts, mask)
        with torch.no_grad():
            phi, logits = objective_values(model, model.normalize(x), tb, params.objective, layer, params.class_score)
        prob = logits.float().softmax(1).gather(1, tb.view(-1, 1)).squeeze(1)
        probs.append(prob if params.objective == "class" else torch.full_like(prob, float("nan")))
        images.append(x.detach().float().cpu())
        histories.append(hist)
        objectives.append(phi.float())
        preds.append(logits.argmax(1))
    images_t = torch.cat(images)
    return VizResult(
        images=images_t,
        history=torch.cat(histories, dim=1),
        final_objective=torch.cat(objectives).cpu(),
        final_prob=torch.cat(probs).cpu(),
        final_pred=torch.cat(preds).cpu(),
        low_freq_share=low_frequency_share(images_t),
        targets=targets,
        objective=params.objective,
        layer=layer,
        params=params,
        names=target_names(model, targets, params.objective, layer),
    )


def target_names(model: ModelAdapter, targets: list[int], objective: str, layer: str | None) -> list[str]:
    """A label per target: the class name when the model has them, else `class 3` / `layer:channel`."""
    if objective == "class":
        names = model.class_names
        return [names[t] if names and t < len(names) else f"class {t}" for t in targets]
    return [f"{layer}:{t}" + ("@centre" if objective == "unit" else "") for t in targets]

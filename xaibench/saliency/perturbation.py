"""Perturbation explainers: occlusion (sliding window) and RISE (random masks). Forward passes
only, all perturbed inputs of a batch in `chunk_size` pieces under `torch.inference_mode`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import ConfigError
from ..imageops import check_odd_kernel
from ..memory import ChunkSize
from ..models.adapter import ModelAdapter
from ..registry import param
from ..tensorops import chunks, class_scores, step_chunks
from .base import EXPLAINERS, Explainer
from .baselines import make_baseline
from .gradient import InputAttribution

Score = Literal["logit", "softmax"]


def window_starts(size: int, window: int, stride: int) -> list[int]:
    """Window origins along one axis: 0, stride, … until the window has covered the axis;
    ceil((size − window) / stride) + 1 of them, the last clipped at the border (Captum's rule)."""
    return [k * stride for k in range(math.ceil((size - window) / stride) + 1)]


@EXPLAINERS.register("occlusion")
@dataclass
class Occlusion(InputAttribution):
    """Occlusion (Zeiler & Fergus, ECCV 2014): a `window`×`window` patch over all channels is
    replaced by the `baseline`, sliding with `stride`; each pixel gets the mean drop of the
    target `score` over the windows that cover it (as Captum's Occlusion). Passes per image:
    1 + n_windows forwards, n_windows = (ceil((H−w)/s)+1)·(ceil((W−w)/s)+1)."""

    window: int = param(16, help="side of the square occluding patch, px (at most the image's side)", ge=1)
    stride: int = param(8, help="px the patch moves per step (at most window)", ge=1)
    baseline: Literal["zeros", "black", "blur"] = param("zeros", help="patch content: zeros (the dataset mean), black "
                                                                      "or blur")
    blur_kernel: int = param(51, help="Gaussian kernel of the blur baseline, px (odd)", ge=1)
    blur_sigma: float = param(50.0, help="Gaussian sigma of the blur baseline, px", gt=0)
    score: Score = param("logit", help="class score whose drop is measured: logit or softmax")
    chunk_size: ChunkSize = param(64, help="occluded inputs per model call; auto: sized from the memory budget", ge=1)

    def __post_init__(self) -> None:
        super().__post_init__()
        check_odd_kernel(self.blur_kernel)
        if self.stride > self.window:
            raise ConfigError(f"stride must be <= window ({self.window}), got {self.stride}")

    def attribute(self, model: ModelAdapter, x: Tensor, target: Tensor) -> Tensor:
        b, c, h, w = x.shape
        if self.window > min(h, w):  # the one check that needs the input
            raise ConfigError(f"occlusion.window must be in [1, {min(h, w)}] for {h}×{w} inputs, got {self.window}")
        x = x.detach()
        target = target.to(x.device)
        base = make_baseline(model, x, self.baseline, self.blur_kernel, self.blur_sigma)
        rows = torch.tensor(window_starts(h, self.window, self.stride), device=x.device)
        cols = torch.tensor(window_starts(w, self.window, self.stride), device=x.device)
        n_win = len(rows) * len(cols)
        ar_h, ar_w = torch.arange(h, device=x.device), torch.arange(w, device=x.device)
        drops = torch.empty(b, n_win, device=x.device, dtype=x.dtype)
        with torch.inference_mode(), model.fused_inference():
            ref = class_scores(model(x), target, model.score_kind(self.score))
            for piece in chunks(n_win * b, self.chunk_size):
                idx = torch.arange(piece.start, piece.stop, device=x.device)
                win, img = idx // b, idx % b
                r0 = rows[win // len(cols)].view(-1, 1)
                c0 = cols[win % len(cols)].view(-1, 1)
                in_rows = (ar_h >= r0) & (ar_h < r0 + self.window)  # (k,H)
                in_cols = (ar_w >= c0) & (ar_w < c0 + self.window)  # (k,W)
                mask = (in_rows[:, :, None] & in_cols[:, None, :]).unsqueeze(1).to(x.dtype)
                xs = x[img] * (1 - mask) + base[img] * mask
                drops[img, win] = ref[img] - class_scores(model(xs), target[img], model.score_kind(self.score))
        # spread each window's drop over its pixels and average: a transposed conv with a box kernel
        box = torch.ones(1, 1, self.window, self.window, device=x.device, dtype=x.dtype)
        grid = drops.view(b, 1, len(rows), len(cols))
        total = F.conv_transpose2d(grid, box, stride=self.stride)[..., :h, :w]
        count = F.conv_transpose2d(torch.ones_like(grid[:1]), box, stride=self.stride)[..., :h, :w]
        return (total / count).expand(b, c, h, w)


@EXPLAINERS.register("rise")
@dataclass
class RISE(Explainer):
    """RISE (Petsiuk et al., BMVC 2018): S = Σ_i f_c(x ⊙ M_i) M_i / (N·p) over `n_masks` random
    masks: binary grids with cells of `cell_size` pixels kept with probability `p`, upsampled
    bilinearly and randomly shifted by up to one cell (the paper's construction). Masked-out
    pixels are 0 in model-input space (the reference implementation's choice). The grids and
    shifts are drawn once per run from `seed` (on first use, per input size and device) and
    reused for every batch; masks are built chunk by chunk. Passes per image: n_masks forwards."""

    n_masks: int = param(2000, help="random masks, one forward each per image", ge=1)
    cell_size: int = param(16, help="side of a mask grid cell, px", ge=1)
    p: float = param(0.5, help="probability that a grid cell is kept", gt=0, le=1)
    score: Score = param("softmax", help="class score of the masked inputs: softmax or logit")
    seed: int = param(0, help="seed of the masks")
    chunk_size: ChunkSize = param(64, help="masked inputs per model call; auto: sized from the memory budget", ge=1)
    _draws: dict = field(default_factory=dict, init=False, repr=False)

    def draws(self, h: int, w: int, device: torch.device) -> tuple[Tensor, Tensor]:
        """(grids (N,1,gh,gw) of 0/1, shifts (N,2)) for inputs of size h×w, drawn once."""
        key = (h, w, str(device), self.n_masks, self.cell_size, self.p, self.seed)
        if key not in self._draws:
            gen = torch.Generator(device=device).manual_seed(self.seed)
            gh, gw = math.ceil(h / self.cell_size), math.ceil(w / self.cell_size)
            grids = (torch.rand(self.n_masks, 1, gh, gw, generator=gen, device=device) < self.p).float()
            shifts = torch.randint(0, self.cell_size, (self.n_masks, 2), generator=gen, device=device)
            self._draws = {key: (grids, shifts)}
        return self._draws[key]

    def masks(self, grids: Tensor, shifts: Tensor, h: int, w: int) -> Tensor:
        """(k,1,h,w) masks: each grid upsampled to (g+1)·cell, cropped at its shift."""
        k, _, gh, gw = grids.shape
        up = F.interpolate(grids, size=((gh + 1) * self.cell_size, (gw + 1) * self.cell_size), mode="bilinear",
                           align_corners=False)
        rows = shifts[:, 0:1] + torch.arange(h, device=grids.device)  # (k,h)
        cols = shifts[:, 1:2] + torch.arange(w, device=grids.device)  # (k,w)
        return up[torch.arange(k, device=grids.device)[:, None, None], 0, rows[:, :, None], cols[:, None, :]].unsqueeze(1)

    def explain(self, model: ModelAdapter, x: Tensor, target: Tensor) -> Tensor:
        b, _, h, w = x.shape
        x = x.detach()
        target = target.to(x.device)
        grids, shifts = self.draws(h, w, x.device)
        sal = torch.zeros(b, h * w, device=x.device, dtype=x.dtype)
        with torch.inference_mode(), model.fused_inference():
            for part, rows in step_chunks(self.n_masks, b, self.chunk_size):
                if rows.start == 0:  # each mask built once, shared by every image of the batch
                    m = self.masks(grids[part], shifts[part], h, w).to(x.dtype)  # (k,1,h,w)
                k = m.shape[0]
                xs = (x[rows].unsqueeze(0) * m.unsqueeze(1)).flatten(0, 1)  # (k·n, C,h,w), mask-major
                scores = class_scores(model(xs), target[rows].repeat(k), model.score_kind(self.score)).view(k, -1)
                sal[rows] += scores.T @ m.view(k, h * w)
        return (sal / (self.n_masks * self.p)).view(b, h, w)


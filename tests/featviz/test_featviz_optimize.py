"""The activation-maximization loop of docs/methods.md §Pyramid activation maximization on hand-built models with known answers:
objectives, CAM restriction, seeding and batching, outputs (PNG, CSV, HDF5) and user errors."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from torch import nn

from xaibench.errors import ConfigError, LayerError
from xaibench.featviz import FeatvizParams, run_visualize, visualize
from xaibench.featviz.objectives import objective_values, select_units
from xaibench.models.adapter import ModelAdapter

SIZE = 32


class Pattern(nn.Module):
    """Outputs a fixed binary pattern (B,1,H,W) that still belongs to the graph of x."""

    def __init__(self, pattern: torch.Tensor):
        super().__init__()
        self.register_buffer("pattern", pattern)

    def forward(self, x):
        return self.pattern.expand(x.shape[0], 1, -1, -1) + 0 * x[:, :1]


class BinaryCamNet(nn.Module):
    """logit_c = mean(pattern) + u_c · (channel means of x): the Grad-CAM of every class at layer
    `cam` is exactly the binary pattern (w_c = 1/HW > 0, ReLU, min-max)."""

    def __init__(self, pattern: torch.Tensor, classes: int = 4):
        super().__init__()
        self.cam = Pattern(pattern)
        self.fc = nn.Linear(3, classes)
        with torch.no_grad():
            self.fc.weight.copy_(torch.randn(classes, 3, generator=torch.Generator().manual_seed(0)))

    def forward(self, x):
        return self.cam(x).mean((1, 2, 3)).unsqueeze(1) + self.fc(x.mean((2, 3)))


class SmallCNN(nn.Module):
    """A 1×1 identity conv (`ident`: its channel k is input channel k), then a small random CNN."""

    def __init__(self, classes: int = 5):
        super().__init__()
        torch.manual_seed(0)
        self.ident = nn.Conv2d(3, 3, 1, bias=False)
        with torch.no_grad():
            self.ident.weight.copy_(torch.eye(3).view(3, 3, 1, 1))
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1, stride=2),
                                      nn.ReLU())
        self.fc = nn.Linear(8, classes)

    def forward(self, x):
        return self.fc(self.features(self.ident(x)).mean((2, 3)))


@pytest.fixture(scope="module")
def small():
    return ModelAdapter.wrap(SmallCNN(), input_size=SIZE, class_names=[f"c{i}" for i in range(5)])


FAST = dict(steps=6, levels=3)


def test_select_units_known_answer():
    acts = torch.arange(2 * 3 * 4 * 4, dtype=torch.float32).view(2, 3, 4, 4)
    t = torch.tensor([2, 0])
    assert torch.equal(select_units(acts, t, "channel"), torch.stack([acts[0, 2].mean(), acts[1, 0].mean()]))
    assert torch.equal(select_units(acts, t, "unit"), torch.stack([acts[0, 2, 2, 2], acts[1, 0, 2, 2]]))
    flat = torch.randn(2, 7)
    assert torch.equal(select_units(flat, t, "channel"), flat[[0, 1], [2, 0]])


def test_objectives_read_the_right_numbers(small):
    x = torch.randn(3, 3, SIZE, SIZE)
    t = torch.tensor([1, 2, 0])
    phi, logits = objective_values(small, x, t, "class", None)
    assert torch.allclose(phi, small(x)[[0, 1, 2], [1, 2, 0]])
    phi, _ = objective_values(small, x, t, "class", None, class_score="log_softmax")
    assert torch.allclose(phi, small(x).log_softmax(1)[[0, 1, 2], [1, 2, 0]], atol=1e-6)
    phi, _ = objective_values(small, x, t, "channel", "ident")  # identity layer: channel mean of x
    assert torch.allclose(phi, x[[0, 1, 2], [1, 2, 0]].mean((1, 2)), atol=1e-6)
    phi, _ = objective_values(small, x, t, "unit", "ident")
    assert torch.allclose(phi, x[[0, 1, 2], [1, 2, 0], SIZE // 2, SIZE // 2], atol=1e-6)


def test_channel_objective_drives_its_own_colour(small):
    # maximizing the mean of input channel k (identity layer) must raise colour k and nothing forces the others up
    r = visualize(small, [0, 2], objective="channel", layer="ident", steps=12, lr=0.05, p_norm_weight=0.0, tv_weight=0.0)
    means = r.images.mean((2, 3))
    assert means[0, 0] > 0.9 and means[1, 2] > 0.9
    assert (r.history[-1] > r.history[0]).all()
    assert torch.isnan(r.final_prob).all() and r.names == ["ident:0", "ident:2"]


def test_cam_restriction_leaves_pixels_outside_a_binary_mask_unchanged():
    pattern = torch.zeros(1, 1, SIZE, SIZE)
    pattern[..., 8:20, 4:28] = 1.0
    model = ModelAdapter.wrap(BinaryCamNet(pattern), input_size=SIZE)
    start = torch.rand(2, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(3))
    r = visualize(model, [1, 3], steps=10, cam_restrict=True, cam_layer="cam", init_images=start, levels=3)
    outside = pattern.expand(2, 3, -1, -1) == 0
    assert torch.equal(r.images[outside], start[outside])  # bit-for-bit
    inside_change = (r.images - start).abs()[~outside]
    assert inside_change.mean() > 0.05
    unrestricted = visualize(model, [1, 3], steps=10, init_images=start, levels=3)
    assert (unrestricted.images - start).abs()[outside].mean() > 0.05


def test_seeded_reproducible_and_independent_of_batching(small):
    a = visualize(small, [1, 3, 4], seed=7, batch_size=3, **FAST)
    b = visualize(small, [1, 3, 4], seed=7, batch_size=3, **FAST)
    assert torch.equal(a.images, b.images) and torch.equal(a.history, b.history)
    one_by_one = visualize(small, [1, 3, 4], seed=7, batch_size=1, **FAST)
    assert torch.allclose(a.images, one_by_one.images, atol=1e-4)
    other_seed = visualize(small, [1, 3, 4], seed=8, batch_size=3, **FAST)
    assert not torch.allclose(a.images, other_seed.images, atol=1e-3)
    assert a.history.shape == (6, 3) and a.images.shape == (3, 3, SIZE, SIZE)
    assert a.images.min() >= 0 and a.images.max() <= 1


def test_noise_start_and_given_start(small):
    r = visualize(small, [2], steps=1, jitter=0, init_std=0.0)
    blank = small.denormalize(torch.zeros(1, 3, SIZE, SIZE))  # the mean pixel = input-space zero
    assert r.history[0, 0].item() == pytest.approx(small(small.normalize(blank))[0, 2].item(), abs=1e-5)
    start = torch.rand(1, 3, SIZE, SIZE)
    r = visualize(small, [2, 4], steps=1, jitter=0, init_images=start)
    expected = small(small.normalize(start)).squeeze(0)[[2, 4]]
    assert torch.allclose(r.history[0], expected, atol=1e-5)


def test_run_visualize_writes_png_and_csv(small, tmp_path):
    params = FeatvizParams(targets=[0, 3], steps=5, levels=3)
    r = run_visualize(small, params, tmp_path / "viz")
    out = tmp_path / "viz"
    summary = pd.read_csv(out / "summary.csv")
    assert list(summary.target) == [0, 3] and list(summary.name) == ["c0", "c3"]
    assert np.allclose(summary.final_prob, r.final_prob.numpy(), atol=1e-6)
    assert np.allclose(r.final_prob.numpy(), small(small.normalize(r.images)).softmax(1)[[0, 1], [0, 3]].numpy(),
                       atol=1e-5)
    history = pd.read_csv(out / "history.csv")
    assert len(history) == 10
    assert np.allclose(history.pivot(index="step", columns="target", values="objective").to_numpy(), r.history.numpy())
    png = np.asarray(Image.open(out / summary.png[1]))
    assert png.shape == (SIZE, SIZE, 3)
    assert np.abs(png / 255.0 - r.images[1].permute(1, 2, 0).numpy()).max() <= 0.5 / 255 + 1e-6
    assert Image.open(out / "grid.png").size[0] > 2 * SIZE


def test_user_errors_name_the_problem(small):
    with pytest.raises(ConfigError, match=r"out of range.*5 classes \(valid 0..4\)"):
        visualize(small, [5], steps=1)
    with pytest.raises(ConfigError, match="unknown parameter 'pyramd'.*Did you mean 'pyramid'"):
        visualize(small, [0], pyramd="none")
    with pytest.raises(ConfigError, match="Valid: laplacian, gaussian, both, none"):
        visualize(small, [0], pyramid="fourier")
    with pytest.raises(ConfigError, match=r"momentum: must be in \[0, 1\), got 1.0"):
        visualize(small, [0], momentum=1.0)
    with pytest.raises(ConfigError, match="cam_restrict needs objective 'class'"):
        visualize(small, [0], objective="channel", cam_restrict=True)
    with pytest.raises(LayerError, match="no layer 'featurez'"):
        visualize(small, [0], objective="channel", layer="featurez")
    with pytest.raises(ConfigError, match="init_images must be"):
        visualize(small, [0, 1, 2], steps=1, init_images=torch.rand(2, 3, SIZE, SIZE))
    with pytest.raises(ConfigError, match="init_image"):
        visualize(small, [0], steps=1, init="image")


def test_jitter_gradient_lands_on_the_pixel_the_objective_read(small):
    # centre unit of the identity layer, one step, no preconditioning or penalties: the only pixel that
    # changes must be the one the jittered forward put at the centre
    start = torch.rand(1, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(5))
    for seed in range(3):
        r = visualize(small, [0], objective="unit", layer="ident", steps=1, jitter=4, seed=seed, pyramid="none",
                      p_norm_weight=0.0, tv_weight=0.0, blur_every=0, init_images=start)
        changed = (r.images - start).abs()[0].sum(0).nonzero()
        assert len(changed) == 1
        i, j = changed[0].tolist()
        assert r.history[0, 0].item() == pytest.approx(small.normalize(start)[0, 0, i, j].item(), abs=1e-6)


def test_arrays_for_the_run_store(small):
    r = visualize(small, [1, 2], steps=3, levels=3)
    arrays = r.arrays()
    assert arrays["images"].shape == (2, 3, SIZE, SIZE) and arrays["images"].dtype == np.uint8
    assert list(arrays["summary"].target) == [1, 2] and len(arrays["history"]) == 6
    assert np.allclose(arrays["summary"].final_prob, r.final_prob.numpy())

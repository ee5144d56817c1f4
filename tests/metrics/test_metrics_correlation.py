"""Faithfulness correlation against Quantus `FaithfulnessCorrelation`, fed the same random subsets
(re-derived from docs/metrics.md "Random draws"); the pixel unit (the sibling) differs."""

import numpy as np
import pytest
import torch
from metric_models import documented_generator, small_cnn

from xaibench.metrics.base import METRICS
from xaibench.models.adapter import ModelAdapter

SEEDS = torch.tensor([7, 8, 9])


def documented_subsets(g: torch.Generator, runs: int, n: int, size: int) -> torch.Tensor:
    """docs/metrics.md "Faithfulness correlation", transcribed: per run, the first `size` distinct
    values of its row of (runs, L) randint blocks, blocks appended while a row lacks values."""
    block = size + size // 8 + 32
    rows = torch.randint(n, (runs, block), generator=g)
    while True:
        picked = [list(dict.fromkeys(row.tolist()))[:size] for row in rows]
        if all(len(p) == size for p in picked):
            return torch.tensor(picked)
        rows = torch.cat([rows, torch.randint(n, (runs, block), generator=g)], dim=1)


def test_subsets_are_distinct_uniform_and_follow_the_documented_law():
    """Every subset has distinct indices; with size close to n (blocks appended) too; the law
    equals its transcription; each index is picked with probability size / n (χ² over 20k runs)."""
    from xaibench.metrics.correlation import random_subsets

    for n, size in ((768, 40), (50, 45), (49152, 224)):
        got = random_subsets([documented_generator(5, "subsets")], 30, n, size)[0]
        assert got.shape == (30, size) and all(len(set(r.tolist())) == size for r in got)
        torch.testing.assert_close(got, documented_subsets(documented_generator(5, "subsets"), 30, n, size))
    counts = torch.bincount(random_subsets([torch.Generator().manual_seed(1)], 20000, 20, 5)[0].flatten(), minlength=20)
    expected = 20000 * 5 / 20
    chi2 = float(((counts - expected) ** 2 / expected).sum())
    assert chi2 < 43.8, counts  # χ²(19) 99.9 % quantile


def test_faithfulness_correlation_matches_quantus(monkeypatch):
    import quantus  # slow to import on a loaded machine

    module = small_cnn(classes=5)
    model = ModelAdapter(module, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0), input_size=(16, 16))
    g = torch.Generator().manual_seed(3)
    x = torch.randn(3, 3, 16, 16, generator=g)
    maps = torch.randn(3, 16, 16, generator=g)
    target = torch.tensor([1, 2, 4])
    runs, size, n = 12, 40, 3 * 16 * 16
    with model.inference():
        ours = METRICS.build("faithfulness_correlation", runs=runs, subset_size=size)(model, x, maps, target, seeds=SEEDS)
        pixel = METRICS.build("faithfulness_correlation", runs=runs, subset_size=size, unit="pixel")(
            model, x, maps, target, seeds=SEEDS)
    subsets = [documented_subsets(documented_generator(int(k), "subsets"), runs, n, size) for k in SEEDS]
    # Quantus draws np.random.choice(n, size) once per image inside each run: hand it the same subsets
    order = iter([subsets[i][r].numpy() for r in range(runs) for i in range(3)])
    monkeypatch.setattr(np.random, "choice", lambda *a, **k: next(order))
    ref = quantus.FaithfulnessCorrelation(nr_runs=runs, subset_size=size, perturb_baseline="black",
                                          return_aggregate=False, disable_warnings=True)(
        model=module, x_batch=x.numpy(), y_batch=target.numpy(), a_batch=maps[:, None].numpy(),
        device="cpu", channel_first=True, softmax=False, batch_size=3)
    worst = np.abs(ours.values.numpy() - np.asarray(ref)).max()
    print(f"faithfulness_correlation vs quantus.FaithfulnessCorrelation: worst abs diff {worst:.2e}")
    assert worst < 1e-5, (ours.values, ref)
    assert np.abs(pixel.values.numpy() - np.asarray(ref)).max() > 0.05  # whole pixels: another subset law


def test_flat_map_scores_zero_and_subset_size_is_checked():
    model = ModelAdapter(small_cnn(classes=5), mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0), input_size=(8, 8))
    x = torch.randn(2, 3, 8, 8)
    with model.inference():
        flat = METRICS.build("faithfulness_correlation", runs=5, subset_size=10)(
            model, x, torch.ones(2, 8, 8), torch.tensor([0, 1]))
        assert flat.values.tolist() == [0.0, 0.0]
        from xaibench.errors import ConfigError

        with pytest.raises(ConfigError, match="subset_size"):
            METRICS.build("faithfulness_correlation", subset_size=64, unit="pixel")(
                model, x, torch.rand(2, 8, 8), torch.tensor([0, 1]))

"""`chunk_size: auto`: chunks sized from the memory budget and the model's activation bytes."""

from __future__ import annotations

import torch

import xaibench as xb
from xaibench.config import load
from xaibench.memory import activation_bytes_per_image, auto_chunk, resolve_params


def test_activation_bytes_count_every_leaf_output():
    model = xb.ModelAdapter.wrap(torch.nn.Sequential(torch.nn.Conv2d(3, 4, 1), torch.nn.ReLU()), mean=(0, 0, 0), std=(1, 1, 1))
    assert activation_bytes_per_image(model, (3, 8, 8)) == 2 * 4 * 8 * 8 * 4  # conv + relu outputs, float32


def test_auto_chunk_follows_the_budget():
    model = xb.load_model("testnet:tiny")
    per = activation_bytes_per_image(model, (3, 32, 32))
    model.memory_budget_gb = 1e-9 * per * 3 * 10 / 1.073741824  # room for ~10 images with backward
    assert 8 <= auto_chunk(model, (3, 32, 32), backward=True) <= 10
    model.memory_budget_gb = 1e-12
    assert auto_chunk(model, (3, 32, 32), backward=True) == 1
    assert resolve_params({"chunk_size": 7}, model, (3, 32, 32), True) == {"chunk_size": 7}


def test_auto_in_config_and_api_gives_the_same_maps():
    cfg = load({"model": {"name": "testnet:tiny"}, "dataset": {"image_size": 32},
                "explainers": [{"name": "integrated_gradients", "params": {"chunk_size": "auto"}}],
                "metrics": [{"name": "deletion", "params": {"chunk_size": "auto"}}]})
    assert cfg.explainers[0].params["chunk_size"] == "auto"
    model = xb.load_model("testnet:tiny")
    x, t = torch.randn(3, 3, 32, 32), torch.tensor([0, 1, 2])
    auto = xb.explain(model, x, t, "integrated_gradients", steps=8, chunk_size="auto")
    fixed = xb.explain(model, x, t, "integrated_gradients", steps=8, chunk_size=5)
    torch.testing.assert_close(auto, fixed, rtol=1e-5, atol=1e-6)


def test_every_chunked_plugin_accepts_auto_in_config():
    """Every registered explainer, metric and probe with a `chunk_size` accepts `auto`."""
    from xaibench.metrics import METRICS, PROBES
    from xaibench.saliency import EXPLAINERS

    model = xb.load_model("testnet:tiny")
    chunked = 0
    for registry in (EXPLAINERS, METRICS, PROBES):
        for name in registry.names():
            if "chunk_size" not in registry.get(name).params:
                continue
            chunked += 1
            assert registry.check(name, {"chunk_size": "auto"}) == {"chunk_size": "auto"}, name
            params = resolve_params({"chunk_size": "auto"}, model, (3, 32, 32), backward=True)
            assert registry.build(name, **params).chunk_size >= 1, name
    assert chunked >= 10

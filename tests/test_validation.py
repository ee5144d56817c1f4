"""One validation convention: every plug-in parameter is declared with `param(default, help=...,
bounds)`, and every bad value is a ConfigError naming its key path when the config is loaded —
before any model or data loads."""

from __future__ import annotations

import dataclasses

import pytest
from typer.testing import CliRunner

from xaibench import api
from xaibench.config import SECTIONS, PluginSpec, RunConfig, load
from xaibench.errors import ConfigError
from xaibench.featviz import FeatvizParams
from xaibench.registry import coerce_params, param, param_bounds, param_fields, param_help
from xaibench.saliency.msgcam import MSGCAM


@pytest.fixture
def no_model_or_data(monkeypatch):
    """Loading a config must not load a model or read data: every model and dataset factory raises."""

    def boom(*args, **kwargs):
        raise AssertionError("a model or dataset was loaded while validating a config")

    import xaibench.api
    import xaibench.models.zoo

    monkeypatch.setattr(xaibench.models.zoo, "load_model", boom)
    monkeypatch.setattr(xaibench.api, "_load_model", boom)
    regs = api.registries()
    for kind in ("models", "datasets"):
        for name in regs[kind].names():
            monkeypatch.setattr(regs[kind].get(name), "obj", boom)


def explainer(name, **params):
    return {"explainers": ["gradcam", {"name": name, "params": params}]}


def metric(name, **params):
    return {"metrics": [{"name": name, "params": params}]}


def probe(name, **params):
    return {"probes": [{"name": name, "params": params}]}


BAD = [
    # simple bounds (field metadata), checked with the types: <section>.<plug-in>.<key>
    (explainer("scorecam", chunk_size=0), r"^explainers\.scorecam\.chunk_size: must be >= 1, got 0$"),
    (explainer("integrated_gradients", steps=-3), r"^explainers\.integrated_gradients\.steps: must be >= 1, got -3$"),
    (explainer("msgcam", scales=0), r"^explainers\.msgcam\.scales: must be >= 1, got 0$"),
    (explainer("msgcam", scale_batch=0), r"^explainers\.msgcam\.scale_batch: must be >= 1, got 0$"),
    (explainer("rise", p=0), r"^explainers\.rise\.p: must be in \(0, 1\], got 0\.0$"),
    (explainer("cameras", channel_chunk=0), r"^explainers\.cameras\.channel_chunk: must be >= 1"),
    (explainer("smoothgrad", n_samples=0), r"^explainers\.smoothgrad\.n_samples: must be >= 1"),
    (explainer("cfcam", blur_sigma=0), r"^explainers\.cfcam\.blur_sigma: must be > 0"),
    (metric("deletion", steps=0), r"^metrics\.deletion\.steps: must be >= 1, got 0$"),
    (metric("road_morf", percentages=[10, 100]), r"^metrics\.road_morf\.percentages\[1\]: must be in \(0, 100\), got 100"),
    (metric("box_iou", threshold=1.5), r"^metrics\.box_iou\.threshold: must be in \[0, 1\], got 1\.5$"),
    (metric("pointing_game", tolerance=-1), r"^metrics\.pointing_game\.tolerance: must be >= 0"),
    (probe("neuron_similarity", prune_fraction=1.5),
     r"^probes\.neuron_similarity\.prune_fraction: must be in \(0, 1\], got 1\.5$"),
    (probe("neuron_similarity", classes=[0, -1]), r"^probes\.neuron_similarity\.classes\[1\]: must be >= 0"),
    ({"featviz": {"levels": 0}}, r"^featviz\.levels: must be >= 1, got 0$"),
    ({"featviz": {"momentum": 1.0}}, r"^featviz\.momentum: must be in \[0, 1\), got 1\.0$"),
    ({"dataset": {"batch_size": 0}}, r"^dataset\.batch_size: must be >= 1, got 0$"),
    ({"dataset": {"name": "synthetic", "image_size": 16}}, r"^dataset\.synthetic\.image_size: must be >= 32, got 16$"),
    ({"dataset": {"name": "synthetic", "params": {"n_images": 0}}}, r"^dataset\.synthetic\.n_images: must be >= 1"),
    ({"memory_budget_gb": 0}, r"^memory_budget_gb: must be > 0, got 0"),
    ({"explainers": [{"name": "gradcam", "limit": -1}]}, r"^explainers\[0\]\.limit: must be >= 0, got -1$"),
    # cross-field and non-numeric checks (the plug-in's __post_init__): <section>[<index>] (<plug-in>)
    (explainer("occlusion", window=8, stride=16), r"^explainers\[1\] \(occlusion\): stride must be <= window \(8\), got 16$"),
    (explainer("msgcam", blur_kernel=50), r"^explainers\[1\] \(msgcam\): blur_kernel must be a positive odd number"),
    (explainer("integrated_gradients", method="riemann_trapezoid", steps=1),
     r"^explainers\[1\] \(integrated_gradients\): method riemann_trapezoid needs steps >= 2, got 1$"),
    (explainer("smoothgrad", method="gradcam"), r"^explainers\[1\] \(smoothgrad\): method: 'gradcam' is not a per-pixel"),
    (explainer("vargrad", method_params={"reduce": "max"}), r"^explainers\[1\] \(vargrad\): .*reduce: 'max' is not valid"),
    (metric("insertion", blur_kernel=4), r"^metrics\[0\] \(insertion\): blur_kernel must be a positive odd number"),
    (metric("road_lerf", percentages=[]), r"^metrics\[0\] \(road_lerf\): percentages must list at least one value"),
    (probe("feature_purity", threshold=1.0), r"^probes\[0\] \(feature_purity\): threshold 1\.0 must be in \[0, 1\)"),
    (probe("neuron_similarity", methods=[1], prune_method=2),
     r"^probes\[0\] \(neuron_similarity\): prune_method = 2 must be one of methods \[1\]$"),
    (probe("neuron_similarity", averages=["simple"], grid_average="network"),
     r"^probes\[0\] \(neuron_similarity\): grid_average = 'network' must be one of averages"),
    ({"featviz": {"objective": "channel", "cam_restrict": True}}, r"^featviz: cam_restrict needs objective 'class'"),
]


@pytest.mark.parametrize("raw, message", BAD, ids=lambda v: v if isinstance(v, str) else None)
def test_bad_values_fail_at_load_naming_the_key_path(raw, message, no_model_or_data):
    with pytest.raises(ConfigError, match=message):
        load(raw)


def test_auto_stays_valid_for_chunk_sizes_at_load(no_model_or_data):
    cfg = load({
        "explainers": [{"name": "scorecam", "params": {"chunk_size": "auto"}},
                       {"name": "msgcam", "params": {"chunk_size": "auto", "scale_batch": "auto"}}],
        "metrics": [{"name": "deletion", "params": {"chunk_size": "auto"}}],
        "probes": [{"name": "neuron_similarity", "params": {"chunk_size": "auto"}}],
    })
    assert cfg.explainers[0].params == {"chunk_size": "auto"}
    assert cfg.explainers[1].params == {"chunk_size": "auto", "scale_batch": "auto"}
    assert cfg.metrics[0].params["chunk_size"] == "auto" and cfg.probes[0].params["chunk_size"] == "auto"


def test_a_plugin_built_directly_checks_the_same_bounds():
    with pytest.raises(ConfigError, match=r"^scales must be >= 1, got 0$"):
        MSGCAM(scales=0)
    with pytest.raises(ConfigError, match=r"^explainer\.occlusion: stride must be <= window \(4\), got 5$"):
        api.registries()["explainers"].build("occlusion", window=4, stride=5)
    with pytest.raises(ConfigError, match=r"^levels must be >= 1, got 0$"):
        FeatvizParams(levels=0)


def test_bounds_skip_strings_and_none_and_check_every_list_element():
    @dataclasses.dataclass
    class Spec:
        size: int | str | None = param(4, help="a size", ge=1)
        shares: list[float] = param(default_factory=list, help="shares", ge=0, lt=1)

    fields, bounds = param_fields(Spec), param_bounds(Spec)
    assert bounds == {"size": {"ge": 1}, "shares": {"ge": 0, "lt": 1}}
    assert coerce_params(fields, {"size": "auto", "shares": [0.0, 0.5]}, "x", bounds) == {"size": "auto",
                                                                                          "shares": [0.0, 0.5]}
    assert coerce_params(fields, {"size": None}, "x", bounds) == {"size": None}
    with pytest.raises(ConfigError, match=r"^x\.shares\[2\]: must be in \[0, 1\), got 1\.0$"):
        coerce_params(fields, {"shares": [0.1, 0.2, 1.0]}, "x", bounds)
    assert param_help(Spec) == {"size": "a size", "shares": "shares"}


@pytest.mark.parametrize("kind", ["explainers", "metrics", "probes", "datasets"])
def test_every_parameter_has_a_help_text(kind):
    reg = api.registries()[kind]
    missing = [f"{name}.{p}" for name in reg.names() for p in reg.get(name).params if not reg.get(name).help.get(p)]
    assert not missing, f"parameters without help: {missing}"
    assert sum(len(reg.get(name).params) for name in reg.names()) > 0


def test_featviz_and_config_sections_have_help_texts():
    for spec in (FeatvizParams, RunConfig, PluginSpec, *SECTIONS.values()):
        helps = param_help(spec)
        assert helps and all(helps.values()), f"{spec.__name__}: {[k for k, v in helps.items() if not v]}"


@pytest.mark.parametrize("kind", ["explainers", "metrics", "probes"])
def test_every_plugin_builds_with_its_defaults(kind):
    """The declared bounds and cross-field checks accept every default (and chunk_size: auto)."""
    reg = api.registries()[kind]
    for name in reg.names():
        reg.build(name)
        if "chunk_size" in reg.get(name).params:
            reg.build(name, chunk_size="auto")


def test_xai_list_prints_the_help_beside_a_parameter():
    from xaibench.cli import app

    result = CliRunner().invoke(app, ["list", "explainers"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    start = lines.index(next(line for line in lines if line.startswith("scorecam:")))
    chunk = next(line for line in lines[start + 1:] if line.strip().startswith("chunk_size:"))
    assert chunk.endswith("— masked inputs per model call; auto: sized from the memory budget (>= 1)")


def test_xai_validate_reports_the_key_path(tmp_path, no_model_or_data):
    from xaibench.cli import app

    path = tmp_path / "bad.yaml"
    path.write_text("explainers: [gradcam, {name: occlusion, params: {window: 8, stride: 16}}]\n")
    result = CliRunner().invoke(app, ["validate", str(path)])
    assert result.exit_code == 2
    assert "explainers[1] (occlusion): stride must be <= window (8), got 16" in result.output

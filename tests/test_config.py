"""Config loading: defaults, overrides, and the messages of user mistakes."""

from __future__ import annotations

from pathlib import Path

import pytest

from xaibench import api as xb_api
from xaibench.config import apply_override, load
from xaibench.errors import ConfigError


def test_defaults_and_plugins(tiny_config):
    cfg = load(tiny_config)
    assert cfg.seed == 0 and cfg.device == "auto" and cfg.target == "label"
    assert [e.name for e in cfg.explainers] == ["gradcam", "saliency"]
    assert cfg.explainers[1].limit == 6
    assert cfg.metrics[0].params == {"steps": 8}


def test_unknown_top_key_names_key_and_suggests():
    with pytest.raises(ConfigError, match=r"unknown config key 'modle'.*Did you mean 'model'"):
        load({"modle": {}})


def test_unknown_section_key():
    with pytest.raises(ConfigError, match=r"unknown key 'dataset.batchsize'.*Did you mean 'batch_size'"):
        load({"dataset": {"batchsize": 3}})


def test_unknown_explainer_lists_valid_and_suggests(tiny_config):
    tiny_config["explainers"] = ["gradcan"]
    with pytest.raises(ConfigError, match=r"unknown explainer 'gradcan'\. Did you mean 'gradcam'\? Valid: .*saliency"):
        load(tiny_config)


def test_bad_type_names_key(tiny_config):
    with pytest.raises(ConfigError, match=r"dataset.limit: expected int \| NoneType, got 'many'"):
        load(tiny_config, ["dataset.limit=many"])
    tiny_config["explainers"] = [{"name": "saliency", "params": {"reduce": "max"}}]
    with pytest.raises(ConfigError, match=r"explainers.saliency.reduce: 'max' is not valid\. Did you mean 'abs_max'"):
        load(tiny_config)


def test_unknown_parameter(tiny_config):
    tiny_config["explainers"] = [{"name": "gradcam", "params": {"layr": "x"}}]
    with pytest.raises(ConfigError, match=r"unknown parameter 'layr'.*Did you mean 'layer'"):
        load(tiny_config)


def test_overrides_parse_yaml_values(tiny_config):
    cfg = load(tiny_config, ["dataset.limit=5", "model.name=torchvision:resnet18", "explainers=[gradcam]",
                             "seed=7", "metrics.0.params.steps=4", "dataset.root=null"])
    assert cfg.dataset.limit == 5 and cfg.model.name == "torchvision:resnet18" and cfg.seed == 7
    assert [e.name for e in cfg.explainers] == ["gradcam"]
    assert cfg.metrics[0].params["steps"] == 4 and cfg.dataset.root is None


def test_override_turns_bare_plugin_name_into_mapping():
    raw = {"explainers": ["gradcam"]}
    apply_override(raw, "explainers.0.params.layer=features")
    assert raw["explainers"][0] == {"name": "gradcam", "params": {"layer": "features"}}


@pytest.mark.parametrize("bad", ["novalue", "=3", "explainers.5.name=x"])
def test_malformed_override(bad, tiny_config):
    with pytest.raises(ConfigError):
        load(tiny_config, [bad])


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load(tmp_path / "nope.yaml")


SHIPPED = sorted((Path(__file__).resolve().parents[1] / "configs").rglob("*.yaml"))


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.relative_to(p.parents[1]).as_posix())
def test_every_shipped_config_validates(path):
    cfg = xb_api.validate(path)
    assert cfg.name


@pytest.mark.parametrize("text,match", [
    ("name: [unclosed\nseed: 0\n", r"bad\.yaml is not valid YAML"),
    ("name: a\n  seed: 0\n", r"bad\.yaml is not valid YAML"),
    ("- gradcam\n- saliency\n", r"bad\.yaml: the top level must be a mapping of keys, got list"),
    ("just words\n", r"bad\.yaml: the top level must be a mapping of keys, got str"),
])
def test_bad_yaml_is_a_config_error_through_the_api_and_the_cli(tmp_path, text, match):
    from typer.testing import CliRunner

    from xaibench.cli import app

    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=match):
        load(path)
    res = CliRunner().invoke(app, ["run", str(path), "--out", str(tmp_path / "run")])
    assert res.exit_code == 2 and "Traceback" not in res.output
    assert res.output.startswith("error: ") and "bad.yaml" in res.output
    assert not (tmp_path / "run").exists()  # nothing created for a config that does not load

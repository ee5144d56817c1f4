"""The `model:` section reaching the run: factory params, preprocessing overrides, the model's own crop
and resize filter for the dataset, label checks, and `xai list explainers --model`."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from xaibench.cli import app
from xaibench.config import load
from xaibench.errors import ConfigError, DataError, ModelError
from xaibench.runner import build_plan

FACTORY = """
from torch import nn
from xaibench import ModelAdapter

def build(classes=2, crop=None):
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                        nn.Linear(4, classes))
    if crop is None:
        return net
    return ModelAdapter.wrap(net, input_size=16, crop_fraction=crop, interpolation="bicubic")
"""


def setup(tmp_path, classes=("a", "b")):
    for c in classes:
        (tmp_path / "img" / c).mkdir(parents=True)
        Image.fromarray(np.zeros((20, 24, 3), dtype=np.uint8)).save(tmp_path / "img" / c / "x.png")
    (tmp_path / "f.py").write_text(FACTORY)


def cfg(tmp_path, model, dataset_params=None):
    return load({"model": {"name": f"python:{tmp_path / 'f.py'}:build", **model},
                 "dataset": {"name": "imagefolder", "root": str(tmp_path / "img"), "num_workers": 0,
                             "params": dataset_params or {}},
                 "explainers": ["saliency"], "output": {"dir": str(tmp_path / "out")}})


def test_model_section_reaches_the_model_and_the_dataset(tmp_path):
    setup(tmp_path)
    plan = build_plan(cfg(tmp_path, {"params": {"crop": 0.5}, "class_names": ["a", "b"], "mean": [0.4] * 3,
                                     "std": [0.2] * 3}), tmp_path / "run")
    assert plan.model.class_names == ["a", "b"] and plan.model.mean.flatten().tolist() == pytest.approx([0.4] * 3)
    assert plan.model.input_size == (16, 16) and plan.dataset.image_size == 16
    assert (plan.dataset.crop_fraction, plan.dataset.interpolation) == (0.5, "bicubic")  # the model's own
    plan = build_plan(cfg(tmp_path, {"params": {"crop": 0.5}}, {"crop_fraction": 1.0}), tmp_path / "run2")
    assert plan.dataset.crop_fraction == 1.0  # the config's own value wins


def test_layout_reaches_the_models_forwards(tmp_path):
    setup(tmp_path)
    assert build_plan(cfg(tmp_path, {}), tmp_path / "run").model.channels_last  # the default: oneDNN's layout
    assert not build_plan(cfg(tmp_path, {"layout": "nchw"}), tmp_path / "run2").model.channels_last
    with pytest.raises(ConfigError, match="channels_last.*nchw"):
        cfg(tmp_path, {"layout": "nhwc"})


def test_more_dataset_classes_than_model_classes_is_a_data_error(tmp_path):
    setup(tmp_path, classes=("a", "b", "c"))
    with pytest.raises(DataError, match=r"has 3 classes \(a, b, c\) but model 'python:.*f.py:build' scores 2"):
        build_plan(cfg(tmp_path, {"input_size": 16}), tmp_path / "run")


def test_class_names_must_match_the_logits(tmp_path):
    setup(tmp_path)
    with pytest.raises(ModelError, match="has 3 class_names but scores 2 classes"):
        build_plan(cfg(tmp_path, {"input_size": 16, "class_names": ["a", "b", "c"]}), tmp_path / "run")


def test_unknown_factory_params_of_zoo_families_fail_validation():
    with pytest.raises(ConfigError, match="model.params: model 'torchvision' takes no parameter 'num_clases'"):
        load({"model": {"name": "torchvision:resnet18", "params": {"num_clases": 3}}})
    with pytest.raises(ConfigError, match="model.score"):
        load({"model": {"score": "tanh"}})


def test_cli_lists_which_explainers_apply_to_a_model(tmp_path):
    pytest.importorskip("timm")
    result = CliRunner().invoke(app, ["list", "explainers", "--model", "timm:vit_tiny_patch16_224"])
    assert result.exit_code == 0, result.output
    lines = {line.split(":")[0]: line for line in result.output.splitlines() if not line.startswith(" ")}
    assert "[applies]" in lines["saliency"] and "[applies]" in lines["integrated_gradients"]
    assert "[applies]" in lines["gradcam"] and "[applies]" in lines["ablationcam"]  # token layers as maps
    assert "[does not apply: " in lines["cam"] and "reads its class token" in lines["cam"]
    assert "[does not apply: " in lines["cameras"] and "only takes 224×224 inputs" in lines["cameras"]

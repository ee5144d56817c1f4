"""End to end: `xai run` on every model source (timm ResNet and ViT, a factory file, a Hugging Face
folder, a TorchScript file) over a small image folder with COCO annotations written here, and the two
example configs (configs/examples/my-model.yaml, timm.yaml) on tiny data."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from PIL import Image
from torch import nn
from typer.testing import CliRunner

from xaibench.cli import app

REPO = Path(__file__).resolve().parents[1]
SIZE = 32
pytestmark = pytest.mark.slow


def image_folder(root: Path) -> tuple[Path, Path, Path]:
    """cat/ and dog/ with 2 images each (48×40), a COCO JSON with a box and polygon per image, and a
    folder of PNG masks of the same objects."""
    rng = np.random.default_rng(0)
    images, anns = [], []
    masks = root / "masks"
    for i in range(4):
        cls = ("cat", "dog")[i % 2]
        (root / "images" / cls).mkdir(parents=True, exist_ok=True)
        (masks / cls).mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (40, 48, 3), dtype=np.uint8)).save(root / "images" / cls / f"{i}.png")
        x0, y0 = 8 + 4 * i, 6 + 2 * i
        images.append({"id": i + 1, "file_name": f"{cls}/{i}.png", "width": 48, "height": 40})
        anns.append({"id": i + 1, "image_id": i + 1, "category_id": 1 + i % 2, "bbox": [x0, y0, 16, 14],
                     "segmentation": [[x0, y0, x0 + 16, y0, x0 + 16, y0 + 14, x0, y0 + 14]]})
        mask = np.zeros((40, 48), dtype=np.uint8)
        mask[y0:y0 + 14, x0:x0 + 16] = 1
        Image.fromarray(mask).save(masks / cls / f"{i}.png")
    coco = root / "instances.json"
    coco.write_text(json.dumps({"images": images, "annotations": anns,
                                "categories": [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}]}))
    return root / "images", coco, masks


def config(tmp_path: Path, name: str, model: dict, explainer: str) -> Path:
    images, coco, _ = image_folder(tmp_path / "data")
    cfg = {
        "name": name, "model": model,
        "dataset": {"name": "imagefolder", "root": str(images), "image_size": SIZE, "batch_size": 4,
                    "num_workers": 0, "params": {"annotations": str(coco)}},
        "explainers": [explainer],
        "metrics": [{"name": "deletion", "params": {"steps": 8}}, "pointing_game"],
        "output": {"dir": str(tmp_path / "results"), "figures": False},
    }
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def run_cli(*args: str) -> None:
    result = CliRunner().invoke(app, ["run", *args, "-q"], catch_exceptions=False)
    assert result.exit_code == 0, result.output


def summary(results: Path) -> pd.DataFrame:
    (run,) = [p for p in results.iterdir() if p.is_dir()]
    return pd.read_csv(run / "summary.csv")


def check_scored(results: Path, explainer: str) -> None:
    table = summary(results).set_index(["explainer", "metric"])
    for metric in ("deletion", "pointing_game"):
        row = table.loc[(explainer, metric)]
        assert row["n"] == 4 and np.isfinite(row["mean"]), (explainer, metric, row.to_dict())


FACTORY = """
from torch import nn

def build(classes=2):
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1, stride=2),
                         nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, classes))
"""


def hf_folder(path: Path) -> Path:
    transformers = pytest.importorskip("transformers")
    cfg = transformers.ResNetConfig(embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], layer_type="basic",
                                    num_labels=2)
    transformers.ResNetForImageClassification(cfg).save_pretrained(path)
    transformers.ViTImageProcessor(size={"height": SIZE, "width": SIZE}).save_pretrained(path)
    return path


def torchscript_file(path: Path) -> Path:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 2))
    torch.jit.save(torch.jit.script(net.eval()), str(path))
    return path


@pytest.mark.parametrize("source", ["timm_resnet", "timm_vit", "python", "hf", "torchscript"])
def test_xai_run_on_each_model_source(tmp_path, source):
    if source.startswith("timm"):
        pytest.importorskip("timm")
    if source == "timm_resnet":
        model, explainer = {"name": "timm:resnet18", "weights": "none", "params": {"num_classes": 2}}, "gradcam"
    elif source == "timm_vit":
        model = {"name": "timm:vit_tiny_patch16_224", "weights": "none", "params": {"num_classes": 2, "img_size": SIZE}}
        explainer = "saliency"  # CAMs on token layers: issue #19
    elif source == "python":
        (tmp_path / "net.py").write_text(FACTORY)
        model = {"name": f"python:{tmp_path / 'net.py'}:build", "params": {"classes": 2},
                 "mean": [0.5] * 3, "std": [0.25] * 3, "input_size": SIZE}
        explainer = "gradcam"
    elif source == "hf":
        model, explainer = {"name": f"hf:{hf_folder(tmp_path / 'hf')}"}, "gradcam"
    else:
        model = {"name": f"torchscript:{torchscript_file(tmp_path / 'net.pt')}", "input_size": SIZE}
        explainer = "saliency"  # no hookable layers
    run_cli(str(config(tmp_path, source, model, explainer)))
    check_scored(tmp_path / "results", explainer)


def test_example_my_model_config_runs_on_tiny_data(tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)  # the factory path in the config is relative to the repository
    images, _, masks = image_folder(tmp_path / "data")
    run_cli(str(REPO / "configs/examples/my-model.yaml"), "--set", f"dataset.root={images}",
            "--set", f"dataset.params.annotations={masks}", "--set", "model.input_size=32",
            "--set", f"output.dir={tmp_path / 'results'}", "--set", "output.figures=false",
            "--set", "explainers.2.params.steps=4")
    table = summary(tmp_path / "results").set_index(["explainer", "metric"])
    assert set(table.index.get_level_values(0)) == {"gradcam", "saliency", "integrated_gradients"}
    assert table.loc[("gradcam", "relevance_mass_accuracy"), "n"] == 4  # the PNG masks reached the metric


def test_example_timm_config_runs_on_tiny_data(tmp_path):
    pytest.importorskip("timm")
    images, coco, _ = image_folder(tmp_path / "data")
    # offline and fast: random weights, and ResNet-18 for the shipped ResNet-50 (the same timm source and
    # pretrained_cfg path; ResNet-50's traced copy for deletion/insertion alone takes most of a minute here)
    run_cli(str(REPO / "configs/examples/timm.yaml"), "--set", f"dataset.root={images}",
            "--set", f"dataset.params.annotations={coco}", "--set", "model.weights=none",
            "--set", "model.name=timm:resnet18",
            "--set", "dataset.image_size=32", "--set", f"output.dir={tmp_path / 'results'}",
            "--set", "output.figures=false", "--set", "explainers.3.params.steps=4")
    table = summary(tmp_path / "results").set_index(["explainer", "metric"])
    assert table.loc[("gradcam", "pointing_game"), "n"] == 4

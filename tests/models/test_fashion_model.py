"""The shipped Fashion-MNIST CNN: architecture, exact CAM head, checkpoint, and its accuracy on the Debian test set."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from xaibench.datasets.mnist import DEBIAN_FASHION_MNIST, MNIST
from xaibench.errors import ModelError
from xaibench.models.fashion import CHECKPOINT, FashionVGG, checkpoint_info
from xaibench.models.zoo import load_model

REPO = Path(__file__).resolve().parents[2]
needs_fashion_mnist = pytest.mark.skipif(
    not Path(DEBIAN_FASHION_MNIST).is_dir(),
    reason=f"Fashion-MNIST not installed at {DEBIAN_FASHION_MNIST} (apt-get install dataset-fashion-mnist)",
)


def test_architecture_and_auto_layer():
    model = load_model("fashion-mnist-vgg", weights="none")
    assert model.input_size == (28, 28) and model.class_names[9] == "Ankle boot"
    assert model.resolve_layer("auto") == "features.relu3_2"
    x = torch.randn(3, 3, 28, 28, generator=torch.Generator().manual_seed(0))
    with torch.no_grad(), model.capture("auto") as cap:
        logits = model(x)
    assert logits.shape == (3, 10) and cap.activation.shape == (3, 64, 7, 7)
    fc = model.module.fc  # GAP + linear on the auto layer: the exact CAM head
    torch.testing.assert_close(logits, cap.activation.mean((2, 3)) @ fc.weight.T + fc.bias)
    convs = [n for n, m in model.module.named_modules() if isinstance(m, torch.nn.Conv2d)]
    assert convs == ["features.conv1_1", "features.conv2_1", "features.conv2_2", "features.conv3_1", "features.conv3_2"]


def test_normalization_uses_fashion_mnist_statistics():
    model = load_model("fashion-mnist-vgg", weights="none")
    p = torch.full((1, 3, 2, 2), 0.2860)
    torch.testing.assert_close(model.normalize(p), torch.zeros_like(p))


def test_shipped_checkpoint_loads_and_records_its_accuracy():
    assert CHECKPOINT.is_file(), "run scripts/train_fashion_mnist.py"
    model = load_model("fashion-mnist-vgg")
    state = torch.load(CHECKPOINT, map_location="cpu", weights_only=True)
    assert torch.equal(model.module.fc.weight, state["fc.weight"])
    info = checkpoint_info()
    assert info["dataset"] == "Fashion-MNIST" and info["test_images"] == 10_000
    assert info["test_accuracy"] > 0.85
    assert CHECKPOINT.stat().st_size < 1_000_000


def test_weight_errors(tmp_path):
    with pytest.raises(ModelError, match="no architecture suffix"):
        load_model("fashion-mnist-vgg:big")
    bad = tmp_path / "bad.pt"
    torch.save(FashionVGG(widths=(8, 16, 32)).state_dict(), bad)
    with pytest.raises(ModelError, match="do not fit"):
        load_model("fashion-mnist-vgg", weights=str(bad))


@needs_fashion_mnist
def test_accuracy_on_test_images_matches_the_record():
    """The first 2000 test images: within 2.5 points of the accuracy the training command measured on all 10000."""
    model = load_model("fashion-mnist-vgg")
    data = MNIST(split="test", image_size=28)
    idx = slice(0, 2000)
    with torch.inference_mode():
        pred = model(model.normalize(data.pixels(idx))).argmax(1)
    accuracy = float((pred == data.labels[idx]).float().mean())
    assert abs(accuracy - checkpoint_info()["test_accuracy"]) < 0.025


@pytest.mark.slow
@needs_fashion_mnist
def test_training_command_writes_checkpoint_and_accuracy(tmp_path):
    out = tmp_path / "fm.pt"
    cmd = [sys.executable, str(REPO / "scripts" / "train_fashion_mnist.py"), "--limit", "2048", "--epochs", "1",
           "--batch-size", "64", "--threads", "1", "--out", str(out)]
    subprocess.run(cmd, check=True, cwd=REPO, capture_output=True, timeout=900)
    info = json.loads(out.with_suffix(".json").read_text())
    assert info["train_images"] == 2048 and info["test_images"] == 10_000
    assert 0.4 < info["test_accuracy"] <= 1.0  # 32 steps on 2048 images: far above chance (0.1)
    assert load_model("fashion-mnist-vgg", weights=str(out)).module.fc.weight.shape == (10, 64)

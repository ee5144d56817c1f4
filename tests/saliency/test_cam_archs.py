"""Every CAM-family explainer runs on each torchvision family (random weights) with the `layer`
parameter: maps of the input's shape, finite, not all zero (slow: up to a minute per model on 2 busy cores). Perturbation methods use an early
layer with few channels to keep the test fast; the gradient variants are checked at the auto
layer against pytorch-grad-cam in test_cam.py."""

import pytest
import torch
from cam_models import images, model, small_densenet

from xaibench.saliency import EXPLAINERS

EARLY = {
    "resnet18": "layer1",
    "vgg11": "features.2",
    "densenet": "features.pool0",  # torchvision's DenseNet class, narrow (densenet121 took minutes here)
    "mobilenet_v3_small": "features.1",
    "efficientnet_b0": "features.1",
    "convnext_tiny": "features.0",
}
METHODS = {
    "scorecam": {"chunk_size": 128},
    "sscam": {"num_samples": 1, "chunk_size": 128},
    "ablationcam": {"chunk_size": 128},
    "smoothgradcampp": {"num_samples": 2},
    "msgcam": {"scales": 2, "max_size": 32},
    "cameras": {"step": 32, "max_size": 100},
}


@pytest.mark.slow
@pytest.mark.parametrize("arch", list(EARLY))
def test_every_method_runs_on_the_architecture(arch, monkeypatch):
    m, x = (small_densenet() if arch == "densenet" else model(arch)), images(1)
    # the folded copy for no-grad loops (TorchScript then; torch.fx now) took ~30 s per architecture here; it is
    # checked against the model in tests/models/test_fused.py, and these methods run the same without it
    monkeypatch.setattr(m.fused, "enabled", False)
    for name, params in METHODS.items():
        maps = EXPLAINERS.build(name, layer=EARLY[arch], **params)(m, x, torch.tensor([3]))
        assert maps.shape == (1, 64, 64) and maps.dtype == torch.float32, name
        assert torch.isfinite(maps).all(), name
        # MSG-CAM may legitimately be all zero (every group score α_r ≤ 0 before its final ReLU)
        assert name == "msgcam" or maps.abs().amax() > 0, name

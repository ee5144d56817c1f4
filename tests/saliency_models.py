"""Small models and helpers shared by the saliency tests (not a test module)."""

import torch
import torch.nn.functional as F
from torch import nn

from xaibench.models.adapter import ModelAdapter


class SmallCNN(nn.Module):
    """conv-BN-ReLU(inplace) → conv → functional relu → conv-ReLU → avgpool → linear."""

    def __init__(self, classes: int = 5, functional: bool = True):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(8)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1)
        self.relu2 = nn.ReLU()
        self.conv3 = nn.Conv2d(8, 12, 3, padding=1, stride=2)
        self.relu3 = nn.ReLU()
        self.fc = nn.Linear(12, classes)
        self.functional = functional

    def forward(self, x):
        h = self.relu1(self.bn1(self.conv1(x)))
        h = self.conv2(h)
        h = F.relu(h) if self.functional else self.relu2(h)
        h = self.relu3(self.conv3(h))
        return self.fc(h.mean((2, 3)))


def small_cnn(seed: int = 0, classes: int = 5, functional: bool = True) -> ModelAdapter:
    torch.manual_seed(seed)
    net = SmallCNN(classes, functional)
    with torch.no_grad():  # non-trivial BatchNorm statistics
        net.bn1.running_mean.uniform_(-0.2, 0.2)
        net.bn1.running_var.uniform_(0.5, 2.0)
        net.bn1.weight.uniform_(0.5, 1.5)
    return ModelAdapter.wrap(net.eval(), input_size=16, name="small_cnn", default_layer="conv3")


def resnet18(seed: int = 0, classes: int = 6) -> ModelAdapter:
    import torchvision

    torch.manual_seed(seed)
    return ModelAdapter.wrap(torchvision.models.resnet18(weights=None, num_classes=classes).eval(), input_size=48)


def narrow_vgg_bn(seed: int = 0, classes: int = 10) -> ModelAdapter:
    """torchvision's VGG with BatchNorm (`make_layers(batch_norm=True)`, its avgpool and an MLP head),
    narrow: the family's structure without vgg11_bn's 120M-parameter classifier."""
    import torchvision

    torch.manual_seed(seed)
    net = torchvision.models.vgg.VGG.__new__(torchvision.models.vgg.VGG)
    nn.Module.__init__(net)
    net.features = torchvision.models.vgg.make_layers([8, "M", 16, "M", 32, 32, "M", 32, 32, "M"], batch_norm=True)
    net.avgpool = nn.AdaptiveAvgPool2d((7, 7))
    net.classifier = nn.Sequential(nn.Linear(32 * 49, 64), nn.ReLU(True), nn.Dropout(), nn.Linear(64, classes))
    return ModelAdapter.wrap(net.eval(), input_size=32, name="vgg_bn-narrow")


def narrow_densenet(seed: int = 0, classes: int = 10, input_size: int = 32) -> ModelAdapter:
    """torchvision's DenseNet class (dense blocks, transitions, norm5 + in-place ReLU head), narrow."""
    import torchvision

    torch.manual_seed(seed)
    net = torchvision.models.DenseNet(growth_rate=8, block_config=(2, 2, 2, 2), num_init_features=16, bn_size=2,
                                      num_classes=classes)
    return ModelAdapter.wrap(net.eval(), input_size=input_size, name="densenet-narrow")


def pearson(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-image Pearson correlation of two batches of maps/attributions."""
    a = a.flatten(1).double()
    b = b.flatten(1).double()
    a = a - a.mean(1, keepdim=True)
    b = b - b.mean(1, keepdim=True)
    return (a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1))

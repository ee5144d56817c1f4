"""Model sources: python: (the user's factory), torchscript:, timm:, hf:, and what each gives the adapter."""

from __future__ import annotations

import json
import sys
import textwrap

import pytest
import torch
from torch import nn

import xaibench as xb
from xaibench.errors import LayerError, ModelError

FACTORY = '''
import torch
from torch import nn


class Net(nn.Module):
    def __init__(self, classes, width, channels):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(channels, width, 3, padding=1), nn.ReLU(),
                                      nn.Conv2d(width, width, 3, padding=1, stride=2), nn.ReLU())
        self.head = nn.Linear(width, classes)

    def forward(self, x):
        return {"logits": self.head(self.features(x).mean((2, 3))), "features": None}


def build(classes=3, width=8, channels=3):
    torch.manual_seed(0)
    return Net(classes, width, channels)


def broken(classes=3):
    return undefined_name + classes
'''


@pytest.fixture
def factory_file(tmp_path):
    path = tmp_path / "my_net.py"
    path.write_text(FACTORY)
    return path


def test_python_factory_from_a_file_with_params_weights_and_preprocessing(factory_file, tmp_path):
    m = xb.load_model(f"python:{factory_file}:build", params={"classes": 4, "width": 6}, mean=[0.5] * 3,
                      std=[0.25] * 3, input_size=20, class_names=list("abcd"))
    assert (m.input_size, m.class_names, m.num_classes, m.channels) == ((20, 20), list("abcd"), 4, 3)
    assert m.module.head.out_features == 4 and m.resolve_layer("auto") == "features"
    assert m(torch.zeros(2, 3, 20, 20)).shape == (2, 4)  # the dict output's logits
    torch.save({k: torch.ones_like(v) for k, v in m.module.state_dict().items()}, tmp_path / "w.pt")
    loaded = xb.load_model(f"python:{factory_file}:build", str(tmp_path / "w.pt"), params={"classes": 4, "width": 6})
    assert torch.equal(loaded.module.head.weight, torch.ones(4, 6))


def test_python_factory_from_a_module_and_a_one_channel_model(factory_file, monkeypatch):
    monkeypatch.syspath_prepend(str(factory_file.parent))
    monkeypatch.delitem(sys.modules, "my_net", raising=False)
    m = xb.load_model("python:my_net:build", params={"channels": 1}, mean=[0.5], std=[0.5], input_size=16)
    assert m.channels == 1 and m.resolve_layer("auto") == "features"  # the dry run feeds one channel
    maps = xb.explain(m, torch.randn(2, 1, 16, 16), 0, "gradcam")
    assert maps.shape == (2, 16, 16)


def test_python_factory_mistakes_are_model_errors_that_say_where(factory_file):
    with pytest.raises(ModelError, match=r"has no callable 'biuld'. Did you mean 'build'"):
        xb.load_model(f"python:{factory_file}:biuld")
    with pytest.raises(ModelError, match=r"build\(classes=3, width=8, channels=3\) does not take model.params"):
        xb.load_model(f"python:{factory_file}:build", params={"depth": 3})
    line = FACTORY.splitlines().index("    return undefined_name + classes") + 1
    with pytest.raises(ModelError, match=rf"NameError: name 'undefined_name' is not defined \({factory_file}, line {line}\)"):
        xb.load_model(f"python:{factory_file}:broken")
    with pytest.raises(ModelError, match="python model file not found"):
        xb.load_model("python:no/such/file.py:build")
    with pytest.raises(ModelError, match="must look like python:path/to/file.py:factory"):
        xb.load_model(f"python:{factory_file}")
    with pytest.raises(ModelError, match=r"first convolution 'features.0' takes 1 input channels, but mean/std have 3"):
        xb.load_model(f"python:{factory_file}:build", params={"channels": 1})


def test_outputs_tuples_dicts_named_tuples_and_single_logits():
    from collections import namedtuple

    from xaibench.models.outputs import as_logits

    z = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    out = namedtuple("Out", "aux logits")(torch.zeros(2, 5), z)
    assert torch.equal(as_logits(out), z)  # `logits` wins over position
    assert torch.equal(as_logits((z, torch.zeros(2, 7))), z)  # main head first
    assert torch.equal(as_logits({"logits": z, "loss": None}), z)
    single = torch.tensor([[0.5], [-2.0]])
    assert torch.equal(as_logits(single), torch.tensor([[-0.5, 0.5], [2.0, -2.0]]))
    with pytest.raises(ModelError, match="without a 'logits' key"):
        as_logits({"a": z, "b": z})


class OneLogit(nn.Module):
    """A binary classifier with one logit: the mean of the input's left half minus its right half."""

    def forward(self, x):
        w = x.shape[-1] // 2
        return (x[..., :w].mean((1, 2, 3)) - x[..., w:].mean((1, 2, 3))).unsqueeze(1)


def test_single_logit_model_scores_class_1_by_its_sigmoid_in_metrics():
    m = xb.ModelAdapter.wrap(OneLogit(), mean=(0.0,) * 3, std=(1.0,) * 3, input_size=8)
    x = torch.zeros(1, 3, 8, 8)
    x[..., :4] = 2.0  # logit z = 2
    assert m.probability == "sigmoid" and torch.allclose(m(x), torch.tensor([[-2.0, 2.0]]))
    maps = torch.zeros(1, 8, 8)
    res = xb.evaluate(m, x, maps, 1, "average_drop")  # explanation map all zero: the masked image scores 0
    y, o = torch.sigmoid(torch.tensor(2.0)), torch.sigmoid(torch.tensor(0.0))
    torch.testing.assert_close(res.values, (torch.relu(y - o) / y * 100).view(1))  # softmax would give (0.98-0.5)/0.98


def test_multi_label_score_sigmoid_reaches_the_metrics():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 5))
    x = torch.randn(2, 3, 16, 16)
    maps = torch.rand(2, 16, 16)
    soft = xb.evaluate(xb.ModelAdapter.wrap(net, input_size=16), x, maps, 1, "deletion", steps=4)
    sig_model = xb.ModelAdapter.wrap(net, input_size=16, score="sigmoid")
    sig = xb.evaluate(sig_model, x, maps, 1, "deletion", steps=4)
    with torch.no_grad():
        want = net(x)[:, 1].sigmoid()
    torch.testing.assert_close(sig.curves[:, 0], want)  # the first point: the unperturbed image's sigmoid
    assert not torch.allclose(soft.curves[:, 0], sig.curves[:, 0])


def scripted_file(tmp_path, meta: dict | None = None):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                        nn.Linear(4, 3)).eval()
    path = tmp_path / "model.pt"
    extra = {"xaibench.json": json.dumps(meta)} if meta else {}
    torch.jit.save(torch.jit.trace(net, torch.randn(1, 3, 16, 16)), str(path), _extra_files=extra)
    return path, net


def test_torchscript_runs_layer_free_explainers_and_refuses_layers_clearly(tmp_path):
    path, net = scripted_file(tmp_path, {"mean": [0.5] * 3, "std": [0.25] * 3, "input_size": 16,
                                         "class_names": ["a", "b", "c"]})
    m = xb.load_model(f"torchscript:{path}")
    assert (m.input_size, m.class_names, m.hookable) == ((16, 16), ["a", "b", "c"], False)
    x = torch.randn(2, 3, 16, 16)
    torch.testing.assert_close(m(x), net(x))
    xg = x.clone().requires_grad_(True)
    want = torch.autograd.grad(net(xg)[:, 2].sum(), xg)[0]
    torch.testing.assert_close(xb.explain(m, x, 2, "saliency", reduce="sum"), want.abs().sum(1))
    for name in ("gradcam", "guided_backprop", "lrp"):
        with pytest.raises(LayerError, match="TorchScript model: it has no hookable layers"):
            xb.explain(m, x, 2, name)
    table = dict((n, doc) for n, doc, _ in xb.api.describe("explainers", f"torchscript:{path}"))
    assert table["saliency"].startswith("[applies]") and table["occlusion"].startswith("[applies]")
    assert table["gradcam"].startswith("[does not apply: ") and table["guided_backprop"].startswith("[does not apply")
    with pytest.raises(ModelError, match="carries its own weights"):
        xb.load_model(f"torchscript:{path}", weights="other.pt")


timm = pytest.importorskip("timm")


def test_timm_preprocessing_comes_from_pretrained_cfg():
    m = xb.load_model("timm:resnet18", weights="none", params={"num_classes": 5})
    cfg = timm.create_model("resnet18", pretrained=False).pretrained_cfg
    assert m.input_size == tuple(cfg["input_size"][1:]) and m.crop_fraction == cfg["crop_pct"]
    assert m.mean.flatten().tolist() == pytest.approx(cfg["mean"]) and m.interpolation == cfg["interpolation"]
    assert m.resolve_layer("auto") == "layer4" and m.num_classes == 5
    grey = xb.load_model("timm:resnet18", weights="none", params={"num_classes": 2, "in_chans": 1})
    assert grey.channels == 1


def test_timm_vit_runs_gradients_and_cams_on_its_token_layers():
    m = xb.load_model("timm:vit_tiny_patch16_224", weights="none", params={"num_classes": 3, "img_size": 32})
    assert m.input_size == (32, 32)
    x = torch.randn(1, 3, 32, 32)
    assert xb.explain(m, x, 0, "saliency").shape == (1, 32, 32)
    assert m.resolve_layer("auto") == "blocks.11.norm1"  # a 2×2 patch grid behind the class token
    assert xb.explain(m, x, 0, "gradcam").shape == (1, 32, 32)


def test_timm_offline_weights_error_says_where_to_put_the_file(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(ModelError, match=rf"models--timm--resnet18.a1_in1k folder into {tmp_path}.*weights: path/to"):
        xb.load_model("timm:resnet18", weights="default")
    with pytest.raises(ModelError, match="unknown timm model 'resnet81'. Did you mean 'resnet18'"):
        xb.load_model("timm:resnet81", weights="none")


def test_timm_local_weights_file(tmp_path):
    from safetensors.torch import save_file

    src = timm.create_model("resnet18", pretrained=False, num_classes=3)
    save_file({k: v.contiguous() for k, v in src.state_dict().items()}, str(tmp_path / "w.safetensors"))
    m = xb.load_model("timm:resnet18", weights=str(tmp_path / "w.safetensors"), params={"num_classes": 3})
    torch.testing.assert_close(m.module.fc.weight, src.fc.weight)


def hf_folder(tmp_path, **config):
    transformers = pytest.importorskip("transformers")
    cfg = transformers.ResNetConfig(embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], layer_type="basic",
                                    num_labels=3, id2label={0: "cat", 1: "dog", 2: "cow"},
                                    label2id={"cat": 0, "dog": 1, "cow": 2}, **config)
    torch.manual_seed(0)
    transformers.ResNetForImageClassification(cfg).save_pretrained(tmp_path / "hf")
    transformers.ConvNextImageProcessor(size={"shortest_edge": 48}, crop_pct=0.75, image_mean=[0.4, 0.5, 0.6],
                                        image_std=[0.2, 0.3, 0.4], resample=3).save_pretrained(tmp_path / "hf")
    return tmp_path / "hf"


def test_hf_folder_with_its_processor_and_labels(tmp_path):
    folder = hf_folder(tmp_path)
    m = xb.load_model(f"hf:{folder}")
    assert (m.input_size, m.crop_fraction, m.interpolation) == ((48, 48), 0.75, "bicubic")
    assert m.mean.flatten().tolist() == pytest.approx([0.4, 0.5, 0.6]) and m.class_names == ["cat", "dog", "cow"]
    assert m.probability == "softmax"
    x = torch.randn(2, 3, 48, 48)
    assert m(x).shape == (2, 3)  # the ModelOutput's logits
    assert xb.explain(m, x, 1, "gradcam").shape == (2, 48, 48)
    multi = xb.load_model(f"hf:{hf_folder(tmp_path / 'm', problem_type='multi_label_classification')}")
    assert multi.probability == "sigmoid"
    with pytest.raises(ModelError, match="no config.json"):
        xb.load_model(f"hf:{tmp_path / 'nothing'}")


def test_zoo_models_take_overrides_and_check_params():
    m = xb.load_model("torchvision:resnet18", weights="none", params={"num_classes": 4}, mean=[0.5] * 3,
                      std=[0.5] * 3, input_size=[32, 48], class_names=list("wxyz"), score="sigmoid")
    assert (m.input_size, m.class_names, m.probability) == ((32, 48), list("wxyz"), "sigmoid")
    with pytest.raises(ModelError, match="takes no parameter 'num_clases'. Did you mean 'num_classes'"):
        xb.load_model("torchvision:resnet18", weights="none", params={"num_clases": 4})


def test_example_factory_file_is_valid_python():
    from pathlib import Path

    source = (Path(__file__).parents[2] / "configs/examples/my_net.py").read_text()
    compile(textwrap.dedent(source), "my_net.py", "exec")


def test_torchscript_randomization_matches_the_python_models():
    """The sanity metric re-initializes a TorchScript model's layers as PyTorch's reset_parameters would:
    the same scores as on the Python model it was scripted from, and the weights restored afterwards."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                        nn.Flatten(), nn.Linear(4, 3)).eval()
    net[1].running_var.fill_(2.0)
    scripted = torch.jit.script(net)
    before = {k: v.clone() for k, v in scripted.state_dict().items()}
    x = torch.randn(2, 3, 16, 16)

    def scores(module):
        m = xb.ModelAdapter.wrap(module, input_size=16)
        maps = xb.explain(m, x, 1, "saliency")
        return xb.evaluate(m, x, maps, 1, "randomization", explain=lambda mm, xs, t: xb.explain(mm, xs, t, "saliency"))

    got, want = scores(scripted), scores(net)
    torch.testing.assert_close(got.curves, want.curves)
    assert got.curves[:, -1].max() < 0.99  # the maps did change once the weights were re-initialized
    assert all(torch.equal(v, scripted.state_dict()[k]) for k, v in before.items())

"""The fused inference copy: same logits as the model, rebuilt when parameters change (also through
`.data`), never used under hooks, autocast, or for a model torch.fx cannot trace."""

import torch
from torch import nn

import xaibench as xb
from xaibench.models.edits import zeroed_filters


def bn_model() -> xb.ModelAdapter:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 8, 3),
                        nn.BatchNorm2d(8), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 4))
    for bn in (net[1], net[4]):  # non-trivial statistics, so folding changes the weights
        bn.running_mean.uniform_(-1, 1)
        bn.running_var.uniform_(0.5, 2)
        bn.weight.data.uniform_(0.5, 1.5)
    return xb.ModelAdapter.wrap(net.eval(), mean=(0, 0, 0), std=(1, 1, 1))  # a trained model, in eval mode


def fused_logits(model: xb.ModelAdapter, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad(), model.fused_inference():
        return model(x)


def test_fused_copy_gives_the_models_logits_and_is_built_once():
    model = bn_model()
    x = torch.randn(5, 3, 12, 12)
    with torch.no_grad():
        plain = model.module(x)
    torch.testing.assert_close(fused_logits(model, x), plain, rtol=1e-5, atol=1e-5)
    folded = model.fused.module_for(x)
    assert isinstance(folded, torch.fx.GraphModule)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())  # folded away
    assert any(n.target is torch.relu_ for n in folded.graph.nodes)  # ReLUs with one reader run in place
    fused_logits(model, x[:2])
    assert model.fused.module_for(x) is folded  # same parameters: no rebuild
    before = model.counter.snapshot()
    fused_logits(model, x)
    assert model.counter.since(before)["forward_images"] == 5


def test_parameter_change_in_place_refolds_the_copy():
    model = bn_model()
    x = torch.randn(4, 3, 12, 12)
    fused_logits(model, x)
    traced = model.fused.module_for(x)
    with zeroed_filters(model.module[3], model.module[4], torch.tensor([0, 1, 2, 3, 4, 5])):
        with torch.no_grad():
            want = model.module(x)
        got = fused_logits(model, x)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    with torch.no_grad():
        torch.testing.assert_close(fused_logits(model, x), model.module(x), rtol=1e-5, atol=1e-5)
        assert not torch.allclose(want, model.module(x))  # the pruning did change the logits
    assert model.fused.module_for(x) is traced  # new values re-folded into the same traced copy


class TwoReaders(nn.Module):
    """conv → (BatchNorm, and the conv output again): the BatchNorm cannot be folded."""

    def __init__(self):
        super().__init__()
        self.conv, self.bn, self.fc = nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Linear(4, 2)

    def forward(self, x):
        h = self.conv(x)
        return self.fc((torch.relu(self.bn(h)) + h).mean((2, 3)))


def test_an_unfolded_batchnorm_follows_its_statistics():
    torch.manual_seed(0)
    model = xb.ModelAdapter.wrap(TwoReaders().eval(), mean=(0, 0, 0), std=(1, 1, 1))
    x = torch.randn(3, 3, 8, 8)
    fused_logits(model, x)
    assert any(isinstance(m, nn.BatchNorm2d) for m in model.fused.module_for(x).modules())
    model.module.bn.running_mean.data += 0.5
    with torch.no_grad():
        want = model.module(x)
    torch.testing.assert_close(fused_logits(model, x), want, rtol=1e-5, atol=1e-5)


def test_parameter_change_through_data_rebuilds_the_copy():
    """`.data` edits bypass the version counter; the fingerprint's bit sums still see them."""
    model = bn_model()
    x = torch.randn(4, 3, 12, 12)
    fused_logits(model, x)
    model.module[3].weight.data.mul_(-1.5)  # same storage, same version counter
    with torch.no_grad():
        want = model.module(x)
    torch.testing.assert_close(fused_logits(model, x), want, rtol=1e-5, atol=1e-5)
    model.module[4].running_mean.data[2] += 1.0  # a buffer, one entry
    with torch.no_grad():
        want = model.module(x)
    torch.testing.assert_close(fused_logits(model, x), want, rtol=1e-5, atol=1e-5)


def test_hooks_autocast_and_untraceable_models_run_the_model_as_is():
    model = bn_model()
    x = torch.randn(2, 3, 12, 12)
    seen = []
    handle = model.module[2].register_forward_hook(lambda m, i, o: seen.append(o.shape))
    fused_logits(model, x)
    handle.remove()
    assert seen == [torch.Size([2, 8, 12, 12])] and model.fused.module_for(x) is not None
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert model.fused.module_for(x) is None

    class DataDependent(nn.Module):  # the trace would bake in one branch: the check batch catches it
        def forward(self, x):
            return x.flatten(1)[:, :3] if x.shape[0] < 3 else -x.flatten(1)[:, :3]

    odd = xb.ModelAdapter.wrap(DataDependent(), mean=(0, 0, 0), std=(1, 1, 1))
    y = torch.randn(4, 3, 4, 4)
    torch.testing.assert_close(fused_logits(odd, y), -y.flatten(1)[:, :3])
    assert odd.fused.module_for(y) is None and not odd.fused.enabled


def test_a_large_model_gets_the_fused_convolution_copy_which_follows_its_parameters(monkeypatch):
    """From MKL_MIN_PARAMETERS on (ResNet-50-sized models) each convolution of the copy is one oneDNN
    call with its ReLU, or with the residual addition and ReLU (prepacked weights): same logits, rebuilt
    after a `.data` edit, the caller's module untouched; without the fused operator the copy is torch.fx's
    optimize_for_inference; smaller models keep the channels-last fold."""
    import torchvision

    from xaibench.models import fused

    torch.manual_seed(0)
    net = torchvision.models.resnet18(num_classes=5).eval()
    with torch.no_grad():
        for m in net.modules():  # trained-like statistics, so folding changes the weights
            if isinstance(m, nn.BatchNorm2d):
                m.running_var.uniform_(0.5, 2)
                m.weight.uniform_(0.5, 1.5)
    model = xb.ModelAdapter.wrap(net, input_size=32)
    x = torch.randn(3, 3, 32, 32)
    state = {k: v.clone() for k, v in net.state_dict().items()}
    with torch.no_grad():
        plain = model.module(x)
    torch.testing.assert_close(fused_logits(model, x), plain, rtol=1e-4, atol=1e-4)
    assert isinstance(model.fused._folded, fused.PointwiseCopy)
    calls = [str(n.target) for n in model.fused._folded.module.graph.nodes if n.op == "call_function"]
    attrs = [n.args[-5] if "binary" in str(n.target) else n.args[-3] for n in model.fused._folded.module.graph.nodes
             if n.op == "call_function" and "_convolution_pointwise" in str(n.target)]
    # resnet18: 20 convolutions — the stem's and each block's first with its ReLU, each block's last with
    # the residual addition and ReLU, the 3 downsampling ones alone; no ReLU or addition is left over
    assert (attrs.count("relu"), attrs.count("add"), attrs.count("none")) == (9, 8, 3)
    assert not any("relu" in c or "add" in c for c in calls if "_convolution_pointwise" not in c)
    assert all(torch.equal(v, net.state_dict()[k]) for k, v in state.items())  # the caller's weights as they were
    assert not any(p.is_mkldnn for p in net.parameters())
    net.fc.weight.data.mul_(-2.0)
    net.layer4[1].conv2.weight.data.mul_(-1.0)  # a prepacked weight: the copy is rebuilt
    with torch.no_grad():
        want = model.module(x)
    torch.testing.assert_close(fused_logits(model, x), want, rtol=1e-4, atol=1e-4)
    monkeypatch.setattr(fused.onednn_fusion, "available", lambda: False)
    without = xb.ModelAdapter.wrap(net, input_size=32)
    torch.testing.assert_close(fused_logits(without, x), want, rtol=1e-4, atol=1e-4)
    assert isinstance(without.fused._folded, fused.MklCopy)
    assert any(type(m).__name__.startswith("Mkldnn") for m in without.fused._folded.module.modules())
    monkeypatch.setattr(fused, "MKL_MIN_PARAMETERS", 10**9)  # the same model below the threshold: the fold
    small = xb.ModelAdapter.wrap(net, input_size=32)
    torch.testing.assert_close(fused_logits(small, x), want, rtol=1e-4, atol=1e-4)
    assert isinstance(small.fused._folded, fused.FoldedCopy)


def test_the_fingerprint_sees_data_edits_a_plain_bit_sum_misses():
    """A 32-bit sum of bit patterns wraps: doubling and negating a 512-value tensor adds 512·(2²³ + 2³¹)
    ≡ 0 (mod 2³²), and a permutation adds nothing. The position-weighted int64 sum sees both."""
    from xaibench.models.fused import bit_sums

    net = nn.Linear(64, 8)  # 512 weights
    before = bit_sums(net)
    net.weight.data.mul_(-2.0)
    after = bit_sums(net)
    assert after != before
    net.weight.data.copy_(net.weight.data.flip(0))  # rows swapped: the same values elsewhere
    assert bit_sums(net) != after

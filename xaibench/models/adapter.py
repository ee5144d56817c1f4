"""ModelAdapter: everything model-specific behind one object — input normalization, named
layers, the default target layer, activation/gradient capture, and counted model passes.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from ..errors import LayerError, did_you_mean
from .fused import FusedInference
from .layers import last_conv_block

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass
class PassCounter:
    """Images that went through the model's forward and backward (to the logits), counted."""

    forward_images: int = 0
    backward_images: int = 0
    forward_calls: int = 0
    backward_calls: int = 0

    def snapshot(self) -> dict[str, int]:
        return dict(
            forward_images=self.forward_images,
            backward_images=self.backward_images,
            forward_calls=self.forward_calls,
            backward_calls=self.backward_calls,
        )

    def since(self, before: dict[str, int]) -> dict[str, int]:
        now = self.snapshot()
        return {k: now[k] - before[k] for k in now}


@dataclass
class Capture:
    """What `ModelAdapter.capture` recorded: the last activation of each layer (a graph leaf that
    requires grad when autograd is on, so a backward can stop there)."""

    layers: list[str]
    activations: dict[str, Tensor] = field(default_factory=dict)

    @property
    def activation(self) -> Tensor:
        return self.activations[self.layers[0]]


class ModelAdapter(nn.Module):
    """A classifier with its preprocessing: `adapter(x)` maps a model-input batch to logits.

    `x` is always in model-input space (already normalized); `normalize`/`denormalize` convert
    from/to pixel space [0,1]. Parameters are frozen (explainers need no parameter gradients).
    """

    def __init__(
        self,
        module: nn.Module,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
        input_size: int | tuple[int, int] = 224,
        class_names: Sequence[str] | None = None,
        name: str = "model",
        default_layer: str = "auto",
        channels: int = 3,
    ):
        super().__init__()
        self.module = module.eval()
        for p in self.module.parameters():
            p.requires_grad_(False)
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1), persistent=False)
        self.input_size = (input_size, input_size) if isinstance(input_size, int) else tuple(input_size)
        self.class_names = list(class_names) if class_names is not None else None
        self.name = name
        self.default_layer = default_layer
        self.channels = channels
        self.counter = PassCounter()
        self._auto_layer: str | None = None
        self.channels_last = True  # inference forwards on CPU in channels-last layout (see forward)
        self.fused = FusedInference(self.module)  # used inside `fused_inference()`; .enabled = False turns it off
        self._fused_depth = 0
        self.eval()  # an explained classifier is in inference mode (BatchNorm statistics, dropout off)

    @classmethod
    def wrap(cls, module: nn.Module, mean=IMAGENET_MEAN, std=IMAGENET_STD, **kwargs) -> ModelAdapter:
        """Wrap any `nn.Module` classifier (input: normalized images, output: logits)."""
        return cls(module, mean=mean, std=std, **kwargs)

    # ------------------------------------------------------------------ pixels <-> input
    def normalize(self, pixels: Tensor) -> Tensor:
        """Pixel space [0,1] → model-input space."""
        return (pixels - self.mean.to(pixels)) / self.std.to(pixels)

    def denormalize(self, x: Tensor) -> Tensor:
        """Model-input space → pixel space [0,1]."""
        return x * self.std.to(x) + self.mean.to(x)

    @property
    def device(self) -> torch.device:
        for t in self.module.parameters():
            return t.device
        for t in self.module.buffers():
            return t.device
        return torch.device("cpu")

    # ------------------------------------------------------------------ forward, counted
    def forward(self, x: Tensor) -> Tensor:
        """Logits of a model-input batch. On CPU the model sees channels-last images, oneDNN's
        faster layout for convolutions, forward and backward (the same arithmetic up to summation
        order; a model that cannot take that layout falls back to NCHW for good); inside
        `fused_inference()` no-grad forwards run a BatchNorm-folded copy instead
        (bench/bench_cam.py, bench_gradient.py and bench_metrics.py time these)."""
        if x.dim() == 4 and x.device.type == "cpu":
            logits = self._cpu_forward(x)
        else:
            logits = self.module(x)
        self.counter.forward_images += x.shape[0]
        self.counter.forward_calls += 1
        if logits.requires_grad:
            n = x.shape[0]

            def count_backward(grad: Tensor) -> None:
                self.counter.backward_images += n
                self.counter.backward_calls += 1

            logits.register_hook(count_backward)
        return logits

    def count_passes(self, forward_images: int = 0, backward_images: int = 0) -> None:
        """Count passes made without `forward` (a forward cut at a layer, a batched backward
        over several output gradients): one call of each kind given."""
        self.counter.forward_images += forward_images
        self.counter.forward_calls += int(forward_images > 0)
        self.counter.backward_images += backward_images
        self.counter.backward_calls += int(backward_images > 0)

    @contextlib.contextmanager
    def fused_inference(self) -> Iterator[None]:
        """Inside the block, no-grad CPU forwards without hooks run the model's copy with BatchNorm
        folded into the convolutions, channels-last (`fused.py`, torch.fx): the same function,
        rounded differently (~1e-6 relative), re-folded when the parameters change (a fingerprint
        that also sees `.data` edits made before the block) — meant for loops of many forwards,
        which is where it is used."""
        if self._fused_depth == 0:
            self.fused.begin()
        self._fused_depth += 1
        try:
            yield
        finally:
            self._fused_depth -= 1

    def _cpu_forward(self, x: Tensor) -> Tensor:
        if self._fused_depth and not torch.is_grad_enabled():
            logits = self.fused.forward(x)
            if logits is not None:
                return logits
        if self.channels_last:
            try:
                return self.module(x.contiguous(memory_format=torch.channels_last))
            except RuntimeError:  # e.g. a model that .view()s its input: NCHW from now on, but
                logits = self.module(x)  # only if NCHW works (else the model's own error is raised)
                self.channels_last = False
                return logits
        return self.module(x)

    # ------------------------------------------------------------------ layers
    def layers(self) -> dict[str, nn.Module]:
        """Named sub-modules (names as in `module.named_modules()`)."""
        return {n: m for n, m in self.module.named_modules() if n}

    def resolve_layer(self, name: str | None = "auto") -> str:
        """A layer name: `auto` is the model's default layer, else the last conv block (the
        outermost module containing a convolution whose 4-D output with spatial size > 1 is
        produced last: `layer4` of a ResNet, `features` of VGG/DenseNet/EfficientNet)."""
        if name in (None, "auto"):
            if self.default_layer != "auto":
                return self.default_layer
            if self._auto_layer is None:
                self._auto_layer = last_conv_block(self)
            return self._auto_layer
        layers = self.layers()
        if name not in layers:
            raise LayerError(
                f"model '{self.name}' has no layer '{name}'.{did_you_mean(name, layers)} "
                f"Valid names include: {', '.join(list(layers)[-12:])} (see `xai list layers`)"
            )
        return name

    def dry_run(self, hooks: Sequence[tuple[nn.Module, Callable[..., None]]]) -> None:
        """One no-grad forward of a zero image of the model's input size with forward `hooks`
        (module, fn) attached, then removed: how layer shapes and execution order are traced."""
        handles = [m.register_forward_hook(fn) for m, fn in hooks]
        try:
            with torch.no_grad():
                h, w = self.input_size
                self.module(torch.zeros(1, self.channels, h, w, device=self.device))
        finally:
            for hd in handles:
                hd.remove()

    def module_of(self, name: str) -> nn.Module:
        return self.layers()[self.resolve_layer(name)]

    @contextlib.contextmanager
    def capture(self, layers: str | Sequence[str] = "auto") -> Iterator[Capture]:
        """Record the output of each layer during the forwards inside the block, and its
        gradient after a backward (the model continues with a copy of the recorded output, so
        in-place ops after the layer leave the record intact). When autograd is on and the
        output does not require grad (frozen parameters, input without grad), it is made a graph
        leaf, so gradients can stop at the layer without any parameter gradient. Hooks are
        always removed."""
        names = [layers] if isinstance(layers, str) else list(layers)
        names = [self.resolve_layer(n) for n in names]
        cap = Capture(names)
        modules = self.layers()
        handles = []
        for n in dict.fromkeys(names):
            def hook(mod, inp, out, n=n):
                if not isinstance(out, Tensor):
                    raise LayerError(f"layer '{n}' does not output a tensor; choose another layer")
                if torch.is_grad_enabled() and not out.requires_grad:
                    out = out.detach().requires_grad_(True)
                cap.activations[n] = out if out.requires_grad else out.contiguous()  # NCHW for the explainers
                # the model goes on with a copy: an in-place op after the layer (DenseNet's
                # relu(features, inplace=True)) neither alters the record nor hits a grad leaf
                return out.clone()
            handles.append(modules[n].register_forward_hook(hook))
        try:
            yield cap
        finally:
            for hd in handles:
                hd.remove()

"""ModelAdapter: everything model-specific behind one object — input normalization, named
layers, the default target layer, activation/gradient capture (token layers as (B,C,h,w) maps),
and counted model passes.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence

import torch
from torch import Tensor, nn

from ..errors import DataError, LayerError, ModelError, did_you_mean
from .capture import Capture, capture_layers
from .counting import PassCounter
from .edits import inference_state
from .fused import FusedInference
from .layers import last_conv_block
from .outputs import SCORES, LogitsOf, as_logits, input_channels, is_single_logit, output_tensor
from .tokens import GridLayout, PatchEmbedding, declared_prefix_tokens, output_layout, patch_embedding

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class ModelAdapter(nn.Module):
    """A classifier with its preprocessing: `adapter(x)` maps a model-input batch to logits.

    `x` is always in model-input space (already normalized); `normalize`/`denormalize` convert
    from/to pixel space [0,1]. The wrapped module is never changed for good: every forward runs
    inside `inference()` (eval mode, no parameter graph), which restores modes and flags on exit.
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
        channels: int | None = None,
        score: str | None = None,
        crop_fraction: float | None = None,
        interpolation: str | None = None,
    ):
        super().__init__()
        self.module = module
        mean, std, channels = input_channels(module, mean, std, channels, name)
        if score not in (None, *SCORES):
            raise ModelError(f"{name}: unknown score '{score}'. Valid: {', '.join(SCORES)}")
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1), persistent=False)
        self.input_size = (input_size, input_size) if isinstance(input_size, int) else tuple(input_size)
        self.class_names = list(class_names) if class_names is not None else None
        self.name = name
        self.default_layer = default_layer
        self.channels = channels
        self.score = score  # softmax | sigmoid; None: sigmoid for a single-logit (binary) model, else softmax
        self.crop_fraction = crop_fraction  # the model's own evaluation crop and resize filter, when it
        self.interpolation = interpolation  # has them (timm, Hugging Face); datasets that take them use them
        self._single_logit: bool | None = None  # a binary model that returns one logit per image (seen at a forward)
        self.counter = PassCounter()
        self._auto_layer: str | None = None
        self.channels_last = True  # inference forwards on CPU in channels-last layout (see forward)
        self.fused = FusedInference(LogitsOf(self.module))  # used inside `fused_inference()`; .enabled = False turns it off
        self._fused_depth = 0
        self._inference_depth = 0
        self.training = False  # the adapter's own flag only: the wrapped module keeps its modes

    @classmethod
    def wrap(cls, module: nn.Module, mean=IMAGENET_MEAN, std=IMAGENET_STD, **kwargs) -> ModelAdapter:
        """Wrap any `nn.Module` classifier (input: normalized images, output: logits, a tuple whose
        first element is the logits, or a mapping / ModelOutput with `logits`). The input channels
        are the length of `mean`/`std`; the module is not changed (see `inference`)."""
        return cls(module, mean=mean, std=std, **kwargs)

    @contextlib.contextmanager
    def inference(self) -> Iterator[ModelAdapter]:
        """Inside the block the wrapped module is in eval mode and no parameter requires grad; on
        exit every sub-module's mode and every parameter's flag are restored (`edits.inference_state`).
        Re-entrant: nested blocks cost nothing. Gradients are taken with `torch.autograd.grad` to
        inputs or layers, never to parameters."""
        if self._inference_depth:
            self._inference_depth += 1
            try:
                yield self
            finally:
                self._inference_depth -= 1
            return
        with inference_state(self.module):
            self._inference_depth = 1
            try:
                yield self
            finally:
                self._inference_depth = 0

    def set_preprocessing(self, mean: Sequence[float] | None = None, std: Sequence[float] | None = None,
                          input_size: int | Sequence[int] | None = None, class_names: Sequence[str] | None = None,
                          score: str | None = None) -> ModelAdapter:
        """Override the source's preprocessing, class names or score (the config's `model.mean`, …)."""
        if mean is not None or std is not None:
            new_mean = mean if mean is not None else self.mean.flatten().tolist()
            new_std = std if std is not None else self.std.flatten().tolist()
            new_mean, new_std, self.channels = input_channels(self.module, new_mean, new_std, None, self.name)
            self.mean = torch.tensor(new_mean, dtype=torch.float32, device=self.mean.device).view(1, -1, 1, 1)
            self.std = torch.tensor(new_std, dtype=torch.float32, device=self.std.device).view(1, -1, 1, 1)
        if input_size is not None:
            size = [input_size] * 2 if isinstance(input_size, int) else list(input_size)
            if len(size) != 2 or any(int(v) < 1 for v in size):
                raise ModelError(f"{self.name}: input_size must be a positive int or [height, width], got {input_size}")
            self.input_size = (int(size[0]), int(size[1]))
        if class_names is not None:
            self.class_names = [str(c) for c in class_names]
        if score is not None:
            if score not in SCORES:
                raise ModelError(f"{self.name}: unknown score '{score}'. Valid: {', '.join(SCORES)}")
            self.score = score
        return self

    @property
    def num_classes(self) -> int:
        """The number of classes the model scores (its logits' width; one forward of a zero image)."""
        if "_num_classes" not in self.__dict__:
            h, w = self.input_size
            with torch.no_grad(), self.inference():
                raw = self.module(torch.zeros(1, self.channels, h, w, device=self.device))
            self.__dict__["_num_classes"] = self.logits(raw).shape[1]
        return self.__dict__["_num_classes"]

    @property
    def probability(self) -> str:
        """How class probabilities come from the logits: `softmax` (one class per image) or
        `sigmoid` (multi-label, or a single-logit binary model)."""
        if self.score is not None:
            return self.score
        if self._single_logit is None:  # no forward seen yet: one zero image tells
            h, w = self.input_size
            with torch.no_grad(), self.inference():
                self.logits(self.module(torch.zeros(1, self.channels, h, w, device=self.device)))
        return "sigmoid" if self._single_logit else "softmax"

    def score_kind(self, score: str) -> str:
        """A plug-in's `score` option for this model: `softmax` means the model's probability
        (`sigmoid` for multi-label and binary models); `logit` stays the logit."""
        return self.probability if score in ("softmax", "probability") else score

    # ------------------------------------------------------------------ pixels <-> input
    def normalize(self, pixels: Tensor) -> Tensor:
        """Pixel space [0,1] → model-input space. RGB images (B,3,H,W) given to a one-channel model
        become grey first (ITU-R BT.601 luma: 0.299 R + 0.587 G + 0.114 B)."""
        if pixels.dim() == 4 and pixels.shape[1] != self.channels:
            if pixels.shape[1] == 3 and self.channels == 1:
                luma = torch.tensor([0.299, 0.587, 0.114], dtype=pixels.dtype, device=pixels.device)
                pixels = (pixels * luma.view(1, 3, 1, 1)).sum(1, keepdim=True)
            else:
                raise DataError(f"the images have {pixels.shape[1]} channels but model '{self.name}' takes "
                                f"{self.channels} (the length of its mean/std); give images with {self.channels}")
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
        with self.inference():
            if x.dim() == 4 and x.device.type == "cpu":
                logits = self._cpu_forward(x)
            else:
                logits = self.logits(self.module(x))
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
                return self.logits(self.module(x.contiguous(memory_format=torch.channels_last)))
            except RuntimeError:  # e.g. a model that .view()s its input: NCHW from now on, but
                logits = self.logits(self.module(x))  # only if NCHW works (else the model's own error is raised)
                self.channels_last = False
                return logits
        return self.logits(self.module(x))

    def logits(self, out: object) -> Tensor:
        """The module's output as (B, classes) logits (`outputs.as_logits`); notes a single-logit model."""
        raw = output_tensor(out, f"model '{self.name}'")
        if self._single_logit is None:
            self._single_logit = is_single_logit(raw)
        return as_logits(raw)

    # ------------------------------------------------------------------ layers
    def layers(self) -> dict[str, nn.Module]:
        """Named sub-modules that take hooks (names as in `module.named_modules()`; TorchScript
        parts have none: they run compiled code, not their Python modules)."""
        return {n: m for n, m in self.module.named_modules() if n and not isinstance(m, torch.jit.ScriptModule)}

    def layer_module(self, name: str) -> nn.Module | None:
        """The hookable sub-module `name` (a key of `layers()`), looked up along its dotted path
        without walking the whole model; None when there is none."""
        if not name:
            return None
        try:
            m = self.module.get_submodule(name)
        except AttributeError:
            return None
        return None if isinstance(m, torch.jit.ScriptModule) else m

    @property
    def hookable(self) -> bool:
        """False when the model is TorchScript throughout: no layer can be hooked."""
        return not isinstance(self.module, torch.jit.ScriptModule) or bool(self.layers())

    def require_hooks(self, what: str) -> None:
        """A LayerError when `what` (an explainer that needs layers or module hooks) cannot run here."""
        if not self.hookable:
            raise LayerError(
                f"{what} needs the model's layers (forward hooks), but '{self.name}' is a TorchScript model: it has "
                "no hookable layers. Use an input-gradient or perturbation explainer (saliency, inputxgrad, "
                "integrated_gradients, smoothgrad, vargrad, occlusion, rise); `xai list explainers --model "
                f"{self.name}` lists those that apply"
            )

    def resolve_layer(self, name: str | None = "auto") -> str:
        """A layer name: `auto` is the model's default layer, else the last conv block (the
        outermost module containing a convolution whose 4-D output with spatial size > 1 is
        produced last: `layer4` of a ResNet, `features` of VGG/DenseNet/EfficientNet)."""
        if not self.hookable:
            self.require_hooks("a layer-based explainer (CAMs, guided Grad-CAM, relevance CAMs)")
        if name in (None, "auto"):
            if self.default_layer != "auto":
                return self.default_layer
            if self._auto_layer is None:
                self._auto_layer = last_conv_block(self)
            return self._auto_layer
        if self.layer_module(name) is None:
            layers = self.layers()
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
            with torch.no_grad(), self.inference():
                h, w = self.input_size
                self.module(torch.zeros(1, self.channels, h, w, device=self.device))
        finally:
            for hd in handles:
                hd.remove()

    def module_of(self, name: str) -> nn.Module:
        return self.layer_module(self.resolve_layer(name))

    @property
    def patch(self) -> PatchEmbedding | None:
        """The model's patch embedding (a kernel = stride convolution), or None (`tokens.py`)."""
        if "_patch" not in self.__dict__:
            self.__dict__["_patch"] = patch_embedding(self.module)
        return self.__dict__["_patch"]

    @property
    def resizable(self) -> bool:
        """Whether the model takes inputs of other sizes than `input_size` (one no-grad forward of a
        zero image 1.5× as large; a ViT with a fixed position embedding does not): the multi-scale
        explainers (CAMERAS, MSG-CAM) need it."""
        if "_resizable" not in self.__dict__:
            h, w = (int(v * 1.5) for v in self.input_size)
            try:
                with torch.no_grad(), self.inference():
                    self.module(torch.zeros(1, self.channels, h, w, device=self.device))
                self.__dict__["_resizable"] = True
            except (RuntimeError, AssertionError, ValueError):
                self.__dict__["_resizable"] = False
        return self.__dict__["_resizable"]

    @property
    def reads_class_token(self) -> bool:
        """True for a token model whose head reads its class token (torchvision's ViT, timm's
        `global_pool='token'` or attention pooling), not a global average of the patch tokens."""
        if not declared_prefix_tokens(self.module):
            return False
        return not str(getattr(self.module, "global_pool", "token")).startswith("avg")

    def layout(self, name: str, out: Tensor, input_hw: Sequence[int]) -> GridLayout | None:
        """How layer `name`'s output `out` for an input of `input_hw` maps to (B,C,h,w): tokens,
        channels-last, or None (already a feature map, or not one); `tokens.output_layout`."""
        return output_layout(self.module, self.patch, tuple(out.shape), (int(input_hw[0]), int(input_hw[1])), name)

    @contextlib.contextmanager
    def watch_input(self) -> Iterator[list[tuple[int, int]]]:
        """Inside the block, `seen[0]` is the (H, W) of the latest input the module ran on (the
        grid of a token layer depends on it); starts at the model's input size."""
        seen = [self.input_size]

        def note(mod, args):
            if args and isinstance(args[0], Tensor) and args[0].dim() == 4:
                seen[0] = tuple(args[0].shape[-2:])

        handle = self.module.register_forward_pre_hook(note)
        try:
            yield seen
        finally:
            handle.remove()

    @contextlib.contextmanager
    def capture(self, layers: str | Sequence[str] = "auto", as_grid: bool = True) -> Iterator[Capture]:
        """Record the output of each layer during the forwards inside the block, and its gradient
        after a backward; a token layer as the (B,C,h,w) map of its patch grid, unless `as_grid`
        is False (`capture.capture_layers`). Hooks are always removed."""
        names = [layers] if isinstance(layers, str) else list(layers)
        with capture_layers(self, [self.resolve_layer(n) for n in names], as_grid) as cap:
            yield cap

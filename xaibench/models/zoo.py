"""The model zoo: `load_model("family:arch", weights=...)` → ModelAdapter.

Families: `torchvision:<arch>` (any torchvision classification architecture), `builtin:<name>`
(small models trained and shipped with xaibench), `timm:`, `python:`, `hf:`, `torchscript:` and
plain names registered by other modules.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import ModelError, did_you_mean, unknown
from ..registry import Registry
from .adapter import IMAGENET_MEAN, IMAGENET_STD, ModelAdapter

# A model factory: factory(arch: str | None, weights: str | None, **options) -> ModelAdapter
MODELS: Registry = Registry("model")


def load_model(name: str, weights: str | None = "default", params: dict[str, Any] | None = None, *,
               mean: Sequence[float] | None = None, std: Sequence[float] | None = None,
               input_size: int | Sequence[int] | None = None, class_names: Sequence[str] | None = None,
               score: str | None = None, **options: Any) -> ModelAdapter:
    """Build a ModelAdapter from a zoo name (`xai list models`). `params` (and any other keyword
    `options`) go to the family's factory; `mean`, `std`, `input_size`, `class_names` and `score`
    override the source's own preprocessing and class names (every source accepts them)."""
    family, _, arch = name.partition(":")
    if family not in MODELS:
        raise ModelError(unknown("model family", family, MODELS.names()))
    factory = MODELS.get(family).obj
    overrides = {k: v for k, v in dict(mean=mean, std=std, input_size=input_size, class_names=class_names,
                                       score=score).items() if v is not None}
    kwargs = {**(params or {}), **options}
    if "preprocessing" in inspect.signature(factory).parameters:  # a source that wraps a bare module itself
        kwargs["preprocessing"] = overrides
    else:
        check_options(family, factory, kwargs)
    model = factory(arch or None, weights, **kwargs)
    if not isinstance(model, ModelAdapter):
        raise ModelError(f"the model factory of '{family}' returned {type(model).__name__}, not a ModelAdapter")
    model.module.eval()  # built here for evaluation (a module given to ModelAdapter.wrap keeps its own mode)
    if overrides:
        model.set_preprocessing(**overrides)
    return model


def check_options(family: str, factory: Any, options: dict[str, Any]) -> None:
    """A ModelError naming the option a family's factory does not take (when it takes no **options)."""
    sig = inspect.signature(factory).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in sig.values()):
        return
    valid = [n for n in sig if n not in ("arch", "weights")]
    for key in options:
        if key not in valid:
            raise ModelError(f"model '{family}' takes no parameter '{key}'.{did_you_mean(key, valid)} "
                             f"Valid: {', '.join(valid) or '(none)'}")


def load_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Load a local checkpoint safely (`weights_only=True`); accepts {'state_dict': ...} too."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise ModelError(f"weights file not found: {p}")
    try:
        state = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unpickling failure is a bad file for the user
        raise ModelError(f"cannot load weights from {p}: {e}") from e
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ModelError(f"{p} does not hold a state dict")
    return state


def apply_state_dict(module: nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    try:
        module.load_state_dict(state)
    except RuntimeError as e:
        raise ModelError(f"weights in {source} do not fit the architecture: {str(e).splitlines()[0]}") from e


@MODELS.register("torchvision")
def torchvision_model(arch: str | None, weights: str | None = "default", num_classes: int | None = None) -> ModelAdapter:
    """Any torchvision classification architecture; `weights` = `none`, a local file, a
    torchvision weights enum name (e.g. IMAGENET1K_V1) or `default` (the enum's DEFAULT).
    Enum weights load only from torch's cache or a download; offline that is a ModelError
    that says how to supply the file instead."""
    import torchvision.models as tvm

    archs = tvm.list_models(module=tvm)
    if arch not in archs:
        raise ModelError(unknown("torchvision architecture", str(arch), archs))
    kwargs: dict[str, Any] = {}
    if num_classes is not None:
        kwargs["num_classes"] = num_classes
    w = "none" if weights is None else str(weights)
    if w.lower() == "none":
        module = tvm.get_model(arch, weights=None, **kwargs)
    elif Path(w).expanduser().suffix in (".pt", ".pth", ".bin", ".ckpt") or Path(w).expanduser().exists():
        module = tvm.get_model(arch, weights=None, **kwargs)
        apply_state_dict(module, load_state_dict(w), w)
    else:
        enum = tvm.get_model_weights(arch)
        name = "DEFAULT" if w.lower() == "default" else w
        try:
            weight_enum = enum[name] if name != "DEFAULT" else enum.DEFAULT
        except KeyError:
            raise ModelError(unknown(f"weights for {arch}", w, [e.name for e in enum] + ["none", "default", "a .pt file path"])) from None
        try:
            module = tvm.get_model(arch, weights=weight_enum, **kwargs)
        except Exception as e:  # noqa: BLE001 - network/cache failures are all "not available here"
            cache = Path(torch.hub.get_dir()) / "checkpoints"
            raise ModelError(
                f"cannot load torchvision weights {arch}.{weight_enum.name} ({type(e).__name__}: {e}). "
                f"Offline, download {weight_enum.url} elsewhere and either put it in {cache} "
                f"or pass the file as `weights: path/to/file.pth`."
            ) from e
    classes = None
    try:
        if w.lower() not in ("none",) and not Path(w).exists():
            classes = tvm.get_model_weights(arch).DEFAULT.meta.get("categories")
    except Exception:  # noqa: BLE001
        classes = None
    return ModelAdapter(module, IMAGENET_MEAN, IMAGENET_STD, input_size=224, class_names=classes, name=f"torchvision:{arch}")

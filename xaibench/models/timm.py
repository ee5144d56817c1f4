"""`timm:<name>`: any classifier of PyTorch Image Models (optional extra `xaibench[timm]`), its mean,
std, input size, crop and resize filter read from the model's `pretrained_cfg`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import torch

from ..errors import ModelError, did_you_mean
from .adapter import ModelAdapter
from .zoo import MODELS, apply_state_dict, load_state_dict

INSTALL = "timm models need the timm package: `pip install 'xaibench[timm]'` (or `pip install timm`)"


def import_timm():
    try:
        import timm
    except ImportError:
        raise ModelError(INSTALL) from None
    return timm


def read_weights(path: str) -> dict[str, torch.Tensor]:
    """A local timm checkpoint: .safetensors, or a torch file read with weights_only=True (also
    {'model': ...} / {'state_dict': ...} and DataParallel's 'module.' prefixes)."""
    p = Path(path).expanduser()
    if p.suffix == ".safetensors":
        if not p.is_file():
            raise ModelError(f"weights file not found: {p}")
        from safetensors.torch import load_file

        state = load_file(str(p))
    else:
        state = load_state_dict(p)
        if isinstance(state.get("model"), dict):
            state = state["model"]
    return {k.removeprefix("module."): v for k, v in state.items()}


def cache_hint(timm: Any, arch: str, error: Exception) -> ModelError:
    """The error for pretrained weights that are neither cached nor downloadable: where to put them."""
    try:
        cfg = timm.models.get_pretrained_cfg(arch) or {}
        cfg = cfg.to_dict() if hasattr(cfg, "to_dict") else dict(cfg)
    except Exception:  # noqa: BLE001
        cfg = {}
    hub_id = cfg.get("hf_hub_id")
    from huggingface_hub.constants import HF_HUB_CACHE

    where = (f"download the Hugging Face repository {hub_id} elsewhere (`hf download {hub_id}`) and copy its "
             f"models--{hub_id.replace('/', '--')} folder into {HF_HUB_CACHE}, or "
             if hub_id else f"download the weights ({cfg.get('url', 'see the timm docs')}) elsewhere and ")
    return ModelError(f"cannot load the pretrained timm weights of '{arch}' ({type(error).__name__}: "
                      f"{str(error).splitlines()[0] if str(error) else ''}). Offline, {where}pass the file as "
                      f"`weights: path/to/model.safetensors` (or .pth); `weights: none` builds it with random weights")


def preprocessing(timm: Any, module: torch.nn.Module, options: dict[str, Any]) -> dict[str, Any]:
    """Mean, std, input size, crop fraction and resize filter from the model's pretrained_cfg (timm's
    resolve_model_data_config), with the channel count and `img_size` the model was built with."""
    cfg = timm.data.resolve_model_data_config(module)
    mean, std = list(cfg["mean"]), list(cfg["std"])
    channels = int(options.get("in_chans", len(mean)))
    if channels != len(mean):  # timm adapts the first conv of pretrained weights the same way
        mean = [sum(mean) / len(mean)] * channels if channels == 1 else [mean[i % 3] for i in range(channels)]
        std = [sum(std) / len(std)] * channels if channels == 1 else [std[i % 3] for i in range(channels)]
    size = options.get("img_size", cfg["input_size"][1:])
    size = (size, size) if isinstance(size, int) else tuple(size)
    return dict(mean=mean, std=std, input_size=size, crop_fraction=float(cfg.get("crop_pct", 0.875)),
                interpolation=str(cfg.get("interpolation", "bilinear")))


def imagenet_names(timm: Any, module: torch.nn.Module, num_classes: int) -> list[str] | None:
    """Class names of an ImageNet-trained model (timm's own label lists), else None."""
    try:
        subset = timm.data.infer_imagenet_subset(module)
        if subset is None:
            return None
        names = timm.data.ImageNetInfo(subset).label_descriptions()
        return list(names) if len(names) == num_classes else None
    except Exception:  # noqa: BLE001 - names are a convenience
        return None


@MODELS.register("timm")
def timm_model(
    arch: str | None,
    weights: Annotated[str | None, "none (random), default (pretrained: the timm/HF cache or a download), or a local file"] = "default",
    num_classes: Annotated[int | None, "classes of the head (a new head on pretrained weights)"] = None,
    in_chans: Annotated[int | None, "input channels (mean/std follow)"] = None,
    **options: Annotated[Any, "other keyword arguments of timm.create_model (img_size, drop_rate, …)"],
) -> ModelAdapter:
    """Any timm classifier (Wightman, PyTorch Image Models), e.g. `timm:resnet50`, `timm:vit_base_patch16_224`,
    `timm:convnext_tiny.fb_in1k`. Mean, std, input size, crop and interpolation come from its
    `pretrained_cfg`. `weights`: `none`, `default` (pretrained, from the Hugging Face cache or a
    download), or a local .safetensors/.pth file (weights_only)."""
    timm = import_timm()
    if not arch:
        raise ModelError("timm models are named timm:<name>, e.g. timm:resnet18 (`timm.list_models()` lists them)")
    if not timm.is_model(arch.split(".")[0]):
        close = did_you_mean(arch, timm.list_models())
        raise ModelError(f"unknown timm model '{arch}'.{close} `timm.list_models('*{arch.split('.')[0][:5]}*')` "
                         "lists the names")
    if num_classes is not None:
        options["num_classes"] = num_classes
    if in_chans is not None:
        options["in_chans"] = in_chans
    w = "none" if weights is None else str(weights)
    pretrained = w.lower() == "default"
    try:
        module = timm.create_model(arch, pretrained=pretrained, **options)
    except TypeError as e:
        raise ModelError(f"timm model '{arch}' does not take these parameters {options}: {e}") from e
    except Exception as e:  # noqa: BLE001 - a missing cache file or no network: say where the file goes
        if pretrained:
            raise cache_hint(timm, arch, e) from e
        raise ModelError(f"cannot build timm model '{arch}' with {options}: {type(e).__name__}: {e}") from e
    if w.lower() not in ("none", "default"):
        apply_state_dict(module, read_weights(w), w)
    pre = preprocessing(timm, module, options)
    classes = imagenet_names(timm, module, module.num_classes) if w.lower() != "none" else None
    return ModelAdapter(module, mean=pre["mean"], std=pre["std"], input_size=pre["input_size"], class_names=classes,
                        name=f"timm:{arch}", crop_fraction=pre["crop_fraction"], interpolation=pre["interpolation"])

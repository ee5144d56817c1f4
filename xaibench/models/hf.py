"""`hf:<local folder>`: a Hugging Face `transformers` image classifier saved with `save_pretrained`
(optional extra `xaibench[hf]`), with its image processor's mean, std, size, crop and resize filter.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any

from ..errors import ModelError
from .adapter import IMAGENET_MEAN, IMAGENET_STD, ModelAdapter
from .zoo import MODELS, apply_state_dict, load_state_dict

INSTALL = "Hugging Face models need transformers: `pip install 'xaibench[hf]'` (or `pip install transformers`)"
PIL_FILTERS = {0: "nearest", 1: "lanczos", 2: "bilinear", 3: "bicubic", 4: "box", 5: "hamming"}


def _get(obj: Any, key: str) -> Any:
    """A key of a processor's size dict (a dict or transformers' SizeDict)."""
    if obj is None:
        return None
    return obj.get(key) if isinstance(obj, dict) else getattr(obj, key, None)


def processor_preprocessing(proc: Any) -> dict[str, Any]:
    """Mean, std, input size, crop fraction and resize filter of an image processor: the crop size
    when it centre-crops, else its (height, width) or shortest edge (with `crop_pct`, ConvNeXt-style)."""
    size, crop = getattr(proc, "size", None), getattr(proc, "crop_size", None)
    edge = _get(size, "shortest_edge")
    height, width = _get(size, "height"), _get(size, "width")
    crop_fraction = 1.0
    if getattr(proc, "do_center_crop", False) and _get(crop, "height"):
        input_size = (int(_get(crop, "height")), int(_get(crop, "width")))
        crop_fraction = input_size[0] / float(edge or height or input_size[0])
    elif edge and getattr(proc, "crop_pct", None):
        input_size, crop_fraction = (int(edge), int(edge)), float(proc.crop_pct)
    elif height and width:
        input_size = (int(height), int(width))
    elif edge:
        input_size = (int(edge), int(edge))
    else:
        raise ModelError(f"cannot read an input size from the image processor {type(proc).__name__} (size={size})")
    normalize = getattr(proc, "do_normalize", True)
    mean = list(getattr(proc, "image_mean", None) or IMAGENET_MEAN) if normalize else [0.0, 0.0, 0.0]
    std = list(getattr(proc, "image_std", None) or IMAGENET_STD) if normalize else [1.0, 1.0, 1.0]
    resample = getattr(proc, "resample", 2)
    return dict(mean=mean, std=std, input_size=input_size, crop_fraction=min(1.0, crop_fraction),
                interpolation=PIL_FILTERS.get(int(getattr(resample, "value", resample) or 2), "bilinear"))


def class_names(config: Any) -> list[str] | None:
    """`id2label` in class order, unless it holds only the placeholder names LABEL_0, LABEL_1, …"""
    id2label = getattr(config, "id2label", None) or {}
    names = [str(id2label[i]) for i in sorted(id2label, key=int)]
    return None if all(re.fullmatch(r"LABEL_\d+", n) for n in names) else names


@MODELS.register("hf")
def hf_model(
    arch: str | None,
    weights: Annotated[str | None, "default (the folder's weights), none (random, from its config) or a state-dict file"] = "default",
    preprocessing: dict[str, Any] | None = None,
) -> ModelAdapter:
    """A Hugging Face transformers image classifier in a local folder (`save_pretrained`: config.json,
    weights, preprocessor_config.json), e.g. `hf:models/my-vit`. Nothing is downloaded. Mean, std, size,
    crop and resize filter come from its image processor, class names from `id2label`; a model with
    `problem_type: multi_label_classification` scores classes with a sigmoid."""
    try:
        import transformers
    except ImportError:
        raise ModelError(INSTALL) from None
    if not arch:
        raise ModelError("a Hugging Face model is named hf:path/to/folder (saved with save_pretrained)")
    folder = Path(arch).expanduser()
    if not (folder / "config.json").is_file():
        raise ModelError(f"hf:{arch}: no config.json in {folder.resolve()}. `hf:` takes a local folder written by "
                         "save_pretrained; offline, download the model elsewhere (`hf download <repo> --local-dir DIR`) "
                         "and copy DIR here")
    w = "default" if weights is None else str(weights)
    try:
        config = transformers.AutoConfig.from_pretrained(folder, local_files_only=True)
        auto = transformers.AutoModelForImageClassification
        module = auto.from_config(config) if w.lower() != "default" else auto.from_pretrained(folder, local_files_only=True)
    except Exception as e:  # noqa: BLE001 - any transformers failure is a bad folder for the user
        raise ModelError(f"cannot load an image classifier from {folder} ({type(e).__name__}: "
                         f"{str(e).splitlines()[0] if str(e) else ''})") from e
    if w.lower() not in ("default", "none"):
        apply_state_dict(module, load_state_dict(w), w)
    given = preprocessing or {}
    try:
        proc = transformers.AutoImageProcessor.from_pretrained(folder, local_files_only=True)
        pre = processor_preprocessing(proc)
    except Exception as e:  # noqa: BLE001
        if not {"mean", "std", "input_size"} <= set(given):
            raise ModelError(f"{folder} has no usable image processor (preprocessor_config.json: {type(e).__name__}: "
                             f"{str(e).splitlines()[0] if str(e) else ''}); save it with processor.save_pretrained "
                             "or give model.mean, model.std and model.input_size in the config") from e
        pre = dict(given, crop_fraction=None, interpolation=None)
    score = "sigmoid" if getattr(config, "problem_type", None) == "multi_label_classification" else None
    return ModelAdapter(module, mean=pre["mean"], std=pre["std"], input_size=pre["input_size"],
                        class_names=class_names(config), name=f"hf:{folder.name}", score=score,
                        crop_fraction=pre["crop_fraction"], interpolation=pre["interpolation"])

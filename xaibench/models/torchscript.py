"""`torchscript:<file.pt>`: a scripted or traced model saved without its Python code. Input-gradient
and perturbation explainers and every metric apply; explainers that need layers (hooks) do not.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import torch

from ..errors import ModelError
from .adapter import IMAGENET_MEAN, IMAGENET_STD, ModelAdapter
from .zoo import MODELS

META_FILE = "xaibench.json"  # optional extra file in the archive: {"mean", "std", "input_size", "class_names"}


@MODELS.register("torchscript")
def torchscript_model(
    arch: str | None,
    weights: Annotated[str | None, "default: the weights saved in the file (the only choice)"] = "default",
) -> ModelAdapter:
    """A TorchScript file (`torch.jit.save` of a scripted or traced classifier), loaded on the CPU.
    Preprocessing: the config's `mean`, `std`, `input_size`, `class_names`, else an `xaibench.json`
    saved in the archive (`_extra_files`), else ImageNet mean/std at 224 px. Its layers cannot be
    hooked: CAMs, guided backprop and LRP do not apply (`xai list explainers --model ...` tells)."""
    if not arch:
        raise ModelError("a TorchScript model is named torchscript:path/to/model.pt")
    if weights not in (None, "default", "none"):
        raise ModelError(f"a TorchScript file carries its own weights; `weights: {weights}` cannot be loaded into it "
                         "(leave weights at default)")
    path = Path(arch).expanduser()
    if not path.is_file():
        raise ModelError(f"TorchScript file not found: {path.resolve()}")
    extra = {META_FILE: ""}
    try:
        module = torch.jit.load(str(path), map_location="cpu", _extra_files=extra)
    except Exception as e:  # noqa: BLE001 - any load failure is a bad file for the user
        raise ModelError(f"cannot load {path} as TorchScript ({type(e).__name__}: {str(e).splitlines()[0]}); "
                         "save the model with torch.jit.save(torch.jit.script(model) or torch.jit.trace(model, x))") from e
    try:
        meta = json.loads(extra[META_FILE]) if extra[META_FILE] else {}
    except ValueError as e:
        raise ModelError(f"{path}: its {META_FILE} is not valid JSON: {e}") from e
    return ModelAdapter(module, mean=meta.get("mean", IMAGENET_MEAN), std=meta.get("std", IMAGENET_STD),
                        input_size=meta.get("input_size", 224), class_names=meta.get("class_names"),
                        name=f"torchscript:{path.name}")

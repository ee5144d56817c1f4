"""The built-in model family `builtin:<arch>`: small classifiers trained by xaibench and shipped
inside the package (checkpoint + JSON metadata), so the benchmark runs offline out of the box.

`builtin:synthetic-cnn` is SyntheticCNN trained on the `synthetic` dataset by `scripts/train_builtin.py`;
`builtin:synthetic-vit` is a small torchvision VisionTransformer trained by `scripts/train_builtin_vit.py`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from torch import nn

from ...errors import ModelError, unknown
from ..adapter import ModelAdapter
from ..zoo import MODELS, apply_state_dict, load_state_dict
from .net import SyntheticCNN
from .vit import synthetic_vit

HERE = Path(__file__).parent
TRAIN_COMMANDS = {"synthetic-cnn": "make train", "synthetic-vit": "make train-vit"}
# the layer `auto` names: the CNN's CAM layer; the ViT has no conv feature map (`auto` follows the token rule)
DEFAULT_LAYERS = {"synthetic-cnn": "stage4", "synthetic-vit": "auto"}

# arch -> (constructor from its metadata, default metadata when the JSON file is absent)
ARCHS: dict[str, Callable[[dict[str, Any]], nn.Module]] = {
    "synthetic-cnn": lambda meta: SyntheticCNN(
        num_classes=len(meta["classes"]),
        widths=meta.get("widths", (16, 32, 64, 128)),
        strides=meta.get("strides", (1, 2, 2, 1)),
        blocks=meta.get("blocks", 1),
    ),
    "synthetic-vit": synthetic_vit,
}


def metadata(arch: str) -> dict[str, Any]:
    """The shipped `<arch>.json` (classes, mean/std, image size, test accuracy, training command)."""
    path = HERE / f"{arch}.json"
    if path.is_file():
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError) as e:
            raise ModelError(f"cannot read the metadata of builtin:{arch} from {path}: {e}") from e
    from ...datasets.shapes import CLASS_NAMES  # untrained fallback: the synthetic classes, neutral scaling

    return {"classes": list(CLASS_NAMES), "mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25], "image_size": 128}


@MODELS.register("builtin")
def builtin_model(arch: str | None, weights: str | None = "default") -> ModelAdapter:
    """A model trained and shipped with xaibench on the `synthetic` dataset: `builtin:synthetic-cnn`
    (a small ResNet with GAP + linear head, He et al. 2016) or `builtin:synthetic-vit` (a small ViT
    with class token, Dosovitskiy et al. 2021). `weights` = `default`
    (the shipped checkpoint), `none` (random initialization) or a path to a state-dict file."""
    arch = arch or "synthetic-cnn"
    if arch not in ARCHS:
        raise ModelError(unknown("builtin architecture", arch, ARCHS))
    meta = metadata(arch)
    module = ARCHS[arch](meta)
    w = "none" if weights is None else str(weights)
    if w.lower() == "default":
        path = HERE / f"{arch}.pt"
        if not path.is_file():
            raise ModelError(f"the checkpoint of builtin:{arch} is missing ({path}); retrain it with `{TRAIN_COMMANDS[arch]}`")
        apply_state_dict(module, load_state_dict(path), str(path))
    elif w.lower() != "none":
        apply_state_dict(module, load_state_dict(w), w)
    return ModelAdapter(
        module,
        mean=meta["mean"],
        std=meta["std"],
        input_size=int(meta["image_size"]),
        class_names=meta["classes"],
        name=f"builtin:{arch}",
        default_layer=DEFAULT_LAYERS[arch],
    )

"""What a model asks of the data a run feeds it: its own evaluation crop and resize filter for the
datasets that take them, labels within its classes, and the layer `auto` names (if any).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from ..errors import DataError, LayerError, ModelError
from .adapter import ModelAdapter


def dataset_options(model: ModelAdapter, takes: Iterable[str], params: dict[str, Any]) -> dict[str, Any]:
    """The dataset's `params` plus the model's own crop fraction and resize filter (timm, Hugging
    Face) where the dataset takes them (`takes`: its parameter names) and `params` does not set them."""
    own = {"crop_fraction": model.crop_fraction, "interpolation": model.interpolation}
    return {**{k: v for k, v in own.items() if v is not None and k in set(takes)}, **params}


def check_classes(model: ModelAdapter, dataset: Any, name: str) -> None:
    """A ModelError when the model's class names do not match its logits; a DataError when the dataset
    has more classes than the model scores (labels would index past the logits). Each image's label
    is checked again when its batch is read (`check_labels`)."""
    if model.class_names is not None and len(model.class_names) != model.num_classes:
        raise ModelError(f"model '{model.name}' has {len(model.class_names)} class_names but scores "
                         f"{model.num_classes} classes; give one name per logit")
    n = getattr(dataset, "num_classes", None)
    if n is not None and n > model.num_classes:
        classes = list(getattr(dataset, "class_names", None) or [])
        listed = f" ({', '.join(map(str, classes[:12]))}{', …' if len(classes) > 12 else ''})" if classes else ""
        raise DataError(f"dataset '{name}' has {n} classes{listed} but model '{model.name}' scores "
                        f"{model.num_classes}: its labels must be class indices 0…{model.num_classes - 1}")


def check_labels(model: ModelAdapter, labels: Sequence[int], ids: Sequence[str]) -> None:
    """A DataError naming the first image whose label is not one of the model's classes."""
    for label, image in zip(labels, ids):
        if not 0 <= label < model.num_classes:
            raise DataError(f"image {image} has label {label}, outside the {model.num_classes} classes of model "
                            f"'{model.name}' (valid: 0…{model.num_classes - 1})")


def default_layer(model: ModelAdapter) -> str | None:
    """The layer `auto` names, or None for a model without one (TorchScript, a token model)."""
    try:
        return model.resolve_layer("auto")
    except LayerError:
        return None

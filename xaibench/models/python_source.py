"""`python:<file.py or package.module>:<factory>`: a model built by the user's own code — the factory
is imported and called (this runs that code) and returns an `nn.Module` or a ModelAdapter.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import inspect
import sys
import traceback
from pathlib import Path
from types import ModuleType
from typing import Annotated, Any

from torch import nn

from ..errors import ModelError, did_you_mean
from .adapter import IMAGENET_MEAN, IMAGENET_STD, ModelAdapter
from .zoo import MODELS, apply_state_dict, load_state_dict

USAGE = "python:path/to/file.py:factory or python:package.module:factory"


def split_spec(spec: str | None) -> tuple[str, str]:
    """'models/net.py:build' → ('models/net.py', 'build'); a ModelError shows the form when malformed."""
    where, sep, factory = (spec or "").rpartition(":")
    if not sep or not where or not factory.isidentifier():
        raise ModelError(f"model 'python:{spec or ''}' must look like {USAGE} (the factory after the last ':')")
    return where, factory


def user_error(what: str, error: BaseException, file: Path | None = None) -> ModelError:
    """A ModelError for an exception raised by the user's code, with the file and line it came from."""
    frames = traceback.extract_tb(error.__traceback__)
    mine = [f for f in frames if file is not None and Path(f.filename).resolve() == file] or frames[-1:]
    at = f" ({mine[-1].filename}, line {mine[-1].lineno})" if mine else ""
    return ModelError(f"{what}: {type(error).__name__}: {error}{at}")


def import_file(path: Path) -> ModuleType:
    """Import a .py file as a fresh module (its folder first on sys.path while it runs, so it can
    import files beside it)."""
    name = f"xaibench_user_{path.stem}_{hashlib.sha1(str(path).encode()).hexdigest()[:8]}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ModelError(f"cannot import {path} as Python code")
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(path.parent))
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as e:  # noqa: BLE001 - any error in the user's file is reported with its line
        sys.modules.pop(name, None)
        raise user_error(f"importing {path} failed", e, path) from e
    finally:
        sys.path.remove(str(path.parent))
    return module


def import_source(where: str) -> tuple[ModuleType, Path | None]:
    """The user's module from a file path (relative to the current folder) or a dotted module name."""
    if where.endswith(".py") or "/" in where or "\\" in where:
        path = Path(where).expanduser()
        path = (path if path.is_absolute() else Path.cwd() / path).resolve()
        if not path.is_file():
            raise ModelError(f"python model file not found: {path} (a relative path is taken from the current "
                             f"folder {Path.cwd()}); expected {USAGE}")
        return import_file(path), path
    try:
        module = importlib.import_module(where)
    except ModuleNotFoundError as e:
        raise ModelError(f"cannot import module '{where}' ({e}); is its package installed or on PYTHONPATH? "
                         f"Expected {USAGE}") from e
    except Exception as e:  # noqa: BLE001
        raise user_error(f"importing {where} failed", e) from e
    file = getattr(module, "__file__", None)
    return module, Path(file).resolve() if file else None


def call_factory(factory: Any, params: dict[str, Any], label: str, file: Path | None) -> Any:
    """`factory(**params)`, with a ModelError that shows the factory's signature when the
    parameters do not fit it, and the file and line when the factory raises."""
    try:
        sig = inspect.signature(factory)
    except (TypeError, ValueError):
        sig = None
    if sig is not None:
        try:
            sig.bind(**params)
        except TypeError as e:
            raise ModelError(f"{label}{sig} does not take model.params {params}: {e}") from None
    try:
        return factory(**params)
    except Exception as e:  # noqa: BLE001
        raise user_error(f"{label}(**{params}) failed", e, file) from e


@MODELS.register("python")
def python_model(
    arch: str | None,
    weights: Annotated[str | None, "none/default (as built) or a state-dict file, loaded with weights_only=True"] = None,
    preprocessing: dict[str, Any] | None = None,
    **params: Annotated[Any, "keyword arguments of the factory (model.params)"],
) -> ModelAdapter:
    """Your own model code: `python:path/to/file.py:factory` or `python:package.module:factory`
    imports the file or module (this runs your code) and calls `factory(**params)`, which returns an
    nn.Module (wrapped with `mean`, `std`, `input_size`, `class_names` from the config; default
    ImageNet mean/std, 224 px) or a ModelAdapter. `weights`: a state-dict file (weights_only)."""
    where, name = split_spec(arch)
    module, file = import_source(where)
    factory = getattr(module, name, None)
    if not callable(factory):
        names = [n for n, v in vars(module).items() if callable(v) and not n.startswith("_")
                 and getattr(v, "__module__", None) == module.__name__]
        raise ModelError(f"{where} has no callable '{name}'.{did_you_mean(name, names)} "
                         f"Callables defined there: {', '.join(names) or '(none)'}")
    label = f"{where}:{name}"
    built = call_factory(factory, params, label, file)
    pre = dict(preprocessing or {})
    if isinstance(built, ModelAdapter):
        model = built
    elif isinstance(built, nn.Module):
        model = ModelAdapter(built, mean=pre.pop("mean", IMAGENET_MEAN), std=pre.pop("std", IMAGENET_STD),
                             input_size=pre.pop("input_size", 224), class_names=pre.pop("class_names", None),
                             score=pre.pop("score", None), name=f"python:{label}")
    else:
        raise ModelError(f"{label} returned {type(built).__name__}; it must return a torch.nn.Module or a ModelAdapter")
    w = "none" if weights is None else str(weights)
    if w.lower() not in ("none", "default"):
        apply_state_dict(model.module, load_state_dict(w), w)
    return model.set_preprocessing(**pre)

"""Run configuration: YAML → validated, typed `RunConfig` with defaults and dotted overrides.

Unknown keys, unknown plug-in names and bad types are `ConfigError`s that name the key and list
the valid choices (with a close-match suggestion). Schema: docs/architecture.md "Config".
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from .errors import ConfigError, did_you_mean
from .registry import coerce, param_fields


@dataclass
class ModelConfig:
    name: str = "builtin:synthetic-cnn"
    weights: str | None = "default"
    layer: str = "auto"
    params: dict = field(default_factory=dict)  # keyword arguments of the model factory (`xai list models`)
    mean: list[float] | None = None  # per input channel; overrides the source's preprocessing
    std: list[float] | None = None  # per input channel
    input_size: int | list[int] | None = None  # side or [height, width]; overrides the source's input size
    class_names: list[str] | None = None  # one name per class, in logit order
    score: Literal["softmax", "sigmoid"] | None = None  # class probability; None: sigmoid for one logit, else softmax

    def load_options(self) -> dict[str, Any]:
        """The keyword arguments of `models.load_model` besides the name and weights."""
        return dict(params=self.params, mean=self.mean, std=self.std, input_size=self.input_size,
                    class_names=self.class_names, score=self.score)


@dataclass
class DatasetConfig:
    name: str = "synthetic"
    root: str | None = None
    split: str = "test"
    limit: int | None = 256
    batch_size: int = 32
    num_workers: int = 2
    image_size: int | None = None  # None: the model's input size
    params: dict = field(default_factory=dict)  # dataset-specific options (`xai list datasets`)


@dataclass
class PluginSpec:
    """One explainer, metric or probe: its registry name, parameters and an optional image limit."""

    name: str
    params: dict = field(default_factory=dict)
    limit: int | None = None


@dataclass
class OutputConfig:
    dir: str = "results"
    save_maps: bool = True
    figures: bool = True


@dataclass
class RunConfig:
    name: str = "run"
    seed: int = 0
    device: str = "auto"
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"
    allow_cpu_autocast: bool = False  # bf16/fp16 autocast is for CUDA; on CPU only when set
    memory_budget_gb: float = 2.0  # CPU memory one inner chunk may use when chunk_size: auto
    target: Literal["label", "prediction"] = "label"
    on_error: Literal["skip", "fail"] = "skip"
    model: ModelConfig = field(default_factory=ModelConfig)
    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    explainers: list[PluginSpec] = field(default_factory=list)
    metrics: list[PluginSpec] = field(default_factory=list)
    probes: list[PluginSpec] = field(default_factory=list)
    featviz: dict | None = None  # activation maximization (`xai visualize`), see xaibench.featviz
    output: OutputConfig = field(default_factory=OutputConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)


SECTIONS = {"model": ModelConfig, "dataset": DatasetConfig, "output": OutputConfig}
PLUGIN_LISTS = ("explainers", "metrics", "probes")


def load(source: str | Path | dict, overrides: list[str] | tuple[str, ...] = ()) -> RunConfig:
    """Read a YAML file (or a dict), apply `key.sub=value` overrides, validate, fill defaults."""
    if isinstance(source, dict):
        raw = copy.deepcopy(source)
    else:
        path = Path(source)
        if not path.is_file():
            raise ConfigError(f"config file not found: {path}")
        try:
            raw = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as e:
            raise ConfigError(f"{path} is not valid YAML: {e}") from e
        if not isinstance(raw, dict):
            raise ConfigError(f"{path}: the top level must be a mapping of keys, got {type(raw).__name__}")
    for item in overrides:
        apply_override(raw, item)
    return validate(raw)


def apply_override(raw: dict, item: str) -> None:
    """Apply one `a.b.c=value` override (value parsed as YAML; list items by index: metrics.0.name)."""
    key, sep, text = item.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"override '{item}' must look like key.sub=value (e.g. dataset.limit=64)")
    try:
        value = yaml.safe_load(text) if text.strip() else None
    except yaml.YAMLError as e:
        raise ConfigError(f"override '{item}': value is not valid YAML: {e}") from e
    parts = key.strip().split(".")
    node: Any = raw
    for i, part in enumerate(parts[:-1]):
        if isinstance(node, list):
            slot: Any = _index(part, node, key)
        elif isinstance(node, dict):
            slot = part
            if node.get(part) is None:
                node[part] = {}
        else:
            raise ConfigError(f"override '{item}': '{'.'.join(parts[:i])}' is not a section")
        if isinstance(node[slot], str) and parts[i + 1] in ("params", "limit", "name"):
            node[slot] = {"name": node[slot]}  # a bare plug-in name becomes a mapping
        node = node[slot]
    last = parts[-1]
    if isinstance(node, list):
        node[_index(last, node, key)] = value
    elif isinstance(node, dict):
        node[last] = value
    else:
        raise ConfigError(f"override '{item}': '{'.'.join(parts[:-1])}' is not a section")


def _index(part: str, node: list, key: str) -> int:
    if not part.isdigit() or int(part) >= len(node):
        raise ConfigError(f"override '{key}': '{part}' is not an index of a list of {len(node)} items")
    return int(part)


def validate(raw: dict) -> RunConfig:
    top = param_fields(RunConfig)
    for key in raw:
        if key not in top:
            raise ConfigError(f"unknown config key '{key}'.{did_you_mean(key, top)} Valid keys: {', '.join(top)}")
    values: dict[str, Any] = {}
    for key, value in raw.items():
        if key in SECTIONS:
            values[key] = _section(SECTIONS[key], value, key)
        elif key in PLUGIN_LISTS:
            values[key] = _plugins(key, value)
        else:
            values[key] = coerce(value, top[key][0], key)
    cfg = RunConfig(**values)
    check_plugins(cfg)
    return cfg


def _section(cls: type, value: Any, where: str) -> Any:
    if value is None:
        return cls()
    if not isinstance(value, dict):
        raise ConfigError(f"'{where}' must be a mapping of keys, got {value!r}")
    fields = param_fields(cls)
    out = {}
    for key, v in value.items():
        if key not in fields:
            raise ConfigError(
                f"unknown key '{where}.{key}'.{did_you_mean(key, fields)} Valid keys of {where}: {', '.join(fields)}"
            )
        out[key] = coerce(v, fields[key][0], f"{where}.{key}")
    return cls(**out)


def _plugins(where: str, value: Any) -> list[PluginSpec]:
    if value is None:
        return []
    if isinstance(value, (str, dict)):
        value = [value]
    if not isinstance(value, list):
        raise ConfigError(f"'{where}' must be a list of names or {{name, params, limit}} mappings")
    specs = []
    for i, item in enumerate(value):
        if isinstance(item, str):
            item = {"name": item}
        if not isinstance(item, dict) or "name" not in item:
            raise ConfigError(f"{where}[{i}] must be a name or a mapping with a 'name' key, got {item!r}")
        specs.append(_section(PluginSpec, item, f"{where}[{i}]"))
    names = [s.name for s in specs]
    dup = {n for n in names if names.count(n) > 1}
    if dup:
        raise ConfigError(f"{where}: {', '.join(sorted(dup))} listed twice")
    return specs


def check_plugins(cfg: RunConfig) -> None:
    """Check every plug-in name and parameter against its registry (imports the families)."""
    from .datasets import DATASETS
    from .metrics import METRICS
    from .models import MODELS
    from .probes import PROBES
    from .saliency import EXPLAINERS

    family = cfg.model.name.partition(":")[0]
    from .errors import ModelError
    from .models.zoo import check_options

    try:
        check_options(family, MODELS.get(family).obj, cfg.model.params)
    except ModelError as e:
        raise ConfigError(f"model.params: {e}") from None
    ds_params = dict(cfg.dataset.params)
    clash = set(ds_params) & {"root", "split", "image_size"}
    if clash:
        raise ConfigError(f"dataset.params: set {', '.join(sorted(clash))} directly under dataset, not in params")
    DATASETS.check(cfg.dataset.name, ds_params, "dataset")
    for key, registry in (("explainers", EXPLAINERS), ("metrics", METRICS), ("probes", PROBES)):
        for spec in getattr(cfg, key):
            spec.params = registry.check(spec.name, spec.params, key)
    if cfg.featviz is not None:
        from .featviz import FeatvizParams

        checked = FeatvizParams.from_dict(cfg.featviz)  # names, types and ranges
        cfg.featviz = {k: getattr(checked, k) for k in cfg.featviz}

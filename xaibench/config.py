"""Run configuration: YAML → validated, typed `RunConfig` with defaults and dotted overrides.

Unknown keys, unknown plug-in names, bad types and out-of-range values are `ConfigError`s that
name the key and list the valid choices (with a close-match suggestion); every plug-in is built
once, so its own checks run before any model or data loads. Schema: docs/architecture.md "Config".
"""

from __future__ import annotations

import copy
import dataclasses
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml

from .errors import ConfigError, did_you_mean
from .registry import Registry, bound_problems, coerce, coerce_params, param, param_bounds, param_fields


@dataclass
class ModelConfig:
    name: str = param("builtin:synthetic-cnn", help="zoo model as family:arch (xai list models)")
    weights: str | None = param("default", help="default (shipped or pretrained), none (random) or a state-dict file")
    layer: str = param("auto", help="default layer of the CAMs and probes (xai list layers); auto: the last conv block")
    params: dict = param(default_factory=dict, help="keyword arguments of the model factory (xai list models)")
    mean: list[float] | None = param(None, help="per input channel; overrides the source's preprocessing")
    std: list[float] | None = param(None, help="per input channel; overrides the source's preprocessing", gt=0)
    input_size: int | list[int] | None = param(None, help="side or [height, width], px; overrides the source's input size",
                                               ge=1)
    class_names: list[str] | None = param(None, help="one name per class, in logit order")
    score: Literal["softmax", "sigmoid"] | None = param(None, help="class probability; null: sigmoid for one logit, "
                                                                  "else softmax")
    layout: Literal["channels_last", "nchw"] = param(
        "channels_last", help="memory layout of the model's own forwards on CPU: channels_last (faster oneDNN "
                              "convolutions) or nchw (LRP equals Zennit's bit for bit; in channels-last, rounding is "
                              "amplified where relevances cancel)")

    def load_options(self) -> dict[str, Any]:
        """The keyword arguments of `models.load_model` besides the name and weights."""
        return dict(params=self.params, mean=self.mean, std=self.std, input_size=self.input_size,
                    class_names=self.class_names, score=self.score)

    def load(self, device: Any) -> Any:
        """The configured ModelAdapter on `device` (models.load_model, then the layout)."""
        from .models.zoo import load_model

        model = load_model(self.name, self.weights, **self.load_options()).to(device)
        model.channels_last = self.layout == "channels_last"
        return model


@dataclass
class DatasetConfig:
    name: str = param("synthetic", help="data source (xai list datasets)")
    root: str | None = param(None, help="where the data is; null: the source's default")
    split: str = param("test", help="split read")
    limit: int | None = param(256, help="the first N images; null: all", ge=1)
    batch_size: int = param(32, help="images per batch", ge=1)
    num_workers: int = param(2, help="data-loader worker processes; 0: load in the main process", ge=0)
    image_size: int | None = param(None, help="side of the images, px; null: the model's input size", ge=1)
    params: dict = param(default_factory=dict, help="source-specific options (xai list datasets)")


@dataclass
class PluginSpec:
    """One explainer, metric or probe: its registry name, parameters and an optional image limit."""

    name: str = param(help="registry name (xai list explainers | metrics | probes)")
    params: dict = param(default_factory=dict, help="its parameters (xai list shows them with their help)")
    limit: int | None = param(None, help="only the first N images; null: all", ge=0)
    label: str | None = param(None, help="display name (YAML key `as`) under which it is stored and shown, so one "
                                         "plug-in can be listed with several settings; null: its name")

    @property
    def key(self) -> str:
        """The name its results are stored and shown under: `as` when given, else the registry name."""
        return self.label or self.name


@dataclass
class OutputConfig:
    dir: str = param("results", help="folder the run folders are created in")
    save_maps: bool = param(True, help="store the maps in results.h5")
    figures: bool = param(True, help="draw the figures after the run")


@dataclass
class RunConfig:
    name: str = param("run", help="run name, the start of the run folder's name")
    seed: int = param(0, help="seed of the run (batches, plug-ins' own seeds aside)")
    device: str = param("auto", help="auto, cpu, cuda, cuda:1 or mps")
    precision: Literal["fp32", "bf16", "fp16"] = param("fp32", help="autocast precision: fp32, bf16 or fp16 (CUDA "
                                                                    "only unless allow_cpu_autocast)")
    allow_cpu_autocast: bool = param(False, help="allow bf16/fp16 autocast on CPU (it is meant for CUDA)")
    memory_budget_gb: float = param(2.0, help="CPU memory one inner chunk may use with chunk_size: auto, GB", gt=0)
    target: Literal["label", "prediction"] = param("label", help="class explained: the label or the prediction")
    on_error: Literal["skip", "fail"] = param("skip", help="a failed image: skip (recorded in errors.csv) or fail")
    model: ModelConfig = param(default_factory=ModelConfig, help="the model (model: section)")
    dataset: DatasetConfig = param(default_factory=DatasetConfig, help="the data (dataset: section)")
    explainers: list[PluginSpec] = param(default_factory=list, help="explainers: names or {name, params, limit}")
    metrics: list[PluginSpec] = param(default_factory=list, help="metrics: names or {name, params, limit}")
    probes: list[PluginSpec] = param(default_factory=list, help="model-level probes: names or {name, params, limit}")
    featviz: dict | None = param(None, help="activation maximization (xai visualize), see xaibench.featviz")
    output: OutputConfig = param(default_factory=OutputConfig, help="what is written (output: section)")

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
        if isinstance(node[slot], str) and parts[i + 1] in ("params", "limit", "name", "as"):
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
            for sub, msg in bound_problems(values[key], param_bounds(RunConfig).get(key, {})):
                raise ConfigError(f"{key}{sub}: {msg}")
    cfg = RunConfig(**values)
    check_plugins(cfg)
    return cfg


def _section(cls: type, value: Any, where: str) -> Any:
    if value is None:
        return cls()
    if not isinstance(value, dict):
        raise ConfigError(f"'{where}' must be a mapping of keys, got {value!r}")
    fields = param_fields(cls)
    for key in value:
        if key not in fields:
            raise ConfigError(
                f"unknown key '{where}.{key}'.{did_you_mean(key, fields)} Valid keys of {where}: {', '.join(fields)}"
            )
    return cls(**coerce_params(fields, value, where, param_bounds(cls)))


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
        if "as" in item:
            if where == "probes":
                raise ConfigError(f"{where}[{i}].as: probes take no display name (only explainers and metrics)")
            item = {("label" if k == "as" else k): v for k, v in item.items()}
        spec = _section(PluginSpec, item, f"{where}[{i}]")
        if spec.label is not None and not DISPLAY_NAME.fullmatch(spec.label):
            raise ConfigError(f"{where}[{i}].as: '{spec.label}' is not a valid display name: letters, digits and "
                              "_ . - only (no '/' or ':', which separate explainers, metrics and sub-scores)")
        specs.append(spec)
    names = [s.key for s in specs]
    dup = {n for n in names if names.count(n) > 1}
    if dup:
        raise ConfigError(f"{where}: {', '.join(sorted(dup))} listed twice; give each entry its own display name "
                          f"with `as:` (e.g. {{name: {sorted(dup)[0]}, as: {sorted(dup)[0]}_2, params: {{…}}}})")
    return specs


DISPLAY_NAME = re.compile(r"[A-Za-z0-9_.\-]+")


def check_plugins(cfg: RunConfig) -> None:
    """Check every plug-in name and parameter against its registry (imports the families) and
    build each explainer, metric and probe once (and the featviz settings), so that their own
    checks run now, before any model or data loads. Datasets are checked, not built (building
    one reads its data)."""
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
    direct = {"split": cfg.dataset.split, "image_size": cfg.dataset.image_size}  # set under dataset, not params
    DATASETS.check(cfg.dataset.name, {**ds_params, **{k: v for k, v in direct.items() if v is not None}}, "dataset")
    for key, registry in (("explainers", EXPLAINERS), ("metrics", METRICS), ("probes", PROBES)):
        for i, spec in enumerate(getattr(cfg, key)):
            spec.params = registry.check(spec.name, spec.params, key)  # names, types, bounds
            construct(registry, spec.name, spec.params, f"{key}[{i}] ({spec.name})")
    if cfg.featviz is not None:
        from .featviz import FeatvizParams

        checked = FeatvizParams.from_dict(cfg.featviz)  # names, types, ranges
        cfg.featviz = {k: getattr(checked, k) for k in cfg.featviz}


def construct(registry: Registry, name: str, params: dict[str, Any], where: str) -> Any:
    """Build plug-in `name` from checked `params` (`chunk_size: auto` stays auto: the run sizes it
    for the model); its cross-field ConfigErrors are prefixed with `where`, the key path."""
    try:
        return registry.get(name).obj(**params)
    except ConfigError as e:
        raise ConfigError(f"{where}: {e}") from e

"""Devices and precision: `auto` picks CUDA when present, else the CPU; bf16/fp16 autocast for the
model's forwards (maps and metric arithmetic stay float32).
"""

from __future__ import annotations

import contextlib

import torch

from .errors import ConfigError


def resolve_device(name: str) -> torch.device:
    """`auto` → CUDA when present, else CPU; explicit names are checked."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as e:
        raise ConfigError(f"device: '{name}' is not a device. Valid: auto, cpu, cuda, cuda:N, mps") from e
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device: '{name}' asked for CUDA, but CUDA is not available here; use auto or cpu")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError("device: 'mps' is not available here; use auto or cpu")
    return device


def autocast(precision: str, device: torch.device, allow_cpu: bool = False) -> contextlib.AbstractContextManager:
    """Model forwards under autocast for bf16/fp16 on CUDA (maps and metric arithmetic stay fp32);
    on CPU only with `allow_cpu` (the config's `allow_cpu_autocast`)."""
    if precision == "fp32":
        return contextlib.nullcontext()
    if device.type != "cuda" and not allow_cpu:
        raise ConfigError(f"precision: {precision} is for CUDA (this run is on {device}); use fp32, "
                          "or set allow_cpu_autocast: true to autocast on the CPU anyway")
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device.type, dtype=dtype)

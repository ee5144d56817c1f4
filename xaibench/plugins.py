"""Imports every module of a plug-in package so that its registrations run (registry beside
the definition: adding a file is enough to add a plug-in)."""

from __future__ import annotations

import importlib
import pkgutil


def import_submodules(package: str, path: list[str]) -> None:
    for info in sorted(pkgutil.iter_modules(path), key=lambda i: i.name):
        if not info.name.startswith("_"):
            importlib.import_module(f"{package}.{info.name}")

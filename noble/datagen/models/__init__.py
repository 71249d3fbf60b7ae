"""Model families: one module each, one interface (`base.ModelFamily`)."""

from __future__ import annotations

from importlib import import_module

from .base import BuiltGroup, ModelFamily, ParamSpec

_FAMILY_MODULES = {"hh": "hh", "lif": "lif", "qilif": "qilif", "hh_mc": "hh_mc"}


def available() -> list[str]:
    """Names of the families that import in this installation."""
    names = []
    for name in _FAMILY_MODULES:
        try:
            get(name)
        except ImportError:
            continue
        names.append(name)
    return names


def get(name: str) -> type[ModelFamily]:
    """The family class for a name; ValueError naming the allowed values otherwise."""
    if name not in _FAMILY_MODULES:
        raise ValueError(f"unknown model family {name!r}; allowed: {sorted(_FAMILY_MODULES)}")
    module = import_module(f"{__name__}.{_FAMILY_MODULES[name]}")
    return module.family


def register(name: str, module: str) -> None:
    """Add a family module (e.g. a multi-compartment one) under `noble.datagen.models`."""
    _FAMILY_MODULES[name] = module


__all__ = ["BuiltGroup", "ModelFamily", "ParamSpec", "available", "get", "register"]

"""Lazy public APIs for packages whose submodules import heavy libraries (torch, Brian2)."""

from __future__ import annotations

import importlib
import sys
from typing import Any, Callable


def lazy_getattr(package: str, exports: dict[str, str]) -> Callable[[str], Any]:
    """A module `__getattr__` for `package`: `exports[name]` (a module path) is imported on first access and
    the attribute cached on the package. The cache also replaces a submodule that importing bound to the
    same name (importing `noble.operator.sample` binds `noble.operator.sample` to the module, not the
    function the API promises)."""

    def __getattr__(name: str) -> Any:
        if name in exports:
            value = getattr(importlib.import_module(exports[name]), name)
            setattr(sys.modules[package], name, value)
            return value
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return __getattr__

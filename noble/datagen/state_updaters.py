"""Brian2 integration methods whose derived update code is cached on disk.

Brian2 derives an explicit method's update code (RK4 here) from the equations with sympy, once per process and
equation variant: ~9 s for the `hh` equations with I_D, in every fit worker, service process and Dask worker,
before the first time step. The code depends only on the equations' text and the method, so it is kept in
`<cache_dir>/brian2_state_updaters/` and read back by later processes (Brian2 already caches the compiled
Cython extensions the same way, in ~/.cython)."""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from typing import Any

import brian2 as b2
from brian2.stateupdaters.base import StateUpdateMethod
from brian2.stateupdaters.explicit import ExplicitStateUpdater


def cache_dir() -> Path:
    """Where derived update code is kept: NOBLE_CACHE_DIR, else $XDG_CACHE_HOME/noble, else ~/.cache/noble."""
    explicit = os.environ.get("NOBLE_CACHE_DIR")
    if explicit:
        return Path(explicit) / "brian2_state_updaters"
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "noble" / "brian2_state_updaters"


class DiskCachedStateUpdater:
    """A Brian2 `method=` callable: the registered explicit method `name`, its code read from disk when the same
    equations were integrated before (by any process), else derived by Brian2 and written atomically."""

    def __init__(self, name: str) -> None:
        if name not in StateUpdateMethod.stateupdaters:
            raise ValueError(f"unknown Brian2 integration method {name!r}")
        if not isinstance(StateUpdateMethod.stateupdaters[name], ExplicitStateUpdater):
            # e.g. exponential_euler: its code also depends on which of the group's variables are constant
            raise ValueError(f"{name!r} is not an explicit method: its code is not a function of the equations alone")
        self.name = name
        self.__name__ = name  # what Brian2 logs as the method's name

    def key(self, equations: Any, method_options: Any = None) -> str:
        text = f"brian2 {b2.__version__}|{self.name}|{method_options!r}|{equations}"
        return hashlib.sha256(text.encode()).hexdigest()

    def __call__(self, equations: Any, variables: Any = None, method_options: Any = None) -> str:
        path = cache_dir() / f"{self.key(equations, method_options)}.txt"
        try:
            return path.read_text()
        except OSError:
            pass
        code: str = StateUpdateMethod.stateupdaters[self.name](equations, variables, method_options)
        tmp: str | None = None
        try:  # best effort: a read-only home only loses the saving
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
            with os.fdopen(fd, "w") as fh:
                fh.write(code)
            os.replace(tmp, path)  # atomic: a reader sees the whole code or none
        except OSError:
            if tmp is not None:
                Path(tmp).unlink(missing_ok=True)
        return code


_UPDATERS: dict[str, DiskCachedStateUpdater] = {}


def cached_method(name: str) -> DiskCachedStateUpdater:
    """The one disk-cached updater per method name (one instance, so Brian2's in-process cache keys on it too)."""
    if name not in _UPDATERS:
        _UPDATERS[name] = DiskCachedStateUpdater(name)
    return _UPDATERS[name]

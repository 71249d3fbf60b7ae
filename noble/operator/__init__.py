"""NOBLE-style surrogate: feature embedding -> FNO (neuraloperator) -> voltage; train, evaluate, sample.

Public API (imported lazily so `noble --help` does not pay for torch):
`load_surrogate(path) -> Surrogate`, `sample(surrogate, stimulus, n, seed, features=None) -> SampleResult`,
`default_surrogate_path() -> Path`.
"""

from __future__ import annotations

from typing import Any

_EXPORTS = {
    "load_surrogate": "noble.operator.checkpoint",
    "save_checkpoint": "noble.operator.checkpoint",
    "default_surrogate_path": "noble.operator.checkpoint",
    "Surrogate": "noble.operator.model",
    "NobleOperator": "noble.operator.model",
    "sample": "noble.operator.sample",
    "SampleResult": "noble.operator.sample",
    "SurrogateConfig": "noble.operator.config",
    "TrainConfig": "noble.operator.config",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        import importlib

        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        # Importing the submodule `noble.operator.sample` binds the package attribute `sample` to the
        # module; rebind it to the function the API promises.
        globals()[name] = value
        return value
    raise AttributeError(f"module 'noble.operator' has no attribute {name!r}")

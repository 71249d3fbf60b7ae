"""Fitting recordings: feature targets (`targets`), the two-stage fit (`api.fit_recording`: surrogate
embedding by gradient descent, then CMA-ES on the Brian2 `hh` parameters) and its files (`report`).

Public API (imported lazily so `noble --help` does not pay for Brian2 / torch):
`fit_recording(path_or_recording, config=None, **overrides) -> FitResult`, `FitConfig`, `FitResult`,
`write_outputs(result, out_dir)`, `recording_targets(recording)`.
"""

from __future__ import annotations

from typing import Any

_EXPORTS = {
    "fit_recording": "noble.fit.api",
    "FitConfig": "noble.fit.api",
    "FitResult": "noble.fit.api",
    "write_outputs": "noble.fit.report",
    "recording_targets": "noble.fit.targets",
    "RecordingTargets": "noble.fit.targets",
    "SurrogateUnavailable": "noble.fit.surrogate_stage",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        import importlib

        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'noble.fit' has no attribute {name!r}")

"""Fitting recordings: feature targets (`targets`), the two-stage fit (`api.fit_recording`: surrogate
embedding by gradient descent, then CMA-ES on the Brian2 `hh` parameters) and its files (`report`).

Public API (imported lazily so `noble --help` does not pay for Brian2 / torch):
`fit_recording(path_or_recording, config=None, **overrides) -> FitResult`, `FitConfig`, `FitResult`,
`write_outputs(result, out_dir)`, `recording_targets(recording)`.
"""

from __future__ import annotations

from noble._lazy import lazy_getattr

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

__getattr__ = lazy_getattr(__name__, _EXPORTS)

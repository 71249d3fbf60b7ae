"""NOBLE-style surrogate: feature embedding -> FNO (neuraloperator) -> voltage; train, evaluate, sample.

Public API (imported lazily so `noble --help` does not pay for torch):
`load_surrogate(path) -> Surrogate`, `sample(surrogate, stimulus, n, seed, features=None) -> SampleResult`,
`default_surrogate_path() -> Path`, `shipped_surrogate_paths() -> {name: Path}`, `check_stimulus_domain(config, stimulus, extrapolate=False) -> warnings`
(raises `OutsideTrainedDomain` for a stimulus outside the trained amplitudes).
"""

from __future__ import annotations

from noble._lazy import lazy_getattr

_EXPORTS = {
    "load_surrogate": "noble.operator.checkpoint",
    "save_checkpoint": "noble.operator.checkpoint",
    "default_surrogate_path": "noble.operator.checkpoint",
    "shipped_surrogate_paths": "noble.operator.checkpoint",
    "resolve_surrogate": "noble.operator.checkpoint",
    "Surrogate": "noble.operator.model",
    "NobleOperator": "noble.operator.model",
    "sample": "noble.operator.sample",
    "SampleResult": "noble.operator.sample",
    "SurrogateConfig": "noble.operator.config",
    "TrainConfig": "noble.operator.config",
    "check_stimulus_domain": "noble.operator.domain",
    "OutsideTrainedDomain": "noble.operator.domain",
    "trained_amplitudes": "noble.operator.domain",
    "HallOfFame": "noble.operator.hall_of_fame",
    "read_hall_of_fame": "noble.operator.hall_of_fame",
    "write_hall_of_fame": "noble.operator.hall_of_fame",
}
__all__ = sorted(_EXPORTS)

__getattr__ = lazy_getattr(__name__, _EXPORTS)

"""The acceptance tolerances of a fit: what counts as reproducing a recording (a light module: the service
validates them without importing Brian2)."""

from __future__ import annotations

import numpy as np
from pydantic import BaseModel, ConfigDict, Field


class Tolerances(BaseModel):
    """What counts as a fit that reproduces the recording (the acceptance checks, `api.acceptance_checks`)."""

    model_config = ConfigDict(extra="forbid")
    spike_count: float = Field(1.0, gt=0, description="spikes per supra-threshold sweep, or ...")
    spike_count_rel: float = Field(0.1, ge=0, description="... this fraction of the recorded count if larger")
    rheobase_pA: float = Field(20.0, gt=0)
    latency_ms: float = Field(5.0, gt=0, description="first-spike latency at the two lowest supra-threshold sweeps")
    rest_mV: float = Field(2.0, gt=0)

    def count_tol(self, n_spikes: float | np.ndarray) -> float | np.ndarray:
        return np.maximum(self.spike_count, self.spike_count_rel * np.asarray(n_spikes, dtype=float))


# spike counts are integers: a term's sd never goes below one spike, however tight the tolerance
COUNT_SD_FLOOR = 1.0

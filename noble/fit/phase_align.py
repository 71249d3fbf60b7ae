"""Phase alignment of spontaneously firing models to the recording they are fitted to.

A pacemaking cell is recorded mid-cycle: when the step comes, its last spike was some ms ago, and at small
steps the first spike of the step is the rest of that cycle, shortened by the step (the spontaneously active
recordings fire every 120-160 ms at 0 pA, with the last pre-step spike anywhere in the cycle). A model on a
limit cycle has a phase too, but the phase is an initial condition, not a property of the neuron; like the
resting potential it is set from the recording. Each candidate is run once at its holding current (the
run-in: `settle_ms` to reach its limit cycle, then `search_ms` to find a spike); for each sweep it then starts
from the run-in's state at the instant that puts a model spike exactly where the recording's last spike before
the step is. Both sides use the same upward crossing of -20 mV (the eFEL threshold), so the alignment is exact
to one record sample. A sweep with no spike in its pre-step window, or a model with no spike late enough in the
run-in (silent, or slower than `search_ms`), starts from the run-in's end: on its limit cycle or at rest.
"""

from __future__ import annotations

import numpy as np

from noble.io.recording import Recording

from .targets import upward_crossings


def last_prestep_spike_ms(rec: Recording, threshold_mV: float = -20.0) -> list[float | None]:
    """Per sweep, the time (ms from the sweep's start) of the last upward threshold crossing before the step."""
    out: list[float | None] = []
    for s in rec.sweeps:
        assert s.dt_ms is not None
        n = int(round(s.rest_end_ms / s.dt_ms))  # before any pre-step, which may silence the cell
        idx = upward_crossings(s.v_mV[:n], threshold_mV)
        out.append(float(idx[-1] * s.dt_ms) if len(idx) else None)
    return out


def aligned_start_index(v_run_mV: np.ndarray, dt_ms: float, spike_at_ms: float | None, settle_ms: float,
                        threshold_mV: float = -20.0) -> int | None:
    """Index into a run-in trace from which a run puts its spike at `spike_at_ms`: the latest run-in crossing
    s with s - spike_at_ms >= settle_ms, minus spike_at_ms (None: no such crossing, or no target)."""
    if spike_at_ms is None:
        return None
    shift = int(round(spike_at_ms / dt_ms))
    first = int(round(settle_ms / dt_ms))
    idx = upward_crossings(v_run_mV, threshold_mV) - shift
    idx = idx[idx >= first]
    return int(idx[-1]) if len(idx) else None


def aligned_states(run_state: dict[str, np.ndarray], dt_ms: float, spike_at_ms: list[float | None],
                   settle_ms: float, threshold_mV: float = -20.0) -> dict[str, np.ndarray]:
    """Start states (C * S rows, candidate-major) from run-in states (C, T) per variable, one per sweep target
    in `spike_at_ms` (rows that cannot be aligned start at the run-in's end)."""
    v = run_state["v"]
    C, T = v.shape
    S = len(spike_at_ms)
    index = np.full((C, S), T - 1, dtype=np.int64)
    for c in range(C):
        if not np.all(np.isfinite(v[c])):
            continue  # a diverged run-in (NaN): HHFit.build starts such rows at their steady state
        for k, at in enumerate(spike_at_ms):
            j = aligned_start_index(v[c], dt_ms, at, settle_ms, threshold_mV)
            if j is not None:
                index[c, k] = j
    rows = np.repeat(np.arange(C), S)
    cols = index.reshape(-1)
    return {name: arr[rows, cols] for name, arr in run_state.items()}

"""Synthetic recordings from known hh parameters (shared by the fit tests and the benchmark)."""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

from noble.datagen.simulate import simulate, steps_matrix
from noble.fit.hhmodel import HHFit, params_row
from noble.io import Recording, Sweep


def synthetic_recording(params: Mapping[str, float], amplitudes_pA: Sequence[float], *, start_ms: float = 100.0,
                        duration_ms: float = 400.0, tail_ms: float = 150.0, dt_ms: float = 0.05,
                        noise_pA: float = 2.0, seed: int = 1, prestep_pA: float = 0.0,
                        prestep_ms: float = 0.0, bias_pA: Sequence[float] | None = None) -> Recording:
    """Steps simulated from `params` (Brian2, dt 0.025 ms, OU current noise), sampled at dt_ms. With prestep_ms
    > 0 every sweep first steps to prestep_pA for prestep_ms, ending at the test step's onset (start_ms). bias_pA
    (one per sweep): a constant current the cell gets on top of the command, which the recorded command does not
    show (a drifting cell's activity-dependent current)."""
    amps = np.asarray(amplitudes_pA, dtype=float)
    total = start_ms + duration_ms + tail_ms
    stim = steps_matrix(amps, start_ms, duration_ms, total, dt_ms)
    if prestep_ms > 0:
        t = np.arange(stim.shape[1]) * dt_ms
        stim[:, (t >= start_ms - prestep_ms - 1e-9) & (t < start_ms - 1e-9)] += prestep_pA
    row = params_row(dict(params))
    drive = stim if bias_pA is None else stim + np.asarray(bias_pA, dtype=float)[:, None]
    res = simulate(HHFit, np.repeat(row[None], len(amps), axis=0), drive, stim_dt_ms=dt_ms, duration_ms=total,
                   dt_ms=0.025, record_dt_ms=dt_ms, noise_sigma_pA=noise_pA, seed=seed)
    sweeps = [Sweep(v_mV=res.v_mV[k].astype(np.float64), i_pA=stim[k], dt_ms=dt_ms, stim_amplitude_pA=float(a),
                    stim_start_ms=start_ms, stim_end_ms=start_ms + duration_ms, index=k)
              for k, a in enumerate(amps)]
    return Recording(sweeps, source="synthetic-hh", format="memory", cell="synthetic")


def load_benchmark(name: str) -> Any:
    """The module benchmarks/<name>.py (benchmarks are scripts, not a package), for the benchmarks' CI smokes."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "benchmarks" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod

"""Plain CSV recordings: one row per sample, columns time_ms (or time_s), voltage_mV, current_pA and an
optional sweep column (long format, sweeps one after another). Units are part of the column names, so a
file in V or nA is refused rather than misread. The step of each sweep is read off its current column.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np

from ._atomic import atomic_path
from .recording import Recording, RecordingError, Sweep, sweeps_from_traces

_TIME = {"time_ms": 1.0, "t_ms": 1.0, "time_s": 1000.0, "t_s": 1000.0}
_VOLT = ("voltage_mv", "v_mv")
_CURR = ("current_pa", "i_pa")
_SWEEP = ("sweep", "sweep_index", "sweep_number")
_WRONG_UNITS = {"voltage_v": "V", "v_v": "V", "voltage_uv": "uV", "current_na": "nA", "i_na": "nA",
                "current_a": "A", "i_a": "A", "time_us": "us"}


def read_csv(path: str | os.PathLike[str]) -> Recording:
    """A CSV recording (see module docstring) as a Recording."""
    import pandas as pd

    path = Path(path)
    if not path.is_file():
        raise RecordingError(f"{path}: no such file")
    try:
        df = pd.read_csv(path, comment="#", skipinitialspace=True)
    except Exception as exc:
        raise RecordingError(f"{path}: not a readable CSV file ({type(exc).__name__}: {exc})") from exc
    cols = {str(c).strip().lower(): c for c in df.columns}
    wrong = [f"{cols[c]!r} ({u})" for c, u in _WRONG_UNITS.items() if c in cols]
    if wrong:
        raise RecordingError(f"{path}: columns in unsupported units: {', '.join(wrong)}; "
                             "convert to time_ms/time_s, voltage_mV, current_pA")
    t_col = next((c for c in _TIME if c in cols), None)
    v_col = next((c for c in _VOLT if c in cols), None)
    i_col = next((c for c in _CURR if c in cols), None)
    missing = [name for name, col in (("time_ms or time_s", t_col), ("voltage_mV", v_col), ("current_pA", i_col))
               if col is None]
    if missing:
        raise RecordingError(f"{path}: missing column(s) {', '.join(missing)} (found: {list(df.columns)})")
    assert t_col is not None and v_col is not None and i_col is not None
    if len(df) < 10:
        raise RecordingError(f"{path}: only {len(df)} rows")
    try:
        t = df[cols[t_col]].to_numpy(dtype=np.float64) * _TIME[t_col]
        v = df[cols[v_col]].to_numpy(dtype=np.float64)
        i = df[cols[i_col]].to_numpy(dtype=np.float64)
    except (ValueError, TypeError) as exc:
        raise RecordingError(f"{path}: non-numeric values ({exc})") from exc
    s_col = next((c for c in _SWEEP if c in cols), None)
    if s_col is not None:
        sw = df[cols[s_col]].to_numpy()
        _, first = np.unique(sw, return_index=True)
        labels = sw[np.sort(first)]
        groups = [np.flatnonzero(sw == lab) for lab in labels]
    else:
        labels = np.array([0])
        groups = [np.arange(len(df))]
    traces = []
    for k, (lab, idx) in enumerate(zip(labels, groups)):
        tk = t[idx]
        if len(tk) < 10 or not np.all(np.isfinite(tk)):
            raise RecordingError(f"{path}: sweep {lab}: too few rows or non-finite times")
        d = np.diff(tk)
        dt = float(np.median(d))
        if dt <= 0 or np.max(np.abs(d - dt)) > 0.01 * dt:
            raise RecordingError(f"{path}: sweep {lab}: time column is not uniformly increasing")
        try:
            index = int(lab)
        except (TypeError, ValueError):
            index = k
        traces.append((index, v[idx], i[idx], dt, float(tk[0])))
    sweeps = sweeps_from_traces(traces, str(path))
    return Recording(sweeps, source=str(path), format="csv", cell=None, metadata={"time_column": cols[t_col]})


def write_csv(path: str | os.PathLike[str], sweeps: Recording | Sequence[Sweep]) -> Path:
    """Write sweeps as long-format CSV (sweep, time_ms, voltage_mV, current_pA); atomic."""
    import pandas as pd

    items = list(sweeps.sweeps if isinstance(sweeps, Recording) else sweeps)
    if not items:
        raise RecordingError(f"{path}: nothing to write (no sweeps)")
    df = pd.concat([pd.DataFrame({"sweep": np.full(s.n_samples, s.index), "time_ms": s.t0_ms + s.time_ms,
                                  "voltage_mV": s.v_mV, "current_pA": s.command_pA()}) for s in items])
    with atomic_path(path) as tmp:
        df.to_csv(tmp, index=False, float_format="%.10g")
    return Path(path)

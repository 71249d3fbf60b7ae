"""NumPy .npz recordings: t_ms (T,), v_mV (n,T), i_pA (n,T); optionally stim_start_ms, stim_end_ms,
stim_amplitude_pA and sweep_index, each (n,), which then override the step read off i_pA. Loaded with
allow_pickle=False: an .npz never executes code.
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path
from typing import Sequence

import numpy as np

from ._atomic import atomic_path
from .recording import Recording, RecordingError, Sweep, sweeps_from_traces

ZIP_MAGIC = b"PK\x03\x04"
_STEP_KEYS = ("stim_start_ms", "stim_end_ms", "stim_amplitude_pA")


def read_npz(path: str | os.PathLike[str]) -> Recording:
    """An .npz recording (see module docstring) as a Recording."""
    path = Path(path)
    if not path.is_file():
        raise RecordingError(f"{path}: no such file")
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: np.asarray(z[k]) for k in z.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise RecordingError(f"{path}: not a readable .npz file ({type(exc).__name__}: {exc})") from exc
    missing = [k for k in ("t_ms", "v_mV", "i_pA") if k not in arrays]
    if missing:
        raise RecordingError(f"{path}: missing array(s) {missing} (found: {sorted(arrays)})")
    try:
        t = np.asarray(arrays["t_ms"], dtype=np.float64).ravel()
        v = np.atleast_2d(np.asarray(arrays["v_mV"], dtype=np.float64))
        i = np.atleast_2d(np.asarray(arrays["i_pA"], dtype=np.float64))
    except (TypeError, ValueError) as exc:
        raise RecordingError(f"{path}: arrays are not numeric ({exc})") from exc
    if v.ndim != 2 or v.shape != i.shape or v.shape[1] != len(t):
        raise RecordingError(f"{path}: shapes do not match: t_ms {t.shape}, v_mV {v.shape}, i_pA {i.shape} "
                             "(want (T,), (n,T), (n,T))")
    if len(t) < 10 or not np.all(np.isfinite(t)):
        raise RecordingError(f"{path}: t_ms too short or not finite")
    d = np.diff(t)
    dt = float(np.median(d))
    if dt <= 0 or np.max(np.abs(d - dt)) > 0.01 * dt:
        raise RecordingError(f"{path}: t_ms is not uniformly increasing")
    n = v.shape[0]
    index = (np.asarray(arrays["sweep_index"]).astype(int).ravel() if "sweep_index" in arrays
             else np.arange(n))
    if len(index) != n:
        raise RecordingError(f"{path}: sweep_index has {len(index)} entries for {n} sweeps")
    if all(k in arrays for k in _STEP_KEYS):
        vals = [np.broadcast_to(np.asarray(arrays[k], dtype=np.float64).ravel(), (n,)) for k in _STEP_KEYS]
        try:
            sweeps = [Sweep(v_mV=v[k], i_pA=i[k], dt_ms=dt, t0_ms=float(t[0]), stim_start_ms=vals[0][k],
                            stim_end_ms=vals[1][k], stim_amplitude_pA=vals[2][k], index=int(index[k]))
                      for k in range(n)]
        except RecordingError as exc:
            raise RecordingError(f"{path}: {exc}") from exc
    else:
        sweeps = sweeps_from_traces([(int(index[k]), v[k], i[k], dt, float(t[0])) for k in range(n)], str(path))
    return Recording(sweeps, source=str(path), format="npz")


def write_npz(path: str | os.PathLike[str], sweeps: Recording | Sequence[Sweep]) -> Path:
    """Write equal-length sweeps as a compressed .npz (with their step windows); atomic."""
    rec = sweeps if isinstance(sweeps, Recording) else Recording(list(sweeps))
    t, v, i = rec.stack()
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.savez_compressed(
                fh, t_ms=t + rec.sweeps[0].t0_ms, v_mV=v, i_pA=i,
                stim_start_ms=np.array([s.stim_start_ms for s in rec.sweeps]),
                stim_end_ms=np.array([s.stim_end_ms for s in rec.sweeps]),
                stim_amplitude_pA=rec.amplitudes_pA, sweep_index=np.array([s.index for s in rec.sweeps]))
    return Path(path)

"""Content negotiation for trace responses: JSON (default), NumPy `.npz` and NWB.

JSON is written with orjson straight from numpy arrays (NaN -> null), which is what makes a 16 x 10^4-sample
response cheap enough to serve at a few ms. NWB goes through `noble.io.nwb.write_nwb` (CurrentClampSeries
+ CurrentClampStimulusSeries per trace).
"""

from __future__ import annotations

import io
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import orjson
from fastapi import Response

from .errors import ApiError

JSON = "application/json"
NPZ = "application/x-npz"
NWB = "application/x-nwb"
_ALIASES = {JSON: "json", NPZ: "npz", NWB: "nwb", "application/npz": "npz", "application/x-hdf5+nwb": "nwb",
            "*/*": "json", "application/*": "json"}

ALT_CONTENT = {
    NPZ: {"schema": {"type": "string", "format": "binary"}},
    NWB: {"schema": {"type": "string", "format": "binary"}},
}


def choose_format(accept: str | None) -> str:
    """Best of json / npz / nwb for an Accept header (q-values honoured); 406 if none is acceptable."""
    if not accept or not accept.strip():
        return "json"
    best, best_q = None, -1.0
    for part in accept.split(",")[:50]:
        fields = [f.strip() for f in part.split(";")]
        media = fields[0].lower()
        q = 1.0
        for f in fields[1:]:
            if f.lower().startswith("q="):
                try:
                    q = float(f[2:])
                except ValueError:
                    q = 0.0
        fmt = _ALIASES.get(media)
        if fmt is None or not (0 < q <= 1):
            continue
        if q > best_q:
            best, best_q = fmt, q
    if best is None:
        raise ApiError(406, f"cannot produce any of {accept[:200]!r}; available: {JSON}, {NPZ}, {NWB}")
    return best


def _default(obj: Any) -> Any:
    if isinstance(obj, np.ndarray):
        if obj.dtype.kind in "fiub" and not obj.flags.c_contiguous:
            return np.ascontiguousarray(obj)
        return nan_to_none(obj) if obj.dtype.kind == "f" else obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, (set, tuple)):
        return list(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def json_response(payload: dict[str, Any], status_code: int = 200) -> Response:
    body = orjson.dumps(payload, default=_default, option=orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS)
    return Response(content=body, status_code=status_code, media_type=JSON)


def nan_to_none(a: np.ndarray) -> Any:
    """A float array as nested lists with NaN/inf -> None (for non-orjson paths)."""
    arr = np.asarray(a, dtype=np.float64)
    obj = arr.astype(object)
    obj[~np.isfinite(arr)] = None
    return obj.tolist()


def npz_response(arrays: dict[str, Any], filename: str) -> Response:
    buf = io.BytesIO()
    np.savez_compressed(buf, **{k: np.asarray(v) for k, v in arrays.items()})
    return Response(content=buf.getvalue(), media_type=NPZ,
                    headers={"Content-Disposition": f'attachment; filename="{filename}.npz"'})


def nwb_bytes(v_mV: np.ndarray, stim_pA: np.ndarray, dt_ms: float, stim_start_ms: float, stim_end_ms: float,
              amplitude_pA: float, metadata: dict[str, Any], per_trace: list[dict[str, Any]] | None = None,
              stimulus_description: str = "Long Square", t0_ms: float = 0.0) -> bytes:
    """An NWB file of n current-clamp sweeps with their stimuli (blocking; call it in a thread); stimulus times
    are from the first sample, which is at t0_ms."""
    from ..io.nwb import write_nwb
    from ..io.recording import RecordingError, Sweep

    try:
        sweeps = [Sweep(v_mV=np.asarray(v_mV[k], dtype=np.float64), stim_amplitude_pA=float(amplitude_pA),
                        stim_start_ms=float(stim_start_ms), stim_end_ms=float(stim_end_ms), dt_ms=float(dt_ms),
                        i_pA=np.asarray(stim_pA[k] if np.ndim(stim_pA) == 2 else stim_pA, dtype=np.float64),
                        index=k, metadata=(per_trace[k] if per_trace else {}), t0_ms=float(t0_ms))
                  for k in range(len(v_mV))]
    except RecordingError as exc:  # e.g. a grid too coarse for the NWB exporter's checks
        raise ApiError(406, f"cannot export these traces as NWB ({exc}); ask for {JSON} or {NPZ}") from None
    with tempfile.TemporaryDirectory(prefix="noble-nwb-") as d:
        path = Path(d) / "traces.nwb"
        write_nwb(path, sweeps, metadata=metadata, stimulus_description=stimulus_description, compression=True)
        return path.read_bytes()


def nwb_response(content: bytes, filename: str) -> Response:
    return Response(content=content, media_type=NWB,
                    headers={"Content-Disposition": f'attachment; filename="{filename}.nwb"'})

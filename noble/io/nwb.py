"""NWB (Neurodata Without Borders 2.x) current-clamp sweeps in and out, with pynwb.

Read: every `CurrentClampSeries` in acquisition paired with its `CurrentClampStimulusSeries` (through the
icephys intracellular-recordings table, else equal `sweep_number`, else the Allen/MIES name pairing
`..._AD0` <-> `..._DA0`). Allen Cell Types 'long square' sweeps are recognised from their
stimulus_description ('Long Square', or the Allen stimulus codes C1LSCOARSE, C1LSFINEST, X1PS_SubThresh,
X3LP_Rheo, X4PS_SupraThresh, as in ipfx's stimulus ontology). Step timing/amplitude come from noble's own
JSON in `comments` when present (files we wrote), otherwise from the stimulus waveform (the longest flat
step, so a short test pulse ahead of the long square is ignored).

Write: `write_nwb(path, sweeps)` exports traces (simulated, surrogate or fitted) with their stimuli as
CurrentClampSeries + CurrentClampStimulusSeries linked in the icephys table; written to a temporary
name in the same folder and renamed, so readers never see a half-written file.
"""

from __future__ import annotations

import json
import os
import re
import uuid
import warnings
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal, Sequence

import numpy as np

from ._atomic import atomic_path
from .recording import Recording, RecordingError, Sweep, sweeps_from_traces

HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
_LONG_SQUARE_CODES = ("c1lscoarse", "c1lsfinest", "x1pssubthresh", "x3lprheo", "x4pssuprathresh",
                      "subthreshold171")
_V_UNITS = {"volts": 1e3, "volt": 1e3, "v": 1e3, "millivolts": 1.0, "mv": 1.0}
_I_UNITS = {"amperes": 1e12, "ampere": 1e12, "amps": 1e12, "a": 1e12, "picoamperes": 1.0, "pa": 1.0,
            "nanoamperes": 1e3, "na": 1e3}


def is_hdf5(head: bytes) -> bool:
    return head[:8] == HDF5_MAGIC


def is_long_square(stimulus_description: str | None) -> bool:
    """True for an Allen Cell Types 'long square' sweep (by name or Allen stimulus code)."""
    if not stimulus_description:
        return False
    key = re.sub(r"[^a-z0-9]", "", stimulus_description.lower())
    return "longsquare" in key or any(key.startswith(c) or c in key for c in _LONG_SQUARE_CODES)


def _scaled(series: Any, table: dict[str, float], what: str) -> np.ndarray:
    """Series data in mV or pA: raw values times (conversion x unit factor), exact when that product is 1."""
    unit = str(series.unit).strip().lower()
    if unit not in table:
        raise RecordingError(f"{series.name}: {what} unit {series.unit!r} not understood")
    raw = np.asarray(series.data[:], dtype=np.float64)
    scale = float(series.conversion) * table[unit]
    offset = float(getattr(series, "offset", 0.0) or 0.0) * table[unit]
    out = raw if abs(scale - 1.0) < 1e-9 else raw * scale
    return out + offset if offset else out


def _time_axis(series: Any) -> tuple[float, float]:
    """(dt_ms, t0_ms) of a TimeSeries (rate + starting_time, or uniformly spaced timestamps)."""
    if series.rate is not None:
        return 1000.0 / float(series.rate), float(series.starting_time or 0.0) * 1000.0
    ts = np.asarray(series.timestamps[:], dtype=np.float64) * 1000.0
    if len(ts) < 2:
        raise RecordingError(f"{series.name}: fewer than two timestamps")
    d = np.diff(ts)
    dt = float(np.median(d))
    if dt <= 0 or np.max(np.abs(d - dt)) > 0.01 * dt:
        raise RecordingError(f"{series.name}: timestamps are not uniformly spaced; resample first")
    return dt, float(ts[0])


def _noble_comment(series: Any) -> dict[str, Any] | None:
    try:
        doc = json.loads(series.comments)
    except (TypeError, ValueError):
        return None
    return doc.get("noble") if isinstance(doc, dict) and isinstance(doc.get("noble"), dict) else None


def _pair_stimuli(nwbfile: Any, responses: list[Any]) -> dict[str, Any]:
    """Map response name -> its stimulus series."""
    pairs: dict[str, Any] = {}
    table = getattr(nwbfile, "intracellular_recordings", None)
    if table is not None and len(table) > 0:
        try:
            for row in range(len(table)):
                resp = table["responses"]["response"][row]
                stim = table["stimuli"]["stimulus"][row]
                if resp is not None and stim is not None and resp.timeseries is not None \
                        and stim.timeseries is not None:
                    pairs[resp.timeseries.name] = stim.timeseries
        except Exception:  # an odd or partial table: fall back to the other pairings
            pairs = {}
    from pynwb.icephys import CurrentClampStimulusSeries

    stimuli = [s for s in nwbfile.stimulus.values() if isinstance(s, CurrentClampStimulusSeries)]
    by_number: dict[int, list[Any]] = {}
    for s in stimuli:
        if getattr(s, "sweep_number", None) is not None:
            by_number.setdefault(int(s.sweep_number), []).append(s)
    by_name = {s.name: s for s in stimuli}
    for r in responses:
        if r.name in pairs:
            continue
        num = getattr(r, "sweep_number", None)
        if num is not None and len(by_number.get(int(num), [])) == 1:
            pairs[r.name] = by_number[int(num)][0]
            continue
        alt = re.sub(r"_AD(\d+)$", r"_DA\1", r.name)
        if alt != r.name and alt in by_name:
            pairs[r.name] = by_name[alt]
    return pairs


def read_nwb(path: str | os.PathLike[str], *, stimulus: Literal["auto", "all", "long_square"] = "auto",
             strict: bool = False) -> Recording:
    """Current-clamp step sweeps of an NWB file as a Recording.

    stimulus: 'long_square' keeps only Allen long-square sweeps; 'all' every sweep with a square step;
    'auto' long squares when the file has any, else all. Sweeps that cannot be used (no paired stimulus,
    not a step, NaNs, ...) are skipped and listed in metadata['skipped_sweeps'], or raise with strict=True.
    """
    path = Path(path)
    if not path.is_file():
        raise RecordingError(f"{path}: no such file")
    with open(path, "rb") as fh:
        head = fh.read(8)
    if not is_hdf5(head):
        raise RecordingError(f"{path}: not an NWB file (no HDF5 signature; starts with {head[:8]!r})")
    from pynwb import NWBHDF5IO

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            io = NWBHDF5IO(str(path), "r", load_namespaces=True)
            nwbfile = io.read()
    except Exception as exc:
        raise RecordingError(f"{path}: unreadable NWB file ({type(exc).__name__}: {exc})") from exc
    try:
        return _read_opened(path, nwbfile, stimulus, strict)
    except RecordingError:
        raise
    except Exception as exc:
        raise RecordingError(f"{path}: failed reading NWB content ({type(exc).__name__}: {exc})") from exc
    finally:
        io.close()


def _read_opened(path: Path, nwbfile: Any, stimulus: str, strict: bool) -> Recording:
    from pynwb.icephys import CurrentClampSeries, IZeroClampSeries

    acq = list(nwbfile.acquisition.values())
    # I=0 clamp series are CurrentClampSeries without a stimulus: not step sweeps
    cc = [s for s in acq if isinstance(s, CurrentClampSeries) and not isinstance(s, IZeroClampSeries)]
    if not cc:
        kinds = sorted({type(s).__name__ for s in acq}) or ["nothing"]
        raise RecordingError(f"{path}: no CurrentClampSeries in acquisition (found: {', '.join(kinds)}); "
                             "need a current-clamp recording")
    if stimulus == "long_square" or (stimulus == "auto" and any(is_long_square(s.stimulus_description)
                                                                 for s in cc)):
        chosen = [s for s in cc if is_long_square(s.stimulus_description)]
        if not chosen:
            descs = sorted({str(s.stimulus_description) for s in cc})
            raise RecordingError(f"{path}: no long-square sweeps (stimulus descriptions: {descs})")
    elif stimulus in ("all", "auto"):
        chosen = cc
    else:
        raise RecordingError(f"{path}: unknown stimulus selection {stimulus!r}")
    chosen.sort(key=lambda s: (getattr(s, "sweep_number", None) is None, getattr(s, "sweep_number", 0) or 0,
                               s.name))
    pairs = _pair_stimuli(nwbfile, chosen)
    sweeps: list[Sweep] = []
    skipped: list[dict[str, Any]] = []
    traces: list[tuple[int, np.ndarray, np.ndarray, float, float]] = []
    trace_meta: list[dict[str, Any]] = []

    def skip(name: str, why: str) -> None:
        if strict:
            raise RecordingError(f"{path}: {name}: {why}")
        skipped.append({"name": name, "reason": why})

    for k, resp in enumerate(chosen):
        stim = pairs.get(resp.name)
        if stim is None:
            skip(resp.name, "no CurrentClampStimulusSeries paired with it")
            continue
        try:
            v = _scaled(resp, _V_UNITS, "voltage")
            i = _scaled(stim, _I_UNITS, "current")
            dt_ms, t0_ms = _time_axis(resp)
        except RecordingError as exc:
            skip(resp.name, str(exc))
            continue
        if abs(len(v) - len(i)) > 0.01 * max(len(v), len(i)):
            skip(resp.name, f"response has {len(v)} samples but stimulus {len(i)}")
            continue
        n = min(len(v), len(i))
        v, i = v[:n], i[:n]
        # Aborted acquisitions are NaN-padded at the end: trim the padding, keep interior NaNs an error.
        finite = np.isfinite(v) & np.isfinite(i)
        if not finite.all() and finite.any():
            last = int(np.flatnonzero(finite)[-1]) + 1
            if finite[:last].all():
                v, i = v[:last], i[:last]
        number = getattr(resp, "sweep_number", None)
        index = int(number) if number is not None else k
        meta = {"name": resp.name, "stimulus_name": stim.name,
                "stimulus_description": str(resp.stimulus_description), "sweep_number": number}
        info = _noble_comment(resp)
        if info is None:
            traces.append((index, v, i, dt_ms, t0_ms))
            trace_meta.append(meta)
            continue
        try:
            sweeps.append(Sweep(v_mV=v, i_pA=i, dt_ms=dt_ms, t0_ms=t0_ms,
                                stim_amplitude_pA=float(info["stim_amplitude_pA"]),
                                stim_start_ms=float(info["stim_start_ms"]), stim_end_ms=float(info["stim_end_ms"]),
                                index=int(info.get("index", index)),
                                metadata={**meta, **dict(info.get("metadata", {}))}))
        except (RecordingError, KeyError, TypeError, ValueError) as exc:
            skip(resp.name, str(exc))
    if traces:
        sweeps += sweeps_from_traces(traces, str(path), trace_meta,
                                     on_error=lambda k, msg: skip(trace_meta[k]["name"], msg))
    if not sweeps:
        why = "; ".join(f"{s['name']}: {s['reason']}" for s in skipped[:5])
        raise RecordingError(f"{path}: no usable current-clamp step sweeps ({why})")
    if skipped:
        warnings.warn(f"{path}: skipped {len(skipped)} sweep(s): {skipped[:3]}", stacklevel=3)
    sweeps.sort(key=lambda s: s.index)
    metadata: dict[str, Any] = {"identifier": str(nwbfile.identifier),
                                "session_description": str(nwbfile.session_description),
                                "session_start_time": str(nwbfile.session_start_time),
                                "skipped_sweeps": skipped}
    try:
        notes = json.loads(nwbfile.notes) if nwbfile.notes else None
        if isinstance(notes, dict) and isinstance(notes.get("noble"), dict):
            metadata.update(notes["noble"].get("metadata", {}))
    except (TypeError, ValueError):
        pass
    cell = nwbfile.session_id or (nwbfile.subject.subject_id if nwbfile.subject is not None else None)
    return Recording(sweeps, source=str(path), format="nwb", cell=cell, metadata=metadata)


def _jsonable(obj: Any) -> Any:
    try:
        return json.loads(json.dumps(obj, default=lambda o: o.tolist() if hasattr(o, "tolist") else str(o)))
    except (TypeError, ValueError):
        return {}


def _storage(x: np.ndarray, dtype: str | None) -> np.ndarray:
    """float32 when lossless (or asked for), else float64."""
    if dtype is not None:
        return np.asarray(x, dtype=dtype)
    x32 = x.astype(np.float32)
    return x32 if np.array_equal(x32.astype(np.float64), x) else x


def write_nwb(
    path: str | os.PathLike[str],
    sweeps: Recording | Sequence[Sweep],
    *,
    session_description: str = "noble traces (simulated, surrogate or fitted responses)",
    identifier: str | None = None,
    session_start_time: datetime | None = None,
    cell: str | None = None,
    stimulus_description: str = "Long Square",
    electrode_description: str = "somatic whole-cell electrode (simulated)",
    device: str = "noble",
    dtype: str | None = None,
    compression: bool = True,
    metadata: dict[str, Any] | None = None,
) -> Path:
    """Export sweeps (traces + their step stimuli) as an NWB file; returns the path.

    Voltages are stored in mV (unit volts, conversion 1e-3) and currents in pA (unit amperes, conversion
    1e-12), float32 when that is lossless, so reading back gives the same arrays. The step window and
    amplitude go into each series' comments as JSON for an exact round trip.
    """
    from hdmf.backends.hdf5.h5_utils import H5DataIO
    from pynwb import NWBHDF5IO, NWBFile
    from pynwb.icephys import CurrentClampSeries, CurrentClampStimulusSeries

    path = Path(path)
    rec_meta: dict[str, Any] = {}
    if isinstance(sweeps, Recording):
        cell = cell if cell is not None else sweeps.cell
        rec_meta = dict(sweeps.metadata)
        items: list[Sweep] = list(sweeps.sweeps)
    else:
        items = list(sweeps)
    if not items:
        raise RecordingError(f"{path}: nothing to write (no sweeps)")
    rec_meta.update(metadata or {})
    nwb = NWBFile(
        session_description=session_description,
        identifier=identifier or str(uuid.uuid4()),
        session_start_time=session_start_time or datetime.now(timezone.utc),
        session_id=cell,
        notes=json.dumps({"noble": {"metadata": _jsonable(rec_meta)}}),
    )
    dev = nwb.create_device(name=device)
    elec = nwb.create_icephys_electrode(name="electrode_0", description=electrode_description, device=dev)

    def wrap(x: np.ndarray) -> Any:
        return H5DataIO(x, compression="gzip", compression_opts=1, shuffle=True) if compression and len(x) > 1000 \
            else x

    for s in items:
        if not isinstance(s, Sweep):
            raise RecordingError(f"{path}: expected Sweep objects, got {type(s).__name__}")
        info = {"noble": {"stim_start_ms": s.stim_start_ms, "stim_end_ms": s.stim_end_ms,
                          "stim_amplitude_pA": s.stim_amplitude_pA, "index": s.index,
                          "metadata": _jsonable(s.metadata)}}
        common = dict(starting_time=s.t0_ms / 1000.0, rate=s.sampling_rate_Hz, electrode=elec, gain=1.0,
                      sweep_number=int(s.index) if s.index >= 0 else None)
        stim = CurrentClampStimulusSeries(
            name=f"data_{s.index:05d}_DA0", data=wrap(_storage(s.command_pA(), dtype)), unit="amperes",
            conversion=1e-12, stimulus_description=stimulus_description, **common)
        resp = CurrentClampSeries(
            name=f"data_{s.index:05d}_AD0", data=wrap(_storage(s.v_mV, dtype)), unit="volts", conversion=1e-3,
            stimulus_description=stimulus_description, comments=json.dumps(info), **common)
        nwb.add_intracellular_recording(electrode=elec, stimulus=stim, response=resp)

    with atomic_path(path) as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with NWBHDF5IO(str(tmp), "w") as io:
            io.write(nwb)
    return path


"""Axon Binary Format (ABF1/ABF2) current-clamp step protocols, read with pyabf.

The step timing and amplitude come from the file's own epoch table (`abf.sweepEpochs`), never from
hard-coded times: protocols differ between rigs and files. The stimulus of a sweep is the step epoch
whose level changes from sweep to sweep (the F-I test step); other non-holding epochs (e.g. a fixed
-100 pA step later in the sweep) are kept per sweep as metadata. Files without an epoch table fall back
to finding the step in the command waveform.

Where the DAC waveform came from a stimulus file pyabf cannot find (Allen Institute rigs drive the DAC from an
ATF file: pyabf's command is NaN, and the epoch table it still reports was not played), or the DAC carried no
step at all, a recorded current channel (the amplifier's current monitor) is the command, made piecewise
constant (`monitor_command`: its noise off, its edges kept), and the steps are found in it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from .recording import Recording, RecordingError, Sweep, detect_step, holding_level

ABF_MAGIC = (b"ABF2", b"ABF ")
_V_SCALE = {"mv": 1.0, "v": 1000.0, "uv": 1e-3, "µv": 1e-3}
_I_SCALE = {"pa": 1.0, "na": 1000.0, "fa": 1e-3, "ua": 1e6, "µa": 1e6, "a": 1e12}
MONITOR_WINDOW_MS = 1.0  # the current monitor's edges are found between the means of this window on each side


def is_abf(head: bytes) -> bool:
    return head[:4] in ABF_MAGIC


def _open(path: Path) -> Any:
    import pyabf

    with open(path, "rb") as fh:
        head = fh.read(8)
    if not is_abf(head):
        raise RecordingError(f"{path}: not an ABF file (no 'ABF2'/'ABF ' signature; starts with {head[:8]!r})")
    try:
        abf = pyabf.ABF(str(path), loadData=True)
    except Exception as exc:  # pyabf raises struct.error, ValueError, NotImplementedError, ... on bad files
        raise RecordingError(f"{path}: unreadable or truncated ABF file ({type(exc).__name__}: {exc})") from exc
    size = os.path.getsize(path)
    need = int(abf.dataByteStart) + int(abf.dataPointCount) * int(abf.dataPointByteSize)
    if need > size:
        raise RecordingError(f"{path}: truncated ABF file: header promises {need} bytes of data, file has {size}")
    return abf


def _pick_channel(abf: Any, path: Path, channel: int | None) -> int:
    units = [str(u).strip() for u in abf.adcUnits]
    if channel is not None:
        if not 0 <= channel < abf.channelCount:
            raise RecordingError(f"{path}: channel {channel} out of range (file has {abf.channelCount})")
        return channel
    for ch, u in enumerate(units):
        if u.lower() in _V_SCALE:
            return ch
    if any(u.lower() in _I_SCALE for u in units):
        raise RecordingError(f"{path}: voltage-clamp recording (input channels in {units}); "
                             "need a current-clamp recording with a membrane-potential channel")
    raise RecordingError(f"{path}: no membrane-potential channel (input units {units})")


def _epoch_table(abf: Any) -> list[tuple[str, float, int, int]]:
    try:
        ep = abf.sweepEpochs
        return [(str(t), float(lv), int(p1), int(p2)) for t, lv, p1, p2 in zip(ep.types, ep.levels, ep.p1s, ep.p2s)]
    except Exception:  # ABF1 files / gap-free recordings may carry no usable epoch table
        return []


def _stimulus_epoch(tables: list[list[tuple[str, float, int, int]]], holding: list[float]) -> int | None:
    """Index of the test-step epoch: the first Step epoch whose level varies across sweeps; with one sweep
    (or nothing varying) the longest Step epoch away from holding. None when the tables cannot tell."""
    if not tables or not tables[0] or len({len(t) for t in tables}) != 1:
        return None
    n_ep = len(tables[0])
    is_step = [all(t[k][0].lower() == "step" and t[k][3] > t[k][2] for t in tables) for k in range(n_ep)]
    varying = [k for k in range(n_ep) if is_step[k] and len({round(t[k][1], 6) for t in tables}) > 1]
    if varying:
        return varying[0]
    cand = [k for k in range(n_ep) if is_step[k]
            and all(abs(t[k][1] - h) > 1e-9 for t, h in zip(tables, holding))]
    if not cand:
        return None
    longest = max(tables[0][k][3] - tables[0][k][2] for k in cand)
    return next(k for k in cand if tables[0][k][3] - tables[0][k][2] >= 0.99 * longest)


def _current_channel(abf: Any) -> int | None:
    """The first recorded (ADC) channel in current units: the amplifier's current monitor, if recorded."""
    units = [str(u).strip().lower() for u in abf.adcUnits]
    return next((k for k, u in enumerate(units) if u in _I_SCALE), None)


def _stimulus_file(abf: Any) -> str | None:
    """The stimulus file the DAC waveform was read from (ABF2 header), when it names one."""
    try:
        name = str(abf._stringsIndexed.lDACFilePath[0]).strip()
    except Exception:
        return None
    return name.replace("\\", "/").split("/")[-1] or None


def monitor_command(i_rec_pA: np.ndarray, dt_ms: float) -> np.ndarray:
    """A recorded current monitor as a piecewise-constant command: edges where the means of the
    `MONITOR_WINDOW_MS` after and before a sample differ by more than 8 noise sds (local maxima at least a window
    apart), each segment at the median of the monitor over it (a ramp comes out as a staircase of windows)."""
    from scipy.signal import find_peaks

    x = np.asarray(i_rec_pA, dtype=np.float64)
    w = max(2, int(round(MONITOR_WINDOW_MS / dt_ms)))
    if len(x) < 2 * w + 1:
        return np.full(len(x), float(np.median(x)))
    noise_sd = 1.4826 * float(np.median(np.abs(np.diff(x)))) / np.sqrt(2.0)
    c = np.concatenate([[0.0], np.cumsum(x)])
    k = np.arange(w, len(x) - w + 1)
    jump = np.abs((c[k + w] - c[k]) - (c[k] - c[k - w])) / w
    peaks, _ = find_peaks(jump, height=max(1.0, 8.0 * noise_sd * np.sqrt(2.0 / w)), distance=w)
    bounds = np.concatenate([[0], k[peaks], [len(x)]])
    out = np.empty(len(x))
    for a, b in zip(bounds[:-1], bounds[1:]):
        out[a:b] = np.median(x[a:b])
    return out


def _shared_window(steps: list[Any]) -> tuple[float, float] | None:
    """(start, end) ms of the steps when at least two sweeps have one and all agree within 1 ms, else None."""
    if len(steps) < 2:
        return None
    starts, ends = np.array([s.start_ms for s in steps]), np.array([s.end_ms for s in steps])
    if np.ptp(starts) > 1.0 or np.ptp(ends) > 1.0:
        return None
    return float(np.median(starts)), float(np.median(ends))


def read_abf(path: str | os.PathLike[str], *, channel: int | None = None) -> Recording:
    """All sweeps of an ABF current-clamp step protocol as a Recording (v in mV, command in pA)."""
    path = Path(path)
    if not path.is_file():
        raise RecordingError(f"{path}: no such file")
    abf = _open(path)
    ch = _pick_channel(abf, path, channel)
    v_unit = str(abf.adcUnits[ch]).strip()
    if v_unit.lower() not in _V_SCALE:
        raise RecordingError(f"{path}: channel {ch} is in {v_unit!r}, not a voltage")
    v_scale = _V_SCALE[v_unit.lower()]
    dac_units = list(getattr(abf, "dacUnits", []) or [])
    i_unit = str(dac_units[ch] if ch < len(dac_units) else (dac_units[0] if dac_units else "pA")).strip()
    if i_unit.lower() not in _I_SCALE:
        raise RecordingError(f"{path}: command channel is in {i_unit!r}: not current clamp "
                             "(a voltage command means voltage clamp)")
    i_scale = _I_SCALE[i_unit.lower()]
    dt_ms = 1000.0 / float(abf.sampleRate)

    raw: list[tuple[np.ndarray, np.ndarray, list[tuple[str, float, int, int]]]] = []
    try:
        for s in abf.sweepList:
            abf.setSweep(s, channel=ch)
            v = np.asarray(abf.sweepY, dtype=np.float64) * v_scale
            i = np.asarray(abf.sweepC, dtype=np.float64) * i_scale
            raw.append((v, i, _epoch_table(abf)))
    except RecordingError:
        raise
    except Exception as exc:
        raise RecordingError(f"{path}: failed reading sweep data ({type(exc).__name__}: {exc})") from exc
    if not raw:
        raise RecordingError(f"{path}: no sweeps")
    command_source = "DAC command (pyabf sweepC)"
    unplayed = any(not np.all(np.isfinite(i)) for _v, i, _t in raw)  # a DAC file pyabf did not find
    flat = all(np.ptp(i) == 0 for _v, i, _t in raw if np.all(np.isfinite(i)))  # no step on any sweep
    if unplayed or flat:
        ci = _current_channel(abf)
        stim_file = _stimulus_file(abf) if unplayed else None
        if ci is None and unplayed:
            raise RecordingError(
                f"{path}: the command waveform was played from a stimulus file"
                + (f" ({stim_file!r})" if stim_file else "") + " that is not beside the ABF, and no current "
                "channel was recorded: put the stimulus file in the ABF's folder, or export the sweeps with "
                "their command (NWB, CSV)")
        if ci is not None:
            i_unit_mon = str(abf.adcUnits[ci]).strip()
            try:
                monitors = []
                for s in abf.sweepList:
                    abf.setSweep(s, channel=ci)
                    monitors.append(monitor_command(np.asarray(abf.sweepY, dtype=np.float64)
                                                    * _I_SCALE[i_unit_mon.lower()], dt_ms))
            except Exception as exc:
                raise RecordingError(f"{path}: failed reading the current channel {ci} ({type(exc).__name__}: "
                                     f"{exc})") from exc
            # the epoch table was not what the DAC played (a stimulus file) or had no step: the monitor's steps
            raw = [(v, i_mon, []) for (v, _i, _t), i_mon in zip(raw, monitors)]
            i_unit = i_unit_mon
            command_source = (f"recorded current channel {ci} ({str(abf.adcNames[ci]).strip()!r}, {i_unit_mon}), "
                              "made piecewise constant: the DAC "
                              + (f"played the stimulus file {stim_file!r}, not available here" if unplayed and
                                 stim_file else "waveform was not available" if unplayed else "carried no step"))

    holding = [float(i[0]) if command_source.startswith("DAC") else holding_level(i, dt_ms) for _v, i, _t in raw]
    tables = [[(ty, lv * i_scale, p1, p2) for ty, lv, p1, p2 in t] for _v, _i, t in raw]
    k_stim = _stimulus_epoch(tables, holding)
    found = [None] * len(raw) if k_stim is not None else [detect_step(i, dt_ms) for _v, i, _t in raw]
    shared = _shared_window([f for f in found if f is not None])

    sweeps: list[Sweep] = []
    for s, ((v, i, _), table, hold) in enumerate(zip(raw, tables, holding)):
        epochs = [{"type": ty, "level_pA": lv, "start_ms": p1 * dt_ms, "end_ms": p2 * dt_ms}
                  for ty, lv, p1, p2 in table]
        meta: dict[str, Any] = {"holding_pA": hold, "epochs": epochs, "sweep_number": int(abf.sweepList[s])}
        if k_stim is not None:
            _ty, level, p1, p2 = table[k_stim]
            start_ms, end_ms, amp = p1 * dt_ms, p2 * dt_ms, level - hold
            meta["stimulus_epoch"] = k_stim
            meta["secondary_steps"] = [
                {"level_pA": e["level_pA"] - hold, "start_ms": e["start_ms"], "end_ms": e["end_ms"]}
                for k, e in enumerate(epochs)
                if k != k_stim and e["type"].lower() == "step" and abs(e["level_pA"] - hold) > 1e-9
                and e["end_ms"] > e["start_ms"]]
        elif (step := found[s]) is not None:
            start_ms, end_ms, amp = step.start_ms, step.end_ms, step.amplitude_pA
        elif shared is not None and np.ptp(i) == 0:
            # the 0 pA row of a series whose other sweeps all step over one window: that window, at 0 pA
            (start_ms, end_ms), amp = shared, 0.0
            meta["window_from_other_sweeps"] = True
        else:
            raise RecordingError(f"{path}: sweep {s}: no stimulus step in the epoch table or the command "
                                 f"waveform (command {i.min():.4g}..{i.max():.4g} {i_unit})")
        try:
            sweeps.append(Sweep(v_mV=v, i_pA=i, dt_ms=dt_ms, stim_amplitude_pA=amp, stim_start_ms=start_ms,
                                stim_end_ms=end_ms, index=s, metadata=meta))
        except RecordingError as exc:
            raise RecordingError(f"{path}: {exc}") from exc

    proto = getattr(abf, "_protocolSection", None)
    meta_rec: dict[str, Any] = {
        "abf_id": str(abf.abfID), "abf_version": str(abf.abfVersionString), "protocol": str(abf.protocol),
        "recorded": str(getattr(abf, "abfDateTime", "")), "channel": ch, "adc_units": v_unit,
        "dac_units": i_unit, "stimulus_epoch": k_stim, "command_source": command_source,
        "tag_comments": list(getattr(abf, "tagComments", []) or []),
    }
    if proto is not None and hasattr(proto, "lEpisodesPerRun"):
        meta_rec["episodes_planned"] = int(proto.lEpisodesPerRun)
    return Recording(sweeps, source=str(path), format="abf", cell=str(abf.abfID), metadata=meta_rec)

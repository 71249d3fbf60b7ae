"""In-memory current-clamp recordings: `Sweep` (one trace + its step stimulus) and `Recording` (a cell's sweeps).

Every reader (ABF, NWB, CSV, NPZ) produces these, and the NWB writer consumes them, so the fit, the
datagen and the app see one shape. Construction validates what would otherwise silently poison a fit
(volts instead of mV, nA instead of pA, NaNs, too-slow sampling, a window outside the trace) and raises
`RecordingError` with a message naming the problem.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

MIN_SAMPLING_RATE_HZ = 5_000.0  # an AP lasts ~1 ms: below 5 kHz its peak and width are not resolved
MAX_ABS_CURRENT_PA = 100_000.0  # 100 nA: beyond anything injected in whole-cell current clamp
MIN_STEP_MS = 0.5  # shortest constant segment accepted as a 'step'
MIN_REST_MS = 50.0  # shortest stretch at the holding level that counts as a resting baseline


class RecordingError(ValueError):
    """A recording (file or arrays) that cannot be used as a current-clamp step recording."""


@dataclass(frozen=True)
class StepInfo:
    """A square step found in a command current: onset/offset (ms from trace start) and size (pA)."""

    start_ms: float
    end_ms: float
    amplitude_pA: float
    baseline_pA: float = 0.0


def _noise_sd(x: np.ndarray) -> float:
    """Robust sd of sample-to-sample noise (MAD of first differences); 0 for a clean command waveform."""
    if len(x) < 3:
        return 0.0
    d = np.diff(x)
    return float(1.4826 * np.median(np.abs(d - np.median(d))) / np.sqrt(2.0))


def holding_level(i_pA: np.ndarray, dt_ms: float) -> float:
    """Command level at the start of a sweep (median of its first ms): the reference for step amplitudes."""
    n_base = max(1, min(len(i_pA) // 100, int(round(1.0 / dt_ms))))
    return float(np.median(i_pA[:n_base]))


def detect_steps(i_pA: np.ndarray, dt_ms: float) -> list[StepInfo]:
    """All constant segments of a command current that differ from its starting (holding) level.

    Jumps larger than the noise split the trace into segments; a segment counts as a step when it lasts
    >= MIN_STEP_MS, its level differs from the holding level, and it is flat (a ramp or noise is not).
    """
    i = np.asarray(i_pA, dtype=np.float64)
    if i.ndim != 1 or len(i) < 3 or not np.all(np.isfinite(i)):
        return []
    sd = _noise_sd(i)
    thr = max(1.0, 6.0 * sd)
    baseline = holding_level(i, dt_ms)
    edges = np.flatnonzero(np.abs(np.diff(i)) > thr) + 1
    bounds = np.concatenate([[0], edges, [len(i)]])
    min_len = max(2, int(np.ceil(MIN_STEP_MS / dt_ms)))
    steps: list[StepInfo] = []
    for a, b in zip(bounds[:-1], bounds[1:]):
        if b - a < min_len:
            continue
        seg = i[a:b]
        level = float(np.median(seg))
        amp = level - baseline
        if abs(amp) <= thr:
            continue
        # flat: spread within the segment small against its size (rules out ramps and noise)
        if float(np.percentile(seg, 95) - np.percentile(seg, 5)) > max(thr, 0.1 * abs(amp)):
            continue
        steps.append(StepInfo(a * dt_ms, b * dt_ms, amp, baseline))
    return steps


def detect_step(i_pA: np.ndarray, dt_ms: float) -> StepInfo | None:
    """The stimulus step of a command current: the longest step (the earliest among equally long ones)."""
    steps = detect_steps(i_pA, dt_ms)
    if not steps:
        return None
    longest = max(s.end_ms - s.start_ms for s in steps)
    return next(s for s in steps if (s.end_ms - s.start_ms) >= 0.99 * longest)


def render_step(n: int, dt_ms: float, start_ms: float, end_ms: float, amplitude_pA: float,
                baseline_pA: float = 0.0) -> np.ndarray:
    """Command current (pA) of a square step on an n-sample grid starting at 0 ms."""
    t = np.arange(n) * dt_ms
    out = np.full(n, float(baseline_pA))
    out[(t >= start_ms - 1e-9) & (t < end_ms - 1e-9)] += float(amplitude_pA)
    return out


def _as_1d(x: Any, what: str, where: str) -> np.ndarray:
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim != 1:
        raise RecordingError(f"{where}: {what} must be 1-D, got shape {arr.shape}")
    return arr


def _check_finite(arr: np.ndarray, what: str, where: str) -> None:
    bad = ~np.isfinite(arr)
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise RecordingError(f"{where}: {what} has {int(bad.sum())} NaN/inf samples (first at sample {first})")


@dataclass(eq=False)
class Sweep:
    """One current-clamp trace and the square step that drove it.

    Times are ms from the first sample (`t0_ms` keeps the absolute start); give either `dt_ms` or a
    uniform `t_ms`. `i_pA` is the command current when known; without it the step is rendered on demand.
    A zero-amplitude sweep is allowed (the 0 pA row of an F-I series) but it must still carry the window.
    """

    v_mV: np.ndarray
    stim_amplitude_pA: float
    stim_start_ms: float
    stim_end_ms: float
    dt_ms: float | None = None
    t_ms: np.ndarray | None = None
    i_pA: np.ndarray | None = None
    index: int = 0
    t0_ms: float = 0.0
    metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        where = f"sweep {self.index}"
        self.v_mV = _as_1d(self.v_mV, "v_mV", where)
        n = len(self.v_mV)
        if n < 10:
            raise RecordingError(f"{where}: only {n} samples")
        if self.t_ms is not None:
            t = _as_1d(self.t_ms, "t_ms", where)
            if len(t) != n:
                raise RecordingError(f"{where}: t_ms has {len(t)} samples but v_mV has {n}")
            _check_finite(t, "t_ms", where)
            d = np.diff(t)
            dt = float(np.median(d))
            if dt <= 0 or np.max(np.abs(d - dt)) > 0.01 * dt:
                raise RecordingError(f"{where}: time axis is not uniformly sampled (median dt {dt:g} ms, "
                                     f"range {d.min():g}..{d.max():g} ms); resample it first")
            if self.dt_ms is not None and abs(self.dt_ms - dt) > 0.01 * dt:
                raise RecordingError(f"{where}: dt_ms={self.dt_ms} disagrees with t_ms spacing {dt:g} ms")
            self.dt_ms = dt
            self.t0_ms = float(t[0])
            self.t_ms = None  # kept implicitly as t0 + dt * arange(n)
        if self.dt_ms is None:
            raise RecordingError(f"{where}: give dt_ms or t_ms")
        self.dt_ms = float(self.dt_ms)
        if not np.isfinite(self.dt_ms) or self.dt_ms <= 0:
            raise RecordingError(f"{where}: dt_ms must be positive, got {self.dt_ms}")
        if self.sampling_rate_Hz < MIN_SAMPLING_RATE_HZ:
            raise RecordingError(
                f"{where}: sampling rate {self.sampling_rate_Hz:g} Hz is too low to resolve action potentials "
                f"(need >= {MIN_SAMPLING_RATE_HZ:g} Hz; is the time axis in s rather than ms?)")
        _check_finite(self.v_mV, "v_mV", where)
        vmax = float(np.max(np.abs(self.v_mV)))
        if vmax < 1.0:
            raise RecordingError(f"{where}: |v| <= {vmax:.3g} everywhere: voltage looks like volts, not mV "
                                 "(multiply by 1000)" if vmax > 0 else f"{where}: voltage is identically 0")
        med = float(np.median(self.v_mV))
        if vmax > 1000.0 or not -200.0 <= med <= 100.0:
            raise RecordingError(f"{where}: voltage (median {med:.4g}, max |v| {vmax:.4g}) is not a membrane "
                                 "potential in mV (microvolts? wrong channel?)")
        if self.i_pA is not None:
            self.i_pA = _as_1d(self.i_pA, "i_pA", where)
            if len(self.i_pA) != n:
                raise RecordingError(f"{where}: i_pA has {len(self.i_pA)} samples but v_mV has {n}")
            _check_finite(self.i_pA, "i_pA", where)
        for name in ("stim_amplitude_pA", "stim_start_ms", "stim_end_ms", "t0_ms"):
            val = float(getattr(self, name))
            if not np.isfinite(val):
                raise RecordingError(f"{where}: {name} is not finite ({val})")
            setattr(self, name, val)
        imax = max(abs(self.stim_amplitude_pA),
                   float(np.max(np.abs(self.i_pA))) if self.i_pA is not None else 0.0)
        if 0.0 < imax < 1.0:
            raise RecordingError(f"{where}: largest current is {imax:.3g} 'pA': the current looks like nA "
                                 "(or A), not pA (multiply by 1000)")
        if imax > MAX_ABS_CURRENT_PA:
            raise RecordingError(f"{where}: current of {imax:.4g} pA is implausible for current clamp "
                                 "(units fA? wrong channel?)")
        if not self.stim_start_ms < self.stim_end_ms:
            raise RecordingError(f"{where}: no stimulus step: stim_start_ms={self.stim_start_ms} is not "
                                 f"before stim_end_ms={self.stim_end_ms}")
        tol = self.dt_ms
        if self.stim_start_ms < -tol or self.stim_end_ms > self.duration_ms + tol:
            raise RecordingError(f"{where}: stimulus window {self.stim_start_ms:g}..{self.stim_end_ms:g} ms "
                                 f"is outside the trace (0..{self.duration_ms:g} ms)")
        if self.stim_end_ms - self.stim_start_ms < 2 * self.dt_ms:
            raise RecordingError(f"{where}: stimulus window shorter than two samples")
        if self.i_pA is not None:
            self._check_command_matches()

    def _check_command_matches(self) -> None:
        """The recorded command must show the declared step (catches swapped channels and bad metadata)."""
        i = self.i_pA
        assert i is not None and self.dt_ms is not None
        a = int(round(self.stim_start_ms / self.dt_ms))
        b = int(round(self.stim_end_ms / self.dt_ms))
        inner = i[a + (b - a) // 10: b - (b - a) // 10 or None] if b - a >= 10 else i[a:b]
        # amplitudes are relative to the holding level (the sweep's first ms), as every reader defines them: a
        # pre-step that abuts the test step (-100 pA, then the step) is not the step's baseline
        if a > 0:
            base = holding_level(i[:a], self.dt_ms)
        else:
            base = float(np.median(i[b:])) if b < len(i) else 0.0
        seen = float(np.median(inner)) - base
        if abs(seen - self.stim_amplitude_pA) > max(2.0, 0.1 * abs(self.stim_amplitude_pA)):
            raise RecordingError(
                f"sweep {self.index}: stim_amplitude_pA={self.stim_amplitude_pA:g} but the command current "
                f"steps by {seen:.4g} pA in {self.stim_start_ms:g}..{self.stim_end_ms:g} ms")

    # --- derived -------------------------------------------------------------------------------------
    @property
    def n_samples(self) -> int:
        return len(self.v_mV)

    @property
    def sampling_rate_Hz(self) -> float:
        assert self.dt_ms is not None
        return 1000.0 / self.dt_ms

    @property
    def duration_ms(self) -> float:
        assert self.dt_ms is not None
        return self.n_samples * self.dt_ms

    @property
    def time_ms(self) -> np.ndarray:
        """Sample times in ms from the first sample (add t0_ms for absolute time)."""
        assert self.dt_ms is not None
        return np.arange(self.n_samples) * self.dt_ms

    @property
    def stim_duration_ms(self) -> float:
        return self.stim_end_ms - self.stim_start_ms

    @property
    def rest_end_ms(self) -> float:
        """End of the resting baseline: the end of the last stretch at the holding level lasting >= MIN_REST_MS
        before the test step: the step's onset, or the onset of the epochs leading into it (a pre-step). An
        earlier excursion the cell recovers from (a test pulse at the sweep's start) is not in the way; without
        such a stretch, where the command first leaves holding. Rest, spontaneous firing and deflections are
        measured before it, never inside a pre-step."""
        assert self.dt_ms is not None
        a = int(round(self.stim_start_ms / self.dt_ms))
        if self.i_pA is None or a <= 1:
            return self.stim_start_ms
        c = self.i_pA[:a]
        thr = max(1.0, 6.0 * _noise_sd(c))
        at = np.r_[False, np.abs(c - holding_level(c, self.dt_ms)) <= thr, False]
        edges = np.flatnonzero(np.diff(at.astype(np.int8)))
        runs = list(zip(edges[::2], edges[1::2]))  # c[r0:r1] at holding
        if not runs:
            return 0.0
        long_enough = [r for r in runs if (r[1] - r[0]) * self.dt_ms >= MIN_REST_MS]
        return float((long_enough[-1] if long_enough else runs[0])[1]) * self.dt_ms

    def presteps(self, min_ms: float = 20.0) -> list[StepInfo]:
        """Constant command epochs before the test step lasting >= min_ms (e.g. a -100 pA pre-step), amplitudes
        relative to holding: windows where input resistance, sag and the history of the test step are measured."""
        assert self.dt_ms is not None
        if self.i_pA is None or self.rest_end_ms >= self.stim_start_ms - min_ms:
            return []
        a = int(round(self.stim_start_ms / self.dt_ms))
        rest_end = self.rest_end_ms - self.dt_ms
        return [st for st in detect_steps(self.i_pA[:a], self.dt_ms)
                if st.end_ms - st.start_ms >= min_ms and st.start_ms >= rest_end]

    def command_pA(self) -> np.ndarray:
        """The command current: the recorded one if any, else the square step rendered on the grid."""
        if self.i_pA is not None:
            return self.i_pA
        assert self.dt_ms is not None
        return render_step(self.n_samples, self.dt_ms, self.stim_start_ms, self.stim_end_ms,
                           self.stim_amplitude_pA)

    @classmethod
    def from_trace(cls, v_mV: np.ndarray, i_pA: np.ndarray, *, dt_ms: float | None = None,
                   t_ms: np.ndarray | None = None, index: int = 0, t0_ms: float = 0.0,
                   metadata: dict[str, Any] | None = None) -> "Sweep":
        """A sweep whose step timing and amplitude are read off its command current."""
        if dt_ms is None and t_ms is not None:
            t = _as_1d(t_ms, "t_ms", f"sweep {index}")
            dt_ms = float(np.median(np.diff(t))) if len(t) > 1 else None
        if dt_ms is None or not dt_ms > 0:
            raise RecordingError(f"sweep {index}: no usable time axis")
        i = _as_1d(i_pA, "i_pA", f"sweep {index}")
        _check_finite(i, "i_pA", f"sweep {index}")
        step = detect_step(i, dt_ms)
        if step is None:
            raise RecordingError(f"sweep {index}: no stimulus step in the command current "
                                 f"(range {i.min():.4g}..{i.max():.4g} pA)")
        return cls(v_mV=v_mV, i_pA=i, dt_ms=dt_ms if t_ms is None else None, t_ms=t_ms,
                   stim_amplitude_pA=step.amplitude_pA, stim_start_ms=step.start_ms, stim_end_ms=step.end_ms,
                   index=index, t0_ms=t0_ms, metadata=dict(metadata or {}))


@dataclass(eq=False)
class Recording:
    """The sweeps of one cell from one file (or one simulation), in file order."""

    sweeps: list[Sweep]
    source: str = "<memory>"
    format: str = "memory"
    cell: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.sweeps = list(self.sweeps)
        if not self.sweeps:
            raise RecordingError(f"{self.source}: no current-clamp sweeps")
        for s in self.sweeps:
            if not isinstance(s, Sweep):
                raise RecordingError(f"{self.source}: sweeps must be Sweep objects, got {type(s).__name__}")
        idx = [s.index for s in self.sweeps]
        if len(set(idx)) != len(idx):
            raise RecordingError(f"{self.source}: duplicate sweep indices {sorted(idx)}")
        if all(s.stim_amplitude_pA == 0.0 for s in self.sweeps):
            raise RecordingError(f"{self.source}: no sweep has a stimulus step (all amplitudes are 0 pA)")

    def __len__(self) -> int:
        return len(self.sweeps)

    @property
    def amplitudes_pA(self) -> np.ndarray:
        return np.array([s.stim_amplitude_pA for s in self.sweeps])

    @property
    def sampling_rate_Hz(self) -> float:
        """The common sampling rate (RecordingError when sweeps differ)."""
        rates = {round(s.sampling_rate_Hz, 6) for s in self.sweeps}
        if len(rates) != 1:
            raise RecordingError(f"{self.source}: sweeps have different sampling rates {sorted(rates)}")
        return self.sweeps[0].sampling_rate_Hz

    def sorted_by_amplitude(self) -> "Recording":
        """Same recording with sweeps ordered by step amplitude (stable for ties)."""
        order = np.argsort(self.amplitudes_pA, kind="stable")
        return Recording([self.sweeps[k] for k in order], self.source, self.format, self.cell,
                         dict(self.metadata))

    def stack(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(t_ms (T,), v_mV (n,T), i_pA (n,T)) for sweeps of equal length and dt."""
        lengths = {s.n_samples for s in self.sweeps}
        dts = {s.dt_ms for s in self.sweeps}
        if len(lengths) != 1 or len(dts) != 1:
            raise RecordingError(f"{self.source}: sweeps differ in length {sorted(lengths)} or dt {sorted(dts)}"
                                 " and cannot be stacked")
        s0 = self.sweeps[0]
        return (s0.time_ms, np.stack([s.v_mV for s in self.sweeps]),
                np.stack([s.command_pA() for s in self.sweeps]))

    def summary(self) -> dict[str, Any]:
        """Small JSON-able description (for logs, the app and reports)."""
        return {
            "source": self.source, "format": self.format, "cell": self.cell, "n_sweeps": len(self),
            "sampling_rate_Hz": [s.sampling_rate_Hz for s in self.sweeps][0],
            "amplitudes_pA": self.amplitudes_pA.tolist(),
            "stim_windows_ms": sorted({(s.stim_start_ms, s.stim_end_ms) for s in self.sweeps}),
        }



def _common_window(cmds: list[np.ndarray], dt_ms: float) -> tuple[float, float] | None:
    """The stimulus window shared by equal-length sweeps: among all step windows seen in any sweep, the one
    whose level varies most across sweeps (the F-I test step, not a fixed pre/post step); the earliest wins
    ties. None when no window varies (e.g. repeated trials at one amplitude)."""
    cand = sorted({(round(st.start_ms / dt_ms), round(st.end_ms / dt_ms)) for c in cmds
                   for st in detect_steps(c, dt_ms)})
    best: tuple[float, tuple[int, int]] | None = None
    for a, b in cand:
        levels = np.array([np.median(c[a:b]) - holding_level(c, dt_ms) for c in cmds])
        spread = float(np.ptp(levels))
        if spread > 1.0 and (best is None or spread > best[0] * 1.001):
            best = (spread, (a, b))
    if best is None:
        return None
    a, b = best[1]
    return a * dt_ms, b * dt_ms


def _fits_window(c: np.ndarray, a: int, b: int, dt_ms: float) -> bool:
    """Command flat inside samples [a, b) and changing at both edges (so the window is this sweep's step)."""
    inner = c[a:b]
    level = float(np.median(inner))
    thr = max(1.0, 6.0 * _noise_sd(c))
    if float(np.percentile(inner, 95) - np.percentile(inner, 5)) > max(thr, 0.1 * abs(level - holding_level(c, dt_ms))):
        return False
    w = max(1, min(5, (b - a) // 10))
    before = float(np.median(c[max(0, a - w):a])) if a > 0 else holding_level(c, dt_ms)
    after = float(np.median(c[b:b + w])) if b < len(c) else before
    return abs(level - before) > thr and (b >= len(c) or abs(level - after) > thr)


def sweeps_from_traces(traces: Sequence[tuple[int, np.ndarray, np.ndarray, float, float]], where: str,
                       metadata: Sequence[dict[str, Any]] | None = None,
                       on_error: Callable[[int, str], None] | None = None) -> list[Sweep]:
    """Sweeps from (index, v_mV, i_pA, dt_ms, t0_ms) tuples, the step read off the command currents.

    Sweeps of equal length share the window where the command varies across sweeps (so a 0 pA sweep, or a
    protocol with a fixed extra step, still gets the test step); a sweep whose own step is elsewhere, or
    a lone sweep, uses its longest step. Errors raise, or go to on_error(position, message) and skip.
    """
    cmds: list[np.ndarray] = []
    for index, _v, i, _dt, _t0 in traces:
        arr = _as_1d(i, "i_pA", f"{where}: sweep {index}")
        cmds.append(arr)
    groups: dict[tuple[int, float], list[int]] = {}
    for k, (_index, v, _i, dt_ms, _t0) in enumerate(traces):
        groups.setdefault((len(v), float(dt_ms)), []).append(k)
    out: dict[int, Sweep] = {}
    for (_n, dt_ms), members in groups.items():
        finite = [k for k in members if np.all(np.isfinite(cmds[k]))]
        shared = _common_window([cmds[k] for k in finite], dt_ms) if len(finite) > 1 else None
        for k in members:
            index, v, _i, _dt, t0 = traces[k]
            meta = dict(metadata[k]) if metadata is not None else {}
            c = cmds[k]
            try:
                _check_finite(c, "i_pA", f"sweep {index}")
                step: StepInfo | None = None
                if shared is not None:
                    a, b = round(shared[0] / dt_ms), round(shared[1] / dt_ms)
                    hold = holding_level(c, dt_ms)
                    amp = float(np.median(c[a:b]) - hold)
                    if abs(amp) <= 1.0 or _fits_window(c, a, b, dt_ms):
                        step = StepInfo(shared[0], shared[1], amp if abs(amp) > 1.0 else 0.0, hold)
                if step is None:
                    step = detect_step(c, dt_ms)
                if step is None:
                    raise RecordingError(f"sweep {index}: no stimulus step in the command current "
                                         f"(range {c.min():.4g}..{c.max():.4g} pA)")
                out[k] = Sweep(v_mV=v, i_pA=c, dt_ms=dt_ms, t0_ms=t0, stim_amplitude_pA=step.amplitude_pA,
                               stim_start_ms=step.start_ms, stim_end_ms=step.end_ms, index=index, metadata=meta)
            except RecordingError as exc:
                if on_error is None:
                    raise RecordingError(f"{where}: {exc}") from exc
                on_error(k, str(exc))
    return [out[k] for k in sorted(out)]

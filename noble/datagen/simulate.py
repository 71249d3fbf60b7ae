"""Run ONE vectorised Brian2 network for a block of neurons, each with its own parameters and stimulus."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from fractions import Fraction

import brian2 as b2
import numpy as np

from .models import ModelFamily
from .stimuli import ou_noise


def configure_brian(target: str | None = None) -> str:
    """Pick Brian2's runtime code-generation target: cython (compiled, cached) when it works, else numpy.
    `NOBLE_BRIAN_TARGET` overrides."""
    target = target or os.environ.get("NOBLE_BRIAN_TARGET", "cython")
    b2.prefs.codegen.target = target
    b2.prefs.logging.file_log = False
    b2.prefs.logging.delete_log_on_exit = True
    return target


@dataclass
class SimResult:
    """Voltage traces on the record grid and the spike times of every neuron."""

    t_ms: np.ndarray  # (T,)
    v_mV: np.ndarray  # (n, T) float32
    spike_times_ms: list[np.ndarray]  # n arrays
    record_dt_ms: float
    # every state variable of the ODEs (v in mV, gates dimensionless), (n, T) float64, when asked for
    state: dict[str, np.ndarray] | None = None

    @property
    def spike_counts(self) -> np.ndarray:
        return np.array([len(s) for s in self.spike_times_ms], dtype=np.int64)


def simulate(
    family: type[ModelFamily],
    params: np.ndarray,
    stim_pA: np.ndarray,
    *,
    stim_dt_ms: float,
    duration_ms: float,
    dt_ms: float = 0.025,
    record_dt_ms: float = 0.1,
    noise_sigma_pA: float = 0.0,
    noise_tau_ms: float = 5.0,
    seed: int = 0,
    target: str | None = None,
    record_state: bool = False,
    settle_ms: float | None = None,
) -> SimResult:
    """Simulate n neurons (rows of `params`) each driven by its row of `stim_pA` (sampled at stim_dt_ms).

    Trial-to-trial variability: an Ornstein-Uhlenbeck current (sigma, tau) drawn with `seed` and added to
    the stimulus on the stimulus grid, so the run is deterministic for a seed on any Brian2 target.
    record_state: also record every differential-equation variable (single-compartment families), so a
    later run can start from any recorded instant (`noble.fit.phase_align`).

    Start (single-compartment families): the stimulus' first value, stim_pA[:, 0], is each neuron's holding
    current. A family with `settle_ms > 0` (hh) starts every neuron at its stable steady state under that
    current (`family.steady_state`), so a quiescent neuron's trace starts at rest and does not drift; when some
    neuron has none (it fires at that current), the group first runs `family.settle_ms` at the holding current
    (noise-free, not recorded: the trace, its spike times and the noise start after it). A stimulus already
    on at t = 0 is thus a holding current: its onset transient is not simulated. settle_ms: override the run-in
    (0: none; > 0: always, for any family), rounded up onto the dt, stimulus and record grids.
    """
    if getattr(family, "multi_compartment", False):
        if record_state:
            raise ValueError("record_state is for single-compartment families")
        if settle_ms:
            raise ValueError("settle_ms is for single-compartment families (multi-compartment ones start at rest)")
        # One SpatialNeuron packing every neuron of the block (see simulate_mc); imported here to avoid a cycle.
        from .simulate_mc import simulate_multi

        return simulate_multi(family, params, stim_pA, stim_dt_ms=stim_dt_ms, duration_ms=duration_ms, dt_ms=dt_ms,
                              record_dt_ms=record_dt_ms, noise_sigma_pA=noise_sigma_pA, noise_tau_ms=noise_tau_ms,
                              seed=seed, target=target)
    params = np.atleast_2d(np.asarray(params, dtype=np.float64))
    stim_pA = np.atleast_2d(np.asarray(stim_pA, dtype=np.float64))
    n = params.shape[0]
    if stim_pA.shape[0] != n:
        raise ValueError(f"stim_pA has {stim_pA.shape[0]} rows for {n} neurons")
    if not (dt_ms > 0 and record_dt_ms >= dt_ms and stim_dt_ms >= dt_ms):
        raise ValueError("need 0 < dt_ms <= record_dt_ms and dt_ms <= stim_dt_ms")
    ratio = record_dt_ms / dt_ms
    if abs(ratio - round(ratio)) > 1e-6:
        raise ValueError("record_dt_ms must be a multiple of dt_ms")
    rng = np.random.default_rng(seed)
    drive = stim_pA
    if noise_sigma_pA > 0:
        drive = stim_pA + ou_noise(n, stim_pA.shape[1], stim_dt_ms, noise_tau_ms, noise_sigma_pA, rng)
    start: dict[str, np.ndarray] | None = None
    run_in = 0.0
    if family.settle_ms > 0:
        start, at_rest = family.steady_state(params, stim_pA[:, 0])
        run_in = 0.0 if np.all(at_rest) else family.settle_ms
    if settle_ms is not None:
        run_in = float(settle_ms)
    n_settle, run_in = settle_steps(run_in, dt_ms, stim_dt_ms, record_dt_ms)
    if n_settle:
        drive = np.concatenate([np.repeat(stim_pA[:, :1], n_settle, axis=1), drive], axis=1)

    configure_brian(target)
    b2.start_scope()
    b2.defaultclock.dt = dt_ms * b2.ms
    # TimedArray indexed (time, neuron): I_stim(t, i). Brian2 compiles the array's shape into the generated
    # code, so pad both axes to powers of two: requests of nearby sizes then reuse the compiled module.
    # Padding columns is free (the group has n neurons), padded times lie past the end of the run.
    T_pad, n_pad = _bucket(drive.shape[1]), _bucket(n)
    values = np.zeros((T_pad, n_pad))
    values[: drive.shape[1], :n] = drive.T
    I_stim = b2.TimedArray(values * b2.pA, dt=stim_dt_ms * b2.ms, name="I_stim_arr")
    built = family.build(n, params, {"I_stim": I_stim}, rng, **({} if start is None else {"start": start}))
    # sorted: diff_eq_names is a set, and its string-hash order would change the monitor's generated code (and
    # so force a fresh Cython compile, ~3 s) in every process
    names = [built.v_name] + (sorted(x for x in built.group.equations.diff_eq_names if x != built.v_name)
                              if record_state else [])
    if n_settle:  # the run-in, then the monitors: they record from its end on
        net = b2.Network(built.group, *built.extra)
        net.run(run_in * b2.ms, namespace={})
    state = b2.StateMonitor(built.group, names, record=True, dt=record_dt_ms * b2.ms, name="vmon")
    spikes = b2.SpikeMonitor(built.group, name="spikemon")
    if n_settle:
        net.add(state, spikes)
    else:
        net = b2.Network(built.group, state, spikes, *built.extra)
    net.run(duration_ms * b2.ms, namespace={})

    n_rec = int(round(duration_ms / record_dt_ms))
    v = np.asarray(getattr(state, built.v_name) / b2.mV, dtype=np.float32)[:, :n_rec]
    t = np.arange(v.shape[1]) * record_dt_ms
    trains = spikes.spike_trains()
    spike_times = [np.asarray(trains[k] / b2.ms, dtype=np.float64) - run_in for k in range(n)]
    states = None
    if record_state:
        states = {name: np.asarray(getattr(state, name + "_"), dtype=np.float64)[:n, :n_rec] for name in names}
        states[built.v_name] = np.asarray(getattr(state, built.v_name) / b2.mV, dtype=np.float64)[:n, :n_rec]
    return SimResult(t_ms=t, v_mV=v, spike_times_ms=spike_times, record_dt_ms=record_dt_ms, state=states)


def settle_steps(settle_ms: float, dt_ms: float, stim_dt_ms: float, record_dt_ms: float) -> tuple[int, float]:
    """(stimulus samples, ms) of the shortest run-in of at least settle_ms that ends on the integration, the
    stimulus and the record grid alike (so the trace and its input start on their grids)."""
    if settle_ms <= 0:
        return 0, 0.0
    fr = [Fraction(x).limit_denominator(10**6) for x in (dt_ms, stim_dt_ms, record_dt_ms)]
    unit = Fraction(math.lcm(*(f.numerator for f in fr)), math.gcd(*(f.denominator for f in fr)))
    total = unit * math.ceil(Fraction(settle_ms).limit_denominator(10**6) / unit)
    return int(total / fr[1]), float(total)


def _bucket(size: int) -> int:
    return 1 << max(int(size) - 1, 1).bit_length()


def steps_matrix(amplitudes_pA: np.ndarray, start_ms: float, duration_ms: float, total_ms: float,
                 stim_dt_ms: float) -> np.ndarray:
    """Rows of square steps (one amplitude per row) on the stimulus grid."""
    T = int(round(total_ms / stim_dt_ms))
    t = np.arange(T) * stim_dt_ms
    on = (t >= start_ms - 1e-9) & (t < start_ms + duration_ms - 1e-9)
    return np.asarray(amplitudes_pA, dtype=np.float64)[:, None] * on[None, :]


def n_steps(duration_ms: float, dt_ms: float) -> int:
    return int(math.ceil(duration_ms / dt_ms - 1e-9))

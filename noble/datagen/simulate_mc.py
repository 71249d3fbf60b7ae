"""Simulate multi-compartment families (`multi_compartment = True`, e.g. `hh_mc`) with Brian2.

`simulate_multi` has `simulate.simulate`'s signature and returns the same `SimResult` (somatic voltage,
somatic spike times). The n neurons of a call run as ONE packed `SpatialNeuron` per distinct axial
resistivity (a shared variable of a SpatialNeuron), recorded at the somata only, with the same stimulus
and trial-noise conventions as `simulate` (2-D TimedArray `I_stim(t, row)` + Ornstein-Uhlenbeck current).
The code is compiled once per equation set (object names are fixed), so any n reuses the cython cache.

`StandaloneMC` is the "compile once, run many" path: a cpp_standalone project for a fixed set of
morphologies, re-run with new channel parameters and stimuli through `run_args` without recompiling.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import brian2 as b2
import numpy as np

from .models import ModelFamily
from .models.hh_mc import HHMC, MCBuiltGroup
from .simulate import SimResult, _bucket, configure_brian
from .stimuli import ou_noise


def _check_grid(dt_ms: float, record_dt_ms: float, stim_dt_ms: float) -> None:
    if not (dt_ms > 0 and record_dt_ms >= dt_ms and stim_dt_ms >= dt_ms):
        raise ValueError("need 0 < dt_ms <= record_dt_ms and dt_ms <= stim_dt_ms")
    ratio = record_dt_ms / dt_ms
    if abs(ratio - round(ratio)) > 1e-6:
        raise ValueError("record_dt_ms must be a multiple of dt_ms")


def simulate_multi(
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
) -> SimResult:
    """Simulate n multi-compartment neurons (rows of `params`), each driven at the soma by its row of
    `stim_pA` (sampled at stim_dt_ms); returns somatic voltage and spike times like `simulate`."""
    params = np.atleast_2d(np.asarray(params, dtype=np.float64))
    stim_pA = np.atleast_2d(np.asarray(stim_pA, dtype=np.float64))
    n = params.shape[0]
    if stim_pA.shape[0] != n:
        raise ValueError(f"stim_pA has {stim_pA.shape[0]} rows for {n} neurons")
    _check_grid(dt_ms, record_dt_ms, stim_dt_ms)
    family.check_params(params)
    rng = np.random.default_rng(seed)
    drive = stim_pA
    if noise_sigma_pA > 0:
        drive = stim_pA + ou_noise(n, stim_pA.shape[1], stim_dt_ms, noise_tau_ms, noise_sigma_pA, rng)
    n_rec = int(round(duration_ms / record_dt_ms))
    v_out = np.empty((n, n_rec), dtype=np.float32)
    spikes_out: list[np.ndarray] = [np.empty(0)] * n
    configure_brian(target)
    Ri = params[:, family.param_names().index("Ri")] if "Ri" in family.param_names() else np.zeros(n)
    # Brian2 compiles the TimedArray's shape into the code: pad both axes to powers of two (at least 8
    # columns) as `simulate` does, so calls of nearby sizes reuse the compiled module.
    values = np.zeros((_bucket(drive.shape[1]), max(_bucket(n), 8)))
    values[: drive.shape[1], :n] = drive.T
    for value in np.unique(Ri):
        rows = np.flatnonzero(Ri == value)
        b2.start_scope()
        b2.defaultclock.dt = dt_ms * b2.ms
        I_stim = b2.TimedArray(values * b2.pA, dt=stim_dt_ms * b2.ms, name="I_stim_arr")
        built: MCBuiltGroup = family.build(len(rows), params[rows], {"I_stim": I_stim}, rng, stim_rows=rows)
        state = b2.StateMonitor(built.group, "v", record=built.soma_index, dt=record_dt_ms * b2.ms, name="vmon")
        spk = b2.SpikeMonitor(built.group, name="spikemon")
        net = b2.Network(built.group, state, spk, *built.extra)
        net.run(duration_ms * b2.ms, namespace={})
        v = np.asarray(state.v / b2.mV, dtype=np.float32)[:, :n_rec]
        v_out[rows, : v.shape[1]] = v
        if v.shape[1] < n_rec:  # pragma: no cover - rounding guard
            v_out[rows, v.shape[1]:] = v[:, -1:]
        comp_to_row = {int(c): int(r) for c, r in zip(built.soma_index, rows)}
        idx = np.asarray(spk.i[:])
        times = np.asarray(spk.t[:] / b2.ms, dtype=np.float64)
        for c, r in comp_to_row.items():
            spikes_out[r] = np.sort(times[idx == c])
    t = np.arange(n_rec) * record_dt_ms
    return SimResult(t_ms=t, v_mV=v_out, spike_times_ms=spikes_out, record_dt_ms=record_dt_ms)


class StandaloneMC:
    """A compiled cpp_standalone project for `n` neurons of a multi-compartment family with fixed
    morphologies (the geometry, Ri and cm columns of `geometry_params`). `run` sets channel densities,
    potentials, the resting state and the stimulus through `run_args`, so only the first use compiles.

    Brian2's device is process-global: while this object is open the process is on cpp_standalone; `close()`
    returns it to the runtime device. Meant for a dedicated process (benchmarks, batch jobs).
    """

    def __init__(self, family: type[HHMC], geometry_params: np.ndarray, *, duration_ms: float, stim_dt_ms: float,
                 dt_ms: float = 0.025, record_dt_ms: float = 0.1, directory: str | Path | None = None,
                 threads: int = 0) -> None:
        _check_grid(dt_ms, record_dt_ms, stim_dt_ms)
        geometry_params = np.atleast_2d(np.asarray(geometry_params, dtype=np.float64))
        self.family = family
        self.n = geometry_params.shape[0]
        self.duration_ms = duration_ms
        self.record_dt_ms = record_dt_ms
        self.geometry = geometry_params.copy()
        self.n_stim = int(round(duration_ms / stim_dt_ms))
        self.directory = str(directory or tempfile.mkdtemp(prefix="noble-mc-standalone-"))
        self.runs = 0
        b2.prefs.logging.file_log = False
        b2.prefs.devices.cpp_standalone.openmp_threads = int(threads)
        b2.set_device("cpp_standalone", directory=self.directory, build_on_run=False)
        b2.device.reinit()
        b2.device.activate(directory=self.directory, build_on_run=False)
        b2.defaultclock.dt = dt_ms * b2.ms
        self.I_stim = b2.TimedArray(np.zeros((self.n_stim, self.n)) * b2.pA, dt=stim_dt_ms * b2.ms,
                                    name="I_stim_arr")
        self.built = family.build(self.n, self.geometry, {"I_stim": self.I_stim}, np.random.default_rng(0))
        g = self.built.group
        self.state = b2.StateMonitor(g, "v", record=self.built.soma_index, dt=record_dt_ms * b2.ms, name="vmon")
        self.spikes = b2.SpikeMonitor(g, name="spikemon")
        self.net = b2.Network(g, self.state, self.spikes)
        self.net.run(duration_ms * b2.ms, namespace={})
        b2.device.build(run=False, directory=self.directory)

    def _fixed_columns(self) -> list[int]:
        names = self.family.param_names()
        return [i for i, nm in enumerate(names) if nm.endswith("_um") or nm in ("Ri", "cm")]

    def run(self, params: np.ndarray, stim_pA: np.ndarray) -> SimResult:
        """Run the compiled binary for new parameters (geometry, Ri and cm as compiled) and stimuli (n, T)."""
        params = np.atleast_2d(np.asarray(params, dtype=np.float64))
        fixed = self._fixed_columns()
        if params.shape != self.geometry.shape or not np.allclose(params[:, fixed], self.geometry[:, fixed]):
            raise ValueError("StandaloneMC.run: geometry, Ri and cm columns must equal the compiled ones")
        stim = np.atleast_2d(np.asarray(stim_pA, dtype=np.float64))
        if stim.shape != (self.n, self.n_stim):
            raise ValueError(f"stim_pA must have shape {(self.n, self.n_stim)}")
        from .models.hh_mc import si_values

        packed = self.family.pack(params)
        g = self.built.group
        run_args: dict[Any, Any] = {self.I_stim: np.ascontiguousarray(stim.T) * b2.pA}
        for var, val in si_values(packed.arrays).items():
            if var in ("Cm", "at_soma", "stim_row"):
                continue  # structure: fixed at compile time
            view = getattr(g, var)
            run_args[view] = b2.Quantity(val, dim=view.dim)
        self.runs += 1
        b2.device.run(results_directory=f"results_{self.runs % 2}", run_args=run_args, with_output=False)
        for fname in b2.device.run_args_arrays:  # the per-run value files are not needed once it ran
            Path(self.directory, "static_arrays", fname).unlink(missing_ok=True)
        n_rec = int(round(self.duration_ms / self.record_dt_ms))
        v = np.asarray(self.state.v_[:], dtype=np.float64)[:, :n_rec] * 1e3
        idx = np.asarray(self.spikes.i[:])
        times = np.asarray(self.spikes.t_[:], dtype=np.float64) * 1e3
        spikes = [np.sort(times[idx == c]) for c in self.built.soma_index]
        return SimResult(t_ms=np.arange(v.shape[1]) * self.record_dt_ms, v_mV=v.astype(np.float32),
                         spike_times_ms=spikes, record_dt_ms=self.record_dt_ms)

    def close(self) -> None:
        b2.device.reinit()
        b2.set_device("runtime")

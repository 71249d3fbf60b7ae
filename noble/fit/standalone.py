"""The search's hot loop on Brian2's cpp_standalone device: `HHFit` compiled once per shape of run (neurons,
duration, dt, which optional currents), then re-run for every generation with new parameters, start states and
stimuli given to the binary as command-line run args (Brian2's `run_args`, without recompiling).

Why: a CMA-ES generation of a fit is one Brian2 run per worker of ~100 neurons x 16,000 steps, and the cython
runtime pays a Python round trip per code object per time step (~0.5 s of a 1.3 s run for 96 neurons x 800 ms at
dt 0.05 on this CPU; the standalone binary takes 0.55 s). Same generated code, same equations, same start states:
the traces agree with the runtime's to rounding (tests/fit/test_standalone.py).

A shape is compiled (~6 s with g++) only once it has come up `compile_after` times in the process, and only where
what is left of the caller's search (`BuildHorizon`: its time budget, its runs) can pay for the build: the binary
saves ~0.5 s of a run, so a build pays for itself only over the ~20 runs after it (a 20 s search built at its
third generation, 16 s in, then stopped on the build's 9 s instead of running five more generations on the
runtime; a one-generation fit's posterior probes built a shape for their last few batches). When compiling fails
(no C++ toolchain) the runner falls back to the runtime for good. Each compiled project is re-run by calling its
binary directly, not through Brian2's device (a process-global singleton that forgets a project when the next one
is built), and reads its results from disk.
"""

from __future__ import annotations

import atexit
import logging
import os
import shutil
import subprocess
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import brian2 as b2
import numpy as np

from noble.datagen.models.base import UNITS
from noble.datagen.simulate import SimResult
from noble.datagen.state_updaters import cached_method

from .hhmodel import HHFit

logger = logging.getLogger("noble.fit")


@dataclass(frozen=True)
class BuildHorizon:
    """What is left of the search a run belongs to: its time budget's end (time.time(), None: no budget) and
    the runs of this shape still to come after this one (None: unknown)."""

    deadline_s: float | None = None
    runs_left: int | None = None


@dataclass(frozen=True)
class RunShape:
    """What a compiled binary fixes: everything but the values of parameters, start states and stimulus."""

    n: int
    n_stim: int  # stimulus samples on the integration grid
    dt_ms: float
    duration_ms: float
    record_dt_ms: float
    currents: tuple[tuple[str, bool], ...]  # HHFit.currents_on
    record_state: bool


def _si(unit: str) -> float:
    """SI value of one `unit` of a ParamSpec (mS/cm2 -> 10 S/m2, ...)."""
    u = UNITS[unit]
    return float(np.asarray(u)) if isinstance(u, b2.Quantity) else float(u)


class CompiledHH:
    """One cpp_standalone project of HHFit for one RunShape, in its own directory."""

    def __init__(self, shape: RunShape, directory: Path) -> None:
        self.shape = shape
        self.directory = directory
        self.n_rec = int(round(shape.duration_ms / shape.record_dt_ms))
        dev = b2.get_device()
        b2.set_device("cpp_standalone", directory=str(directory), build_on_run=False)
        sa = b2.get_device()
        sa.reinit()
        sa.activate(directory=str(directory), build_on_run=False)
        try:
            b2.defaultclock.dt = shape.dt_ms * b2.ms
            stim = b2.TimedArray(np.zeros((shape.n_stim, shape.n)) * b2.pA, dt=shape.dt_ms * b2.ms, name="I_stim_arr")
            group = b2.NeuronGroup(shape.n, HHFit.equations(**dict(shape.currents)), method=cached_method(HHFit.method),
                                   threshold="v > -20*mV", refractory="v > -20*mV", namespace={"I_stim": stim},
                                   name="neurons")
            # every per-neuron value a run sets: the parameters (in SI) and the start state of each ODE variable
            self.params = [(j, spec.name, _si(spec.unit)) for j, spec in enumerate(HHFit.params)]
            for _j, name, _scale in self.params:
                setattr(group, name, np.zeros(shape.n) * group.variables[name].unit)
            self.state_vars = sorted(group.equations.diff_eq_names)
            self.recorded = ["v"] + ([x for x in self.state_vars if x != "v"] if shape.record_state else [])
            mon = b2.StateMonitor(group, self.recorded, record=True, dt=shape.record_dt_ms * b2.ms, name="vmon")
            spikes = b2.SpikeMonitor(group, name="spikemon")
            b2.Network(group, mon, spikes).run(shape.duration_ms * b2.ms, namespace={})
            sa.build(run=False, compile=True, directory=str(directory), with_output=False)
            self.files = {name: sa.get_array_filename(mon.variables[name]) for name in self.recorded}
            self.spike_files = (sa.get_array_filename(spikes.variables["i"]),
                                sa.get_array_filename(spikes.variables["t"]))
        finally:
            sa.reinit()
            b2.set_device(dev)
        self.runs = 0

    def run(self, family: type[HHFit], params: np.ndarray, drive_pA: np.ndarray) -> SimResult:
        """Simulate rows of full hh params under drive (n, n_stim) pA, from family's start states."""
        sh = self.shape
        params = np.asarray(params, dtype=np.float64)
        v0, gates = family.start_state(params)
        values: dict[str, np.ndarray] = {name: params[:, j] * scale for j, name, scale in self.params}
        values["v"] = v0 * 1e-3
        for name in self.state_vars:
            if name != "v":
                values[name] = np.asarray(gates[name], dtype=np.float64)
        tag = f"r{os.getpid()}_{self.runs}"
        self.runs += 1
        static = self.directory / "static_arrays"
        written: list[Path] = []
        (self.directory / "results").mkdir(exist_ok=True)
        args = ["--results_dir", os.path.join(self.directory, "results", "")]  # the binary appends file names
        for name, val in values.items():
            path = static / f"{tag}_{name}.dat"
            np.ascontiguousarray(val, dtype=np.float64).tofile(path)
            written.append(path)
            args.append(f"neurons.{name}=static_arrays/{path.name}")
        stim = static / f"{tag}_I_stim.dat"
        np.ascontiguousarray(np.asarray(drive_pA, dtype=np.float64).T * 1e-12).tofile(stim)
        written.append(stim)
        args.append(f"I_stim_arr.values=static_arrays/{stim.name}")
        try:
            done = subprocess.run(["./main", *args], cwd=self.directory, capture_output=True, text=True)
        finally:
            for path in written:
                path.unlink(missing_ok=True)
        if done.returncode != 0:
            raise RuntimeError(f"standalone run failed ({self.directory}): {done.stdout[-500:]}{done.stderr[-500:]}")
        res = self.directory / "results"
        state: dict[str, np.ndarray] = {}
        for name, fname in self.files.items():
            a = np.fromfile(res / fname, dtype=np.float64).reshape(-1, sh.n)[: self.n_rec].T
            state[name] = a * 1e3 if name == "v" else a
        idx = np.fromfile(res / self.spike_files[0], dtype=np.int32)
        t = np.fromfile(res / self.spike_files[1], dtype=np.float64) * 1e3
        trains = [np.sort(t[idx == k]) for k in range(sh.n)]
        return SimResult(t_ms=np.arange(self.n_rec) * sh.record_dt_ms, v_mV=state["v"].astype(np.float32),
                         spike_times_ms=trains, record_dt_ms=sh.record_dt_ms,
                         state=state if sh.record_state else None)


class StandaloneRunner:
    """Per process: the compiled shapes, compiled on a shape's `compile_after`-th use (None: run it on the runtime)."""

    def __init__(self, compile_after: int = 3, max_shapes: int = 6, payback: float = 3.0,
                 first_build_s: float = 10.0, min_runs_left: int = 20) -> None:
        self.compile_after = compile_after
        self.max_shapes = max_shapes
        self.payback = payback
        self.min_runs_left = min_runs_left
        self.first_build_s = first_build_s  # the expected build time until this process has measured one
        self.build_s: list[float] = []  # measured builds (wall s)
        self.seen: Counter[RunShape] = Counter()
        self.compiled: dict[RunShape, CompiledHH] = {}
        # Brian2's standalone build runs make and the C++ compiler (the cython runtime needs only the compiler)
        self.disabled = shutil.which("make") is None or (shutil.which("g++") is None and shutil.which("c++") is None)
        self._root: Path | None = None
        self._lock = threading.Lock()  # Brian2's device is process-global; a project's results directory is shared

    def _directory(self) -> Path:
        if self._root is None:
            remove_orphaned_projects()
            self._root = Path(tempfile.mkdtemp(prefix=f"{ROOT_PREFIX}{os.getpid()}-"))
            atexit.register(shutil.rmtree, self._root, True)
        return Path(tempfile.mkdtemp(dir=self._root))

    def run(self, family: type[HHFit], params: np.ndarray, drive_pA: np.ndarray, duration_ms: float, dt_ms: float,
            record_dt_ms: float, record_state: bool = False, horizon: BuildHorizon | None = None
            ) -> SimResult | None:
        """The run on a compiled binary, or None where the runtime should do it (a shape not yet worth compiling,
        too little of the search left for a build to pay, no toolchain, a stimulus shorter than the run)."""
        with self._lock:
            return self._run(family, params, drive_pA, duration_ms, dt_ms, record_dt_ms, record_state, horizon)

    def worth_building(self, horizon: BuildHorizon | None) -> bool:
        """Are `min_runs_left` runs still to come, and does the time left cover a build and `payback` - 1 builds'
        worth of runs (the build time measured in this process, `first_build_s` until one is)?"""
        if horizon is None:
            return True
        if horizon.runs_left is not None and horizon.runs_left < self.min_runs_left:
            return False
        expected_s = max(self.build_s) if self.build_s else self.first_build_s
        return horizon.deadline_s is None or time.time() + self.payback * expected_s < horizon.deadline_s

    def _run(self, family: type[HHFit], params: np.ndarray, drive_pA: np.ndarray, duration_ms: float, dt_ms: float,
             record_dt_ms: float, record_state: bool, horizon: BuildHorizon | None) -> SimResult | None:
        if self.disabled:
            return None
        params = np.atleast_2d(np.asarray(params, dtype=np.float64))
        family.check_params(params)
        shape = RunShape(n=params.shape[0], n_stim=int(np.shape(drive_pA)[1]), dt_ms=float(dt_ms),
                         duration_ms=float(duration_ms), record_dt_ms=float(record_dt_ms),
                         currents=tuple(sorted(HHFit.currents_on(params).items())), record_state=record_state)
        if shape.n_stim * dt_ms < duration_ms - 1e-9:
            return None  # the runtime holds the last stimulus value past its end; keep that case there
        compiled = self.compiled.get(shape)
        if compiled is None:
            self.seen[shape] += 1
            if (self.seen[shape] < self.compile_after or len(self.compiled) >= self.max_shapes
                    or not self.worth_building(horizon)):
                return None
            t0 = time.time()
            try:
                compiled = CompiledHH(shape, self._directory())
            except Exception as exc:  # no working toolchain: the runtime for the rest of this process
                logger.warning("cpp_standalone unavailable (%s: %s); the fit simulates on the Brian2 runtime",
                               type(exc).__name__, str(exc)[:200])
                self.disabled = True
                return None
            self.build_s.append(time.time() - t0)
            self.compiled[shape] = compiled
        try:
            return compiled.run(family, params, drive_pA)
        except (OSError, RuntimeError, ValueError) as exc:  # a binary that cannot run (disk, a file gone): not a
            # reason to lose the fit; this and every later run of the process go to the runtime
            logger.warning("cpp_standalone run failed (%s: %s); the fit simulates on the Brian2 runtime",
                           type(exc).__name__, str(exc)[:200])
            self.disabled = True
            return None


ROOT_PREFIX = "noble-fit-standalone-"  # + the owning process's pid + "-" + mkdtemp's suffix


def remove_orphaned_projects(tmp: Path | None = None) -> list[Path]:
    """Remove the compiled projects (~26 MB a worker) of processes that are gone: a killed worker (a Dask
    nanny's SIGKILL, an OOM kill) never runs its atexit cleanup. Returns the directories removed."""
    removed = []
    for d in Path(tmp or tempfile.gettempdir()).glob(f"{ROOT_PREFIX}*-*"):
        pid = d.name[len(ROOT_PREFIX):].split("-", 1)[0]
        if not pid.isdigit() or _alive(int(pid)):
            continue
        shutil.rmtree(d, ignore_errors=True)
        removed.append(d)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


_RUNNER: StandaloneRunner | None = None


def runner() -> StandaloneRunner:
    """This process's runner (each fit worker process compiles its own shapes)."""
    global _RUNNER
    if _RUNNER is None:
        _RUNNER = StandaloneRunner()
    return _RUNNER


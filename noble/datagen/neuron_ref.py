"""The `hh` family (Pospischil et al. 2008) rebuilt in NEURON, to cross-check the Brian2 simulations.

Same model as `noble.datagen.models.hh`, from the same parameter vector (`HH.param_names()` order): one
cylinder with L = diam = diam_um (area pi d^2, no end caps, as in hh.py), cm = 1 uF/cm^2, leak = NEURON's
`pas`, and the Na / Kd / M / T / L currents as NMODL mechanisms in `noble/datagen/nmodl/` (nonspecific
currents with per-cell reversal potentials, exactly hh.py's equations). The .mod files are compiled once
with `nrnivmodl` into `$NOBLE_CACHE_DIR/nmodl/<hash>` (default ~/.cache/noble/nmodl/<hash>) under a file lock.
Initial state as in hh.py and `simulate`: each cell at its stable steady state under the stimulus' first value
(`HH.steady_state`; v set here, every gate at its steady state there by the NMODL INITIAL blocks); where a cell
has none, v = E_leak and the run first settles for `HH.settle_ms` at that current, not recorded, as `simulate`.

Integration: fixed step, default `secondorder = 0` (NEURON's default: implicit Euler for v, `cnexp` for the
gates, staggered by half a step); `secondorder=2` is Crank-Nicolson. Neither reproduces Brian2's
`exponential_euler` step for step (that scheme is not staggered), so the cross-check compares both against
the converged solution. Measured on the four presets, 300 ms steps of 120-400 pA, against NEURON at
dt = 0.0005 ms (worst spike-time error over the train at dt = 0.025 ms): NEURON secondorder=0 ~2 ms,
secondorder=2 ~0.7 ms (0.07 ms at dt = 0.005 ms, the reference used in tests); Brian2 exponential_euler
~10 ms with 5-8 spikes lost in IB bursts, rk2 ~0.1 ms (IB ~1 ms), rk4 ~0.05 ms.
Spike times follow Brian2's convention (the start of the step in which v crossed -20 mV upwards).

NEURON is an optional dependency (`pip install noble[neuron]`): it is imported lazily.
"""

from __future__ import annotations

import hashlib
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from .models.hh import HH
from .simulate import SimResult, settle_steps

NMODL_DIR = Path(__file__).with_name("nmodl")
MECHANISMS = ("nb_na", "nb_kd", "nb_im", "nb_it", "nb_il", "nb_id", "nb_ih", "nb_kir", "nb_nap", "nb_ahp")
SPIKE_THRESHOLD_mV = -20.0  # hh.py's threshold "v > -20*mV"

_state: dict[str, Any] = {"h": None}


def _import_neuron() -> Any:
    try:
        import neuron  # noqa: F401
        from neuron import h
    except ImportError as exc:  # pragma: no cover - depends on the installation
        raise ImportError(
            "the NEURON simulator is needed for noble.datagen.neuron_ref; install it with "
            "`pip install 'noble[neuron]'` (or `pip install neuron`)"
        ) from exc
    return h


def _nrnivmodl() -> str:
    """The nrnivmodl next to this Python (a venv's bin/) or on PATH."""
    local = Path(sys.executable).parent / "nrnivmodl"
    if local.exists():
        return str(local)
    found = shutil.which("nrnivmodl")
    if found is None:
        raise RuntimeError("nrnivmodl not found next to the Python executable nor on PATH (it comes with NEURON)")
    return found


def _cache_root() -> Path:
    root = os.environ.get("NOBLE_CACHE_DIR")
    return Path(root) if root else Path.home() / ".cache" / "noble"


def _find_library(build_dir: Path) -> Path | None:
    for pattern in ("*/libnrnmech.so", "*/.libs/libnrnmech.so", "*/libnrnmech.dylib", "*/.libs/libnrnmech.dylib"):
        hits = sorted(build_dir.glob(pattern))
        if hits:
            return hits[0]
    return None


def compile_mechanisms() -> Path:
    """Compile the NMODL files (once per content + NEURON version + platform) and return libnrnmech's path."""
    import neuron
    from filelock import FileLock

    digest = hashlib.sha256()
    for mod in sorted(NMODL_DIR.glob("*.mod")):
        digest.update(mod.name.encode())
        digest.update(mod.read_bytes())
    digest.update(f"{neuron.__version__}|{platform.machine()}|{sys.version_info[:2]}".encode())
    root = _cache_root() / "nmodl"
    root.mkdir(parents=True, exist_ok=True)
    final = root / digest.hexdigest()[:16]
    with FileLock(str(final) + ".lock"):
        lib = _find_library(final) if final.exists() else None
        if lib is not None:
            return lib
        tmp = Path(tempfile.mkdtemp(prefix="build-", dir=root))
        try:
            for mod in NMODL_DIR.glob("*.mod"):
                shutil.copy2(mod, tmp / mod.name)
            proc = subprocess.run([_nrnivmodl(), "."], cwd=tmp, capture_output=True, text=True)
            if proc.returncode != 0 or _find_library(tmp) is None:
                raise RuntimeError(f"nrnivmodl failed in {tmp}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
            if final.exists():
                shutil.rmtree(final)
            tmp.rename(final)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
        lib = _find_library(final)
        assert lib is not None
        return lib


def _mechanism_names(h: Any) -> set[str]:
    mt = h.MechanismType(0)
    name = h.ref("")
    out = set()
    for k in range(int(mt.count())):
        mt.select(k)
        mt.selected(name)
        out.add(name[0])
    return out


def load_neuron() -> Any:
    """NEURON's `h` with stdrun and the noble mechanisms loaded (compiled on first use)."""
    if _state["h"] is not None:
        return _state["h"]
    h = _import_neuron()
    if not set(MECHANISMS) <= _mechanism_names(h):
        lib = compile_mechanisms()
        if not h.nrn_load_dll(str(lib)):
            raise RuntimeError(f"NEURON could not load {lib}")
    h.load_file("stdrun.hoc")
    _state["h"] = h
    return h


class _Cells:
    """n single-compartment hh cells with one IClamp each; kept alive while NEURON runs them."""

    def __init__(self, h: Any, params: np.ndarray, skip_zero_channels: bool = True) -> None:
        HH.check_params(params)
        col = {name: params[:, j] for j, name in enumerate(HH.param_names())}
        self.sections: list[Any] = []
        self.clamps: list[Any] = []
        for k in range(params.shape[0]):
            sec = h.Section(name=f"hh{k}")
            sec.nseg = 1
            sec.L = sec.diam = float(col["diam_um"][k])
            sec.cm = 1.0
            sec.insert("pas")
            seg = sec(0.5)
            seg.pas.g = col["g_leak"][k] * 1e-3  # mS/cm2 -> S/cm2
            seg.pas.e = col["E_leak"][k]
            for mech, gname, erev in (("nb_na", "g_Na", "E_Na"), ("nb_kd", "g_Kd", "E_K"), ("nb_im", "g_M", "E_K"),
                                      ("nb_it", "g_T", "E_Ca"), ("nb_il", "g_L", "E_Ca"), ("nb_id", "g_D", "E_K"),
                                      ("nb_ih", "g_h", "E_h"), ("nb_kir", "g_Kir", "E_K"),
                                      ("nb_nap", "g_NaP", "E_Na"), ("nb_ahp", "g_AHP", "E_K")):
                g = float(col[gname][k])
                # A zero conductance carries no current; leaving the channel out is what a NEURON user does.
                if skip_zero_channels and g == 0.0:
                    continue
                sec.insert(mech)
                m = getattr(seg, mech)
                m.gbar = g * 1e-3
                m.erev = float(col[erev][k])
                if mech in ("nb_na", "nb_kd"):
                    m.vt = float(col["V_T"][k])
                    m.tadj = float(col["phi_NaK"][k])
                if mech == "nb_na":
                    m.fs = float(col["f_NaS"][k])
                    m.phis = float(col["phi_NaS"][k])
                    m.vs = float(col["V_NaS"][k])
                elif mech == "nb_im":
                    m.taumax = float(col["tau_max"][k])
                elif mech == "nb_it":
                    m.vx = float(col["V_x"][k])
                elif mech == "nb_id":
                    m.taub = float(col["tau_D"][k])
                elif mech == "nb_kir":
                    m.vhalf = float(col["V_Kir"][k])
                elif mech == "nb_nap":
                    m.vhalf = float(col["V_NaP"][k])
                elif mech == "nb_ahp":
                    m.tau = float(col["tau_AHP"][k])
            seg.v = float(col["E_leak"][k])
            self.sections.append(sec)
            stim = h.IClamp(seg)
            self.clamps.append(stim)


def simulate_neuron(
    params: np.ndarray,
    amplitudes_pA: np.ndarray | float,
    start_ms: float,
    duration_ms: float,
    total_ms: float,
    dt_ms: float = 0.025,
    record_dt_ms: float | None = 0.1,
    secondorder: int = 0,
    nthread: int = 1,
) -> SimResult:
    """Simulate n hh cells (rows of `params`) in NEURON, each with a square step of its own amplitude.

    Returns a `SimResult` like `noble.datagen.simulate.simulate`: v on the record grid (t = 0, record_dt,
    ... < total_ms; no traces if record_dt_ms is None) and spike times (upward crossings of -20 mV).
    """
    h = load_neuron()
    params = np.atleast_2d(np.asarray(params, dtype=np.float64))
    n = params.shape[0]
    amps = np.broadcast_to(np.asarray(amplitudes_pA, dtype=np.float64), (n,))
    if record_dt_ms is not None:
        ratio = record_dt_ms / dt_ms
        if record_dt_ms < dt_ms or abs(ratio - round(ratio)) > 1e-6:
            raise ValueError("record_dt_ms must be a multiple of dt_ms")
    cells = _Cells(h, params)
    # The stimulus' first value is the holding current (the step's amplitude if it is on at t = 0), as in simulate.
    on_at_zero = start_ms <= 0
    start_state, at_rest = HH.steady_state(params, amps if on_at_zero else 0.0)
    run_in = 0.0
    if not np.all(at_rest):
        run_in = settle_steps(HH.settle_ms, dt_ms, dt_ms, record_dt_ms or dt_ms)[1]
    for sec, v0 in zip(cells.sections, start_state["v"]):
        sec(0.5).v = float(v0)
    vecs, spikes, netcons = [], [], []
    for sec, stim, amp in zip(cells.sections, cells.clamps, amps):
        stim.delay = 0.0 if on_at_zero else start_ms + run_in
        stim.dur = duration_ms + (run_in if on_at_zero else 0.0)
        stim.amp = float(amp) * 1e-3  # pA -> nA
        if record_dt_ms is not None:
            vec = h.Vector()
            vec.record(sec(0.5)._ref_v, record_dt_ms)
            vecs.append(vec)
        nc = h.NetCon(sec(0.5)._ref_v, None, sec=sec)
        nc.threshold = SPIKE_THRESHOLD_mV
        st = h.Vector()
        nc.record(st)
        netcons.append(nc)
        spikes.append(st)

    pc = h.ParallelContext()
    pc.nthread(int(nthread))
    h.cvode_active(0)
    h.secondorder = int(secondorder)
    h.dt = dt_ms
    h.steps_per_ms = 1.0 / dt_ms
    h.finitialize()  # no argument: keep each cell's v (set above); INITIAL blocks put gates at steady state
    h.continuerun(total_ms + run_in)

    if record_dt_ms is not None:
        n_rec = int(round(total_ms / record_dt_ms))
        skip = int(round(run_in / record_dt_ms))
        v = np.empty((n, n_rec), dtype=np.float32)
        for k, vec in enumerate(vecs):
            v[k] = vec.as_numpy()[skip: skip + n_rec]
        t = np.arange(n_rec) * record_dt_ms
    else:
        v = np.empty((n, 0), dtype=np.float32)
        t = np.empty(0)
    # NEURON stamps the end of the step in which v crossed; Brian2 the start: shift by one dt.
    spike_times = []
    for st in spikes:
        times = np.asarray(st.as_numpy(), dtype=np.float64) - dt_ms - run_in
        spike_times.append(times[times > -1e-9])
    pc.nthread(1)
    return SimResult(t_ms=t, v_mV=v, spike_times_ms=spike_times, record_dt_ms=record_dt_ms or dt_ms)


def rheobase_neuron(
    params: np.ndarray,
    *,
    start_ms: float = 100.0,
    duration_ms: float = 1000.0,
    max_pA: float = 1000.0,
    tol_pA: float = 1.0,
    dt_ms: float = 0.025,
    secondorder: int = 0,
) -> np.ndarray:
    """Rheobase (pA) of every cell by bisection to tol_pA: the smallest step amplitude that gives at least
    one spike within [start, start + duration). All cells run together in each bisection round.
    Cells that fire without input get 0, cells silent at max_pA get NaN (as `features.rheobase_and_slope`)."""
    params = np.atleast_2d(np.asarray(params, dtype=np.float64))
    n = params.shape[0]
    total = start_ms + duration_ms + 100.0

    def fires(amps: np.ndarray) -> np.ndarray:
        res = simulate_neuron(params, amps, start_ms, duration_ms, total, dt_ms=dt_ms, record_dt_ms=None,
                              secondorder=secondorder)
        return np.array([np.any((s >= start_ms) & (s < start_ms + duration_ms)) for s in res.spike_times_ms])

    spontaneous = fires(np.zeros(n))
    never = ~fires(np.full(n, max_pA))
    lo, hi = np.zeros(n), np.full(n, max_pA)
    while np.any((hi - lo) > tol_pA):
        mid = 0.5 * (lo + hi)
        f = fires(mid)
        hi = np.where(f, mid, hi)
        lo = np.where(f, lo, mid)
    return np.where(never, np.nan, np.where(spontaneous, 0.0, hi))

"""The multi-compartment families (`hh_mc`) rebuilt in NEURON from the same description, to cross-check
Brian2 and to benchmark against it.

Same cells, compartment for compartment: the Brian2 morphology of each neuron (`HHMC.cell`) is walked
section by section. A `Soma` becomes a cylinder with L = diam (area pi d^2, the sphere's) with one segment,
its children attached at its centre (Brian2 treats the soma as isopotential); a section of equal-length
cylindrical compartments becomes one NEURON section with nseg = compartments; any other section (SWC
frustums) becomes a chain of one-segment sections with pt3d end diameters, so areas and axial resistances
(half-compartment terms, exact for frustums in both simulators) agree. Ra = Ri, cm and the channel
densities are set per segment from the same per-compartment tables; channels are inserted only in sections
where their density is non-zero (as a NEURON user would). Channels are the NMODL files of
`noble/datagen/nmodl/` (nb_na, nb_kd, nb_im of the `hh` family; nb_ih for I_h), compiled by
`neuron_ref.compile_mechanisms`. Every segment starts at the resting potential that `hh_mc` computes, with
gates at steady state (NMODL INITIAL blocks).

Integration: NEURON's fixed step, implicit Euler (`secondorder = 0`), like Brian2's SpatialNeuron
(implicit Euler for the cable, exponential Euler for the gates). Spike times use Brian2's convention (the
start of the step in which the somatic v crossed -20 mV), as in `neuron_ref`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .models.hh_mc import HHMC, CellTable, SectionInfo, resting_potential
from .neuron_ref import SPIKE_THRESHOLD_mV, load_neuron
from .simulate import SimResult

# (mechanism, density key in the per-compartment table, reversal key, extra RANGE settings)
_CHANNELS: tuple[tuple[str, str, str], ...] = (
    ("nb_na", "g_Na", "E_Na"),
    ("nb_kd", "g_Kd", "E_K"),
    ("nb_im", "g_M", "E_K"),
    ("nb_ih", "g_h", "E_h"),
)


def load() -> Any:
    """NEURON's `h` with the noble mechanisms, including nb_ih (compiled on first use)."""
    from .neuron_ref import _mechanism_names

    h = load_neuron()
    if "nb_ih" not in _mechanism_names(h):
        raise RuntimeError("NEURON mechanisms were loaded without nb_ih (a libnrnmech built before "
                           "noble/datagen/nmodl/nb_ih.mod existed); start a fresh process")
    return h


@dataclass
class NeuronCell:
    """One hh_mc neuron in NEURON: its sections (kept alive), the segment of every compartment, its clamp."""

    sections: list[Any]
    segments: list[Any]  # per compartment, cell-local order
    soma: Any
    clamp: Any
    converged: bool
    extra: list[Any] = field(default_factory=list)


def _uniform(info: SectionInfo) -> bool:
    L, d0, d1 = info.length_um, info.start_diam_um, info.end_diam_um
    return bool(np.allclose(L, L[0], rtol=1e-9) and np.allclose(d0, d1, rtol=1e-9) and np.allclose(d0, d0[0], rtol=1e-9))


def build_cell(h: Any, family: type[HHMC], row: np.ndarray, tag: str) -> NeuronCell:
    """A NEURON model of one neuron (row of `family.params`), compartment for compartment as in Brian2."""
    values = family.row_values(row)
    _morph, table, cv = family.cell(values)
    v_rest, ok = resting_potential(table, cv, values["Ri"])
    return _instantiate(h, table, cv, v_rest, values["Ri"], tag, ok)


def _instantiate(h: Any, table: CellTable, cv: dict[str, np.ndarray], v_rest: np.ndarray, Ri_ohm_cm: float,
                 tag: str, converged: bool) -> NeuronCell:
    sections: list[Any] = []
    segments: list[Any] = [None] * table.n
    attach: list[Any] = []  # where each Brian2 section's children connect
    for s_idx, info in enumerate(table.sections):
        if info.kind == "soma":
            sec = h.Section(name=f"{tag}_s{s_idx}")
            sec.L = sec.diam = float(info.start_diam_um[0])
            sec.nseg = 1
            secs = [sec]
            segs = [sec(0.5)]
            attach.append(sec(0.5))
        elif _uniform(info):
            sec = h.Section(name=f"{tag}_s{s_idx}")
            sec.L = float(info.length_um.sum())
            sec.diam = float(info.start_diam_um[0])
            sec.nseg = int(info.n)
            secs = [sec]
            segs = list(sec)
            attach.append(sec(1))
        else:
            secs, segs = [], []
            for j in range(info.n):
                sec = h.Section(name=f"{tag}_s{s_idx}_{j}")
                sec.pt3dclear()
                sec.pt3dadd(0.0, 0.0, 0.0, float(info.start_diam_um[j]))
                sec.pt3dadd(float(info.length_um[j]), 0.0, 0.0, float(info.end_diam_um[j]))
                sec.nseg = 1
                if secs:
                    sec.connect(secs[-1](1), 0)
                secs.append(sec)
                segs.append(sec(0.5))
            attach.append(secs[-1](1))
        if info.parent >= 0:
            secs[0].connect(attach[info.parent], 0)
        for j, seg in enumerate(segs):
            segments[info.start + j] = seg
        for sec in secs:
            sec.Ra = float(Ri_ohm_cm)
            sec.insert("pas")
            lo, hi = info.start, info.start + info.n
            for mech, gkey, _ in _CHANNELS:
                if np.any(cv[gkey][lo:hi] != 0):
                    sec.insert(mech)
        sections.extend(secs)
    for c, seg in enumerate(segments):
        seg.cm = float(cv["cm"][c])
        seg.pas.g = float(cv["g_leak"][c]) * 1e-3  # mS/cm^2 -> S/cm^2
        seg.pas.e = float(cv["E_leak"][c])
        for mech, gkey, ekey in _CHANNELS:
            if not seg.sec.has_membrane(mech):
                continue
            m = getattr(seg, mech)
            m.gbar = float(cv[gkey][c]) * 1e-3
            m.erev = float(cv[ekey][c])
            if mech in ("nb_na", "nb_kd"):
                m.vt = float(cv["V_T"][c])
            elif mech == "nb_im":
                m.taumax = float(cv["tau_max"][c])
        seg.v = float(v_rest[c])
    soma = segments[table.soma_index]
    clamp = h.IClamp(soma)
    return NeuronCell(sections=sections, segments=segments, soma=soma, clamp=clamp, converged=converged)


def simulate_neuron_mc(
    family: type[HHMC],
    params: np.ndarray,
    amplitudes_pA: np.ndarray | float,
    start_ms: float,
    duration_ms: float,
    total_ms: float,
    dt_ms: float = 0.025,
    record_dt_ms: float | None = 0.1,
    secondorder: int = 0,
    nthread: int = 1,
    cache_efficient: bool = False,
) -> SimResult:
    """Simulate n hh_mc neurons (rows of `params`) in NEURON, each with a somatic square step of its own
    amplitude. Returns a `SimResult` like `simulate_mc.simulate_multi` (somatic v, somatic spikes).
    `cache_efficient` turns on NEURON's contiguous memory layout (CVode.cache_efficient); it does not change
    the results and gave no measurable speed-up for these cells (~120 compartments), so it is off."""
    h = load()
    params = np.atleast_2d(np.asarray(params, dtype=np.float64))
    family.check_params(params)
    n = params.shape[0]
    amps = np.broadcast_to(np.asarray(amplitudes_pA, dtype=np.float64), (n,))
    if record_dt_ms is not None:
        ratio = record_dt_ms / dt_ms
        if record_dt_ms < dt_ms or abs(ratio - round(ratio)) > 1e-6:
            raise ValueError("record_dt_ms must be a multiple of dt_ms")
    cells = [build_cell(h, family, params[k], f"mc{k}") for k in range(n)]
    vecs, spikes, netcons = [], [], []
    for cell, amp in zip(cells, amps):
        cell.clamp.delay = start_ms
        cell.clamp.dur = duration_ms
        cell.clamp.amp = float(amp) * 1e-3  # pA -> nA
        if record_dt_ms is not None:
            vec = h.Vector()
            vec.record(cell.soma._ref_v, record_dt_ms)
            vecs.append(vec)
        nc = h.NetCon(cell.soma._ref_v, None, sec=cell.soma.sec)
        nc.threshold = SPIKE_THRESHOLD_mV
        st = h.Vector()
        nc.record(st)
        netcons.append(nc)
        spikes.append(st)
    pc = h.ParallelContext()
    pc.nthread(int(nthread))
    h.cvode_active(0)
    h.CVode().cache_efficient(1 if cache_efficient else 0)
    h.secondorder = int(secondorder)
    h.dt = dt_ms
    h.steps_per_ms = 1.0 / dt_ms
    h.finitialize()  # keeps each segment's v (the resting state); INITIAL blocks set the gates there
    h.continuerun(total_ms)
    if record_dt_ms is not None:
        n_rec = int(round(total_ms / record_dt_ms))
        v = np.empty((n, n_rec), dtype=np.float32)
        for k, vec in enumerate(vecs):
            v[k] = vec.as_numpy()[:n_rec]
        t = np.arange(n_rec) * record_dt_ms
    else:
        v, t = np.empty((n, 0), dtype=np.float32), np.empty(0)
    spike_times = [np.asarray(st.as_numpy(), dtype=np.float64) - dt_ms for st in spikes]
    pc.nthread(1)
    del netcons, cells
    return SimResult(t_ms=t, v_mV=v, spike_times_ms=spike_times, record_dt_ms=record_dt_ms or dt_ms)

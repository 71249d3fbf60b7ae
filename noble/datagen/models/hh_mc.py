"""Multi-compartment conductance-based neuron: Pospischil 2008 channels on a soma-dendrites-axon morphology.

The expensive case the surrogate exists for (NOBLE's speed-up is quoted against multi-compartment models).

Model, per compartment (Brian2 `SpatialNeuron`, cable equation with intracellular resistivity `Ri`):

    Cm dV/dt = g_leak (E_leak - V) + g_Na m^3 h (E_Na - V) + g_Kd n^4 (E_K - V) + g_M p (E_K - V)
               + g_h w (E_h - V) + axial currents (+ I_inj at the soma)

* I_Na, I_Kd, I_M: exactly the `hh` family's kinetics (Pospischil et al. 2008, Biol. Cybern. 99:427-441;
  Traub-Miles Na/Kd shifted by V_T, M-current with tau_max); see `noble.datagen.models.hh`.
* I_h: hyperpolarisation-activated cation current of Kole, Hallermann & Stuart (2006), J. Neurosci.
  26:1677-1687, in the form of Hay et al. (2011) PLoS Comput. Biol. 7:e1002107 (ModelDB 139653, Ih.mod):
  alpha_w = 0.00643 (V+154.9) / (exp((V+154.9)/11.9) - 1) /ms, beta_w = 0.193 exp(V/33.1) /ms, E_h = -45 mV.
* Densities per region: soma, dendrites (SWC types 3/4), axon initial segment (axon within `ais_length_um`
  of the soma) and the rest of the axon. Leak, V_T, tau_max, Cm and reversal potentials are uniform.
* T/L-type Ca2+ currents of the `hh` family are left out (not needed for the FS/RS classes here; they
  would add four gating variables per compartment).

Morphology: either the parameterised default (a `Soma` sphere, `n_dend` primary dendrites each splitting
into `branches` daughters with Rall's 3/2 rule diameters set by parameters, an axon initial segment and an
axon; ~120 compartments) or any SWC file (`Morphology.from_file`, geometry parameters then ignored).
The structure (number of sections and compartments) is fixed per family class (`MorphologySpec`);
`HHMC.with_morphology(...)` makes a family with another structure. Geometry values vary per neuron.

Preset `fast_spiking` (PV basket-cell-like): soma 20 um, 5 aspiny dendrites each splitting in two (~2 mm
in all), a 30 um AIS with a high Na+ density (spikes start there), a 300 um unmyelinated axon. Pospischil's
FS somatic Na+ and M densities and V_T; a larger somatic Kd (30 mS/cm^2, standing in for the fast Kv3
repolarisation of PV cells, which the single-compartment fit folds into its kinetics); leak 0.08 mS/cm^2
for the PV-typical tau_m ~ 11 ms and R_in ~ 150 MOhm; weak dendritic Na+, small dendritic I_h (little sag).
It fires brief APs (half-width ~0.5 ms) from ~45 Hz at rheobase (~120-150 pA) to >300 Hz with little
adaptation. `regular_spiking` (pyramidal-like): Pospischil's RS Na+/V_T/tau_max, stronger M-current
(adaptation) and I_h (sag), larger soma and dendrites, tau_m ~ 20 ms. Both presets were tuned by hand to
these class features, not fitted to recordings. The values taken from Pospischil's cells are the `hh`
presets' (sources in noble/datagen/models/hh.py's docstring, pinned by tests/datagen/test_hh_presets.py):
FS (the paper's Fig. 4 fit) g_Na_soma 58, g_M_soma 0.0787 mS/cm^2, V_T -57.9 mV, tau_max 502 ms; RS (Fig. 2b
fit) g_Na_soma 56 mS/cm^2, E_leak -70.3 mV, V_T -56.2 mV, tau_max 608 ms; E_Na 50 and E_K -90 mV (the paper's
section 2.2.1) in both. hh_mc starts at its resting state without input (below); it does not take the
stimulus' first value as a holding current as `hh` does.

Numerics (kept identical in the NEURON mirror, `noble.datagen.neuron_mc`): each neuron starts at its
resting state (v per compartment from a Newton solve of the steady discretised cable equation, gates at
their steady state there), so traces have no initial transient. At dt = 0.025 ms Brian2 and NEURON agree
to ~1e-3 mV and put every spike in the same time step (tests/datagen/test_hh_mc.py). Both schemes are first
order (implicit Euler cable): against a converged reference (NEURON, dt 0.005 ms, Crank-Nicolson) the FS
preset's first 10 spikes shift by up to ~2 ms and 1 s spike counts are 1-3% low at dt 0.025 ms, about
2.5x less at dt 0.01 ms; dt is the accuracy lever (SpatialNeuron has no higher-order cable solver). Simulation cost: one `SpatialNeuron` is one neuron;
`build` packs n neurons into ONE `SpatialNeuron` by joining their somata with spacer cylinders whose axial
conductance (~1e-16 S) is negligible (a current of 1e-5 pA at 100 mV; checked by a test), so a shard runs
as one vectorised group and one compiled code set for any n.
"""

from __future__ import annotations

import copy
import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Mapping

import brian2 as b2
import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from .base import BuiltGroup, ModelFamily, ParamSpec
from .hh import _gates_at_rest

# Region codes per compartment.
SOMA, DEND, AIS, AXON, SPACER = 0, 1, 2, 3, 4
REGIONS = {"soma": SOMA, "dend": DEND, "ais": AIS, "axon": AXON}
MS_PER_CM2 = 10.0  # 1 mS/cm^2 in S/m^2
SPIKE_THRESHOLD_mV = -20.0

# Geometry of the spacer cylinders that join packed neurons (see module docstring).
SPACER_DIAM_um = 1e-4
SPACER_LENGTH_um = 100.0

_EQS = """
Im = g_leak * (E_leak - v) + g_Na * m**3 * h * (E_Na - v) + g_Kd * n**4 * (E_K - v) + g_M * p * (E_K - v) + g_h * w * (E_h - v) : amp/meter**2
I_inj = I_stim(t, stim_row) * at_soma : amp (point current)
vu = (v - V_T) / mV : 1
dm/dt = alpha_m * (1 - m) - beta_m * m : 1
dh/dt = alpha_h * (1 - h) - beta_h * h : 1
dn/dt = alpha_n * (1 - n) - beta_n * n : 1
alpha_m = 0.32 * (13 - vu) / (exp((13 - vu) / 4) - 1) / ms : Hz
beta_m = 0.28 * (vu - 40) / (exp((vu - 40) / 5) - 1) / ms : Hz
alpha_h = 0.128 * exp((17 - vu) / 18) / ms : Hz
beta_h = 4 / (1 + exp((40 - vu) / 5)) / ms : Hz
alpha_n = 0.032 * (15 - vu) / (exp((15 - vu) / 5) - 1) / ms : Hz
beta_n = 0.5 * exp((10 - vu) / 40) / ms : Hz
dp/dt = (p_inf - p) / tau_p : 1
p_inf = 1 / (1 + exp(-(v / mV + 35) / 10)) : 1
tau_p = tau_max / (3.3 * exp((v / mV + 35) / 20) + exp(-(v / mV + 35) / 20)) : second
dw/dt = alpha_w * (1 - w) - beta_w * w : 1
alpha_w = 0.00643 * (v / mV + 154.9) / (exp((v / mV + 154.9) / 11.9) - 1) / ms : Hz
beta_w = 0.193 * exp(v / mV / 33.1) / ms : Hz
g_leak : siemens/meter**2 (constant)
g_Na : siemens/meter**2 (constant)
g_Kd : siemens/meter**2 (constant)
g_M : siemens/meter**2 (constant)
g_h : siemens/meter**2 (constant)
E_leak : volt (constant)
E_Na : volt (constant)
E_K : volt (constant)
E_h : volt (constant)
V_T : volt (constant)
tau_max : second (constant)
at_soma : 1 (constant)
stim_row : integer (constant)
"""

# Channel densities that vary by region: parameter name per (channel, region); None = absent there.
DENSITY_PARAMS: dict[str, dict[int, str | None]] = {
    "g_Na": {SOMA: "g_Na_soma", DEND: "g_Na_dend", AIS: "g_Na_ais", AXON: "g_Na_axon"},
    "g_Kd": {SOMA: "g_Kd_soma", DEND: "g_Kd_dend", AIS: "g_Kd_ais", AXON: "g_Kd_axon"},
    "g_M": {SOMA: "g_M_soma", DEND: "g_M_dend", AIS: None, AXON: None},
    "g_h": {SOMA: "g_h_soma", DEND: "g_h_dend", AIS: None, AXON: None},
}
UNIFORM_PARAMS = ("g_leak", "E_leak", "E_Na", "E_K", "E_h", "V_T", "tau_max", "cm")


class MorphologySpec(BaseModel):
    """The structure of a family's morphology (fixed per family; geometry values are per-neuron parameters)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    n_dend: int = Field(5, ge=1, le=20, description="primary dendrites on the soma")
    branches: int = Field(2, ge=0, le=4, description="daughter branches per primary dendrite (0 = none)")
    nseg_dend: int = Field(4, ge=1, le=200, description="compartments per primary dendrite")
    nseg_branch: int = Field(8, ge=1, le=200, description="compartments per daughter branch")
    nseg_ais: int = Field(5, ge=1, le=100, description="compartments of the axon initial segment")
    nseg_axon: int = Field(15, ge=1, le=500, description="compartments of the axon beyond the AIS")
    swc_path: str | None = Field(None, description="SWC file; replaces the parameterised geometry")

    def n_compartments(self) -> int | None:
        if self.swc_path is not None:
            return None
        return 1 + self.n_dend * (self.nseg_dend + self.branches * self.nseg_branch) + self.nseg_ais + self.nseg_axon


# ---- compartment tables (shared with the NEURON mirror) ---------------------------------------------------
@dataclass
class SectionInfo:
    """One Brian2 section of a single cell, in flattening (depth-first) order."""

    kind: str  # "soma" | "section"
    start: int  # first compartment index (cell-local)
    n: int
    parent: int  # index of the parent section in the cell's list, -1 for the root
    length_um: np.ndarray  # (n,) compartment lengths
    start_diam_um: np.ndarray  # (n,)
    end_diam_um: np.ndarray  # (n,)
    type: str | None = None


@dataclass
class CellTable:
    """Per-compartment geometry and region labels of one cell (cell-local indices, depth-first order)."""

    sections: list[SectionInfo]
    region: np.ndarray  # (N,) int
    area_um2: np.ndarray  # (N,)
    r_length_1_um: np.ndarray  # (N,) Brian2's geometric axial terms (conductance = r_length / Ri)
    r_length_2_um: np.ndarray
    soma_index: int = 0

    @property
    def n(self) -> int:
        return int(self.region.shape[0])


def _walk(morph: b2.Morphology) -> list[tuple[b2.Morphology, int]]:
    """Sections in Brian2's flattening order (FlatMorphology._insert_data), with parent positions."""
    out: list[tuple[b2.Morphology, int]] = []

    def rec(sec: b2.Morphology, parent: int) -> None:
        me = len(out)
        out.append((sec, parent))
        for child in sec.children:
            rec(child, me)

    rec(morph, -1)
    return out


def cell_table(morph: b2.Morphology, ais_length_um: float) -> CellTable:
    """Region per compartment (soma / dendrite / AIS / axon) and the geometry both simulators use.

    Axon compartments whose midpoint lies within `ais_length_um` of the soma (path distance) form the AIS.
    """
    sections: list[SectionInfo] = []
    regions, areas, rl1, rl2 = [], [], [], []
    start = 0
    end_dist: list[float] = []
    for sec, parent in _walk(morph):
        n = int(sec.n)
        is_soma = isinstance(sec, b2.Soma)
        length = np.atleast_1d(np.asarray(sec.length / b2.um, dtype=float))
        if is_soma:
            d = float(np.asarray(sec.diameter / b2.um)[0])
            sd = ed = np.array([d])
        else:
            sd = np.asarray(sec.start_diameter / b2.um, dtype=float)
            ed = np.asarray(sec.end_diameter / b2.um, dtype=float)
        stype = getattr(sec, "type", None)
        sections.append(SectionInfo(kind="soma" if is_soma else "section", start=start, n=n, parent=parent,
                                    length_um=length, start_diam_um=sd, end_diam_um=ed, type=stype))
        d0 = end_dist[parent] if parent >= 0 else 0.0
        if is_soma:
            mids = np.array([d0])
            end_dist.append(d0)
        else:
            cum = d0 + np.cumsum(length)
            mids = cum - length / 2
            end_dist.append(float(cum[-1]))
        if is_soma or stype == "soma":
            reg = np.full(n, SOMA)
        elif stype == "axon":
            reg = np.where(mids < float(ais_length_um), AIS, AXON)
        elif stype == "spacer":
            reg = np.full(n, SPACER)
        else:  # dend, apic, basal, undefined, custom: dendritic
            reg = np.full(n, DEND)
        regions.append(reg)
        areas.append(np.asarray(sec.area / b2.um**2, dtype=float).reshape(-1))
        rl1.append(np.asarray(sec.r_length_1 / b2.um, dtype=float).reshape(-1))
        rl2.append(np.asarray(sec.r_length_2 / b2.um, dtype=float).reshape(-1))
        start += n
    region = np.concatenate(regions)
    soma = np.flatnonzero(region == SOMA)
    root = sections[0]
    # Inject/record at the soma: the root compartment for a Soma root, else the middle somatic compartment.
    soma_index = 0 if root.kind == "soma" or len(soma) == 0 else int(soma[len(soma) // 2])
    return CellTable(sections=sections, region=region, area_um2=np.concatenate(areas),
                     r_length_1_um=np.concatenate(rl1), r_length_2_um=np.concatenate(rl2), soma_index=soma_index)


def _without_coordinates(sec: b2.Morphology) -> b2.Morphology:
    """The same tree (diameters, lengths, types, child names) without 3-D coordinates, so that every
    morphology gives the same SpatialNeuron equations (and compiled code) as the parameterised default."""
    if isinstance(sec, b2.Soma):
        new: b2.Morphology = b2.Soma(diameter=sec.diameter[0], type=sec.type)
    else:
        diam = np.concatenate([np.asarray(sec.start_diameter[:1] / b2.um), np.asarray(sec.end_diameter / b2.um)])
        new = b2.Section(n=int(sec.n), diameter=diam * b2.um, length=np.asarray(sec.length / b2.um) * b2.um,
                         type=sec.type)
    for child in sec.children:
        new.children.add(sec.children.name(child), _without_coordinates(child))
    return new


@functools.lru_cache(maxsize=8)
def _swc(path: str) -> b2.Morphology:
    """An SWC file as a coordinate-free Brian2 morphology (one compartment per SWC point, as Brian2 reads it)."""
    return _without_coordinates(b2.Morphology.from_file(path))


def cell_morphology(spec: MorphologySpec, values: Mapping[str, float]) -> b2.Morphology:
    """A fresh Brian2 morphology of one neuron (the default geometry from `values`, or the SWC file)."""
    if spec.swc_path is not None:
        return copy.deepcopy(_swc(str(Path(spec.swc_path).resolve())))
    um = b2.um
    soma = b2.Soma(diameter=values["soma_diam_um"] * um)
    for k in range(spec.n_dend):
        dend = b2.Cylinder(diameter=values["dend_diam_um"] * um, length=values["dend_length_um"] * um,
                           n=spec.nseg_dend, type="dend")
        # Rall's 3/2 rule: sum of d_child^1.5 equals d_parent^1.5.
        d_child = values["dend_diam_um"] * max(spec.branches, 1) ** (-2.0 / 3.0)
        for j in range(spec.branches):
            dend.children.add(f"b{j}", b2.Cylinder(diameter=d_child * um, length=values["branch_length_um"] * um,
                                                   n=spec.nseg_branch, type="dend"))
        soma.children.add(f"dend{k}", dend)
    ais = b2.Cylinder(diameter=values["ais_diam_um"] * um, length=values["ais_length_um"] * um, n=spec.nseg_ais,
                      type="axon")
    ais.children.add("axon", b2.Cylinder(diameter=values["axon_diam_um"] * um,
                                         length=values["axon_length_um"] * um, n=spec.nseg_axon, type="axon"))
    soma.children.add("ais", ais)
    return soma


# ---- per-compartment values and the resting state -------------------------------------------------------
def compartment_values(table: CellTable, values: Mapping[str, float]) -> dict[str, np.ndarray]:
    """Per-compartment parameters in the families' units (mS/cm^2, mV, ms, uF/cm^2)."""
    n = table.n
    out: dict[str, np.ndarray] = {}
    for ch, by_region in DENSITY_PARAMS.items():
        g = np.zeros(n)
        for reg, pname in by_region.items():
            if pname is not None:
                g[table.region == reg] = values[pname]
        out[ch] = g
    for name in UNIFORM_PARAMS:
        out[name] = np.full(n, float(values[name]))
    return out


def steady_gates(v_mV: np.ndarray, V_T_mV: np.ndarray) -> dict[str, np.ndarray]:
    """Steady-state gating variables (m, h, n, p of `hh`; w of I_h) at membrane potentials v_mV."""
    g = _gates_at_rest(np.asarray(v_mV, float), np.asarray(V_T_mV, float), np.zeros_like(v_mV, dtype=float))
    x = np.asarray(v_mV, float) + 154.9
    with np.errstate(divide="ignore", invalid="ignore"):
        aw = np.where(np.abs(x) < 1e-6, 0.00643 * 11.9, 0.00643 * x / np.expm1(x / 11.9))
    bw = 0.193 * np.exp(np.asarray(v_mV, float) / 33.1)
    return {"m": g["m"], "h": g["h"], "n": g["n"], "p": g["p"], "w": aw / (aw + bw)}


def _ionic_ss(v: np.ndarray, cv: Mapping[str, np.ndarray]) -> np.ndarray:
    """Steady-state ionic current density (mS/cm^2 * mV, outward positive) at v (mV)."""
    gt = steady_gates(v, cv["V_T"])
    return (cv["g_leak"] * (v - cv["E_leak"]) + cv["g_Na"] * gt["m"] ** 3 * gt["h"] * (v - cv["E_Na"])
            + cv["g_Kd"] * gt["n"] ** 4 * (v - cv["E_K"]) + cv["g_M"] * gt["p"] * (v - cv["E_K"])
            + cv["g_h"] * gt["w"] * (v - cv["E_h"]))


def resting_potential(table: CellTable, cv: Mapping[str, np.ndarray], Ri_ohm_cm: float, max_iter: int = 50
                      ) -> tuple[np.ndarray, bool]:
    """Steady state of the discretised cable (Brian2's: compartments plus one node per section end), by
    Newton from E_leak. Returns v (mV) per compartment and whether it converged (else v = E_leak)."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.linalg import spsolve

    N, S = table.n, len(table.sections)
    Ri = Ri_ohm_cm * 1e-2  # ohm m
    rl1, rl2 = table.r_length_1_um * 1e-6, table.r_length_2_um * 1e-6
    rows, cols, vals = [], [], []

    def link(a: int, b: int, g: float) -> None:  # conductance g (S) between nodes a and b
        rows.extend([a, b, a, b])
        cols.extend([a, b, b, a])
        vals.extend([-g, -g, g, g])

    for s_idx, sec in enumerate(table.sections):
        for i in range(sec.start + 1, sec.start + sec.n):
            link(i, i - 1, 1.0 / (Ri * (1.0 / rl2[i - 1] + 1.0 / rl1[i])))
        end_node = N + s_idx
        link(sec.start + sec.n - 1, end_node, rl2[sec.start + sec.n - 1] / Ri)
        if sec.parent >= 0:
            link(sec.start, N + sec.parent, rl1[sec.start] / Ri)
    M = N + S
    G = coo_matrix((vals, (rows, cols)), shape=(M, M)).tocsr()  # axial: currents into each node = G @ v
    area_cm2 = table.area_um2 * 1e-8
    # Membrane current in amp: mS/cm^2 * mV * cm^2 = 1e-6 A.
    v = np.concatenate([cv["E_leak"].astype(float), np.zeros(S)])
    for sec_i, sec in enumerate(table.sections):
        v[N + sec_i] = cv["E_leak"][sec.start + sec.n - 1]
    Gs = G * 1e3  # currents in units of 1e-6 A: G [S] * v [mV] = 1e-3 A = 1e3 * 1e-6 A
    for _ in range(max_iter):
        vm = v[:N]
        Iion = _ionic_ss(vm, cv) * area_cm2
        F = Gs @ v
        F[:N] -= Iion
        eps = 1e-4
        dI = (_ionic_ss(vm + eps, cv) - _ionic_ss(vm - eps, cv)) / (2 * eps) * area_cm2
        J = Gs.tolil()
        J.setdiag(J.diagonal() - np.concatenate([dI, np.zeros(S)]))
        step = spsolve(J.tocsc(), -F)
        step = np.clip(step, -10.0, 10.0)
        v = v + step
        if np.max(np.abs(step)) < 1e-5:  # mV; the stiff soma node keeps round-off near 1e-6
            if np.all(np.isfinite(v)) and np.all((v[:N] > -150) & (v[:N] < 50)):
                return v[:N], True
            break
    return cv["E_leak"].astype(float).copy(), False


# ---- the family -------------------------------------------------------------------------------------------
def _ps(name: str, unit: str, default: float, low: float, high: float, variability: str, description: str) -> ParamSpec:
    return ParamSpec(name=name, unit=unit, default=default, low=low, high=high, variability=variability,
                     description=description)


_G = "mS/cm2"


@dataclass
class MCBuiltGroup(BuiltGroup):
    """A packed SpatialNeuron of n neurons: where each neuron's soma is, and which stimulus row drives it."""

    soma_index: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))
    stim_rows: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))
    n_compartments: int = 0
    converged: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=bool))


class HHMC(ModelFamily):
    """Pospischil 2008 channels + I_h on a soma / dendrites / AIS / axon morphology (Brian2 SpatialNeuron)."""

    name: ClassVar[str] = "hh_mc"
    description: ClassVar[str] = (
        "Multi-compartment conductance-based neuron: Pospischil 2008 Na/Kd/M channels plus dendritic I_h "
        "(Kole 2006) on a soma, dendrites, axon initial segment and axon (or an SWC morphology)."
    )
    method: ClassVar[str] = "exponential_euler"
    multi_compartment: ClassVar[bool] = True
    morphology_spec: ClassVar[MorphologySpec] = MorphologySpec()
    default_preset: ClassVar[str] = "fast_spiking"
    params: ClassVar[tuple[ParamSpec, ...]] = (
        _ps("g_leak", _G, 0.08, 0.005, 1.0, "lognormal", "leak conductance density (all compartments)"),
        _ps("E_leak", "mV", -70.0, -100.0, -40.0, "normal", "leak reversal potential"),
        _ps("V_T", "mV", -57.9, -75.0, -40.0, "normal", "threshold shift of the Traub-Miles Na/Kd kinetics"),
        _ps("tau_max", "ms", 502.0, 20.0, 5000.0, "lognormal", "maximal time constant of I_M"),
        _ps("g_Na_soma", _G, 58.0, 1.0, 300.0, "lognormal", "somatic Na+ density"),
        _ps("g_Kd_soma", _G, 30.0, 0.1, 100.0, "lognormal", "somatic delayed-rectifier K+ density"),
        _ps("g_M_soma", _G, 0.0787, 0.0, 2.0, "lognormal", "somatic M-type K+ density"),
        _ps("g_h_soma", _G, 0.0, 0.0, 1.0, "lognormal", "somatic I_h density"),
        _ps("g_Na_dend", _G, 5.0, 0.0, 100.0, "lognormal", "dendritic Na+ density"),
        _ps("g_Kd_dend", _G, 3.0, 0.0, 100.0, "lognormal", "dendritic delayed-rectifier K+ density"),
        _ps("g_M_dend", _G, 0.02, 0.0, 2.0, "lognormal", "dendritic M-type K+ density"),
        _ps("g_h_dend", _G, 0.02, 0.0, 1.0, "lognormal", "dendritic I_h density"),
        _ps("g_Na_ais", _G, 400.0, 1.0, 2000.0, "lognormal", "axon-initial-segment Na+ density"),
        _ps("g_Kd_ais", _G, 100.0, 0.1, 500.0, "lognormal", "axon-initial-segment K+ density"),
        _ps("g_Na_axon", _G, 50.0, 0.0, 1000.0, "lognormal", "axonal Na+ density"),
        _ps("g_Kd_axon", _G, 40.0, 0.0, 500.0, "lognormal", "axonal K+ density"),
        _ps("E_Na", "mV", 50.0, 30.0, 70.0, "fixed", "Na+ reversal"),
        _ps("E_K", "mV", -90.0, -110.0, -70.0, "fixed", "K+ reversal"),
        _ps("E_h", "mV", -45.0, -60.0, -20.0, "fixed", "I_h reversal"),
        _ps("cm", "uF/cm2", 1.0, 0.5, 2.0, "fixed", "specific membrane capacitance"),
        _ps("Ri", "ohm*cm", 150.0, 50.0, 400.0, "fixed", "intracellular (axial) resistivity"),
        _ps("soma_diam_um", "um", 20.0, 5.0, 60.0, "lognormal", "soma (sphere) diameter"),
        _ps("dend_diam_um", "um", 1.5, 0.3, 6.0, "lognormal", "primary dendrite diameter"),
        _ps("dend_length_um", "um", 80.0, 10.0, 500.0, "lognormal", "primary dendrite length"),
        _ps("branch_length_um", "um", 150.0, 10.0, 800.0, "lognormal", "daughter branch length"),
        _ps("ais_diam_um", "um", 1.2, 0.3, 4.0, "lognormal", "axon initial segment diameter"),
        _ps("ais_length_um", "um", 30.0, 5.0, 100.0, "lognormal", "axon initial segment length"),
        _ps("axon_diam_um", "um", 0.8, 0.2, 4.0, "lognormal", "axon diameter beyond the AIS"),
        _ps("axon_length_um", "um", 300.0, 20.0, 2000.0, "lognormal", "axon length beyond the AIS"),
    )
    presets: ClassVar[dict[str, dict[str, float]]] = {
        "fast_spiking": {},
        "regular_spiking": {"g_leak": 0.03, "E_leak": -70.3, "V_T": -56.2, "tau_max": 608.0, "g_Na_soma": 56.0,
                            "g_Kd_soma": 20.0, "g_M_soma": 0.3, "g_h_soma": 0.02, "g_Na_dend": 10.0, "g_Kd_dend": 3.0,
                            "g_M_dend": 0.2, "g_h_dend": 0.1, "soma_diam_um": 25.0, "dend_diam_um": 2.0,
                            "dend_length_um": 120.0, "branch_length_um": 200.0},
    }

    @classmethod
    def equations(cls) -> str:
        return _EQS

    @classmethod
    def with_morphology(cls, spec: MorphologySpec | None = None, name: str | None = None, **changes: Any
                        ) -> type["HHMC"]:
        """A family with another morphology structure (fewer compartments, an SWC file, ...)."""
        spec = (spec or cls.morphology_spec).model_copy(update=changes)
        return type(f"{cls.__name__}_custom", (cls,), {"morphology_spec": spec, "name": name or cls.name})

    @classmethod
    def n_compartments(cls) -> int:
        """Compartments of one neuron of this family."""
        n = cls.morphology_spec.n_compartments()
        if n is None:
            n = int(_swc(str(Path(cls.morphology_spec.swc_path).resolve())).total_compartments)
        return n

    @classmethod
    def cell(cls, values: Mapping[str, float]) -> tuple[b2.Morphology, CellTable, dict[str, np.ndarray]]:
        """One neuron's morphology, compartment table and per-compartment values (family units)."""
        morph = cell_morphology(cls.morphology_spec, values)
        table = cell_table(morph, values["ais_length_um"])
        return morph, table, compartment_values(table, values)

    @classmethod
    def row_values(cls, row: np.ndarray) -> dict[str, float]:
        return {name: float(x) for name, x in zip(cls.param_names(), row)}

    @classmethod
    def pack(cls, params: np.ndarray, stim_rows: np.ndarray | None = None) -> "PackedCells":
        """Join n neurons into one morphology tree and lay out their per-compartment values (family units).

        Cell k>0 hangs, through a spacer cylinder, under cell (k-1)//2's soma (a balanced tree: no section
        gets many children and the recursion depth stays ~log2 n). Every cell starts at its resting state."""
        params = np.atleast_2d(np.asarray(params, dtype=np.float64))
        cls.check_params(params)
        n = params.shape[0]
        names = cls.param_names()
        Ri = params[:, names.index("Ri")]
        if np.any(Ri != Ri[0]):
            raise ValueError("all neurons of one packed SpatialNeuron must share Ri")
        rows = np.arange(n) if stim_rows is None else np.asarray(stim_rows, dtype=np.int64)
        cells = [cls.cell(cls.row_values(params[k])) for k in range(n)]
        for k in range(1, n):
            spacer = b2.Cylinder(diameter=SPACER_DIAM_um * b2.um, length=SPACER_LENGTH_um * b2.um, n=1,
                                 type="spacer")
            spacer.children.add("cell", cells[k][0])
            cells[(k - 1) // 2][0].children.add(f"join{k}", spacer)
        root = cells[0][0]
        # Owner cell (k, or -1-k for cell k's spacer) and cell-local index of every packed compartment.
        owner = {id(c[0]): k for k, c in enumerate(cells)}
        cell_of: list[int] = []
        local_of: list[int] = []
        cursor = [0] * n

        def rec(sec: b2.Morphology, k: int) -> None:
            k = owner.get(id(sec), k)
            spacer = getattr(sec, "type", None) == "spacer"
            for _ in range(int(sec.n)):
                cell_of.append(-1 - k if spacer else k)
                local_of.append(-1 if spacer else cursor[k])
                if not spacer:
                    cursor[k] += 1
            for child in sec.children:
                rec(child, k)

        rec(root, 0)
        cell_of_a, local_of_a = np.asarray(cell_of), np.asarray(local_of)
        N = int(root.total_compartments)
        keys = list(DENSITY_PARAMS) + list(UNIFORM_PARAMS)
        arr: dict[str, np.ndarray] = {key: np.zeros(N) for key in keys + ["v", "at_soma"]}
        arr["stim_row"] = np.zeros(N, dtype=np.int64)
        soma_index = np.zeros(n, dtype=np.int64)
        converged = np.zeros(n, dtype=bool)
        for k, (_m, table, cv) in enumerate(cells):
            v_rest, converged[k] = resting_potential(table, cv, float(Ri[0]))
            mask = cell_of_a == k
            loc = local_of_a[mask]
            for key in keys:
                arr[key][mask] = cv[key][loc]
            arr["v"][mask] = v_rest[loc]
            arr["stim_row"][mask] = rows[k]
            soma_index[k] = np.flatnonzero(mask)[table.soma_index]
            smask = cell_of_a == -1 - k  # this cell's spacer: passive, leak only, at the cell's rest
            for key in UNIFORM_PARAMS:
                arr[key][smask] = cv[key][0]
            arr["v"][smask] = v_rest[table.soma_index]
            arr["stim_row"][smask] = rows[k]
        arr["at_soma"][soma_index] = 1.0
        return PackedCells(root=root, arrays=arr, soma_index=soma_index, stim_rows=rows, converged=converged,
                           Ri_ohm_cm=float(Ri[0]))

    @classmethod
    def build(cls, n: int, params: np.ndarray, namespace: dict[str, Any], rng: np.random.Generator,
              stim_rows: np.ndarray | None = None, name: str = "hh_mc") -> MCBuiltGroup:
        """ONE SpatialNeuron holding n neurons (spacer-joined, see module docstring). Neuron k is driven by
        column `stim_rows[k]` (default k) of the 2-D TimedArray `I_stim` in `namespace`. All rows must share
        Ri (a shared variable of a SpatialNeuron); `simulate_mc` groups rows by Ri."""
        params = np.atleast_2d(np.asarray(params, dtype=np.float64))
        if params.shape[0] != n:
            raise ValueError(f"params has {params.shape[0]} rows for n={n}")
        packed = cls.pack(params, stim_rows)
        group = b2.SpatialNeuron(
            morphology=packed.root, model=cls.equations(), Cm=1 * b2.ufarad / b2.cm**2,
            Ri=packed.Ri_ohm_cm * b2.ohm * b2.cm, method=cls.method,
            threshold=f"v > {SPIKE_THRESHOLD_mV}*mV and at_soma > 0.5", refractory=f"v > {SPIKE_THRESHOLD_mV}*mV",
            namespace=namespace, name=name)
        for var, val in si_values(packed.arrays).items():
            setattr(group, var + "_", val)
        return MCBuiltGroup(group=group, soma_index=packed.soma_index, stim_rows=packed.stim_rows,
                            n_compartments=packed.n_compartments, converged=packed.converged)


@dataclass
class PackedCells:
    """n neurons joined into one morphology, with per-compartment values in family units."""

    root: b2.Morphology
    arrays: dict[str, np.ndarray]
    soma_index: np.ndarray
    stim_rows: np.ndarray
    converged: np.ndarray
    Ri_ohm_cm: float

    @property
    def n_compartments(self) -> int:
        return int(self.arrays["v"].shape[0])


def si_values(arr: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Per-compartment values in SI for a SpatialNeuron of `_EQS` (state at rest: gates at steady state)."""
    out: dict[str, np.ndarray] = {}
    for ch in list(DENSITY_PARAMS) + ["g_leak"]:
        out[ch] = arr[ch] * MS_PER_CM2
    for key in ("E_leak", "E_Na", "E_K", "E_h", "V_T"):
        out[key] = arr[key] * 1e-3
    out["tau_max"] = arr["tau_max"] * 1e-3
    out["Cm"] = arr["cm"] * 1e-2  # uF/cm^2 -> F/m^2
    out["at_soma"] = arr["at_soma"]
    out["stim_row"] = arr["stim_row"]
    out["v"] = arr["v"] * 1e-3
    out.update(steady_gates(arr["v"], arr["V_T"]))
    return out


family = HHMC

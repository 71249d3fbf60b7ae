"""The Brian2 `hh` family as the fit sees it: start at the true resting state, pin the rest by E_leak, and
a bounded, transformed space of the parameters a fit may move.

* `HHFit` is `hh` (same equations, so the same compiled code) built at its true steady state rather than
  at v = E_leak: with the M, Na window and Ca currents the rest is not E_leak, and a run that starts off
  rest spends its first tens of ms relaxing (spurious spikes / drifting baselines in the fit window).
* A constant holding (bias) current I_b is exactly a shift of the leak reversal, g_leak (E_leak - V) + I_b/A
  = g_leak (E_leak + I_b / (g_leak A) - V), so the fit carries one *effective* E_leak: `pin_rest` solves it
  in closed form so that the steady state sits at the recorded resting potential (the Allen / BluePyOpt
  'holding current' search, without the search). Where it leaves the family's E_leak range (depolarised,
  spontaneously active cells) the simulation runs the identical model with E_leak at the range edge plus a
  holding current (`split_holding`); `equivalent_bias_pA` reports any model as the preset E_leak plus a
  holding current.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar, Sequence

import brian2 as b2
import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from noble.datagen.models.base import BuiltGroup, assign_params
from noble.datagen.models.hh import HH, _columns, _gates_at_rest, _ionic_current
from noble.datagen.state_updaters import cached_method

NAMES: list[str] = HH.param_names()
IDX: dict[str, int] = {n: k for k, n in enumerate(NAMES)}


def _col(params: np.ndarray, name: str) -> np.ndarray:
    return np.asarray(params, dtype=np.float64)[..., IDX[name]]


def ionic_current_density(v_mV: np.ndarray, params: np.ndarray) -> np.ndarray:
    """Steady-state outward current of the active channels at v (uA/cm^2 = mS/cm^2 x mV), leak excluded: the
    family's own current sum (`hh._ionic_current`) with every gate at its steady state."""
    v = np.asarray(v_mV, dtype=np.float64)
    cols = _columns(np.atleast_2d(params))
    if v.ndim == 2:  # (n, G) voltages against per-neuron columns
        cols = {name: c[:, None] for name, c in cols.items()}
    gates = _gates_at_rest(v, cols["V_T"], cols["V_x"], cols["f_NaS"], cols["V_NaS"])
    return np.nan_to_num(_ionic_current(v, gates, cols))


def net_outward_density(v_mV: np.ndarray, params: np.ndarray) -> np.ndarray:
    """Net outward steady-state current density J(v) (uA/cm^2), leak included: v (n,) or (n, G) per row."""
    v = np.asarray(v_mV, dtype=np.float64)
    g, e = _col(params, "g_leak"), _col(params, "E_leak")
    if v.ndim == 2:
        g, e = g[:, None], e[:, None]
    return g * (v - e) + ionic_current_density(v, params)


def leak_reversal_at(v_mV: np.ndarray, params: np.ndarray) -> np.ndarray:
    """The E_leak that makes v a steady state of each row: g_leak (E_leak - v) = I_ion(v), so
    E_leak = v + I_ion(v) / g_leak (densities, so area-free); v (n,) or (n, G) per row."""
    v = np.asarray(v_mV, dtype=np.float64)
    g = _col(params, "g_leak")
    return v + ionic_current_density(v, params) / (g[:, None] if v.ndim == 2 else g)


def leak_current_pA(params: np.ndarray, dE_mV: np.ndarray) -> np.ndarray:
    """The current g_leak A dE (pA) a shift dE of E_leak stands for (dE (n,) or (n, G) per row)."""
    d = np.asarray(dE_mV, dtype=np.float64)
    g_area = _col(params, "g_leak") * math.pi * (_col(params, "diam_um") * 1e-4) ** 2  # mS
    return (g_area[:, None] if d.ndim == 2 else g_area) * d * 1e6  # mS x mV = uA -> pA


EFFECTIVE_E_LEAK_MV = (-120.0, -20.0)  # E_leak the fit may use; beyond the family's range it is a holding current


def pin_rest(params: np.ndarray, rest_mV: float | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(params with E_leak solved so the steady state is at rest_mV, mask of rows whose E_leak was reachable).

    g_leak (E_leak - V*) = I_ion(V*)  =>  E_leak = V* + I_ion(V*) / g_leak (densities, so area-free).
    The solved value is the *effective* leak reversal: where it leaves the family's range the simulation
    runs the equivalent model, E_leak at the range edge plus a holding current (`split_holding`). Values
    outside EFFECTIVE_E_LEAK_MV are clipped there (mask False: the rest will not match)."""
    p = np.array(np.atleast_2d(params), dtype=np.float64)
    v = np.broadcast_to(np.asarray(rest_mV, dtype=np.float64), (p.shape[0],))
    e = leak_reversal_at(v, p)
    lo, hi = EFFECTIVE_E_LEAK_MV
    ok = np.isfinite(e) & (e >= lo) & (e <= hi)
    p[:, IDX["E_leak"]] = np.clip(np.nan_to_num(e, nan=lo), lo, hi)
    return p, ok


def solve_area(params: np.ndarray, points: Sequence[Sequence[float]]) -> tuple[np.ndarray, np.ndarray]:
    """(params with diam_um solved from recorded subthreshold steady states, mask of rows it was solved for).

    A step of I_k pA from a steady state at u_k holds the membrane at v_k where I_k = A (J(v_k) - J(u_k)), J the
    net outward steady-state current density (leak included, E_leak as pinned and shifted; J(rest) = 0 once
    pinned, and a point (I_k, v_k) without u_k starts there): the densities set the I-V curve's shape, the area
    only scales it. Each point gives A_k = I_k / (J(v_k) - J(u_k)); the geometric mean over the usable ones
    (finite, positive) sets the area, clipped to the family's range (5..400 um: wider than the searched box, which
    keeps CMA-ES's steps in the sizes most cells have). Rows with no usable point keep their diam."""
    p = np.array(np.atleast_2d(params), dtype=np.float64)
    if not len(points):
        return p, np.zeros(p.shape[0], dtype=bool)
    amps = np.array([pt[0] for pt in points], dtype=np.float64)
    v = np.broadcast_to(np.array([pt[1] for pt in points], dtype=np.float64), (p.shape[0], len(points)))
    j = net_outward_density(v, p)  # uA/cm2
    if any(len(pt) > 2 for pt in points):
        u = np.broadcast_to(np.array([pt[2] if len(pt) > 2 else np.nan for pt in points]), v.shape)
        j = j - np.where(np.isfinite(u), net_outward_density(np.where(np.isfinite(u), u, v), p), 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        area_cm2 = amps[None, :] * 1e-6 / j  # pA -> uA
    ok = np.isfinite(area_cm2) & (area_cm2 > 0)
    n_ok = ok.sum(axis=1)
    solved = n_ok > 0
    log_area = np.log(np.where(ok, area_cm2, 1.0)).sum(axis=1) / np.maximum(n_ok, 1)  # unusable points add log 1
    diam = np.sqrt(np.exp(log_area) / math.pi) * 1e4  # A = pi d^2 (the family's sphere), cm -> um
    spec = HH.param_spec("diam_um")
    p[solved, IDX["diam_um"]] = np.clip(diam[solved], spec.low, spec.high)
    return p, solved


def split_holding(params: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(params with E_leak inside the family's range, holding current pA per row) describing the same model:
    the part of an effective E_leak beyond the range becomes g_leak A (E_eff - E_edge)."""
    p = np.array(np.atleast_2d(params), dtype=np.float64)
    spec = HH.param_spec("E_leak")
    e = p[:, IDX["E_leak"]]
    edge = np.clip(e, spec.low, spec.high)
    holding = leak_current_pA(p, e - edge)
    p[:, IDX["E_leak"]] = edge
    return p, holding


def resting_potential(params: np.ndarray, lo_mV: float = -110.0, hi_mV: float = -20.0,
                      step_mV: float = 0.05, hint_mV: np.ndarray | float | None = None
                      ) -> tuple[np.ndarray, np.ndarray]:
    """(V_rest, stable) per row: a steady state of the full model (gates at steady state). Among stable
    roots of the net current the one nearest `hint_mV` (the lowest without a hint); the lowest root of any
    kind when none is stable (a spontaneous oscillator: stable=False)."""
    p = np.atleast_2d(params)
    grid = np.arange(lo_mV, hi_mV + 1e-9, step_mV)
    V = np.broadcast_to(grid, (p.shape[0], len(grid)))
    net_in = -net_outward_density(V, p)
    s = np.sign(net_in)
    down = (s[:, :-1] > 0) & (s[:, 1:] <= 0)  # net inward -> outward: stable fixed point
    up = (s[:, :-1] < 0) & (s[:, 1:] >= 0)
    hints = None if hint_mV is None else np.broadcast_to(np.asarray(hint_mV, dtype=np.float64), (p.shape[0],))
    out = np.empty(p.shape[0])
    stable = np.zeros(p.shape[0], dtype=bool)
    for k in range(p.shape[0]):
        idx = np.flatnonzero(down[k])
        if len(idx):
            stable[k] = True
        else:
            idx = np.flatnonzero(up[k] | down[k])
        if len(idx):
            roots = grid[idx] + step_mV * np.array(
                [net_in[k, j] / (net_in[k, j] - net_in[k, j + 1]) if net_in[k, j] != net_in[k, j + 1] else 0.0
                 for j in idx])
            out[k] = roots[int(np.argmin(np.abs(roots - hints[k])))] if hints is not None and stable[k] else roots[0]
        else:  # no root on the grid: the end the current pushes towards
            out[k] = grid[0] if net_in[k, 0] < 0 else grid[-1]
    return out, stable


def equivalent_bias_pA(params: np.ndarray, reference_E_leak_mV: float) -> np.ndarray:
    """Holding current (pA) that, with E_leak at the reference, gives the same model: g_leak A (E - E_ref)."""
    p = np.atleast_2d(params)
    return leak_current_pA(p, _col(p, "E_leak") - reference_E_leak_mV)


class HHFit(HH):
    """`hh` started at its own steady state (see module docstring); same equations and parameters.
    `HHFit.starting_near(v)` is the same family starting, per neuron, at the stable state nearest v."""

    name: ClassVar[str] = "hh"
    # The fit sets its own start (build below: the pinned steady state, or a phase-aligned state) and its own
    # run-in (FitProblem.settle_ms), so `simulate` neither moves the start nor settles (hh's settle_ms).
    settle_ms: ClassVar[float] = 0.0
    v_hint_mV: ClassVar[np.ndarray | None] = None
    E_leak_effective_mV: ClassVar[np.ndarray | None] = None
    initial_state: ClassVar[dict[str, np.ndarray] | None] = None

    @classmethod
    def starting_near(cls, v_mV: np.ndarray | None, E_leak_effective_mV: np.ndarray | None = None) -> type["HHFit"]:
        """This family starting at the stable state nearest v_mV, for neurons whose leak reversal (holding
        current included) is E_leak_effective_mV (None: their own E_leak)."""
        return type("HHFitNear", (cls,), {
            "v_hint_mV": None if v_mV is None else np.asarray(v_mV, dtype=np.float64),
            "E_leak_effective_mV": None if E_leak_effective_mV is None else np.asarray(E_leak_effective_mV, float)})

    @classmethod
    def starting_from(cls, state: dict[str, np.ndarray]) -> type["HHFit"]:
        """This family with every neuron whose row of `state` is finite starting from that state (v in mV and
        every gate, as `simulate(..., record_state=True)` records them); the others as before."""
        return type("HHFitFrom", (cls,), {"initial_state": {k: np.asarray(v, dtype=np.float64)
                                                            for k, v in state.items()}})

    @classmethod
    def currents_on(cls, params: np.ndarray) -> dict[str, bool]:
        """Which optional currents a group of these neurons integrates (`equations`' switches).
        A current whose conductance is 0 in every neuron of the group is dropped (its gates not integrated), as
        `HH.build` does: exact (the current is 0 either way) and ~30 % faster for a fit whose search leaves
        I_T, I_L (and I_h, unless the recording sags) at 0 (204 neurons x 800 ms at dt 0.05: 3.2 -> 2.3 s)."""
        return {k: bool(np.any(_col(params, g) > 0)) for k, g in (("with_T", "g_T"), ("with_L", "g_L"),
                                                                    ("with_D", "g_D"), ("with_h", "g_h"),
                                                                    ("with_Kir", "g_Kir"), ("with_NaP", "g_NaP"),
                                                                    ("with_AHP", "g_AHP"), ("with_NaS", "f_NaS"))}

    @classmethod
    def start_state(cls, params: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Each neuron's starting v (mV) and gates: the stable steady state (nearest `v_hint_mV`), or the row of
        `initial_state` where that is finite."""
        eff = np.array(params, dtype=np.float64)
        if cls.E_leak_effective_mV is not None:
            eff[:, IDX["E_leak"]] = cls.E_leak_effective_mV
        v0, _stable = resting_potential(eff, hint_mV=cls.v_hint_mV)
        gates = _gates_at_rest(v0, _col(params, "V_T"), _col(params, "V_x"), _col(params, "f_NaS"),
                               _col(params, "V_NaS"))
        init = cls.initial_state
        if init is not None:
            rows = np.isfinite(init["v"])
            v0 = np.where(rows, init["v"], v0)
            gates = {key: np.where(rows, init[key], val) if key in init else val for key, val in gates.items()}
        return v0, gates

    @classmethod
    def build(cls, n: int, params: np.ndarray, namespace: dict[str, Any], rng: np.random.Generator) -> BuiltGroup:
        cls.check_params(params)
        group = b2.NeuronGroup(n, cls.equations(**cls.currents_on(params)), method=cached_method(cls.method),
                               threshold="v > -20*mV", refractory="v > -20*mV", namespace=namespace, name="neurons")
        assign_params(group, cls, params)
        v0, gates = cls.start_state(params)
        group.v = v0 * b2.mV
        for key, val in gates.items():
            if key in group.variables:  # (the gates of a dropped current are not)
                setattr(group, key, val)
        return BuiltGroup(group=group)


# ---- the search space ---------------------------------------------------------------------------------
DEFAULT_FREE: tuple[str, ...] = ("diam_um", "g_leak", "V_T", "g_Na", "g_Kd", "g_M", "tau_max", "g_D", "tau_D")
# Fit bounds (narrower than the family's ranges where those admit non-neurons); log-scaled when positive
# and spanning decades. Candidates that still diverge at the search dt (very large g_Na: exponential Euler at
# 0.05 ms oscillates at the spike peak) come back NaN and are scored as failed.
FIT_BOUNDS: dict[str, tuple[float, float, bool]] = {
    "diam_um": (10.0, 200.0, True),
    "g_leak": (0.003, 0.5, True),
    "E_leak": (-100.0, -40.0, False),
    "V_T": (-72.0, -42.0, False),
    "g_Na": (5.0, 150.0, True),
    "g_Kd": (0.3, 50.0, True),
    "g_M": (0.001, 1.0, True),
    "tau_max": (30.0, 5000.0, True),
    "g_T": (0.01, 2.0, True),
    "g_L": (0.01, 1.0, True),
    "g_D": (0.0, 2.5, False),  # linear: the lower edge is exactly "no I_D"
    "tau_D": (30.0, 1500.0, True),
    "g_h": (0.0, 0.5, False),  # linear: the lower edge is exactly "no I_h"; 0.5 gives an RS cell a sag ratio ~0.3
    # linear: the lower edge is exactly "no I_Kir"; at 1 mS/cm2 (V_Kir -100 mV) I_Kir's slope conductance at
    # -95 mV is ~13x the leak of a fast-spiking cell (0.038), more than the striatal FSI recording asks for
    "g_Kir": (0.0, 1.0, False),
    "V_Kir": (-115.0, -80.0, False),
    # linear: the lower edge is exactly "no I_NaP"; at 0.3 mS/cm2 I_NaP at -50 mV (m_inf 0.58) is ~0.17 x 100 mV
    # = 17 uA/cm2 inward, ~10x a fast-spiking cell's leak current there: more than any recording here asks for
    "g_NaP": (0.0, 0.3, False),
    "V_NaP": (-62.0, -42.0, False),
    # log: Q10 3 puts 0.15 ~17 C below the model's 36 C; APs are ~0.75 ms / phi_NaK wide (fast-spiking preset)
    "phi_NaK": (0.15, 1.2, True),
    # linear: the lower edge is exactly "no I_AHP"; at 1 mS/cm2 three APs (z ~0.3) hold a cell ~20 mV down
    "g_AHP": (0.0, 1.0, False),
    "tau_AHP": (100.0, 5000.0, True),
    # linear: the lower edge is exactly "no slow inactivation"; 0.9 leaves a tenth of the channels in a long train.
    # phi_NaS log: 0.3..30 puts the recovery at -70 mV between ~5 s and ~50 ms (1.6 s at 1)
    "f_NaS": (0.0, 0.9, False),
    "phi_NaS": (0.3, 30.0, True),
    "V_NaS": (-10.0, 35.0, False),
    "E_h": (-55.0, -25.0, False),
    "V_x": (-10.0, 10.0, False),
    "E_Na": (30.0, 70.0, False),
    "E_K": (-110.0, -70.0, False),
}


# Where a recording's APs start above ~-30 mV (`api.depolarised_spikes`): the family's spike onset sits ~15-20 mV
# above V_T, so the default box's -42 mV reaches onsets near -25 at best, and an AP of ~50 mV from there asks for
# less Na+ conductance than its floor of 5. 17o05028 (onsets ~-22 mV, peaks +30) ended at both edges in every fit.
DEPOLARISED_SPIKE_BOUNDS: dict[str, tuple[float, float, bool]] = {"V_T": (-72.0, -28.0, False),
                                                                   "g_Na": (1.0, 150.0, True)}


class ParamSpace(BaseModel):
    """Free parameters of a fit, mapped to the unit cube (log-uniform where `log`) and back."""

    model_config = ConfigDict(frozen=True)
    free: tuple[str, ...] = DEFAULT_FREE
    base: dict[str, float] = Field(..., description="values of every hh parameter (fixed ones stay here)")
    bounds: dict[str, tuple[float, float, bool]] = Field(default_factory=lambda: dict(FIT_BOUNDS))
    area_points: tuple[tuple[float, ...], ...] = Field(
        (), description="recorded subthreshold steady states (step pA, voltage mV): when given, diam_um is not a "
                        "coordinate but solved per candidate so the model's I-V meets them (`solve_area`)")
    leak_shift_mV: tuple[float, float] | None = Field(
        None, description="when set, one more coordinate: E_leak shifted from the value that pins the steady "
                          "state at the recorded median voltage, i.e. a depolarising bias g_leak A shift, monotone "
                          "in excitability (spontaneously active cells: their median voltage is not a fixed point)")

    @model_validator(mode="after")
    def _check(self) -> "ParamSpace":
        for name in self.free:
            if name not in IDX:
                raise ValueError(f"unknown hh parameter {name!r}; allowed: {NAMES}")
            if name not in self.bounds:
                raise ValueError(f"no fit bounds for {name!r}")
            lo, hi, log = self.bounds[name]
            if not hi > lo or (log and lo <= 0):
                raise ValueError(f"bad bounds for {name!r}: {lo}..{hi} (log={log})")
        if self.area_points and "diam_um" in self.free:
            raise ValueError("diam_um is solved from area_points: it cannot also be free")
        if len(set(self.free)) != len(self.free):
            raise ValueError("duplicate free parameters")
        missing = set(NAMES) - set(self.base)
        if missing:
            raise ValueError(f"base values missing for {sorted(missing)}")
        return self

    @property
    def dim(self) -> int:
        return len(self.free) + (1 if self.leak_shift_mV is not None else 0)

    @property
    def names(self) -> list[str]:
        """Coordinate names (free parameters, then 'leak_shift_mV' when fitted)."""
        return list(self.free) + (["leak_shift_mV"] if self.leak_shift_mV is not None else [])

    def leak_shifts(self, u: np.ndarray) -> np.ndarray:
        """E_leak shifts (mV) of unit-cube rows (zeros when the shift is not fitted)."""
        u = np.atleast_2d(u)
        if self.leak_shift_mV is None:
            return np.zeros(u.shape[0])
        lo, hi = self.leak_shift_mV
        return lo + np.clip(u[:, -1], 0.0, 1.0) * (hi - lo)

    def to_unit(self, values: dict[str, float] | np.ndarray) -> np.ndarray:
        """Free-parameter values (dict, or full (P,) / (n, P) rows) -> unit-cube coordinates, clipped."""
        if isinstance(values, dict):
            vals = np.array([[values[n] for n in self.free]])
        else:
            full = np.atleast_2d(values)
            vals = np.stack([full[:, IDX[n]] for n in self.free], axis=1)
        out = np.empty((vals.shape[0], self.dim), dtype=np.float64)
        for j, name in enumerate(self.free):
            lo, hi, log = self.bounds[name]
            x = np.clip(vals[:, j], lo, hi)
            out[:, j] = (np.log(x / lo) / np.log(hi / lo)) if log else (x - lo) / (hi - lo)
        if self.leak_shift_mV is not None:
            lo, hi = self.leak_shift_mV
            out[:, -1] = (0.0 - lo) / (hi - lo)  # start at no shift
        return out

    def from_unit(self, u: np.ndarray) -> np.ndarray:
        """Unit-cube rows (n, d) -> full hh parameter rows (n, P) (fixed parameters from `base`)."""
        u = np.clip(np.atleast_2d(np.asarray(u, dtype=np.float64)), 0.0, 1.0)
        base = np.array([self.base[n] for n in NAMES], dtype=np.float64)
        out = np.repeat(base[None, :], u.shape[0], axis=0)
        for j, name in enumerate(self.free):
            lo, hi, log = self.bounds[name]
            val = lo * np.exp(u[:, j] * np.log(hi / lo)) if log else lo + u[:, j] * (hi - lo)
            out[:, IDX[name]] = np.clip(val, lo, hi)  # exp/log round-off must not leave the range
        return out


def params_dict(row: Sequence[float]) -> dict[str, float]:
    return {n: float(v) for n, v in zip(NAMES, row)}


def params_row(values: dict[str, float]) -> np.ndarray:
    return np.array([values[n] for n in NAMES], dtype=np.float64)

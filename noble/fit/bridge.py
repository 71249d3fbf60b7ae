"""Offline bridge balance: the electrode's series-resistance error measured at the command's edges and removed.

In current clamp the amplifier's bridge subtracts I x R_s, the voltage the injected current drops across the
pipette; where it is unbalanced the recorded voltage is V_m + I R_s. The membrane cannot jump (its capacitance
integrates the current: 300 pA into 100 pF moves it 0.3 mV in 0.1 ms), so an instantaneous voltage step at every
edge of the command, proportional to the current step, is the electrode's. Four of the five recordings in
`../shared/data` show one, 11-16 MOhm in the three with 20 kHz sampling and symmetric at onset and offset, while
File_axon_5 shows none. Left in, it offsets every voltage during a step by I R_s: 4-5 mV at +300 pA (the
interspike troughs and AP peaks the fit compares) and 1-1.5 mV of a -100 pA step's deflection (input resistance
10 % too high).

Measure: at each edge of the command (a change >= `MIN_EDGE_PA`), straight lines through the voltage
`AFTER_MS` after and `BEFORE_MS` before it, both extrapolated to the edge; their difference over the current
step is that edge's R_s. The electrode settles within ~0.1 ms, so the after-window starts there; the membrane's
charging is near-linear over it. Edges with an AP within `AP_GUARD_MS` (a spontaneously active cell) are skipped.
The recording's R_s is the median over edges, applied (v - R_s (I - I_first), so the rest is untouched) when it is
at least `MIN_APPLY_MOHM` with a spread (median absolute deviation) within `MAX_REL_MAD` of it over at least
`MIN_EDGES` edges. On real edges the amplifier's filter and the charging curve's bend read as a few MOhm
(-2.3 MOhm on File_axon_5, whose edges show no jump), hence the threshold; above it the estimate is conservative
(11.1 MOhm on 171116sh_0018, whose raw jump is ~13 MOhm per 100 pA; 14.8 for a synthetic 15 MOhm error).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

import numpy as np

from noble.io import Recording, Sweep

MIN_EDGE_PA = 10.0
AFTER_MS = (0.15, 0.5)
BEFORE_MS = (0.1, 0.4)
AP_GUARD_MS = 2.0
AP_GUARD_RANGE_MV = 40.0  # a voltage range this wide within the guard is an AP, not an edge
MIN_APPLY_MOHM = 5.0
MAX_REL_MAD = 0.3
MIN_EDGES = 4


@dataclass(frozen=True)
class BridgeEstimate:
    """The recording's unbalanced series resistance as the command's edges show it."""

    r_MOhm: float | None  # median over edges; None without enough edges
    mad_MOhm: float | None
    n_edges: int
    applied: bool

    def describe(self) -> str:
        if self.r_MOhm is None:
            return f"bridge balance not measurable ({self.n_edges} clean command edges, need {MIN_EDGES})"
        what = ("removed (offline bridge balance: v - R_s I)" if self.applied
                else f"left in (below {MIN_APPLY_MOHM:g} MOhm or inconsistent)")
        return (f"the voltage jumps at the command's edges as an unbalanced series resistance of "
                f"{self.r_MOhm:.1f} MOhm (+-{self.mad_MOhm:.1f}, {self.n_edges} edges): {what}")


def _line_at_edge(v: np.ndarray, idx: np.ndarray, t_edge: float) -> float:
    """The straight line through v[idx] (sample positions idx) evaluated at sample position t_edge."""
    slope, icpt = np.polyfit(idx.astype(np.float64), v[idx], 1)
    return float(slope * t_edge + icpt)


def edge_resistances_MOhm(sweep: Sweep) -> list[float]:
    """R_s (MOhm) at each clean edge of the sweep's command: voltage jump (mV) / current step (pA) x 1000."""
    assert sweep.dt_ms is not None
    dt = sweep.dt_ms
    c = sweep.command_pA()
    v = sweep.v_mV
    a0, a1 = int(np.ceil(AFTER_MS[0] / dt)), int(np.floor(AFTER_MS[1] / dt))
    b0, b1 = int(np.ceil(BEFORE_MS[0] / dt)), int(np.floor(BEFORE_MS[1] / dt))
    after, before = np.arange(a0, max(a1, a0 + 2) + 1), -np.arange(b0, max(b1, b0 + 2) + 1)
    guard = int(round(AP_GUARD_MS / dt))
    out = []
    for e in np.flatnonzero(np.abs(np.diff(c)) >= MIN_EDGE_PA) + 1:  # c[e] is the first sample at the new level
        if e + after[-1] >= len(v) or e + before[-1] < 0:
            continue
        window = v[max(0, e - guard): e + guard]
        if float(window.max() - window.min()) > AP_GUARD_RANGE_MV:
            continue
        t_edge = e - 0.5  # the command changes between samples e - 1 and e
        jump = _line_at_edge(v, e + after, t_edge) - _line_at_edge(v, e + before, t_edge)
        out.append(1000.0 * jump / float(c[e] - c[e - 1]))
    return out


def estimate_bridge(rec: Recording) -> BridgeEstimate:
    """The median R_s over every clean command edge of every sweep (not applied: see `balance_bridge`)."""
    r = np.array([x for s in rec.sweeps for x in edge_resistances_MOhm(s)])
    if len(r) < MIN_EDGES:
        return BridgeEstimate(None, None, len(r), False)
    med = float(np.median(r))
    mad = float(np.median(np.abs(r - med)))
    return BridgeEstimate(med, mad, len(r), False)


def balance_bridge(rec: Recording, mode: Literal["auto", "off"] = "auto") -> tuple[Recording, BridgeEstimate]:
    """(the recording with I R_s removed where the edges show a consistent R_s >= MIN_APPLY_MOHM, the estimate);
    mode 'off' measures and reports only."""
    est = estimate_bridge(rec)
    ok = (est.r_MOhm is not None and est.mad_MOhm is not None and abs(est.r_MOhm) >= MIN_APPLY_MOHM
          and est.mad_MOhm <= MAX_REL_MAD * abs(est.r_MOhm))
    if mode == "off" or not ok:
        return rec, est
    r = float(est.r_MOhm)  # type: ignore[arg-type]
    sweeps = []
    for s in rec.sweeps:
        c = s.command_pA()
        sweeps.append(replace(s, v_mV=s.v_mV - 1e-3 * r * (c - c[0]),
                              metadata={**s.metadata, "bridge_balanced_MOhm": r}))
    out = replace(rec, sweeps=sweeps, metadata={**rec.metadata, "bridge_balanced_MOhm": r})
    return out, replace(est, applied=True)

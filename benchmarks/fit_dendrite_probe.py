"""Would a passive dendrite let the `hh` family sit where a recorded cell sits between spikes? A probe around a fit.

The fit's model is one compartment. In pyramidal cells the charge an AP leaves in the dendrites flows back after it
and holds the soma up (an afterdepolarisation), so a dendrite is the textbook candidate for interspike troughs
that sit at -50..-44 mV where the one-compartment fit dips to -57 (171116sh_0018, docs/fit.md). This probe adds
one passive dendritic compartment to a scratch copy of the family's equations (not to the family):

    C_s dv/dt = ... + g_c (v_d - v),    rho C_s dv_d/dt = rho g_leak A_s (v_rest - v_d) + g_c (v - v_d)

with the soma's area divided by (1 + rho) so the membrane area (and the input resistance at strong coupling) stays
the fit's, and the dendrite's leak reversal at the recording's rest (so the rest is unchanged). Over a grid of
(g_c, rho) and scale factors of g_Kd, g_M and g_D, E_leak re-pinned to the rest (`hhmodel.pin_rest`), it reports
the APs and the median interspike trough at each step (from rest, as `fit_trough_probe.py`), and with
`--recording` scores every grid point with the fit's own objective (`FitProblem.evaluate`, dt 0.025 ms), per term.
A probe of a model the package does not have: it swaps the family's equation text (`hh._EQS`) and wraps the builds
(to start the dendrite at the soma's voltage) inside this process only, and puts the equations back at the end.

    .venv/bin/python benchmarks/fit_dendrite_probe.py runs/fit/171116sh_0018/fit.json --rest-mV -62 \\
        --g-c 50 100 --rho 1 --g-kd-x 1.5 2 --g-m-x 1 4 6 --recording ../shared/data/171116sh_0018.abf
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def with_dendrite(eqs: str, g_c_nS: float, rho: float, v_rest_mV: float) -> str:
    """The family's equations with a passive dendrite coupled to the soma by g_c_nS (a scratch copy)."""
    return eqs.replace("- I_NaP + I_inj)", "- I_NaP + I_c + I_inj)") + (
        f"I_c = {g_c_nS} * nS * (v_d - v) : amp\n"
        f"dv_d/dt = (g_leak * area * {rho} * ({v_rest_mV} * mV - v_d) - I_c) / (Cm * {rho}) : volt\n")


def patch_start(cls: Any) -> None:
    """Start the dendrite where the soma starts (its leak reversal is the rest, so a resting cell stays there)."""
    build = cls.build.__func__

    def build_with_dendrite(klass: Any, *args: Any, **kwargs: Any) -> Any:
        built = build(klass, *args, **kwargs)
        if "v_d" in built.group.variables:
            built.group.v_d = built.group.v[:]
        return built

    cls.build = classmethod(build_with_dendrite)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("fit_json", type=Path)
    ap.add_argument("--rest-mV", type=float, default=-62.0,
                    help="the recording's resting potential (with --recording: the objective's)")
    ap.add_argument("--g-c", type=float, nargs="+", default=[10.0, 30.0, 100.0], help="coupling (nS)")
    ap.add_argument("--rho", type=float, nargs="+", default=[1.0], help="dendritic / somatic membrane area")
    ap.add_argument("--g-kd-x", type=float, nargs="+", default=[1.0], help="factors on the fit's g_Kd")
    ap.add_argument("--g-m-x", type=float, nargs="+", default=[1.0], help="factors on the fit's g_M")
    ap.add_argument("--g-d-x", type=float, nargs="+", default=[1.0], help="factors on the fit's g_D")
    ap.add_argument("--amps", type=float, nargs="+", default=[-50.0, 100.0, 200.0, 300.0], help="steps (pA)")
    ap.add_argument("--recording", type=Path, default=None, help="score each point with the fit's objective")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()

    import noble.datagen.models.hh as hh
    from noble.datagen.models import get
    from noble.datagen.simulate import simulate, steps_matrix
    from noble.fit.hhmodel import IDX, NAMES, HHFit, pin_rest, split_holding
    from noble.operator import ap_metrics

    doc = json.loads(args.fit_json.read_text())
    base = np.array([doc["parameters"][n]["value"] for n in NAMES])
    family = get("hh")
    patch_start(family)
    patch_start(HHFit)
    problem = None
    if args.recording is not None:
        from noble.fit.api import FitConfig, prepare_problem

        problem = prepare_problem(args.recording, FitConfig())[0]
    rest_mV = args.rest_mV if problem is None else float(problem.targets.rest_mV)  # the objective's own rest
    plain = hh._EQS
    scales = list(itertools.product(args.g_kd_x, args.g_m_x, args.g_d_x))
    grid: list[tuple[float, float]] = [(0.0, 0.0)] + list(itertools.product(args.g_c, args.rho))
    amps = np.asarray(args.amps)
    dt, start, dur, total = 0.05, 300.0, 500.0, 900.0
    rows = []
    for g_c, rho in grid:
        hh._EQS = with_dendrite(plain, g_c, rho, rest_mV) if g_c > 0 else plain
        P = np.repeat(base[None, :], len(scales), axis=0)
        P[:, IDX["diam_um"]] /= np.sqrt(1.0 + rho)
        for k, (kd, m, d) in enumerate(scales):
            P[k, IDX["g_Kd"]] *= kd
            P[k, IDX["g_M"]] *= m
            P[k, IDX["g_D"]] *= d
        P, _ = pin_rest(P, rest_mV)
        P_sim, hold = split_holding(P)
        stim = steps_matrix(np.tile(amps, len(P)), start, dur, total, dt) + np.repeat(hold, len(amps))[:, None]
        res = simulate(family, np.repeat(P_sim, len(amps), axis=0), stim, stim_dt_ms=dt, duration_ms=total,
                       dt_ms=0.025, record_dt_ms=dt, target="cython", settle_ms=0)
        ev = problem.evaluate(P, 0.025) if problem is not None else None
        for k, (kd, m, d) in enumerate(scales):
            row: dict[str, Any] = {"g_c_nS": g_c, "rho": rho, "g_Kd_x": kd, "g_M_x": m, "g_D_x": d, "steps": []}
            for j, a in enumerate(amps):
                v = res.v_mV[k * len(amps) + j]
                base_mV = float(np.median(v[int((start - 100) / dt):int(start / dt)]))
                if a <= 0:
                    steady = float(np.median(v[int((start + dur - 50) / dt):int((start + dur) / dt)]))
                    row["steps"].append({"amp_pA": float(a), "deflection_mV": steady - base_mV})
                    continue
                aps = ap_metrics.find_aps(v, dt)
                pk = aps.peak_ms[aps.within(start, start + dur)]
                troughs = [v[int(t0 / dt):int(t1 / dt)].min() for t0, t1 in zip(pk[:-1], pk[1:])]
                row["steps"].append({"amp_pA": float(a), "n_spikes": int(len(pk)),
                                     "trough_mV": float(np.median(troughs)) if troughs else None,
                                     "peak_mV": float(v[(pk / dt).astype(int)].mean()) if len(pk) else None})
            if ev is not None:
                row["objective"] = float(ev.objective[k])
                row["rms_z"] = {t: round(float(z), 2) for t, z in problem.per_feature_rms_z(ev.z[k]).items()}
            rows.append(row)
            cells = " | ".join(f"{s['amp_pA']:g} pA dV {s['deflection_mV']:5.1f}" if "deflection_mV" in s else
                               f"{s['amp_pA']:g} pA {s['n_spikes']:3d} APs trough "
                               + (f"{s['trough_mV']:6.1f}" if s["trough_mV"] is not None else "     -")
                               for s in row["steps"])
            score = "" if ev is None else (f" | objective {row['objective']:6.2f} (troughs "
                                           f"{row['rms_z'].get('isi_trough_mV', float('nan')):.2f}, ISI CV "
                                           f"{row['rms_z'].get('isi_cv', float('nan')):.2f}, latency "
                                           f"{row['rms_z'].get('first_spike_latency_ms', float('nan')):.2f})")
            print(f"g_c {g_c:5.0f} nS rho {rho:3.1f} g_Kd x{kd:g} g_M x{m:g} g_D x{d:g} | {cells}{score}", flush=True)
    hh._EQS = plain
    if args.json:
        args.json.write_text(json.dumps({"fit": str(args.fit_json), "rest_mV": rest_mV, "grid": rows}, indent=1))


if __name__ == "__main__":
    main()

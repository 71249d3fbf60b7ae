"""Can the `hh` family sit where a recorded cell sits between spikes? A grid over V_T and g_Kd around a fit.

Takes a fit's parameters (fit.json of `noble fit`), moves V_T (the Na+/K+ gates' shared voltage offset), g_Kd (the
delayed rectifier) and optionally g_NaP (persistent Na+) over a grid, re-pins E_leak to the rest (`hhmodel.pin_rest`;
beyond the family's E_leak range as the edge plus a holding current) and simulates long squares from rest with
Brian2. Per grid point and step: the spike count, the median interspike trough and the mean AP peak. A recording
whose troughs sit above every grid point that keeps firing is out of the family's reach on those axes: the evidence
behind a missed `ahp_trough` check (docs/fit.md).

    .venv/bin/python benchmarks/fit_trough_probe.py runs/fit/171116sh_0018/fit.json --rest-mV -62 \\
        --v-t -56 -52 -48 -45 --g-kd 0.6 1.2 1.5 1.8 2.1 2.4 5 --amps 100 200 300
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("fit_json", type=Path)
    ap.add_argument("--rest-mV", type=float, required=True, help="the recording's resting potential")
    ap.add_argument("--v-t", type=float, nargs="+", default=[-56.0, -52.0, -48.0, -45.0])
    ap.add_argument("--g-kd", type=float, nargs="+", default=[0.6, 1.2, 1.8, 2.4, 5.0], help="mS/cm2")
    ap.add_argument("--g-nap", type=float, nargs="+", default=[None],
                    help="persistent Na+ (mS/cm2; default: the fit's)")
    ap.add_argument("--amps", type=float, nargs="+", default=[100.0, 200.0, 300.0], help="step amplitudes (pA)")
    ap.add_argument("--start-ms", type=float, default=100.0)
    ap.add_argument("--duration-ms", type=float, default=500.0)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()

    from noble.datagen.models import get
    from noble.datagen.simulate import simulate, steps_matrix
    from noble.fit.hhmodel import IDX, NAMES, pin_rest, split_holding
    from noble.operator import ap_metrics

    doc = json.loads(args.fit_json.read_text())
    base = np.array([doc["parameters"][n]["value"] for n in NAMES])
    grid = list(itertools.product(args.v_t, args.g_kd, args.g_nap))
    P = np.repeat(base[None, :], len(grid), axis=0)
    P[:, IDX["V_T"]] = [vt for vt, _, _ in grid]
    P[:, IDX["g_Kd"]] = [g for _, g, _ in grid]
    P[:, IDX["g_NaP"]] = [base[IDX["g_NaP"]] if g is None else g for _, _, g in grid]
    P, reachable = pin_rest(P, args.rest_mV)
    P_sim, holding_pA = split_holding(P)  # an E_leak beyond the family's range runs as the edge + a holding current
    amps = np.asarray(args.amps)
    dt, total = 0.05, args.start_ms + args.duration_ms + 100.0
    stim = steps_matrix(np.tile(amps, len(P)), args.start_ms, args.duration_ms, total, dt)
    stim = stim + np.repeat(holding_pA, len(amps))[:, None]
    res = simulate(get("hh"), np.repeat(P_sim, len(amps), axis=0), stim, stim_dt_ms=dt, duration_ms=total, dt_ms=0.025,
                   record_dt_ms=dt, target="cython")
    rows = []
    for k, (vt, gkd, _) in enumerate(grid):
        row = {"V_T": vt, "g_Kd": gkd, "g_NaP": float(P[k, IDX["g_NaP"]]), "E_leak": float(P[k, IDX["E_leak"]]),
               "holding_pA": float(holding_pA[k]), "rest_reachable": bool(reachable[k]), "steps": [],
               # the simulated pre-step voltage: with I_NaP the I-V can fold, and the run may start at another
               # steady state than the pinned one (a row more than 2 mV off the rest is not the recorded cell)
               "rest_sim_mV": float(np.median(res.v_mV[k * len(amps), :int(args.start_ms / dt)]))}
        for j, a in enumerate(amps):
            v = res.v_mV[k * len(amps) + j]
            aps = ap_metrics.find_aps(v, dt)
            pk = aps.peak_ms[aps.within(args.start_ms, args.start_ms + args.duration_ms)]
            troughs = [v[int(t0 / dt):int(t1 / dt)].min() for t0, t1 in zip(pk[:-1], pk[1:])]
            row["steps"].append({"amp_pA": float(a), "n_spikes": int(len(pk)),
                                 "trough_mV": float(np.median(troughs)) if troughs else None,
                                 "peak_mV": float(v[(pk / dt).astype(int)].mean()) if len(pk) else None})
        rows.append(row)
        cells = " | ".join(f"{s['n_spikes']:3d} APs, trough "
                           + (f"{s['trough_mV']:6.1f}" if s["trough_mV"] is not None else "     -")
                           for s in row["steps"])
        flag = "" if abs(row["rest_sim_mV"] - args.rest_mV) <= 2.0 else f"  (rests at {row['rest_sim_mV']:.1f} mV)"
        print(f"V_T {vt:6.1f}  g_Kd {gkd:5.2f}  g_NaP {row['g_NaP']:5.3f} | {cells}{flag}", flush=True)
    print("columns: " + ", ".join(f"{a:g} pA" for a in amps))
    if args.json:
        args.json.write_text(json.dumps({"fit": str(args.fit_json), "rest_mV": args.rest_mV, "grid": rows}, indent=1))


if __name__ == "__main__":
    main()

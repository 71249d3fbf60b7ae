"""What a voltage rel L2 of 0.10 asks of spike timing: the solver against itself with the drive nudged.

The fast-spiking preset (noise-free Brian2, the hh_fs protocol: 1 s step from 100 ms, 1.2 s at 0.05 ms) at
each amplitude and at the amplitude plus a small delta, which changes the steady rate by a fraction of a Hz,
as a surrogate's F-I error would. Reported per delta: the rate change, the first-5 and last spike-time shifts and
the rel L2 between the two traces (the metric of `noble evaluate`: ||v_b - v_a|| / ||v_a|| over the whole trace).

    python benchmarks/rel_l2_floor.py [--amplitudes 120 180 240 300 360] [--deltas 0.1 0.25 0.5 1 2]
"""

from __future__ import annotations

import argparse

import numpy as np

from noble.datagen.models.hh import HH
from noble.datagen.simulate import simulate, steps_matrix
from noble.operator.ap_metrics import find_aps

START_MS, STEP_MS, TOTAL_MS, DT_MS, STIM_DT_MS = 100.0, 1000.0, 1200.0, 0.05, 0.1


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--amplitudes", type=float, nargs="+", default=[120.0, 180.0, 240.0, 300.0, 360.0])
    ap.add_argument("--deltas", type=float, nargs="+", default=[0.1, 0.25, 0.5, 1.0, 2.0])
    ap.add_argument("--preset", default="fast_spiking")
    args = ap.parse_args()
    amps = np.array([a + d for a in args.amplitudes for d in [0.0, *args.deltas]])
    row = np.array([HH.preset_values(args.preset)[k] for k in HH.param_names()])
    stim = steps_matrix(amps, START_MS, STEP_MS, TOTAL_MS, STIM_DT_MS)
    res = simulate(HH, np.repeat(row[None], len(amps), axis=0), stim, stim_dt_ms=STIM_DT_MS,
                   duration_ms=TOTAL_MS, dt_ms=0.025, record_dt_ms=DT_MS)
    v = np.asarray(res.v_mV, dtype=np.float64).reshape(len(args.amplitudes), len(args.deltas) + 1, -1)
    print(f"{args.preset} preset, noise-free Brian2; per delta the median (min..max) over "
          f"{len(args.amplitudes)} amplitudes {args.amplitudes} pA")
    print(f"{'delta pA':>8} {'|d rate| Hz':>18} {'first-5 shift ms':>20} {'last-spike shift ms':>22} {'rel L2':>20}")
    for j, d in enumerate(args.deltas):
        rows = []
        for i in range(len(args.amplitudes)):
            a, b = v[i, 0], v[i, j + 1]
            ta, tb = (find_aps(x, DT_MS).peak_ms for x in (a, b))
            ta, tb = ta[(ta >= START_MS) & (ta < START_MS + STEP_MS)], tb[(tb >= START_MS) & (tb < START_MS + STEP_MS)]
            k = min(5, len(ta), len(tb))
            rows.append((abs(len(tb) - len(ta)) / (STEP_MS / 1000.0),
                         float(np.median(np.abs(tb[:k] - ta[:k]))) if k else np.nan,
                         abs(tb[-1] - ta[-1]) if len(ta) and len(tb) else np.nan,
                         float(np.linalg.norm(b - a) / np.linalg.norm(a))))
        r = np.array(rows)
        cells = [f"{np.nanmedian(c):.3g} ({np.nanmin(c):.3g}..{np.nanmax(c):.3g})" for c in r.T]
        print(f"{d:>8g} {cells[0]:>18} {cells[1]:>20} {cells[2]:>22} {cells[3]:>20}")


if __name__ == "__main__":
    main()

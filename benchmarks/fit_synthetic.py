"""The default fit of a synthetic recording from known hh parameters: a cell no recording here was tuned to.

Simulates long squares from a preset with parameters set on the command line (Brian2, OU current noise, as
`tests/fit/_synth.py`), fits it with `fit_recording` (default FitConfig, `--set field=JSON` overrides) and prints
the wall time, the objective, the notes on optional currents, the true and fitted values of the parameters set,
and the physiology checks per check and per sweep (late deflection).

    .venv/bin/python benchmarks/fit_synthetic.py --param g_AHP=0.2 --param g_M=0.05 --param tau_AHP=1000
    .venv/bin/python benchmarks/fit_synthetic.py --param g_AHP=0.2 --param g_M=0.05 --set 'ahp_current="off"'
    .venv/bin/python benchmarks/fit_synthetic.py --param g_AHP=0.1 --param tau_AHP=300 --param g_M=0.03 \
        --amps 0 30 60 90 120 150 180 210 240 270 --prestep-pA -100 --prestep-ms 100   # a -100 pA pre-step
    .venv/bin/python benchmarks/fit_synthetic.py --preset fast_spiking --draw 3 --cv 0.3   # 3 cells, not picked

`--draw N` fits N cells drawn around the preset (`sample_params`: log-normal conductances and time constants with
coefficient of variation --cv, normal potentials with sd --sd-mV; then the --param values), one after the other,
each on --amps scaled by the preset's leak resistance over the cell's (as a lab sizes its steps to the cell), and
prints a line per cell and a summary of the checks over all of them.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Sequence

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
for extra in (ROOT, ROOT / "tests" / "fit"):
    if str(extra) not in sys.path:
        sys.path.insert(0, str(extra))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="regular_spiking")
    ap.add_argument("--param", action="append", default=[], metavar="NAME=VALUE", help="an hh parameter of the cell")
    ap.add_argument("--amps", type=float, nargs="+", default=[-100.0, -50.0, 50.0, 100.0, 150.0, 200.0, 300.0])
    ap.add_argument("--duration-ms", type=float, default=500.0)
    ap.add_argument("--noise-pA", type=float, default=5.0)
    ap.add_argument("--prestep-pA", type=float, default=0.0, help="a pre-step right before every test step")
    ap.add_argument("--prestep-ms", type=float, default=0.0)
    ap.add_argument("--seed", type=int, default=4)
    ap.add_argument("--set", dest="set_", action="append", default=[], metavar="FIELD=JSON",
                    help="a FitConfig field (JSON value)")
    ap.add_argument("--draw", type=int, default=0, help="fit this many cells drawn around the preset")
    ap.add_argument("--cv", type=float, default=0.3, help="--draw: coefficient of variation of conductances")
    ap.add_argument("--sd-mV", type=float, default=3.0, help="--draw: sd of potentials (V_T, E_leak)")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()

    from noble.datagen.models import get as get_family

    family = get_family("hh")
    given = {}
    for item in args.param:
        name, _, value = item.partition("=")
        given[name] = float(value)
    overrides = {}
    for item in args.set_:
        name, _, value = item.partition("=")
        overrides[name] = json.loads(value)
    if args.draw <= 0:
        cells = [family.preset_values(args.preset, given)]
    else:
        rows = family.sample_params(args.draw, np.random.default_rng(args.seed), preset=args.preset, overrides=given,
                                    cv=args.cv, sd_potential=args.sd_mV)
        cells = [dict(zip(family.param_names(), map(float, row))) for row in rows]
    centre = family.preset_values(args.preset, given)
    results = [fit_cell(cell, protocol_for(cell, centre, args.amps) if args.draw > 0 else list(args.amps), args,
                        overrides, list(given) if args.draw <= 0 else VARIED) for cell in cells]
    if args.draw > 0:
        print(f"\n{len(results)} cells drawn around {args.preset} (cv {args.cv}, sd {args.sd_mV} mV, seed {args.seed})")
        totals: dict[str, list[int]] = {}
        for r in results:
            for k, v in r["physiology"]["by_check"].items():
                t = totals.setdefault(k, [0, 0])
                t[0] += v["ok"]
                t[1] += v["ok"] + v["fail"]
        print("checks over all cells: " + ", ".join(f"{k} {ok}/{n}" for k, (ok, n) in totals.items()))
        n_ok = sum(r["physiology"]["all_ok"] for r in results)
        print(f"cells with every check met: {n_ok}/{len(results)}")
        print("objective median {:.3f}, wall median {:.0f} s".format(
            float(np.median([r["objective"] for r in results])), float(np.median([r["wall_s"] for r in results]))))
    if args.json:
        args.json.write_text(json.dumps(results if args.draw > 0 else results[0], indent=1))


VARIED = ("g_leak", "E_leak", "g_Na", "g_Kd", "g_M", "V_T", "tau_max", "diam_um", "g_T", "V_x")


def leak_resistance_MOhm(cell: dict[str, float]) -> float:
    """1 / (g_leak x area): the input resistance a lab sizes its steps by, before the active currents."""
    area_cm2 = np.pi * (cell["diam_um"] * 1e-4) ** 2
    return 1e3 / (cell["g_leak"] * area_cm2 * 1e6)  # 1 / nS = 1e3 MOhm


def protocol_for(cell: dict[str, float], centre: dict[str, float], amps: Sequence[float]) -> list[float]:
    """The steps scaled as a lab sizes them to the cell: by the preset's leak resistance over the cell's (a drawn
    1.7 GOhm cell at the preset's -100 pA would sit near -240 mV), rounded to 5 pA."""
    scale = leak_resistance_MOhm(centre) / leak_resistance_MOhm(cell)
    return [5.0 * round(a * scale / 5.0) for a in amps]


def fit_cell(cell: dict[str, float], amps: list[float], args: argparse.Namespace, overrides: dict,
             shown: Sequence[str]) -> dict:
    """Simulate the cell's steps, fit them with the default fit and print what the fit met."""
    from _synth import synthetic_recording

    from noble.fit.api import FitConfig, fit_recording

    rec = synthetic_recording(cell, amps, start_ms=100.0 + args.prestep_ms, duration_ms=args.duration_ms,
                              tail_ms=200.0, noise_pA=args.noise_pA, seed=args.seed, prestep_pA=args.prestep_pA,
                              prestep_ms=args.prestep_ms)
    t0 = time.perf_counter()
    res = fit_recording(rec, FitConfig.model_validate(overrides))
    wall = time.perf_counter() - t0
    truth_vs_fit = {n: (cell[n], res.parameters[n]["value"], res.parameters[n]["free"]) for n in shown}
    phys = res.physiology
    counts = [r["n_aps"]["data"] for r in phys["sweeps"]]
    print(f"\ncell: APs per step {counts} at {[f'{a:g}' for a in amps]} pA")
    print(f"wall {wall:.1f} s, objective {res.objective:.3f}")
    for note in res.notes:
        if any(k in note for k in ("fitted (", "is not fitted")):
            print(f"  note: {note}")
    for n, (t, f, free) in truth_vs_fit.items():
        print(f"  {n}: truth {t:.4g}, fit {f:.4g}" + ("" if free else " (not free)"))
    by_check = phys["summary"]["by_check"]
    print("checks: " + ", ".join(f"{k} {v['ok']}/{v['ok'] + v['fail']}" for k, v in by_check.items()))
    print("failed: " + (", ".join(phys["summary"]["failed"]) or "none"))
    for r in phys["sweeps"]:
        c = r["checks"].get("late_deflection")
        if c is not None:
            print(f"  {r['amplitude_pA']:+g} pA: APs {r['n_aps']['data']}/{r['n_aps']['model']}, late deflection "
                  f"{c['data']:.1f} / {c['model']:.1f} mV ({c['status']})")
    return {"cell": cell, "amplitudes_pA": amps, "wall_s": wall, "objective": res.objective,
            "truth_vs_fit": truth_vs_fit, "physiology": phys["summary"]}

if __name__ == "__main__":
    main()

"""What would it take for a fit to meet a check it misses? A grid of parameter values around a fit, each point scored
with the fit's own objective and judged with the physiology checks.

Takes a fit (fit.json of `noble fit`) and its recording, sets or scales hh parameters over a grid (`--set g_M=0.3,1`
gives absolute values, `--scale g_leak=0.7,1` factors on the fit's; `--scale g_leak+g_Na+g_Kd=0.67` moves several
together), re-pins E_leak to the recorded rest and
re-solves the membrane area from the recorded subthreshold steady states as the search does for every candidate
(`solver.candidates`), and simulates every sweep with `FitProblem.evaluate` (dt 0.025 ms). Per point: the
objective, the terms' rms z above --show-z, and the physiology checks that fail (`physiology.physiology_checks`).
With no --set / --scale the grid is the fit itself: its objective and checks recomputed with today's code.
Evidence behind a check the fit misses: if no point of a grid that spans the family's range meets it without
failing others, the model class is what limits it.

    .venv/bin/python benchmarks/fit_probe.py runs/fit/File_axon_5/fit.json ../shared/data/File_axon_5.abf \\
        --set g_M=0.13,0.3,1 --set tau_max=918,5000 --scale g_leak=0.6,1
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


def parse_axes(items: list[str], how: str) -> list["Axis"]:
    """'name=v1,v2' -> (name, how, [v1, v2])."""
    out = []
    for item in items:
        name, _, values = item.partition("=")
        if not values:
            raise SystemExit(f"--{how} {item!r}: expected NAME=V1,V2,...")
        out.append((name.strip(), how, [float(v) for v in values.split(",")]))
    return out


Axis = tuple[str, str, list[float]]  # ('g_M' or 'g_leak+g_Na', 'set' | 'scale', values)


def probe(fit_doc: dict[str, Any], recording: Any, axes: list[Axis]) -> list[dict[str, Any]]:
    """Every grid point of `axes` around the fit `fit_doc` (a fit.json document) on `recording` (a path or a
    Recording, on the fit's sweeps, prepared as `fit_recording` prepares it: `api.prepare_problem`): its
    parameters, solved diameter, objective, per-feature rms z and physiology checks (failed, by check)."""
    from noble.fit.api import FitConfig, prepare_problem, score_decline_where_freed
    from noble.fit.hhmodel import IDX, NAMES, pin_rest, solve_area
    from noble.fit.physiology import physiology_checks
    from noble.fit.targets import prestep_window

    from noble.datagen.models import get as get_family

    # a fit made before a parameter existed was made with its family default
    spec = get_family("hh").param_spec
    base = np.array([fit_doc["parameters"][n]["value"] if n in fit_doc["parameters"] else spec(n).default
                     for n in NAMES])
    solved = {p["name"] for p in fit_doc.get("free_parameters", []) if p.get("transform") == "solved"}
    for names, _, _ in axes:
        for name in names.split("+"):
            if name not in IDX:
                raise ValueError(f"unknown hh parameter {name!r}; allowed: {', '.join(NAMES)}")
    fitted = fit_doc.get("sweeps")
    cfg = FitConfig(sweeps=[int(sw["index"]) for sw in fitted] if fitted else None)
    problem = prepare_problem(recording, cfg)[0]
    problem = score_decline_where_freed(problem, [p["name"] for p in fit_doc.get("free_parameters", [])],
                                        cfg.objective.weights)
    grid = list(itertools.product(*[values for _, _, values in axes]))
    P = np.repeat(base[None, :], len(grid), axis=0)
    for k, point in enumerate(grid):
        for (names, how, _), value in zip(axes, point):
            for name in names.split("+"):
                P[k, IDX[name]] = value if how == "set" else P[k, IDX[name]] * value
    if "E_leak" in solved and problem.targets.rest_mV is not None:
        rest = float(problem.targets.rest_mV)
        shift = base[IDX["E_leak"]] - pin_rest(base[None, :], rest)[0][0, IDX["E_leak"]]  # a fitted leak shift
        P, _ = pin_rest(P, rest)
        P[:, IDX["E_leak"]] += shift
    if "diam_um" in solved:
        P, _ = solve_area(P, problem.subthreshold_points)
    ev = problem.evaluate(P, 0.025, keep_traces=True)
    sweeps = problem.recording.sweeps
    rows: list[dict[str, Any]] = []
    for k, point in enumerate(grid):
        phys = physiology_checks([s.v_mV for s in sweeps], [float(s.dt_ms) for s in sweeps],  # type: ignore[misc]
                                 list(ev.v_mV[k]), ev.dt_ms, [s.stim_start_ms for s in sweeps],
                                 [s.stim_end_ms for s in sweeps], problem.amplitudes_pA,
                                 [s.index for s in sweeps], rest_end_ms=[s.rest_end_ms for s in sweeps],
                                 prestep_ms=[prestep_window(s) for s in sweeps])
        rows.append({"point": {name: v for (name, _, _), v in zip(axes, point)},
                     "diam_um": float(P[k, IDX["diam_um"]]), "objective": float(ev.objective[k]),
                     "rms_z": problem.per_feature_rms_z(ev.z[k]), "failed": phys["summary"]["failed"],
                     "by_check": phys["summary"]["by_check"]})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("fit_json", type=Path)
    ap.add_argument("recording", type=Path)
    ap.add_argument("--set", dest="set_", action="append", default=[], metavar="NAME=V1,V2",
                    help="absolute values of an hh parameter")
    ap.add_argument("--scale", action="append", default=[], metavar="NAME=X1,X2", help="factors on the fit's value")
    ap.add_argument("--show-z", type=float, default=1.5, help="print the terms whose rms z exceeds this")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    axes = parse_axes(args.set_, "set") + parse_axes(args.scale, "scale")
    try:
        rows = probe(json.loads(args.fit_json.read_text()), args.recording, axes)
    except ValueError as exc:
        raise SystemExit(str(exc)) from exc
    for row in rows:
        label = " ".join(f"{name} {'x' if how == 'scale' else ''}{row['point'][name]:g}" for name, how, _ in axes)
        big = ", ".join(f"{t} {z:.1f}" for t, z in row["rms_z"].items() if z > args.show_z)
        fails: dict[str, int] = {}
        for f in row["failed"]:
            name = f.split(": ")[-1]
            fails[name] = fails.get(name, 0) + 1
        print(f"{label} | diam {row['diam_um']:.0f} um | objective {row['objective']:.2f} | z>{args.show_z:g}: {big}"
              f" | checks failed: {', '.join(f'{n} x{c}' for n, c in fails.items()) or 'none'}", flush=True)
    if args.json:
        args.json.write_text(json.dumps({"fit": str(args.fit_json), "recording": str(args.recording),
                                         "axes": [{"name": n, "how": h, "values": v} for n, h, v in axes],
                                         "grid": rows}, indent=1))


if __name__ == "__main__":
    main()

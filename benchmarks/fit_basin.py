"""How close must a warm start be to a good fit for the solver stage to be skipped? The basin of the fit
objective around a reference fit, against how close the surrogate's hall of fame gets.

    .venv/bin/python benchmarks/fit_basin.py RECORDING FIT_DIR [RECORDING FIT_DIR ...]
                                             [--per-radius 16] [--out runs/bench_fit_basin.json]

FIT_DIR holds the `fit.json` of a finished `noble fit` of RECORDING (the reference optimum u*, in the fit's
unit cube; its leak shift too, for spontaneously active cells). For each recording, in one batched
Brian2 evaluation at the search dt (the objective `benchmarks/fit.py` compares), it scores
  reference      u* itself
  sphere r       `--per-radius` random points at Euclidean distance exactly r from u* (r = 0.01 ... 0.4;
                 the cube has side 1, so r = 0.1 moves each of d coordinates by ~0.1/sqrt(d) on average)
  nearest HoF    the 8 hall-of-fame members nearest u* in the unit cube, each given, as an oracle, the
                 reference's soma diameter and leak shift (the exact area rescaling stage 1 searches over)
  stage 1        the warm starts stage 1 actually picks (gradient descent through the FNO + the map to
                 the hall of fame), i.e. what the two-stage fit's CMA-ES starts from
and prints the objective per radius (median and best), the distance of each hall-of-fame member to u*, and
the number of members a hall of fame would need for its nearest member to fall inside the radius where the
median objective first reaches the target (default: 2x the reference's objective), assuming members
spread like the current ones: N_needed ~ N x (r_nearest / r_target)^d.
Why this matters: a two-stage fit can only beat solver-only by 10x if stage 1 lands where the solver would
otherwise spend most of its time, i.e. inside that radius.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from noble.fit.api import FitConfig, _space, _stage1, _warm_start  # noqa: E402
from noble.fit.hhmodel import IDX  # noqa: E402
from noble.fit.objective import FitProblem  # noqa: E402
from noble.fit.solver import candidates  # noqa: E402
from noble.fit.warmstart import hall_of_fame  # noqa: E402
from noble.io import Recording, read_recording  # noqa: E402

RADII = (0.01, 0.02, 0.05, 0.1, 0.2, 0.4)
N_NEAREST = 8


def _reference(fit_dir: Path) -> dict[str, float]:
    doc = json.loads((fit_dir / "fit.json").read_text())
    return {k: float(v["value"] if isinstance(v, dict) else v) for k, v in doc["parameters"].items()}


def _sphere(u0: np.ndarray, r: float, n: int, rng: np.random.Generator) -> np.ndarray:
    """n points at distance r from u0 in uniformly random directions (clipped to the cube by the space)."""
    z = rng.standard_normal((n, u0.size))
    return u0[None, :] + r * z / np.linalg.norm(z, axis=1, keepdims=True)


def basin(rec: Recording, ref: dict[str, float], per_radius: int = 16, target_factor: float = 2.0, seed: int = 0,
          radii: tuple[float, ...] = RADII) -> dict[str, Any]:
    """The basin around the reference parameters `ref` (hh names, plus leak_shift_mV when fitted) on `rec`."""
    cfg = FitConfig()
    problem = FitProblem.from_recording(rec, cfg.objective)
    t = problem.targets
    space = _space(cfg, {k: v for k, v in ref.items() if k != "leak_shift_mV"}, t.spontaneously_active)
    u0 = space.to_unit(ref)[0]
    if space.leak_shift_mV is not None:  # to_unit starts at no shift; the reference has its own
        lo, hi = space.leak_shift_mV
        u0[-1] = (ref.get("leak_shift_mV", 0.0) - lo) / (hi - lo)
    d = space.dim
    rng = np.random.default_rng(seed)
    rows: list[np.ndarray] = [u0[None, :]]
    labels: list[str] = ["reference"]
    for r in radii:
        rows.append(np.clip(_sphere(u0, r, per_radius, rng), 0.0, 1.0))
        labels += [f"r{r}"] * per_radius

    # Hall of fame, nearest u* in the unit cube, with the reference's diameter and leak shift (an oracle).
    notes: list[str] = []
    t_stage1 = time.perf_counter()
    sur, fit, _info = _stage1(problem, cfg, notes)
    base, extra, _ = _warm_start(problem, cfg, sur, fit, notes)
    t_stage1 = time.perf_counter() - t_stage1
    hof = hall_of_fame(sur, cfg.hall_of_fame)
    members = hof.params.copy()
    members[:, IDX["diam_um"]] = ref["diam_um"]
    hu = space.to_unit(members)
    if space.leak_shift_mV is not None:
        hu[:, -1] = u0[-1]
    dist = np.linalg.norm(hu - u0[None, :], axis=1)
    near = np.argsort(dist)[:N_NEAREST]
    rows.append(hu[near])
    labels += ["hof"] * len(near)
    # What stage 1 actually hands CMA-ES: every warm-start row (member x area), scored as the fit scores it.
    warm = space.to_unit(base)
    if extra is not None:
        warm = np.concatenate([warm, space.to_unit(extra)])
    # (to_unit starts every row at no leak shift, as the fit does before it adds `shift_starts_mV`)
    rows.append(warm)
    labels += ["stage1"] * len(warm)
    warm_dist = np.linalg.norm(warm - u0[None, :], axis=1)

    unit = np.concatenate(rows)
    t0 = time.perf_counter()
    ev = problem.evaluate(candidates(space, unit, t.rest_mV), cfg.solver.dt_ms,
                          v_hint_mV=np.full(len(unit), t.rest_mV))
    wall = time.perf_counter() - t0
    obj = np.asarray(ev.objective, dtype=np.float64)
    lab = np.array(labels)
    ref_obj = float(obj[0])
    target = target_factor * ref_obj
    per_r = {}
    r_target = None
    for r in radii:
        o = obj[lab == f"r{r}"]
        med = float(np.median(o))
        per_r[str(r)] = {"median": med, "best": float(np.min(o)), "q75": float(np.quantile(o, 0.75)),
                         "frac_within_target": float(np.mean(o <= target))}
        if med <= target:
            r_target = r
    r_near = float(dist[near[0]])
    n_needed = (len(members) * (r_near / r_target) ** d) if r_target else math.inf
    return {
        "recording": rec.source, "dim": d, "coordinates": space.names,
        "reference_objective": ref_obj, "target_objective": target, "radii": per_r,
        "largest_radius_median_within_target": r_target,
        "hall_of_fame": {"source": hof.source, "n_members": int(len(members)),
                         "distance_nearest": r_near, "distance_median": float(np.median(dist)),
                         "objective_nearest": [float(v) for v in obj[lab == "hof"]],
                         "distances_nearest": [float(v) for v in dist[near]],
                         "members_needed_for_target_radius": n_needed},
        "stage1": {"wall_s": t_stage1, "objective": [float(v) for v in obj[lab == "stage1"]],
                   "distance": [float(v) for v in warm_dist]},
        "evaluations": int(len(unit)), "evaluate_wall_s": wall,
    }


def _print(res: dict[str, Any]) -> None:
    name = Path(res["recording"]).name
    print(f"\n{name}: d = {res['dim']}, reference objective {res['reference_objective']:.3f} "
          f"(target {res['target_objective']:.3f}); {res['evaluations']} evaluations in {res['evaluate_wall_s']:.1f} s")
    print(f"  {'distance r':>12} {'median':>9} {'best':>9} {'q75':>9} {'within target':>14}")
    for r, v in res["radii"].items():
        print(f"  {r:>12} {v['median']:9.3f} {v['best']:9.3f} {v['q75']:9.3f} {v['frac_within_target']:14.2f}")
    h = res["hall_of_fame"]
    print(f"  hall of fame ({h['n_members']} members, {h['source']}): nearest at r = {h['distance_nearest']:.3f} "
          f"(median {h['distance_median']:.3f}); objective of the {len(h['objective_nearest'])} nearest "
          f"(oracle diameter): best {min(h['objective_nearest']):.3f}, median {np.median(h['objective_nearest']):.3f}")
    s = res["stage1"]
    print(f"  stage-1 warm starts ({len(s['objective'])} rows, {s['wall_s']:.1f} s): best objective "
          f"{min(s['objective']):.3f} at r = {s['distance'][int(np.argmin(s['objective']))]:.3f}; "
          f"nearest r = {min(s['distance']):.3f}")
    rt = res["largest_radius_median_within_target"]
    if rt is None:
        print("  no tested radius has its median objective within the target")
    else:
        print(f"  median objective within the target up to r = {rt}: a hall of fame spread like this one "
              f"would need ~{h['members_needed_for_target_radius']:.2e} members for its nearest to be that close")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("pairs", nargs="+", help="RECORDING FIT_DIR [RECORDING FIT_DIR ...]")
    ap.add_argument("--per-radius", type=int, default=16)
    ap.add_argument("--target-factor", type=float, default=2.0,
                    help="target objective = this x the reference's (the solver-only medians reach ~1.1-1.8x)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=ROOT / "runs" / "bench_fit_basin.json")
    args = ap.parse_args(argv)
    if len(args.pairs) % 2:
        ap.error("give RECORDING FIT_DIR pairs")
    results = []
    for rec, fd in zip(args.pairs[::2], args.pairs[1::2]):
        res = basin(read_recording(rec), _reference(Path(fd)), args.per_radius, args.target_factor, args.seed)
        res["fit_dir"] = fd
        _print(res)
        results.append(res)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "results": results},
                                   indent=1, default=float))
    print(f"\nwritten: {args.out}")


if __name__ == "__main__":
    main()

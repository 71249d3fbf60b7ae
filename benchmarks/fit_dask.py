"""Wall time of one recording's default fit with its restarts on a Dask LocalCluster of 1 and of 2 single-threaded
worker processes (`noble fit --scheduler`), side by side in one run, plus the same fit in local processes.

    .venv/bin/python benchmarks/fit_dask.py [RECORDING] [--generations N] [--out runs/fit_dask.json]

Default recording: File_axon_5 of ../shared/data (the shortest sweeps). The fits are the same in each variant (each
restart is deterministic in its seed: tests/fit/test_fit_dask.py); only where the restarts run differs. With 2
restarts (the default), 1 worker runs them one after the other and 2 workers side by side: the ideal ratio is 2x
on the restarts' share of the wall time (the surrogate stage, final evaluation and outputs stay in the client).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DEFAULT = ROOT.parent / "shared" / "data" / "File_axon_5.abf"


def main() -> None:
    from distributed import LocalCluster

    from noble.fit.api import FitConfig, fit_recording
    from noble.io import read_recording

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("recording", nargs="?", type=Path, default=DEFAULT)
    ap.add_argument("--generations", type=int, default=None, help="CMA-ES generations (default: the fit's)")
    ap.add_argument("--out", type=Path, default=ROOT / "runs" / "fit_dask.json")
    args = ap.parse_args()
    rec = read_recording(args.recording)
    # no time budget: each variant then runs the same generations and gives the same fit, so the wall times compare
    # the same work (with the default budget, 1 worker would instead run fewer generations in its 3 minutes)
    cfg = FitConfig(time_budget_s=None)
    if args.generations:
        cfg = cfg.model_copy(update={"solver": cfg.solver.model_copy(update={"max_generations": args.generations})})
    rows: list[dict[str, Any]] = []

    def run(label: str, c: FitConfig) -> None:
        t0 = time.perf_counter()
        res = fit_recording(rec, c)
        wall = time.perf_counter() - t0
        rows.append({"variant": label, "wall_s": round(wall, 1), "stage2_s": round(res.timing_s["stage2"], 1),
                     "objective": round(res.objective, 4)})
        print(rows[-1], flush=True)

    for n in (1, 2):
        with LocalCluster(n_workers=n, threads_per_worker=1, processes=True, dashboard_address=":0") as cluster:
            run(f"dask, {n} worker{'s' if n > 1 else ''}", cfg.model_copy(update={"scheduler": cluster.scheduler_address}))
    run("local processes", cfg)
    one, two = rows[0], rows[1]
    summary = {"recording": args.recording.name, "rows": rows,
               "speedup_wall": round(one["wall_s"] / two["wall_s"], 2),
               "speedup_stage2": round(one["stage2_s"] / two["stage2_s"], 2)}
    print(json.dumps(summary, indent=1))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(summary, indent=1) + "\n")


if __name__ == "__main__":
    main()

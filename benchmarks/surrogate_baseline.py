"""Pre-step baseline error of surrogates, per step amplitude, on held-out Brian2 traces, side by side.

    .venv/bin/python benchmarks/surrogate_baseline.py DATASET CKPT [CKPT ...] [--json PATH]

Before a step starts, a neuron's voltage cannot depend on the step (causality). An FNO's spectral
convolutions are global in time, so a surrogate can only learn that from the amplitudes it was trained on; at an
amplitude it never saw it may put the neuron millivolts away from its rest. The error is mean(surrogate) -
mean(Brian2) over 10-90 ms (the step starts at 100 ms), on the held-out models named in each checkpoint.
Give the dataset with the amplitudes you care about (e.g. one made with extra amplitudes from the same config
and seed: the same models, so the held-out ids still mean the same neurons).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from noble.operator.checkpoint import load_surrogate  # noqa: E402
from noble.operator.data import load_traces  # noqa: E402
from noble.operator.evaluate import evaluate_surrogate  # noqa: E402


def baseline_errors(dataset: Path, ckpt: Path) -> dict[str, Any]:
    sur = load_surrogate(ckpt)
    c = sur.config
    traces = load_traces(dataset, list(c.feature_names), c.dt_ms)
    res = evaluate_surrogate(sur, traces, np.asarray(c.heldout_model_ids))
    a = res["_arrays"]
    lo, hi = int(round(10.0 / c.dt_ms)), int(round(90.0 / c.dt_ms))
    err = a["pred"][:, lo:hi].mean(axis=1) - a["true"][:, lo:hi].mean(axis=1)
    per = {}
    for amp in np.unique(a["amps"]):
        e = np.abs(err[a["amps"] == amp])
        per[f"{amp:g}"] = {"n": int(len(e)), "median_abs_mV": float(np.median(e)), "max_abs_mV": float(np.max(e)),
                           "trained": bool(amp in c.stimulus.amplitudes_pA)}
    e = np.abs(err)
    return {"checkpoint": str(ckpt), "n": int(len(e)), "median_abs_mV": float(np.median(e)),
            "p90_abs_mV": float(np.percentile(e, 90)), "max_abs_mV": float(np.max(e)), "per_amplitude": per}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dataset", type=Path)
    ap.add_argument("ckpts", type=Path, nargs="+")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    rows = [baseline_errors(args.dataset, ck) for ck in args.ckpts]
    amps = list(rows[0]["per_amplitude"])
    print("pre-step |surrogate - Brian2| (mV, mean over 10-90 ms), held-out models; * = amplitude not trained")
    print(f"{'amp pA':>8} " + " ".join(f"{Path(r['checkpoint']).name[:18]:>20}" for r in rows))
    for amp in amps:
        cells = []
        for r in rows:
            p = r["per_amplitude"].get(amp)
            cells.append("-" if p is None else f"{p['median_abs_mV']:.2f} (max {p['max_abs_mV']:.2f}){' ' if p['trained'] else '*'}")
        print(f"{amp:>8} " + " ".join(f"{c:>20}" for c in cells))
    print(f"{'all':>8} " + " ".join(f"{r['median_abs_mV']:.2f} (p90 {r['p90_abs_mV']:.2f}) " for r in rows))
    if args.json:
        args.json.write_text(json.dumps({"dataset": str(args.dataset), "results": rows}, indent=1))
        print(f"written: {args.json}")


if __name__ == "__main__":
    main()

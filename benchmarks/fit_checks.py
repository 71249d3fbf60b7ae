"""The default `noble fit` on real recordings, judged as a physiologist would: per recording, every physiology
check (`noble/fit/physiology.py`: counts, stops early, subthreshold deflections, latencies, AP peak, half-width,
interspike trough, depolarisation block, rest, rheobase), the acceptance checks, the optional currents the fit
freed (I_h, I_Kir), the series resistance removed (offline bridge balance) and the wall time. One run each,
default budget, sequential (each fit uses the machine's cores for its restarts).

    .venv/bin/python benchmarks/fit_checks.py [RECORDING ...] [--out runs/fit_checks]
    .venv/bin/python benchmarks/fit_checks.py --tabulate DIR [DIR ...]   # fits already written (fit.json each)

Default recordings: the five of ../shared/data. Writes each fit's outputs under --out/<name>/ and the table as
--out/fit_checks.json; prints a markdown table.
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

DATA = ROOT.parent / "shared" / "data"
from noble.fit.physiology import SWEEP_CHECKS  # noqa: E402


def summarise(doc: dict[str, Any], wall_s: float | None = None) -> dict[str, Any]:
    """One row of the table from a fit.json document."""
    phys = doc.get("physiology") or {}
    by = (phys.get("summary") or {}).get("by_check", {})
    row: dict[str, Any] = {"recording": Path(doc["source"]).name}
    for name in SWEEP_CHECKS:
        c = by.get(name)
        row[name] = None if c is None else f"{c['ok']}/{c['ok'] + c['fail']}"
    troughs = [abs(s["checks"]["ahp_trough"]["model"] - s["checks"]["ahp_trough"]["data"])
               for s in phys.get("sweeps", []) if s["checks"].get("ahp_trough", {}).get("ok") is not None]
    row["trough_error_mV"] = round(sorted(troughs)[len(troughs) // 2], 1) if troughs else None
    cell = phys.get("cell", {})
    row["rest"] = (cell.get("rest") or {}).get("status")
    row["rheobase"] = (cell.get("rheobase") or {}).get("status")
    row["physiology_all_ok"] = (phys.get("summary") or {}).get("all_ok")
    row["acceptance_all_ok"] = (doc.get("checks") or {}).get("all_ok")
    free = (doc.get("solver") or {}).get("free", [])
    row["extra_free"] = "+".join(n for n in ("g_h", "g_Kir", "phi_NaK", "g_NaP") if n in free) or None
    bridge = doc.get("bridge") or {}
    row["bridge_MOhm"] = round(bridge["r_MOhm"], 1) if bridge.get("applied") else None
    row["wall_s"] = round(wall_s if wall_s is not None else doc["timing_s"]["total"], 1)
    return row


def table(rows: list[dict[str, Any]]) -> str:
    cols = ["recording", *SWEEP_CHECKS, "trough_error_mV", "rest", "rheobase", "physiology_all_ok",
            "acceptance_all_ok", "extra_free", "bridge_MOhm", "wall_s"]
    out = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        out.append("| " + " | ".join("-" if r.get(c) is None else str(r[c]) for c in cols) + " |")
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("recordings", nargs="*", type=Path)
    ap.add_argument("--out", type=Path, default=ROOT / "runs" / "fit_checks")
    ap.add_argument("--set", nargs="*", default=[], metavar="FIELD=JSON",
                    help="FitConfig overrides, e.g. persistent_sodium='\"off\"' restarts=2")
    ap.add_argument("--tabulate", nargs="+", type=Path, help="fit output directories to tabulate (no fitting)")
    args = ap.parse_args()
    rows: list[dict[str, Any]] = []
    if args.tabulate:
        for d in args.tabulate:
            rows.append(summarise(json.loads((d / "fit.json").read_text())))
    else:
        from noble.fit.api import fit_recording
        from noble.fit.report import write_outputs

        overrides = {k: json.loads(v) for k, v in (kv.split("=", 1) for kv in args.set)}
        recs = args.recordings or sorted(DATA.glob("*.abf"))
        for path in recs:
            t0 = time.perf_counter()
            res = fit_recording(path, **overrides)
            wall = time.perf_counter() - t0
            write_outputs(res, args.out / path.stem)
            rows.append(summarise(json.loads((args.out / path.stem / "fit.json").read_text()), wall))
            print(table(rows[-1:]), flush=True)
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "fit_checks.json").write_text(json.dumps(rows, indent=1) + "\n")
    print(table(rows))


if __name__ == "__main__":
    main()

"""Does the surrogate sample the right POPULATION? Sampled neurons vs a fresh Brian2 population.

A fresh population of the same cell class is simulated by Brian2 from the surrogate's own training data
config (same preset, variability, acceptance window, protocol onset/duration and trial noise) with a NEW
seed and only the compared amplitudes; the surrogate samples `--n` neurons per amplitude from its population
density (`noble.operator.sample`). Spike counts and first-spike latencies of both are measured by the same
eFEL extractor on the surrogate's grid, and compared with two-sample Kolmogorov-Smirnov tests
(scipy.stats.ks_2samp) at each amplitude; agreement = p > 0.01.

    .venv/bin/python benchmarks/surrogate_population.py                     # shipped default, 3 amplitudes
    .venv/bin/python benchmarks/surrogate_population.py --models 64 --n 1000 --amplitudes 150 270 390 \
        --data data/hh_fs_fresh --json pop.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def fresh_population(sur, amplitudes: list[float], n_models: int, seed: int, directory: Path,
                     workers: int) -> dict[float, dict[str, np.ndarray]]:
    """Simulate (or reuse) a fresh Brian2 population and measure its spike statistics per amplitude."""
    from noble.datagen.config import parse_config
    from noble.datagen.dataset import open_dataset, read_shard
    from noble.datagen.features import trace_features
    from noble.datagen.jobs import run_datagen

    base = dict((sur.card.get("training_data") or {}).get("dataset_config") or {})
    if not base:
        raise SystemExit("the checkpoint's card has no training dataset config to draw a fresh population from")
    proto = dict(base["protocol"])
    proto["amplitudes_pA"] = [float(a) for a in amplitudes]
    base.update(name=f"{base.get('name', 'population')}_fresh", seed=int(seed), n_models=int(n_models),
                protocol=proto, models_per_shard=min(int(base.get("models_per_shard", 8)), 8))
    cfg = parse_config(base)
    summary = run_datagen(cfg, directory, workers=workers, progress=True)
    if not summary.ok:
        raise SystemExit(f"fresh population failed: {summary.failed}")
    step = int(round(sur.config.dt_ms / cfg.record_dt_ms))
    p = sur.config.stimulus
    out: dict[float, dict[str, list]] = {float(a): {"count": [], "latency": []} for a in amplitudes}
    for path in open_dataset(directory):
        sh = read_shard(path)
        v = sh.v_mV[:, ::step]
        tf = trace_features(v, sur.config.dt_ms, p.start_ms, p.end_ms, sh.amp_pA)
        for a in out:
            rows = np.isclose(sh.amp_pA, a)
            out[a]["count"].extend(tf["spike_count"][rows])
            out[a]["latency"].extend(tf["first_spike_latency_ms"][rows])
    return {a: {k: np.asarray(v, dtype=float) for k, v in d.items()} for a, d in out.items()}


def compare(sur, brian: dict[float, dict[str, np.ndarray]], n: int, seed: int) -> list[dict[str, Any]]:
    from scipy.stats import ks_2samp

    from noble.operator import sample

    rows = []
    for k, (a, b) in enumerate(sorted(brian.items())):
        res = sample(sur, a, n, seed + k)
        sc, sl = res.spike_counts.astype(float), res.first_spike_latency_ms
        bc, bl = b["count"], b["latency"]
        ks_c = ks_2samp(sc, bc)
        sl_f, bl_f = sl[np.isfinite(sl)], bl[np.isfinite(bl)]
        ks_l = ks_2samp(sl_f, bl_f) if len(sl_f) > 1 and len(bl_f) > 1 else None
        rows.append({
            "amplitude_pA": a, "n_surrogate": int(n), "n_brian2": int(len(bc)),
            "count_mean_surrogate": float(sc.mean()), "count_mean_brian2": float(bc.mean()),
            "count_sd_surrogate": float(sc.std()), "count_sd_brian2": float(bc.std()),
            "count_ks_stat": float(ks_c.statistic), "count_ks_p": float(ks_c.pvalue),
            "latency_median_surrogate_ms": float(np.median(sl_f)) if len(sl_f) else None,
            "latency_median_brian2_ms": float(np.median(bl_f)) if len(bl_f) else None,
            "latency_ks_stat": None if ks_l is None else float(ks_l.statistic),
            "latency_ks_p": None if ks_l is None else float(ks_l.pvalue),
            "frac_silent_surrogate": float(np.mean(~np.isfinite(sl))),
            "frac_silent_brian2": float(np.mean(~np.isfinite(bl))),
        })
    return rows


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ckpt", type=Path, default=None, help="checkpoint (default: the shipped hh_fs)")
    ap.add_argument("--amplitudes", type=float, nargs="+", default=[150.0, 270.0, 390.0])
    ap.add_argument("--models", type=int, default=64, help="fresh Brian2 models")
    ap.add_argument("--n", type=int, default=1000, help="surrogate samples per amplitude")
    ap.add_argument("--seed", type=int, default=12345, help="seed of the fresh population (not the training one)")
    ap.add_argument("--data", type=Path, default=ROOT / "data" / "hh_fs_fresh", help="where the fresh population goes")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)

    import torch

    from noble.operator import default_surrogate_path, load_surrogate

    torch.set_num_threads(args.threads)
    sur = load_surrogate(args.ckpt or default_surrogate_path())
    brian = fresh_population(sur, args.amplitudes, args.models, args.seed, args.data, args.workers)
    rows = compare(sur, brian, args.n, args.seed)
    print(f"{'amp pA':>7} {'N mean s/b':>12} {'N sd s/b':>11} {'KS p (N)':>9} {'lat med s/b ms':>15} "
          f"{'KS p (lat)':>10}")
    for r in rows:
        lat = (f"{r['latency_median_surrogate_ms']:.1f}/{r['latency_median_brian2_ms']:.1f}"
               if r["latency_median_brian2_ms"] is not None and r["latency_median_surrogate_ms"] is not None else "-")
        lp = f"{r['latency_ks_p']:.3g}" if r["latency_ks_p"] is not None else "-"
        print(f"{r['amplitude_pA']:>7g} {r['count_mean_surrogate']:>5.1f}/{r['count_mean_brian2']:<6.1f} "
              f"{r['count_sd_surrogate']:>4.1f}/{r['count_sd_brian2']:<5.1f} {r['count_ks_p']:>9.3g} "
              f"{lat:>15} {lp:>10}")
    ok = all(r["count_ks_p"] > 0.01 and (r["latency_ks_p"] is None or r["latency_ks_p"] > 0.01) for r in rows)
    print(f"distributions agree (KS p > 0.01 for counts and latencies at every amplitude): {ok}")
    out = {"checkpoint": str(args.ckpt or default_surrogate_path()), "rows": rows, "agree": ok,
           "fresh_models": args.models, "fresh_seed": args.seed}
    if args.json:
        args.json.write_text(json.dumps(out, indent=1) + "\n")
    return out


if __name__ == "__main__":
    main()

"""The noise floor of the surrogate's trace metrics: how far apart two Brian2 trials of the SAME neuron are.

The training datasets carry trial-to-trial variability (an Ornstein-Uhlenbeck current, `noise` in the dataset
config), so a held-out trace is one noisy trial. A deterministic surrogate can at best return the neuron's
noise-free response; this script measures, for neurons of a dataset config's population at its amplitudes,
* noise-free vs noisy trial (the best any deterministic predictor of the noisy trace can do), and
* noisy trial vs noisy trial (two recordings of one cell),
in the surrogate issue's metrics: voltage relative L2, spike count within +-1, first-spike latency error.

    .venv/bin/python benchmarks/noise_floor.py configs/hh_fs.yaml --models 8 [--dt-ms 0.2] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def spikes_ms(v_mV: np.ndarray, dt_ms: float, thr_mV: float = -20.0) -> np.ndarray:
    """Upward crossings of thr_mV (ms)."""
    return np.flatnonzero((v_mV[1:] > thr_mV) & (v_mV[:-1] <= thr_mV)) * dt_ms


def compare(a: np.ndarray, b: np.ndarray, dt_ms: float, start_ms: float) -> dict[str, float]:
    """Metrics of trace a predicting trace b (b is the reference)."""
    sa, sb = spikes_ms(a, dt_ms), spikes_ms(b, dt_ms)
    lat = abs(sa[0] - sb[0]) if len(sa) and len(sb) else np.nan
    return {"rel_l2": float(np.linalg.norm(a - b) / np.linalg.norm(b)),
            "count_err": float(abs(len(sa) - len(sb))), "latency_err_ms": float(lat),
            "spiking": float(len(sb) > 0)}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("config", type=Path)
    ap.add_argument("--models", type=int, default=8)
    ap.add_argument("--dt-ms", type=float, default=0.2, help="trace grid the metrics are taken on (surrogate's)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)

    from noble.datagen.config import load_config
    from noble.datagen.models import get
    from noble.datagen.simulate import simulate, steps_matrix

    cfg = load_config(args.config)
    fam = get(cfg.family)
    rng = np.random.default_rng(args.seed)
    params = fam.sample_params(args.models, rng, cfg.preset, cv=cfg.variability.cv,
                               sd_potential=cfg.variability.sd_potential_mV)
    amps = np.asarray(cfg.protocol.amplitudes_pA, dtype=float)
    P = np.repeat(params, len(amps), axis=0)
    A = np.tile(amps, len(params))
    stim = steps_matrix(A, cfg.protocol.start_ms, cfg.protocol.duration_ms, cfg.duration_ms, args.dt_ms)
    run = {}
    for label, sigma, seed in (("clean", 0.0, 0), ("trial1", cfg.noise.sigma_pA, 1), ("trial2", cfg.noise.sigma_pA, 2)):
        res = simulate(fam, P, stim, stim_dt_ms=args.dt_ms, duration_ms=cfg.duration_ms, dt_ms=cfg.dt_ms,
                       record_dt_ms=args.dt_ms, noise_sigma_pA=sigma, noise_tau_ms=cfg.noise.tau_ms, seed=seed)
        run[label] = res.v_mV
    out: dict = {"config": str(args.config), "models": args.models, "amplitudes_pA": amps.tolist(),
                 "noise": cfg.noise.model_dump(), "dt_ms": args.dt_ms}
    for name, (pa, pb) in {"noise_free_vs_trial": ("clean", "trial1"),
                           "trial_vs_trial": ("trial2", "trial1")}.items():
        rows = [compare(run[pa][i], run[pb][i], args.dt_ms, cfg.protocol.start_ms) for i in range(len(A))]
        sup = [r for r, a in zip(rows, A) if a > 0]
        lat = [r["latency_err_ms"] for r in sup if np.isfinite(r["latency_err_ms"])]
        out[name] = {
            "median_rel_l2": float(np.median([r["rel_l2"] for r in sup])),
            "frac_spike_count_within_1": float(np.mean([r["count_err"] <= 1 for r in sup])),
            "median_latency_error_ms": float(np.median(lat)) if lat else None,
            "per_amplitude_median_rel_l2": {f"{a:g}": float(np.median([r["rel_l2"] for r, aa in zip(rows, A)
                                                                      if aa == a])) for a in amps},
        }
    print(f"{args.models} neurons of {cfg.name} x {len(amps)} amplitudes, noise sigma {cfg.noise.sigma_pA} pA "
          f"tau {cfg.noise.tau_ms} ms, traces at {args.dt_ms} ms (depolarising steps only)")
    print(f"{'':>22} {'median rel L2':>14} {'count +-1':>10} {'latency err (ms)':>17}")
    for name in ("noise_free_vs_trial", "trial_vs_trial"):
        r = out[name]
        print(f"{name:>22} {r['median_rel_l2']:>14.3f} {r['frac_spike_count_within_1']:>10.2f} "
              f"{r['median_latency_error_ms'] if r['median_latency_error_ms'] is not None else float('nan'):>17.2f}")
    print("per amplitude (noise-free vs trial): " + ", ".join(
        f"{k} pA {v:.3f}" for k, v in out["noise_free_vs_trial"]["per_amplitude_median_rel_l2"].items()))
    if args.json:
        args.json.write_text(json.dumps(out, indent=1) + "\n")
    return out


if __name__ == "__main__":
    main()

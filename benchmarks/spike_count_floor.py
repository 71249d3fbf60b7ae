"""How many spikes the surrogate's features determine: the spike count of a checkpoint's held-out neurons at every
depolarising step that fires, predicted from (features, step amplitude) alone, against the solver's noise-free
count in the training dataset. The counterpart of spike_time_floor.py for the `spike count within +-1` target.

* parabola: the neuron's own F-I features, rate = fi_lin x + fi_quad x^2 (x = I - I_thr) times the step length
  (the F-I phase prior before any learned correction);
* k-NN: the mean count of the k training neurons nearest in normalised feature space, at the same amplitude;
* MLP: 3 x 128 GELU on (normalised features, amplitude / max amplitude) -> count / 100, an ensemble of seeds,
  trained on the other neurons of the dataset;
* own cubic (not available to a surrogate): a cubic through rheobase fitted to the neuron's OWN counts, i.e. how
  far a smooth F-I curve with one more shape parameter than the features hold can follow the solver's counts.

The checkpoint's own counts on the same steps come first. A surrogate whose count accuracy is near the MLP's is
limited by what its features say about the F-I curve.

    .venv/bin/python benchmarks/spike_count_floor.py data/hh_mc_fs --ckpt noble/assets/hh_mc_fs [--json out.json]
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
sys.path.insert(0, str(Path(__file__).resolve().parent))

from spike_time_floor import knn, train_mlp  # noqa: E402


def count_table(dataset: Path, ckpt: Path) -> dict[str, np.ndarray]:
    """Per depolarising step that fires: normalised features + amplitude (X), the count (Y, one column), the raw
    features, model id, amplitude, and whether the model is one of the checkpoint's held-out neurons."""
    from noble.operator import ap_metrics
    from noble.operator.data import load_traces

    cfg = json.loads((ckpt / "config.json").read_text())
    names = cfg["feature_names"]
    lo = np.array([cfg["feature_ranges"][n][0] for n in names])
    hi = np.array([cfg["feature_ranges"][n][1] for n in names])
    ts = load_traces(dataset, names, cfg["dt_ms"])  # the checkpoint's grid: its stimuli go to predict
    start, dur = ts.protocol["start_ms"], ts.protocol["duration_ms"]
    a_max = float(np.max(ts.amp_pA))
    X, Y, F, mid, amp, rows = [], [], [], [], [], []
    for r in range(len(ts.v_mV)):
        if ts.amp_pA[r] <= 0:
            continue
        aps = ap_metrics.find_aps(ts.v_mV[r], ts.dt_ms)
        n = int(aps.within(start, start + dur).sum())
        if n == 0:
            continue
        X.append(np.r_[(ts.features[r] - lo) / (hi - lo), ts.amp_pA[r] / a_max])
        Y.append([float(n)])
        F.append(ts.features[r])
        mid.append(ts.model_id[r])
        amp.append(ts.amp_pA[r])
        rows.append(r)
    held = np.isin(np.array(mid), np.array(cfg["heldout_model_ids"]))
    return {"X": np.array(X), "Y": np.array(Y), "F": np.array(F), "names": np.array(names),
            "model_id": np.array(mid), "amp": np.array(amp), "duration_s": np.array(dur / 1000.0), "held": held,
            "surrogate": surrogate_counts(ckpt, ts, np.array(rows), held, start, start + dur)}


def surrogate_counts(ckpt: Path, ts, rows: np.ndarray, held: np.ndarray, start_ms: float,
                     end_ms: float) -> np.ndarray:
    """The checkpoint's own counts on the same steps (held-out rows only; NaN elsewhere), APs found as above."""
    from noble.operator import ap_metrics, load_surrogate

    sur = load_surrogate(ckpt)
    P = np.full((len(rows), 1), np.nan)
    v = sur.predict(ts.features[rows[held]], ts.stim_pA[rows[held]], check_range=False)
    P[held, 0] = [ap_metrics.find_aps(x, sur.config.dt_ms).within(start_ms, end_ms).sum() for x in v]
    return P


def parabola(tab: dict[str, np.ndarray]) -> np.ndarray:
    names = list(tab["names"])
    F = tab["F"]
    x = np.clip(tab["amp"] - F[:, names.index("I_thr_pA")], 0.0, None)
    rate = F[:, names.index("fi_lin_Hz_per_pA")] * x + F[:, names.index("fi_quad_Hz_per_pA2")] * x * x
    return (rate * float(tab["duration_s"]))[:, None]


def own_cubic(tab: dict[str, np.ndarray]) -> np.ndarray:
    names = list(tab["names"])
    P = np.full_like(tab["Y"], np.nan)
    for m in np.unique(tab["model_id"]):
        i = np.flatnonzero(tab["model_id"] == m)
        x = tab["amp"][i] - tab["F"][i[0], names.index("I_thr_pA")]
        if len(i) < 4:
            continue
        A = np.stack([x, x ** 2, x ** 3], axis=1)
        P[i, 0] = A @ np.linalg.lstsq(A, tab["Y"][i, 0], rcond=None)[0]
    return P


def mlp(tab: dict[str, np.ndarray], seed: int, steps: int = 6000) -> np.ndarray:
    import torch

    X, Y, tr = tab["X"], tab["Y"], ~tab["held"]
    Xt, Yt = torch.tensor(X, dtype=torch.float32), torch.tensor(Y / 100.0, dtype=torch.float32)
    net = train_mlp(Xt, np.flatnonzero(tr), 1,
                    lambda out, b: torch.nn.functional.huber_loss(out, Yt[b], delta=0.01),  # knee at 1 spike
                    seed, steps)
    with torch.no_grad():
        return net(Xt).numpy() * 100.0


def score(P: np.ndarray, tab: dict[str, np.ndarray]) -> dict[str, float]:
    te = tab["held"] & np.isfinite(P[:, 0])
    e = np.abs(P[te, 0] - tab["Y"][te, 0])
    return {"within_1": float(np.mean(np.round(e) <= 1)), "count_error_median": float(np.median(e)),
            "fi_mae_Hz": float(np.mean(e) / float(tab["duration_s"])), "n_steps": int(te.sum())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dataset", type=Path, help="the checkpoint's training dataset (noble datagen run)")
    ap.add_argument("--ckpt", type=Path, default=ROOT / "noble/assets/hh_mc_fs")
    ap.add_argument("--seeds", type=int, default=5, help="MLP ensemble size")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    tab = count_table(args.dataset, args.ckpt)
    out = {"dataset": str(args.dataset), "checkpoint": str(args.ckpt),
           "heldout_neurons": int(len(np.unique(tab["model_id"][tab["held"]]))),
           "parabola": score(parabola(tab), tab), "knn_k5": score(knn(tab, 5), tab),
           "mlp": score(np.mean([mlp(tab, s) for s in range(args.seeds)], axis=0), tab),
           "own_cubic": score(own_cubic(tab), tab), "surrogate": score(tab["surrogate"], tab)}
    print(f"held-out spiking steps: {out['parabola']['n_steps']} ({out['heldout_neurons']} neurons)")
    print("| predictor | count within +-1 | median |error| (spikes) | F-I MAE (Hz) |\n|---|---|---|---|")
    for k in ("surrogate", "parabola", "knn_k5", "mlp", "own_cubic"):
        s = out[k]
        print(f"| {k} | {s['within_1']:.1%} | {s['count_error_median']:.2f} | {s['fi_mae_Hz']:.2f} |")
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()

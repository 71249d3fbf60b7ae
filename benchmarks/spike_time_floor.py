"""How much spike timing the surrogate's features determine: the first 5 spike times of a checkpoint's held-out
neurons at every depolarising step, predicted from (features, step amplitude) alone by regressors trained on
the other neurons of its training dataset, against the solver's noise-free trains in that dataset.

* k-NN: the mean train of the k training neurons nearest in normalised feature space, at the same amplitude;
* MLP: 3 x 128 GELU on (normalised features, amplitude / 390 pA) -> log latency and log of the next 4 ISIs,
  an ensemble of seeds (masked where a train has fewer spikes).

A surrogate whose first-5 error is far above the MLP's is not limited by what its features say; one near it is.
Errors: |predicted - solver| peak times (find_aps, as `noble evaluate`), median over the first 5 spikes of every
held-out spiking step (and of the first spike alone).

    .venv/bin/python benchmarks/spike_time_floor.py data/hh_fs --ckpt noble/assets/hh_fs [--seeds 5] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def first5_table(dataset: Path, ckpt: Path) -> dict[str, np.ndarray]:
    """Per depolarising step that spikes: normalised features + amplitude (X), first 5 peak times after onset
    (Y, NaN-padded), model id and amplitude."""
    from noble.operator import ap_metrics
    from noble.operator.data import load_traces

    cfg = json.loads((ckpt / "config.json").read_text())
    names = cfg["feature_names"]
    lo = np.array([cfg["feature_ranges"][n][0] for n in names])
    hi = np.array([cfg["feature_ranges"][n][1] for n in names])
    ts = load_traces(dataset, names, 0.05)
    start = ts.protocol["start_ms"]
    end = start + ts.protocol["duration_ms"]
    a_max = float(np.max(ts.amp_pA))
    X, Y, mid, amp = [], [], [], []
    for r in range(len(ts.v_mV)):
        if ts.amp_pA[r] <= 0:
            continue
        aps = ap_metrics.find_aps(ts.v_mV[r], ts.dt_ms)
        t = aps.peak_ms[aps.within(start, end)] - start
        if len(t) == 0:
            continue
        y = np.full(5, np.nan)
        y[:min(5, len(t))] = t[:5]
        X.append(np.r_[(ts.features[r] - lo) / (hi - lo), ts.amp_pA[r] / a_max])
        Y.append(y)
        mid.append(ts.model_id[r])
        amp.append(ts.amp_pA[r])
    return {"X": np.array(X), "Y": np.array(Y), "model_id": np.array(mid), "amp": np.array(amp),
            "held": np.isin(np.array(mid), np.array(cfg["heldout_model_ids"]))}


def knn(tab: dict[str, np.ndarray], k: int) -> np.ndarray:
    X, Y, amp, te = tab["X"], tab["Y"], tab["amp"], tab["held"]
    P = np.full_like(Y, np.nan)
    for i in np.flatnonzero(te):
        cand = np.flatnonzero(~te & (amp == amp[i]))
        nb = cand[np.argsort(((X[cand, :-1] - X[i, :-1]) ** 2).sum(1))[:k]]
        with warnings.catch_warnings():  # a neighbour with fewer than 5 spikes leaves NaN columns
            warnings.simplefilter("ignore", RuntimeWarning)
            P[i] = np.nanmean(Y[nb], axis=0)
    return P


def mlp(tab: dict[str, np.ndarray], seed: int, steps: int = 6000) -> np.ndarray:
    import torch

    X, Y, tr = tab["X"], tab["Y"], ~tab["held"]
    isi = np.diff(np.c_[np.zeros(len(Y)), Y], axis=1)
    with np.errstate(invalid="ignore"):
        T = np.log(np.clip(isi, 1e-3, None))
    M = np.isfinite(T)
    mu, sd = np.nanmean(T[tr], 0), np.nanstd(T[tr], 0)
    Xt = torch.tensor(X, dtype=torch.float32)
    Tt = torch.tensor(np.nan_to_num((T - mu) / sd), dtype=torch.float32)
    Mt = torch.tensor(M, dtype=torch.float32)
    net = train_mlp(Xt, np.flatnonzero(tr), 5, lambda out, b: (((out - Tt[b]) ** 2) * Mt[b]).sum() / Mt[b].sum(),
                    seed, steps)
    with torch.no_grad():
        z = net(Xt).numpy() * sd + mu
    return np.cumsum(np.exp(z), axis=1)


def train_mlp(Xt, rows: np.ndarray, n_out: int, loss_of, seed: int, steps: int):  # noqa: ANN001, ANN201
    """3 x 128 GELU MLP on Xt (N, D) -> (N, n_out), AdamW with a cosine schedule, batches of 256 drawn from `rows`;
    loss_of(output, batch index tensor) -> scalar. Shared by the floor benchmarks."""
    import torch

    torch.manual_seed(seed)
    layers: list[torch.nn.Module] = []
    width = Xt.shape[1]
    for _ in range(3):
        layers += [torch.nn.Linear(width, 128), torch.nn.GELU()]
        width = 128
    net = torch.nn.Sequential(*layers, torch.nn.Linear(width, n_out))
    opt = torch.optim.AdamW(net.parameters(), lr=2e-3, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    rng = np.random.default_rng(seed)
    for _ in range(steps):
        b = torch.as_tensor(rng.choice(rows, 256))
        loss = loss_of(net(Xt[b]), b)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    return net


def score(P: np.ndarray, tab: dict[str, np.ndarray]) -> dict[str, float]:
    te = tab["held"]
    e = np.abs(P[te] - tab["Y"][te])
    return {"first5_median_ms": float(np.nanmedian(e)), "first_spike_median_ms": float(np.nanmedian(e[:, 0])),
            "n_spikes": int(np.isfinite(e).sum())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dataset", type=Path, help="the checkpoint's training dataset (noble datagen run)")
    ap.add_argument("--ckpt", type=Path, default=ROOT / "noble/assets/hh_fs")
    ap.add_argument("--seeds", type=int, default=5, help="MLP ensemble size")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    import torch

    torch.set_num_threads(1)
    tab = first5_table(args.dataset, args.ckpt)
    print(f"{(~tab['held']).sum()} training and {tab['held'].sum()} held-out spiking steps")
    rows = {f"kNN k={k}": score(knn(tab, k), tab) for k in (1, 3, 8)}
    preds = []
    for s in range(args.seeds):
        preds.append(mlp(tab, s))
        rows[f"MLP seed {s}"] = score(preds[-1], tab)
    rows["MLP ensemble (mean)"] = score(np.mean(preds, axis=0), tab)
    print(f"{'predictor':24s} {'first 5, median ms':>20s} {'first spike, median ms':>24s}")
    for name, r in rows.items():
        print(f"{name:24s} {r['first5_median_ms']:20.2f} {r['first_spike_median_ms']:24.2f}")
    if args.json:
        args.json.write_text(json.dumps({"dataset": str(args.dataset), "ckpt": str(args.ckpt), "rows": rows},
                                        indent=1))


if __name__ == "__main__":
    main()

"""LIF vs QI-LIF: relative error of predicted AP onset latency across step amplitudes (after Johnson et al.
2025, arXiv:2510.03155, who compare the two on synthetic hippocampal and sensory neuron data).

The paper's synthetic data sets are not available, so the synthetic "recordings" here come from the project's
bio-realistic family: Pospischil et al. (2008) HH cells (regular-spiking pyramidal, our stand-in for the
hippocampal cell, and fast-spiking) driven by steps plus Ornstein-Uhlenbeck current noise, many trials per
amplitude. AP onset = first time dV/dt >= 20 mV/ms after the step starts.

All predictors share the passive parameters measured on the noise-free HH cell (V_rest, input resistance R
and tau_m from a small hyperpolarising step); odd amplitudes are held out, even ones ("fit") calibrate:
  * LIF (rheobase): V_th = V_rest + R I_rh from the cell's measured rheobase, no fitting (classical baseline).
  * LIF (fitted):   V_th fitted (squared relative latency error on the fit amplitudes).
  * QI-LIF:         onset ~ N(mu(I), sigma(I)) (noble.datagen.models.qilif): the mean law (V_th, alpha) fitted
                    with the same loss as the fitted LIF, then the width law (sigma0, k_sigma) by maximum
                    likelihood. Its point prediction is the packet centre mu(I) (the paper's t0); cov95 is the share
                    of trials inside mu +- 1.96 sigma; E[t] is the packet's mean after truncation at zero
                    latency and "Brian2" the mean first-spike latency of the fitted QI-LIF run as one Brian2
                    group (same trials per amplitude): a check of the simulator against the onset law.
Relative error = |predicted - observed mean latency| / observed mean latency.

    .venv/bin/python benchmarks/qilif_paper.py [--trials 100] [--noise-pA 10] [--seed 0]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from scipy import optimize, special

from noble.datagen.models import get
from noble.datagen.simulate import simulate, steps_matrix

HH = get("hh")
LIF = get("lif")
QILIF = get("qilif")

DT_MS = 0.025
STIM_DT_MS = 0.1
T_ON_MS = 50.0
ONSET_DVDT = 20.0  # mV/ms, AP onset criterion
MULTIPLES = np.array([1.1, 1.2, 1.35, 1.5, 1.75, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 8.0])
CELLS = {"regular_spiking (pyramidal, hippocampal stand-in)": "regular_spiking", "fast_spiking": "fast_spiking"}


def hh_rows(preset: str, n: int) -> np.ndarray:
    p = HH.preset_values(preset)
    return np.tile([p[k] for k in HH.param_names()], (n, 1))


def passive_and_rheobase(preset: str) -> dict[str, float]:
    """V_rest, R, tau_m from a -10 pA step and the rheobase (1 pA grid, 300 ms steps) of the noise-free cell."""
    dur = 400.0
    stim = steps_matrix(np.array([-10.0]), T_ON_MS, 300.0, dur, STIM_DT_MS)
    r = simulate(HH, hh_rows(preset, 1), stim, stim_dt_ms=STIM_DT_MS, duration_ms=dur, dt_ms=DT_MS,
                 record_dt_ms=0.1)
    v, t = r.v_mV[0].astype(float), r.t_ms
    v_rest = float(v[(t > T_ON_MS - 5) & (t < T_ON_MS)].mean())
    v_ss = float(v[(t > T_ON_MS + 250) & (t < T_ON_MS + 300)].mean())
    R = (v_ss - v_rest) / -10.0 * 1e3  # mV / pA -> Mohm
    after = (t >= T_ON_MS)
    frac = (v[after] - v_rest) / (v_ss - v_rest)
    tau = float(t[after][np.argmax(frac >= 1 - np.exp(-1))] - T_ON_MS)

    amps = np.arange(0.0, 600.0, 1.0)
    dur = T_ON_MS + 300.0
    stim = steps_matrix(amps, T_ON_MS, 300.0, dur, STIM_DT_MS)
    r = simulate(HH, hh_rows(preset, len(amps)), stim, stim_dt_ms=STIM_DT_MS, duration_ms=dur, dt_ms=DT_MS,
                 record_dt_ms=1.0)
    fires = r.spike_counts > 0
    if not fires.any():
        raise RuntimeError(f"{preset}: no spike below 600 pA")
    return {"V_rest": v_rest, "R": R, "tau_m": tau, "I_rh": float(amps[np.argmax(fires)])}


def synthetic_onsets(preset: str, amps: np.ndarray, trials: int, noise_pA: float, seed: int) -> np.ndarray:
    """(n_amp, trials) AP onset latencies (ms; nan when no AP within the step) of the noisy HH cell."""
    dur = T_ON_MS + 250.0
    I = np.repeat(amps, trials)
    stim = steps_matrix(I, T_ON_MS, 250.0, dur, STIM_DT_MS)
    r = simulate(HH, hh_rows(preset, len(I)), stim, stim_dt_ms=STIM_DT_MS, duration_ms=dur, dt_ms=DT_MS,
                 record_dt_ms=0.05, noise_sigma_pA=noise_pA, noise_tau_ms=5.0, seed=seed)
    dvdt = np.diff(r.v_mV.astype(float), axis=1) / r.record_dt_ms
    t = r.t_ms[:-1]
    on = (dvdt >= ONSET_DVDT) & (t >= T_ON_MS)[None, :]
    lat = np.where(on.any(axis=1), t[np.argmax(on, axis=1)] - T_ON_MS, np.nan)
    return lat.reshape(len(amps), trials)


def qilif_params(cal: dict[str, float], dv_mV: float, alpha: float, sigma0: float, k: float) -> dict[str, float]:
    """QI-LIF on the measured passive cell with threshold V_rest + dv_mV."""
    return {"tau_m": cal["tau_m"], "R": cal["R"], "V_rest": cal["V_rest"], "V_th": cal["V_rest"] + dv_mV,
            "alpha": alpha, "sigma0": sigma0, "k_sigma": k}


def _rel_sq(pred: np.ndarray, obs: np.ndarray) -> float:
    r = (pred - obs) / obs
    return float(np.sum(r**2)) if np.all(np.isfinite(r)) else 1e12


def fit_lif_threshold(cal: dict[str, float], amps: np.ndarray, obs: np.ndarray) -> float:
    """LIF threshold (mV above rest) minimising the squared relative latency error on the fit amplitudes."""
    dv_max = cal["R"] * 1e-3 * amps.min() - 1e-6  # every fit amplitude must stay suprathreshold
    res = optimize.minimize_scalar(
        lambda dv: _rel_sq(LIF.analytic_latency_ms(amps, cal["tau_m"], cal["R"], 0.0, dv), obs),
        bounds=(1e-3, dv_max), method="bounded")
    return float(res.x)


def fit_qilif(cal: dict[str, float], amps: np.ndarray, lat: np.ndarray) -> dict[str, float]:
    """Mean law (threshold, alpha) by the same squared relative error as the fitted LIF, then the width law
    (sigma0, k_sigma) by maximum likelihood of the truncated-normal packet with that mean."""
    obs = np.array([np.nanmean(r) for r in lat])
    dv_cap = cal["R"] * 1e-3 * amps.min()

    def unpack_mean(x: np.ndarray) -> tuple[float, float]:
        alpha = 0.95 * float(special.expit(x[1]))
        return dv_cap * (1 - alpha) * float(special.expit(x[0])), alpha  # keeps amps.min() suprathreshold

    def mean_loss(x: np.ndarray) -> float:
        mu, _ = QILIF.onset_distribution(amps, qilif_params(cal, *unpack_mean(x), 1.0, 1.0))
        return _rel_sq(mu, obs)

    best = min((optimize.minimize(mean_loss, x0, method="Nelder-Mead", options={"xatol": 1e-6, "fatol": 1e-10,
                                                                                  "maxiter": 4000})
                for x0 in ([2.0, -4.0], [2.0, 0.0], [0.0, 1.0])), key=lambda r: r.fun)
    dv, alpha = unpack_mean(best.x)

    def nll(y: np.ndarray) -> float:
        p = qilif_params(cal, dv, alpha, float(np.exp(y[0])), 4.0 * float(special.expit(y[1])))
        total = -sum(QILIF.onset_law(I, p).logpdf(row[np.isfinite(row)]).sum() for I, row in zip(amps, lat))
        return float(total) if np.isfinite(total) else 1e12

    wbest = optimize.minimize(nll, [0.0, 0.0], method="Nelder-Mead")
    return qilif_params(cal, dv, alpha, float(np.exp(wbest.x[0])), 4.0 * float(special.expit(wbest.x[1])))


def simulate_qilif_means(p: dict[str, float], amps: np.ndarray, trials: int, seed: int) -> np.ndarray:
    """Brian2 run of the fitted QI-LIF (one group, trials per amplitude): mean first-spike latency per amplitude."""
    full = QILIF.preset_values("default")
    full.update(p)
    rows = np.tile([full[k] for k in QILIF.param_names()], (len(amps) * trials, 1))
    I = np.repeat(amps, trials)
    dur = T_ON_MS + 250.0
    stim = steps_matrix(I, T_ON_MS, 250.0, dur, STIM_DT_MS)
    r = simulate(QILIF, rows, stim, stim_dt_ms=STIM_DT_MS, duration_ms=dur, dt_ms=DT_MS, record_dt_ms=1.0,
                 seed=seed)
    lat = np.array([s[0] - T_ON_MS + DT_MS / 2 if len(s) else np.nan for s in r.spike_times_ms])
    return np.nanmean(lat.reshape(len(amps), trials), axis=1)


def run_cell(label: str, preset: str, trials: int, noise_pA: float, seed: int) -> dict[str, float]:
    t0 = time.perf_counter()
    cal = passive_and_rheobase(preset)
    amps = MULTIPLES * cal["I_rh"]
    lat = synthetic_onsets(preset, amps, trials, noise_pA, seed)
    fit_rows = np.arange(len(amps)) % 2 == 0
    qp = fit_qilif(cal, amps[fit_rows], lat[fit_rows])
    sim_mean = simulate_qilif_means(qp, amps, trials, seed + 1)

    obs = np.nanmean(lat, axis=1)
    sd = np.nanstd(lat, axis=1)
    n_ok = np.isfinite(lat).sum(axis=1)
    t_lif = LIF.analytic_latency_ms(amps, cal["tau_m"], cal["R"], 0.0, cal["R"] * 1e-3 * cal["I_rh"])
    dv_fit = fit_lif_threshold(cal, amps[fit_rows], obs[fit_rows])
    t_lif_fit = LIF.analytic_latency_ms(amps, cal["tau_m"], cal["R"], 0.0, dv_fit)
    mu, sigma = QILIF.onset_distribution(amps, qp)
    expect = np.array([QILIF.onset_law(I, qp).mean() for I in amps])  # packet mean after truncation at 0
    err = {name: np.abs(pred - obs) / obs * 100 for name, pred in
           (("lif", t_lif), ("lif_fit", t_lif_fit), ("qi", mu))}
    cover = np.array([np.mean(np.abs(row[np.isfinite(row)] - m) <= 1.96 * s) * 100
                      for row, m, s in zip(lat, mu, sigma)])

    print(f"\n=== {label}: HH preset '{preset}', {trials} trials/amplitude, OU noise {noise_pA} pA ===")
    print(f"passive: V_rest {cal['V_rest']:.2f} mV, R {cal['R']:.1f} Mohm, tau_m {cal['tau_m']:.2f} ms; "
          f"rheobase {cal['I_rh']:.0f} pA")
    print(f"LIF (rheobase): V_th - V_rest {cal['R'] * 1e-3 * cal['I_rh']:.2f} mV; LIF (fitted): {dv_fit:.2f} mV")
    print(f"QI-LIF fit: V_th - V_rest {qp['V_th'] - qp['V_rest']:.2f} mV, alpha {qp['alpha']:.3f}, "
          f"sigma0 {qp['sigma0']:.2f} ms, k_sigma {qp['k_sigma']:.2f} (rheobase {float(QILIF.rheobase_pA(qp)):.0f} pA)")
    print(f"{'I pA':>6} {'I/Irh':>5} {'set':>4} {'n':>3} {'obs ms':>7} {'sd':>5} | {'LIF-rh':>7} {'err%':>6} | "
          f"{'LIF-fit':>7} {'err%':>6} | {'QI mu':>6} {'sigma':>5} {'err%':>6} {'cov95':>5} {'E[t]':>6} {'Brian2':>6}")
    for j in range(len(amps)):
        print(f"{amps[j]:6.0f} {MULTIPLES[j]:5.2f} {'fit' if fit_rows[j] else 'test':>4} {n_ok[j]:3d} "
              f"{obs[j]:7.2f} {sd[j]:5.2f} | {t_lif[j]:7.2f} {err['lif'][j]:6.1f} | {t_lif_fit[j]:7.2f} "
              f"{err['lif_fit'][j]:6.1f} | {mu[j]:6.2f} {sigma[j]:5.2f} {err['qi'][j]:6.1f} {cover[j]:5.0f} "
              f"{expect[j]:6.2f} {sim_mean[j]:6.2f}")
    test = ~fit_rows
    out = {k: float(v[test].mean()) for k, v in err.items()}
    print(f"mean relative error on held-out amplitudes: LIF (rheobase) {out['lif']:.1f}%, LIF (fitted) "
          f"{out['lif_fit']:.1f}%, QI-LIF {out['qi']:.1f}%   [{time.perf_counter() - t0:.0f} s]")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=100)
    ap.add_argument("--noise-pA", type=float, default=10.0)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    rows = {label: run_cell(label, preset, args.trials, args.noise_pA, args.seed) for label, preset in CELLS.items()}
    print("\nsummary: mean relative error of predicted AP onset latency, held-out amplitudes")
    print(f"{'cell':<52} {'LIF (rheobase)':>14} {'LIF (fitted)':>12} {'QI-LIF':>7}")
    for label, e in rows.items():
        print(f"{label:<52} {e['lif']:13.1f}% {e['lif_fit']:11.1f}% {e['qi']:6.1f}%")


if __name__ == "__main__":
    main()

"""QI-LIF (Johnson et al. 2025): the onset law, and real Brian2 runs whose first spikes follow it."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from noble.datagen.models import get
from noble.datagen.models.qilif import QILIF, step_summary
from noble.datagen.simulate import simulate, steps_matrix

LIF = get("lif")
DT_MS = 0.025  # simulation step
STIM_DT_MS = 0.1
T_ON_MS = 5.0
# Brian2 bakes the TimedArray's shape into the generated code: two tests share (N_RUN, T_RUN_MS) so the second
# reuses the first one's compiled objects instead of compiling again.
N_RUN = 211
T_RUN_MS = 120.0


def _rows(preset: str, n: int, **overrides: float) -> np.ndarray:
    p = QILIF.preset_values(preset, overrides)
    return np.tile([p[k] for k in QILIF.param_names()], (n, 1))


def _first_latency_ms(res, t_on_ms: float = T_ON_MS) -> np.ndarray:
    """First-spike latency per neuron, centred in its time step (Brian2 reports the step's start)."""
    return np.array([s[0] - t_on_ms + DT_MS / 2 if len(s) else np.inf for s in res.spike_times_ms])


# ---- the onset law (no simulation) ------------------------------------------------------------------------

def test_registered_with_presets() -> None:
    assert get("qilif") is QILIF
    assert {"hippocampal", "sensory"} <= set(QILIF.describe()["presets"])
    with pytest.raises(ValueError, match="alpha"):
        QILIF.preset_values("default", {"alpha": 1.0})


def test_classical_limit_mu_is_lif_latency_and_sigma_falls_with_drive() -> None:
    p = QILIF.preset_values("hippocampal")
    I = np.array([100.0, 150.0, 151.0, 200.0, 300.0, 600.0, 3000.0])
    mu, sigma = QILIF.onset_distribution(I, p)
    t_lif = LIF.analytic_latency_ms(I, p["tau_m"], p["R"], p["V_rest"], p["V_th"])
    np.testing.assert_allclose(mu, t_lif, rtol=1e-12)  # alpha = 0: exactly the LIF latency, inf at/below I_rh
    assert np.all(np.isinf(mu[:2])) and np.all(np.isnan(sigma[:2]))
    assert np.all(np.diff(sigma[2:]) < 0)
    np.testing.assert_allclose(sigma[2:], p["sigma0"] * 150.0 / I[2:])  # k_sigma = 1: sigma0 I_rh / I
    assert QILIF.rheobase_pA(p) == pytest.approx(150.0)


def test_accelerated_mu_matches_paper_formula() -> None:
    """mu(I) equals the SA-LIF closed form as published, -tau/(1+aS) ln(1 - V_th(1+aS)/(I R_m)) with V_th
    from rest, evaluated independently here; it exceeds the LIF latency and the rheobase rises to I_rh/(1-a)."""
    p = QILIF.preset_values("sensory", {"alpha": 0.3})
    I_rh = (p["V_th"] - p["V_rest"]) / p["R"] * 1e3
    I = np.array([1.5, 2.0, 4.0, 10.0]) * I_rh
    S = I / I_rh
    paper = -p["tau_m"] / (1 + 0.3 * S) * np.log(1 - (p["V_th"] - p["V_rest"]) * (1 + 0.3 * S) / (I * p["R"] * 1e-3))
    mu, _ = QILIF.onset_distribution(I, p)
    np.testing.assert_allclose(mu, paper, rtol=1e-12)
    assert np.all(mu > LIF.analytic_latency_ms(I, p["tau_m"], p["R"], p["V_rest"], p["V_th"]))
    assert QILIF.rheobase_pA(p) == pytest.approx(I_rh / 0.7)
    assert np.isinf(QILIF.onset_distribution(1.4 * I_rh, p)[0])  # above I_rh but below I_rh / (1 - alpha)


def test_step_summary() -> None:
    stim = steps_matrix(np.array([200.0, -50.0, 0.0]), 10.0, 20.0, 50.0, 0.1)
    s = step_summary(stim, 0.1)
    np.testing.assert_allclose(s.t_on_ms[0], 10.0)
    np.testing.assert_allclose(s.t_off_ms[0], 30.0)
    np.testing.assert_allclose(s.amp_pA, [200.0, 0.0, 0.0])
    # a step held to the end of the array lasts for ever (a TimedArray holds its last value)
    assert np.isinf(step_summary(steps_matrix(np.array([80.0]), 5.0, 100.0, 50.0, 0.1), 0.1).t_off_ms[0])
    # a noisy step: onset within a sample or two, amplitude within noise / sqrt(samples)
    rng = np.random.default_rng(3)
    noisy = steps_matrix(np.full(50, 300.0), 10.0, 30.0, 50.0, 0.1) + rng.normal(0, 20.0, (50, 500))
    s = step_summary(noisy, 0.1)
    assert np.all(np.abs(s.t_on_ms - 10.0) <= 0.2)
    assert np.all(np.abs(s.amp_pA - 300.0) < 5.0)


# ---- Brian2 runs -------------------------------------------------------------------------------------------

def test_first_spike_onsets_follow_the_wave_packet() -> None:
    """2000 trials per condition in ONE group: first-spike latencies are distributed as the truncated packet
    N(mu(I), sigma(I)) (KS p > 0.01) at three drives, including an accelerated (alpha > 0) cell; the same
    samples reject the deterministic LIF latency and a packet shifted by half a width."""
    k = 2000
    conds = [("hippocampal", {}, 1.3), ("hippocampal", {}, 3.0), ("sensory", {"alpha": 0.3}, 2.0)]
    params, amps, laws = [], [], []
    for preset, over, x in conds:
        rows = _rows(preset, k, **over)
        I = x * float(QILIF.rheobase_pA(QILIF.preset_values(preset, over)))
        params.append(rows)
        amps.append(np.full(k, I))
        laws.append(QILIF.onset_law(I, QILIF.preset_values(preset, over)))
    params, amps = np.vstack(params), np.concatenate(amps)
    total = T_ON_MS + max(law.ppf(1 - 1e-6) for law in laws) + 2.0
    stim = steps_matrix(amps, T_ON_MS, total, total, STIM_DT_MS)
    res = simulate(QILIF, params, stim, stim_dt_ms=STIM_DT_MS, duration_ms=total, dt_ms=DT_MS,
                   record_dt_ms=1.0, seed=11)
    lat = _first_latency_ms(res)
    assert np.all(np.isfinite(lat))
    for j, ((preset, over, x), law) in enumerate(zip(conds, laws)):
        sample = lat[j * k:(j + 1) * k]
        p_val = stats.kstest(sample, law.cdf).pvalue
        print(f"{preset} {over} I={x:.1f} I_rh: mean {sample.mean():.3f} (packet {law.mean():.3f}) ms, "
              f"sd {sample.std():.3f} (packet {law.std():.3f}) ms, KS p={p_val:.3f}")
        assert p_val > 0.01
        mu, sigma = law.kwds["loc"], law.kwds["scale"]
        shifted = stats.norm(mu + 0.5 * sigma, sigma)
        assert stats.kstest(sample, shifted.cdf).pvalue < 1e-6
        if over.get("alpha"):
            pp = QILIF.preset_values(preset, over)
            t_lif = LIF.analytic_latency_ms(amps[j * k], pp["tau_m"], pp["R"], pp["V_rest"], pp["V_th"])
            assert abs(sample.mean() - t_lif) > 10 * sample.std() / np.sqrt(k)


def test_classical_limit_and_no_spike_below_rheobase() -> None:
    """sigma0 = 0 (alpha = 0) reproduces the classical LIF spike train to a step; with sigma0 > 0
    large drive squeezes the packet onto the LIF latency; nothing fires at or below rheobase and the trace
    stays below threshold there."""
    p = QILIF.preset_values("hippocampal")
    I_rh = float(QILIF.rheobase_pA(p))
    sub = np.array([-100.0, 0.0, 0.5, 0.9, 0.999]) * I_rh
    supra = np.array([1.2, 2.0, 5.0]) * I_rh
    strong = np.full(N_RUN - 11, 12.0 * I_rh)  # sigma = sigma0 / 12**2 with k_sigma = 2
    amps = np.concatenate([sub, supra, supra, strong])
    n_sub, n_supra = len(sub), len(supra)
    rows = _rows("hippocampal", len(amps), k_sigma=2.0)
    rows[n_sub:n_sub + n_supra, QILIF.param_names().index("sigma0")] = 0.0
    total = T_RUN_MS
    stim = steps_matrix(amps, T_ON_MS, 100.0, total, STIM_DT_MS)
    res = simulate(QILIF, rows, stim, stim_dt_ms=STIM_DT_MS, duration_ms=total, dt_ms=DT_MS,
                   record_dt_ms=0.1, seed=5)

    # below rheobase: silent, and the recorded membrane never reaches threshold
    assert res.spike_counts[:n_sub].sum() == 0
    assert res.v_mV[:n_sub].max() < p["V_th"]

    # sigma0 = 0: the first spike sits at the analytic LIF latency and every later ISI is the LIF's, i.e. the
    # whole spike train is the classical LIF's (the LIF family is held to the same analytic values)
    t_lif = LIF.analytic_latency_ms(supra, p["tau_m"], p["R"], p["V_rest"], p["V_th"])
    isi = 1e3 / LIF.analytic_rate_Hz(supra, p["tau_m"], p["R"], p["V_rest"], p["V_th"], p["V_reset"], p["t_ref"])
    lat = _first_latency_ms(res)[n_sub:n_sub + n_supra]
    np.testing.assert_allclose(lat, t_lif, atol=DT_MS)
    for s, want in zip(res.spike_times_ms[n_sub:n_sub + n_supra], isi):
        assert len(s) >= 3
        np.testing.assert_allclose(np.diff(s), want, atol=2 * DT_MS)

    # large drive with k_sigma = 2: the packet collapses onto the LIF latency
    strong_lat = _first_latency_ms(res)[n_sub + 2 * n_supra:]
    t_strong = float(LIF.analytic_latency_ms(strong[0], p["tau_m"], p["R"], p["V_rest"], p["V_th"]))
    assert abs(strong_lat.mean() - t_strong) < 0.02
    assert strong_lat.std() < 0.05


def test_reproducible_for_a_seed() -> None:
    rows = _rows("sensory", N_RUN)
    amps = np.linspace(0.5, 3.0, N_RUN) * float(QILIF.rheobase_pA(QILIF.preset_values("sensory")))
    stim = steps_matrix(amps, T_ON_MS, 100.0, T_RUN_MS, STIM_DT_MS)
    kw = dict(stim_dt_ms=STIM_DT_MS, duration_ms=T_RUN_MS, dt_ms=DT_MS, record_dt_ms=1.0)
    a = simulate(QILIF, rows, stim, seed=1, **kw)
    b = simulate(QILIF, rows, stim, seed=1, **kw)
    c = simulate(QILIF, rows, stim, seed=2, **kw)
    first = lambda r: _first_latency_ms(r)  # noqa: E731
    np.testing.assert_array_equal(first(a), first(b))
    fin = np.isfinite(first(a))
    assert fin.sum() > 100 and not np.array_equal(first(a)[fin], first(c)[fin])

"""The per-trace feature definitions documented in noble/datagen/features.py, pinned on synthetic traces whose
answers are known by construction (no simulation): what eFEL measures, over which window, with which setting."""

from __future__ import annotations

import numpy as np
import pytest

from noble.datagen.features import trace_features

DT = 0.1
START, END = 100.0, 250.0


def _spiking_trace() -> np.ndarray:
    t = np.arange(0.0, 300.0, DT)
    v = np.full_like(t, -70.0)
    v[(t >= 90.0) & (t < 100.0)] = -65.0  # the last 10 % before the step: voltage_base
    v[(t >= 20.0) & (t < 25.0)] = -60.0  # earlier: outside voltage_base's window
    for t0 in (50.0, 120.0, 140.0, 170.0, 200.0, 260.0):  # peaks; 50 and 260 outside the window
        v = v + 90.0 * np.exp(-(((t - t0) / 0.3) ** 2))
    return v


def test_spike_features_are_peak_based_inside_the_window() -> None:
    f = {k: float(x[0]) for k, x in trace_features(_spiking_trace()[None], DT, START, END, 100.0).items()}
    assert f["spike_count"] == 4  # 120, 140, 170, 200: not the spikes before or after the step
    assert f["rate_Hz"] == pytest.approx(4 / 0.150)  # over the whole window, not 1 / ISI
    assert f["first_spike_latency_ms"] == pytest.approx(20.0, abs=1e-6)  # to the PEAK at 120 ms
    assert f["v_rest_mV"] == pytest.approx(-65.0, abs=0.1)  # mean over [0.9 stim_start, stim_start], not -70
    # ISIs 20, 30, 30: the first is dropped (ignore_first_ISI), so no variation and no adaptation left;
    # keeping it would give a CV of 0.2 and an adaptation index of 0.1.
    assert f["isi_cv"] == pytest.approx(0.0, abs=1e-9)
    assert f["adaptation_index"] == pytest.approx(0.0, abs=1e-9)
    for k in ("input_resistance_MOhm", "tau_m_ms", "sag_ratio"):  # passive: hyperpolarising steps only
        assert np.isnan(f[k])


def test_passive_features_of_a_hyperpolarising_step() -> None:
    t = np.arange(0.0, 400.0, DT)
    start, end, tau = 100.0, 300.0, 20.0
    v = np.full_like(t, -70.0)
    on = (t >= start) & (t < end)
    v[on] = -70.0 - 6.0 * (1.0 - np.exp(-(t[on] - start) / tau)) - 2.0 * np.exp(-(((t[on] - 140.0) / 15.0) ** 2))
    v_end = -70.0 - 6.0 * (1.0 - np.exp(-(end - start) / tau))
    off = t >= end
    v[off] = -70.0 + (v_end + 70.0) * np.exp(-(t[off] - end) / tau)
    f = {k: float(x[0]) for k, x in trace_features(v[None], DT, start, end, -50.0).items()}
    steady = v[(t >= end - 0.1 * (end - start)) & (t < end)].mean()  # the last 10 % of the step
    lowest = v[on].min()
    assert f["input_resistance_MOhm"] == pytest.approx((steady + 70.0) / -0.050, rel=1e-3)  # mV / nA
    assert f["sag_ratio"] == pytest.approx((steady - lowest) / (-70.0 - lowest), rel=1e-3)
    assert f["tau_m_ms"] == pytest.approx(tau, rel=0.02)  # the decay AFTER the step
    assert f["spike_count"] == 0 and np.isnan(f["first_spike_latency_ms"])


@pytest.mark.parametrize("offset_ms", [0.0, 0.025, 0.05, 0.075])
def test_ap_half_width_is_not_quantised_to_the_record_step(offset_ms: float) -> None:
    """APs of half-width 0.35 ms (Gaussian, full width at half maximum) sampled at 0.1 ms, their peaks at any
    phase of the sampling grid: measured within 0.03 ms. eFEL's default interp_step (0.1 ms) gave 0.3 or 0.4."""
    width = 0.35
    sigma = width / (2.0 * np.sqrt(2.0 * np.log(2.0)))
    t = np.arange(0.0, 300.0, DT)
    v = np.full_like(t, -70.0)
    for t0 in (130.0, 160.0, 190.0):
        v = v + 90.0 * np.exp(-((t - t0 - offset_ms) ** 2) / (2.0 * sigma**2))
    f = trace_features(v[None], DT, START, END, 100.0)
    assert f["spike_count"][0] == 3
    assert f["ap_half_width_ms"][0] == pytest.approx(width, abs=0.03)

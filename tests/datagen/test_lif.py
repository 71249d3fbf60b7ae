"""LIF physics against its closed forms: first-spike latency, rheobase and steady rate."""

from __future__ import annotations

import numpy as np

from noble.datagen.models import get
from noble.datagen.simulate import simulate, steps_matrix

LIF = get("lif")
DT_MS = 0.025


def _params(n: int, **over: float) -> np.ndarray:
    values = LIF.preset_values("default", over)
    return np.tile([values[k] for k in LIF.param_names()], (n, 1))


def test_first_spike_latency_matches_analytic_within_one_step() -> None:
    p = LIF.preset_values("default")
    rheobase_pA = (p["V_th"] - p["V_rest"]) / p["R"] * 1e3  # mV / Mohm = nA -> pA
    amps = np.concatenate([[0.5 * rheobase_pA, 0.99 * rheobase_pA], rheobase_pA * np.linspace(1.02, 4.0, 14)])
    start = 50.0
    res = simulate(LIF, _params(len(amps)), steps_matrix(amps, start, 400, 450, DT_MS), stim_dt_ms=DT_MS,
                   duration_ms=450, dt_ms=DT_MS, record_dt_ms=DT_MS)
    expected = LIF.analytic_latency_ms(amps, p["tau_m"], p["R"], p["V_rest"], p["V_th"])
    for amp, spikes, t_lif in zip(amps, res.spike_times_ms, expected):
        if not np.isfinite(t_lif):
            assert len(spikes) == 0, f"spiked below rheobase at {amp:.1f} pA"
            continue
        assert len(spikes) > 0, f"no spike at {amp:.1f} pA (analytic latency {t_lif:.2f} ms)"
        latency = spikes[0] - start
        # Brian2 stamps a spike with the start time of the step during which V crossed threshold.
        assert abs(latency - t_lif) <= DT_MS + 1e-9, (amp, latency, t_lif)


def test_steady_rate_matches_analytic_within_one_percent() -> None:
    p = LIF.preset_values("default")
    amps = np.array([250.0, 300.0, 400.0, 600.0, 900.0])
    duration = 2000.0
    res = simulate(LIF, _params(len(amps)), steps_matrix(amps, 0.0, duration, duration, 0.1), stim_dt_ms=0.1,
                   duration_ms=duration, dt_ms=DT_MS, record_dt_ms=0.1)
    analytic = LIF.analytic_rate_Hz(amps, p["tau_m"], p["R"], p["V_rest"], p["V_th"], p["V_reset"], p["t_ref"])
    for amp, spikes, rate in zip(amps, res.spike_times_ms, analytic):
        steady = 1000.0 / np.mean(np.diff(spikes[1:]))  # skip the first (from rest) interval
        assert abs(steady - rate) / rate < 0.01, (amp, steady, rate)


def test_trace_shows_stereotyped_spike_peak() -> None:
    res = simulate(LIF, _params(1, V_peak=25.0), steps_matrix([400.0], 10, 200, 220, 0.1), stim_dt_ms=0.1,
                   duration_ms=220, dt_ms=DT_MS, record_dt_ms=DT_MS)
    assert len(res.spike_times_ms[0]) >= 3
    assert abs(float(res.v_mV.max()) - 25.0) < 0.5
    # The drawn waveform decays back below threshold within a few tau_spike.
    k = int(round(res.spike_times_ms[0][0] / DT_MS))
    assert res.v_mV[0, k + int(2.0 / DT_MS)] < -50.0

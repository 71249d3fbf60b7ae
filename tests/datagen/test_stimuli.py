"""Stimulus waveforms are what their parameters say, and OU noise has the stated statistics."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from noble.datagen.stimuli import Chirp, FISweep, Noise, Ramp, ShortSquare, Step, Waveform, ou_noise, render


def test_step_window_is_half_open_on_the_grid() -> None:
    w = render(Step(amplitude_pA=50, start_ms=1.0, duration_ms=2.0), 5.0, 0.5)
    np.testing.assert_array_equal(w, [0, 0, 50, 50, 50, 50, 0, 0, 0, 0])
    assert render(ShortSquare(amplitude_pA=500, start_ms=10), 20, 0.1).sum() == pytest.approx(500 * 30)


def test_ramp_slope() -> None:
    w = render(Ramp(slope_pA_per_s=100.0, start_ms=100, duration_ms=1000), 1200, 0.1)
    t = np.arange(len(w)) * 0.1
    on = (t >= 100) & (t < 1100)
    slope = np.polyfit(t[on] / 1000.0, w[on], 1)[0]
    assert slope == pytest.approx(100.0, rel=1e-6) and w[~on].max() == 0


def test_chirp_instantaneous_frequency_sweeps_linearly() -> None:
    c = Chirp(amplitude_pA=10, f0_Hz=2, f1_Hz=20, start_ms=0, duration_ms=2000)
    w = render(c, 2000, 0.1)
    crossings = np.flatnonzero(np.diff(np.signbit(w)))  # zero crossings: 2 per period
    t = crossings * 0.1 / 1000.0
    f_inst = 0.5 / np.diff(t)
    mid = (t[1:] + t[:-1]) / 2
    np.testing.assert_allclose(f_inst, 2 + (20 - 2) * mid / 2.0, rtol=0.05)
    assert np.abs(w).max() == pytest.approx(10, rel=1e-3)


def test_waveform_is_interpolated_onto_the_grid() -> None:
    w = render(Waveform(values_pA=[0, 10, 20], dt_ms=1.0, start_ms=1.0), 5, 0.5)
    np.testing.assert_allclose(w, [0, 0, 0, 5, 10, 15, 20, 0, 0, 0])
    with pytest.raises(ValidationError, match="finite"):
        Waveform(values_pA=[0, float("nan")], dt_ms=1.0)


def test_ou_noise_statistics() -> None:
    rng = np.random.default_rng(0)
    x = ou_noise(400, 5000, 0.1, 5.0, 30.0, rng)
    assert x.std() == pytest.approx(30.0, rel=0.03)
    lag = 50  # 5 ms = one correlation time
    r = np.mean(x[:, 1000] * x[:, 1000 + lag]) / np.mean(x[:, 1000] ** 2)
    assert r == pytest.approx(np.exp(-1), abs=0.08)
    # Frozen noise stimulus: same seed, same waveform.
    a = render(Noise(sd_pA=20, seed=5, duration_ms=100), 200, 0.1)
    b = render(Noise(sd_pA=20, seed=5, duration_ms=100), 200, 0.1)
    np.testing.assert_array_equal(a, b)


def test_fi_sweep_expands_and_rejects_non_numbers() -> None:
    sweep = FISweep(amplitudes_pA=[-110, 50, 250])
    assert [s.amplitude_pA for s in sweep.expand()] == [-110, 50, 250]
    with pytest.raises(ValidationError, match="amplitudes_pA"):
        FISweep(amplitudes_pA=[10, float("inf")])

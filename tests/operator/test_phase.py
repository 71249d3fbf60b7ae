"""The F-I phase prior (noble/operator/phase.py): the drive clock, the onset warp, the F-I parabola of the
features, and the warp fit recovering a known warp from spike trains."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from noble.operator.data import derived_feature, quadratic_fi
from noble.operator.phase import (drive_clock_ms, fit_phase_warp, phase_rate_Hz, rate_Hz, spike_times_ms,
                                  step_phase, warp_factor)

NAMES = ["I_thr_pA", "fi_lin_Hz_per_pA", "fi_quad_Hz_per_pA2"]


def test_drive_clock_restarts_at_every_onset() -> None:
    on = torch.tensor([[0, 1, 1, 1, 0, 0, 1, 1]], dtype=torch.bool)
    assert drive_clock_ms(on, 0.5).tolist() == [[0.0, 0.5, 1.0, 1.5, 0.0, 0.0, 0.5, 1.0]]
    assert drive_clock_ms(torch.ones(1, 3, dtype=torch.bool), 1.0).tolist() == [[1.0, 2.0, 3.0]]


def test_warp_is_silent_for_the_delay_then_relaxes_to_its_gain() -> None:
    s = torch.tensor([0.0, 9.9, 10.1, 1000.0])
    g = warp_factor(s, [1.0, 20.0, 10.0, 0.9])
    assert g[:2].tolist() == [0.0, 0.0]
    assert g[2].item() == pytest.approx(0.9 * (1 + np.exp(-0.1 / 20)), rel=1e-6)  # fast first ISIs
    assert g[3].item() == pytest.approx(0.9, rel=1e-6)  # steady rate
    assert torch.equal(warp_factor(s, None), torch.ones(4))


def test_quadratic_rate_is_zero_below_rheobase_and_the_parabola_above() -> None:
    f = torch.tensor([[100.0, 0.1, 2e-4]])
    stim = torch.tensor([[50.0, 100.0, 200.0, 400.0]])
    r = rate_Hz(f, NAMES, stim, "quadratic")
    torch.testing.assert_close(r, torch.tensor([[0.0, 0.0, 0.1 * 100 + 2e-4 * 1e4, 0.1 * 300 + 2e-4 * 9e4]]))


def test_step_phase_counts_the_features_rate_times_the_duration() -> None:
    """With the warp's gain, phi at the end of a 1 s step equals rate x 1 s whatever A, tau, delay; the torch
    phase (cumulative sum on the 0.2 ms grid) matches the closed form."""
    dt, T = 0.2, 6000
    t = torch.arange(T) * dt
    stim = 300.0 * ((t >= 100.0) & (t < 1100.0)).double()[None]
    f = torch.tensor([[100.0, 0.1, 2e-4]], dtype=torch.float64)
    rate = float(rate_Hz(f, NAMES, torch.tensor([[300.0]], dtype=torch.float64), "quadratic"))  # 28 Hz
    A, tau, delay = 1.2, 25.0, 8.0
    gain = 1000.0 / (1000.0 - delay + A * tau * (1 - np.exp(-(1000.0 - delay) / tau)))
    warp = [A, tau, delay, gain]
    phi = torch.cumsum(phase_rate_Hz(f, NAMES, stim, "quadratic", warp, dt), -1)[0].numpy() * dt / 1000
    assert phi[int(1100 / dt) - 1] == pytest.approx(rate * 1.0, abs=0.01)
    s = np.array([5.0, 50.0, 400.0])
    np.testing.assert_allclose(phi[((100 + s) / dt).astype(int) - 1],
                               step_phase(rate, s, warp), atol=0.01)
    assert phi[int(100 / dt)] == 0.0 and step_phase(rate, np.array([delay]), warp)[0] == 0.0


def test_fit_phase_warp_recovers_a_known_warp() -> None:
    """Spike k of each step at phi = k + c under a known warp; the fit gets A, tau, delay back."""
    true = [1.1, 22.0, 9.8]
    grid = np.arange(0.0, 1000.0, 0.01)
    gain = 1000.0 / (1000.0 - true[2] + true[0] * true[1] * (1 - np.exp(-(1000.0 - true[2]) / true[1])))
    trains = []
    for rate in (12.0, 25.0, 47.0, 80.0):
        phi = step_phase(rate, grid, true + [gain])
        k = np.arange(0, int(phi[-1] - 0.3))
        trains.append((rate, np.interp(k + 0.3, phi, grid)))  # c = 0.3
    (A, tau, delay, g), c = fit_phase_warp(trains, 1000.0)
    assert c == pytest.approx(0.3, abs=0.01)
    assert (A, tau, delay) == pytest.approx(tuple(true), rel=0.02)
    assert g == pytest.approx(gain, rel=1e-3)
    with pytest.raises(ValueError, match="no suprathreshold"):
        fit_phase_warp([(0.0, np.array([]))], 1000.0)


def test_quadratic_fi_recovers_a_parabola_through_rheobase() -> None:
    amps = np.array([-50.0, 60.0, 120.0, 180.0, 240.0, 300.0])
    rate = np.where(amps > 100, 0.12 * (amps - 100) + 3e-4 * (amps - 100) ** 2, 0.0)
    lin, quad = quadratic_fi(amps, rate, 100.0)
    assert (lin, quad) == pytest.approx((0.12, 3e-4), rel=1e-6)
    assert derived_feature("fi_quad_Hz_per_pA2", amps, rate, 100.0) == pytest.approx(3e-4, rel=1e-6)
    assert np.isnan(quadratic_fi(amps[:3], rate[:3], 100.0)[0])  # one suprathreshold step: undefined


def test_spike_times_are_upward_crossings_inside_the_window() -> None:
    v = np.full(100, -70.0)
    v[[10, 30, 31, 90]] = 20.0
    np.testing.assert_allclose(spike_times_ms(v, 1.0, 5.0, 80.0), [10.0, 30.0])


def test_spike_clock_measures_time_to_and_from_the_predicted_spikes() -> None:
    """A 50 Hz phase with spikes at phi = k + 0.25: 5 ms after a spike exp(-t_since/tau) = exp(-5/tau), 15 ms
    before the next exp(-t_until/tau) = exp(-15/tau); before the first spike and without drive there is none."""
    from noble.operator.phase import CLOCK_TAUS_MS, spike_clock

    dt = 0.5
    t = torch.arange(0, 100, dt)
    rate = torch.full_like(t, 50.0)
    rate[t >= 80] = 0.0  # drive off at 80 ms
    phi = torch.cumsum(rate, 0) * dt / 1000.0
    ch = spike_clock(phi[None], rate[None], 0.25)[0]
    n = len(CLOCK_TAUS_MS)
    i = int(torch.nonzero(torch.isclose(phi, torch.tensor(1.5))).flatten()[0])  # 5 ms past the spike at 1.25
    for j, tau in enumerate(CLOCK_TAUS_MS):
        assert ch[j, i].item() == pytest.approx(np.exp(-5.0 / tau), rel=1e-3)
        assert ch[n + j, i].item() == pytest.approx(np.exp(-15.0 / tau), rel=1e-3)
    early = phi < 0.25
    assert torch.all(ch[:n, early] == 0) and torch.all(ch[n:, early] > 0)  # no spike yet, one coming
    assert torch.all(ch[:, t >= 80] == 0)  # no drive: no spike clock
    x = phi.clone().requires_grad_(True)  # differentiable in the phase (the fit descends through it)
    spike_clock(x[None], rate[None], 0.25)[0, 0, i].backward()
    assert x.grad[i] != 0


def test_first_spike_latency_prior_puts_the_first_spike_at_L_and_the_fits_recover_it() -> None:
    """With first_spike_latency [a, b], phi ramps to spike_phase by L = a r^-b (the first spike) and then turns
    at the warped rate; fit_first_spike_latency and fit_phase_warp_after_first_spike get a, b, A, tau, gain
    back from spike trains made that way."""
    from noble.operator.phase import fit_first_spike_latency, fit_phase_warp_after_first_spike

    a, b, A, tau, gain = 90.0, 0.55, 0.8, 30.0, 0.97
    dt, T = 0.05, 24000
    t = torch.arange(T, dtype=torch.float64) * dt
    trains = []
    for amp in (150.0, 250.0, 390.0):
        stim = (amp * ((t >= 100.0) & (t < 1100.0)).double())[None]
        f = torch.tensor([[100.0, 0.1, 2e-4]], dtype=torch.float64)
        rate = float(rate_Hz(f, NAMES, torch.tensor([[amp]], dtype=torch.float64), "quadratic"))
        r = phase_rate_Hz(f, NAMES, stim, "quadratic", [A, tau, 0.0, gain], dt, [a, b], 0.5)
        phi = (torch.cumsum(r, -1)[0] * dt / 1000.0).numpy()
        x = phi - 0.5
        k = np.flatnonzero(np.floor(x[1:]) > np.floor(x[:-1])) + 1  # crossings of 0.5 + k
        spikes = k * dt - 100.0
        assert spikes[0] == pytest.approx(a * rate ** (-b), abs=2 * dt)
        trains.append((rate, spikes))
    assert fit_first_spike_latency(trains) == pytest.approx([a, b], rel=0.02)
    A2, tau2, _, gain2 = fit_phase_warp_after_first_spike(trains, [a, b])
    assert (A2, tau2, gain2) == pytest.approx((A, tau, gain), rel=0.05)

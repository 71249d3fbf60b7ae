"""AP measurements on synthetic traces whose answers are known in closed form (noble/operator/ap_metrics.py)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import brentq

from noble.operator.ap_metrics import DVDT_THRESHOLD, find_aps, match_aps, stunted_peaks

BASE = -65.0


def gaussian_train(t: np.ndarray, times: list[float], heights: list[float], sigma: float = 0.3,
                   base: float = BASE) -> np.ndarray:
    v = np.full_like(t, base)
    for t0, h in zip(times, heights):
        v += (h - base) * np.exp(-0.5 * ((t - t0) / sigma) ** 2)
    return v


def gaussian_threshold_and_half_width(amp: float, sigma: float) -> tuple[float, float]:
    """Continuous answer for a Gaussian AP of amplitude `amp` over a flat baseline: the rising-phase point
    where dV/dt = DVDT_THRESHOLD (as height g * amp above the baseline) and the width at half the height
    between that threshold and the peak."""
    u = brentq(lambda u: amp * u / sigma * np.exp(-0.5 * u * u) - DVDT_THRESHOLD, 1.0, 20.0)
    g = np.exp(-0.5 * u * u)
    return g * amp, 2 * sigma * np.sqrt(2 * np.log(2 / (1 + g)))


def test_gaussian_ap_peak_threshold_and_half_width() -> None:
    dt, sigma, t0, peak = 0.005, 0.4, 10.0, 30.0
    t = np.arange(0, 20, dt)
    ap = find_aps(gaussian_train(t, [t0], [peak], sigma), dt)
    assert len(ap) == 1
    thr_above_base, hw = gaussian_threshold_and_half_width(peak - BASE, sigma)
    assert ap.peak_mV[0] == pytest.approx(peak, abs=1e-6)
    assert ap.peak_ms[0] == pytest.approx(t0, abs=1e-6)
    assert ap.threshold_mV[0] == pytest.approx(BASE + thr_above_base, abs=0.02)
    assert ap.half_width_ms[0] == pytest.approx(hw, abs=0.002)
    assert np.isnan(ap.ahp_mV[0])  # no next AP


def test_half_width_is_not_quantised_on_a_coarse_grid() -> None:
    """At 0.2 ms sampling a 0.4 ms-sigma AP is 4-5 samples wide; the interpolated half-width and the
    parabola-refined peak time follow the sub-sample position instead of jumping by 0.2 ms."""
    dt, sigma = 0.2, 0.4
    _, hw_true = gaussian_threshold_and_half_width(30.0 - BASE, sigma)
    t = np.arange(0, 20, dt)
    widths, errs = [], []
    for shift in np.linspace(0, dt, 9, endpoint=False):
        ap = find_aps(gaussian_train(t, [10.0 + shift], [30.0], sigma), dt)
        widths.append(ap.half_width_ms[0])
        errs.append(ap.peak_ms[0] - (10.0 + shift))
    widths = np.asarray(widths)
    assert np.all(np.abs(widths - hw_true) < 0.06)
    assert np.all(np.abs(np.round(widths / dt) * dt - widths) > 1e-6)  # not multiples of the grid
    assert np.max(np.abs(errs)) < 0.02


def test_biexponential_ap_from_its_onset() -> None:
    """An AP with a sharp onset at t_on on a flat baseline: the threshold is the onset (dV/dt jumps from 0),
    the amplitude is the analytic peak and the half-width the distance between the analytic crossings."""
    dt, t_on, tr, td, amp = 0.002, 5.0, 0.15, 0.5, 90.0
    t_pk = tr * td / (td - tr) * np.log(td / tr)
    norm = np.exp(-t_pk / td) - np.exp(-t_pk / tr)

    def shape(s: float | np.ndarray) -> float | np.ndarray:
        s = np.maximum(s, 0.0)
        return amp * (np.exp(-s / td) - np.exp(-s / tr)) / norm

    t = np.arange(0, 15, dt)
    v = BASE + shape(t - t_on)
    ap = find_aps(v, dt)
    assert len(ap) == 1
    assert ap.peak_mV[0] == pytest.approx(BASE + amp, abs=1e-3)
    assert ap.peak_ms[0] == pytest.approx(t_on + t_pk, abs=1e-3)
    assert ap.threshold_ms[0] == pytest.approx(t_on, abs=dt)
    assert ap.threshold_mV[0] == pytest.approx(BASE, abs=0.5)
    half = 0.5 * (ap.peak_mV[0] + ap.threshold_mV[0]) - BASE
    up = brentq(lambda s: shape(s) - half, 1e-9, t_pk)
    down = brentq(lambda s: shape(s) - half, t_pk, 20 * td)
    assert ap.half_width_ms[0] == pytest.approx(down - up, abs=1e-3)


def test_train_peaks_spread_and_ahp() -> None:
    dt = 0.01
    t = np.arange(0, 60, dt)
    times, heights = [10.0, 20.0, 30.0, 40.0], [20.0, 15.0, 30.0, 25.0]
    v = gaussian_train(t, times, heights)
    for t0 in times[:-1]:  # a 10 mV AHP 5 ms after each AP but the last
        v -= 10.0 * np.exp(-0.5 * ((t - t0 - 5.0) / 1.0) ** 2)
    ap = find_aps(v, dt)
    assert len(ap) == 4
    np.testing.assert_allclose(ap.peak_mV, heights, atol=1e-3)
    np.testing.assert_allclose(ap.peak_ms, times, atol=1e-4)
    assert ap.peak_spread_mV == pytest.approx(15.0, abs=1e-3)
    np.testing.assert_allclose(ap.ahp_mV[:3], BASE - 10.0, atol=1e-3)
    assert np.isnan(ap.ahp_mV[3])
    assert ap.within(15.0, 35.0).sum() == 2


def test_not_aps_small_bumps_and_low_peaks() -> None:
    """A -15 mV peak (below -10 mV) is not an AP, nor a 10 mV wobble reaching -5 mV on the -15 mV plateau an
    AP decays into (prominence 10 mV); the AP itself is one."""
    dt = 0.01
    t = np.arange(0, 40, dt)
    v = gaussian_train(t, [5.0], [-15.0])
    v[(t >= 11.0) & (t < 30.0)] = -15.0
    v += 45.0 * np.exp(-0.5 * ((t - 11.5) / 0.3) ** 2)  # the AP: 30 mV at 11.5 ms, decaying onto the plateau
    v += 10.0 * np.exp(-0.5 * ((t - 20.0) / 0.3) ** 2)  # the wobble
    ap = find_aps(v, dt)
    assert len(ap) == 1 and ap.peak_ms[0] == pytest.approx(11.5, abs=1e-6)
    assert np.isnan(ap.peak_spread_mV)
    # the -15 mV spike is a stunted peak (50 mV prominence, top below -10 mV); the wobble is not even that
    np.testing.assert_allclose(t[stunted_peaks(v)], [5.0])


@pytest.mark.parametrize("shift", [0.0, 1.5, -2.5, 4.0])
def test_shifted_trains_timing_and_matching(shift: float) -> None:
    dt = 0.01
    t = np.arange(0, 200, dt)
    times = [20.0, 35.0, 52.0, 71.0, 92.0, 115.0]
    ref = find_aps(gaussian_train(t, times, [25.0] * 6), dt)
    test = find_aps(gaussian_train(t, [x + shift for x in times], [25.0] * 6), dt)
    np.testing.assert_allclose(test.peak_ms[:5] - ref.peak_ms[:5], shift, atol=1e-6)
    i, j = match_aps(ref.peak_ms, test.peak_ms, 3.0)
    if abs(shift) <= 3.0:
        np.testing.assert_array_equal(i, np.arange(6))
        np.testing.assert_array_equal(j, np.arange(6))
        np.testing.assert_allclose(test.peak_mV[j] - ref.peak_mV[i], 0.0, atol=1e-9)
        np.testing.assert_allclose(test.half_width_ms[j] - ref.half_width_ms[i], 0.0, atol=1e-6)
    else:
        assert len(i) == 0


def test_matching_is_one_to_one_nearest_first() -> None:
    ref = np.array([10.0, 12.0, 30.0])
    test = np.array([11.8, 31.0, 50.0])
    i, j = match_aps(ref, test, 3.0)
    # 11.8 is within 3 ms of both 10 and 12: it goes to the nearer (12); 10 stays unmatched
    assert list(zip(i, j)) == [(1, 0), (2, 1)]
    assert match_aps(ref, np.empty(0))[0].size == 0

"""Physics of the Brian2 `hh` family (Pospischil 2008): F-I curve and spike-frequency adaptation.

One Brian2 group of 16 neurons: the fast-spiking preset at 12 step amplitudes and the regular-spiking preset
at 4, each on a 300 ms step (same shape as tests/datagen/test_hh_neuron.py, so the code compiles once).
"""

from __future__ import annotations

import numpy as np
import pytest

from noble.datagen.features import count_in_window, trace_features
from noble.datagen.models.hh import HH
from noble.datagen.simulate import simulate, steps_matrix

START_MS, STEP_MS = 50.0, 300.0
TOTAL_MS = START_MS + STEP_MS + 100.0
FS_AMPS_PA = [0.0, 50.0, 100.0, 150.0, 200.0, 250.0, 300.0, 350.0, 400.0, 450.0, 500.0, 550.0]
RS_AMPS_PA = [150.0, 200.0, 300.0, 400.0]


def _preset(name: str) -> np.ndarray:
    values = HH.preset_values(name)
    return np.array([values[k] for k in HH.param_names()])


@pytest.fixture(scope="module")
def run():
    rows = np.vstack([np.repeat(_preset("fast_spiking")[None], len(FS_AMPS_PA), axis=0),
                      np.repeat(_preset("regular_spiking")[None], len(RS_AMPS_PA), axis=0)])
    amps = np.array(FS_AMPS_PA + RS_AMPS_PA)
    res = simulate(HH, rows, steps_matrix(amps, START_MS, STEP_MS, TOTAL_MS, 0.1), stim_dt_ms=0.1,
                   duration_ms=TOTAL_MS, dt_ms=0.025, record_dt_ms=0.1)
    feats = trace_features(res.v_mV, 0.1, START_MS, START_MS + STEP_MS, amps)
    rates = count_in_window(res.spike_times_ms, START_MS, START_MS + STEP_MS) / (STEP_MS / 1000.0)
    return amps, res, feats, rates


def test_fast_spiking_fi_curve_is_monotone(run):
    amps, _, _, rates = run
    fs = rates[: len(FS_AMPS_PA)]
    assert fs[0] == 0.0, "fires without input"
    assert fs[-1] > 50.0, f"only {fs[-1]:.0f} Hz at {FS_AMPS_PA[-1]} pA"
    assert np.all(np.diff(fs) >= 0), f"F-I curve not monotone: {dict(zip(FS_AMPS_PA, fs))}"
    # The curve rises over the range, not in one jump (class-1-like onset of the Traub-Miles kinetics).
    assert np.sum(fs > 0) >= 6


def test_fast_spiking_adaptation_index_near_zero(run):
    """eFEL adaptation index (mean of (ISI_k+1 - ISI_k)/(ISI_k+1 + ISI_k)) of well-driven FS trains."""
    _, _, feats, rates = run
    n = len(FS_AMPS_PA)
    driven = np.flatnonzero(rates[:n] >= 30.0)
    assert len(driven) >= 4
    ai = feats["adaptation_index"][driven]
    assert np.all(np.isfinite(ai))
    assert np.all(np.abs(ai) < 0.05), dict(zip(np.array(FS_AMPS_PA)[driven], ai))


def test_regular_spiking_adapts(run):
    """I_M (tau_max 608 ms) lengthens the ISIs along the step: last ISI clearly longer than the first."""
    _, res, _, _ = run
    n = len(FS_AMPS_PA)
    for j, amp in enumerate(RS_AMPS_PA):
        s = res.spike_times_ms[n + j]
        s = s[(s >= START_MS) & (s < START_MS + STEP_MS)]
        assert len(s) >= 4, f"RS at {amp} pA: {len(s)} spikes"
        isi = np.diff(s)
        assert isi[-1] > 1.3 * isi[0], f"RS at {amp} pA: first ISI {isi[0]:.1f} ms, last {isi[-1]:.1f} ms"
        assert np.all(np.diff(isi) > -0.5), f"RS at {amp} pA: ISIs shrink along the train {isi}"


def test_deep_hyperpolarisation_settles_on_the_leak_instead_of_diverging():
    """A 1.7 GOhm cell at -100 pA goes to ~-240 mV, where alpha_h and beta_q grow without bound: explicit RK4
    diverged there (NaN from ~-169 mV). With the gates' rates held below their floors it settles where only the
    leak conducts, E_leak + I / G_leak, for the regular-spiking, bursting (I_L) and fastest-kinetics cells."""
    rows = []
    for preset, phi in (("regular_spiking", 1.0), ("intrinsically_bursting", 1.0), ("regular_spiking", 3.0)):
        values = HH.preset_values(preset, {"diam_um": 31.6, "g_leak": 0.0187, "phi_NaK": phi})
        rows.append([values[k] for k in HH.param_names()])
    params = np.array(rows)
    amps = np.full(len(rows), -100.0)
    total_ms = 700.0
    res = simulate(HH, params, steps_matrix(amps, 50.0, 600.0, total_ms, 0.1), stim_dt_ms=0.1,
                   duration_ms=total_ms, dt_ms=0.025, record_dt_ms=0.1)
    assert np.isfinite(res.v_mV).all()
    col = {k: params[:, j] for j, k in enumerate(HH.param_names())}
    area_cm2 = np.pi * (col["diam_um"] * 1e-4) ** 2
    g_leak_nS = col["g_leak"] * area_cm2 * 1e6  # mS/cm2 x cm2 -> nS
    expected_mV = col["E_leak"] + amps / g_leak_nS  # pA / nS = mV
    settled = res.v_mV[:, int(640.0 / 0.1)]
    assert np.all(expected_mV < -220.0)
    np.testing.assert_allclose(settled, expected_mV, atol=0.5)

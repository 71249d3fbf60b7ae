"""The shipped surrogate's APs look like the solver's: on two held-out neurons (never trained on; the first two
of config.json's heldout_model_ids, not picked) at three amplitudes across the trained range, against
noise-free Brian2 traces of the same neurons. Peaks are steady within a trace, and peak height, half-width
and AHP trough of matched APs are the solver's (noble/operator/ap_metrics.py definitions)."""

from __future__ import annotations

import numpy as np
import pytest

from noble.operator import default_surrogate_path, load_surrogate
from noble.operator.evaluate import compare_traces, heldout_neurons, sim_settings_for, simulate_steps

AMPS_PA = [150.0, 270.0, 390.0]


@pytest.fixture(scope="module")
def compared() -> dict[str, np.ndarray]:
    path = default_surrogate_path()
    sur = load_surrogate(path)
    neurons = heldout_neurons(sur, path)
    ids = neurons.model_ids[:2]
    assert not set(int(m) for m in ids) & set(sur.config.train_model_ids)
    cfg, p = sur.config, sur.config.stimulus
    clean, _ = simulate_steps(cfg.family, neurons.params[:2], AMPS_PA, start_ms=p.start_ms,
                              duration_ms=p.duration_ms, n_time=cfg.n_time, dt_out_ms=cfg.dt_ms,
                              sim=sim_settings_for(sur, path))
    steps = np.stack([sur.step_stimulus(a) for a in AMPS_PA] * 2)
    pred = sur.predict(np.repeat(neurons.features[:2], len(AMPS_PA), axis=0), steps, check_range=False)
    return compare_traces(pred, clean, cfg.dt_ms, p.start_ms, p.end_ms)


def test_output_grid_resolves_a_fast_spiking_ap() -> None:
    assert load_surrogate(default_surrogate_path()).config.dt_ms <= 0.05


def test_ap_peaks_are_steady_within_each_trace(compared: dict[str, np.ndarray]) -> None:
    spread = compared["spread_test_mV"]
    assert np.all(compared["n_ap_test"] >= 5)  # every step fires a train (the solver: 9..64 APs)
    assert np.nanmax(spread) <= 5.0, spread  # the 0.2 ms weights: 57 mV median
    assert np.all(np.abs(compared["count_err"]) <= 1), compared["count_err"]


def test_matched_aps_have_the_solvers_shape(compared: dict[str, np.ndarray]) -> None:
    # APs pair up within 3 ms only while the train has not drifted: ~55 % of them on the held-out set
    # (noble evaluate); enough here for the shape statistics, whose subject is the AP, not its time
    assert compared["n_matched"].sum() >= max(50, 0.3 * compared["n_ap_ref"].sum())
    assert np.median(np.abs(compared["peak_err_mV"])) <= 3.0
    assert np.median(np.abs(compared["hw_rel_err"])) <= 0.15
    ahp = compared["ahp_err_mV"][np.isfinite(compared["ahp_err_mV"])]
    assert np.median(np.abs(ahp)) <= 3.0

"""Every shipped surrogate (noble/assets/NAME with weights) keeps its card's promises on neurons it never saw:
it loads, draws APs on a <= 0.05 ms grid, rests at each neuron's v_rest before any step in its range, and on two
held-out neurons (the first two of config.json's heldout_model_ids) gives the solver's F-I curve within the
card's stated error, with APs of steady height, against noise-free Brian2."""

from __future__ import annotations

import numpy as np
import pytest

from noble.operator import load_surrogate, shipped_surrogate_paths
from noble.operator.evaluate import compare_traces, heldout_neurons, sim_settings_for, simulate_steps

SHIPPED = shipped_surrogate_paths()


def test_the_default_three_cell_classes_and_a_multi_compartment_cell_are_shipped() -> None:
    assert "hh_fs" in SHIPPED and len(SHIPPED) >= 4, sorted(SHIPPED)
    kinds = {(load_surrogate(p).config.family, load_surrogate(p).config.preset) for p in SHIPPED.values()}
    assert len(kinds) == len(SHIPPED)  # one population per cell class and family
    assert any(family == "hh_mc" for family, _ in kinds), kinds


@pytest.fixture(scope="module", params=sorted(SHIPPED))
def shipped(request: pytest.FixtureRequest):  # noqa: ANN201
    path = SHIPPED[request.param]
    return path, load_surrogate(path)


def test_checkpoint_files_and_grid(shipped) -> None:  # noqa: ANN001
    path, sur = shipped
    assert (path / "weights.safetensors").stat().st_size <= 15e6
    for f in ("card.json", "train.yaml", "dataset.yaml", "README.md", "hall_of_fame.json",
              "evaluation/evaluation_gallery.png", "evaluation/metrics.json"):
        assert (path / f).is_file(), f
    assert sur.config.dt_ms <= 0.05 and sur.config.render is not None
    assert "metrics_heldout_noisefree" in sur.card


def test_rests_at_v_rest_before_every_step_in_its_range(shipped) -> None:  # noqa: ANN001
    _, sur = shipped
    cfg = sur.config
    amps = np.linspace(min(cfg.stimulus.amplitudes_pA), max(cfg.stimulus.amplitudes_pA), 7)
    feats = np.array(cfg.population[:8])
    v = sur.predict(np.repeat(feats, len(amps), axis=0), np.tile(np.stack([sur.step_stimulus(a) for a in amps]),
                                                                 (len(feats), 1)))
    i0, i1 = int(10 / cfg.dt_ms), int(90 / cfg.dt_ms)  # 10-90 ms, before the step at 100 ms
    rest = np.repeat(feats[:, cfg.feature_names.index("v_rest_mV")], len(amps))
    err = np.abs(v[:, i0:i1].mean(axis=1) - rest)
    assert np.median(err) <= 1.5 and np.percentile(err, 90) <= 3.0, err


def test_fi_curve_and_steady_aps_on_two_heldout_neurons(shipped) -> None:  # noqa: ANN001
    path, sur = shipped
    cfg, p = sur.config, sur.config.stimulus
    dep = [a for a in p.amplitudes_pA if a > 0]
    amps = [dep[len(dep) // 4], dep[len(dep) // 2], dep[(3 * len(dep)) // 4], dep[-1]]
    neurons = heldout_neurons(sur, path)
    assert not set(int(m) for m in neurons.model_ids[:2]) & set(cfg.train_model_ids)
    clean, _ = simulate_steps(cfg.family, neurons.params[:2], amps, start_ms=p.start_ms,
                              duration_ms=p.duration_ms, n_time=cfg.n_time, dt_out_ms=cfg.dt_ms,
                              sim=sim_settings_for(sur, path))
    steps = np.stack([sur.step_stimulus(a) for a in amps] * 2)
    pred = sur.predict(np.repeat(neurons.features[:2], len(amps), axis=0), steps, check_range=False)
    c = compare_traces(pred, clean, cfg.dt_ms, p.start_ms, p.end_ms)
    stated = sur.card["metrics_heldout_noisefree"]["fi_mae_Hz"]
    assert np.mean(np.abs(c["rate_err_Hz"])) <= max(2.0 * stated, 1.0), (c["rate_err_Hz"], stated)
    mid = np.array([a == amps[1] for a in amps] * 2)  # a mid-range amplitude: steady AP height
    assert np.all(c["spread_test_mV"][mid & (c["n_ap_test"] >= 2)] <= 5.0), c["spread_test_mV"]

"""Evaluation metrics are physical (a trace shifted by 2 ms has a 2 ms latency error; the noise-free solver
against itself is perfect) and the held-out report / figures / CLI work end to end on the tiny surrogate."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from noble.operator.evaluate import (SimSettings, compare_traces, run_evaluation, simulate_steps, summarise_all,
                                     trace_metrics)

# every metric the evaluation report must carry (issue 16 item 2), in each per-amplitude and overall summary
REPORT_METRICS = ("rel_l2", "frac_spike_count_within_1", "fi_mae_Hz", "first5_spike_time_abs_err_ms",
                  "first_spike_latency_abs_err_ms", "frac_solver_aps_matched", "frac_surrogate_aps_matched",
                  "ap_peak_abs_err_mV", "ap_half_width_abs_err_ms", "ap_half_width_rel_err", "ahp_trough_abs_err_mV",
                  "ap_peak_spread_mV", "baseline_abs_err_mV")


def test_trace_metrics_are_zero_for_identical_and_measure_a_shift(tiny_dataset: Path) -> None:
    from noble.operator.data import load_traces

    tr = load_traces(tiny_dataset, ["I_thr_pA", "s_thr_Hz_per_pA"], 0.1)
    rows = np.flatnonzero(tr.amp_pA >= 320)[:4]
    v = tr.v_mV[rows]
    same = trace_metrics(v, v, 0.1, 20.0, 170.0, tr.amp_pA[rows])
    assert np.all(same["rel_l2"] == 0) and np.all(same["count_err"] == 0)
    assert np.all(same["count_true"] > 0)
    shift = 20  # 2 ms at 0.1 ms
    late = np.concatenate([np.repeat(v[:, :1], shift, axis=1), v[:, :-shift]], axis=1)
    m = trace_metrics(late, v, 0.1, 20.0, 170.0, tr.amp_pA[rows])
    np.testing.assert_allclose(m["latency_err_ms"], 2.0, atol=0.11)
    assert np.all(m["rel_l2"] > 0)


def test_noise_free_solver_against_itself_is_perfect() -> None:
    """Two held-out hh_fs neurons x 2 steps on a short protocol (numpy target): the noise-free solver scored
    against itself has rel L2 0, every AP matched with peak / half-width / AHP error 0 and counts within +-1
    everywhere; a noisy trial of the same neurons is close but not identical; the summary has every metric."""
    from noble.operator.checkpoint import default_surrogate_path
    from noble.operator.config import SurrogateConfig
    from noble.operator.hall_of_fame import read_hall_of_fame

    ckpt = default_surrogate_path()
    cfg = SurrogateConfig.model_validate_json((ckpt / "config.json").read_text())
    hof = read_hall_of_fame(ckpt)
    rows = [hof.model_ids.index(m) for m in cfg.heldout_model_ids[:2]]
    sim = SimSettings(dt_ms=0.025, record_dt_ms=0.1, noise_sigma_pA=2.0, noise_tau_ms=5.0, target="numpy",
                      source="test")
    amps = np.array([150.0, 390.0])
    clean, noisy = simulate_steps("hh", hof.params[rows], amps, start_ms=30.0, duration_ms=100.0, n_time=750,
                                  dt_out_ms=0.2, sim=sim, seed=1)
    assert clean.shape == noisy.shape == (4, 750)
    a = np.tile(amps, 2)
    same = compare_traces(clean, clean, 0.2, 30.0, 130.0)
    assert np.all(same["rel_l2"] == 0) and np.all(same["count_ref"] >= 2)
    assert np.all(same["n_matched"] == same["n_ap_ref"])
    for key in ("peak_err_mV", "hw_err_ms", "first5_err_ms", "ap_dt_ms", "baseline_err_mV"):
        assert np.all(same[key] == 0), key
    assert np.all(np.nan_to_num(same["ahp_err_mV"]) == 0)
    rep = summarise_all(same, a)
    for s in [rep["overall"], *rep["per_amplitude"].values()]:
        assert set(REPORT_METRICS) <= set(s)
        assert s["frac_spike_count_within_1"] == 1.0 and s["fi_mae_Hz"] == 0
        assert s["frac_solver_aps_matched"] == 1.0 and s["frac_surrogate_aps_matched"] == 1.0
        assert s["rel_l2"]["median"] == 0 and s["ap_peak_abs_err_mV"]["p90"] == 0
        assert s["ap_peak_spread_mV"]["surrogate"] == s["ap_peak_spread_mV"]["solver"]
        assert s["stunted_peaks"]["surrogate"] == s["stunted_peaks"]["solver"]
    assert rep["overall"]["rel_l2_all_steps"]["p90"] == 0
    # a noisy trial: another trace of the same neuron, APs still matched and of the same height
    floor = compare_traces(noisy, clean, 0.2, 30.0, 130.0)
    assert np.all(floor["rel_l2"] > 0) and np.all(floor["rel_l2"] < 0.3)
    assert np.all(np.abs(floor["count_err"]) <= 1)
    assert np.nanmedian(np.abs(floor["peak_err_mV"])) < 2.0
    # a surrogate trace the solver's shifted by 1 ms: every AP matched, timed 1 ms late, same shape
    late = np.concatenate([np.repeat(clean[:, :1], 5, axis=1), clean[:, :-5]], axis=1)
    shifted = compare_traces(late, clean, 0.2, 30.0, 130.0)
    np.testing.assert_allclose(shifted["ap_dt_ms"], 1.0, atol=1e-9)
    np.testing.assert_allclose(shifted["peak_err_mV"], 0.0, atol=1e-9)


def test_shipped_heldout_neurons_and_settings() -> None:
    """The shipped surrogate's held-out neurons come from its hall of fame by model id (parameters and the
    surrogate's feature columns), and they are simulated as its training data were (dataset config)."""
    from noble.operator.checkpoint import default_surrogate_path, load_surrogate
    from noble.operator.evaluate import heldout_neurons, sim_settings_for
    from noble.operator.hall_of_fame import read_hall_of_fame

    ckpt = default_surrogate_path()
    sur = load_surrogate(ckpt)
    neurons = heldout_neurons(sur, ckpt)
    hof = read_hall_of_fame(ckpt)
    ids = sur.config.heldout_model_ids
    assert list(neurons.model_ids) == ids and len(ids) == 16
    rows = [hof.model_ids.index(m) for m in ids]
    np.testing.assert_array_equal(neurons.params, hof.params[rows])
    np.testing.assert_array_equal(neurons.features, hof.select(sur.config.feature_names).features[rows])
    sim = sim_settings_for(sur, ckpt)
    assert (sim.dt_ms, sim.record_dt_ms, sim.noise_sigma_pA, sim.noise_tau_ms) == (0.025, 0.025, 0.0, 5.0)  # noise-free data


def test_heldout_report_and_figures(tiny_checkpoint: Path, tiny_dataset: Path, tmp_path: Path) -> None:
    rep = run_evaluation(tiny_checkpoint, tiny_dataset, tmp_path, gallery_seed=3)
    o = rep["overall"]
    assert rep["models"].startswith("held-out")
    assert o["n_models"] == 2 and o["n_amplitudes"] == 5
    assert set(rep["per_amplitude"]) == {"-50", "150", "260", "320", "400"}
    assert 0 < o["rel_l2_all_steps"]["median"] < 1
    assert set(REPORT_METRICS) <= set(o)
    for block in (rep["vs_noisy"], rep["noisy_vs_noise_free"]):
        assert set(block["per_amplitude"]) == set(rep["per_amplitude"])
    # the tiny dataset has no trial noise: its 'noisy' trial is the noise-free one
    assert rep["simulation"]["noise_sigma_pA"] == 0
    assert rep["noisy_vs_noise_free"]["overall"]["rel_l2_all_steps"]["p90"] == 0
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["overall"]["n_traces"] == o["n_traces"] and saved["wall_s"]["total"] > 0
    for name in ("evaluation.png", "evaluation_gallery.png"):
        png = (tmp_path / name).read_bytes()
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    # the card written at the end of training scores the same held-out traces (against the dataset's)
    card = json.loads((tiny_checkpoint / "card.json").read_text())
    assert card["metrics_heldout"]["n_traces"] == o["n_traces"]
    assert {"torch", "neuraloperator", "brian2"} <= set(card["versions"])


def test_cli_train_evaluate_sample(tiny_dataset: Path, tiny_checkpoint: Path, tmp_path: Path) -> None:
    from noble.cli import app

    runner = CliRunner()
    cfg = tmp_path / "train.yaml"
    cfg.write_text("embedding: {feature_names: [I_thr_pA], n_frequencies: 2}\n"
                   "fno: {n_modes: 16, hidden_channels: 8, n_layers: 1}\n"
                   "holdout_models: 2\nbatch_size: 8\nthreads: 1\n")
    out = tmp_path / "ck"
    r = runner.invoke(app, ["train", str(tiny_dataset), "--out", str(out), "--config", str(cfg), "--epochs", "1",
                            "--quiet"])
    assert r.exit_code == 0, r.output
    assert (out / "weights.safetensors").is_file() and "all>0" in r.output
    r = runner.invoke(app, ["evaluate", str(tiny_checkpoint), str(tiny_dataset)])  # the old form
    assert r.exit_code == 0, r.output
    assert "relL2" in r.output and "all>0" in r.output and "AP half-width" in r.output
    r = runner.invoke(app, ["evaluate", str(tiny_checkpoint), "--dataset", str(tiny_dataset), "--out",
                            str(tmp_path / "ev")])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "ev" / "evaluation_gallery.png").is_file()
    # the checkpoint's hall of fame (any family, LIF here) names the held-out neurons without the dataset ...
    assert json.loads((tiny_checkpoint / "hall_of_fame.json").read_text())["family"] == "lif"
    r = runner.invoke(app, ["evaluate", str(tiny_checkpoint)])
    assert r.exit_code == 0 and "all>0" in r.output, r.output
    # ... and without one (a checkpoint from before) the dataset is asked for
    bare = tmp_path / "bare"
    shutil.copytree(tiny_checkpoint, bare)
    (bare / "hall_of_fame.json").unlink()
    r = runner.invoke(app, ["evaluate", str(bare)])
    assert r.exit_code == 2 and "--dataset" in r.output
    npz = tmp_path / "s.npz"
    r = runner.invoke(app, ["sample", str(tiny_checkpoint), "--amplitude-pA", "320", "--n", "5", "--seed", "2",
                            "--out", str(npz)])
    assert r.exit_code == 0, r.output
    summary = json.loads(r.stdout[: r.stdout.rindex("}") + 1])
    assert summary["n"] == 5
    with np.load(npz) as z:
        assert z["v_mV"].shape[0] == 5 and z["band_q95"].shape == z["t_ms"].shape
    r = runner.invoke(app, ["sample", str(tiny_checkpoint), "--amplitude-pA", "320", "--feature", "I_thr_pA=1e6"])
    assert r.exit_code == 2 and "I_thr_pA" in r.output

"""Evaluation metrics are physical (a trace shifted by 2 ms has a 2 ms latency error) and the held-out
report / figure / CLI work end to end on the tiny surrogate."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from noble.operator.evaluate import run_evaluation, trace_metrics


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


def test_heldout_report_and_figure(tiny_checkpoint: Path, tiny_dataset: Path, tmp_path: Path) -> None:
    rep = run_evaluation(tiny_checkpoint, tiny_dataset, tmp_path)
    o = rep["overall"]
    assert rep["models"].startswith("held-out")
    assert o["n_models"] == 2 and o["n_amplitudes"] == 5
    assert set(rep["per_amplitude"]) == {"-50", "150", "260", "320", "400"}
    assert 0 < o["rel_l2_all_steps"]["median"] < 1
    for key in ("spike_count_abs_err", "first_spike_latency_abs_err_ms", "ap_amplitude_abs_err_mV",
                "ap_half_width_abs_err_ms"):
        assert key in o
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["overall"]["n_traces"] == o["n_traces"]
    png = (tmp_path / "evaluation.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    # the card written at the end of training carries the same held-out table
    card = json.loads((tiny_checkpoint / "card.json").read_text())
    assert card["metrics_heldout"]["n_traces"] == o["n_traces"]
    assert card["metrics_heldout"]["rel_l2"]["median"] == pytest.approx(o["rel_l2"]["median"], rel=1e-6)
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
    r = runner.invoke(app, ["evaluate", str(tiny_checkpoint), str(tiny_dataset)])
    assert r.exit_code == 0, r.output
    assert "rel L2" in r.output or "relL2" in r.output
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

"""Training on a tiny real LIF dataset: the loss goes down, the split is by neuron model, runs are
deterministic and resumable, and a checkpoint round-trips to identical outputs without pickles."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from noble.operator.checkpoint import load_network, load_surrogate, read_config, save_checkpoint
from noble.operator.data import load_traces
from noble.operator.model import NobleOperator
from noble.operator.train import VoltageLoss, train


def _loss_on_rows(net: NobleOperator, scfg, dataset: Path, cfg, rows_of: str) -> float:
    """The training loss of `net` over all rows of the train (or held-out) models."""
    tr = load_traces(dataset, scfg.feature_names, scfg.dt_ms)
    ids = scfg.train_model_ids if rows_of == "train" else scfg.heldout_model_ids
    rows = tr.rows_of(np.array(ids))
    with torch.no_grad():
        v = net.normalise_v(torch.as_tensor(tr.v_mV[rows]))
        d_rms = float(torch.sqrt((torch.diff(v, dim=-1) ** 2).mean()))
        pred = net(torch.as_tensor(tr.features[rows], dtype=torch.float32), torch.as_tensor(tr.stim_pA[rows]))
        loss, _ = VoltageLoss(cfg, d_rms, 0.0, scfg.v_mean_mV, scfg.v_std_mV)(pred, v)
    return float(loss)


def test_training_lowers_the_loss(tiny_checkpoint: Path, tiny_dataset: Path, tiny_train_config) -> None:
    scfg = read_config(tiny_checkpoint)
    trained = load_network(tiny_checkpoint, scfg)
    torch.manual_seed(tiny_train_config.seed)
    fresh = NobleOperator(scfg)  # the same initialisation train() starts from
    before = _loss_on_rows(fresh.eval(), scfg, tiny_dataset, tiny_train_config, "train")
    after = _loss_on_rows(trained.eval(), scfg, tiny_dataset, tiny_train_config, "train")
    assert after < 0.85 * before, (before, after)
    hist = json.loads((tiny_checkpoint / "card.json").read_text())["training"]["history"]
    assert len(hist) == tiny_train_config.epochs
    assert hist[-1]["train_loss"] < hist[0]["train_loss"]


def test_split_is_by_neuron_model(tiny_checkpoint: Path, tiny_dataset: Path) -> None:
    scfg = read_config(tiny_checkpoint)
    train_ids, held = set(scfg.train_model_ids), set(scfg.heldout_model_ids)
    assert len(held) == 2 and not train_ids & held
    tr = load_traces(tiny_dataset, scfg.feature_names, scfg.dt_ms)
    assert train_ids | held == set(tr.models().tolist())
    # the population used for sampling is exactly the training models' feature vectors
    np.testing.assert_allclose(np.array(scfg.population), tr.model_features(np.array(sorted(train_ids))))
    # every feature range is the training population's, so held-out models never set the normalisers
    pop = np.array(scfg.population)
    for j, name in enumerate(scfg.feature_names):
        assert scfg.feature_ranges[name] == pytest.approx((pop[:, j].min(), pop[:, j].max()))


def test_checkpoint_round_trip_identical_outputs_without_pickles(tiny_checkpoint: Path, tmp_path: Path) -> None:
    # only the three inference files: json + safetensors, no train_state (torch pickles) needed
    bare = tmp_path / "bare"
    bare.mkdir()
    for name in ("weights.safetensors", "config.json", "card.json"):
        shutil.copy(tiny_checkpoint / name, bare / name)
    sur = load_surrogate(bare)
    feats = np.array(sur.config.population[:3])
    stim = np.stack([sur.step_stimulus(a) for a in (150.0, 260.0, 400.0)])
    v1 = sur.predict(feats, stim)
    assert v1.shape == (3, sur.config.n_time) and v1.dtype == np.float32
    again = tmp_path / "again"
    save_checkpoint(again, sur.net, sur.config, sur.card)
    v2 = load_surrogate(again).predict(feats, stim)
    np.testing.assert_array_equal(v1, v2)
    # batching does not change results beyond float noise
    sur.batch_size = 1
    np.testing.assert_allclose(sur.predict(feats, stim), v1, atol=1e-4)


def test_training_is_deterministic_and_resumable(tiny_dataset: Path, tiny_train_config, tmp_path: Path) -> None:
    cfg = tiny_train_config.model_copy(update={"epochs": 2, "max_steps_per_epoch": 3})
    a = train(tiny_dataset, tmp_path / "a", cfg, progress=False, evaluate_at_end=False)

    def interrupt(epoch: int, record: dict) -> None:
        raise KeyboardInterrupt  # killed right after the first epoch's checkpoint

    with pytest.raises(KeyboardInterrupt):
        train(tiny_dataset, tmp_path / "b", cfg, progress=False, evaluate_at_end=False, on_epoch=interrupt)
    b2 = train(tiny_dataset, tmp_path / "b", cfg, progress=False, evaluate_at_end=False)
    assert (a.epochs_done, b2.resumed_from, b2.epochs_done) == (2, 1, 2)
    assert [h["train_loss"] for h in a.history] == [h["train_loss"] for h in b2.history]
    wa = load_file(str(tmp_path / "a" / "weights.safetensors"))
    wb = load_file(str(tmp_path / "b" / "weights.safetensors"))
    # uninterrupted == interrupted + resumed (to float round-off: MKL's FFT/GEMM kernels may pick
    # alignment-dependent code paths, so bit-equality is not guaranteed across allocations)
    worst = max(float((wa[k] - wb[k]).abs().max()) for k in wa)
    assert worst < 1e-5, worst
    with pytest.raises(ValueError, match="another training config"):
        train(tiny_dataset, tmp_path / "a", cfg.model_copy(update={"lr": 1e-4}), progress=False,
              evaluate_at_end=False)


def test_loss_terms_do_what_they_claim() -> None:
    """L2 and derivative terms charge a misplaced spike; the sorted term charges only a wrong NUMBER of
    spikes or a plateau instead of spikes."""
    from noble.operator.config import TrainConfig

    cfg = TrainConfig.model_validate({"loss": {"derivative_weight": 1.0, "sorted_weight": 1.0}})
    T = 2000
    t = torch.arange(T, dtype=torch.float64)

    def train_of(times: list[int], width: float = 2.0) -> torch.Tensor:
        v = torch.full((T,), -70.0, dtype=torch.float64)
        for c in times:
            v = v + 110.0 * torch.exp(-0.5 * ((t - c) / width) ** 2)
        return v

    true = train_of([400, 800, 1200, 1600])
    shifted = train_of([430, 830, 1230, 1630])
    fewer = train_of([400, 800])
    plateau = torch.where((t > 400) & (t < 432), torch.tensor(40.0, dtype=torch.float64), torch.tensor(-70.0,
                                                                                                  dtype=torch.float64))
    mean, std = -60.0, 15.0
    d_rms = float(torch.sqrt((torch.diff((true - mean) / std) ** 2).mean()))
    loss = VoltageLoss(cfg, d_rms, 0.0, mean, std)

    def parts(pred: torch.Tensor) -> dict[str, float]:
        return loss(((pred - mean) / std)[None], ((true - mean) / std)[None])[1]

    same, shift, few, plat = parts(true), parts(shifted), parts(fewer), parts(plateau)
    assert same["rel_l2"] == 0 and same["deriv"] == 0 and same["sorted"] == 0
    assert shift["rel_l2"] > 0.1 and shift["deriv"] > 1.0  # both L2 terms punish a misplaced spike ...
    assert shift["sorted"] < 1e-9 and shift["sorted_deriv"] < 1e-9  # ... the sorted terms do not
    assert few["sorted"] > 0.05 and few["sorted_deriv"] > 0.3  # a missing spike costs in the sorted terms
    # a plateau with the same time above threshold as 4 spikes fails the dv/dt part
    assert plat["sorted_deriv"] > few["sorted_deriv"]


def test_spike_train_loss_rewards_near_misses_and_punishes_missing_spikes() -> None:
    """The van Rossum term: 0 for the same spikes, near 1 for disjoint trains, and a spike 1 ms off costs far
    less than one 20 ms off (the voltage L2 charges both the same: the double penalty)."""
    from noble.operator.config import LossConfig, TrainConfig
    from noble.operator.train import VoltageLoss

    cfg = TrainConfig(loss=LossConfig(derivative_weight=0.0, spike_train_weight=1.0, spike_train_sigma_ms=4.0))
    loss = VoltageLoss(cfg, d_rms=1.0, spike_threshold_norm=0.0, dt_ms=0.2)
    t = torch.arange(5000) * 0.2

    def train(times_ms: list[float]) -> torch.Tensor:
        v = torch.full_like(t, -65.0)
        for s in times_ms:
            v = torch.where((t >= s) & (t < s + 0.6), torch.tensor(30.0), v)
        return v[None]

    ref = train([200.0, 400.0, 600.0])

    def spike_part(v: torch.Tensor) -> float:
        return loss(v, ref)[1]["spike_train"]

    assert spike_part(ref) < 1e-6
    near, far = spike_part(train([201.0, 401.0, 601.0])), spike_part(train([220.0, 420.0, 620.0]))
    none, disjoint = spike_part(train([])), spike_part(train([300.0, 500.0, 700.0]))
    assert near < 0.1 < far
    assert none > 0.9 and disjoint > 0.9


def test_init_from_starts_at_the_source_weights_and_refuses_another_architecture(
        tiny_checkpoint: Path, tiny_dataset: Path, tiny_train_config, tmp_path: Path) -> None:
    """Fine-tuning: a run with init_from begins where the source ended (its first-epoch loss is the source's
    last, not a fresh network's), and a source with another FNO is refused by name."""
    cfg = tiny_train_config.model_copy(update={"epochs": 1, "max_steps_per_epoch": 2, "lr": 1e-9, "warmup_epochs": 0})
    fresh = train(tiny_dataset, tmp_path / "fresh", cfg, progress=False, evaluate_at_end=False)
    tuned = train(tiny_dataset, tmp_path / "tuned", cfg.model_copy(update={"init_from": str(tiny_checkpoint)}),
                  progress=False, evaluate_at_end=False)
    src = json.loads((tiny_checkpoint / "card.json").read_text())["training"]["history"][-1]["heldout_rel_l2_mV"]
    assert tuned.history[0]["heldout_rel_l2_mV"] == pytest.approx(src, rel=1e-3)
    assert fresh.history[0]["heldout_rel_l2_mV"] > tuned.history[0]["heldout_rel_l2_mV"]
    wider = cfg.model_copy(update={"init_from": str(tiny_checkpoint),
                                   "fno": cfg.fno.model_copy(update={"hidden_channels": cfg.fno.hidden_channels + 4})})
    with pytest.raises(ValueError, match="init_from"):
        train(tiny_dataset, tmp_path / "wider", wider, progress=False, evaluate_at_end=False)


def test_quadratic_fi_phase_with_a_fitted_warp_trains_and_round_trips(
        tiny_dataset: Path, tiny_train_config, tmp_path: Path) -> None:
    """embedding.fi_rate quadratic + fit_phase_warp: the warp is fitted on the training models' spikes and
    written to config.json, the phase it defines counts the spikes of the steps (within 1), and the
    loaded checkpoint decodes with it (a different warp gives different voltages)."""
    from noble.operator.phase import phase_rate_Hz, spike_times_ms

    emb = tiny_train_config.embedding.model_copy(update={
        "feature_names": ["I_thr_pA", "s_thr_Hz_per_pA", "fi_lin_Hz_per_pA", "fi_quad_Hz_per_pA2"],
        "fi_phase": True, "fi_rate": "quadratic", "fit_phase_warp": True})
    cfg = tiny_train_config.model_copy(update={"embedding": emb, "epochs": 1, "max_steps_per_epoch": 2})
    out = tmp_path / "quad"
    train(tiny_dataset, out, cfg, progress=False, evaluate_at_end=False)
    scfg = read_config(out)
    A, tau, delay, gain = scfg.embedding.phase_warp
    assert A >= 0 and tau > 0 and 0 <= delay < 50 and 0.5 < gain < 1.5
    tr = load_traces(tiny_dataset, scfg.feature_names, scfg.dt_ms)
    rows = np.flatnonzero(tr.amp_pA > 0)
    rate = phase_rate_Hz(torch.as_tensor(tr.features[rows]), scfg.feature_names,
                         torch.as_tensor(tr.stim_pA[rows], dtype=torch.float64), "quadratic", scfg.embedding.phase_warp,
                         scfg.dt_ms)
    phi_end = rate.sum(-1).numpy() * scfg.dt_ms / 1000.0
    p = tr.protocol
    counts = np.array([len(spike_times_ms(tr.v_mV[r], tr.dt_ms, p["start_ms"], p["start_ms"] + p["duration_ms"]))
                       for r in rows])
    assert np.all(np.abs(phi_end - counts) <= 1.0), (phi_end, counts)
    sur = load_surrogate(out)
    assert sur.config.embedding.phase_warp == scfg.embedding.phase_warp
    f, s = tr.features[rows[:3]], tr.stim_pA[rows[:3]]
    v = sur.predict(f, s, check_range=False)
    sur.net.embedding_cfg = sur.net.embedding_cfg.model_copy(update={"phase_warp": [0.0, 1.0, 0.0, 1.0]})
    assert np.all(np.isfinite(v)) and not np.allclose(v, sur.predict(f, s, check_range=False))


def test_validation_models_pick_the_epoch_and_are_never_trained_on(
        tiny_dataset: Path, tiny_train_config, tmp_path: Path) -> None:
    """validation_models: seeded training models are set aside (disjoint from the held-out ones), scored
    every epoch, and the checkpoint holds the best-scoring epoch's weights, not the last one's."""
    from noble.operator.train import best_epoch, selection_rule

    cfg = tiny_train_config.model_copy(update={"epochs": 3, "validation_models": 1, "holdout_models": 2,
                                               "max_steps_per_epoch": 2})
    out = tmp_path / "val"
    res = train(tiny_dataset, out, cfg, progress=False, evaluate_at_end=False)
    card = json.loads((out / "card.json").read_text())
    val = card["training"]["validation_model_ids"]
    scfg = read_config(out)
    assert len(val) == 1 and not set(val) & set(scfg.heldout_model_ids) and set(val) <= set(scfg.train_model_ids)
    assert all("val_frac_count_within_1" in h for h in res.history)
    best = best_epoch(res.history)
    assert card["training"]["selected_epoch"] == best
    w = load_file(str(out / "weights.safetensors"))
    w_best = load_file(str(out / "train_state" / "best" / "weights.safetensors"))
    assert all(torch.equal(w[k], w_best[k]) for k in w)
    h = [{"epoch": 1, "val_frac_count_within_1": 0.5, "val_geomean_rel_l2_per_amplitude": 0.2},
         {"epoch": 2, "val_frac_count_within_1": 0.5, "val_geomean_rel_l2_per_amplitude": 0.1},
         {"epoch": 3, "val_frac_count_within_1": 0.4, "val_geomean_rel_l2_per_amplitude": 0.05}]
    assert best_epoch(h) == 2  # none meets the count target: lowest error + the count shortfall's cost
    assert selection_rule(h, "RULE").startswith("validation models: no epoch had >= 90 %")  # and the card says so
    flat = [{"epoch": 1, "val_frac_count_within_1": 0.82, "val_geomean_rel_l2_per_amplitude": 0.16},
            {"epoch": 2, "val_frac_count_within_1": 0.80, "val_geomean_rel_l2_per_amplitude": 0.04}]
    assert best_epoch(flat) == 2  # 2 % fewer counts within +-1 does not buy a 4x worse voltage (hh_mc_fs)
    h += [{"epoch": 4, "val_frac_count_within_1": 0.95, "val_geomean_rel_l2_per_amplitude": 0.3},
          {"epoch": 5, "val_frac_count_within_1": 0.91, "val_geomean_rel_l2_per_amplitude": 0.15},
          {"epoch": 6, "val_frac_count_within_1": 1.0, "val_geomean_rel_l2_per_amplitude": 0.2}]
    assert best_epoch(h) == 5  # lowest error among those meeting it
    assert selection_rule(h, "RULE") == "RULE"
    # with the spike-rendering trainer's validation timing: the product of rel L2 and timing error
    timed = [{**r, "val_first5_spike_time_ms": t} for r, t in zip(h, [1.0, 1.0, 1.0, 1.0, 1.6, 0.6])]
    assert best_epoch(timed) == 6  # 0.2 x 0.6 ms beats 0.15 x 1.6 ms
    timed[5]["val_first5_spike_time_ms"] = float("nan")  # no spike both drew: timing does not count
    assert best_epoch(timed) == 6  # 0.2 x 1 < 0.15 x 1.6

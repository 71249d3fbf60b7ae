"""A TINY real LIF dataset and a small surrogate trained on it, shared by the operator tests.

The dataset is simulated by Brian2 (one vectorised group via noble.datagen.simulate) and written with
noble.datagen.dataset's shard writer; the per-neuron I_thr / s_thr come from the LIF's closed forms
(rheobase (V_th - V_rest)/R, slope of the analytic F-I curve over +10..+40 pA) instead of the bisection,
which keeps the fixture to a few seconds. Session scope: built once.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

AMPS_PA = [-50.0, 150.0, 260.0, 320.0, 400.0]
TINY_DATASET = {
    "name": "tiny_lif",
    "family": "lif",
    "preset": "default",
    "n_models": 8,
    "models_per_shard": 4,
    "seed": 3,
    "variability": {"cv": 0.15, "sd_potential_mV": 1.0},
    "protocol": {"kind": "fi_sweep", "amplitudes_pA": AMPS_PA, "start_ms": 20, "duration_ms": 150},
    "duration_ms": 200,
    "dt_ms": 0.1,
    "record_dt_ms": 0.1,
    "brian_target": "numpy",
}

TINY_TRAIN = {
    "name": "tiny_lif",
    "embedding": {"feature_names": ["I_thr_pA", "s_thr_Hz_per_pA"], "n_frequencies": 3},
    "fno": {"n_modes": 32, "hidden_channels": 12, "n_layers": 2, "lifting_channel_ratio": 1,
            "projection_channel_ratio": 1},
    "loss": {"derivative_weight": 0.05},
    "dt_ms": 0.2,
    "holdout_models": 2,
    "epochs": 10,
    "batch_size": 4,
    "lr": 1e-2,
    "warmup_epochs": 0,
    "seed": 0,
    "threads": 1,
}


def write_tiny_lif(directory: Path) -> Path:
    """Simulate the tiny LIF population and write it as a real dataset (shards + manifest)."""
    from noble.datagen.config import parse_config
    from noble.datagen.dataset import ShardData, shard_name, shard_record, write_manifest, write_shard
    from noble.datagen.features import TRACE_FEATURES, trace_features
    from noble.datagen.models import get
    from noble.datagen.simulate import simulate, steps_matrix

    cfg = parse_config(TINY_DATASET)
    fam = get("lif")
    names = fam.param_names()
    rng = np.random.default_rng(cfg.seed)
    A = len(AMPS_PA)
    done = {}
    for index in range(cfg.n_shards):
        M = cfg.shard_models(index)
        params = fam.sample_params(M, rng, cfg.preset, cv=cfg.variability.cv,
                                   sd_potential=cfg.variability.sd_potential_mV)
        p = {n: params[:, k] for k, n in enumerate(names)}
        I_thr = (p["V_th"] - p["V_rest"]) / p["R"] * 1000.0  # mV / Mohm = nA -> pA
        deltas = np.array([10.0, 20.0, 30.0, 40.0])
        rates = np.stack([fam.analytic_rate_Hz(I_thr[m] + deltas + 1e-6, p["tau_m"][m], p["R"][m], p["V_rest"][m],
                                               p["V_th"][m], p["V_reset"][m], p["t_ref"][m]) for m in range(M)])
        s_thr = np.polyfit(deltas, rates.T, 1)[0]
        rows = np.repeat(params, A, axis=0)
        stim = steps_matrix(np.tile(AMPS_PA, M), 20.0, 150.0, cfg.duration_ms, cfg.record_dt_ms)
        res = simulate(fam, rows, stim, stim_dt_ms=cfg.record_dt_ms, duration_ms=cfg.duration_ms,
                       dt_ms=cfg.dt_ms, record_dt_ms=cfg.record_dt_ms, seed=index, target=cfg.brian_target)
        amps = np.tile(AMPS_PA, M)
        tf = trace_features(res.v_mV, cfg.record_dt_ms, 20.0, 170.0, amps)
        m_idx = np.repeat(np.arange(M), A)
        feats = np.concatenate([np.stack([I_thr[m_idx], s_thr[m_idx]], axis=1),
                                np.stack([tf[k] for k in TRACE_FEATURES], axis=1)], axis=1)
        data = ShardData(v_mV=res.v_mV, stim_pA=stim.astype(np.float32), params=rows, features=feats,
                         spike_times_ms=res.spike_times_ms, model_id=index * 1_000_000 + m_idx,
                         amp_pA=amps, trial=np.zeros(M * A, dtype=np.int32),
                         stim_index=np.tile(np.arange(A), M).astype(np.int32), n_candidates=M)
        write_shard(directory / shard_name(index), cfg, index, data)
        done[index] = shard_record(directory, index)
    write_manifest(directory, cfg, done)
    return directory


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_lif(tmp_path_factory.mktemp("tiny_lif"))


@pytest.fixture(scope="session")
def tiny_train_config():
    from noble.operator.config import TrainConfig

    return TrainConfig.model_validate(TINY_TRAIN)


@pytest.fixture(scope="session")
def tiny_checkpoint(tiny_dataset: Path, tiny_train_config, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from noble.operator.train import train

    out = tmp_path_factory.mktemp("ckpt") / "tiny"
    train(tiny_dataset, out, tiny_train_config, progress=False)
    return out

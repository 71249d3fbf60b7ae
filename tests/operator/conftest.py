"""A TINY real LIF dataset (Brian2, few models, short traces) and a small surrogate trained on it,
shared by the operator tests (session scope: built once, ~10-20 s)."""

from __future__ import annotations

from pathlib import Path

import pytest

TINY_DATASET = {
    "name": "tiny_lif",
    "family": "lif",
    "preset": "default",
    "n_models": 8,
    "models_per_shard": 4,
    "seed": 3,
    "variability": {"cv": 0.15, "sd_potential_mV": 1.0},
    "protocol": {"kind": "fi_sweep", "amplitudes_pA": [-50, 150, 260, 320, 400], "start_ms": 20, "duration_ms": 150},
    "duration_ms": 200,
    "dt_ms": 0.05,
    "record_dt_ms": 0.1,
    "rheobase_duration_ms": 150,
    "rheobase_max_pA": 800,
    "brian_target": "numpy",
}

TINY_TRAIN = {
    "name": "tiny_lif",
    "embedding": {"feature_names": ["I_thr_pA", "s_thr_Hz_per_pA"], "n_frequencies": 3},
    "fno": {"n_modes": 32, "hidden_channels": 12, "n_layers": 2, "lifting_channel_ratio": 1,
            "projection_channel_ratio": 1},
    "dt_ms": 0.2,
    "holdout_models": 2,
    "epochs": 3,
    "batch_size": 4,
    "lr": 5e-3,
    "warmup_epochs": 0,
    "seed": 0,
    "threads": 2,
}


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from noble.datagen.config import parse_config
    from noble.datagen.dataset import build_shard, shard_record, write_manifest

    cfg = parse_config(TINY_DATASET)
    d = tmp_path_factory.mktemp("tiny_lif")
    done = {}
    for i in range(cfg.n_shards):
        build_shard(cfg.model_dump_json(), i, str(d))
        done[i] = shard_record(d, i)
    write_manifest(d, cfg, done)
    return d


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

"""noble.operator.hall_of_fame: the population beside a checkpoint, written from a dataset's shards (with the
model ids) and read back; files written before model ids read with model_ids None."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from noble.operator.hall_of_fame import HallOfFame, read_hall_of_fame, write_hall_of_fame

AMPS = [-50.0, 100.0, 200.0]


def _fake_hh_dataset(directory: Path, family: str = "hh") -> tuple[np.ndarray, np.ndarray]:
    """An hh (or other family's) dataset of 2 shards x 2 models whose traces are zeros and whose features are made up (no
    simulation: the hall of fame reads only the small tables). Model 1000001 has a NaN v_rest_mV."""
    from noble.datagen.config import parse_config
    from noble.datagen.dataset import (ShardData, feature_names, shard_name, shard_record, write_manifest,
                                       write_shard)
    from noble.datagen.models import get

    cfg = parse_config({"name": "fake_hh", "family": family, "n_models": 4, "models_per_shard": 2, "seed": 0,
                        "protocol": {"kind": "fi_sweep", "amplitudes_pA": AMPS, "start_ms": 20, "duration_ms": 50},
                        "duration_ms": 100, "dt_ms": 0.1, "record_dt_ms": 0.1, "brian_target": "numpy"})
    fam = get(family)
    directory.mkdir(parents=True)
    rng = np.random.default_rng(0)
    names = feature_names()
    A, T = len(AMPS), 1000
    all_params, all_ids = [], []
    done = {}
    for index in range(2):
        params = fam.sample_params(2, rng, "fast_spiking", cv=0.1, sd_potential=1.0)
        ids = index * 1_000_000 + np.arange(2)
        rows = np.repeat(params, A, axis=0)
        feats = rng.uniform(1.0, 2.0, size=(2 * A, len(names)))
        feats[:, names.index("v_rest_mV")] = -70.0 + rng.uniform(size=2 * A)
        if index == 1:
            feats[A:, names.index("v_rest_mV")] = np.nan  # model 1000001: no finite v_rest anywhere
        data = ShardData(v_mV=np.zeros((2 * A, T), np.float32), stim_pA=np.zeros((2 * A, T), np.float32),
                         params=rows, features=feats, spike_times_ms=[np.empty(0)] * (2 * A),
                         model_id=np.repeat(ids, A), amp_pA=np.tile(AMPS, 2), trial=np.zeros(2 * A, np.int32),
                         stim_index=np.tile(np.arange(A), 2).astype(np.int32), n_candidates=2)
        write_shard(directory / shard_name(index), cfg, index, data)
        done[index] = shard_record(directory, index)
        all_params.append(params)
        all_ids.append(ids)
    write_manifest(directory, cfg, done)
    return np.concatenate(all_params), np.concatenate(all_ids)


def test_write_then_read_keeps_members_and_model_ids(tmp_path: Path) -> None:
    params, ids = _fake_hh_dataset(tmp_path / "ds")
    path = tmp_path / "hall_of_fame.json"
    n = write_hall_of_fame(tmp_path / "ds", ["I_thr_pA", "v_rest_mV"], path)
    assert n == 3  # the model with a NaN feature is dropped, with its id
    hof = read_hall_of_fame(path)
    assert isinstance(hof, HallOfFame) and hof.feature_names == ["I_thr_pA", "v_rest_mV"]
    assert hof.model_ids == [0, 1, 1000000]
    np.testing.assert_array_equal(hof.params, params[[0, 1, 2]])
    assert np.all(np.isfinite(hof.features)) and hof.features.shape == (3, 2)
    assert read_hall_of_fame(tmp_path).model_ids == hof.model_ids  # a checkpoint directory works too
    sub = hof.select(["v_rest_mV"])
    assert sub is not None and sub.features.shape == (3, 1) and sub.model_ids == hof.model_ids
    np.testing.assert_array_equal(sub.features[:, 0], hof.features[:, 1])
    assert hof.select(["tau_m_ms"]) is None


def test_old_file_without_model_ids(tmp_path: Path) -> None:
    params, _ = _fake_hh_dataset(tmp_path / "ds")
    path = tmp_path / "hall_of_fame.json"
    write_hall_of_fame(tmp_path / "ds", ["I_thr_pA"], path)
    doc = json.loads(path.read_text())
    del doc["model_ids"]
    doc["param_names"] = doc["param_names"][:-2]  # a store that predates two parameters: family defaults
    path.write_text(json.dumps(doc))
    hof = read_hall_of_fame(path)
    assert hof.model_ids is None and hof.params.shape == (4, params.shape[1])
    np.testing.assert_array_equal(hof.params[:, :-2], params[:, :-2])


def test_shipped_hall_of_fame_names_its_members() -> None:
    """hh_fs's members carry their dataset model ids: exactly the checkpoint's held-out + training models, and
    the training members' features are the checkpoint's population row for row (so the ids sit on the right
    members), while the held-out members are not in it."""
    from noble.operator import default_surrogate_path
    from noble.operator.checkpoint import read_config

    cfg = read_config(default_surrogate_path())
    hof = read_hall_of_fame(default_surrogate_path())
    assert hof.model_ids is not None and len(hof.model_ids) == len(hof.params) == 192  # configs/hh_fs.yaml n_models
    assert sorted(hof.model_ids) == sorted(cfg.heldout_model_ids + cfg.train_model_ids)
    feats = hof.select(cfg.feature_names).features
    rows = [hof.model_ids.index(m) for m in cfg.train_model_ids]
    np.testing.assert_array_equal(feats[rows], np.asarray(cfg.population))
    population = {tuple(r) for r in np.asarray(cfg.population).tolist()}
    held = [hof.model_ids.index(m) for m in cfg.heldout_model_ids]
    assert not any(tuple(r) in population for r in feats[held].tolist())


def test_a_multi_compartment_population_keeps_its_family_and_parameter_order(tmp_path: Path) -> None:
    from noble.datagen.models import get

    params, _ = _fake_hh_dataset(tmp_path / "ds", family="hh_mc")
    write_hall_of_fame(tmp_path / "ds", ["I_thr_pA"], tmp_path / "hall_of_fame.json")
    hof = read_hall_of_fame(tmp_path)
    assert hof.family == "hh_mc" and hof.param_names == get("hh_mc").param_names()
    np.testing.assert_array_equal(hof.params, params)  # I_thr is finite for all four models

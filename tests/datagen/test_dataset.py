"""Shards: contents match the simulation, writes are atomic, resume skips, same config + seed = same bytes."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest

from noble.datagen.config import parse_config
from noble.datagen.dataset import build_shard, read_shard, shard_is_complete, shard_name, write_shard, generate_shard
from noble.datagen.features import TRACE_FEATURES

CFG = {
    "name": "tiny", "family": "lif", "n_models": 4, "models_per_shard": 2, "seed": 7,
    "variability": {"cv": 0.1, "sd_potential_mV": 1.0},
    "acceptance": {"I_thr_pA": [150, 260]},
    "protocol": {"kind": "fi_sweep", "amplitudes_pA": [-50, 150, 300], "start_ms": 50, "duration_ms": 300},
    "duration_ms": 400, "noise": {"sigma_pA": 5.0, "tau_ms": 5.0}, "rheobase_duration_ms": 300, "trials": 2,
}


@pytest.fixture(scope="module")
def cfg():
    return parse_config(CFG)


@pytest.fixture(scope="module")
def shard_dir(tmp_path_factory: pytest.TempPathFactory, cfg) -> Path:
    d = tmp_path_factory.mktemp("ds")
    build_shard(cfg.model_dump_json(), 0, str(d))
    return d


def test_shard_layout_and_physics(shard_dir: Path, cfg) -> None:
    s = read_shard(shard_dir / shard_name(0))
    n_rows = 2 * 3 * 2  # models x amplitudes x trials
    assert s.v_mV.shape == (n_rows, 4000) and s.v_mV.dtype == np.float32
    assert s.stim_pA.shape == s.v_mV.shape
    assert s.param_names[:2] == ["tau_m", "R"]
    assert s.feature_names[:2] == ["I_thr_pA", "s_thr_Hz_per_pA"] and len(s.feature_names) == 2 + len(TRACE_FEATURES)
    assert s.attrs["dt_ms"] == 0.1 and s.attrs["model"] == "lif" and s.attrs["seed"] == 7
    # Hall of fame: every kept model's rheobase is inside the acceptance window and equals (V_th-V_rest)/R.
    I_thr = s.features[:, 0]
    assert np.all((I_thr >= 150) & (I_thr <= 260))
    V_rest, V_th, R = (s.params[:, s.param_names.index(k)] for k in ("V_rest", "V_th", "R"))
    np.testing.assert_allclose(I_thr, (V_th - V_rest) / R * 1e3, atol=1.5)
    # Spikes (CSR) agree with the eFEL spike count of the stimulus window, and none at -50 pA.
    counts = np.array([len(t) for t in s.spike_times_ms])
    np.testing.assert_array_equal(counts, s.features[:, 2].astype(int))
    assert np.all(counts[s.amp_pA < 0] == 0) and np.all(counts[s.amp_pA == 300] > 0)
    # Two trials of the same model and amplitude differ (OU noise) but share the model id.
    assert s.model_id[0] == s.model_id[1] and s.trial[0] != s.trial[1]
    assert not np.array_equal(s.v_mV[2], s.v_mV[3])


def test_same_config_and_seed_give_identical_bytes(tmp_path: Path, shard_dir: Path, cfg) -> None:
    build_shard(cfg.model_dump_json(), 0, str(tmp_path))
    assert (tmp_path / shard_name(0)).read_bytes() == (shard_dir / shard_name(0)).read_bytes()


def test_resume_skips_complete_shard(shard_dir: Path, cfg) -> None:
    path = shard_dir / shard_name(0)
    before = path.stat().st_mtime_ns
    build_shard(cfg.model_dump_json(), 0, str(shard_dir))
    assert path.stat().st_mtime_ns == before


def test_partial_or_foreign_file_is_not_complete(tmp_path: Path, cfg) -> None:
    bad = tmp_path / shard_name(0)
    bad.write_bytes(b"\x89HDF\r\n\x1a\n truncated")
    assert not shard_is_complete(bad, cfg.digest())
    other = parse_config({**CFG, "seed": 8})
    with h5py.File(bad, "w") as h5:
        h5.attrs["config_digest"] = other.digest()
    assert not shard_is_complete(bad, cfg.digest())


def test_failed_write_leaves_no_shard(tmp_path: Path, cfg, monkeypatch: pytest.MonkeyPatch) -> None:
    data = generate_shard(cfg, 1)
    import noble.datagen.dataset as ds

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(ds.os, "replace", boom)
    with pytest.raises(OSError):
        write_shard(tmp_path / shard_name(1), cfg, 1, data)
    assert not (tmp_path / shard_name(1)).exists()

"""HDF5 shard datasets: generate one shard, write it atomically, read it back, keep the manifest.

Layout (ARCHITECTURE.md): DIR/manifest.json + DIR/shard-00000.h5, ... Each shard holds
`v_mV (n, T) float32`, `stim_pA (n, T) float32`, `params (n, P)` with names/units, `features (n, F)` with
names/units, spikes as CSR (`spike_times_ms`, `spike_index`), per-row `model_id`, `amp_pA`, `trial`, and
attrs `dt_ms`, `model`, `seed`, `config_digest`. A shard is written to a temporary name and renamed when
complete; the same config + seed give bit-identical shards (no timestamps, fixed chunking/compression).
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from .. import __version__
from .config import DatasetConfig
from .features import NEURON_FEATURES, TRACE_FEATURES, rheobase_and_slope, trace_features
from .models import get as get_family
from .simulate import simulate
from .stimuli import render, stim_window_ms

SCHEMA_VERSION = 1
MANIFEST = "manifest.json"


def shard_name(index: int) -> str:
    return f"shard-{index:05d}.h5"


def shard_seed(seed: int, index: int) -> int:
    """Independent, reproducible stream per shard (SeedSequence spawning)."""
    return int(np.random.SeedSequence([seed, index]).generate_state(1)[0])


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def atomic_write_bytes(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


# ---- generation --------------------------------------------------------------------------------------
@dataclass
class ShardData:
    v_mV: np.ndarray
    stim_pA: np.ndarray
    params: np.ndarray
    features: np.ndarray
    spike_times_ms: list[np.ndarray]
    model_id: np.ndarray
    amp_pA: np.ndarray
    trial: np.ndarray
    stim_index: np.ndarray
    n_candidates: int


def _accept(cfg: DatasetConfig, I_thr: np.ndarray, s_thr: np.ndarray) -> np.ndarray:
    ok = np.isfinite(I_thr) & np.isfinite(s_thr)
    win = cfg.acceptance
    if win.I_thr_pA is not None:
        ok &= (I_thr >= win.I_thr_pA[0]) & (I_thr <= win.I_thr_pA[1])
    if win.s_thr_Hz_per_pA is not None:
        ok &= (s_thr >= win.s_thr_Hz_per_pA[0]) & (s_thr <= win.s_thr_Hz_per_pA[1])
    return ok


def select_models(cfg: DatasetConfig, index: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """Sample candidate models around the preset, keep those inside the acceptance window ('hall of
    fame'), up to the shard's quota. Returns params, I_thr, s_thr of the kept models and the candidates tried."""
    family = get_family(cfg.family)
    quota = cfg.shard_models(index)
    kept_p, kept_i, kept_s = [], [], []
    tried = 0
    for _ in range(cfg.acceptance.max_rounds):
        need = quota - sum(len(p) for p in kept_p)
        if need <= 0:
            break
        n_cand = int(np.ceil(need * cfg.acceptance.oversample))
        cand = family.sample_params(n_cand, rng, cfg.preset, cfg.overrides, cv=cfg.variability.cv,
                                    sd_potential=cfg.variability.sd_potential_mV)
        tried += n_cand
        I_thr, s_thr = rheobase_and_slope(family, cand, duration_ms=cfg.rheobase_duration_ms,
                                          max_pA=cfg.rheobase_max_pA, dt_ms=cfg.dt_ms,
                                          stim_dt_ms=cfg.record_dt_ms, target=cfg.brian_target)
        ok = np.flatnonzero(_accept(cfg, I_thr, s_thr))[:need]
        kept_p.append(cand[ok])
        kept_i.append(I_thr[ok])
        kept_s.append(s_thr[ok])
    P = len(family.params)
    params = np.concatenate(kept_p) if kept_p else np.empty((0, P))
    return params, np.concatenate(kept_i) if kept_i else np.empty(0), np.concatenate(kept_s) if kept_s else np.empty(0), tried


def generate_shard(cfg: DatasetConfig, index: int) -> ShardData:
    """Simulate shard `index`: accepted models x stimuli x trials as ONE Brian2 group."""
    family = get_family(cfg.family)
    rng = np.random.default_rng(shard_seed(cfg.seed, index))
    params, I_thr, s_thr, tried = select_models(cfg, index, rng)
    stims = cfg.stimuli()
    M, S, K = len(params), len(stims), cfg.trials
    waves = np.stack([render(s, cfg.duration_ms, cfg.record_dt_ms) for s in stims])  # (S, T)
    # Row order: model-major, then stimulus, then trial.
    m_idx = np.repeat(np.arange(M), S * K)
    s_idx = np.tile(np.repeat(np.arange(S), K), M)
    k_idx = np.tile(np.arange(K), M * S)
    rows = params[m_idx]
    stim = waves[s_idx]
    if M == 0:
        T = int(round(cfg.duration_ms / cfg.record_dt_ms))
        v = np.empty((0, T), dtype=np.float32)
        spikes: list[np.ndarray] = []
    else:
        res = simulate(family, rows, stim, stim_dt_ms=cfg.record_dt_ms, duration_ms=cfg.duration_ms,
                       dt_ms=cfg.dt_ms, record_dt_ms=cfg.record_dt_ms, noise_sigma_pA=cfg.noise.sigma_pA,
                       noise_tau_ms=cfg.noise.tau_ms, seed=int(rng.integers(2**31)), target=cfg.brian_target)
        v, spikes = res.v_mV, res.spike_times_ms
    amps = np.array([getattr(s, "amplitude_pA", getattr(s, "mean_pA", 0.0)) for s in stims])[s_idx] if M else np.empty(0)
    windows = np.array([stim_window_ms(s) for s in stims]).reshape(-1, 2)
    if M:
        tf = trace_features(v, cfg.record_dt_ms, windows[s_idx, 0], windows[s_idx, 1], amps)
        per_trace = np.stack([tf[name] for name in TRACE_FEATURES], axis=1)
    else:
        per_trace = np.empty((0, len(TRACE_FEATURES)))
    per_neuron = np.stack([I_thr[m_idx], s_thr[m_idx]], axis=1) if M else np.empty((0, 2))
    features = np.concatenate([per_neuron, per_trace], axis=1)
    model_id = (np.int64(index) * 1_000_000 + m_idx).astype(np.int64)
    return ShardData(v_mV=v.astype(np.float32), stim_pA=stim.astype(np.float32), params=rows,
                     features=features, spike_times_ms=spikes, model_id=model_id, amp_pA=amps.astype(np.float64),
                     trial=k_idx.astype(np.int32), stim_index=s_idx.astype(np.int32), n_candidates=tried)


def feature_names() -> list[str]:
    return list(NEURON_FEATURES) + list(TRACE_FEATURES)


def feature_units() -> list[str]:
    return list(NEURON_FEATURES.values()) + [spec[2] for spec in TRACE_FEATURES.values()]


# ---- writing / reading ---------------------------------------------------------------------------------
def _ds(h5: h5py.File, name: str, data: np.ndarray, chunk_rows: int | None = None) -> h5py.Dataset:
    kw: dict[str, Any] = {"track_times": False}
    if data.ndim == 2 and data.size and chunk_rows:
        kw.update(chunks=(min(chunk_rows, data.shape[0]), data.shape[1]), compression="gzip",
                  compression_opts=4, shuffle=True)
    ds = h5.create_dataset(name, data=data, **kw)
    h5.flush()  # allocate and write now, in creation order: the file layout must not depend on cache timing
    return ds


def write_shard(path: Path, cfg: DatasetConfig, index: int, data: ShardData) -> None:
    """Write to a temporary name in the same directory, fsync, then rename: a shard is whole or absent."""
    family = get_family(cfg.family)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    # No chunk cache: compressed chunks go to disk as they are written, so the byte layout is reproducible.
    with h5py.File(tmp, "w", libver="earliest", track_order=False, rdcc_nbytes=0) as h5:
        _ds(h5, "v_mV", data.v_mV, chunk_rows=16)
        _ds(h5, "stim_pA", data.stim_pA, chunk_rows=16)
        p = _ds(h5, "params", data.params.astype(np.float64))
        p.attrs["names"] = np.array(family.param_names(), dtype="S")
        p.attrs["units"] = np.array([s.unit for s in family.params], dtype="S")
        f = _ds(h5, "features", data.features.astype(np.float64))
        f.attrs["names"] = np.array(feature_names(), dtype="S")
        f.attrs["units"] = np.array(feature_units(), dtype="S")
        counts = np.array([len(s) for s in data.spike_times_ms], dtype=np.int64)
        _ds(h5, "spike_index", np.concatenate([[0], np.cumsum(counts)]).astype(np.int64))
        flat = np.concatenate(data.spike_times_ms) if data.spike_times_ms else np.empty(0)
        _ds(h5, "spike_times_ms", flat.astype(np.float64))
        _ds(h5, "model_id", data.model_id)
        _ds(h5, "amp_pA", data.amp_pA)
        _ds(h5, "trial", data.trial)
        _ds(h5, "stim_index", data.stim_index)
        h5.attrs["dt_ms"] = cfg.record_dt_ms
        h5.attrs["sim_dt_ms"] = cfg.dt_ms
        h5.attrs["model"] = cfg.family
        h5.attrs["preset"] = cfg.preset or family.default_preset
        h5.attrs["seed"] = cfg.seed
        h5.attrs["shard_index"] = index
        h5.attrs["config_digest"] = cfg.digest()
        h5.attrs["n_candidates"] = data.n_candidates
        h5.attrs["schema_version"] = SCHEMA_VERSION
    with open(tmp, "rb+") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def shard_is_complete(path: Path, digest: str) -> bool:
    """A shard counts as done when it opens, belongs to this config and has all its datasets."""
    if not path.is_file():
        return False
    try:
        with h5py.File(path, "r") as h5:
            return h5.attrs.get("config_digest") == digest and all(
                k in h5 for k in ("v_mV", "params", "features", "spike_index", "model_id"))
    except OSError:
        return False


@dataclass
class Shard:
    """An in-memory shard read back from disk."""

    v_mV: np.ndarray
    stim_pA: np.ndarray
    params: np.ndarray
    param_names: list[str]
    features: np.ndarray
    feature_names: list[str]
    spike_times_ms: list[np.ndarray]
    model_id: np.ndarray
    amp_pA: np.ndarray
    trial: np.ndarray
    attrs: dict[str, Any]


def read_shard(path: Path) -> Shard:
    with h5py.File(path, "r") as h5:
        idx = h5["spike_index"][:]
        flat = h5["spike_times_ms"][:]
        return Shard(
            v_mV=h5["v_mV"][:], stim_pA=h5["stim_pA"][:], params=h5["params"][:],
            param_names=[s.decode() for s in h5["params"].attrs["names"]],
            features=h5["features"][:], feature_names=[s.decode() for s in h5["features"].attrs["names"]],
            spike_times_ms=[flat[idx[k]:idx[k + 1]] for k in range(len(idx) - 1)],
            model_id=h5["model_id"][:], amp_pA=h5["amp_pA"][:], trial=h5["trial"][:],
            attrs={k: (v.item() if hasattr(v, "item") else v) for k, v in h5.attrs.items()},
        )


# ---- manifest --------------------------------------------------------------------------------------------
def package_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {"noble": __version__, "python": platform.python_version()}
    for pkg in ("brian2", "numpy", "efel", "h5py"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            pass
    return out


def read_manifest(directory: Path) -> dict[str, Any] | None:
    path = Path(directory) / MANIFEST
    if not path.is_file():
        return None
    return json.loads(path.read_text())


def write_manifest(directory: Path, cfg: DatasetConfig, done: dict[int, dict[str, Any]],
                   failed: dict[int, str] | None = None) -> dict[str, Any]:
    """Atomically (re)write the manifest from the shards known to be complete."""
    manifest = {
        "schema_version": SCHEMA_VERSION,
        "name": cfg.name,
        "config": cfg.model_dump(mode="json"),
        "config_digest": cfg.digest(),
        "seed": cfg.seed,
        "versions": package_versions(),
        "n_shards": cfg.n_shards,
        "complete": len(done) == cfg.n_shards,
        "shards": [done[i] for i in sorted(done)],
        "failed": {str(k): v for k, v in sorted((failed or {}).items())},
    }
    atomic_write_bytes(Path(directory) / MANIFEST, (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode())
    return manifest


def shard_record(directory: Path, index: int) -> dict[str, Any]:
    path = Path(directory) / shard_name(index)
    with h5py.File(path, "r") as h5:
        rows = int(h5["v_mV"].shape[0])
        models = int(len(np.unique(h5["model_id"][:])))
    return {"index": index, "file": path.name, "rows": rows, "models": models, "sha256": sha256_file(path)}


def build_shard(cfg_json: str, index: int, directory: str) -> dict[str, Any]:
    """Generate + write one shard unless already complete (the unit of work a Dask task runs)."""
    cfg = DatasetConfig.model_validate_json(cfg_json)
    d = Path(directory)
    path = d / shard_name(index)
    if not shard_is_complete(path, cfg.digest()):
        data = generate_shard(cfg, index)
        write_shard(path, cfg, index, data)
    return shard_record(d, index)


def open_dataset(directory: str | Path) -> list[Path]:
    """Paths of the complete shards listed in a dataset's manifest (checked to exist)."""
    d = Path(directory)
    manifest = read_manifest(d)
    if manifest is None:
        raise FileNotFoundError(f"no {MANIFEST} in {d}")
    paths = [d / s["file"] for s in manifest["shards"]]
    missing = [p for p in paths if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"dataset {d} lists missing shards: {[p.name for p in missing]}")
    return paths

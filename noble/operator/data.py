"""HDF5 dataset -> arrays for the surrogate: traces on the surrogate's grid, stimuli, per-neuron features.

Per-neuron features come from the dataset's feature table: the neuron-level columns (I_thr_pA,
s_thr_Hz_per_pA) as they are, a per-trace eFEL feature named in the config (e.g. v_rest_mV, tau_m_ms) as
its median over that model's traces where it is defined, and the derived `fi_slope_Hz_per_pA`: the slope
of a straight line through (amplitude, rate) of the model's suprathreshold long squares (Allen Cell Types'
`f_i_curve_slope`), which describes the F-I curve far above rheobase where s_thr (measured just above it)
does not, and `fi_lin_Hz_per_pA`/`fi_quad_Hz_per_pA2`: a parabola through rheobase, rate = fi_lin x +
fi_quad x^2 with x = I - I_thr, which follows the curved F-I of fast-spiking cells (the F-I phase prior
uses it: noble/operator/phase.py). Traces are subsampled to
dt_ms (an integer multiple of the dataset's dt): instantaneous samples, so peaks stay honest samples of the
simulated voltage (never averaged away).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..datagen.dataset import open_dataset, read_manifest, read_shard
from ..datagen.features import NEURON_FEATURES, TRACE_FEATURES

log = logging.getLogger(__name__)


@dataclass
class TraceSet:
    """All rows of a dataset on the surrogate grid (row order: shards, then the shard's row order)."""

    v_mV: np.ndarray  # (N, T) float32
    stim_pA: np.ndarray  # (N, T) float32
    features: np.ndarray  # (N, F) per-neuron features of each row's model
    feature_names: list[str]
    feature_units: list[str]
    model_id: np.ndarray  # (N,) int64
    amp_pA: np.ndarray  # (N,)
    dt_ms: float
    dataset_dt_ms: float
    family: str
    preset: str | None
    protocol: dict[str, Any]
    manifest: dict[str, Any]

    @property
    def n_time(self) -> int:
        return self.v_mV.shape[1]

    def models(self) -> np.ndarray:
        return np.unique(self.model_id)

    def rows_of(self, model_ids: np.ndarray) -> np.ndarray:
        return np.flatnonzero(np.isin(self.model_id, model_ids))

    def model_features(self, model_ids: np.ndarray) -> np.ndarray:
        """(M, F) feature vector of each model (first row of each)."""
        return np.stack([self.features[np.flatnonzero(self.model_id == m)[0]] for m in model_ids])


DERIVED_FEATURES: dict[str, str] = {"fi_slope_Hz_per_pA": "Hz/pA", "fi_lin_Hz_per_pA": "Hz/pA",
                                    "fi_quad_Hz_per_pA2": "Hz/pA^2"}


def fi_slope(amp_pA: np.ndarray, rate_Hz: np.ndarray) -> float:
    """Allen-style f-I slope: least-squares line through the suprathreshold (rate > 0) depolarising steps."""
    sup = (amp_pA > 0) & (rate_Hz > 0) & np.isfinite(rate_Hz)
    if sup.sum() < 2 or np.ptp(amp_pA[sup]) == 0:
        return float("nan")
    return float(np.polyfit(amp_pA[sup], rate_Hz[sup], 1)[0])


def quadratic_fi(amp_pA: np.ndarray, rate_Hz: np.ndarray, I_thr_pA: float) -> tuple[float, float]:
    """(fi_lin, fi_quad): least-squares parabola through (I_thr, 0) of the suprathreshold steps' rates."""
    sup = (amp_pA > 0) & (rate_Hz > 0) & np.isfinite(rate_Hz)
    x = amp_pA[sup] - I_thr_pA
    if sup.sum() < 3 or len(np.unique(x)) < 2 or not np.isfinite(I_thr_pA):
        return float("nan"), float("nan")
    lin, quad = np.linalg.lstsq(np.stack([x, x * x], axis=1), rate_Hz[sup], rcond=None)[0]
    return float(lin), float(quad)


def derived_feature(name: str, amp_pA: np.ndarray, rate_Hz: np.ndarray, I_thr_pA: float) -> float:
    """One model's DERIVED_FEATURES value from its steps' amplitudes and rates (and its rheobase)."""
    if name == "fi_slope_Hz_per_pA":
        return fi_slope(amp_pA, rate_Hz)
    lin, quad = quadratic_fi(amp_pA, rate_Hz, I_thr_pA)
    return {"fi_lin_Hz_per_pA": lin, "fi_quad_Hz_per_pA2": quad}[name]


def feature_unit(name: str) -> str:
    if name in DERIVED_FEATURES:
        return DERIVED_FEATURES[name]
    if name in NEURON_FEATURES:
        return NEURON_FEATURES[name]
    if name in TRACE_FEATURES:
        return TRACE_FEATURES[name][2]
    raise ValueError(f"unknown feature {name!r}; allowed: "
                     f"{list(NEURON_FEATURES) + list(DERIVED_FEATURES) + list(TRACE_FEATURES)}")


def step_protocol(manifest: dict[str, Any]) -> dict[str, Any]:
    """start/duration/amplitudes of the dataset's long-square protocol (the only one the surrogate takes)."""
    proto = manifest["config"]["protocol"]
    if isinstance(proto, dict) and proto.get("kind") == "fi_sweep":
        return {"start_ms": float(proto["start_ms"]), "duration_ms": float(proto["duration_ms"]),
                "amplitudes_pA": [float(a) for a in proto["amplitudes_pA"]]}
    steps = [s for s in proto if s.get("kind") == "step"] if isinstance(proto, list) else []
    if not steps or len(steps) != len(proto) or len({(s["start_ms"], s["duration_ms"]) for s in steps}) != 1:
        raise ValueError("the surrogate trains on long-square steps with one common onset and duration")
    return {"start_ms": float(steps[0]["start_ms"]), "duration_ms": float(steps[0]["duration_ms"]),
            "amplitudes_pA": [float(s["amplitude_pA"]) for s in steps]}


def load_traces(directory: str | Path, feature_names: list[str], dt_ms: float) -> TraceSet:
    """Read every shard, subsample to dt_ms and attach each row's per-neuron features."""
    paths = open_dataset(directory)
    manifest = read_manifest(Path(directory)) or {}
    units = [feature_unit(n) for n in feature_names]
    vs, stims, feats, mids, amps = [], [], [], [], []
    ds_dt = None
    family = preset = None
    for path in paths:
        sh = read_shard(path)
        if sh.v_mV.shape[0] == 0:
            continue
        ds_dt = float(sh.attrs["dt_ms"]) if ds_dt is None else ds_dt
        family, preset = sh.attrs.get("model"), sh.attrs.get("preset")
        ratio = dt_ms / ds_dt
        step = int(round(ratio))
        if step < 1 or abs(ratio - step) > 1e-6:
            raise ValueError(f"dt_ms={dt_ms} must be an integer multiple of the dataset's dt_ms={ds_dt}")
        cols = {n: k for k, n in enumerate(sh.feature_names)}
        per_row = np.full((sh.v_mV.shape[0], len(feature_names)), np.nan)
        for m in np.unique(sh.model_id):
            rows = sh.model_id == m
            for j, name in enumerate(feature_names):
                if name in DERIVED_FEATURES:
                    I_thr = sh.features[rows, cols["I_thr_pA"]][0]
                    per_row[rows, j] = derived_feature(name, sh.amp_pA[rows], sh.features[rows, cols["rate_Hz"]],
                                                       I_thr)
                    continue
                if name not in cols:
                    raise ValueError(f"feature {name!r} is not in the dataset (has {sh.feature_names})")
                col = sh.features[rows, cols[name]]
                if name in NEURON_FEATURES:
                    per_row[rows, j] = col[0]
                else:
                    finite = col[np.isfinite(col)]
                    per_row[rows, j] = np.median(finite) if len(finite) else np.nan
        vs.append(sh.v_mV[:, ::step])
        stims.append(sh.stim_pA[:, ::step])
        feats.append(per_row)
        mids.append(sh.model_id)
        amps.append(sh.amp_pA)
    if not vs:
        raise ValueError(f"dataset {directory} has no traces")
    features = np.concatenate(feats)
    model_id = np.concatenate(mids)
    bad = ~np.all(np.isfinite(features), axis=1)
    if bad.any():
        log.warning("dropping %d models with undefined features", len(np.unique(model_id[bad])))
    keep = ~np.isin(model_id, np.unique(model_id[bad]))
    return TraceSet(
        v_mV=np.ascontiguousarray(np.concatenate(vs)[keep], dtype=np.float32),
        stim_pA=np.ascontiguousarray(np.concatenate(stims)[keep], dtype=np.float32),
        features=features[keep], feature_names=list(feature_names), feature_units=units,
        model_id=model_id[keep], amp_pA=np.concatenate(amps)[keep], dt_ms=float(dt_ms),
        dataset_dt_ms=float(ds_dt), family=str(family), preset=None if preset is None else str(preset),
        protocol=step_protocol(manifest), manifest=manifest,
    )


def split_models(model_ids: np.ndarray, n_holdout: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Hold out whole neuron MODELS (never single traces): (train ids, held-out ids), seeded."""
    ids = np.unique(model_ids)
    if n_holdout >= len(ids):
        raise ValueError(f"holdout_models={n_holdout} leaves no training model (dataset has {len(ids)})")
    perm = np.random.default_rng([seed, 7]).permutation(len(ids))
    held = np.sort(ids[perm[:n_holdout]])
    train = np.sort(ids[perm[n_holdout:]])
    return train, held

"""From stage 1's fitted features to hh parameters: the nearest members of the surrogate's hall of fame.

The hall of fame is the population the surrogate was trained on (parameters + the surrogate's features
per model; read and written by noble.operator.hall_of_fame): from `hall_of_fame.json` beside the checkpoint
when shipped, else from the training dataset named in the checkpoint's card (HDF5 shards), else the
family's presets with their features simulated once per process. Members are ranked by the Mahalanobis distance of their features to stage 1's fit
under stage 1's covariance, after an exact rescaling of the membrane area: every conductance is a
density, so multiplying the area by a multiplies the rheobase by a and divides F-I slopes by a, and leaves
potentials and time constants alone. Each member gets its best a (a 1-D search), i.e. diam x sqrt(a).
"""

from __future__ import annotations

import functools
import logging
import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from noble.datagen.features import rheobase_and_slope, trace_features
from noble.datagen.models.hh import HH
from noble.datagen.simulate import simulate, steps_matrix
from noble.operator.hall_of_fame import HallOfFame, hall_of_fame_from_dataset, read_hall_of_fame

from .hhmodel import IDX, params_row

log = logging.getLogger(__name__)

# How features scale with the membrane area a (currents scale with a at equal densities): I_thr ~ a,
# rates per pA ~ 1/a, rates per pA^2 ~ 1/a^2; the rest do not change.
AREA_POWER = {"I_thr_pA": 1, "s_thr_Hz_per_pA": -1, "fi_slope_Hz_per_pA": -1, "fi_lin_Hz_per_pA": -1,
              "fi_quad_Hz_per_pA2": -2}


@functools.lru_cache(maxsize=8)
def _preset_features(feature_names: tuple[str, ...], start_ms: float, duration_ms: float,
                     amplitudes: tuple[float, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Features of every hh preset, simulated on the surrogate's protocol (cached per process)."""
    from noble.operator.data import DERIVED_FEATURES, derived_feature

    presets = sorted(HH.presets)
    P = np.stack([params_row(HH.preset_values(p)) for p in presets])
    I_thr, s_thr = rheobase_and_slope(HH, P, start_ms=start_ms, duration_ms=duration_ms, tol_pA=2.0)
    amps = np.asarray(amplitudes, dtype=float)
    total = start_ms + duration_ms + 100.0
    stim = steps_matrix(np.tile(amps, len(P)), start_ms, duration_ms, total, 0.1)
    res = simulate(HH, np.repeat(P, len(amps), axis=0), stim, stim_dt_ms=0.1, duration_ms=total, dt_ms=0.025,
                   record_dt_ms=0.1)
    tf = trace_features(res.v_mV, 0.1, start_ms, start_ms + duration_ms, np.tile(amps, len(P)))
    out = np.full((len(P), len(feature_names)), np.nan)
    for i in range(len(P)):
        sl = slice(i * len(amps), (i + 1) * len(amps))
        for j, name in enumerate(feature_names):
            if name == "I_thr_pA":
                out[i, j] = I_thr[i]
            elif name == "s_thr_Hz_per_pA":
                out[i, j] = s_thr[i]
            elif name in DERIVED_FEATURES:
                out[i, j] = derived_feature(name, amps, tf["rate_Hz"][sl], float(I_thr[i]))
            elif name in tf:
                col = tf[name][sl]
                col = col[np.isfinite(col)]
                out[i, j] = float(np.median(col)) if len(col) else math.nan
    return P, out


def hall_of_fame(surrogate: Any, dataset: str | Path | None = None) -> HallOfFame:
    """The surrogate's population as (params, features) (module docstring for the search order)."""
    cfg = surrogate.config
    names = list(cfg.feature_names)
    ck = Path(getattr(surrogate, "path", None) or ".")
    cand = [ck / "hall_of_fame.json"]
    for c in cand:
        if c.is_file():
            hof = read_hall_of_fame(c).select(names)
            if hof is not None and len(hof.params) and hof.family == "hh":  # the fit's model is hh
                return hof
    dirs: list[Path] = []
    if dataset is not None:
        dirs.append(Path(dataset))
    card_ds = (getattr(surrogate, "card", {}) or {}).get("training_data", {}).get("dataset")
    if card_ds:
        p = Path(card_ds)
        dirs += [p, Path.cwd() / p, Path(__file__).resolve().parents[2] / p]
    for d in dirs:
        if (d / "manifest.json").is_file():
            try:
                hof = hall_of_fame_from_dataset(d, names)
            except Exception as exc:  # unreadable shards: fall back
                log.warning("hall of fame from %s failed: %s", d, exc)
                hof = None
            if hof is not None and len(hof.params) and hof.family == "hh":
                return hof
    p = cfg.stimulus
    P, Fm = _preset_features(tuple(names), float(p.start_ms), float(p.duration_ms),
                             tuple(float(a) for a in p.amplitudes_pA) or (-50.0, 100.0, 200.0, 300.0))
    ok = np.all(np.isfinite(Fm), axis=1)
    return HallOfFame(P[ok], Fm[ok], names, "hh presets (simulated)")


def _scaled(features: np.ndarray, names: Sequence[str], a: np.ndarray) -> np.ndarray:
    """Features (F,) of a member whose area is multiplied by each a (G,) -> (G, F)."""
    out = np.repeat(features[None, :], len(a), axis=0)
    for j, n in enumerate(names):
        if n in AREA_POWER:
            out[:, j] = features[j] * a ** AREA_POWER[n]
    return out


def rank_members(hof: HallOfFame, mean: np.ndarray, cov: np.ndarray, lo: np.ndarray, hi: np.ndarray,
                 diam_bounds: tuple[float, float] = (10.0, 200.0)) -> list[dict[str, Any]]:
    """Members sorted by Mahalanobis distance (normalised features) after their best area rescaling."""
    D = hi - lo
    prec = np.linalg.pinv(cov / np.outer(D, D))
    m = (mean - lo) / D
    grid = np.exp(np.linspace(np.log(0.1), np.log(10.0), 201))
    out = []
    for i in range(len(hof.params)):
        d0 = hof.params[i, IDX["diam_um"]]
        a_ok = grid[(d0 * np.sqrt(grid) >= diam_bounds[0]) & (d0 * np.sqrt(grid) <= diam_bounds[1])]
        if not len(a_ok):
            continue
        f = (_scaled(hof.features[i], hof.feature_names, a_ok) - lo) / D
        r = f - m
        d2 = np.einsum("gi,ij,gj->g", r, prec, r)
        k = int(np.argmin(d2))
        p = hof.params[i].copy()
        p[IDX["diam_um"]] = d0 * math.sqrt(a_ok[k])
        out.append({"member": i, "area_scale": float(a_ok[k]), "mahalanobis2": float(d2[k]), "params": p,
                    "features": (lo + f[k] * D).tolist()})
    out.sort(key=lambda e: e["mahalanobis2"])
    return out

"""The hall of fame: the population a surrogate was trained on, as model parameters + features per model.

`hall_of_fame.json` beside a checkpoint (written by `noble train`) lets the fit warm-start from the training
neurons (hh surrogates), and `noble evaluate`, the tests and `/v1/models/{name}/population` reach the held-out
neurons, without the (large, unshipped) training dataset. It holds `family` (absent in files written before
other families had one: hh), `param_names`,
`feature_names`, `params` (M, P), `features` (M, F), `source` (the dataset) and, from files written since
the model ids were added, `model_ids` (M,): the dataset's model id of every member, so a caller can tell
the checkpoint's `heldout_model_ids` (never trained on) from its `train_model_ids`. Older files have no
`model_ids` (None here).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Sequence

import numpy as np

from ..datagen.models import get as get_family
from ..io._atomic import atomic_path

FILENAME = "hall_of_fame.json"


@dataclass
class HallOfFame:
    """Parameter rows (M, P) in the family's order of today, their features (M, F) and, when known, model ids."""

    params: np.ndarray
    features: np.ndarray
    feature_names: list[str]
    source: str
    model_ids: list[int] | None = None
    family: str = "hh"

    @property
    def param_names(self) -> list[str]:
        return get_family(self.family).param_names()

    def select(self, feature_names: Sequence[str]) -> "HallOfFame | None":
        """The same members with only `feature_names` as feature columns (in that order); None if one is missing."""
        names = list(feature_names)
        if not set(names) <= set(self.feature_names):
            return None
        cols = [self.feature_names.index(n) for n in names]
        return replace(self, features=self.features[:, cols], feature_names=names)


def in_family_order(params: np.ndarray, names: Sequence[str], family: str = "hh") -> np.ndarray:
    """Rows stored under `names` as (M, P) in the family's order of today; a parameter the store predates
    (hh's I_D: g_D, tau_D) takes the family default, i.e. the model the rows were simulated with."""
    names = list(names)
    fam = get_family(family)
    order = fam.param_names()
    out = np.empty((params.shape[0], len(order)))
    for j, name in enumerate(order):
        out[:, j] = params[:, names.index(name)] if name in names else fam.param_spec(name).default
    return out


def read_hall_of_fame(path: str | Path) -> HallOfFame:
    """A `hall_of_fame.json` (or a checkpoint directory holding one): every member and feature it stores,
    parameters in today's hh order; `model_ids` None for files that predate them."""
    p = Path(path)
    if p.is_dir():
        p = p / FILENAME
    doc = json.loads(p.read_text())
    family = str(doc.get("family", "hh"))
    names = doc.get("param_names", get_family(family).param_names())
    params = in_family_order(np.asarray(doc["params"], dtype=np.float64), names, family)
    feats = np.asarray(doc["features"], dtype=np.float64)
    ids = doc.get("model_ids")
    if ids is not None:
        ids = [int(m) for m in ids]
        if len(ids) != len(params):
            raise ValueError(f"{p}: {len(ids)} model_ids for {len(params)} members")
    return HallOfFame(params, feats, list(doc["feature_names"]), str(p), ids, family)


def hall_of_fame_from_dataset(directory: str | Path, feature_names: Sequence[str]) -> HallOfFame | None:
    """Per-model parameters, features and model ids from a dataset's HDF5 shards (only the small tables are
    read); None when a feature is missing from the shards or no model is left. Models with a non-finite
    feature are dropped."""
    import h5py

    from ..datagen.dataset import open_dataset, read_manifest
    from ..datagen.features import NEURON_FEATURES
    from .data import DERIVED_FEATURES, derived_feature

    feature_names = list(feature_names)
    family = str(((read_manifest(Path(directory)) or {}).get("config") or {}).get("family", "hh"))
    rows_p: list[np.ndarray] = []
    rows_f: list[list[float]] = []
    ids: list[int] = []
    for path in open_dataset(Path(directory)):
        with h5py.File(path, "r") as h5:
            if h5["params"].shape[0] == 0:
                continue
            pnames = [s.decode() if isinstance(s, bytes) else str(s) for s in h5["params"].attrs["names"]]
            fnames = [s.decode() if isinstance(s, bytes) else str(s) for s in h5["features"].attrs["names"]]
            params, feats = h5["params"][:], h5["features"][:]
            mid, amp = h5["model_id"][:], h5["amp_pA"][:]
        cols = {n: k for k, n in enumerate(fnames)}
        for m in np.unique(mid):
            rows = np.flatnonzero(mid == m)
            vec: list[float] = []
            for name in feature_names:
                if name in DERIVED_FEATURES:
                    vec.append(derived_feature(name, amp[rows], feats[rows, cols["rate_Hz"]],
                                               float(feats[rows[0], cols["I_thr_pA"]])))
                elif name not in cols:
                    return None
                elif name in NEURON_FEATURES:
                    vec.append(float(feats[rows[0], cols[name]]))
                else:
                    col = feats[rows, cols[name]]
                    col = col[np.isfinite(col)]
                    vec.append(float(np.median(col)) if len(col) else math.nan)
            rows_p.append(in_family_order(params[rows[0]][None, :], pnames, family)[0])
            rows_f.append(vec)
            ids.append(int(m))
    if not rows_p:
        return None
    P, Fm = np.stack(rows_p), np.asarray(rows_f)
    ok = np.all(np.isfinite(Fm), axis=1)
    return HallOfFame(P[ok], Fm[ok], feature_names, str(directory), [m for m, k in zip(ids, ok) if k], family)


def write_hall_of_fame(dataset: str | Path, feature_names: Sequence[str], path: str | Path) -> int:
    """Write the dataset's population (model parameters, features and model ids per model) as
    `hall_of_fame.json` at path, so a shipped checkpoint warm-starts fits without its training data.
    Returns the number of members; ValueError when the dataset has no such population."""
    hof = hall_of_fame_from_dataset(Path(dataset), list(feature_names))
    if hof is None or not len(hof.params):
        raise ValueError(f"no population with features {list(feature_names)} in {dataset}")
    doc = {"source": str(dataset), "family": hof.family, "param_names": hof.param_names,
           "feature_names": list(feature_names),
           "params": hof.params.tolist(), "features": hof.features.tolist(), "model_ids": hof.model_ids}
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(doc) + "\n")
    return len(hof.params)

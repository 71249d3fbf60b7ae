"""GET /v1/models: model families (parameter spaces with units, presets) and the loaded surrogates;
GET /v1/models/{name}/population: members of a surrogate's training population, with the solver parameters
that made them, so a client can run the same neurons through the surrogate and through Brian2."""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
from fastapi import APIRouter, Path, Query, Request

from ..deps import AUTH_ERRORS, registry_of, settings_of, store_of
from ..errors import ApiError
from ..schemas import NAME_PATTERN, FamilyOut, ModelsOut, PopulationOut, SurrogateOut
from ..surrogates import LoadedSurrogate

router = APIRouter(prefix="/v1", tags=["models"])


def families_out() -> list[FamilyOut]:
    from ...datagen.models import available, get

    return [FamilyOut.model_validate(get(name).describe()) for name in available()]


@router.get("/models", response_model=ModelsOut, responses=AUTH_ERRORS,
            summary="Model families and loaded surrogates (feature ranges, grid, held-out metrics)")
async def models(request: Request) -> ModelsOut:
    registry = registry_of(request)
    surrogates = [SurrogateOut.model_validate(item.describe(default=(name == registry.default_name)))
                  for name, item in registry.items.items()]
    return ModelsOut(families=request.app.state.families, surrogates=surrogates,
                     default_surrogate=registry.default_name, surrogate_errors=list(registry.errors))


def population_members(loaded: LoadedSurrogate, n: int, seed: int) -> dict[str, Any]:
    """n members of the surrogate's training population (hall_of_fame.json beside its checkpoint) whose features
    lie inside its trained ranges: held-out members (never trained on) first, then training members, each group
    in a seeded random order. FileNotFoundError when the checkpoint ships no population."""
    from ...operator.hall_of_fame import read_hall_of_fame

    path = loaded.path / "hall_of_fame.json"
    if not path.is_file():
        raise FileNotFoundError(f"surrogate {loaded.name!r} ships no population (no hall_of_fame.json)")
    hof = read_hall_of_fame(path)
    names = loaded.feature_names
    missing = [f for f in names if f not in hof.feature_names]
    if missing:
        raise FileNotFoundError(f"the population of {loaded.name!r} lacks the features {missing}")
    cols = [hof.feature_names.index(f) for f in names]
    feats = np.asarray(hof.features, dtype=np.float64)[:, cols]
    ranges = loaded.feature_ranges()
    lo = np.array([ranges[f][0] for f in names])
    hi = np.array([ranges[f][1] for f in names])
    inside = np.all((feats >= lo) & (feats <= hi), axis=1)
    param_names = hof.param_names  # read_hall_of_fame returns the parameters in the family's order
    ids = hof.model_ids
    held_ids = set(int(m) for m in (getattr(loaded.config, "heldout_model_ids", None) or []))
    held = np.array([ids is not None and int(ids[i]) in held_ids for i in range(len(feats))])
    rng = np.random.default_rng(seed)
    order = np.concatenate([rng.permutation(np.flatnonzero(inside & held)),
                            rng.permutation(np.flatnonzero(inside & ~held))])[:n]
    members = [{"member": int(i), "model_id": None if ids is None else int(ids[i]), "heldout": bool(held[i]),
                "features": {f: float(feats[i, j]) for j, f in enumerate(names)},
                "params": {p: float(hof.params[i, k]) for k, p in enumerate(param_names)}} for i in order]
    cfg = loaded.config
    return {"surrogate": loaded.name, "family": getattr(cfg, "family", None) or "hh",
            "preset": getattr(cfg, "preset", None), "n_members": int(len(feats)),
            "n_inside_ranges": int(inside.sum()), "n_heldout": int((inside & held).sum()),
            "heldout_known": ids is not None, "members": members}


@router.get("/models/{name}/population", response_model=PopulationOut,
            responses={**AUTH_ERRORS, 404: {"description": "no such surrogate, or it ships no population"}},
            summary="Members of a surrogate's training population (features + solver parameters), held-out first")
async def population(request: Request, name: str = Path(..., pattern=NAME_PATTERN),
                     n: int = Query(8, ge=1, le=256, description="how many members"),
                     seed: int = Query(0, ge=0, le=2**31 - 1, description="seeds the members' order")) -> PopulationOut:
    registry = registry_of(request)
    loaded = registry.get(name)
    if loaded is None:
        loaded = await registry.load_trained(name, store_of(request), settings_of(request).data_dir)
    if loaded is None:
        raise ApiError(404, f"surrogate {name!r} is not loaded; loaded: {sorted(registry.items)}")
    try:
        doc = await asyncio.to_thread(population_members, loaded, n, seed)
    except FileNotFoundError as exc:
        raise ApiError(404, str(exc)) from None
    return PopulationOut.model_validate(doc)

"""GET /v1/models: model families (parameter spaces with units, presets) and the loaded surrogates."""

from __future__ import annotations

from fastapi import APIRouter, Request

from ..deps import AUTH_ERRORS, registry_of
from ..schemas import FamilyOut, ModelsOut, SurrogateOut

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

"""POST /v1/fit (upload a recording, fit a model to it) -- mounted once `noble.fit` provides its entry point.

Until then the router is empty, so the OpenAPI schema never advertises an operation that cannot succeed.
The job kind `fit` will reuse the job runner (app/jobs.py) exactly like datagen and train.
"""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(prefix="/v1", tags=["fit"])


def available() -> bool:
    """True when noble.fit exposes `fit_recording` (the entry point this router will call)."""
    try:
        import noble.fit as fit
    except ImportError:  # pragma: no cover
        return False
    return hasattr(fit, "fit_recording")

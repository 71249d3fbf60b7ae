"""The FastAPI application: `create_app(settings)` and its lifespan.

Startup: open the job store (SQLite under NOBLE_DATA_DIR or NOBLE_DATABASE_URL), load the surrogates, start
the micro-batchers and the Brian2 worker process, start (or connect to) Dask in the background and resume
the jobs a previous process left behind. Shutdown reverses it; running datagen jobs go back to the queue.
Run it with `noble serve` (uvicorn).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import AsyncIterator

from fastapi import Depends, FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

from .. import __version__
from ..config import Settings, settings_from_env
from .errors import install_handlers
from .metrics import Metrics
from .observability import RequestContextMiddleware
from .security import BodyLimitMiddleware, auth_dependency

log = logging.getLogger("noble.app")

STATIC_DIR = Path(__file__).resolve().parent / "static"

DESCRIPTION = """Synthetic biological neurons on demand.

* `GET /v1/models`: model families (parameters with units, presets) and loaded surrogates.
* `POST /v1/sample`: n sampled neurons of a surrogate for a stimulus (JSON, `application/x-npz`, `application/x-nwb`).
* `POST /v1/simulate`: Brian2 ground truth for small requests.
* `/v1/jobs`: dataset generation, training and fits on Dask; results as zip/tar or file by file.
* `GET /`: the web explorer, a static page that uses only this API.

Units are in field names (`amplitude_pA`, `dt_ms`, `v_mV`). When NOBLE_API_KEYS is set, every `/v1` call needs
`X-API-Key` or `Authorization: Bearer`.
"""


@contextlib.asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    from .jobs import JobRunner
    from .routers.models import families_out
    from .simulation import SimulationPool
    from .store import JobStore
    from .surrogates import SurrogateRegistry

    s: Settings = app.state.settings
    metrics: Metrics = app.state.metrics
    s.data_dir.mkdir(parents=True, exist_ok=True)
    store = await asyncio.to_thread(JobStore, s.database_url, s.data_dir)
    metrics.bind_store(store)
    app.state.store = store
    app.state.families = await asyncio.to_thread(families_out)

    forward_executor = ThreadPoolExecutor(1, thread_name_prefix="noble-forward")
    sample_executor = ThreadPoolExecutor(s.sample_threads, thread_name_prefix="noble-sample")
    app.state.sample_executor = sample_executor
    registry = SurrogateRegistry(s, forward_executor, metrics)
    await asyncio.to_thread(registry.load_all)
    for item in registry.items.values():
        item.batcher.start()
    app.state.registry = registry

    sim_pool = SimulationPool(s.simulate_processes, s.simulate_timeout_s, s.simulate_max_pending)
    await asyncio.to_thread(sim_pool.warm)
    app.state.sim_pool = sim_pool

    runner = JobRunner(s, store, metrics)
    await runner.start()
    app.state.runner = runner
    log.info("noble %s ready to serve: store=%s surrogates=%s dask=%s", __version__, store.dialect,
             sorted(registry.items), s.dask_address or "LocalCluster")
    try:
        yield
    finally:
        log.info("shutting down")
        app.state.runner = None
        await runner.stop()
        await registry.close()
        sim_pool.close()
        sample_executor.shutdown(wait=False, cancel_futures=True)
        forward_executor.shutdown(wait=False, cancel_futures=True)
        store.close()


def create_app(settings: Settings | None = None) -> FastAPI:
    """The app for `settings` (default: NOBLE_* environment variables)."""
    from .routers import fit, health, jobs, models, sample, simulate

    settings = settings or settings_from_env()
    metrics = Metrics()
    app = FastAPI(title="noble", version=__version__, description=DESCRIPTION, lifespan=lifespan)
    app.state.settings = settings
    app.state.metrics = metrics
    install_handlers(app)
    app.include_router(health.router)
    auth = [Depends(auth_dependency())]
    for r in (models.router, sample.router, simulate.router, jobs.router):
        app.include_router(r, dependencies=auth)
    if fit.available():
        app.include_router(fit.router, dependencies=auth)
    _mount_explorer(app)
    # Outermost last: the request id and metrics wrap everything, including 413s from the body limit.
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes,
                       per_path={"/v1/fit": (settings.fit_max_upload_bytes, "NOBLE_FIT_MAX_UPLOAD_BYTES")})
    app.add_middleware(RequestContextMiddleware, metrics=metrics)
    return app


def _mount_explorer(app: FastAPI) -> None:
    """`GET /` serves the explorer page and `/static/` its files. Public like /health: the page holds no data,
    every call it makes goes through the (key-checked) /v1 API."""
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    @app.get("/favicon.ico", include_in_schema=False)
    async def favicon() -> FileResponse:
        return FileResponse(STATIC_DIR / "favicon.svg", media_type="image/svg+xml")

    @app.get("/", include_in_schema=False)
    async def explorer() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", media_type="text/html",
                            headers={"Cache-Control": "no-cache"})

"""Jobs on Dask: POST /v1/jobs (datagen, train), GET /v1/jobs, GET /v1/jobs/{id}, GET /v1/jobs/{id}/result,
GET /v1/jobs/{id}/files[/{name}] (a result file by file), DELETE /v1/jobs/{id} (cancel). Results are served
only from the store's own job directories."""

from __future__ import annotations

import asyncio
from pathlib import Path as PathType
from pathlib import PurePath
from typing import Any, Literal

from fastapi import APIRouter, Path, Query, Request
from pydantic import ValidationError
from fastapi.responses import FileResponse

from ...datagen.config import format_validation_error
from ..deps import AUTH_ERRORS, metrics_of, runner_of, settings_of, store_of
from ..errors import ApiError, field_error
from ..jobs import ARCHIVE_MEDIA
from ..schemas import (JOB_ID_PATTERN, DatagenJobIn, JobIn, JobKind, JobListOut, JobOut, JobState, ResultFileOut,
                       ResultFilesOut, TrainJobIn)
from ..store import ACTIVE, SUCCEEDED, Job

router = APIRouter(prefix="/v1", tags=["jobs"])

JobId = Path(..., pattern=JOB_ID_PATTERN, description="32 hexadecimal characters")
NOT_FOUND = {404: {"description": "no such job"}}
CONFLICT = {409: {"description": "the job is not in a state that allows this"}}


def job_out(job: Job) -> JobOut:
    total = max(job.progress_total, 0)
    result = None
    if job.result:  # never show server paths
        result = {k: v for k, v in job.result.items() if k != "path"}
    return JobOut(
        id=job.id, kind=job.kind, state=job.state,  # type: ignore[arg-type]
        progress={"done": job.progress_done, "total": total,
                  "fraction": (job.progress_done / total) if total else (1.0 if job.state == SUCCEEDED else 0.0)},
        message=job.message, errors=job.errors, attempts=job.attempts, created_at=job.created_at,
        updated_at=job.updated_at, started_at=job.started_at, finished_at=job.finished_at,
        result_url=f"/v1/jobs/{job.id}/result" if job.state == SUCCEEDED else None, result=result, spec=job.spec)


def _datagen_cost(body: DatagenJobIn) -> float:
    cfg = body.config
    per_model = len(cfg.stimuli()) * cfg.trials * cfg.duration_ms + cfg.rheobase_duration_ms
    return cfg.n_models * cfg.acceptance.oversample * per_model


@router.post("/jobs", response_model=JobOut, status_code=202, responses={**AUTH_ERRORS, **NOT_FOUND, **CONFLICT},
             summary="Submit a datagen or train job (runs on Dask; poll GET /v1/jobs/{id})")
async def submit(request: Request, body: JobIn) -> JobOut:
    settings = settings_of(request)
    store = store_of(request)
    runner = runner_of(request)
    if isinstance(body, DatagenJobIn):
        cost = _datagen_cost(body)
        if cost > settings.job_max_neuron_ms:
            raise ApiError(413, f"the dataset needs about {cost:.3g} neuron-ms of simulation, over "
                                f"NOBLE_JOB_MAX_NEURON_MS={settings.job_max_neuron_ms:.3g}")
        spec: dict[str, Any] = {"kind": "datagen", "config": body.config.model_dump(mode="json")}
        total = body.config.n_shards
    else:
        assert isinstance(body, TrainJobIn)
        src = await asyncio.to_thread(store.get, body.dataset_job_id)
        if src is None:
            raise field_error(["body", "dataset_job_id"], f"no job {body.dataset_job_id}")
        if src.kind != "datagen" or src.state != SUCCEEDED:
            raise field_error(["body", "dataset_job_id"],
                              f"job {src.id} is a {src.state} {src.kind} job; need a succeeded datagen job")
        train_cfg = body.options.train_config()
        try:
            from ...operator.config import TrainConfig

            TrainConfig.model_validate(train_cfg)
        except ImportError:  # pragma: no cover - operator not installed
            raise ApiError(422, [{"loc": ["body", "kind"], "msg": "training is not available in this build",
                                  "type": "value_error"}]) from None
        except ValidationError as exc:
            raise ApiError(422, [{"loc": ["body", "options"], "msg": format_validation_error(exc),
                                  "type": "value_error"}]) from None
        spec = {"kind": "train", "dataset_job_id": body.dataset_job_id, "options": train_cfg}
        total = 1
    job = await asyncio.to_thread(store.create, spec["kind"], spec, total)
    metrics_of(request).jobs_submitted.labels(job.kind).inc()
    runner.wake()
    return job_out(job)


@router.get("/jobs", response_model=JobListOut, responses=AUTH_ERRORS, summary="List jobs, newest first")
async def list_jobs(request: Request, limit: int = Query(50, ge=1, le=500), offset: int = Query(0, ge=0, le=10**9),
                    state: JobState | None = Query(None), kind: JobKind | None = Query(None)) -> JobListOut:
    store = store_of(request)
    jobs, total = await asyncio.to_thread(store.list_jobs, limit=limit, offset=offset, state=state, kind=kind)
    return JobListOut(items=[job_out(j) for j in jobs], total=total, limit=limit, offset=offset)


async def _job_or_404(request: Request, job_id: str) -> Job:
    job = await asyncio.to_thread(store_of(request).get, job_id)
    if job is None:
        raise ApiError(404, f"no job {job_id}")
    return job


@router.get("/jobs/{job_id}", response_model=JobOut, responses={**AUTH_ERRORS, **NOT_FOUND},
            summary="A job's state, progress and errors")
async def get_job(request: Request, job_id: str = JobId) -> JobOut:
    return job_out(await _job_or_404(request, job_id))


@router.get("/jobs/{job_id}/result", response_class=FileResponse,
            responses={**AUTH_ERRORS, **NOT_FOUND, **CONFLICT,
                       200: {"description": "the dataset (manifest + HDF5 shards) or checkpoint as an archive",
                             "content": {m: {"schema": {"type": "string", "format": "binary"}}
                                         for m in ARCHIVE_MEDIA.values()}}},
            summary="Download a succeeded job's dataset or checkpoint (zip or tar)")
async def get_result(request: Request, job_id: str = JobId,
                     format: Literal["zip", "tar"] = Query("zip", description="archive format")) -> FileResponse:
    job = await _job_or_404(request, job_id)
    if job.state != SUCCEEDED:
        raise ApiError(409, f"job {job_id} is {job.state}; results exist only for succeeded jobs")
    runner = runner_of(request)
    try:
        path = await asyncio.to_thread(runner.result_archive, job, format)
    except FileNotFoundError as exc:
        raise ApiError(404, f"job {job_id}: {exc}") from None
    root = (job.result or {}).get("name") or f"{job.kind}-{job.id[:8]}"
    return FileResponse(path, media_type=ARCHIVE_MEDIA[format], filename=f"{root}-{job.id[:8]}.{format}")


FILE_MEDIA = {".json": "application/json", ".png": "image/png", ".nwb": "application/x-nwb",
              ".h5": "application/x-hdf5", ".safetensors": "application/octet-stream", ".yaml": "text/yaml",
              ".md": "text/markdown", ".csv": "text/csv", ".txt": "text/plain"}
FileName = Path(..., pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,199}$", description="a file name from /files")


def _media(name: str) -> str:
    return FILE_MEDIA.get(PurePath(name).suffix.lower(), "application/octet-stream")


async def _result_files(request: Request, job_id: str) -> tuple[Job, list[PathType]]:
    job = await _job_or_404(request, job_id)
    if job.state != SUCCEEDED:
        raise ApiError(409, f"job {job_id} is {job.state}; results exist only for succeeded jobs")
    try:
        files = await asyncio.to_thread(runner_of(request).result_files, job)
    except FileNotFoundError as exc:
        raise ApiError(404, f"job {job_id}: {exc}") from None
    return job, files


@router.get("/jobs/{job_id}/files", response_model=ResultFilesOut,
            responses={**AUTH_ERRORS, **NOT_FOUND, **CONFLICT},
            summary="The files of a succeeded job's result (fit.json, overlay, NWB, ...), each downloadable")
async def list_result_files(request: Request, job_id: str = JobId) -> ResultFilesOut:
    job, files = await _result_files(request, job_id)
    return ResultFilesOut(job_id=job.id, files=[
        ResultFileOut(name=p.name, bytes=p.stat().st_size, media_type=_media(p.name),
                      url=f"/v1/jobs/{job.id}/files/{p.name}") for p in files])


@router.get("/jobs/{job_id}/files/{name}", response_class=FileResponse,
            responses={**AUTH_ERRORS, **NOT_FOUND, **CONFLICT, 200: {"description": "the file"}},
            summary="One file of a succeeded job's result")
async def get_result_file(request: Request, job_id: str = JobId, name: str = FileName) -> FileResponse:
    job, files = await _result_files(request, job_id)
    match = next((p for p in files if p.name == name), None)  # only names listed: no path ever built from input
    if match is None:
        raise ApiError(404, f"job {job_id} has no result file {name!r}; it has {[p.name for p in files]}")
    return FileResponse(match, media_type=_media(name), filename=name)


@router.delete("/jobs/{job_id}", response_model=JobOut, status_code=202, responses={**AUTH_ERRORS, **NOT_FOUND, **CONFLICT},
               summary="Cancel a queued or running job")
async def cancel_job(request: Request, job_id: str = JobId) -> JobOut:
    job = await _job_or_404(request, job_id)
    if job.state not in ACTIVE:
        raise ApiError(409, f"job {job_id} already {job.state}")
    runner = runner_of(request)
    ok = await asyncio.to_thread(runner.cancel, job_id)
    job = await _job_or_404(request, job_id)
    if not ok and job.state not in ACTIVE and job.state != "cancelled":
        raise ApiError(409, f"job {job_id} finished ({job.state}) before it could be cancelled")
    return job_out(job)

"""POST /v1/fit: upload a current-clamp recording (ABF, NWB, CSV or NPZ) and fit the hh family to it.

The upload is checked before any job exists (it must read as a recording: 422 otherwise), stored under the
job's own directory with a name of our choosing (the client's file name never reaches the file system), and
fitted by `noble fit` on a Dask worker. The job's result is fit.json + an overlay PNG + an NWB file.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import uuid
from pathlib import Path
from typing import Any, Literal

from fastapi import APIRouter, File, Form, Request, UploadFile
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from noble.fit.tolerances import Tolerances

from ..deps import AUTH_ERRORS, metrics_of, runner_of, settings_of, store_of
from ..errors import ApiError, field_error
from ..schemas import JobOut

router = APIRouter(prefix="/v1", tags=["fit"])

SUFFIXES = {".abf", ".nwb", ".csv", ".npz"}


class FitOptions(BaseModel):
    """What a client may set for a fit (the rest of noble.fit's FitConfig keeps its defaults)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    sweeps: list[int] | None = Field(None, min_length=1, max_length=500, description="sweep indices (default all)")
    stage1: Literal["auto", "on", "off"] = Field("auto", description="surrogate stage")
    generations: int | None = Field(None, ge=0, le=1000, description="CMA-ES generations")
    popsize: int | None = Field(None, ge=4, le=256)
    seed: int = Field(0, ge=0, le=2**31 - 1)
    restarts: int | None = Field(None, ge=1, le=8, description="independent CMA-ES runs, best reported (default 1: "
                                                                "one run, its candidates spread over the cores)")
    time_budget_s: float | None = Field(None, gt=0, le=3600, description="the fit's wall-clock budget in s (default "
                                                                         "160: 3 min on 2 cores)")
    polish_generations: int | None = Field(None, ge=0, le=200, description="feasibility-polish generations when "
                                                                           "the fit misses an acceptance check "
                                                                           "(default 24; 0: off)")
    h_current: Literal["auto", "on", "off"] | None = Field(None, description="fit I_h (default 'off'; 'auto': when "
                                                                            "the recording sags)")
    kir_current: Literal["auto", "on", "off"] | None = Field(None, description="fit I_Kir (default 'auto': when the "
                                                                              "hyperpolarising steps rectify)")
    spike_kinetics: Literal["auto", "on", "off"] | None = Field(None, description="fit phi_NaK, the Na+/K+ gates' "
                                                                                 "temperature factor (default "
                                                                                 "'auto': when APs are wide)")
    persistent_sodium: Literal["auto", "on", "off"] | None = Field(None, description="fit I_NaP (default 'off'; "
                                                                                    "'auto': when interspike "
                                                                                    "troughs are high)")
    sodium_reversal: Literal["auto", "on", "off"] | None = Field(None, description="fit E_Na (default 'auto': when "
                                                                                  "the APs peak above +49 mV)")
    ahp_current: Literal["auto", "on", "off"] | None = Field(None, description="fit I_AHP, a spike-activated slow "
                                                                              "K+ current (default 'auto': when the "
                                                                              "cell settles low after firing)")
    t_current: Literal["auto", "on", "off"] | None = Field(None, description="fit I_T, the low-threshold Ca2+ "
                                                                            "current (default 'auto': when the cell "
                                                                            "fires after a hyperpolarising step)")
    sodium_slow_inactivation: Literal["auto", "on", "off"] | None = Field(
        None, description="fit I_Na's slow inactivation (default 'auto': when the APs shrink over the trains)")
    baseline_drift: Literal["auto", "on", "off"] | None = Field(None, description="hold each sweep at its own "
                                                                                 "pre-step baseline with a bias "
                                                                                 "current (default 'off'; 'auto': "
                                                                                 "when the baselines span > 5 mV)")
    depolarised_spikes: Literal["auto", "on", "off"] | None = Field(None, description="widen V_T's and g_Na's "
                                                                                     "search boxes (default 'auto': "
                                                                                     "when APs start above -30 mV)")
    input_resistance: Literal["solve", "search"] | None = Field(None, description="solve the membrane area from the "
                                                                               "subthreshold steady states (default "
                                                                               "'solve') or search it")
    bridge_balance: Literal["auto", "off"] | None = Field(None, description="remove an unbalanced series resistance "
                                                                           "the command's edges show (default 'auto')")
    tolerances: Tolerances | None = Field(None, description="acceptance tolerances: they judge the fit (its checks) "
                                                            "and bound the sds of the objective terms they judge")

    def fit_config(self) -> dict[str, Any]:
        solver: dict[str, Any] = {"seed": self.seed}
        if self.generations is not None:
            solver["max_generations"] = self.generations
        if self.popsize is not None:
            solver["popsize"] = self.popsize
        out: dict[str, Any] = {"stage1": self.stage1, "solver": solver}
        if self.restarts is not None:
            out["restarts"] = self.restarts
        if self.time_budget_s is not None:
            out["time_budget_s"] = self.time_budget_s
        if self.polish_generations is not None:
            out["polish"] = {"generations": self.polish_generations}
        for name in ("h_current", "kir_current", "spike_kinetics", "persistent_sodium", "sodium_reversal",
                     "ahp_current", "t_current", "sodium_slow_inactivation", "baseline_drift", "depolarised_spikes",
                     "bridge_balance", "input_resistance"):
            if getattr(self, name) is not None:
                out[name] = getattr(self, name)
        if self.tolerances is not None:
            out["objective"] = {"tolerances": self.tolerances.model_dump()}
        if self.sweeps is not None:
            out["sweeps"] = [int(s) for s in self.sweeps]
        return out


def available() -> bool:
    """True when noble.fit exposes `fit_recording` (what the `noble fit` command runs)."""
    try:
        from noble.fit.api import fit_recording  # noqa: F401
    except ImportError:
        return False
    return True


def _options(raw: str) -> FitOptions:
    try:
        data = json.loads(raw) if raw.strip() else {}
    except ValueError as exc:
        raise field_error(["body", "options"], f"not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise field_error(["body", "options"], "must be a JSON object")
    try:
        opts = FitOptions.model_validate(data)
    except ValidationError as exc:
        raise ApiError(422, [{"loc": ["body", "options", *err["loc"]], "msg": err["msg"], "type": err["type"]}
                             for err in exc.errors()]) from None
    try:
        from noble.fit.api import FitConfig

        FitConfig.model_validate(opts.fit_config())
    except ValidationError as exc:
        raise field_error(["body", "options"], str(exc)[:2000]) from None
    return opts


def _check_recording(path: Path) -> int:
    """Number of sweeps a fit can use; RecordingError if the file is not a recording a fit can use (unreadable,
    mixed sampling rates, no sweep with a long enough step, a baseline and unclipped voltage)."""
    from noble.fit.screen import screen_for_fit
    from noble.io import read_recording

    rec, _notes = screen_for_fit(read_recording(path))
    return len(rec.sweeps)


@router.post("/fit", response_model=JobOut, status_code=202,
             responses=AUTH_ERRORS,
             summary="Upload a recording and fit the hh model to it (a Dask job; poll GET /v1/jobs/{id})")
async def submit_fit(
    request: Request,
    recording: UploadFile = File(..., description="ABF, NWB, CSV or NPZ current-clamp recording"),
    options: str = Form("{}", max_length=20_000, description="JSON object: sweeps, stage1, generations, popsize, seed"),
) -> JobOut:
    from noble.io import RecordingError

    from .jobs import job_out

    opts = _options(options)
    settings = settings_of(request)
    store = store_of(request)
    runner = runner_of(request)
    suffix = Path(recording.filename or "").suffix.lower()
    name = "recording" + (suffix if suffix in SUFFIXES else "")
    job_id = uuid.uuid4().hex
    jdir = Path(settings.data_dir) / "jobs" / job_id
    staging = Path(settings.data_dir) / "uploads" / job_id
    staging.mkdir(parents=True, exist_ok=True)
    try:
        dest = staging / name

        def save() -> int:
            with open(dest, "wb") as out:
                shutil.copyfileobj(recording.file, out, 1 << 20)
            return dest.stat().st_size

        size = await asyncio.to_thread(save)
        if size == 0:
            raise field_error(["body", "recording"], "empty file")
        try:
            n_sweeps = await asyncio.to_thread(_check_recording, dest)
        except RecordingError as exc:
            raise field_error(["body", "recording"], f"not a usable recording: {str(exc)[:1000]}") from None
        except Exception as exc:  # noqa: BLE001 - a reader choking on garbage is still the client's file
            raise field_error(["body", "recording"], f"cannot read the file: {type(exc).__name__}") from None
        jdir.parent.mkdir(parents=True, exist_ok=True)
        (jdir / "input").mkdir(parents=True, exist_ok=True)
        await asyncio.to_thread(shutil.move, str(dest), str(jdir / "input" / name))
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    spec = {"kind": "fit", "recording": f"input/{name}", "filename": (recording.filename or "")[:200],
            "bytes": size, "sweeps_found": n_sweeps, "options": opts.model_dump(), "config": opts.fit_config()}
    job = await asyncio.to_thread(store.create, "fit", spec, 1, job_id)
    metrics_of(request).jobs_submitted.labels("fit").inc()
    runner.wake()
    return job_out(job)

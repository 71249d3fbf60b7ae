"""Process-wide settings from NOBLE_* environment variables, and shared pydantic types."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field


class Settings(BaseModel):
    """Service and job limits; every field can be set with NOBLE_<FIELD> (upper case)."""

    model_config = ConfigDict(extra="forbid")

    # ---- limits shared by datagen and the service --------------------------------------------------
    max_duration_ms: float = Field(10_000.0, gt=0, description="longest simulated trace (datagen and /v1/simulate)")
    data_dir: Path = Field(Path("noble_store"), description="job store, datasets, checkpoints (SQLite file here)")
    dask_address: str | None = Field(None, description="scheduler address; unset: in-process LocalCluster")
    database_url: str | None = Field(None, description="SQLAlchemy URL (postgresql://...); unset: SQLite in data_dir")
    api_keys: str | None = Field(None, description="comma-separated keys; when set every /v1 call needs one")
    max_body_bytes: int = Field(5_000_000, ge=1024, le=1_000_000_000)
    fit_max_upload_bytes: int = Field(200_000_000, ge=1024, le=10_000_000_000,
                                      description="body limit of POST /v1/fit (a recording upload)")
    simulate_max_neuron_ms: float = Field(50_000.0, gt=0, description="/v1/simulate budget: neurons x duration")
    simulate_timeout_s: float = Field(60.0, gt=0, le=3600)
    surrogate_dirs: str | None = Field(None, description="comma-separated checkpoint dirs (or dirs of them) to load")

    # ---- server ---------------------------------------------------------------------------------------
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    workers: int = Field(1, ge=1, le=64, description="uvicorn worker processes (>1: use NOBLE_DASK_ADDRESS)")
    log_level: str = Field("info", pattern=r"^(?i)(critical|error|warning|info|debug)$")
    log_json: bool = True
    default_surrogate: str | None = Field(None, description="checkpoint dir; unset: noble.operator's shipped default")
    load_shipped_surrogates: bool = Field(True, description="serve every shipped surrogate (noble/assets), not only "
                                                            "the default")

    # ---- /v1/sample and micro-batching ---------------------------------------------------------------
    sample_max_n: int = Field(1024, ge=1, le=100_000, description="most neurons one /v1/sample call may ask for")
    sample_threads: int = Field(64, ge=1, le=1024, description="threads running sample requests' CPU work")
    batch_enabled: bool = Field(True, description="merge concurrent /v1/sample forward passes into one")
    batch_max_wait_ms: float = Field(5.0, ge=0, le=1000, description="longest a request waits for company")
    batch_max_rows: int = Field(512, ge=1, le=100_000, description="most neurons in one forward pass")
    torch_threads: int | None = Field(None, ge=1, le=256, description="torch intra-op threads (unset: torch's default)")

    # ---- /v1/simulate ---------------------------------------------------------------------------------
    simulate_max_neurons: int = Field(64, ge=1, le=10_000)
    simulate_max_neuron_steps: float = Field(2e7, gt=0, description="/v1/simulate budget: neurons x duration / dt")
    simulate_max_pending: int = Field(8, ge=1, le=1000, description="queued simulations before 429")
    simulate_processes: int = Field(1, ge=1, le=64, description="worker processes running Brian2 for /v1/simulate")

    # ---- jobs -----------------------------------------------------------------------------------------
    dask_workers: int = Field(2, ge=1, le=256, description="LocalCluster worker processes")
    dask_threads: int = Field(1, ge=1, le=64, description="threads per LocalCluster worker")
    jobs_max_concurrent: int = Field(2, ge=1, le=256, description="jobs one server process runs at once")
    job_max_neuron_ms: float = Field(1e10, gt=0, description="datagen budget: models x (traces x duration + rheobase)")
    job_heartbeat_s: float = Field(2.0, gt=0, le=600)
    job_stale_s: float = Field(15.0, gt=0, le=86_400, description="a running job without heartbeat this long is orphaned")
    job_max_attempts: int = Field(3, ge=1, le=100, description="resumptions after a crash before a job fails")

    # ---- derived ---------------------------------------------------------------------------------------
    def api_key_list(self) -> list[str]:
        return [k.strip() for k in (self.api_keys or "").split(",") if k.strip()]

    def surrogate_dir_list(self) -> list[Path]:
        return [Path(p.strip()) for p in (self.surrogate_dirs or "").split(",") if p.strip()]


def settings_from_env(**overrides: object) -> Settings:
    """Settings from NOBLE_<FIELD> environment variables, then explicit overrides (not cached)."""
    import os

    values: dict[str, object] = {}
    for name in Settings.model_fields:
        env = os.environ.get(f"NOBLE_{name.upper()}")
        if env is not None and env != "":
            values[name] = env
    values.update(overrides)
    return Settings(**values)


@lru_cache(maxsize=1)
def settings() -> Settings:
    return settings_from_env()

"""Process-wide settings from NOBLE_* environment variables, and shared pydantic types."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import BaseModel, Field


class Settings(BaseModel):
    """Service and job limits; every field can be set with NOBLE_<FIELD> (upper case)."""

    max_duration_ms: float = Field(10_000.0, gt=0)
    data_dir: Path = Path("noble_store")
    dask_address: str | None = None
    database_url: str | None = None
    api_keys: str | None = None
    max_body_bytes: int = 5_000_000
    simulate_max_neuron_ms: float = 50_000.0
    simulate_timeout_s: float = 60.0
    surrogate_dirs: str | None = None


@lru_cache(maxsize=1)
def settings() -> Settings:
    import os

    values = {}
    for name in Settings.model_fields:
        env = os.environ.get(f"NOBLE_{name.upper()}")
        if env is not None and env != "":
            values[name] = env
    return Settings(**values)

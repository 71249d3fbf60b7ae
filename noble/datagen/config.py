"""Dataset-generation config (YAML/JSON), validated before any simulation runs.

Every mistake is refused with a message naming the field and the allowed values: unknown family or preset,
non-positive dt, a non-numeric amplitude, a duration over the configured maximum, a parameter out of range.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ..config import settings
from .models import get as get_family
from .stimuli import FISweep, Stimulus


class Variability(BaseModel):
    """Cell-to-cell variability around the preset (log-normal CV on conductances, sd on potentials)."""

    model_config = ConfigDict(extra="forbid")
    cv: float = Field(0.1, ge=0.0, le=1.0)
    sd_potential_mV: float = Field(1.0, ge=0.0, le=20.0)


class Acceptance(BaseModel):
    """'Hall of fame' window: a sampled model is kept only if its F-I features fall inside it."""

    model_config = ConfigDict(extra="forbid")
    I_thr_pA: tuple[float, float] | None = None
    s_thr_Hz_per_pA: tuple[float, float] | None = None
    oversample: float = Field(1.5, ge=1.0, le=10.0, description="candidates drawn per accepted model and round")
    max_rounds: int = Field(4, ge=1, le=50)

    @field_validator("I_thr_pA", "s_thr_Hz_per_pA")
    @classmethod
    def _ordered(cls, v: tuple[float, float] | None) -> tuple[float, float] | None:
        if v is not None and not v[0] < v[1]:
            raise ValueError("window must be [low, high] with low < high")
        return v


class TrialNoise(BaseModel):
    """Trial-to-trial variability: Ornstein-Uhlenbeck current noise added to every stimulus."""

    model_config = ConfigDict(extra="forbid")
    sigma_pA: float = Field(0.0, ge=0.0, le=1000.0)
    tau_ms: float = Field(5.0, gt=0.0, le=1000.0)


class DatasetConfig(BaseModel):
    """One population of one family under one protocol, split into shards of `models_per_shard` models."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field("dataset", min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.-]+$")
    family: str = "hh"
    preset: str | None = None
    overrides: dict[str, float] = Field(default_factory=dict)
    n_models: int = Field(..., ge=1, le=1_000_000)
    models_per_shard: int = Field(25, ge=1, le=10_000)
    seed: int = Field(0, ge=0, le=2**31 - 1)
    variability: Variability = Field(default_factory=Variability)
    acceptance: Acceptance = Field(default_factory=Acceptance)
    protocol: FISweep | list[Stimulus] = Field(..., description="an fi_sweep or a list of stimuli")
    trials: int = Field(1, ge=1, le=1000)
    noise: TrialNoise = Field(default_factory=TrialNoise)
    duration_ms: float = Field(1300.0, gt=0.0, description="simulated time per trace")
    dt_ms: float = Field(0.025, gt=0.0, le=1.0, description="integration step")
    record_dt_ms: float = Field(0.1, gt=0.0, le=10.0, description="dataset sampling step")
    rheobase_duration_ms: float = Field(500.0, gt=0.0, le=5000.0)
    rheobase_max_pA: float = Field(1000.0, gt=0.0, le=20000.0)
    brian_target: str = Field("cython", pattern=r"^(cython|numpy)$")

    @field_validator("family")
    @classmethod
    def _known_family(cls, v: str) -> str:
        get_family(v)  # raises ValueError naming the allowed families
        return v

    @model_validator(mode="after")
    def _consistent(self) -> "DatasetConfig":
        fam = get_family(self.family)
        if self.preset is not None and self.preset not in fam.presets:
            raise ValueError(f"preset: unknown preset {self.preset!r} for family {self.family!r}; "
                             f"allowed: {sorted(fam.presets)}")
        for key in self.overrides:
            if key not in fam.param_names():
                raise ValueError(f"overrides.{key}: unknown parameter for family {self.family!r}; "
                                 f"allowed: {fam.param_names()}")
        try:
            fam.preset_values(self.preset, self.overrides)
        except ValueError as exc:
            raise ValueError(f"overrides: {exc}") from None
        limit = settings().max_duration_ms
        if self.duration_ms > limit:
            raise ValueError(f"duration_ms: {self.duration_ms} ms exceeds the configured maximum {limit} ms "
                             "(NOBLE_MAX_DURATION_MS)")
        ratio = self.record_dt_ms / self.dt_ms
        if ratio < 1 - 1e-9 or abs(ratio - round(ratio)) > 1e-6:
            raise ValueError(f"record_dt_ms: must be a positive multiple of dt_ms={self.dt_ms}")
        for stim in self.stimuli():
            if stim.end_ms() > self.duration_ms + 1e-9:
                raise ValueError(f"protocol: stimulus ends at {stim.end_ms()} ms, after duration_ms={self.duration_ms}")
        return self

    # ---- derived ---------------------------------------------------------------------------------
    def stimuli(self) -> list[Any]:
        return self.protocol.expand() if isinstance(self.protocol, FISweep) else list(self.protocol)

    @property
    def n_shards(self) -> int:
        return -(-self.n_models // self.models_per_shard)

    def shard_models(self, index: int) -> int:
        return min(self.models_per_shard, self.n_models - index * self.models_per_shard)

    def canonical_json(self) -> str:
        return json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))

    def digest(self) -> str:
        """Identity of the config and of the integrator that turns it into data: shards from another
        config, or from an older integration method of the family, are never mixed in."""
        ident = self.canonical_json() + f"|method={get_family(self.family).method}"
        return hashlib.sha256(ident.encode()).hexdigest()[:16]


def load_config(path: str | Path) -> DatasetConfig:
    """Parse YAML or JSON into a DatasetConfig; ValueError with field-named messages on any mistake."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"config file not found: {path}")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ValueError(f"config {path} is not valid YAML/JSON: {exc}") from None
    if not isinstance(raw, dict):
        raise ValueError(f"config {path} must be a mapping of fields")
    return parse_config(raw)


def parse_config(raw: dict[str, Any]) -> DatasetConfig:
    try:
        return DatasetConfig.model_validate(raw)
    except ValidationError as exc:
        raise ValueError(format_validation_error(exc)) from None


def format_validation_error(exc: ValidationError) -> str:
    """One line per problem: `field.path: message (got value)`."""
    lines = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"])
        msg = err["msg"].removeprefix("Value error, ")
        got = err.get("input")
        suffix = f" (got {got!r})" if loc and not isinstance(got, (dict, list)) and got is not None else ""
        lines.append(f"{loc}: {msg}{suffix}" if loc else msg)
    return "invalid config:\n  " + "\n  ".join(lines)
